//! Logging: the filter every command logs through. `RUST_LOG` chooses the
//! level, but the crates that see credentials on the wire (lettre writes
//! `AUTH PLAIN <base64 user and password>` and XOAUTH2 bearer tokens at
//! debug, and whole mails with their private links) are held at info
//! whatever it says, so a debug run cannot put a secret in a log file.

use tracing_subscriber::EnvFilter;

/// The default when `RUST_LOG` is unset.
const DEFAULT: &str = "info,refinery_core=warn";

/// Crates held at a level: they log protocol lines that carry secrets
/// (tokio_postgres logs each statement's parameters at debug; postgres
/// logs the server's NOTICEs at info).
const HELD_AT: [(&str, &str); 7] = [
    ("lettre", "info"),
    ("async_imap", "info"),
    ("hyper", "info"),
    ("hyper_util", "info"),
    ("rustls", "info"),
    ("postgres", "warn"),
    ("tokio_postgres", "warn"),
];

/// The filter from `rust_log` (the `RUST_LOG` value, if any).
pub fn filter(rust_log: Option<&str>) -> EnvFilter {
    let mut filter = rust_log
        .and_then(|value| EnvFilter::try_new(value).ok())
        .unwrap_or_else(|| EnvFilter::new(DEFAULT));
    for (target, level) in HELD_AT {
        if let Ok(directive) = format!("{target}={level}").parse() {
            filter = filter.add_directive(directive);
        }
    }
    filter
}

/// What a closure logs, for tests.
#[cfg(test)]
pub(crate) mod capture {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// The text `run` logs on this thread through [`super::filter`] of
    /// `rust_log`.
    pub(crate) fn log_of(rust_log: &str, run: impl FnOnce()) -> String {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter(super::filter(Some(rust_log)))
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, run);
        let bytes = captured.0.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }
}

#[cfg(test)]
mod tests {
    use super::capture::log_of;

    #[test]
    fn rust_log_debug_shows_our_debug_lines_but_never_lettres_wire() {
        let text = log_of("debug", || {
            tracing::debug!(target: "lettre::transport::smtp::client", "Wrote: AUTH PLAIN c2VjcmV0");
            tracing::debug!(target: "postdesk::outbound", "our own debug line");
            tracing::info!(target: "lettre::transport::smtp", "lettre at info");
        });
        assert!(!text.contains("AUTH PLAIN"), "{text}");
        assert!(text.contains("our own debug line"), "{text}");
        assert!(text.contains("lettre at info"), "{text}");
    }
}
