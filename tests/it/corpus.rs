//! The real-mail corpus in `../shared/corpus` (233 messages from other
//! projects' test suites, read in place and never copied: their licences
//! vary) through the whole ingest into a real store: every message lands
//! somewhere (a ticket, a follow-up, the quarantine with a reason, kept
//! apart as ignored machine mail with a reason, or a genuine duplicate)
//! within 2 s, nothing automatic goes to a machine (list mail makes a
//! ticket and tells the agents, nobody else: issue 12 §4), and the
//! upstream labels of MANIFEST.tsv (machine kinds, texts, subjects,
//! attachments) hold. Prints a score table.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};
use sha2::{Digest, Sha256};

use postdesk::domain::TicketNumber;
use postdesk::ingest::Pipeline;
use postdesk::ingest::classify::{Classification, MailKind, classify};
use postdesk::ingest::parse::{ParsedMail, parse};
use postdesk::settings::Settings;
use postdesk::store::{AttachmentView, IngestReport, Kept, MailSource, OutboxItem, Store};

use crate::support::{connect_store, temp_dir, test_database};

pub const CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/corpus");
const MAX_TIME: Duration = Duration::from_secs(2);
const AGENT: &str = "agent@postdesk.test";
/// How long to wait for one ingest before calling it a hang.
const HANG: Duration = Duration::from_secs(30);
/// Labelled `is_bounce=no` / `is_auto_reply=no` mails read right today; a
/// change that reads fewer fails (the `yes` labels must all be right).
const MIN_NEGATIVE_LABELS_RIGHT: usize = 31;

/// One row of MANIFEST.tsv.
#[derive(Debug, Clone)]
pub struct CorpusRow {
    pub file: String,
    pub category: String,
    pub labels: Vec<(String, String)>,
}

impl CorpusRow {
    /// The first value of a label, e.g. `is_bounce` → `yes`.
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// `yes`, `yes (machine-generated)`, `true` → true; `no (delay)` → false.
    pub fn flag(&self, key: &str) -> Option<bool> {
        let word = self.label(key)?.split_whitespace().next()?;
        match word.to_ascii_lowercase().as_str() {
            "yes" | "true" => Some(true),
            "no" | "false" => Some(false),
            _ => None,
        }
    }

    pub fn raw(&self) -> Vec<u8> {
        let path = Path::new(CORPUS).join(&self.file);
        std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }
}

/// Every row of the manifest, in order.
pub fn corpus_rows() -> Vec<CorpusRow> {
    let path = Path::new(CORPUS).join("MANIFEST.tsv");
    let manifest = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "the shared corpus is missing at {} ({e}); it is read in place, never copied",
            path.display()
        )
    });
    manifest
        .lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let cols: Vec<&str> = line.split('\t').collect();
            CorpusRow {
                file: cols[0].to_string(),
                category: cols.get(1).copied().unwrap_or("").to_string(),
                labels: parse_labels(&unquote(cols.get(5).copied().unwrap_or(""))),
            }
        })
        .collect()
}

/// A TSV field written CSV-style: `"a ""b"""` → `a "b"`.
fn unquote(field: &str) -> String {
    match field.strip_prefix('"').and_then(|f| f.strip_suffix('"')) {
        Some(inner) => inner.replace("\"\"", "\""),
        None => field.to_string(),
    }
}

