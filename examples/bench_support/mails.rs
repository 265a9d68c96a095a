//! Realistic customer mail for the benchmarks: about 3 KB each (headers of
//! a real client with Received and DKIM lines, text or text + HTML), a
//! share with a 200 KB PDF attachment of its own (random bytes, so no two
//! blobs deduplicate), and a share of replies to earlier mails of the same
//! customer (In-Reply-To/References, "Re:", the original quoted below).
//! Deterministic for a given seed.

use chrono::{DateTime, Utc};

/// splitmix64: small, fast, good enough for test data.
#[derive(Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 > 1.0 - p
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }

    fn word(&mut self) -> &'static str {
        let words = words();
        words[self.below(words.len())]
    }
}

/// Words of support mail, separated by spaces.
const WORDS: &str = "\
    account invoice login password order delivery refund the a is not \
    working since yesterday when I try to open page error message shows \
    again please help with my subscription payment card was charged twice \
    and cannot find receipt app crashes on start after update phone \
    browser settings export report missing data from last month team \
    member access permission denied reset link expired email address \
    changed new office shipping label package arrived damaged replacement \
    could you check status ticket number thanks in advance we are using \
    version server timeout sync calendar contacts backup restore file \
    upload limit large slow today morning customer portal";

const FIRST: &[&str] = &[
    "Anna", "Ben", "Chloé", "David", "Eva", "Farid", "Grace", "Hugo", "Ines", "Jonas", "Kaito",
    "Lena", "Marta", "Nils", "Olga", "Pavel", "Quinn", "Rosa", "Sven", "Tariq",
];
const LAST: &[&str] = &[
    "Müller", "Smith", "García", "Rossi", "Novak", "Kowalski", "Dubois", "Jensen", "Silva",
    "Nakamura", "Okafor", "Larsen", "Fischer", "Moreau", "Costa", "Horvat",
];
const AGENTS_UA: &[&str] = &[
    "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Thunderbird/128.5.0",
    "Microsoft Outlook 16.0",
    "Apple Mail (2.3774.300.61.1.2)",
    "K-9 Mail for Android",
];

/// One generated mail.
pub struct Mail {
    pub raw: Vec<u8>,
    pub from: String,
    pub message_id: String,
    pub is_reply: bool,
    pub has_attachment: bool,
}

fn words() -> &'static [&'static str] {
    static SPLIT: std::sync::LazyLock<Vec<&str>> =
        std::sync::LazyLock::new(|| WORDS.split_whitespace().collect());
    &SPLIT
}

#[derive(Clone)]
struct Sent {
    customer: u32,
    message_id: String,
    subject: String,
    references: String,
    text: String,
}

/// The mix: share of replies, share with an attachment, how many customers.
#[derive(Clone)]
pub struct Mix {
    pub reply_share: f64,
    pub attachment_share: f64,
    pub attachment_bytes: usize,
    pub customers: u32,
    /// A reply answers a mail at least this many mails earlier (so that
    /// mails close together may be stored in any order).
    pub reply_distance: usize,
}

impl Mix {
    /// The mix of issue #6: 30% replies, 10% with a 200 KB attachment.
    pub fn realistic(customers: u32) -> Mix {
        Mix {
            reply_share: 0.30,
            attachment_share: 0.10,
            attachment_bytes: 200 * 1024,
            customers,
            reply_distance: 64,
        }
    }
}

/// Generates mails to `support`, remembering what was sent so that later
/// mails can reply to earlier ones. A clone goes on with the same mails.
#[derive(Clone)]
pub struct Generator {
    rng: Rng,
    mix: Mix,
    support: String,
    domain: String,
    prefix: String,
    /// Customers are `{local}{n + first}@{domain}`.
    local: String,
    first: u32,
    sent: Vec<Sent>,
    new_count: u32,
}

impl Generator {
    /// `prefix` keeps Message-IDs of different runs apart; `domain` is the
    /// customers' domain.
    pub fn new(seed: u64, mix: Mix, support: &str, domain: &str, prefix: &str) -> Generator {
        Generator {
            rng: Rng::new(seed),
            mix,
            support: support.to_string(),
            domain: domain.to_string(),
            prefix: prefix.to_string(),
            local: "c".to_string(),
            first: 0,
            sent: Vec::new(),
            new_count: 0,
        }
    }

    /// Names the customers `{local}{n + first}@domain` (e.g. the mail
    /// stack's `customer1` … `customer5`).
    pub fn with_customers(mut self, local: &str, first: u32) -> Generator {
        self.local = local.to_string();
        self.first = first;
        self
    }

    pub fn customer_address(&self, customer: u32) -> String {
        format!("{}{}@{}", self.local, customer + self.first, self.domain)
    }

    /// The next mail, dated `now`.
    pub fn next(&mut self, now: DateTime<Utc>) -> Mail {
        self.next_tagged(now, "")
    }

