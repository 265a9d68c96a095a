//! Fuzzing the pure pipeline (`Pipeline::process`: parse → classify →
//! thread → apply → compose) with proptest, against an in-memory lookup:
//! arbitrary bytes, corpus messages mutated (byte flips, truncation,
//! duplicated headers, deep MIME and HTML nesting, spliced tokens, line
//! endings), and mails shaped to reach every path (agents with signed
//! tokens and commands, bounces quoting our mail, auto-replies, tags).
//! Nothing may panic: `store.ingest_mail` would contain a panic to the
//! quarantine, so the pipeline is called directly to see one. The case
//! counts are bounded so that this runs in seconds; crashers found are
//! kept as minimal fixtures in `tests/fixtures/fuzz/`, replayed by
//! `fuzz_fixtures_never_panic`.

use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::sync::LazyLock;

use chrono::{DateTime, TimeZone, Utc};
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::Config;

use postdesk::domain::{Status, TicketNumber};
use postdesk::ingest::apply::{IngestLookup, TicketInfo};
use postdesk::ingest::parse::Mailbox;
use postdesk::ingest::thread::ThreadLookup;
use postdesk::ingest::{Outcome, Pipeline};
use postdesk::settings::Settings;
use postdesk::tokens::Purpose;

use crate::corpus::corpus_rows;

const SUPPORT: &str = "support@postdesk.test";
const AGENT: &str = "agent@postdesk.test";
const CUSTOMER: &str = "ann@customer.test";
/// Corpus messages larger than this are left out of the mutations (the
/// corpus test reads them whole); it keeps a case in milliseconds.
const MAX_SEED_BYTES: usize = 64 * 1024;

/// The store's facts, in memory: ticket #1 (open, Ann, known Message-ID
/// `orig@customer.test`) and ticket #2 (closed long ago).
struct MemLookup {
    messages: BTreeMap<String, TicketNumber>,
    participants: BTreeMap<TicketNumber, Vec<String>>,
}

impl MemLookup {
    fn new() -> MemLookup {
        let mut messages = BTreeMap::new();
        messages.insert("orig@customer.test".to_string(), TicketNumber(1));
        messages.insert("old@customer.test".to_string(), TicketNumber(2));
        let mut participants = BTreeMap::new();
        participants.insert(
            TicketNumber(1),
            vec![CUSTOMER.to_string(), "cc@customer.test".to_string()],
        );
        participants.insert(TicketNumber(2), vec![CUSTOMER.to_string()]);
        MemLookup {
            messages,
            participants,
        }
    }
}

impl ThreadLookup for MemLookup {
    fn is_seen(&self, dedup_key: &str) -> anyhow::Result<bool> {
        Ok(dedup_key == "seen@customer.test")
    }

    fn ticket_of_message(&self, message_id: &str) -> anyhow::Result<Option<TicketNumber>> {
        Ok(self.messages.get(message_id).copied())
    }

    fn participants(&self, ticket: TicketNumber) -> anyhow::Result<Option<Vec<String>>> {
        Ok(self.participants.get(&ticket).cloned())
    }
}

impl IngestLookup for MemLookup {
    fn next_ticket_number(&self) -> anyhow::Result<TicketNumber> {
        Ok(TicketNumber(3))
    }

    fn ticket_info(&self, ticket: TicketNumber) -> anyhow::Result<Option<TicketInfo>> {
        let (status, last) = match ticket.0 {
            1 => (Status::Open, now()),
            2 => (Status::Closed, now() - chrono::Duration::days(400)),
            _ => return Ok(None),
        };
        Ok(Some(TicketInfo {
            number: ticket,
            subject: "Printer on fire".to_string(),
            status,
            requester: Mailbox::parse(CUSTOMER, Some("Ann")).unwrap(),
            cc: vec![Mailbox::parse("cc@customer.test", None).unwrap()],
            customer_message_ids: vec!["orig@customer.test".to_string()],
            last_activity_at: last,
            queue: "support".into(),
        }))
    }

    fn automatic_mails_since(&self, address: &str, _since: DateTime<Utc>) -> anyhow::Result<u32> {
        Ok(if address.starts_with("busy") { 99 } else { 0 })
    }
}

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap()
}

static PIPELINE: LazyLock<Pipeline> = LazyLock::new(|| {
    let env = [
        ("SUPPORT__ADDRESS", SUPPORT),
        ("SUPPORT__AGENTS", AGENT),
        ("SUPPORT__PLUS_ADDRESSING", "true"),
        ("LIMITS__MAX_MESSAGE_BYTES", "262144"),
    ];
    let env = env
        .into_iter()
        .map(|(k, v)| (format!("POSTDESK__{k}"), v.to_string()))
        .collect();
    let settings = Settings::load_with_env(None, env).expect("fuzz settings are valid");
    Pipeline::new(&settings, "fuzz-secret")
});

