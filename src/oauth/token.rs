//! The token source: one per `[oauth]` section, shared (`Arc`) by the IMAP
//! watcher and the SMTP sender of that mailbox, so that one refresh serves
//! both and a rotated refresh token is never used twice. It caches the
//! access token, refreshes it ahead of expiry (one refresh at a time),
//! forgets it on [`TokenSource::invalidate`] after a login refused it,
//! writes a rotated refresh token back atomically, and after a failed
//! refresh waits (`timing`) before asking the endpoint again: callers in
//! between get the cached error at once. Entering a failure is logged once,
//! and [`TokenSource::health`] tells `/metrics` and `/healthz`. It must not
//! log a token or speak IMAP/SMTP.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use oauth2::{RefreshToken, Scope, TokenResponse as _};
use tokio::time::Instant;

use super::error::{OAuthError, classify};
use super::file::RefreshTokenFile;
use super::health::{Failing, OAuthHealth};
use super::http::HttpClient;
use super::preset::{Endpoints, OAuthClient, client};
use super::timing::{ASSUMED_LIFETIME, FailureKind, next_pause, refresh_after, usable_for};
use crate::settings::{AuthMethod, ImapSettings, OAuthSettings, SmtpSettings};

/// An access token as handed to a login; `generation` tells refreshes apart.
#[derive(Clone)]
pub struct AccessToken {
    secret: String,
    generation: u64,
}

impl AccessToken {
    pub fn secret(&self) -> &str {
        &self.secret
    }

    /// Counts up with every refresh: a new one means new credentials.
    pub fn generation(&self) -> u64 {
        self.generation
    }
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AccessToken(#{}, ***)", self.generation)
    }
}

/// While refreshing fails, how often the refresher looks for a newly
/// stored refresh token (a file read; the endpoint waits for its pause).
const FAILING_LOOK: Duration = Duration::from_secs(5);

/// Access tokens for one `[oauth]` section.
pub struct TokenSource {
    label: String,
    client: OAuthClient,
    scopes: Vec<Scope>,
    file: RefreshTokenFile,
    http: HttpClient,
    state: tokio::sync::Mutex<State>,
    health: Mutex<Option<Failing>>,
}

impl fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "TokenSource({}, {})",
            self.label,
            self.file.path().display()
        )
    }
}

#[derive(Default)]
struct State {
    current: Option<Issued>,
    generation: u64,
    refresh: Option<Refresh>,
    failure: Option<Failure>,
}

struct Issued {
    token: AccessToken,
    at: Instant,
    lifetime: Duration,
}

impl Issued {
    fn fresh(&self, now: Instant) -> bool {
        now < self.at + refresh_after(self.lifetime)
    }
    fn usable(&self, now: Instant) -> bool {
        now < self.at + usable_for(self.lifetime)
    }
}

/// The refresh token in use, and the file's text it matches: when the file
/// says something else, someone stored a new one (`oauth authorize`).
struct Refresh {
    token: String,
    file_text: Option<String>,
}

struct Failure {
    error: OAuthError,
    pause: Duration,
    retry_at: Instant,
}

impl TokenSource {
    /// The token source for a mailbox whose IMAP or SMTP logs in with
    /// XOAUTH2; `None` when neither does. `label` names it in logs and
    /// metrics (the queue).
    pub fn for_logins(
        imap: &ImapSettings,
        smtp: &SmtpSettings,
        oauth: &OAuthSettings,
        label: &str,
    ) -> anyhow::Result<Option<Arc<TokenSource>>> {
        let used = [imap.auth, smtp.auth].contains(&AuthMethod::Xoauth2);
        if !used {
            return Ok(None);
        }
        let source = Arc::new(TokenSource::new(oauth, label)?);
        super::refresher::spawn(&source);
        Ok(Some(source))
    }

