//! The outbox worker's SMTP connection, built from `[smtp]` and, for
//! `smtp.auth = "xoauth2"`, the mailbox's token source. One connection is
//! kept between mails (the worker sends one at a time) and opened with
//! TCP_NODELAY: lettre writes a mail's body and its closing `.` in two
//! writes, and with Nagle on the second waits for the server's delayed
//! ACK, 40 ms on Linux (200 ms on some servers), which held sending at
//! 23 mails/s (lettre's pooled transport cannot set it, so the connection
//! is ours and lettre speaks SMTP on it). With XOAUTH2, a connection logged
//! in with an older token is closed, and a login the server refuses gets
//! the token invalidated and one retry with a fresh one. It must not
//! decide what a failure means for the mail (`sender.rs` does) and must not
//! log a token.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use lettre::address::Envelope;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{
    AsyncSmtpConnection, AsyncTokioStream, Certificate, TlsParameters,
};
use lettre::transport::smtp::commands::Noop;
use lettre::transport::smtp::extension::ClientId;
use lettre::transport::smtp::response::{Category, Code, Detail, Response, Severity};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::oauth::{OAuthError, TokenSource};
use crate::settings::{AuthMethod, SmtpSettings, TlsMode};

/// A kept connection used within this long is used again at once; an
/// older one is asked first (NOOP), as the server may have closed it.
const TRUSTED_IDLE: Duration = Duration::from_secs(2);
/// A kept connection idle longer is closed and a new one opened (servers
/// drop idle clients after a few minutes: Postfix after 300 s).
const MAX_IDLE: Duration = Duration::from_secs(60);

/// The mechanisms tried with a password, as lettre's transport does.
const PASSWORD_MECHANISMS: [Mechanism; 2] = [Mechanism::Plain, Mechanism::Login];

/// Sends through `[smtp]`, logging in as its `auth` says.
pub struct Mailer {
    settings: SmtpSettings,
    tls: Tls,
    login: Login,
    /// The connection kept between mails, with the generation of the
    /// access token it logged in with (0 without XOAUTH2).
    kept: tokio::sync::Mutex<Option<Kept>>,
}

enum Tls {
    None,
    /// STARTTLS, required (lettre's upgrade).
    Starttls(TlsParameters),
    /// TLS from the first byte (`smtp.tls = "tls"`).
    Wrapper(TlsConnector),
}

enum Login {
    /// No login (`None`), or username and password.
    Fixed(Option<Credentials>),
    /// XOAUTH2 with the token source's current access token.
    Oauth(Arc<TokenSource>),
}

struct Kept {
    connection: AsyncSmtpConnection,
    generation: u64,
    used: Instant,
}

