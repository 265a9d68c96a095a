//! `postdesk ingest FILE|-`: one raw mail from a file or standard input
//! (an MTA pipe) through the intake seam. Exit codes (sysexits): 0 kept
//! (stored, already stored, ignored or quarantined), 65 unusable input
//! (unreadable file, empty input), 75 temporary failure (the MTA keeps the
//! mail and retries). Input is read with a cap of
//! `limits.max_message_bytes`: a larger mail is never held whole in
//! memory; its header is kept in the quarantine (the rest is read and
//! dropped, so the MTA sees a clean end), its sender told as for an
//! oversize IMAP mail, and the exit is 0: the MTA must not bounce or retry
//! what postdesk has already answered.

use std::io::Read;
use std::process::ExitCode;

use chrono::Utc;

use crate::imap::FetchedMail;
use crate::intake::{self, Source, Verdict};
use crate::settings::Settings;

/// Exit code for unusable input (sysexits EX_DATAERR).
const EX_DATAERR: u8 = 65;

/// Runs the command; `file` is a path or `-` for standard input.
pub fn run(settings: &Settings, file: &str) -> anyhow::Result<ExitCode> {
    let limit = settings.limits.max_message_bytes;
    let read = if file == "-" {
        read_capped(std::io::stdin().lock(), limit)
    } else {
        std::fs::File::open(file).and_then(|f| read_capped(f, limit))
    };
    let mail = match read {
        Ok(mail) => mail,
        Err(err) => {
            let what = if file == "-" { "standard input" } else { file };
            eprintln!("postdesk: cannot read {what}: {err}");
            // A pipe that breaks mid-mail is worth a retry; a bad path is not.
            let code = if file == "-" { 75 } else { EX_DATAERR };
            return Ok(ExitCode::from(code));
        }
    };
    if mail.oversize.is_none() && mail.raw.iter().all(|b| b.is_ascii_whitespace()) {
        eprintln!("postdesk: the input is empty");
        return Ok(ExitCode::from(EX_DATAERR));
    }
    let verdict = match crate::app::open_store(settings) {
        Ok((store, pipeline)) => {
            intake::receive_fetched(&store, &pipeline, &Source::Pipe, mail, Utc::now())
        }
        Err(err) => Verdict::temporary(&err),
    };
    match &verdict {
        Verdict::TemporaryFailure { error } => {
            eprintln!("postdesk: temporary failure, try again later: {error}")
        }
        kept => println!("{kept}"),
    }
    Ok(ExitCode::from(verdict.exit_code()))
}

/// Reads a whole mail of at most `limit` bytes; a larger one comes back
/// as its header section only (at most `limit` + 1 bytes of it) with its full
/// size in `oversize`, the rest read and dropped in small chunks.
pub fn read_capped(input: impl Read, limit: u64) -> std::io::Result<FetchedMail> {
    let mut input = input;
    let mut raw = Vec::new();
    (&mut input).take(limit + 1).read_to_end(&mut raw)?;
    if raw.len() as u64 <= limit {
        return Ok(FetchedMail::whole(0, raw));
    }
    let mut size = raw.len() as u64;
    let mut chunk = [0u8; 64 * 1024];
    loop {
        match input.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => size += n as u64,
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
    raw.truncate(header_end(&raw));
    Ok(FetchedMail {
        uid: 0,
        raw,
        oversize: Some(size),
    })
}

/// The length of the header section (with its blank line), or all of
/// `raw` when no blank line ends it.
fn header_end(raw: &[u8]) -> usize {
    let crlf = raw.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4);
    let lf = raw.windows(2).position(|w| w == b"\n\n").map(|i| i + 2);
    match (crlf, lf) {
        (Some(a), Some(b)) => a.min(b),
        (a, b) => a.or(b).unwrap_or(raw.len()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mail_within_the_cap_is_read_whole() {
        let raw = b"Subject: hi\r\n\r\nbody\r\n".to_vec();
        let mail = read_capped(raw.as_slice(), raw.len() as u64).expect("read");
        assert_eq!((mail.raw, mail.oversize), (raw, None));
    }

    #[test]
    fn a_mail_over_the_cap_keeps_only_its_header_and_its_full_size() {
        let mut raw = b"From: a@b.test\r\nSubject: huge\r\n\r\n".to_vec();
        raw.extend(std::iter::repeat_n(b'x', 1_000_000));
        let mail = read_capped(raw.as_slice(), 4096).expect("read");
        assert_eq!(mail.raw, b"From: a@b.test\r\nSubject: huge\r\n\r\n");
        assert_eq!(mail.oversize, Some(raw.len() as u64));
    }

    #[test]
    fn a_header_longer_than_the_cap_is_cut_at_the_cap() {
        let raw = vec![b'h'; 10_000];
        let mail = read_capped(raw.as_slice(), 1024).expect("read");
        assert_eq!(
            mail.raw.len(),
            1025,
            "at most the cap and one byte are held"
        );
        assert_eq!(mail.oversize, Some(10_000));
    }
}