fn parse_labels(field: &str) -> Vec<(String, String)> {
    field
        .split(';')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

/// A store in a temp dir and the pipeline the daemon would build.
fn corpus_settings(dir: &Path) -> Settings {
    let env = [
        ("SUPPORT__ADDRESS", "support@postdesk.test".to_string()),
        ("SUPPORT__AGENTS", AGENT.to_string()),
    ];
    let env = env
        .into_iter()
        .chain(test_database(&dir.join("corpus.db")).env())
        .map(|(k, v)| (format!("POSTDESK__{k}"), v))
        .collect();
    Settings::load_with_env(None, env).expect("corpus settings are valid")
}

type Job = (Vec<u8>, DateTime<Utc>);
type Done = (anyhow::Result<IngestReport>, Duration);

/// Ingests on a thread of its own, so that a hang fails the test with the
/// file's name instead of hanging it.
struct Ingester {
    jobs: mpsc::Sender<Job>,
    done: mpsc::Receiver<Done>,
}

impl Ingester {
    fn start(store: Arc<Store>, pipeline: Pipeline) -> Ingester {
        let (jobs, job_rx) = mpsc::channel::<Job>();
        let (done_tx, done) = mpsc::channel::<Done>();
        std::thread::spawn(move || {
            for (raw, now) in job_rx {
                let start = Instant::now();
                let report = store.ingest_mail(&pipeline, raw.as_slice(), &MailSource::Pipe, now);
                if done_tx.send((report, start.elapsed())).is_err() {
                    break;
                }
            }
        });
        Ingester { jobs, done }
    }

    fn ingest(&self, file: &str, raw: Vec<u8>, now: DateTime<Utc>) -> Done {
        self.jobs.send((raw, now)).expect("the ingest thread runs");
        self.done
            .recv_timeout(HANG)
            .unwrap_or_else(|_| panic!("{file}: ingest did not finish within {HANG:?} (a hang)"))
    }
}

/// x right out of y.
#[derive(Default, Clone, Copy)]
struct Tally {
    right: usize,
    total: usize,
}

impl Tally {
    fn add(&mut self, ok: bool) {
        self.total += 1;
        self.right += usize::from(ok);
    }

    fn show(&self) -> String {
        if self.total == 0 {
            "-".to_string()
        } else {
            format!("{}/{}", self.right, self.total)
        }
    }
}

#[derive(Default)]
struct CategoryScore {
    messages: usize,
    landed: usize,
    new_tickets: usize,
    follow_ups: usize,
    /// Faults: could not be processed.
    quarantined: usize,
    /// Machine mail that answers no ticket, kept apart.
    ignored: usize,
    duplicates: usize,
    classified: Tally,
    texts: Tally,
    attachments: Tally,
    clean_text: Tally,
    kinds: BTreeMap<&'static str, usize>,
}

fn kind_name(kind: Option<&MailKind>) -> &'static str {
    match kind {
        Some(MailKind::Human) => "Human",
        Some(MailKind::AutoReply) => "AutoReply",
        Some(MailKind::Bounce(_)) => "Bounce",
        Some(MailKind::List) => "List",
        Some(MailKind::Bulk) => "Bulk",
        Some(MailKind::OwnMail) => "OwnMail",
        None => "Unparsable",
    }
}

/// The message kind the store keeps for a classification.
fn stored_kind(kind: &MailKind) -> &'static str {
    match kind {
        MailKind::Human => "customer",
        MailKind::AutoReply | MailKind::OwnMail => "auto_reply",
        MailKind::Bounce(_) => "bounce",
        MailKind::List | MailKind::Bulk => "list",
    }
}

/// What one message came to, as the checks read it.
struct Landed {
    ticket: Option<TicketNumber>,
    /// The kind it is stored as, on a ticket.
    kind: Option<String>,
    text: String,
    attachments: Vec<AttachmentView>,
    /// Read from a store of its own (a duplicate's own landing).
    alone: bool,
}