    pub fn new(settings: &OAuthSettings, label: &str) -> anyhow::Result<TokenSource> {
        let endpoints = Endpoints::resolve(settings)
            .map_err(|e| anyhow::anyhow!("invalid configuration key `{}`: {}", e.key, e.reason))?;
        Ok(TokenSource {
            label: label.to_string(),
            client: client(settings, &endpoints)?,
            scopes: endpoints.scopes.into_iter().map(Scope::new).collect(),
            file: RefreshTokenFile::new(settings.refresh_token_file.trim()),
            http: HttpClient::new(),
            state: tokio::sync::Mutex::new(State::default()),
            health: Mutex::new(None),
        })
    }

    pub fn label(&self) -> &str {
        &self.label
    }

    /// A current access token: the cached one until it is due for refresh,
    /// else a new one. After a failed refresh the endpoint is asked again
    /// only once the pause is over (or the refresh-token file changed);
    /// meanwhile a token that has not expired is still handed out, else
    /// the failure.
    pub async fn access_token(&self) -> Result<AccessToken, OAuthError> {
        let mut state = self.state.lock().await;
        let now = Instant::now();
        if let Some(issued) = state.current.as_ref().filter(|i| i.fresh(now)) {
            return Ok(issued.token.clone());
        }
        if let Some(failure) = &state.failure {
            let new_file = self.file_changed(&state);
            if now < failure.retry_at && !new_file {
                return match state.current.as_ref().filter(|i| i.usable(now)) {
                    Some(issued) => Ok(issued.token.clone()),
                    None => Err(failure.error.clone()),
                };
            }
        }
        self.refresh(&mut state).await
    }

    /// Forgets `token` after a server refused it, so that the next
    /// [`access_token`](Self::access_token) refreshes. A token already
    /// replaced is left alone: two logins refused with the same token cause
    /// one refresh, not two.
    pub async fn invalidate(&self, token: &AccessToken) {
        let mut state = self.state.lock().await;
        if state
            .current
            .as_ref()
            .is_some_and(|i| i.token.generation == token.generation)
        {
            tracing::info!(
                "The OAuth2 access token for {} was refused; fetching a new one.",
                self.label
            );
            state.current = None;
        }
    }

    /// How long the background refresher may sleep: until the cached token
    /// is due; while failing, until the next try but at most
    /// `FAILING_LOOK` (a newly stored refresh token is noticed soon); no
    /// time at all before the first token or after an invalidation.
    pub(super) async fn next_check(&self) -> Duration {
        let state = self.state.lock().await;
        let now = Instant::now();
        if let Some(failure) = &state.failure {
            return failure
                .retry_at
                .saturating_duration_since(now)
                .min(FAILING_LOOK);
        }
        state.current.as_ref().map_or(Duration::ZERO, |i| {
            (i.at + refresh_after(i.lifetime)).saturating_duration_since(now)
        })
    }

    /// Whether tokens come, for `/metrics` and `/healthz`.
    pub fn health(&self) -> OAuthHealth {
        let failing = self
            .health
            .lock()
            .map(|h| h.clone())
            .unwrap_or_else(|p| p.into_inner().clone());
        OAuthHealth {
            label: self.label.clone(),
            failing,
        }
    }

    async fn refresh(&self, state: &mut State) -> Result<AccessToken, OAuthError> {
        let refresh_token = match self.refresh_token(state) {
            Ok(token) => token,
            Err(err) => return self.failed(state, err),
        };
        let secret = RefreshToken::new(refresh_token.clone());
        let answer = self
            .client
            .exchange_refresh_token(&secret)
            .add_scopes(self.scopes.iter().cloned())
            .request_async(&self.http)
            .await;
        let response = match answer {
            Ok(response) => response,
            Err(err) => return self.failed(state, classify(err, self.file.path())),
        };
        if let Some(rotated) = response.refresh_token()
            && rotated.secret() != &refresh_token
        {
            self.rotate(state, rotated.secret());
        }
        state.generation += 1;
        let token = AccessToken {
            secret: response.access_token().secret().clone(),
            generation: state.generation,
        };
        state.current = Some(Issued {
            token: token.clone(),
            at: Instant::now(),
            lifetime: response.expires_in().unwrap_or(ASSUMED_LIFETIME),
        });
        if state.failure.take().is_some() {
            tracing::info!("OAuth2 for {}: access tokens come again.", self.label);
        }
        self.set_health(None);
        Ok(token)
    }

