//! Hostile-mail benchmark (issue 17, findings 3 and 4): generates each
//! worst-case mail of the issue, runs the release `postdesk ingest FILE`
//! on it as a child process (a fresh database, a config with two agents,
//! `max_message_bytes` raised to 30 MB so the big ones are processed) and
//! prints a table: mail, size, wall time, peak RSS (from `wait4`'s
//! rusage), exit code, where the mail went and the largest mail it queued.
//! A benchmark prints figures; it asserts nothing about time.
//!
//! `scripts/bench hostile` runs it; by hand:
//! `target/release/examples/bench_hostile --binary target/release/postdesk`
//! (`--binary` may name an older build for a before/after table).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;

#[derive(Parser)]
struct Args {
    /// The `postdesk` binary to run (release build).
    #[arg(long, alias = "postdesk")]
    binary: PathBuf,
    /// A scratch directory; a temporary one when absent.
    #[arg(long)]
    work: Option<PathBuf>,
    /// Only the mails whose name contains this.
    #[arg(long)]
    only: Option<String>,
    /// A run still going after this many seconds is killed (shown as such).
    #[arg(long, default_value_t = 120)]
    timeout: u64,
}

const SUPPORT: &str = "tickets@example.test";

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let tmp = tempfile::tempdir()?;
    let work = args
        .work
        .clone()
        .unwrap_or_else(|| tmp.path().to_path_buf());
    std::fs::create_dir_all(&work)?;
    println!(
        "{:<22} {:>10} {:>9} {:>10} {:>5} {:>10}  went",
        "mail", "size", "wall s", "peak MiB", "exit", "max out"
    );
    for (name, make) in MAILS {
        if args
            .only
            .as_ref()
            .is_some_and(|o| !name.contains(o.as_str()))
        {
            continue;
        }
        let mail = make();
        let dir = work.join(name);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let file = dir.join("mail.eml");
        std::fs::write(&file, &mail)?;
        let config = write_config(&dir)?;
        let run = run_ingest(
            &args.binary,
            &config,
            &file,
            Duration::from_secs(args.timeout),
        )?;
        let max_out = largest_outgoing(&dir.join("postdesk.db")).unwrap_or(0);
        println!(
            "{:<22} {:>10} {:>9.2} {:>10.1} {:>5} {:>10}  {}",
            name,
            human(mail.len() as u64),
            run.wall.as_secs_f64(),
            run.peak_kib as f64 / 1024.0,
            run.exit,
            human(max_out),
            run.went
        );
        std::fs::remove_dir_all(&dir)?;
    }
    Ok(())
}

/// The worst cases of the issue, each a generator of raw bytes.
type Make = fn() -> Vec<u8>;
const MAILS: &[(&str, Make)] = &[
    ("plain 80k lines", || plain_lines(80_000)),
    ("plain 200k lines", || plain_lines(200_000)),
    ("plain 24 MB", plain_24mb),
    ("subject 250k Re:", subject_re),
    ("html 4.8 MB <p>", || html_paragraphs(4_800_000)),
    ("html 20 MB <p>", || html_paragraphs(20_000_000)),
    ("100k text/html parts", html_parts),
    ("200k References", references),
    ("deep html 100k", deep_html),
    ("10k Cc", many_cc),
    ("one 20 MB line", one_long_line),
];

fn headers(subject: &str, extra: &str, content_type: &str) -> String {
    format!(
        "From: Mallory <mallory@customer.test>\r\nTo: {SUPPORT}\r\n{extra}\
         Subject: {subject}\r\nMessage-ID: <{}@customer.test>\r\n\
         Date: Mon, 1 Jun 2026 10:00:00 +0000\r\nMIME-Version: 1.0\r\n\
         Content-Type: {content_type}\r\n\r\n",
        std::process::id() as u64 * 1_000_000 + subject.len() as u64 + extra.len() as u64
    )
}

fn plain_lines(lines: usize) -> Vec<u8> {
    let mut out = headers("many lines", "", "text/plain; charset=utf-8");
    for i in 0..lines {
        let _ = write!(out, "line {i}\r\n");
    }
    out.into_bytes()
}

fn plain_24mb() -> Vec<u8> {
    let mut out = headers("24 MB", "", "text/plain; charset=utf-8");
    let mut i = 0;
    while out.len() < 24_000_000 {
        let _ = write!(out, "x {i}\r\n");
        i += 1;
    }
    out.into_bytes()
}

fn one_long_line() -> Vec<u8> {
    let mut out = headers("one line", "", "text/plain; charset=utf-8");
    out.push_str(&"y".repeat(20_000_000));
    out.push_str("\r\n");
    out.into_bytes()
}