static LOOKUP: LazyLock<MemLookup> = LazyLock::new(MemLookup::new);

static SEEDS: LazyLock<Vec<Vec<u8>>> = LazyLock::new(|| {
    corpus_rows()
        .iter()
        .map(|row| row.raw())
        .filter(|raw| raw.len() <= MAX_SEED_BYTES)
        .collect()
});

/// Runs the pipeline; a panic is returned as its message.
fn process(raw: &[u8]) -> Result<(), String> {
    let result = catch_unwind(AssertUnwindSafe(|| PIPELINE.process(raw, &*LOOKUP, now())));
    match result {
        Ok(Ok(outcome)) => check_outcome(&outcome),
        // An error is quarantined by the store: not a crash.
        Ok(Err(_)) => Ok(()),
        Err(panic) => Err(panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic".to_string())),
    }
}

/// What holds of every outcome: a quarantine says why, and nothing
/// automatic goes to a machine's or our own address.
fn check_outcome(outcome: &Outcome) -> Result<(), String> {
    match outcome {
        Outcome::Quarantine { reason, .. } | Outcome::Ignored { reason, .. }
            if reason.trim().is_empty() =>
        {
            Err("a quarantine without a reason".to_string())
        }
        Outcome::Stored(plan) => {
            for mail in &plan.outgoing {
                if let Some(to) = mail.recipients.iter().find(|r| {
                    r.eq_ignore_ascii_case(SUPPORT)
                        || r.to_ascii_lowercase().contains("mailer-daemon")
                }) {
                    return Err(format!("a {} went to {to}", mail.kind.as_str()));
                }
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// One change to a seed message.
#[derive(Debug, Clone)]
enum Mutation {
    Flip(Index, u8),
    Truncate(Index),
    Splice(Index, Vec<u8>),
    DuplicateHeader(Index, usize),
    NestMultipart(usize),
    NestMessage(usize),
    NestHtml(usize),
    LineEndings(u8),
}

/// Tokens that mean something to a MIME parser.
const TOKENS: &[&[u8]] = &[
    b"\r\n\r\n",
    b"\n\n",
    b"\r\n--",
    b"--\r\n",
    b"\0",
    b"=?utf-8?b?",
    b"=?iso-2022-jp?q?=1b$B",
    b"?=",
    b"=\r\n",
    b"\r\nContent-Type: multipart/mixed; boundary=\"\"\r\n",
    b"\r\nContent-Type: message/rfc822\r\n",
    b"\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=x\r\n",
    b"\r\nContent-Transfer-Encoding: base64\r\n",
    b"\r\nContent-Disposition: attachment; filename*0*=utf-8''%E3; filename*1=\r\n",
    b"<blockquote type=\"cite\">",
    b"<div class=\"gmail_quote\">",
    b"<div id=\"divRplyFwdMsg\">",
    b"</div>",
    b"\xff\xfe\xc3",
    b"[Ticket #1]",
    b"#close\r\n#assign x@y\r\n",
];

fn mutation() -> impl Strategy<Value = Mutation> {
    let token = prop_oneof![
        prop::sample::select(TOKENS).prop_map(|t| t.to_vec()),
        prop::collection::vec(any::<u8>(), 1..64),
    ];
    prop_oneof![
        4 => (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::Flip(i, b)),
        2 => any::<Index>().prop_map(Mutation::Truncate),
        4 => (any::<Index>(), token).prop_map(|(i, t)| Mutation::Splice(i, t)),
        2 => (any::<Index>(), 1..200usize).prop_map(|(i, n)| Mutation::DuplicateHeader(i, n)),
        1 => (1..300usize).prop_map(Mutation::NestMultipart),
        1 => (1..300usize).prop_map(Mutation::NestMessage),
        1 => (1..3000usize).prop_map(Mutation::NestHtml),
        1 => (0..3u8).prop_map(Mutation::LineEndings),
    ]
}

fn apply(mut raw: Vec<u8>, mutation: &Mutation) -> Vec<u8> {
    match mutation {
        Mutation::Flip(at, byte) if !raw.is_empty() => {
            let i = at.index(raw.len());
            raw[i] ^= byte | 1;
            raw
        }
        Mutation::Truncate(at) if !raw.is_empty() => {
            raw.truncate(at.index(raw.len()));
            raw
        }
        Mutation::Splice(at, bytes) => {
            let i = at.index(raw.len() + 1);
            raw.splice(i..i, bytes.iter().copied());
            raw
        }
        Mutation::DuplicateHeader(at, times) => duplicate_header(raw, at, *times),
        Mutation::NestMultipart(depth) => nest_multipart(raw, *depth),
        Mutation::NestMessage(depth) => nest_message(raw, *depth),
        Mutation::NestHtml(depth) => nest_html(raw, *depth),
        Mutation::LineEndings(how) => line_endings(&raw, *how),
        _ => raw,
    }
}

/// Repeats one header line of the header section `times` times.
fn duplicate_header(raw: Vec<u8>, at: &Index, times: usize) -> Vec<u8> {
    let head_end = find(&raw, b"\n\n")
        .or_else(|| find(&raw, b"\r\n\r\n"))
        .unwrap_or(raw.len());
    let starts: Vec<usize> = std::iter::once(0)
        .chain((0..head_end).filter(|&i| raw[i] == b'\n').map(|i| i + 1))
        .filter(|&i| i < head_end)
        .collect();
    if starts.is_empty() {
        return raw;
    }
    let start = starts[at.index(starts.len())];
    let end = raw[start..]
        .iter()
        .position(|&b| b == b'\n')
        .map_or(raw.len(), |p| start + p + 1);
    let line = raw[start..end].to_vec();
    let mut out = raw[..end].to_vec();
    for _ in 0..times {
        out.extend_from_slice(&line);
    }
    out.extend_from_slice(&raw[end..]);
    out
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The mail becomes the innermost part of `depth` nested multiparts.
fn nest_multipart(raw: Vec<u8>, depth: usize) -> Vec<u8> {
    let mut out = b"From: ann@customer.test\r\nSubject: nested\r\nMIME-Version: 1.0\r\n".to_vec();
    for level in 0..depth {
        out.extend_from_slice(
            format!("Content-Type: multipart/mixed; boundary=\"n{level}\"\r\n\r\n--n{level}\r\n")
                .as_bytes(),
        );
    }
    out.extend_from_slice(b"Content-Type: message/rfc822\r\n\r\n");
    out.extend_from_slice(&raw);
    for level in (0..depth).rev() {
        out.extend_from_slice(format!("\r\n--n{level}--\r\n").as_bytes());
    }
    out
}

/// The mail attached to itself `depth` times over.
fn nest_message(raw: Vec<u8>, depth: usize) -> Vec<u8> {
    let mut out = raw;
    for level in 0..depth {
        let mut outer = format!(
            "From: fwd{level}@customer.test\r\nSubject: Fwd\r\nMIME-Version: 1.0\r\n\
             Content-Type: message/rfc822\r\n\r\n"
        )
        .into_bytes();
        outer.extend_from_slice(&out);
        out = outer;
    }
    out
}

/// An HTML-only mail whose body is the seed's text inside `depth`
/// nested elements (quote containers among them).
fn nest_html(raw: Vec<u8>, depth: usize) -> Vec<u8> {
    let tags = [
        "div",
        "blockquote type=\"cite\"",
        "div class=\"gmail_quote\"",
        "table><tr><td",
        "p",
    ];
    let mut out = b"From: ann@customer.test\r\nSubject: deep\r\nMIME-Version: 1.0\r\n\
Content-Type: text/html; charset=utf-8\r\n\r\n<html><body>"
        .to_vec();
    for level in 0..depth {
        out.extend_from_slice(format!("<{}>", tags[level % tags.len()]).as_bytes());
    }
    out.extend_from_slice(&raw[..raw.len().min(2000)]);
    out
}

fn line_endings(raw: &[u8], how: u8) -> Vec<u8> {
    let lf: Vec<u8> = raw.iter().copied().filter(|&b| b != b'\r').collect();
    match how {
        0 => lf,
        1 => lf
            .iter()
            .flat_map(|&b| {
                if b == b'\n' {
                    vec![b'\r', b'\n']
                } else {
                    vec![b]
                }
            })
            .collect(),
        _ => lf
            .iter()
            .map(|&b| if b == b'\n' { b'\r' } else { b })
            .collect(),
    }
}

/// Header lines that steer the pipeline down its different paths.
fn shaped_mail() -> impl Strategy<Value = Vec<u8>> {
    let signer = PIPELINE.signer.clone();
    let ours = move |purpose: Purpose, agent: Option<&str>| {
        signer
            .message_id(TicketNumber(1), purpose, agent, "postdesk.test")
            .expect("a signed id")
    };
    let refs = prop::sample::select(vec![
        String::new(),
        format!("In-Reply-To: <{}>\r\n", ours(Purpose::Confirmation, None)),
        format!(
            "References: <{}>\r\n",
            ours(Purpose::Notification, Some(AGENT))
        ),
        "In-Reply-To: <orig@customer.test>\r\n".to_string(),
        "References: <old@customer.test> <orig@customer.test>\r\n".to_string(),
        "In-Reply-To: <pd.1.c.0000.0000@postdesk.test>\r\n".to_string(),
    ]);
    let from = prop::sample::select(vec![
        CUSTOMER,
        AGENT,
        "busy@customer.test",
        "MAILER-DAEMON@mx.example.test",
        "noreply@vendor.test",
        SUPPORT,
        "stranger@else.test",
    ]);
    let extra = prop::sample::subsequence(
        vec![
            "Auto-Submitted: auto-replied\r\n",
            "Precedence: bulk\r\n",
            "List-Id: <x.example.test>\r\n",
            "X-Failed-Recipients: ann@customer.test\r\n",
            "Return-Path: <>\r\n",
            "X-Postdesk-Loop: anything\r\n",
            "Cc: cc@customer.test, support+x@postdesk.test\r\n",
            "Message-ID: <seen@customer.test>\r\n",
            "Content-Type: multipart/report; report-type=delivery-status; boundary=\"r\"\r\n",
        ],
        0..5,
    );
    let subject = prop::sample::select(vec![
        "Printer on fire",
        "Re: [Ticket #1] Printer on fire",
        "AW: [Ticket #2] old",
        "[Ticket #99999999999999999999] overflow",
        "Out of office: Printer",
        "Undeliverable: Printer",
        "",
    ]);
    let body = prop::collection::vec(
        prop::sample::select(vec![
            "#close",
            "#resolve",
            "#pending",
            "#note",
            "#assign bob@postdesk.test",
            "Hello.",
            "> quoted",
            "On Mon, Ann wrote:",
            "-- ",
            "Final-Recipient: rfc822; ann@customer.test",
            "Status: 5.1.1",
            "Action: failed",
            "--r",
            "Content-Type: message/delivery-status",
            "",
        ]),
        0..12,
    );
    (refs, from, extra, subject, body).prop_map(|(refs, from, extra, subject, body)| {
        let mut raw = format!("From: {from}\r\nTo: {SUPPORT}\r\nSubject: {subject}\r\n{refs}");
        for header in extra {
            raw.push_str(header);
        }
        raw.push_str("\r\n");
        raw.push_str(&body.join("\r\n"));
        raw.into_bytes()
    })
}

/// `cases` per property; `FUZZ_CASES=N` runs longer.
fn config(cases: u32) -> Config {
    let cases = std::env::var("FUZZ_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(cases);
    Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    }
}

proptest! {
    #![proptest_config(config(300))]

    #[test]
    fn arbitrary_bytes_never_panic(raw in prop::collection::vec(any::<u8>(), 0..2048)) {
        prop_assert_eq!(process(&raw), Ok(()));
    }

    #[test]
    fn arbitrary_header_like_text_never_panics(
        lines in prop::collection::vec("[ -~]{0,80}", 0..40),
        body in prop::collection::vec(any::<u8>(), 0..512),
    ) {
        let mut raw = lines.join("\r\n").into_bytes();
        raw.extend_from_slice(b"\r\n\r\n");
        raw.extend_from_slice(&body);
        prop_assert_eq!(process(&raw), Ok(()));
    }

    #[test]
    fn mutated_corpus_messages_never_panic(
        seed in any::<Index>(),
        mutations in prop::collection::vec(mutation(), 1..5),
    ) {
        let raw = mutations
            .iter()
            .fold(SEEDS[seed.index(SEEDS.len())].clone(), apply);
        prop_assert_eq!(process(&raw), Ok(()));
    }

    #[test]
    fn shaped_mails_never_panic(raw in shaped_mail()) {
        prop_assert_eq!(process(&raw), Ok(()));
    }
}

/// The crashers the fuzzing found, kept as minimal fixtures.
#[test]
fn fuzz_fixtures_never_panic() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fuzz");
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).expect("tests/fixtures/fuzz exists") {
        let path = entry.expect("a directory entry").path();
        let raw = std::fs::read(&path).expect("a fixture");
        assert_eq!(process(&raw), Ok(()), "{}", path.display());
        count += 1;
    }
    assert!(count > 0, "no fixtures in {}", dir.display());
}

/// Far deeper than the random cases: 50 000 nested HTML elements, 5 000
/// nested multiparts and attached messages, each in well under 2 s.
#[test]
fn very_deep_nesting_never_panics_or_hangs() {
    let seed = b"From: ann@customer.test\r\nSubject: deep\r\n\r\nhello\r\n".to_vec();
    let cases = [
        ("HTML elements", nest_html(seed.clone(), 50_000)),
        ("multiparts", nest_multipart(seed.clone(), 5_000)),
        ("attached messages", nest_message(seed, 5_000)),
    ];
    for (what, raw) in cases {
        let start = std::time::Instant::now();
        assert_eq!(process(&raw), Ok(()), "{what}");
        let took = start.elapsed();
        assert!(took < std::time::Duration::from_secs(2), "{what}: {took:?}");
    }
}
