//! The in-flight marker: a small file beside the database
//! (`DATABASE.inflight`) naming the mail the writer is on, with how many
//! times the process already died on it, and the mails of the batch
//! quarantined over the time budget (whose preparing may still run). It is
//! written with plain writes (the page cache outlives a crashed process)
//! and emptied when the batch's transaction is about to commit, so a
//! non-empty marker at the start of a batch means the last process died
//! mid-batch. A mail that took the process down [`CRASHES_TO_QUARANTINE`]
//! times is then refused, so that one mail cannot crash-loop the daemon
//! and block every mail behind it. It owns only that file; it does not
//! decide what a refused mail becomes (that is `ingest.rs`).

use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use anyhow::Context;

/// How often the process may die on one mail before it is quarantined.
/// Not 1: an ordinary restart or a watchdog's SIGKILL lands on some
/// innocent mail; three in a row on the same one do not happen by chance.
pub(super) const CRASHES_TO_QUARANTINE: u32 = 3;

/// The quarantine reason of a mail refused for crashes.
pub(super) const CRASHED_REASON: &str =
    "the daemon stopped 3 times while processing this mail: kept here, not tried again";

const SHA_LEN: usize = 64;
/// The first line: `SHA256 COUNT\n`, fixed width so that it is rewritten
/// in place by one write (the count is one digit; it never passes 3).
const CURRENT_LEN: u64 = SHA_LEN as u64 + 3;
const OVER_BUDGET_WORD: &str = "over-budget";
/// A line naming a mail quarantined over the time budget.
const OVER_BUDGET_LEN: u64 = (SHA_LEN + 2 + OVER_BUDGET_WORD.len()) as u64;

/// Why a mail named by the marker of a dead process is not processed.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Refusal {
    /// The process died this many times while on it.
    Crashed,
    /// It was quarantined over the time budget in the batch that died.
    OverBudget,
}

/// What a marker file says (pure: parsed and rendered without I/O).
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Marker {
    /// The mail the writer was on and how often the process had died on
    /// it before.
    pub current: Option<(String, u32)>,
    pub over_budget: Vec<String>,
}

impl Marker {
    /// Reads what a marker says; lines it does not know are ignored (a
    /// marker is advice, never a reason to stop ingesting).
    pub fn parse(text: &str) -> Marker {
        let mut marker = Marker::default();
        for line in text.lines() {
            let Some((sha, rest)) = line.split_once(' ') else {
                continue;
            };
            if sha.len() != SHA_LEN || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
                continue;
            }
            if rest == OVER_BUDGET_WORD {
                marker.over_budget.push(sha.to_string());
            } else if let (None, Ok(count)) = (&marker.current, rest.parse::<u32>()) {
                marker.current = Some((sha.to_string(), count));
            }
        }
        marker
    }

    pub fn render(&self) -> Vec<u8> {
        let mut out = match &self.current {
            Some((sha, count)) => current_line(sha, *count),
            None => blank_current(),
        };
        for sha in &self.over_budget {
            out.extend_from_slice(over_budget_line(sha).as_bytes());
        }
        out
    }
}

fn current_line(sha: &str, count: u32) -> Vec<u8> {
    format!("{sha} {}\n", count.min(9)).into_bytes()
}

fn blank_current() -> Vec<u8> {
    let mut line = vec![b' '; CURRENT_LEN as usize - 1];
    line.push(b'\n');
    line
}

fn over_budget_line(sha: &str) -> String {
    format!("{sha} {OVER_BUDGET_WORD}\n")
}

/// The marker of one batch, open for writing. Dropped without
/// [`Inflight::clear`] (the batch failed with an error, the process
/// lives), it empties the file: that was no crash.
pub(super) struct Inflight {
    path: PathBuf,
    file: File,
    /// From a dead process: the crash count of the mail it was on.
    crashed: HashMap<String, u32>,
    /// From a dead process: its mails over the time budget.
    carried_over_budget: HashSet<String>,
    /// Lines after the first, carried and new.
    over_budget_lines: u64,
    after_crash: bool,
    cleared: bool,
}

