//! Benchmark of ticket search (issue 13 §3): p50 and p99 of one search
//! over a database of 100,000 tickets (by default).
//!
//! ```text
//! scripts/bench search
//! cargo run --release --example bench_search -- --tickets 100000 --searches 1000
//! ```
//!
//! It fills `target/bench/search-N.db` once through the store's public API
//! (`ingest_batch`, the IMAP path, 1,000 mails a transaction, as
//! `page_bench` does: every ticket its confirmation, every 4th a customer
//! follow-up, every 3rd an agent's reply, every 10th an internal note by
//! `set-status`). The text is drawn from a vocabulary of 300 support words
//! and 6,000 made-up ones with Zipf frequencies, so some words are on most
//! tickets and some on a few. It then times `Store::search_tickets` (the
//! call behind `tickets search` and `/agent?q=`, 20 hits with snippets)
//! for a mix of queries after a warm-up, and prints p50/p99 per kind and
//! overall, as `FIGURE` lines too. It asserts nothing.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::{TimeZone, Utc};
use clap::Parser;

use postdesk::domain::{Status, TicketNumber};
use postdesk::imap::FetchedMail;
use postdesk::ingest::Pipeline;
use postdesk::settings::Settings;
use postdesk::store::{SearchQuery, Store};
use postdesk::tokens::Purpose;

#[derive(Parser)]
#[command(about = "p50/p99 of a ticket search over a filled database")]
struct Args {
    /// Tickets in the database.
    #[arg(long, default_value_t = 100_000)]
    tickets: u32,
    /// The database (filled if it holds fewer tickets).
    #[arg(long)]
    db: Option<PathBuf>,
    /// Searches timed (after 100 of warm-up).
    #[arg(long, default_value_t = 1_000)]
    searches: u32,
    /// Hits per search.
    #[arg(long, default_value_t = 20)]
    limit: usize,
}

const AGENT: &str = "agent@bench.test";
const BATCH: u32 = 1_000;
const MADE_UP_WORDS: usize = 6_000;

const SUPPORT_WORDS: &str = "printer invoice password login account refund order delivery \
    shipping package broken error crash update install license payment card bank transfer \
    screen laptop phone battery charger cable network wifi router vpn email mailbox outlook \
    calendar meeting report export import database backup restore server cloud storage quota \
    upgrade downgrade subscription plan price discount coupon voucher contract cancel renew \
    address customer support ticket urgent slow fast timeout website browser chrome firefox \
    safari cookie cache session token key certificate expired renewal warranty repair replace \
    return exchange damaged missing wrong size color model serial number firmware driver \
    software hardware keyboard mouse monitor display resolution sound audio microphone camera \
    video stream upload download file folder document spreadsheet presentation pdf scan fax \
    toner cartridge paper jam tray floor office building room desk chair light heating \
    cooling door badge access permission admin user group role profile settings language \
    timezone notification alert reminder sync mobile app android ios tablet watch bluetooth \
    usb port adapter dock power outage restart reboot freeze hang blank black white red green \
    blue yellow message chat call voicemail headset speaker volume mute echo noise delay lag \
    latency bandwidth speed quality resolution backup schedule weekly monthly daily yearly \
    invoice receipt tax vat statement balance credit debit overdue reminder dunning collection \
    shipment tracking courier parcel warehouse stock inventory supplier vendor purchase quote \
    offer proposal demo trial onboarding training manual guide documentation faq question \
    answer problem issue bug feature request feedback complaint praise thanks hello regards \
    monday tuesday wednesday thursday friday morning afternoon evening yesterday today tomorrow";

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let db = args.db.clone().unwrap_or_else(|| {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("target/bench")
            .join(format!("search-{}.db", args.tickets))
    });
    if let Some(dir) = db.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let settings = bench_settings(&db)?;
    let opened = Instant::now();
    let store = Store::open(&db)?;
    println!(
        "opened (migrations included) in {:.1} s",
        opened.elapsed().as_secs_f64()
    );
    let pipeline = Pipeline::new(&settings, "search-bench-secret");
    let words = Words::new();
    fill(&store, &pipeline, &words, args.tickets)?;
    let size = std::fs::metadata(&db).map(|m| m.len()).unwrap_or(0);
    println!(
        "database: {} ({} tickets, {:.0} MB)",
        db.display(),
        ticket_count(&store)?,
        size as f64 / 1e6
    );
    measure(&store, &words, &args)
}

fn bench_settings(db: &Path) -> anyhow::Result<Settings> {
    let env = [
        ("SUPPORT__ADDRESS", "tickets@bench.test".to_string()),
        ("SUPPORT__NAME", "Bench Support".to_string()),
        ("SUPPORT__AGENTS", AGENT.to_string()),
        ("LIMITS__AUTO_REPLIES_PER_HOUR", "1000000000".to_string()),
        ("DATABASE__PATH", db.display().to_string()),
    ];
    let env = env
        .into_iter()
        .map(|(k, v)| (format!("POSTDESK__{k}"), v))
        .collect();
    Ok(Settings::load_with_env(None, env)?)
}

