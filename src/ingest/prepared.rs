//! Prepared: what a mail's bytes alone tell, made by
//! [`super::Pipeline::prepare`] ahead of the writer (parsed, classified, an
//! agent authenticated, the reply split from its quotes), or why it could
//! not be read. The two steps run ahead keep their panic, to be raised
//! again where the step used to run, so that a duplicate stays a duplicate
//! whatever its body does. Pure.

use super::parse::ParsedMail;
use super::{agent, classify, strip};

/// A panic of a step that ran ahead (in [`Pipeline::prepare`]), kept as its
/// message to be raised again where the step used to run.
#[derive(Debug, Clone)]
pub struct EarlyPanic(String);

impl EarlyPanic {
    pub fn raise(&self) -> ! {
        std::panic::resume_unwind(Box::new(self.0.clone()))
    }
}

/// Runs a step of [`Pipeline::prepare`], keeping a panic for later.
pub(super) fn contained<T>(step: impl FnOnce() -> T) -> Result<T, EarlyPanic> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(step))
        .map_err(|panic| EarlyPanic(panic_message(panic.as_ref())))
}

/// The message a panic carried.
pub fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_string())
}

/// What a mail's bytes alone tell (see [`Pipeline::prepare`]).
#[derive(Debug)]
pub enum Prepared {
    Mail(Box<PreparedMail>),
    /// Not parsed; `sha256` is the raw mail's hash.
    Refused {
        sha256: String,
        why: Refusal,
    },
}

#[derive(Debug)]
pub enum Refusal {
    /// Larger than `limits.max_message_bytes`: the full size, and where
    /// the whole mail stays when only its header was fetched.
    Oversize {
        size: u64,
        server_copy: Option<String>,
    },
    /// Not a mail that can be read; the reason.
    Unreadable(String),
}

impl Prepared {
    /// The declared full size of a mail of which only the header was
    /// fetched (see [`Pipeline::prepare_truncated`]).
    pub fn header_only_size(&self) -> Option<u64> {
        match self {
            Prepared::Refused {
                why:
                    Refusal::Oversize {
                        size,
                        server_copy: Some(_),
                    },
                ..
            } => Some(*size),
            _ => None,
        }
    }

    /// The hex sha256 of the raw bytes.
    pub fn raw_sha256(&self) -> &str {
        match self {
            Prepared::Mail(prepared) => &prepared.mail.raw_sha256,
            Prepared::Refused { sha256, .. } => sha256,
        }
    }
}

/// A parsed mail and what can be known of it without the store. The two
/// steps that run ahead of `decide`'s checks hold their panic, if any.
#[derive(Debug)]
pub struct PreparedMail {
    pub mail: ParsedMail,
    pub class: classify::Classification,
    pub(super) agent: Result<Option<agent::AgentAuth>, EarlyPanic>,
    pub(super) stripped: Result<strip::Stripped, EarlyPanic>,
}

impl PreparedMail {
    /// The authenticated agent who sent the mail, if one did.
    pub fn agent(&self) -> Option<&agent::AgentAuth> {
        self.agent
            .as_ref()
            .unwrap_or_else(|panic| panic.raise())
            .as_ref()
    }

    /// The reply split from its quotes.
    pub fn stripped(&self) -> &strip::Stripped {
        self.stripped.as_ref().unwrap_or_else(|panic| panic.raise())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_early_panic_is_raised_again_with_its_message() {
        let early = contained(|| -> u32 { panic!("strip went wrong on line {}", 7) });
        let early = early.expect_err("the step panicked");
        let raised = std::panic::catch_unwind(|| early.raise()).expect_err("raise panics");
        assert_eq!(panic_message(raised.as_ref()), "strip went wrong on line 7");
        assert_eq!(contained(|| 5).ok(), Some(5));
    }
}
