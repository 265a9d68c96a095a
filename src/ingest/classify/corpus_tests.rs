//! The labelled real-mail corpus in `shared/corpus`, read in place (never
//! copied: its licences vary). Prints a score table and holds the accuracy
//! reached on the upstream labels.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use super::super::parse;
use super::{MailKind, OwnIdentity, classify};

const CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/corpus");

/// What the run reached; a change that loses accuracy fails here.
const MIN_AUTO_REPLY_CORRECT: usize = 32;
const MIN_BOUNCE_CORRECT: usize = 43;
const MIN_FOLDER_CORRECT: usize = 76;
/// Bounces with failed recipients / an original Message-ID / a status.
const MIN_BOUNCE_INFO: [usize; 3] = [30, 25, 26];
/// Counted in the test thread's CPU time, not wall time: a loaded machine
/// (CI runs many tests at once) must not fail a fast parser.
const MAX_TIME_PER_MESSAGE: Duration = Duration::from_secs(2);

/// CPU time this thread has used so far.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime only writes the timespec it is given.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

#[derive(Default)]
struct Score {
    correct: usize,
    total: usize,
    wrong: Vec<String>,
}

impl Score {
    fn record(&mut self, ok: bool, file: &str, got: &str) {
        self.total += 1;
        if ok {
            self.correct += 1;
        } else {
            self.wrong.push(format!("{file}: got {got}"));
        }
    }
}

/// `yes`, `yes (machine-generated)`, `true` → true; `no (delay)` → false.
fn label(labels: &str, key: &str) -> Option<bool> {
    labels.split(';').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        if k.trim() != key {
            return None;
        }
        match v.split_whitespace().next()?.to_ascii_lowercase().as_str() {
            "yes" | "true" => Some(true),
            "no" | "false" => Some(false),
            _ => None,
        }
    })
}

fn kind_name(kind: &MailKind) -> &'static str {
    match kind {
        MailKind::Human => "Human",
        MailKind::AutoReply => "AutoReply",
        MailKind::Bounce(_) => "Bounce",
        MailKind::List => "List",
        MailKind::Bulk => "Bulk",
        MailKind::OwnMail => "OwnMail",
    }
}

#[test]
fn corpus_labels_are_classified() {
    let root = Path::new(CORPUS);
    let manifest = std::fs::read_to_string(root.join("MANIFEST.tsv")).unwrap_or_else(|e| {
        panic!("the shared corpus is missing at {CORPUS} ({e}); it is read in place, never copied")
    });
    let own = OwnIdentity {
        addresses: vec!["support@postdesk.test".to_string()],
        message_id_domain: "postdesk.test".to_string(),
        loop_header_value: "corpus-test-loop".to_string(),
        lists: Vec::new(),
    };
    let mut auto_reply = Score::default();
    let mut bounce = Score::default();
    let mut folder = Score::default();
    let mut kinds: BTreeMap<String, BTreeMap<&str, usize>> = BTreeMap::new();
    let mut times: Vec<(Duration, &str)> = Vec::new();
    let mut bounce_info = [Score::default(), Score::default(), Score::default()];
    let mut others = Vec::new();
    let mut messages = 0;
    for row in manifest.lines().skip(1).filter(|l| !l.trim().is_empty()) {
        let cols: Vec<&str> = row.split('\t').collect();
        let (file, category, labels) = (cols[0], cols[1], cols.get(5).copied().unwrap_or(""));
        let raw = std::fs::read(root.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        messages += 1;
        let start = thread_cpu();
        let class = parse::parse(&raw).ok().map(|mail| classify(&mail, &own));
        let took = thread_cpu().saturating_sub(start);
        assert!(took < MAX_TIME_PER_MESSAGE, "{file} took {took:?}");
        times.push((took, file));
        let (name, reason) = match &class {
            Some(c) => (kind_name(&c.kind), c.reason.as_str()),
            None => ("ParseError", "the mail cannot be parsed"),
        };
        *kinds
            .entry(category.to_string())
            .or_default()
            .entry(name)
            .or_default() += 1;
        let got = format!("{name} ({reason})");
        if let Some(MailKind::Bounce(info)) = class.as_ref().map(|c| &c.kind) {
            let found = [
                !info.failed_recipients.is_empty(),
                !info.original_message_ids.is_empty(),
                info.status.is_some(),
            ];
            for (score, ok) in bounce_info.iter_mut().zip(found) {
                score.record(ok, file, "none");
            }
        }
        let is_auto = name == "AutoReply";
        let is_bounce = name == "Bounce";
        if let Some(want) = label(labels, "is_auto_reply") {
            auto_reply.record(want == is_auto, file, &got);
        }
        if let Some(want) = label(labels, "is_bounce") {
            bounce.record(want == is_bounce, file, &got);
        }
        // The folder is a weaker signal, overruled by an explicit "no".
        let want_machine = match category {
            "auto-replies" => label(labels, "is_auto_reply") != Some(false),
            "bounces" => label(labels, "is_bounce") != Some(false),
            _ => false,
        };
        if want_machine {
            folder.record(name != "Human" && name != "ParseError", file, &got);
        } else if category == "client-replies" {
            folder.record(name == "Human", file, &got);
        } else if category == "lists" {
            folder.record(name == "List" || name == "Bulk", file, &got);
        } else if name != "Human" && !["auto-replies", "bounces"].contains(&category) {
            others.push(format!("{file}: {got}"));
        }
    }
    times.sort();
    let slowest: Vec<String> = times
        .iter()
        .rev()
        .take(3)
        .map(|(t, f)| format!("{f} {t:?}"))
        .collect();
    println!(
        "\ncorpus: {messages} messages; slowest (thread CPU): {}",
        slowest.join(", ")
    );
    for (category, counts) in &kinds {
        println!("  {category:<15} {counts:?}");
    }
    for (what, score) in [
        ("is_auto_reply", &auto_reply),
        ("is_bounce", &bounce),
        ("folder", &folder),
    ] {
        let percent = 100.0 * score.correct as f64 / score.total.max(1) as f64;
        println!(
            "{what:<14} {}/{} correct ({percent:.1}%)",
            score.correct, score.total
        );
        for wrong in &score.wrong {
            println!("    {wrong}");
        }
    }
    let fields = ["failed recipients", "original Message-ID", "status code"];
    for (what, score) in fields.iter().zip(&bounce_info) {
        println!("bounces with {what}: {}/{}", score.correct, score.total);
        for wrong in &score.wrong {
            println!("    {}", wrong.trim_end_matches(": got none"));
        }
    }
    println!("machine kinds in the unlabelled folders (not scored):");
    for other in &others {
        println!("    {other}");
    }
    for ((what, score), min) in fields.iter().zip(&bounce_info).zip(MIN_BOUNCE_INFO) {
        assert!(score.correct >= min, "fewer bounces with {what}");
    }
    assert!(messages >= 233, "only {messages} messages in the corpus");
    assert!(
        auto_reply.correct >= MIN_AUTO_REPLY_CORRECT,
        "is_auto_reply fell below the bar"
    );
    assert!(
        bounce.correct >= MIN_BOUNCE_CORRECT,
        "is_bounce fell below the bar"
    );
    assert!(
        folder.correct >= MIN_FOLDER_CORRECT,
        "folder signal fell below the bar"
    );
}