fn ticket_count(store: &Store) -> anyhow::Result<i64> {
    Ok(store.store_metrics()?.tickets_by_status.values().sum())
}

/// A small deterministic generator (xorshift64*), so every run writes and
/// asks the same.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// The vocabulary, most frequent first, with its Zipf cumulative weights.
struct Words {
    list: Vec<String>,
    cumulative: Vec<f64>,
}

impl Words {
    fn new() -> Words {
        let mut list: Vec<String> = SUPPORT_WORDS
            .split_whitespace()
            .map(str::to_string)
            .collect();
        list.dedup();
        let syllables = [
            "ka", "lo", "mi", "ra", "te", "su", "no", "vi", "da", "pe", "zu", "ho", "ri", "ga",
            "be", "to", "fa", "ne", "qui", "sto",
        ];
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        while list.len() < SUPPORT_WORDS.split_whitespace().count() + MADE_UP_WORDS {
            let n = 2 + rng.below(3);
            let word: String = (0..n)
                .map(|_| syllables[rng.below(syllables.len())])
                .collect();
            if !list.contains(&word) {
                list.push(word);
            }
        }
        let mut total = 0.0;
        let cumulative = (1..=list.len())
            .map(|rank| {
                total += 1.0 / rank as f64;
                total
            })
            .collect();
        Words { list, cumulative }
    }

    /// A word with Zipf frequencies (rank 1 most often).
    fn zipf(&self, rng: &mut Rng) -> &str {
        let total = self.cumulative.last().copied().unwrap_or(1.0);
        let x = (rng.next() as f64 / u64::MAX as f64) * total;
        let i = self.cumulative.partition_point(|&c| c < x);
        &self.list[i.min(self.list.len() - 1)]
    }

    /// Any word, each as likely: most are rare in the text.
    fn uniform(&self, rng: &mut Rng) -> &str {
        &self.list[rng.below(self.list.len())]
    }

    fn sentence(&self, rng: &mut Rng, n: usize) -> String {
        (0..n).map(|_| self.zipf(rng)).collect::<Vec<_>>().join(" ")
    }
}

/// Fills the database up to `tickets` through `ingest_batch`.
fn fill(store: &Store, pipeline: &Pipeline, words: &Words, tickets: u32) -> anyhow::Result<()> {
    let have = u32::try_from(ticket_count(store)?).unwrap_or(0);
    if have >= tickets {
        return Ok(());
    }
    let started = Instant::now();
    let mut uid = store.checkpoint("bench")?.map(|c| c.last_uid).unwrap_or(0);
    let base = Utc
        .with_ymd_and_hms(2024, 1, 1, 8, 0, 0)
        .single()
        .context("a start date")?;
    let mut next = have + 1;
    while next <= tickets {
        let last = (next + BATCH - 1).min(tickets);
        let mut mails = Vec::new();
        for n in next..=last {
            uid += 1;
            mails.push(FetchedMail::whole(uid, new_ticket_mail(words, n)));
        }
        for n in next..=last {
            if n % 4 == 0 {
                uid += 1;
                mails.push(FetchedMail::whole(uid, follow_up_mail(words, n)));
            }
            if n % 3 == 0 {
                uid += 1;
                mails.push(FetchedMail::whole(
                    uid,
                    agent_reply_mail(pipeline, words, n)?,
                ));
            }
        }
        let now = base + chrono::Duration::minutes(i64::from(next));
        store.ingest_batch(pipeline, "bench", 1, &mails[..], now)?;
        for n in (next..=last).filter(|n| n % 10 == 0) {
            let note = words.sentence(&mut Rng(u64::from(n) * 31 + 7), 12);
            store.set_status(
                pipeline,
                TicketNumber(i64::from(n)),
                Status::Pending,
                Some(&note),
                now,
            )?;
        }
        next = last + 1;
        if last.is_multiple_of(10 * BATCH) || last == tickets {
            println!(
                "filled {last} of {tickets} tickets in {:.0} s",
                started.elapsed().as_secs_f64()
            );
        }
    }
    Ok(())
}

/// Ticket `n`'s subject and first mail's text.
fn ticket_text(words: &Words, n: u64) -> (String, String) {
    let mut rng = Rng(n * 0x1_0000_0001 + 1);
    let length = 3 + rng.below(4);
    let subject = words.sentence(&mut rng, length);
    let length = 30 + rng.below(60);
    (subject, words.sentence(&mut rng, length))
}

fn new_ticket_mail(words: &Words, n: u32) -> Vec<u8> {
    let (subject, body) = ticket_text(words, u64::from(n));
    format!(
        "From: Customer {c} <customer{c}@bench.test>\r\nTo: tickets@bench.test\r\n\
         Subject: {subject}\r\nMessage-ID: <search-{n}@customer.bench.test>\r\n\
         Date: Mon, 1 Jan 2024 08:00:00 +0000\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n\
         Hello,\r\n\r\n{body}\r\n\r\nThanks,\r\nCustomer {c}\r\n",
        c = n % 2_000,
    )
    .into_bytes()
}

