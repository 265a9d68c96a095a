//! Journal: a small append-only file beside the database where the sender
//! writes each Message-ID the SMTP server accepted, synced to disk, before
//! it records the delivery in the database (which may wait behind an ingest
//! transaction). After a crash, rows left `sending` whose Message-ID is in
//! the journal were delivered and are not sent again. This narrows the
//! window in which a crash can double a mail to the moment between the
//! server's 250 and one fdatasync. Owns only that file.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct SentJournal {
    path: PathBuf,
}

impl SentJournal {
    /// The journal of the database at `database`: `DATABASE.sent`.
    pub fn beside(database: &Path) -> SentJournal {
        let mut name = database.as_os_str().to_owned();
        name.push(".sent");
        SentJournal {
            path: PathBuf::from(name),
        }
    }

    /// Appends one accepted Message-ID and waits until it is on disk.
    pub fn record(&self, message_id: &str) -> io::Result<()> {
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        file.write_all(format!("{message_id}\n").as_bytes())?;
        file.sync_data()
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
}
