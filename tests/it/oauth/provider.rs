//! A fake OAuth2 provider on 127.0.0.1 for the XOAUTH2 tests: the token
//! endpoint (refresh grant: short-lived access tokens, a new refresh token
//! every time, the old one dead; `invalid_grant` once revoked; the device
//! grant: `authorization_pending` twice, then a token), the device
//! endpoint, and the RFC 7662 introspection endpoint Dovecot's oauth2
//! passdb asks (active only for issued, unexpired tokens).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use oauth2::url::form_urlencoded;

/// What the provider knows and has seen.
pub struct State {
    /// Access tokens live this long.
    pub lifetime: Duration,
    /// The user introspection names for a good token.
    pub user: String,
    /// The one refresh token that works now.
    pub refresh: String,
    /// Answer every refresh with `invalid_grant`.
    pub revoked: bool,
    /// Answer this many introspections inactive, whatever the token (a
    /// token revoked before its expiry).
    pub refuse_next: usize,
    access: HashMap<String, Instant>,
    /// Access tokens issued.
    pub issued: usize,
    /// When each refresh request came.
    pub refresh_requests: Vec<Instant>,
    /// Introspections answered active.
    pub active_answers: usize,
    /// Introspections answered inactive.
    pub inactive_answers: usize,
    /// When each device-grant poll came.
    pub device_polls: Vec<Instant>,
    /// The `scope` the device request asked for.
    pub device_scope: Option<String>,
}

/// The provider's address and state; the server stops with the test.
pub struct Provider {
    pub base: String,
    pub state: Arc<Mutex<State>>,
}

impl Provider {
    pub async fn start(user: &str, lifetime: Duration) -> Provider {
        let state = Arc::new(Mutex::new(State {
            lifetime,
            user: user.to_string(),
            refresh: "rt-0".to_string(),
            revoked: false,
            refuse_next: 0,
            access: HashMap::new(),
            issued: 0,
            refresh_requests: Vec::new(),
            active_answers: 0,
            inactive_answers: 0,
            device_polls: Vec::new(),
            device_scope: None,
        }));
        let app = Router::new()
            .route("/token", post(token))
            .route("/device", post(device))
            .route("/introspect", post(introspect))
            .with_state(Arc::clone(&state));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the provider");
        let base = format!("http://{}", listener.local_addr().expect("an address"));
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Provider { base, state }
    }

    pub fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        f(&mut self.state.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

type Shared = axum::extract::State<Arc<Mutex<State>>>;

fn form(body: &str) -> HashMap<String, String> {
    form_urlencoded::parse(body.as_bytes())
        .into_owned()
        .collect()
}

fn json(status: StatusCode, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn error(code: &str) -> Response {
    json(
        StatusCode::BAD_REQUEST,
        format!(r#"{{"error":"{code}","error_description":"the test provider says {code}"}}"#),
    )
}

/// A new access token and refresh token; the old refresh token is dead.
fn issue(s: &mut State) -> Response {
    s.issued += 1;
    let access = format!("at-{}", s.issued);
    s.access.insert(access.clone(), Instant::now() + s.lifetime);
    s.refresh = format!("rt-{}", s.issued);
    json(
        StatusCode::OK,
        format!(
            r#"{{"access_token":"{access}","token_type":"Bearer","expires_in":{},"refresh_token":"{}"}}"#,
            s.lifetime.as_secs(),
            s.refresh
        ),
    )
}

async fn token(axum::extract::State(state): Shared, body: String) -> Response {
    let f = form(&body);
    let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
    match f.get("grant_type").map(String::as_str) {
        Some("refresh_token") => {
            s.refresh_requests.push(Instant::now());
            let given = f.get("refresh_token").cloned().unwrap_or_default();
            if s.revoked || given != s.refresh {
                return error("invalid_grant");
            }
            issue(&mut s)
        }
        Some("urn:ietf:params:oauth:grant-type:device_code") => {
            s.device_polls.push(Instant::now());
            if f.get("device_code").map(String::as_str) != Some("dc-1") {
                return error("invalid_grant");
            }
            if s.device_polls.len() <= 2 {
                return error("authorization_pending");
            }
            issue(&mut s)
        }
        _ => error("unsupported_grant_type"),
    }
}

async fn device(axum::extract::State(state): Shared, body: String) -> Response {
    let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
    s.device_scope = form(&body).get("scope").cloned();
    json(
        StatusCode::OK,
        r#"{"device_code":"dc-1","user_code":"WDJB-MJHT","verification_uri":"http://127.0.0.1/verify","expires_in":120,"interval":1}"#.to_string(),
    )
}

async fn introspect(axum::extract::State(state): Shared, body: String) -> Response {
    let token = form(&body).get("token").cloned().unwrap_or_default();
    let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
    let refused = s.refuse_next > 0;
    s.refuse_next = s.refuse_next.saturating_sub(1);
    let active = !refused
        && s.access
            .get(&token)
            .is_some_and(|until| Instant::now() < *until);
    if active {
        s.active_answers += 1;
        let user = s.user.clone();
        json(
            StatusCode::OK,
            format!(r#"{{"active":true,"username":"{user}"}}"#),
        )
    } else {
        s.inactive_answers += 1;
        json(StatusCode::OK, r#"{"active":false}"#.to_string())
    }
}