#[test]
fn every_corpus_message_lands_somewhere_and_machines_get_nothing() {
    let rows = corpus_rows();
    assert!(rows.len() >= 233, "only {} corpus messages", rows.len());
    let dir = temp_dir();
    let settings = corpus_settings(dir.path());
    let store = Arc::new(connect_store(&settings.database));
    let pipeline = Pipeline::new(&settings, "secret");
    let ingester = Ingester::start(store.clone(), pipeline.clone());
    let base = Utc.with_ymd_and_hms(2026, 3, 1, 8, 0, 0).unwrap();

    let mut failures: Vec<String> = Vec::new();
    let mut wrong_labels: Vec<String> = Vec::new();
    let mut negative = Tally::default();
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    let mut scores: BTreeMap<String, CategoryScore> = BTreeMap::new();
    let mut times: Vec<(Duration, String)> = Vec::new();
    let mut unclean: Vec<String> = Vec::new();
    let mut classes: BTreeMap<&'static str, usize> = BTreeMap::new();

    for (i, row) in rows.iter().enumerate() {
        let file = row.file.as_str();
        let raw = row.raw();
        // Each mail its own minute: what it queued is told apart by time.
        let now = base + chrono::Duration::minutes(i as i64);
        let parsed = parse(&raw).ok();
        let hash_key = format!("sha256:{}", hex::encode(Sha256::digest(&raw)));
        let key = parsed
            .as_ref()
            .map(ParsedMail::dedup_key)
            .unwrap_or_else(|| hash_key.clone());
        let class = parsed.as_ref().map(|m| classify(m, &pipeline.own));
        let kind = class.as_ref().map(|c| &c.kind);

        let (report, took) = ingester.ingest(file, raw.clone(), now);
        times.push((took, file.to_string()));
        if took >= MAX_TIME {
            failures.push(format!("{file}: took {took:?}, more than {MAX_TIME:?}"));
        }
        let score = scores.entry(row.category.clone()).or_default();
        score.messages += 1;
        *score.kinds.entry(kind_name(kind)).or_default() += 1;
        // Everything this mail queued (each mail is claimed right after it).
        let queued = store
            .claim_outbox(now + chrono::Duration::days(3650), 100_000)
            .expect("the outbox reads");

        // Issue 12 §4: only machine mail is ignored; a person's mail that
        // lands on no ticket is a fault, in the quarantine.
        if matches!(report, Ok(IngestReport::Ignored { .. }))
            && kind.is_none_or(|k| *k == MailKind::Human)
        {
            failures.push(format!("{file}: ignored, but not machine mail"));
        }
        let landed = match report {
            Err(err) => {
                failures.push(format!("{file}: ingest failed: {err:#}"));
                None
            }
            Ok(report) => {
                let keys = (key.as_str(), hash_key.as_str());
                let landed = check_landing(&store, &report, keys, parsed.as_ref(), &seen, score);
                match (&report, landed) {
                    (IngestReport::Duplicate, Ok(_)) => {
                        land_alone(&pipeline, &raw, keys, parsed.as_ref(), now)
                    }
                    (_, landed) => landed,
                }
                .map_err(|why| failures.push(format!("{file}: {why}")))
                .ok()
            }
        };
        seen.entry(key.clone()).or_insert_with(|| file.to_string());
        if let (Some(class), Some(landed)) = (&class, &landed) {
            // A duplicate counts as what it became in a store of its own.
            if let Some(name) = section4_class(class, landed.ticket.is_some()) {
                *classes.entry(name).or_default() += 1;
            }
        }
        if let Some(landed) = &landed {
            score.landed += 1;
            if let (Some(stored), Some(kind)) = (&landed.kind, kind)
                && stored != stored_kind(kind)
            {
                failures.push(format!(
                    "{file}: stored as {stored}, classified {}",
                    stored_kind(kind)
                ));
            }
            if let Some(mail) = &parsed {
                check_attachments_stored(mail, landed)
                    .unwrap_or_else(|why| failures.push(format!("{file}: {why}")));
            }
        }

        // Rule 3: nothing automatic to a machine, and nothing at all is
        // caused by a machine's mail.
        let machine_label = match (row.flag("is_auto_reply"), row.flag("is_bounce")) {
            (Some(true), _) | (_, Some(true)) => true,
            (Some(false), _) | (_, Some(false)) => false,
            _ => ["auto-replies", "bounces"].contains(&row.category.as_str()),
        };
        let is_machine = kind.is_some_and(|k| *k != MailKind::Human);
        // List mail tells the agents (issue 12 §4), and nobody else.
        let to_agents_only = kind.is_some_and(|k| matches!(k, MailKind::List | MailKind::Bulk));
        if machine_label || is_machine {
            let caused = Caused {
                queued: &queued,
                landed: landed.as_ref(),
                now,
            };
            let nothing_at_all = is_machine && !to_agents_only;
            check_nothing_automatic(&store, parsed.as_ref(), &caused, nothing_at_all)
                .unwrap_or_else(|why| failures.push(format!("{file}: {why}")));
        }
        if to_agents_only && let Some(row) = queued.iter().find(|r| r.recipients != [AGENT]) {
            failures.push(format!(
                "{file}: list mail queued {} to {:?}, not only to the agents",
                row.message_id, row.recipients
            ));
        }

        // The labels: machine kinds.
        let got = kind_name(kind);
        let why = class.as_ref().map(|c| c.reason.as_str()).unwrap_or("");
        if let Some(want) = expected_kind(row) {
            let ok = want.matches(got);
            score.classified.add(ok);
            if !ok {
                wrong_labels.push(format!("{file}: want {want:?}, got {got} ({why})"));
            }
        }
        for (key, name) in [("is_auto_reply", "AutoReply"), ("is_bounce", "Bounce")] {
            match row.flag(key) {
                Some(true) if got != name => {
                    failures.push(format!("{file}: labelled {key}=yes, got {got} ({why})"))
                }
                Some(false) => negative.add(got != name),
                _ => {}
            }
        }

        // The labels: texts, subjects, attachments.
        if let Some(landed) = &landed {
            let text = text_checks(row, parsed.as_ref(), landed);
            for (ok, what) in &text {
                score.texts.add(*ok);
                if !ok {
                    wrong_labels.push(format!("{file}: {what}"));
                }
            }
            for (ok, what) in attachment_checks(row, parsed.as_ref(), landed) {
                score.attachments.add(ok);
                if !ok {
                    wrong_labels.push(format!("{file}: {what}"));
                }
            }
            if parsed.is_some() {
                let clean = !landed.text.contains('\u{FFFD}');
                score.clean_text.add(clean);
                if !clean {
                    unclean.push(file.to_string());
                }
            }
        }
    }

    print_table(&scores, &times, negative);
    println!("issue 12 §4 classes: {classes:?}");
    println!("texts with U+FFFD: {}", unclean.join(", "));
    println!("label mismatches ({}):", wrong_labels.len());
    for wrong in &wrong_labels {
        println!("    {wrong}");
    }
    assert!(
        failures.is_empty(),
        "{} corpus failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
    // Issue 12 §4: every list mail of the corpus makes a ticket (10 today;
    // they were all quarantined before).
    assert_eq!(classes.get("list mail off a ticket"), None, "{classes:?}");
    assert!(
        classes.get("list mail on a ticket").copied().unwrap_or(0) >= 10,
        "{classes:?}"
    );
    assert!(
        negative.right >= MIN_NEGATIVE_LABELS_RIGHT,
        "fewer `no` labels read right: {}",
        negative.show()
    );
    let total = |f: fn(&CategoryScore) -> Tally| {
        scores.values().fold(Tally::default(), |mut t, s| {
            t.right += f(s).right;
            t.total += f(s).total;
            t
        })
    };
    let texts = total(|s| s.texts);
    let attachments = total(|s| s.attachments);
    assert_eq!(
        texts.right,
        texts.total,
        "text labels: {}, see above",
        texts.show()
    );
    assert_eq!(
        attachments.right,
        attachments.total,
        "attachment labels: {}, see above",
        attachments.show()
    );
}

/// The class of issue 12 §4 a mail falls in, for the score table.
fn section4_class(class: &Classification, on_ticket: bool) -> Option<&'static str> {
    let reason = class.reason.as_str();
    match (&class.kind, on_ticket) {
        (MailKind::List, true) => Some("list mail on a ticket"),
        (MailKind::List, false) => Some("list mail off a ticket"),
        (MailKind::Bulk, true) => Some("bulk mail on a ticket"),
        (MailKind::Bulk, false) => Some("bulk mail kept apart"),
        (MailKind::AutoReply, _) if reason.contains("challenge-response") => {
            Some("challenge-response")
        }
        (MailKind::AutoReply, _) if ["RT", "OTRS", "X-Loop"].iter().any(|w| reason.contains(w)) => {
            Some("other helpdesk")
        }
        (MailKind::Human, _) if reason.contains("group alias") => Some("own group alias"),
        _ => None,
    }
}