    /// The next mail, with `tag` at the end of a new mail's subject.
    pub fn next_tagged(&mut self, now: DateTime<Utc>, tag: &str) -> Mail {
        let answerable = self.sent.len().saturating_sub(self.mix.reply_distance);
        let reply_to = if answerable > 0 && self.rng.chance(self.mix.reply_share) {
            Some(self.rng.below(answerable))
        } else {
            None
        };
        let n = self.sent.len();
        // Random first, as the IDs of the large mail services are (Gmail's
        // `CA+…`, Outlook's, Apple's UUIDs): a store's index on them takes
        // each new one at a random place. With the counter first, as
        // before, every store's Message-ID index only grew at its end.
        let message_id = format!(
            "{:016x}.{}.{n}@mail.{}",
            self.rng.next_u64(),
            self.prefix,
            self.domain
        );
        let paragraphs = if self.rng.chance(0.5) { 2 } else { 3 };
        let text = self.paragraphs(paragraphs);
        let (customer, subject, references, quoted) = match reply_to {
            Some(i) => {
                let orig = &self.sent[i];
                let refs = if orig.references.is_empty() {
                    format!("<{}>", orig.message_id)
                } else {
                    format!("{} <{}>", orig.references, orig.message_id)
                };
                let quoted: String = orig.text.lines().map(|l| format!("> {l}\r\n")).collect();
                let subject = if orig.subject.starts_with("Re: ") {
                    orig.subject.clone()
                } else {
                    format!("Re: {}", orig.subject)
                };
                (
                    orig.customer,
                    subject,
                    refs,
                    Some((orig.message_id.clone(), quoted)),
                )
            }
            None => {
                // Round robin, so that no customer exceeds the automatic
                // reply rate limit however many mails there are.
                let customer = self.new_count % self.mix.customers.max(1);
                self.new_count += 1;
                let subject = format!("{} {n}{tag}", capitalised(&self.sentence(4)));
                (customer, subject, String::new(), None)
            }
        };
        let has_attachment = self.rng.chance(self.mix.attachment_share);
        let raw = self.render(&Render {
            customer,
            message_id: &message_id,
            subject: &subject,
            references: &references,
            in_reply_to: quoted.as_ref().map(|(id, _)| id.as_str()),
            text: &text,
            quoted: quoted.as_ref().map(|(_, q)| q.as_str()),
            attachment: has_attachment,
            now,
        });
        self.sent.push(Sent {
            customer,
            message_id: message_id.clone(),
            subject,
            references,
            text,
        });
        Mail {
            raw,
            from: self.customer_address(customer),
            message_id,
            is_reply: reply_to.is_some(),
            has_attachment,
        }
    }

