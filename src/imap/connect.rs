//! IMAP connection set-up: TCP with a timeout, then implicit TLS, STARTTLS
//! or plain as configured, the greeting and LOGIN (or `AUTHENTICATE
//! XOAUTH2` with a token from the mailbox's token source), giving a
//! logged-in [`ImapSession`]. It owns the stream type ([`ImapStream`], one type for all
//! three modes) and the TLS trust (system roots plus `imap.ca_file`). It must
//! not select mailboxes, fetch mail, retry or sleep: callers decide what a
//! failure means. Integration tests reuse [`connect`] and [`append`] to read
//! and fill other users' mailboxes.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use async_imap::imap_proto::{Response, Status};
use async_imap::{Client, Session};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::command::{imap_error, within};
use crate::oauth::{TokenSource, Xoauth2Authenticator};
use crate::settings::{AuthMethod, ImapSettings, TlsMode};

/// A logged-in IMAP session over whichever transport the settings chose.
pub type ImapSession = Session<ImapStream>;

/// How long `append`, and LOGOUT at shutdown, may take.
const APPEND_TIMEOUT: Duration = Duration::from_secs(60);

/// The byte stream under a session: plain TCP or TLS over TCP.
#[derive(Debug)]
pub enum ImapStream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for ImapStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ImapStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            ImapStream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for ImapStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ImapStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            ImapStream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ImapStream::Plain(s) => Pin::new(s).poll_flush(cx),
            ImapStream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ImapStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            ImapStream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ImapStream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            ImapStream::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            ImapStream::Plain(s) => s.is_write_vectored(),
            ImapStream::Tls(s) => s.is_write_vectored(),
        }
    }
}

/// Connects to `settings.host:port`, sets up TLS as configured, reads the
/// greeting and logs in as `settings.username` with its password. Every
/// step has `settings.timeout_seconds`.
pub async fn connect(settings: &ImapSettings) -> anyhow::Result<ImapSession> {
    connect_with(settings, None).await
}

/// [`connect`], logging in as `settings.auth` says: with the password, or
/// with XOAUTH2 and an access token from `tokens`.
pub async fn connect_with(
    settings: &ImapSettings,
    tokens: Option<&TokenSource>,
) -> anyhow::Result<ImapSession> {
    let limit = Duration::from_secs(settings.timeout_seconds.max(1));
    let host = settings.host.as_str();
    let port = settings.port;
    let what = format!("connecting to {host}:{port}");
    let tcp = within(limit, &what, TcpStream::connect((host, port))).await?;
    // Commands are small and latency matters more than packet count.
    let _ = tcp.set_nodelay(true);

    let client = match settings.tls {
        TlsMode::None => {
            let mut client = Client::new(ImapStream::Plain(tcp));
            read_greeting(&mut client, limit).await?;
            client
        }
        TlsMode::Tls => {
            let tls = tls_handshake(tcp, settings, limit).await?;
            let mut client = Client::new(ImapStream::Tls(Box::new(tls)));
            read_greeting(&mut client, limit).await?;
            client
        }
        TlsMode::Starttls => {
            let mut client = Client::new(ImapStream::Plain(tcp));
            read_greeting(&mut client, limit).await?;
            within(
                limit,
                "asking for STARTTLS",
                client.run_command_and_check_ok("STARTTLS", None),
            )
            .await
            .context("the server did not agree to STARTTLS")?;
            // Anything the server sent after its OK is dropped with the
            // buffer here, as it must be (no plaintext injection).
            let ImapStream::Plain(tcp) = client.into_inner() else {
                bail!("STARTTLS on a stream that is already TLS");
            };
            let tls = tls_handshake(tcp, settings, limit).await?;
            // No second greeting after STARTTLS (RFC 3501 6.2.1).
            Client::new(ImapStream::Tls(Box::new(tls)))
        }
    };

    let user = settings.username.as_str();
    if settings.auth == AuthMethod::Xoauth2 {
        let tokens = tokens.ok_or_else(|| {
            anyhow!("imap.auth is \"xoauth2\" but no OAuth2 token source was given")
        })?;
        return xoauth2_login(client, user, tokens, limit).await;
    }
    let what = format!("logging in as {user}");
    let login = client.login(user, settings.password.expose());
    match tokio::time::timeout(limit, login).await {
        Ok(Ok(session)) => Ok(session),
        Ok(Err((err, _client))) => {
            Err(imap_error("LOGIN", err).context(format!("the IMAP login as {user} failed")))
        }
        Err(_) => Err(anyhow!(
            "no answer within {} s while {what}",
            limit.as_secs()
        )),
    }
}