/// Where the mail went; an error says why that is not "somewhere".
fn check_landing(
    store: &Store,
    report: &IngestReport,
    (key, hash_key): (&str, &str),
    parsed: Option<&ParsedMail>,
    seen: &BTreeMap<String, String>,
    score: &mut CategoryScore,
) -> Result<Landed, String> {
    let on_ticket = |number: TicketNumber| -> Result<Landed, String> {
        let explained = store
            .explain(key)
            .map_err(|e| format!("explain failed: {e:#}"))?
            .ok_or_else(|| format!("reported on ticket #{number} but no message {key}"))?;
        if explained.ticket != number {
            return Err(format!(
                "reported on ticket #{number}, stored on #{}",
                explained.ticket
            ));
        }
        if explained.reason.trim().is_empty() {
            return Err("stored without a threading reason".to_string());
        }
        let detail = store
            .ticket_detail(number)
            .map_err(|e| format!("{e:#}"))?
            .ok_or_else(|| format!("ticket #{number} does not exist"))?;
        let message = detail
            .messages
            .into_iter()
            .find(|m| m.message_id == key)
            .ok_or_else(|| format!("ticket #{number} does not show {key}"))?;
        Ok(Landed {
            ticket: Some(number),
            kind: Some(explained.kind),
            text: message.text,
            attachments: message.attachments,
            alone: false,
        })
    };
    let off_ticket = || Landed {
        ticket: None,
        kind: None,
        text: parsed.map(|m| m.text.clone()).unwrap_or_default(),
        attachments: Vec::new(),
        alone: false,
    };
    match report {
        IngestReport::NewTicket { number, .. } => {
            score.new_tickets += 1;
            on_ticket(*number)
        }
        IngestReport::FollowUp { number, .. } => {
            score.follow_ups += 1;
            on_ticket(*number)
        }
        IngestReport::Quarantined { reason } | IngestReport::Ignored { reason } => {
            let (kind, word) = match report {
                IngestReport::Quarantined { .. } => {
                    score.quarantined += 1;
                    (Kept::Fault, "quarantined")
                }
                _ => {
                    score.ignored += 1;
                    (Kept::Ignored, "ignored")
                }
            };
            if reason.trim().is_empty() {
                return Err(format!("{word} without a reason"));
            }
            if kind == Kept::Fault {
                println!("quarantined: {reason}");
            }
            let kept = [key, hash_key].iter().any(|k| {
                store
                    .kept_reason(k)
                    .ok()
                    .flatten()
                    .is_some_and(|(kept, r)| kept == kind && r == *reason)
            });
            if !kept {
                return Err(format!("reported {word} ({reason}), not kept as {word}"));
            }
            Ok(off_ticket())
        }
        IngestReport::Duplicate => {
            score.duplicates += 1;
            let Some(earlier) = seen.get(key) else {
                return Err(format!("a duplicate of nothing seen before (key {key})"));
            };
            println!("duplicate: {key} was first seen in {earlier}");
            Ok(off_ticket())
        }
    }
}