fn follow_up_mail(words: &Words, n: u32) -> Vec<u8> {
    let mut rng = Rng(u64::from(n) * 0x3_0000_0005 + 3);
    let length = 10 + rng.below(30);
    let body = words.sentence(&mut rng, length);
    format!(
        "From: Customer {c} <customer{c}@bench.test>\r\nTo: tickets@bench.test\r\n\
         Subject: Re: [Ticket #{n}]\r\nMessage-ID: <search-{n}-followup@customer.bench.test>\r\n\
         In-Reply-To: <search-{n}@customer.bench.test>\r\n\
         Date: Mon, 1 Jan 2024 09:00:00 +0000\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n\
         {body}\r\n",
        c = n % 2_000,
    )
    .into_bytes()
}

fn agent_reply_mail(pipeline: &Pipeline, words: &Words, n: u32) -> anyhow::Result<Vec<u8>> {
    let signed = pipeline.signer.message_id(
        TicketNumber(i64::from(n)),
        Purpose::Notification,
        Some(AGENT),
        &pipeline.domain,
    )?;
    let mut rng = Rng(u64::from(n) * 0x7_0000_000b + 5);
    let length = 15 + rng.below(30);
    let body = words.sentence(&mut rng, length);
    Ok(format!(
        "From: Alice Agent <{AGENT}>\r\nTo: tickets@bench.test\r\n\
         Subject: Re: [Ticket #{n}]\r\nMessage-ID: <search-{n}-agent@bench.test>\r\n\
         In-Reply-To: <{signed}>\r\nDate: Mon, 1 Jan 2024 10:00:00 +0000\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\r\nHello,\r\n\r\n{body}\r\n"
    )
    .into_bytes())
}

/// The kinds of query timed, in the mix's proportions (of 10).
const KINDS: [(&str, usize); 5] = [
    ("one common word", 3),
    ("one rare word", 2),
    ("two words", 3),
    ("a phrase", 1),
    ("a prefix", 1),
];

fn query_of(kind: &str, words: &Words, rng: &mut Rng, tickets: u32) -> String {
    match kind {
        "one common word" => words.zipf(rng).to_string(),
        "one rare word" => words.uniform(rng).to_string(),
        "two words" => format!("{} {}", words.zipf(rng), words.zipf(rng)),
        "a phrase" => {
            // Two neighbours from a ticket's own text.
            let n = 1 + rng.below(tickets as usize) as u64;
            let (_, body) = ticket_text(words, n);
            let pair: Vec<&str> = body.split(' ').skip(3).take(2).collect();
            format!("\"{}\"", pair.join(" "))
        }
        _ => {
            let word = words.zipf(rng);
            format!("{}*", word.chars().take(4).collect::<String>())
        }
    }
}

fn measure(store: &Store, words: &Words, args: &Args) -> anyhow::Result<()> {
    let mut rng = Rng(0x5eed);
    let mix: Vec<&str> = KINDS
        .iter()
        .flat_map(|(k, n)| std::iter::repeat_n(*k, *n))
        .collect();
    let mut timed: Vec<(&str, Duration, usize)> = Vec::new();
    for i in 0..(100 + args.searches) {
        let kind = mix[rng.below(mix.len())];
        let text = query_of(kind, words, &mut rng, args.tickets);
        let query = SearchQuery::parse(&text)?;
        let started = Instant::now();
        let hits = store.search_tickets(&query, args.limit)?;
        let took = started.elapsed();
        if i >= 100 {
            timed.push((kind, took, hits.len()));
        }
    }
    let all: Vec<Duration> = timed.iter().map(|t| t.1).collect();
    for (kind, _) in KINDS {
        let of_kind: Vec<Duration> = timed.iter().filter(|t| t.0 == kind).map(|t| t.1).collect();
        let hits: usize = timed.iter().filter(|t| t.0 == kind).map(|t| t.2).sum();
        let (p50, p99) = percentiles(of_kind.clone());
        println!(
            "{kind:>16}: {:>4} searches, p50 {:>7.2} ms, p99 {:>7.2} ms, {:.1} hits on average",
            of_kind.len(),
            ms(p50),
            ms(p99),
            hits as f64 / of_kind.len().max(1) as f64
        );
    }
    let (p50, p99) = percentiles(all.clone());
    let max = all.iter().max().copied().unwrap_or_default();
    println!(
        "all {} searches at {} tickets: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        all.len(),
        args.tickets,
        ms(p50),
        ms(p99),
        ms(max)
    );
    println!(
        "FIGURE\tsearch p50 / p99 at {} tickets\t{:.2} / {:.2} ms\t-\t-",
        args.tickets,
        ms(p50),
        ms(p99)
    );
    Ok(())
}

fn percentiles(mut times: Vec<Duration>) -> (Duration, Duration) {
    if times.is_empty() {
        return (Duration::ZERO, Duration::ZERO);
    }
    times.sort_unstable();
    let at = |q: f64| times[((times.len() as f64 * q).ceil() as usize).clamp(1, times.len()) - 1];
    (at(0.50), at(0.99))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
