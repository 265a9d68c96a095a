//! The page benchmark's database: 100,000 (by default) tickets filled
//! through the store's public API (`ingest_batch`, the IMAP path, one
//! transaction per 1,000 mails): every ticket gets its confirmation, every
//! 4th a customer follow-up with a quote, every 3rd an agent's reply
//! answering our signed Message-ID. It adds to what is there; it serves
//! and measures nothing.

use std::time::Instant;

use anyhow::{Context, bail};
use chrono::{TimeZone, Utc};

use postdesk::domain::TicketNumber;
use postdesk::imap::FetchedMail;
use postdesk::ingest::Pipeline;
use postdesk::store::Store;
use postdesk::tokens::Purpose;

/// The one agent of the benchmark's support address.
pub const AGENT: &str = "agent@bench.test";
const BATCH: usize = 1_000;
/// Ticket links sampled over the range (and as many requester links).
pub const SAMPLED_LINKS: u32 = 1_000;

pub fn ticket_count(store: &Store) -> anyhow::Result<i64> {
    Ok(store.store_metrics()?.tickets_by_status.values().sum())
}

/// Fills the database up to `tickets` through `ingest_batch`.
pub fn fill(store: &Store, pipeline: &Pipeline, tickets: u32) -> anyhow::Result<()> {
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
        let last = (next + BATCH as u32 - 1).min(tickets);
        // Each mail is dated when its batch is stored: a mail older than
        // `confirm_max_age_hours` gets no confirmation, and with it no link
        // for the benchmark to sample.
        let now = base + chrono::Duration::minutes(i64::from(next));
        let date = now.to_rfc2822();
        let mut mails = Vec::with_capacity(BATCH * 2);
        for n in next..=last {
            uid += 1;
            mails.push(FetchedMail::whole(uid, new_ticket_mail(n, &date)));
        }
        // Follow-ups come after their tickets, in the same batch.
        for n in next..=last {
            if n % 4 == 0 {
                uid += 1;
                mails.push(FetchedMail::whole(uid, follow_up_mail(n, &date)));
            }
            if n % 3 == 0 {
                uid += 1;
                mails.push(FetchedMail::whole(
                    uid,
                    agent_reply_mail(pipeline, n, &date)?,
                ));
            }
        }
        store.ingest_batch(pipeline, "bench", 1, &mails[..], now)?;
        next = last + 1;
        if (last as usize).is_multiple_of(10 * BATCH) || last == tickets {
            println!(
                "filled {last} of {tickets} tickets in {:.0} s",
                started.elapsed().as_secs_f64()
            );
        }
    }
    Ok(())
}

fn customer(n: u32) -> String {
    format!("customer{}@bench.test", n % 2_000)
}

fn new_ticket_mail(n: u32, date: &str) -> Vec<u8> {
    format!(
        "From: Customer {c} <{addr}>\r\nTo: tickets@bench.test\r\n\
         Subject: Request {n}: the printer on floor {f} prints blank pages\r\n\
         Message-ID: <bench-{n}@customer.bench.test>\r\nDate: {date}\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\r\n\
         Hello,\r\n\r\nsince this morning the printer on floor {f} prints blank pages.\r\n\
         We tried a new cartridge and turning it off and on again.\r\n\r\nThanks,\r\nCustomer {c}\r\n",
        c = n % 2_000,
        addr = customer(n),
        f = n % 7
    )
    .into_bytes()
}

fn follow_up_mail(n: u32, date: &str) -> Vec<u8> {
    format!(
        "From: Customer {c} <{addr}>\r\nTo: tickets@bench.test\r\n\
         Subject: Re: [Ticket #{n}] Request {n}\r\n\
         Message-ID: <bench-{n}-followup@customer.bench.test>\r\n\
         In-Reply-To: <bench-{n}@customer.bench.test>\r\n\
         Date: {date}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n\
         It happens on the second floor too.\r\n\r\n\
         On Mon, 1 Jan 2024 at 08:00, Customer {c} wrote:\r\n\
         > since this morning the printer prints blank pages.\r\n",
        c = n % 2_000,
        addr = customer(n),
    )
    .into_bytes()
}

fn agent_reply_mail(pipeline: &Pipeline, n: u32, date: &str) -> anyhow::Result<Vec<u8>> {
    let signed = pipeline.signer.message_id(
        TicketNumber(i64::from(n)),
        Purpose::Notification,
        Some(AGENT),
        &pipeline.domain,
    )?;
    Ok(format!(
        "From: Alice Agent <{AGENT}>\r\nTo: tickets@bench.test\r\n\
         Subject: Re: [Ticket #{n}] New request\r\nMessage-ID: <bench-{n}-agent@bench.test>\r\n\
         In-Reply-To: <{signed}>\r\nDate: {date}\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\r\n\
         Hello,\r\n\r\nplease try the driver from our intranet and tell us if it helps.\r\n"
    )
    .into_bytes())
}

/// Links from the confirmations of tickets spread over the range: each
/// confirmation carries one ticket link (`/t/`) and one requester link
/// (`/r/`). Requester links come from a second walk with a step prime to
/// the 2,000 customers, so that they name many requesters, not a few.
pub fn sample_links(store: &Store, tickets: u32) -> anyhow::Result<(Vec<String>, Vec<String>)> {
    let step = (tickets / SAMPLED_LINKS).max(1);
    let mut ticket_links = Vec::new();
    let mut walked = 0;
    for n in (1..=tickets).step_by(step as usize) {
        walked += 1;
        if let Some(link) = confirmation_link(store, n, "/t/")? {
            ticket_links.push(link);
        }
    }
    // Every ticket of a desk this fill made has its confirmation. Earlier
    // fills dated every mail on one day, so only the tickets of the first
    // two days had one (the confirmation age limit), and the pages were
    // measured over 30 tickets at the start of the table.
    if ticket_links.len() < walked {
        bail!(
            "only {} of {walked} sampled tickets have a confirmation with a link: the \
             database was filled by an older page_bench; remove it (target/bench/page-N.db) \
             and run again",
            ticket_links.len()
        );
    }
    let mut requester_links = Vec::new();
    for n in (1..=tickets).step_by(97).take(SAMPLED_LINKS as usize) {
        if let Some(link) = confirmation_link(store, n, "/r/")? {
            requester_links.push(link);
        }
    }
    if ticket_links.is_empty() || requester_links.is_empty() {
        bail!("no ticket or requester links found in the confirmations");
    }
    Ok((ticket_links, requester_links))
}

/// The `/t/TOKEN` or `/r/TOKEN` link of ticket `n`'s confirmation.
fn confirmation_link(store: &Store, n: u32, prefix: &str) -> anyhow::Result<Option<String>> {
    let Some(detail) = store.ticket_detail(TicketNumber(i64::from(n)))? else {
        return Ok(None);
    };
    let token = detail
        .messages
        .iter()
        .filter(|m| m.kind == "confirmation")
        .find_map(|m| m.text.split(prefix).nth(1))
        .map(|rest| {
            rest.chars()
                .take_while(char::is_ascii_hexdigit)
                .collect::<String>()
        });
    Ok(token.map(|token| format!("{prefix}{token}")))
}