/// `AUTHENTICATE XOAUTH2` with a current access token. A refusal may mean
/// the token was revoked before its expiry: the token source forgets it
/// and one more try goes with a fresh one; after that the caller's backoff.
async fn xoauth2_login(
    mut client: Client<ImapStream>,
    user: &str,
    tokens: &TokenSource,
    limit: Duration,
) -> anyhow::Result<ImapSession> {
    let mut retried = false;
    loop {
        let token = tokens
            .access_token()
            .await
            .with_context(|| format!("no OAuth2 access token for the IMAP login as {user}"))?;
        let auth = client.authenticate("XOAUTH2", Xoauth2Authenticator::new(user, token.secret()));
        match tokio::time::timeout(limit, auth).await {
            Ok(Ok(session)) => return Ok(session),
            Ok(Err((async_imap::error::Error::No(_), back))) if !retried => {
                tokens.invalidate(&token).await;
                (client, retried) = (back, true);
            }
            Ok(Err((err, _))) => {
                return Err(imap_error("AUTHENTICATE XOAUTH2", err)
                    .context(format!("the IMAP login as {user} with XOAUTH2 failed")));
            }
            Err(_) => bail!(
                "no answer within {} s while logging in as {user} with XOAUTH2",
                limit.as_secs()
            ),
        }
    }
}

/// Appends one raw message to `mailbox` (for tests and tools).
pub async fn append(session: &mut ImapSession, mailbox: &str, raw: &[u8]) -> anyhow::Result<()> {
    let what = format!("appending a message to {mailbox}");
    match tokio::time::timeout(APPEND_TIMEOUT, session.append(mailbox, None, None, raw)).await {
        Ok(result) => result.map_err(|e| imap_error(&format!("APPEND {mailbox}"), e)),
        Err(_) => Err(anyhow!(
            "no answer within {} s while {what}",
            APPEND_TIMEOUT.as_secs()
        )),
    }
}

/// Says LOGOUT, waiting at most `limit`; errors are ignored (best effort).
pub async fn logout(session: &mut ImapSession, limit: Duration) {
    if let Ok(Err(err)) = tokio::time::timeout(limit, session.logout()).await {
        tracing::debug!("IMAP LOGOUT failed: {err}");
    }
}

async fn read_greeting(client: &mut Client<ImapStream>, limit: Duration) -> anyhow::Result<()> {
    let Some(greeting) = within(limit, "waiting for the greeting", client.read_response()).await?
    else {
        bail!("the server closed the connection before its greeting");
    };
    match greeting.parsed() {
        Response::Data {
            status: Status::Ok, ..
        } => Ok(()),
        Response::Data { status, outcome } => {
            let text = outcome.information.as_deref().unwrap_or("");
            bail!("the server greeted with {status:?} {text}; only OK is supported")
        }
        other => bail!("unexpected greeting: {other:?}"),
    }
}

async fn tls_handshake(
    tcp: TcpStream,
    settings: &ImapSettings,
    limit: Duration,
) -> anyhow::Result<TlsStream<TcpStream>> {
    let connector = tls_connector(&settings.ca_file)?;
    let name = ServerName::try_from(settings.host.clone())
        .with_context(|| format!("`{}` is not a valid TLS server name", settings.host))?;
    let what = format!("negotiating TLS with {}", settings.host);
    within(limit, &what, connector.connect(name, tcp)).await
}

/// System roots plus the PEM certificates in `ca_file` (if not empty).
fn tls_connector(ca_file: &str) -> anyhow::Result<TlsConnector> {
    Ok(TlsConnector::from(Arc::new(tls_client_config(
        ca_file,
        "imap.ca_file",
    )?)))
}

/// The TLS client settings of every TLS client of the daemon (IMAP, SMTP
/// from the first byte, PostgreSQL): [`trusted_roots`] of `ca_file` (`key`
/// names the setting in errors), safe protocol versions. The ring provider
/// is named explicitly, so no process default is needed.
pub fn tls_client_config(ca_file: &str, key: &str) -> anyhow::Result<ClientConfig> {
    let roots = trusted_roots(ca_file, key)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("the TLS provider offers no protocol version")?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// The system's CA certificates plus those in `ca_file` (PEM; none when
/// empty); `key` names the setting in errors. Shared by every TLS client
/// of the daemon (through [`tls_client_config`]).
pub fn trusted_roots(ca_file: &str, key: &str) -> anyhow::Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for err in &native.errors {
        tracing::debug!("Skipping a system CA certificate: {err}");
    }
    roots.add_parsable_certificates(native.certs);
    if !ca_file.is_empty() {
        let mut added = 0;
        for cert in CertificateDer::pem_file_iter(ca_file)
            .with_context(|| format!("cannot read {key} `{ca_file}`"))?
        {
            let cert = cert.with_context(|| format!("{key} `{ca_file}` is not valid PEM"))?;
            roots
                .add(cert)
                .with_context(|| format!("{key} `{ca_file}` holds an unusable certificate"))?;
            added += 1;
        }
        if added == 0 {
            bail!("{key} `{ca_file}` holds no certificate");
        }
    }
    if roots.is_empty() {
        bail!("no trusted CA certificates: the system has none and {key} is empty");
    }
    Ok(roots)
}