/// What a duplicate alone comes to, in a store of its own, so that its
/// labels are checked on what it would have become.
fn land_alone(
    pipeline: &Pipeline,
    raw: &[u8],
    keys: (&str, &str),
    parsed: Option<&ParsedMail>,
    now: DateTime<Utc>,
) -> Result<Landed, String> {
    let dir = temp_dir();
    let alone = test_database(&dir.path().join("alone.db"));
    let store = Store::connect(&alone.settings()).map_err(|e| format!("{e:#}"))?;
    let report = store
        .ingest_mail(pipeline, raw, &MailSource::Pipe, now)
        .map_err(|e| format!("alone: {e:#}"))?;
    if report == IngestReport::Duplicate {
        return Err("a duplicate in an empty store".to_string());
    }
    let mut score = CategoryScore::default();
    let landed = check_landing(&store, &report, keys, parsed, &BTreeMap::new(), &mut score)
        .map_err(|why| format!("alone: {why}"))?;
    Ok(Landed {
        alone: true,
        ..landed
    })
}

/// Each attachment the parser found is stored once, with its name, type,
/// size and sha256.
fn check_attachments_stored(mail: &ParsedMail, landed: &Landed) -> Result<(), String> {
    if landed.ticket.is_none() {
        return Ok(());
    }
    let want: Vec<(&str, &str, i64, String)> = mail
        .attachments
        .iter()
        .map(|a| {
            (
                a.filename.as_str(),
                a.media_type.as_str(),
                a.bytes.len() as i64,
                hex::encode(Sha256::digest(&a.bytes)),
            )
        })
        .collect();
    let got: Vec<(&str, &str, i64, String)> = landed
        .attachments
        .iter()
        .map(|a| {
            (
                a.filename.as_str(),
                a.media_type.as_str(),
                a.size,
                a.sha256.clone(),
            )
        })
        .collect();
    if want != got {
        return Err(format!(
            "stored attachments differ from the parsed ones: {} stored, {} parsed",
            got.len(),
            want.len()
        ));
    }
    Ok(())
}