impl Inflight {
    /// The marker of the database at `database`: `DATABASE.inflight`.
    pub fn beside(database: &Path) -> PathBuf {
        let mut name = database.as_os_str().to_owned();
        name.push(".inflight");
        PathBuf::from(name)
    }

    /// Opens the marker at the start of a batch (under the write lock, so
    /// that two processes on one database never share it), reads what a
    /// dead process left there, and leaves at least a blank first line:
    /// from here until [`Inflight::clear`] the file is never empty.
    pub fn open(database: &Path) -> anyhow::Result<Inflight> {
        let path = Inflight::beside(database);
        let context = || format!("cannot use the in-flight marker {}", path.display());
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .with_context(context)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).with_context(context)?;
        let marker = Marker::parse(&String::from_utf8_lossy(&bytes));
        // Any line at all: the last process died inside a batch, perhaps
        // before it named a mail (an ungated writer names a mail once it
        // is prepared, so a death while the first one was prepared left
        // only the blank line; read as no crash, the next start prepared
        // that mail ungated again, and died again, without end).
        let after_crash = !bytes.is_empty();
        // In the form whose lines are rewritten in place; never empty
        // while this batch is open.
        file.set_len(0).with_context(context)?;
        file.write_all_at(&marker.render(), 0)
            .with_context(context)?;
        Ok(Inflight {
            over_budget_lines: marker.over_budget.len() as u64,
            crashed: marker.current.into_iter().collect(),
            carried_over_budget: marker.over_budget.into_iter().collect(),
            path,
            file,
            after_crash,
            cleared: false,
        })
    }

    /// Whether the last process died in the middle of a batch.
    pub fn after_crash(&self) -> bool {
        self.after_crash
    }

    /// Names the mail with content hash `sha256` before it is processed,
    /// its crash count raised if the dead process was on it; or refuses
    /// it (and names nothing) when it is not to be processed again.
    pub fn enter(&mut self, sha256: &str) -> anyhow::Result<Option<Refusal>> {
        if self.carried_over_budget.contains(sha256) {
            return Ok(Some(Refusal::OverBudget));
        }
        let crashes = self.crashed.remove(sha256).map_or(0, |count| count + 1);
        if crashes >= CRASHES_TO_QUARANTINE {
            return Ok(Some(Refusal::Crashed));
        }
        // The one write per mail: the fixed-width first line, in place.
        self.write_at(&current_line(sha256, crashes), 0)?;
        Ok(None)
    }

    /// Records a mail quarantined over the time budget: after a crash it
    /// is quarantined again at once instead of prepared (and perhaps
    /// crashing the process) again.
    pub fn over_budget(&mut self, sha256: &str) -> anyhow::Result<()> {
        let offset = CURRENT_LEN + self.over_budget_lines * OVER_BUDGET_LEN;
        self.write_at(over_budget_line(sha256).as_bytes(), offset)?;
        self.over_budget_lines += 1;
        Ok(())
    }

    /// Empties the marker: the batch is about to commit, under the write
    /// lock still (so no other process's marker is emptied). A death in
    /// the commit itself is no mail's fault.
    pub fn clear(&mut self) -> anyhow::Result<()> {
        self.cleared = true;
        self.file
            .set_len(0)
            .with_context(|| format!("cannot empty the in-flight marker {}", self.path.display()))
    }

    fn write_at(&self, bytes: &[u8], offset: u64) -> anyhow::Result<()> {
        self.file
            .write_all_at(bytes, offset)
            .with_context(|| format!("cannot write the in-flight marker {}", self.path.display()))
    }
}

impl Drop for Inflight {
    fn drop(&mut self) {
        if !self.cleared {
            let _ = self.file.set_len(0);
        }
    }
}

#[cfg(test)]
#[path = "inflight_tests.rs"]
mod tests;