    /// Records a failed refresh: logged when it starts or changes kind,
    /// quietly while it repeats; the next try waits a growing pause.
    fn failed(&self, state: &mut State, error: OAuthError) -> Result<AccessToken, OAuthError> {
        let kind = if error.needs_action() {
            FailureKind::Refused
        } else {
            FailureKind::Transient
        };
        let previous = state.failure.take();
        let repeated = previous
            .as_ref()
            .is_some_and(|p| p.error.code() == error.code());
        let pause = next_pause(kind, previous.as_ref().map(|p| p.pause));
        let secs = pause.as_secs();
        if repeated {
            tracing::debug!(
                "OAuth2 for {} still fails: {error}; next try in {secs} s.",
                self.label
            );
        } else if error.needs_action() {
            tracing::error!(
                "OAuth2 for {}: {error}. Retrying every few minutes.",
                self.label
            );
        } else {
            tracing::warn!("OAuth2 for {}: {error}; next try in {secs} s.", self.label);
        }
        let since = self
            .health()
            .failing
            .map_or_else(|| chrono::Utc::now().timestamp(), |f| f.since_unix);
        self.set_health(Some(Failing {
            since_unix: since,
            code: error.code(),
            needs_action: error.needs_action(),
        }));
        let now = Instant::now();
        state.failure = Some(Failure {
            error: error.clone(),
            pause,
            retry_at: now + pause,
        });
        match state.current.as_ref().filter(|i| i.usable(now)) {
            Some(issued) => Ok(issued.token.clone()),
            None => Err(error),
        }
    }

    /// The refresh token to use: ours while the file still says what we
    /// last read or wrote (ours may be newer if writing it back failed),
    /// else the file's.
    fn refresh_token(&self, state: &mut State) -> Result<String, OAuthError> {
        let file = self.file.path().display().to_string();
        let on_disk = self.file.read().map_err(|e| OAuthError::File {
            file: file.clone(),
            reason: e.to_string(),
        })?;
        if let Some(ours) = state.refresh.as_ref().filter(|r| r.file_text == on_disk) {
            return Ok(ours.token.clone());
        }
        let token = on_disk.ok_or(OAuthError::NoRefreshToken { file })?;
        state.refresh = Some(Refresh {
            token: token.clone(),
            file_text: Some(token.clone()),
        });
        Ok(token)
    }

    fn file_changed(&self, state: &State) -> bool {
        let on_disk = self.file.read().ok().flatten();
        match &state.refresh {
            Some(r) => on_disk.is_some() && r.file_text != on_disk,
            None => on_disk.is_some(),
        }
    }

    /// Keeps a rotated refresh token: in the file (atomically), and in
    /// memory even when the file cannot be written.
    fn rotate(&self, state: &mut State, rotated: &str) {
        let file_text = match self.file.write(rotated) {
            Ok(()) => {
                tracing::info!(
                    "OAuth2 for {}: the provider rotated the refresh token; {} holds the new one.",
                    self.label,
                    self.file.path().display()
                );
                Some(rotated.to_string())
            }
            Err(err) => {
                tracing::error!(
                    "OAuth2 for {}: the provider rotated the refresh token, but writing it to {} \
                     failed: {err}. It is kept in memory only; after a restart `postdesk oauth \
                     authorize` may be needed.",
                    self.label,
                    self.file.path().display()
                );
                state.refresh.as_ref().and_then(|r| r.file_text.clone())
            }
        };
        state.refresh = Some(Refresh {
            token: rotated.to_string(),
            file_text,
        });
    }

    fn set_health(&self, failing: Option<Failing>) {
        match self.health.lock() {
            Ok(mut health) => *health = failing,
            Err(poisoned) => *poisoned.into_inner() = failing,
        }
    }
}

#[cfg(test)]
#[path = "token_tests.rs"]
mod tests;