/// What one ingest queued and where its mail went, at its own `now`.
struct Caused<'a> {
    queued: &'a [OutboxItem],
    landed: Option<&'a Landed>,
    now: DateTime<Utc>,
}

/// No outbox row to the sender (From, Reply-To, Return-Path) and no
/// confirmation on its ticket; for a mail classified as a machine's other
/// than list mail, no outgoing mail at all (not even a notification to the
/// agents).
fn check_nothing_automatic(
    store: &Store,
    mail: Option<&ParsedMail>,
    caused: &Caused,
    nothing_at_all: bool,
) -> Result<(), String> {
    let mut senders: Vec<String> = Vec::new();
    if let Some(mail) = mail {
        senders.extend(mail.from.iter().map(|m| m.address.to_string()));
        senders.extend(mail.reply_to.iter().map(|m| m.address.to_string()));
        if let Some(path) = mail.header("return-path") {
            let path = path.trim().trim_start_matches('<').trim_end_matches('>');
            if !path.is_empty() {
                senders.push(path.to_ascii_lowercase());
            }
        }
    }
    let (queued, now) = (caused.queued, caused.now);
    if let Some(row) = queued.iter().find(|r| {
        r.recipients
            .iter()
            .any(|to| senders.iter().any(|s| s.eq_ignore_ascii_case(to)))
    }) {
        return Err(format!(
            "a machine's mail got an automatic reply {} to {:?}",
            row.message_id, row.recipients
        ));
    }
    if nothing_at_all && !queued.is_empty() {
        let to: Vec<String> = queued.iter().map(|r| r.recipients.join(",")).collect();
        return Err(format!("a machine's mail queued mail to {to:?}"));
    }
    let in_this_store = caused.landed.filter(|l| !l.alone);
    if let Some(ticket) = in_this_store.and_then(|l| l.ticket) {
        let detail = store
            .ticket_detail(ticket)
            .map_err(|e| format!("{e:#}"))?
            .ok_or("no ticket")?;
        if let Some(m) = detail.messages.iter().find(|m| {
            m.direction == "out" && m.date == now && (nothing_at_all || m.kind == "confirmation")
        }) {
            return Err(format!(
                "a machine's mail made ticket #{ticket} send a {} ({})",
                m.kind, m.message_id
            ));
        }
    }
    Ok(())
}

