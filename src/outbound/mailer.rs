//! The outbox worker's SMTP transport, built from `[smtp]` and, for
//! `smtp.auth = "xoauth2"`, the mailbox's token source. With a password it
//! is one pooled lettre transport. With XOAUTH2 it is rebuilt whenever the
//! token source hands out a new access token (connections pooled under the
//! old one finish and close), and a login the server refuses gets the token
//! invalidated and one retry with a fresh one. It must not decide what a
//! failure means for the mail (`sender.rs` does) and must not log a token.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use lettre::address::Envelope;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::transport::smtp::response::{Category, Code, Detail, Response, Severity};
use lettre::{AsyncSmtpTransport, AsyncTransport as _, Tokio1Executor};

use crate::oauth::{AccessToken, OAuthError, TokenSource};
use crate::settings::{AuthMethod, SmtpSettings, TlsMode};

type Transport = AsyncSmtpTransport<Tokio1Executor>;

/// Sends through `[smtp]`, logging in as its `auth` says.
pub struct Mailer {
    settings: SmtpSettings,
    tls: Tls,
    login: Login,
}

enum Login {
    /// No login, or username and password: one transport for good.
    Fixed(Transport),
    /// XOAUTH2: the transport of the current token, by its generation.
    Oauth {
        tokens: Arc<TokenSource>,
        built: Mutex<Option<(u64, Transport)>>,
    },
}

impl Mailer {
    /// Checks the TLS settings (`smtp.ca_file`) at once; with XOAUTH2,
    /// `tokens` must be the mailbox's token source.
    pub fn new(
        settings: &SmtpSettings,
        tokens: Option<Arc<TokenSource>>,
    ) -> anyhow::Result<Mailer> {
        let tls = tls(settings)?;
        let login = match (settings.auth, tokens) {
            (AuthMethod::Xoauth2, Some(tokens)) => Login::Oauth {
                tokens,
                built: Mutex::new(None),
            },
            (AuthMethod::Xoauth2, None) => {
                anyhow::bail!("smtp.auth is \"xoauth2\" but no OAuth2 token source was given")
            }
            (AuthMethod::Password, _) if settings.username.is_empty() => {
                Login::Fixed(transport(settings, &tls, None))
            }
            (AuthMethod::Password, _) => {
                let credentials = Credentials::new(
                    settings.username.clone(),
                    settings.password.expose().to_string(),
                );
                Login::Fixed(transport(settings, &tls, Some((credentials, None))))
            }
        };
        Ok(Mailer {
            settings: settings.clone(),
            tls,
            login,
        })
    }

    /// Sends `raw` to the envelope's recipients.
    pub async fn send_raw(&self, envelope: &Envelope, raw: &[u8]) -> Result<Response, SendError> {
        self.attempt(|t| async move { t.send_raw(envelope, raw).await })
            .await
    }

    /// Connects and logs in (or finds the pooled connection alive).
    pub async fn test_connection(&self) -> Result<bool, SendError> {
        self.attempt(|t| async move { t.test_connection().await })
            .await
    }

    /// Runs `op` on the transport; with XOAUTH2, a refused login makes the
    /// token source forget the token and `op` runs once more with a new one.
    async fn attempt<T, F, Fut>(&self, op: F) -> Result<T, SendError>
    where
        F: Fn(Transport) -> Fut,
        Fut: Future<Output = Result<T, lettre::transport::smtp::Error>>,
    {
        let (tokens, built) = match &self.login {
            Login::Fixed(transport) => return op(transport.clone()).await.map_err(SendError::smtp),
            Login::Oauth { tokens, built } => (tokens, built),
        };
        let mut retried = false;
        loop {
            let token = tokens.access_token().await.map_err(SendError::Token)?;
            let transport = self.transport_of(&token, built);
            match op(transport).await {
                Ok(value) => return Ok(value),
                Err(err) if refused_login(&err) && !retried => {
                    tokens.invalidate(&token).await;
                    retried = true;
                }
                Err(err) => return Err(SendError::smtp(err)),
            }
        }
    }

    /// The transport carrying `token`, built anew when the token is new.
    fn transport_of(
        &self,
        token: &AccessToken,
        built: &Mutex<Option<(u64, Transport)>>,
    ) -> Transport {
        let mut built = built.lock().unwrap_or_else(|p| p.into_inner());
        match built.as_ref() {
            Some((generation, transport)) if *generation == token.generation() => transport.clone(),
            _ => {
                let credentials =
                    Credentials::new(self.settings.username.clone(), token.secret().to_string());
                let login = Some((credentials, Some(Mechanism::Xoauth2)));
                let transport = transport(&self.settings, &self.tls, login);
                *built = Some((token.generation(), transport.clone()));
                transport
            }
        }
    }
}

