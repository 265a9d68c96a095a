//! Journal: a small append-only file beside the database where the sender
//! writes each Message-ID the SMTP server accepted before it records the
//! delivery in the database (which may wait behind an ingest transaction).
//! After a crash, rows left `sending` whose Message-ID is in the journal
//! were delivered and are not sent again. An entry is in the kernel's
//! hands once `record` returns (a killed process loses nothing), and on
//! disk after the journal's own thread syncs it: that thread syncs
//! whenever entries were added since its last sync, so one fdatasync
//! covers every mail accepted meanwhile (a group commit; one fdatasync per
//! mail, awaited, held the sender at about 2,000 mails/s). Only a power
//! loss or a kernel crash between the server's 250 and the end of the
//! next sync (at most two fdatasyncs) can double a mail. Owns only that
//! file and that thread.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Sender, channel};
use std::sync::{Arc, Mutex};

#[derive(Debug, Clone)]
pub struct SentJournal {
    path: PathBuf,
    /// Wakes the thread that syncs the file, started by the first
    /// `record`; it ends when the last clone of this journal is dropped.
    syncer: Arc<Mutex<Option<Sender<()>>>>,
}

impl SentJournal {
    /// The journal of the database at `database`: `DATABASE.sent`.
    pub fn beside(database: &Path) -> SentJournal {
        let mut name = database.as_os_str().to_owned();
        name.push(".sent");
        SentJournal {
            path: PathBuf::from(name),
            syncer: Arc::default(),
        }
    }

    /// Appends one accepted Message-ID; the journal's thread syncs it to
    /// disk right after (see the module's doc).
    pub fn record(&self, message_id: &str) -> io::Result<()> {
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        file.write_all(format!("{message_id}\n").as_bytes())?;
        self.sync_soon()
    }

    /// Wakes the syncing thread, or starts it.
    fn sync_soon(&self) -> io::Result<()> {
        let mut syncer = self.syncer.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(wake) = syncer.as_ref()
            && wake.send(()).is_ok()
        {
            return Ok(());
        }
        let (wake, woken) = channel::<()>();
        let path = self.path.clone();
        std::thread::Builder::new()
            .name("sent-journal".to_string())
            .spawn(move || {
                // Every wake-up that came during a sync is answered by the
                // next one, which covers all appends made before it starts.
                while woken.recv().is_ok() {
                    while woken.try_recv().is_ok() {}
                    // By path: `clear` replaces the file's contents.
                    if let Err(err) = File::open(&path).and_then(|f| f.sync_data()) {
                        tracing::error!("Cannot sync the sent journal {}: {err}", path.display());
                    }
                }
            })?;
        // The receiver is alive: the thread was just started with it.
        let _ = wake.send(());
        *syncer = Some(wake);
        Ok(())
    }

    /// Every Message-ID recorded since the last `clear`.
    pub fn read(&self) -> io::Result<Vec<String>> {
        match std::fs::read_to_string(&self.path) {
            Ok(text) => Ok(text
                .lines()
                .filter(|l| !l.is_empty())
                .map(str::to_string)
                .collect()),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(err) => Err(err),
        }
    }

    /// Empties the journal once the database holds what it says.
    pub fn clear(&self) -> io::Result<()> {
        File::create(&self.path)?.sync_all()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorded_ids_survive_until_cleared() {
        let dir = tempfile::tempdir().unwrap();
        let journal = SentJournal::beside(&dir.path().join("p.db"));
        assert!(journal.read().unwrap().is_empty());
        journal.record("a@x.test").unwrap();
        journal.record("b@x.test").unwrap();
        assert_eq!(journal.read().unwrap(), vec!["a@x.test", "b@x.test"]);
        journal.clear().unwrap();
        assert!(journal.read().unwrap().is_empty());
        assert!(dir.path().join("p.db.sent").exists());
    }

    #[test]
    fn clones_recording_at_once_keep_every_line_whole() {
        let dir = tempfile::tempdir().unwrap();
        let journal = SentJournal::beside(&dir.path().join("p.db"));
        let writers: Vec<_> = (0..4)
            .map(|w| {
                let journal = journal.clone();
                std::thread::spawn(move || {
                    for i in 0..250 {
                        journal.record(&format!("{w}-{i}@x.test")).unwrap();
                    }
                })
            })
            .collect();
        for writer in writers {
            writer.join().unwrap();
        }
        let mut lines = journal.read().unwrap();
        lines.sort();
        lines.dedup();
        assert_eq!(lines.len(), 1000);
        assert!(lines.iter().all(|l| l.ends_with("@x.test")));
    }
}