/// What the labels and the folder say a mail's kind is.
#[derive(Debug, Clone, Copy)]
enum Want {
    Is(&'static str),
    Not(&'static str),
    Machine,
}

impl Want {
    fn matches(self, got: &str) -> bool {
        match self {
            Want::Is(kind) => got == kind,
            Want::Not(kind) => got != kind,
            Want::Machine => !["Human", "Unparsable"].contains(&got),
        }
    }
}

/// Labels first; the folder is a weaker signal, overruled by a label.
fn expected_kind(row: &CorpusRow) -> Option<Want> {
    match (row.flag("is_auto_reply"), row.flag("is_bounce")) {
        (Some(true), _) => return Some(Want::Is("AutoReply")),
        (_, Some(true)) => return Some(Want::Is("Bounce")),
        (_, Some(false)) => return Some(Want::Not("Bounce")),
        (Some(false), _) => return Some(Want::Not("AutoReply")),
        _ => {}
    }
    match row.category.as_str() {
        "auto-replies" => Some(Want::Machine),
        "bounces" => Some(Want::Is("Bounce")),
        "lists" => Some(Want::Is("List")),
        "client-replies" => Some(Want::Is("Human")),
        _ => None,
    }
}

/// Whitespace collapsed, U+FFFD read as `?` (upstream's replacement),
/// no-break spaces as spaces.
fn normalise(text: &str) -> String {
    text.replace('\u{FFFD}', "?")
        .replace('\u{A0}', " ")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// `\n` in a label value is a newline.
fn label_text(value: &str) -> String {
    value.replace("\\n", "\n")
}

/// (right, what) for every text and subject label of a mail.
fn text_checks(row: &CorpusRow, mail: Option<&ParsedMail>, landed: &Landed) -> Vec<(bool, String)> {
    let mut out = Vec::new();
    let text = normalise(&landed.text);
    let contains = |want: &str| text.contains(&normalise(want));
    for key in ["expected_text", "expected_text_if_prefer_plain"] {
        if let Some(value) = row.label(key) {
            let want = label_text(value);
            let ok = if want == "(empty)" {
                text.is_empty()
            } else {
                contains(&want)
            };
            out.push((ok, format!("{key} {want:?}, text {:?}", clip(&landed.text))));
        }
    }
    if let Some(value) = row.label("expected_text(redmine textile)") {
        // Textile markup is Redmine's rendering, not the text.
        let want = label_text(value).replace('*', "").replace("h1. ", "");
        let headings: Vec<&str> = landed
            .text
            .lines()
            .map(|l| l.trim_start_matches('#').trim_start())
            .collect();
        let ok = normalise(&headings.join("\n")).contains(&normalise(&want));
        out.push((ok, format!("text {want:?}, text {:?}", clip(&landed.text))));
    }
    if let Some(value) = row.label("expect_contains") {
        for want in value.split('|') {
            let ok = contains(want);
            out.push((
                ok,
                format!("text contains {want:?}: {:?}", clip(&landed.text)),
            ));
        }
    }
    if let Some(value) = row.label("expect_not_contains") {
        let ok = !contains(value);
        out.push((
            ok,
            format!("text lacks {value:?}: {:?}", clip(&landed.text)),
        ));
    }
    if let Some(want) = row.label("expected_subject")
        && !want.contains("[redmine default]")
    {
        let got = mail.map(|m| m.subject.as_str()).unwrap_or("");
        out.push((
            normalise(got) == normalise(want),
            format!("subject {want:?}, got {got:?}"),
        ));
    }
    out
}

/// (right, what) for every attachment label of a mail.
fn attachment_checks(
    row: &CorpusRow,
    mail: Option<&ParsedMail>,
    landed: &Landed,
) -> Vec<(bool, String)> {
    let mut out = Vec::new();
    let stored: Vec<(String, i64, String)> = if landed.ticket.is_some() {
        landed
            .attachments
            .iter()
            .map(|a| (a.filename.clone(), a.size, a.sha256.clone()))
            .collect()
    } else {
        mail.map(|m| {
            m.attachments
                .iter()
                .map(|a| (a.filename.clone(), a.bytes.len() as i64, a.sha256.clone()))
                .collect()
        })
        .unwrap_or_default()
    };
    if let Some(name) = row.label("expected_attachment") {
        let size = row.label("size").and_then(|s| s.parse::<i64>().ok());
        let sha = row.label("sha256");
        let ok = stored.iter().any(|(n, s, h)| {
            n == name && size.is_none_or(|want| *s == want) && sha.is_none_or(|want| h == want)
        });
        out.push((
            ok,
            format!("attachment {name} ({size:?} bytes, {sha:?}); stored {stored:?}"),
        ));
    }
    if let Some(value) = row.label("expected_attachment_count") {
        let want: usize = value
            .trim_start_matches('~')
            .split_whitespace()
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        // "~": an inventory count; within 2 % is right.
        let ok = stored.len().abs_diff(want) * 50 <= want;
        out.push((ok, format!("about {want} attachments, {}", stored.len())));
    }
    if let Some(want) = row.label("expected_text_attachment_contains") {
        let ok = mail.is_some_and(|m| {
            m.attachments.iter().any(|a| {
                stored.iter().any(|(_, _, h)| *h == a.sha256)
                    && String::from_utf8_lossy(&a.bytes).contains(want)
            })
        });
        out.push((ok, format!("a text attachment with {want:?}")));
    }
    out
}

fn clip(text: &str) -> String {
    let clipped: String = text.chars().take(160).collect();
    if clipped.len() < text.len() {
        format!("{clipped}…")
    } else {
        clipped
    }
}

fn print_table(
    scores: &BTreeMap<String, CategoryScore>,
    times: &[(Duration, String)],
    negative: Tally,
) {
    println!(
        "\n{:<15} {:>4} {:>7} {:>4} {:>4} {:>4} {:>4} {:>4} {:>10} {:>7} {:>7} {:>7}",
        "category",
        "msgs",
        "landed",
        "new",
        "fup",
        "quar",
        "ign",
        "dup",
        "classified",
        "texts",
        "attach",
        "clean"
    );
    let mut sum = CategoryScore::default();
    for (category, s) in scores {
        print_row(category, s);
        sum.messages += s.messages;
        sum.landed += s.landed;
        sum.new_tickets += s.new_tickets;
        sum.follow_ups += s.follow_ups;
        sum.quarantined += s.quarantined;
        sum.ignored += s.ignored;
        sum.duplicates += s.duplicates;
        for (total, part) in [
            (&mut sum.classified, s.classified),
            (&mut sum.texts, s.texts),
            (&mut sum.attachments, s.attachments),
            (&mut sum.clean_text, s.clean_text),
        ] {
            total.right += part.right;
            total.total += part.total;
        }
    }
    print_row("all", &sum);
    println!(
        "(clean: stored text without U+FFFD; `no` labels read right: {})",
        negative.show()
    );
    for (category, s) in scores {
        println!("  {category:<15} {:?}", s.kinds);
    }
    let mut sorted: Vec<&(Duration, String)> = times.iter().collect();
    sorted.sort();
    let slowest: Vec<String> = sorted
        .iter()
        .rev()
        .take(3)
        .map(|(t, f)| format!("{f} {t:?}"))
        .collect();
    println!("slowest: {}", slowest.join(", "));
}

fn print_row(category: &str, s: &CategoryScore) {
    println!(
        "{:<15} {:>4} {:>7} {:>4} {:>4} {:>4} {:>4} {:>4} {:>10} {:>7} {:>7} {:>7}",
        category,
        s.messages,
        s.landed,
        s.new_tickets,
        s.follow_ups,
        s.quarantined,
        s.ignored,
        s.duplicates,
        s.classified.show(),
        s.texts.show(),
        s.attachments.show(),
        s.clean_text.show()
    );
}