fn subject_re() -> Vec<u8> {
    let subject = format!("{}help", "Re: ".repeat(250_000));
    let mut out = headers(&subject, "", "text/plain");
    out.push_str("Please help.\r\n");
    out.into_bytes()
}

fn html_paragraphs(bytes: usize) -> Vec<u8> {
    let mut out = headers("html", "", "text/html; charset=utf-8");
    out.push_str("<html><body>");
    let mut i = 0;
    while out.len() < bytes {
        let _ = write!(out, "<p>Paragraph {i} of a long letter.</p>\r\n");
        i += 1;
    }
    out.push_str("</body></html>\r\n");
    out.into_bytes()
}

fn html_parts() -> Vec<u8> {
    let mut out = headers("parts", "", "multipart/mixed; boundary=\"b\"");
    for i in 0..100_000 {
        let _ = write!(
            out,
            "--b\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>part {i}</p>\r\n"
        );
    }
    out.push_str("--b--\r\n");
    out.into_bytes()
}

fn references() -> Vec<u8> {
    let mut refs = String::from("References:");
    for i in 0..200_000 {
        let _ = write!(refs, "\r\n <ref{i}@elsewhere.test>");
    }
    refs.push_str("\r\n");
    let mut out = headers("refs", &refs, "text/plain");
    out.push_str("Hello.\r\n");
    out.into_bytes()
}

fn deep_html() -> Vec<u8> {
    let mut out = headers("deep", "", "text/html; charset=utf-8");
    out.push_str(&"<div>".repeat(100_000));
    out.push_str("deep");
    out.push_str(&"</div>".repeat(100_000));
    out.push_str("\r\n");
    out.into_bytes()
}

fn many_cc() -> Vec<u8> {
    let mut cc = String::from("Cc:");
    for i in 0..10_000 {
        let sep = if i == 0 { "" } else { "," };
        let _ = write!(cc, "{sep}\r\n cc{i}@elsewhere.test");
    }
    cc.push_str("\r\n");
    let mut out = headers("cc", &cc, "text/plain");
    out.push_str("Hello all.\r\n");
    out.into_bytes()
}

fn write_config(dir: &Path) -> anyhow::Result<PathBuf> {
    let path = dir.join("postdesk.toml");
    let text = format!(
        r#"[support]
address = "{SUPPORT}"
name = "Bench Support"
agents = ["alice@example.test", "bob@example.test"]
public_url = "http://127.0.0.1:8025"

[database]
path = "{db}"

[limits]
max_message_bytes = 31457280
"#,
        db = dir.join("postdesk.db").display()
    );
    std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

struct Run {
    wall: Duration,
    peak_kib: i64,
    exit: String,
    went: String,
}

/// `postdesk ingest FILE` as a child, reaped with `wait4` for its rusage.
fn run_ingest(binary: &Path, config: &Path, file: &Path, limit: Duration) -> anyhow::Result<Run> {
    let started = Instant::now();
    let out_path = file.with_extension("out");
    let child = Command::new(binary)
        .arg("--config")
        .arg(config)
        .arg("ingest")
        .arg(file)
        .env("RUST_LOG", "off")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path)?)
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("cannot start {}", binary.display()))?;
    let pid = child.id() as libc::pid_t;
    let mut killed = false;
    let (status, usage) = loop {
        let mut status = 0;
        // SAFETY: rusage is plain data, zeroed is a valid value; wait4 on
        // our own child's pid.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        let got = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) };
        if got == pid {
            break (status, usage);
        }
        if got < 0 {
            bail!("wait4 failed: {}", std::io::Error::last_os_error());
        }
        if !killed && started.elapsed() > limit {
            // SAFETY: signalling our own, not yet reaped child.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            killed = true;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let wall = started.elapsed();
    let exit = if killed {
        "kill".to_string()
    } else if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status).to_string()
    } else {
        format!("sig{}", libc::WTERMSIG(status))
    };
    let went = std::fs::read_to_string(&out_path).unwrap_or_default();
    let went: String = went.trim().chars().take(90).collect();
    Ok(Run {
        wall,
        peak_kib: usage.ru_maxrss,
        exit,
        went: if killed {
            format!("still running after {}s", limit.as_secs())
        } else {
            went
        },
    })
}

/// The largest raw mail queued in the outbox (notification, confirmation).
fn largest_outgoing(db: &Path) -> Option<u64> {
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .ok()?;
    conn.query_row(
        "SELECT coalesce(max(length(raw)), 0) FROM outbox",
        [],
        |r| r.get::<_, i64>(0),
    )
    .ok()
    .map(|n| n as u64)
}

fn human(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 20 => format!("{:.1} MB", b as f64 / 1_048_576.0),
        b if b >= 1 << 10 => format!("{:.1} KB", b as f64 / 1024.0),
        b => format!("{b} B"),
    }
}