/// What to do on the connection.
#[derive(Clone, Copy)]
enum Op<'a> {
    Send(&'a Envelope, &'a [u8]),
    /// Connect and log in (or find the kept connection alive), then NOOP.
    Test,
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
            (AuthMethod::Xoauth2, Some(tokens)) => Login::Oauth(tokens),
            (AuthMethod::Xoauth2, None) => {
                anyhow::bail!("smtp.auth is \"xoauth2\" but no OAuth2 token source was given")
            }
            (AuthMethod::Password, _) if settings.username.is_empty() => Login::Fixed(None),
            (AuthMethod::Password, _) => Login::Fixed(Some(Credentials::new(
                settings.username.clone(),
                settings.password.expose().to_string(),
            ))),
        };
        Ok(Mailer {
            settings: settings.clone(),
            tls,
            login,
            kept: tokio::sync::Mutex::new(None),
        })
    }

    /// Sends `raw` to the envelope's recipients.
    pub async fn send_raw(&self, envelope: &Envelope, raw: &[u8]) -> Result<Response, SendError> {
        self.attempt(Op::Send(envelope, raw)).await
    }

    /// Connects and logs in (or finds the kept connection alive) and asks
    /// the server a NOOP: whether a mail could be sent now.
    pub async fn test_connection(&self) -> Result<(), SendError> {
        self.attempt(Op::Test).await.map(|_| ())
    }

    /// Runs `op` on the kept connection or a new one; with XOAUTH2, a
    /// refused login makes the token source forget the token and `op` runs
    /// once more with a new one. A connection is kept only after an `op`
    /// that left it sound (lettre closes it on any error).
    async fn attempt(&self, op: Op<'_>) -> Result<Response, SendError> {
        let mut kept = self.kept.lock().await;
        let mut retried = false;
        loop {
            let (credentials, mechanisms, token) = match &self.login {
                Login::Fixed(credentials) => (credentials.clone(), &PASSWORD_MECHANISMS[..], None),
                Login::Oauth(tokens) => {
                    let token = tokens.access_token().await.map_err(SendError::Token)?;
                    let credentials = Credentials::new(
                        self.settings.username.clone(),
                        token.secret().to_string(),
                    );
                    (Some(credentials), &[Mechanism::Xoauth2][..], Some(token))
                }
            };
            let generation = token.as_ref().map_or(0, |t| t.generation());
            let login = credentials.as_ref().map(|c| (c, mechanisms));
            let result = self.on_connection(&mut kept, generation, login, op).await;
            match (result, &self.login, token) {
                (Err(err), Login::Oauth(tokens), Some(token))
                    if err.refused_login() && !retried =>
                {
                    tokens.invalidate(&token).await;
                    retried = true;
                }
                (result, _, _) => return result,
            }
        }
    }

    async fn on_connection(
        &self,
        kept: &mut Option<Kept>,
        generation: u64,
        login: Option<(&Credentials, &[Mechanism])>,
        op: Op<'_>,
    ) -> Result<Response, SendError> {
        let reused = match kept.take() {
            Some(old) if old.generation == generation && old.used.elapsed() < TRUSTED_IDLE => {
                Some(old)
            }
            Some(mut old) if old.generation == generation && old.used.elapsed() < MAX_IDLE => {
                // Bounded: a connection the network dropped without a word
                // (a NAT's timeout) answers nothing at all.
                let alive = tokio::time::timeout(self.limit(), old.connection.test_connected());
                matches!(alive.await, Ok(true)).then_some(old)
            }
            // Idle too long or of an older token: closed without QUIT, which
            // such a connection might never answer.
            _ => None,
        };
        let mut current = match reused {
            Some(current) => current,
            None => Kept {
                connection: self.connect(login).await?,
                generation,
                used: Instant::now(),
            },
        };
        let result = match op {
            Op::Send(envelope, raw) => current.connection.send(envelope, raw).await,
            Op::Test => current.connection.command(Noop).await,
        }
        .map_err(SendError::smtp);
        if result.is_ok() && !current.connection.has_broken() {
            current.used = Instant::now();
            *kept = Some(current);
        }
        result
    }

    /// How long one step of SMTP may take (`smtp.timeout_seconds`).
    fn limit(&self) -> Duration {
        Duration::from_secs(self.settings.timeout_seconds.max(1))
    }

    /// A new connection: TCP with TLS as configured, the greeting and EHLO
    /// (lettre's), then the login.
    async fn connect(
        &self,
        login: Option<(&Credentials, &[Mechanism])>,
    ) -> Result<AsyncSmtpConnection, SendError> {
        let s = &self.settings;
        let limit = self.limit();
        let address = format!("{}:{}", s.host, s.port);
        let tcp = match tokio::time::timeout(limit, TcpStream::connect((s.host.as_str(), s.port)))
            .await
        {
            Ok(Ok(tcp)) => tcp,
            Ok(Err(err)) => {
                return Err(SendError::Network(format!(
                    "cannot connect to {address}: {err}"
                )));
            }
            Err(_) => {
                return Err(SendError::Network(format!(
                    "no connection to {address} within {} s",
                    limit.as_secs()
                )));
            }
        };
        // The reason the connection is ours (see the module's doc).
        tcp.set_nodelay(true)
            .map_err(|err| SendError::Network(format!("cannot set TCP_NODELAY: {err}")))?;
        let hello = ClientId::default();
        let stream: Box<dyn AsyncTokioStream> = match &self.tls {
            Tls::Wrapper(connector) => {
                let name = ServerName::try_from(s.host.clone())
                    .map_err(|err| SendError::Network(format!("smtp.host for TLS: {err}")))?;
                let handshake = connector.connect(name, tcp);
                match tokio::time::timeout(limit, handshake).await {
                    Ok(Ok(tls)) => Box::new(TlsStream(tls)),
                    Ok(Err(err)) => {
                        return Err(SendError::Network(format!("TLS with {address}: {err}")));
                    }
                    Err(_) => {
                        return Err(SendError::Network(format!(
                            "no TLS handshake with {address} within {} s",
                            limit.as_secs()
                        )));
                    }
                }
            }
            Tls::None | Tls::Starttls(_) => Box::new(tcp),
        };
        let opening = async {
            let mut connection = AsyncSmtpConnection::connect_with_transport(stream, &hello)
                .await
                .map_err(SendError::smtp)?;
            if let Tls::Starttls(parameters) = &self.tls {
                if !connection.can_starttls() {
                    connection.abort().await;
                    return Err(SendError::Network(format!(
                        "{address} does not offer STARTTLS (smtp.tls = \"starttls\")"
                    )));
                }
                connection
                    .starttls(parameters.clone(), &hello)
                    .await
                    .map_err(SendError::smtp)?;
            }
            if let Some((credentials, mechanisms)) = login {
                connection
                    .auth(mechanisms, credentials)
                    .await
                    .map_err(SendError::smtp)?;
            }
            Ok(connection)
        };
        match tokio::time::timeout(limit, opening).await {
            Ok(result) => result,
            Err(_) => Err(SendError::Network(format!(
                "no greeting, TLS or login from {address} within {} s",
                limit.as_secs()
            ))),
        }
    }
}

fn tls(settings: &SmtpSettings) -> anyhow::Result<Tls> {
    Ok(match settings.tls {
        TlsMode::Tls => {
            let config = crate::imap::tls_client_config(&settings.ca_file, "smtp.ca_file")?;
            Tls::Wrapper(TlsConnector::from(Arc::new(config)))
        }
        TlsMode::Starttls => {
            let mut builder = TlsParameters::builder(settings.host.clone());
            if !settings.ca_file.is_empty() {
                let pem = std::fs::read(&settings.ca_file)
                    .with_context(|| format!("cannot read smtp.ca_file {}", settings.ca_file))?;
                builder = builder.add_root_certificate(Certificate::from_pem(&pem)?);
            }
            Tls::Starttls(builder.build_rustls()?)
        }
        TlsMode::None => Tls::None,
    })
}

/// TLS from the first byte, handed to lettre as its stream.
#[derive(Debug)]
struct TlsStream(tokio_rustls::client::TlsStream<TcpStream>);

impl AsyncTokioStream for TlsStream {
    fn peer_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.0.get_ref().0.peer_addr()
    }
}

impl AsyncRead for TlsStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
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
    /// No connection, TLS or answer: worth another try.
    #[error("{0}")]
    Network(String),
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
            SendError::Token(_) | SendError::Network(_) => None,
        }
    }

    /// Whether the server refused the login (so a fresh token may help).
    fn refused_login(&self) -> bool {
        match self {
            SendError::Smtp(err) => refused_login(err),
            SendError::TokenRefused => true,
            SendError::Token(_) | SendError::Network(_) => false,
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