/// A transport for `settings`, logging in with `login` (and only with its
/// mechanism, when one is named).
fn transport(
    s: &SmtpSettings,
    tls: &Tls,
    login: Option<(Credentials, Option<Mechanism>)>,
) -> Transport {
    let mut builder = Transport::builder_dangerous(s.host.clone())
        .port(s.port)
        .tls(tls.clone())
        .timeout(Some(Duration::from_secs(s.timeout_seconds)));
    if let Some((credentials, mechanism)) = login {
        builder = builder.credentials(credentials);
        if let Some(mechanism) = mechanism {
            builder = builder.authentication(vec![mechanism]);
        }
    }
    builder.build()
}

fn tls(settings: &SmtpSettings) -> anyhow::Result<Tls> {
    let parameters = || -> anyhow::Result<TlsParameters> {
        let mut builder = TlsParameters::builder(settings.host.clone());
        if !settings.ca_file.is_empty() {
            let pem = std::fs::read(&settings.ca_file)
                .with_context(|| format!("cannot read smtp.ca_file {}", settings.ca_file))?;
            builder = builder.add_root_certificate(Certificate::from_pem(&pem)?);
        }
        Ok(builder.build_rustls()?)
    };
    Ok(match settings.tls {
        TlsMode::Tls => Tls::Wrapper(parameters()?),
        TlsMode::Starttls => Tls::Required(parameters()?),
        TlsMode::None => Tls::None,
    })
}

/// lettre's words when the server answers `AUTH XOAUTH2` with an error
/// challenge (Postfix with Dovecot, Gmail) instead of 535 at once.
const XOAUTH2_CHALLENGE: &str = "does not expect a challenge";

/// Whether the server refused the login (so a fresh token may help).
fn refused_login(err: &lettre::transport::smtp::Error) -> bool {
    let code = err.status().map(u16::from);
    matches!(code, Some(530 | 534 | 535 | 538))
        || (err.is_client() && err.to_string().contains(XOAUTH2_CHALLENGE))
}

/// Why a mail was not handed over.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error(transparent)]
    Smtp(lettre::transport::smtp::Error),
    #[error(
        "the SMTP server refused the OAuth2 access token (535 5.7.8 XOAUTH2 authentication failed)"
    )]
    TokenRefused,
    #[error("no OAuth2 access token for SMTP: {0}")]
    Token(OAuthError),
}

impl SendError {
    fn smtp(err: lettre::transport::smtp::Error) -> SendError {
        if err.is_client() && err.to_string().contains(XOAUTH2_CHALLENGE) {
            SendError::TokenRefused
        } else {
            SendError::Smtp(err)
        }
    }

    /// The server's reply code. A refused token counts as 535, and
    /// credentials that cannot be had without someone acting (a revoked
    /// refresh token) as 530, as the server would answer without them; a
    /// token endpoint that cannot be reached has no code (try again).
    pub fn status(&self) -> Option<Code> {
        let code = |detail| {
            Code::new(
                Severity::PermanentNegativeCompletion,
                Category::Unspecified3,
                detail,
            )
        };
        match self {
            SendError::Smtp(err) => err.status(),
            SendError::TokenRefused => Some(code(Detail::Five)),
            SendError::Token(err) if err.needs_action() => Some(code(Detail::Zero)),
            SendError::Token(_) => None,
        }
    }

    /// A 5xx reply (or a refused login).
    pub fn is_permanent(&self) -> bool {
        self.status()
            .is_some_and(|c| c.severity == Severity::PermanentNegativeCompletion)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_or_unobtainable_token_reads_as_a_refused_login() {
        let refused = SendError::TokenRefused;
        assert_eq!(refused.status().map(u16::from), Some(535));
        let revoked = SendError::Token(OAuthError::Revoked {
            file: "/x".into(),
            detail: String::new(),
        });
        assert_eq!(revoked.status().map(u16::from), Some(530));
        assert!(revoked.to_string().contains("postdesk oauth authorize"));
        let down = SendError::Token(OAuthError::Unreachable("timeout".into()));
        assert_eq!(
            down.status(),
            None,
            "an unreachable endpoint is worth a retry"
        );
        assert!(!down.is_permanent());
    }
}