    fn sentence(&mut self, words: usize) -> String {
        (0..words)
            .map(|_| self.rng.word())
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// About 400 bytes per paragraph, wrapped at 72 columns.
    fn paragraphs(&mut self, count: usize) -> String {
        let mut out = String::new();
        for _ in 0..count {
            let mut line = String::new();
            let mut para = String::new();
            while para.len() + line.len() < 400 {
                let words = 6 + self.rng.below(8);
                let s = format!("{}. ", capitalised(&self.sentence(words)));
                for word in s.split_inclusive(' ') {
                    if line.len() + word.len() > 72 {
                        para.push_str(line.trim_end());
                        para.push_str("\r\n");
                        line.clear();
                    }
                    line.push_str(word);
                }
            }
            para.push_str(line.trim_end());
            out.push_str(&para);
            out.push_str("\r\n\r\n");
        }
        out
    }

    fn render(&mut self, r: &Render) -> Vec<u8> {
        let from_name = format!(
            "{} {}",
            FIRST[r.customer as usize % FIRST.len()],
            LAST[(r.customer as usize / FIRST.len()) % LAST.len()]
        );
        let from = self.customer_address(r.customer);
        let date = r.now.to_rfc2822();
        let ip = format!("198.51.100.{}", 1 + r.customer % 250);
        let queue_id = format!("{:X}", self.rng.next_u64());
        let signature: String = (0..5)
            .map(|_| format!("{:016x}", self.rng.next_u64()))
            .collect();
        let mut h = String::with_capacity(1400);
        h.push_str(&format!("Return-Path: <{from}>\r\n"));
        h.push_str(&format!(
            "Received: from mail.{d} (mail.{d} [{ip}])\r\n\tby mx.example.test (Postfix) with ESMTPS id {queue_id}\r\n\tfor <{s}>; {date}\r\n",
            d = self.domain,
            s = self.support
        ));
        h.push_str(&format!(
            "Received: from [10.0.0.{}] (unknown [10.0.0.{}])\r\n\tby mail.{} (Postfix) with ESMTPSA; {date}\r\n",
            r.customer % 200,
            r.customer % 200,
            self.domain
        ));
        h.push_str(&format!(
            "DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d={};\r\n\ts=mail; t={}; h=from:to:subject:date:message-id;\r\n\tbh={signature};\r\n\tb={signature}{signature}\r\n",
            self.domain,
            r.now.timestamp()
        ));
        h.push_str(&format!("From: {from_name} <{from}>\r\n"));
        h.push_str(&format!("To: Support <{}>\r\n", self.support));
        h.push_str(&format!("Subject: {}\r\n", r.subject));
        h.push_str(&format!("Date: {date}\r\n"));
        h.push_str(&format!("Message-ID: <{}>\r\n", r.message_id));
        if let Some(parent) = r.in_reply_to {
            h.push_str(&format!("In-Reply-To: <{parent}>\r\n"));
            h.push_str(&format!("References: {}\r\n", r.references));
        }
        h.push_str(&format!("User-Agent: {}\r\n", self.rng.pick(AGENTS_UA)));
        h.push_str("Content-Language: en-US\r\nMIME-Version: 1.0\r\n");

        let mut text = r.text.to_string();
        text.push_str(&format!("Best regards,\r\n{from_name}\r\n"));
        if let Some(q) = r.quoted {
            text.push_str(&format!("\r\nOn {date}, {from_name} wrote:\r\n{q}"));
        }
        let with_html = self.rng.chance(0.5);
        let body_part = if with_html {
            let b = format!("alt{:x}", self.rng.next_u64());
            let html = html_of(&text);
            format!(
                "Content-Type: multipart/alternative; boundary=\"{b}\"\r\n\r\n--{b}\r\nContent-Type: text/plain; charset=UTF-8; format=flowed\r\nContent-Transfer-Encoding: 8bit\r\n\r\n{text}\r\n--{b}\r\nContent-Type: text/html; charset=UTF-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n{html}\r\n--{b}--\r\n"
            )
        } else {
            // Without HTML a client writes a little more text.
            let more = self.paragraphs(2);
            format!(
                "Content-Type: text/plain; charset=UTF-8; format=flowed\r\nContent-Transfer-Encoding: 8bit\r\n\r\n{more}{text}"
            )
        };
        let mut raw = h.into_bytes();
        if r.attachment {
            let b = format!("mix{:x}", self.rng.next_u64());
            let mut pdf = vec![0u8; self.mix.attachment_bytes];
            for chunk in pdf.chunks_mut(8) {
                let v = self.rng.next_u64().to_le_bytes();
                chunk.copy_from_slice(&v[..chunk.len()]);
            }
            raw.extend_from_slice(
                format!(
                    "Content-Type: multipart/mixed; boundary=\"{b}\"\r\n\r\nThis is a multi-part message in MIME format.\r\n--{b}\r\n{body_part}\r\n--{b}\r\nContent-Type: application/pdf; name=\"scan-{n}.pdf\"\r\nContent-Disposition: attachment; filename=\"scan-{n}.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\n",
                    n = self.sent.len()
                )
                .as_bytes(),
            );
            base64_lines(&pdf, &mut raw);
            raw.extend_from_slice(format!("--{b}--\r\n").as_bytes());
        } else {
            raw.extend_from_slice(body_part.as_bytes());
        }
        raw
    }
}

struct Render<'a> {
    customer: u32,
    message_id: &'a str,
    subject: &'a str,
    references: &'a str,
    in_reply_to: Option<&'a str>,
    text: &'a str,
    quoted: Option<&'a str>,
    attachment: bool,
    now: DateTime<Utc>,
}

fn capitalised(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

fn html_of(text: &str) -> String {
    let mut html = String::from(
        "<!DOCTYPE html>\r\n<html><head><meta http-equiv=\"content-type\" content=\"text/html; charset=UTF-8\"></head>\r\n<body>\r\n",
    );
    for para in text.split("\r\n\r\n").filter(|p| !p.trim().is_empty()) {
        html.push_str("<p>");
        html.push_str(
            &para
                .replace('&', "&amp;")
                .replace('<', "&lt;")
                .replace('>', "&gt;")
                .replace("\r\n", "<br>\r\n"),
        );
        html.push_str("</p>\r\n");
    }
    html.push_str("</body></html>\r\n");
    html
}

/// Standard base64 in 76-column lines with CRLF, as mail clients write it.
fn base64_lines(data: &[u8], out: &mut Vec<u8>) {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    // 57 input bytes make one 76-character line.
    for line in data.chunks(57) {
        for group in line.chunks(3) {
            let b = [
                group[0],
                *group.get(1).unwrap_or(&0),
                *group.get(2).unwrap_or(&0),
            ];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            let chars = [
                ALPHABET[(n >> 18) as usize & 63],
                ALPHABET[(n >> 12) as usize & 63],
                if group.len() > 1 {
                    ALPHABET[(n >> 6) as usize & 63]
                } else {
                    b'='
                },
                if group.len() > 2 {
                    ALPHABET[n as usize & 63]
                } else {
                    b'='
                },
            ];
            out.extend_from_slice(&chars);
        }
        out.extend_from_slice(b"\r\n");
    }
}
