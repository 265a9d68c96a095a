//! Web: the read-only status page (axum + askama). `/t/TOKEN` shows one
//! ticket to whoever holds its link; `/healthz` says whether the store
//! answers. Everything is escaped by askama; every response carries a
//! strict Content-Security-Policy. It must not write to the store, and an
//! unknown token is a plain 404 that reveals nothing.

use std::sync::Arc;

use askama::Template;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::store::{Store, TicketDetail};

const STYLE: &str = include_str!("style.css");

#[derive(Clone)]
pub struct WebState {
    pub store: Arc<Store>,
}

/// The routes, ready to serve.
pub fn router(store: Arc<Store>) -> Router {
    Router::new()
        .route("/t/{token}", get(ticket_page))
        .route("/healthz", get(healthz))
        .route("/static/style.css", get(stylesheet))
        .fallback(not_found)
        .with_state(WebState { store })
}

#[derive(Template)]
#[template(path = "ticket.html")]
struct TicketTemplate {
    ticket: TicketDetail,
}

#[derive(Template)]
#[template(path = "not_found.html")]
struct NotFoundTemplate;

async fn ticket_page(State(state): State<WebState>, Path(token): Path<String>) -> Response {
    // A token is 32 hex characters; anything else cannot match.
    if token.len() != 32 || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
        return not_found().await;
    }
    let store = Arc::clone(&state.store);
    let found = tokio::task::spawn_blocking(move || store.ticket_page(&token)).await;
    match found {
        Ok(Ok(Some(ticket))) => render(StatusCode::OK, &TicketTemplate { ticket }),
        Ok(Ok(None)) => not_found().await,
        Ok(Err(err)) => {
            tracing::error!("The ticket page failed: {err:#}");
            plain(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Something went wrong. Please try again later.",
            )
        }
        Err(err) => {
            tracing::error!("The ticket page task failed: {err}");
            plain(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Something went wrong. Please try again later.",
            )
        }
    }
}

async fn healthz(State(state): State<WebState>) -> Response {
    let store = Arc::clone(&state.store);
    match tokio::task::spawn_blocking(move || store.ping()).await {
        Ok(Ok(())) => plain(StatusCode::OK, "ok"),
        _ => plain(
            StatusCode::SERVICE_UNAVAILABLE,
            "the database does not answer",
        ),
    }
}

async fn stylesheet() -> Response {
    let mut response = STYLE.into_response();
    set(
        &mut response,
        header::CONTENT_TYPE,
        "text/css; charset=utf-8",
    );
    set(&mut response, header::CACHE_CONTROL, "public, max-age=3600");
    secure(response)
}

async fn not_found() -> Response {
    render(StatusCode::NOT_FOUND, &NotFoundTemplate)
}

fn render(status: StatusCode, template: &impl Template) -> Response {
    match template.render() {
        Ok(html) => {
            let mut response = (status, html).into_response();
            set(
                &mut response,
                header::CONTENT_TYPE,
                "text/html; charset=utf-8",
            );
            secure(response)
        }
        Err(err) => {
            tracing::error!("A page template failed: {err}");
            plain(StatusCode::INTERNAL_SERVER_ERROR, "Something went wrong.")
        }
    }
}

fn plain(status: StatusCode, text: &'static str) -> Response {
    let mut response = (status, text).into_response();
    set(
        &mut response,
        header::CONTENT_TYPE,
        "text/plain; charset=utf-8",
    );
    secure(response)
}

/// Headers every response carries: no script, no framing, no sniffing, no
/// referrer (the token is in the URL).
fn secure(mut response: Response) -> Response {
    set(
        &mut response,
        header::CONTENT_SECURITY_POLICY,
        "default-src 'none'; style-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    );
    set(&mut response, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(&mut response, header::REFERRER_POLICY, "no-referrer");
    set(&mut response, header::X_FRAME_OPTIONS, "DENY");
    response
}

fn set(response: &mut Response, name: header::HeaderName, value: &'static str) {
    response
        .headers_mut()
        .insert(name, HeaderValue::from_static(value));
}
