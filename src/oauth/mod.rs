//! OAuth2 for IMAP and SMTP (SASL XOAUTH2): where access tokens come from.
//! It owns the provider presets (`preset`), the shared [`TokenSource`] that
//! caches an access token, refreshes it ahead of expiry, writes a rotated
//! refresh token back atomically (`file`), backs off after failures
//! (`token`, `timing`, `error`) and keeps its token fresh in the background
//! (`refresher`), what `/healthz` and `/metrics` show of it
//! (`health`), the device-code flow of `postdesk oauth authorize`
//! (`device`) and the small HTTP client the `oauth2` crate calls (`http`).
//! It must not speak IMAP or SMTP (callers put the token in their own
//! login), and must never log or print a token.

mod device;
mod error;
mod file;
mod health;
mod http;
mod preset;
mod refresher;
mod timing;
mod token;

pub use device::{DeviceFlowError, authorize};
pub use error::OAuthError;
pub use file::RefreshTokenFile;
pub use health::{Failing, OAuthHealth, OAuthReport};
pub use preset::{Endpoints, check_settings};
pub use token::{AccessToken, TokenSource};

/// The SASL XOAUTH2 initial response (before base64):
/// `user=USER ^A auth=Bearer TOKEN ^A ^A`, as Google and Microsoft define it.
pub fn xoauth2_sasl(user: &str, token: &str) -> String {
    format!("user={user}\x01auth=Bearer {token}\x01\x01")
}

/// An async-imap authenticator for `AUTHENTICATE XOAUTH2`: the SASL string
/// on the first challenge; after that an empty answer, which is what a
/// client sends to the server's error challenge so that the server can
/// finish with `NO`.
pub struct Xoauth2Authenticator {
    initial: Option<String>,
}

impl Xoauth2Authenticator {
    pub fn new(user: &str, token: &str) -> Self {
        Xoauth2Authenticator {
            initial: Some(xoauth2_sasl(user, token)),
        }
    }
}

impl async_imap::Authenticator for Xoauth2Authenticator {
    type Response = String;

    fn process(&mut self, _challenge: &[u8]) -> String {
        self.initial.take().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_imap::Authenticator as _;

    #[test]
    fn the_sasl_string_has_the_documented_layout() {
        assert_eq!(
            xoauth2_sasl(
                "someuser@example.com",
                "ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg"
            ),
            "user=someuser@example.com\u{1}auth=Bearer \
             ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg\u{1}\u{1}"
        );
    }

    #[test]
    fn the_authenticator_answers_an_error_challenge_with_nothing() {
        let mut auth = Xoauth2Authenticator::new("u@example.test", "tok");
        assert_eq!(
            auth.process(b""),
            "user=u@example.test\u{1}auth=Bearer tok\u{1}\u{1}"
        );
        // Dovecot and Gmail send a JSON error as a second challenge.
        assert_eq!(auth.process(br#"{"status":"401"}"#), "");
    }
}
