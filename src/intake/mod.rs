//! Intake: the one seam every front end hands received mail to (IMAP's
//! sink, the LMTP server, `postdesk ingest FILE|-`). It owns the typed
//! [`Source`] of a mail, the [`Verdict`] that says what became of it, and
//! [`receive`]/[`receive_batch`], which run the store's ingest and turn its
//! report or error into that verdict. Each front end maps the verdict to
//! its own answer (IMAP marks or leaves the mail, LMTP 250/451/552, the
//! pipe's exit code 0/65/75), so the three cannot drift apart. The daemon
//! writes IMAP batches on one thread of its own ([`IngestThread`]). It must not
//! parse mail, speak a protocol or hold SQL: the store does the work.

mod ingest_thread;
mod receive;
mod verdict;

pub use ingest_thread::IngestThread;
pub use receive::{ImapBatch, receive, receive_batch, receive_fetched, receive_history};
pub use verdict::Verdict;

/// Where a mail came from: kept with its raw bytes, and what queue
/// assignment goes by. Built in one place per front end
/// ([`Source::imap`], [`Source::lmtp`], [`Source::Pipe`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// Fetched from `folder` of the IMAP `account`.
    Imap {
        /// The IMAP login (the support address's mailbox); may be empty
        /// for a mail read back from the quarantine of an older version.
        account: String,
        folder: String,
        uidvalidity: u32,
        uid: u32,
    },
    /// Read from `folder` of the IMAP `account` by `postdesk import`: old
    /// mail brought in as history (dated by itself, sending nothing).
    Import {
        account: String,
        folder: String,
        uidvalidity: u32,
        uid: u32,
    },
    /// Handed over by the MTA over LMTP for these accepted recipients.
    Lmtp { recipients: Vec<String> },
    /// `postdesk ingest FILE|-` (an MTA pipe, a test).
    Pipe,
}

impl Source {
    /// The source of a mail fetched over IMAP.
    pub fn imap(account: &str, folder: &str, uidvalidity: u32, uid: u32) -> Source {
        Source::Imap {
            account: account.to_string(),
            folder: folder.to_string(),
            uidvalidity,
            uid,
        }
    }

    /// The source of a mail read by `postdesk import`.
    pub fn import(account: &str, folder: &str, uidvalidity: u32, uid: u32) -> Source {
        Source::Import {
            account: account.to_string(),
            folder: folder.to_string(),
            uidvalidity,
            uid,
        }
    }

    /// Whether the mail is history (`postdesk import`): stored and threaded
    /// as of its own date, with nothing sent and no status changed.
    pub fn is_history(&self) -> bool {
        matches!(self, Source::Import { .. })
    }

    /// The source of a mail taken over LMTP (recipients as the MTA gave them).
    pub fn lmtp(recipients: Vec<String>) -> Source {
        Source::Lmtp { recipients }
    }

    /// The address the mail was delivered to, when the source knows it:
    /// the first LMTP recipient that matched a queue, or the IMAP account.
    /// `None` for the pipe (the mail's own headers must tell).
    pub fn delivered_to(&self) -> Option<&str> {
        match self {
            Source::Imap { account, .. } | Source::Import { account, .. }
                if !account.is_empty() =>
            {
                Some(account)
            }
            Source::Imap { .. } | Source::Import { .. } | Source::Pipe => None,
            Source::Lmtp { recipients } => recipients.first().map(String::as_str),
        }
    }

    /// The text kept in `raw_mails.source`: `imap:FOLDER:UIDVALIDITY:UID`
    /// (as before there were accounts), `lmtp:RCPT,RCPT` or `pipe`.
    pub fn describe(&self) -> String {
        match self {
            Source::Imap {
                folder,
                uidvalidity,
                uid,
                ..
            } => format!("imap:{folder}:{uidvalidity}:{uid}"),
            Source::Import {
                folder,
                uidvalidity,
                uid,
                ..
            } => format!("import:{folder}:{uidvalidity}:{uid}"),
            Source::Lmtp { recipients } => format!("lmtp:{}", recipients.join(",")),
            Source::Pipe => "pipe".to_string(),
        }
    }

    /// [`Source::describe`] read back; anything unknown is the pipe.
    pub fn parse(text: &str) -> Source {
        if let Some(rest) = text.strip_prefix("lmtp:") {
            let recipients = rest
                .split(',')
                .filter(|r| !r.is_empty())
                .map(str::to_string)
                .collect();
            return Source::Lmtp { recipients };
        }
        // The folder may hold colons: the numbers are the last two parts.
        let numbered = |rest: &str| {
            let mut parts = rest.rsplitn(3, ':');
            let uid: u32 = parts.next()?.parse().ok()?;
            let uidvalidity: u32 = parts.next()?.parse().ok()?;
            Some((parts.next()?.to_string(), uidvalidity, uid))
        };
        if let Some((folder, uidvalidity, uid)) = text.strip_prefix("imap:").and_then(numbered) {
            return Source::imap("", &folder, uidvalidity, uid);
        }
        if let Some((folder, uidvalidity, uid)) = text.strip_prefix("import:").and_then(numbered) {
            return Source::import("", &folder, uidvalidity, uid);
        }
        Source::Pipe
    }

    /// Where the whole mail stays when only its header was kept.
    pub fn server_copy(&self) -> String {
        match self {
            Source::Imap {
                folder,
                uidvalidity,
                uid,
                ..
            }
            | Source::Import {
                folder,
                uidvalidity,
                uid,
                ..
            } => format!("mailbox {folder}, UID {uid}, UIDVALIDITY {uidvalidity}"),
            Source::Lmtp { .. } => "not kept: it came over LMTP".to_string(),
            Source::Pipe => "not kept: it came through the pipe".to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_read_back_as_written() {
        let imap = Source::imap("", "Support:Old", 7, 42);
        assert_eq!(imap.describe(), "imap:Support:Old:7:42");
        assert_eq!(Source::parse(&imap.describe()), imap);
        let lmtp = Source::lmtp(vec!["a@x.test".into(), "b+1@x.test".into()]);
        assert_eq!(Source::parse(&lmtp.describe()), lmtp);
        assert_eq!(Source::parse("pipe"), Source::Pipe);
        let old = Source::import("", "Archive:2019", 3, 9);
        assert_eq!(Source::parse(&old.describe()), old);
        assert!(old.is_history() && !imap.is_history());
        assert_eq!(Source::parse("imap:broken"), Source::Pipe);
    }

    #[test]
    fn delivered_to_is_the_first_recipient_or_the_account() {
        let lmtp = Source::lmtp(vec!["billing@x.test".into(), "sales@x.test".into()]);
        assert_eq!(lmtp.delivered_to(), Some("billing@x.test"));
        let imap = Source::imap("support@x.test", "INBOX", 1, 2);
        assert_eq!(imap.delivered_to(), Some("support@x.test"));
        assert_eq!(Source::imap("", "INBOX", 1, 2).delivered_to(), None);
        assert_eq!(Source::Pipe.delivered_to(), None);
    }
}
