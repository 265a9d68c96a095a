//! Config files for the daemons of the PostgreSQL benchmark: one queue per
//! support mailbox of the mail stack (`[support]` the first, `[[mailbox]]`
//! the others), every daemon of a run knowing every queue, each reading
//! over IMAP only the mailboxes it is given. It writes files; it starts
//! nothing.

use std::fs;
use std::path::Path;

use anyhow::Context;

use super::db::Db;
use crate::support::Stack;

/// One daemon's config.
pub struct Daemon<'a> {
    /// The support addresses (mail stack users), one queue each.
    pub mailboxes: &'a [String],
    /// Which of them this daemon reads over IMAP (by index).
    pub reads: &'a [usize],
    pub db: &'a Db,
    /// This daemon's own `database.path` beside a PostgreSQL desk.
    pub journal: &'a Path,
    pub smtp_port: u16,
    /// `host:port` of the status page.
    pub listen: &'a str,
    /// limits.auto_replies_per_hour (the default is 10).
    pub auto_replies_per_hour: u32,
}

/// The checkpoint key of queue `index` reading `address`'s INBOX over
/// `host` (`Queue::checkpoint_key`: the first queue keeps the folder name).
pub fn checkpoint_key(index: usize, address: &str, host: &str) -> String {
    if index == 0 {
        "INBOX".to_string()
    } else {
        format!("{address}@{host}/INBOX")
    }
}

/// Writes `cfg` as a TOML config to `path`.
pub fn write(stack: &Stack, cfg: &Daemon, path: &Path) -> anyhow::Result<()> {
    let first = cfg.mailboxes.first().context("no support mailbox")?;
    let mut text = format!(
        r#"[support]
queue = "support"
address = "{first}"
name = "Bench Support"
agents = ["agent@example.test"]
public_url = "http://{listen}"

[imap]
enabled = {reads_first}
host = "{host}"
port = {imap}
tls = "none"
username = "{first}"
password = "{password}"
idle = true
poll_seconds = 1
timeout_seconds = 30

[smtp]
host = "{host}"
port = {smtp}
tls = "none"
timeout_seconds = 30

{database}
[web]
listen = "{listen}"

[limits]
auto_replies_per_hour = {rate}
"#,
        listen = cfg.listen,
        reads_first = cfg.reads.contains(&0),
        host = stack.host,
        imap = stack.imap_port,
        password = stack.password,
        smtp = cfg.smtp_port,
        database = cfg.db.toml(cfg.journal),
        rate = cfg.auto_replies_per_hour,
    );
    for (i, address) in cfg.mailboxes.iter().enumerate().skip(1) {
        text.push_str(&format!(
            "\n[[mailbox]]\nqueue = \"q{n}\"\naddress = \"{address}\"\n\
             imap.username = \"{address}\"\nimap.enabled = {reads}\n",
            n = i + 1,
            reads = cfg.reads.contains(&i),
        ));
    }
    fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}
