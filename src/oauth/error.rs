//! Why a token request failed, in words that name what to do, and which
//! failures need someone to act (a revoked refresh token) rather than
//! time (an endpoint that cannot be reached). Pure: it sorts the `oauth2`
//! crate's errors and never shows a response body (it may hold a token).

use oauth2::RequestTokenError;
use oauth2::basic::{BasicErrorResponse, BasicErrorResponseType};

use super::http::HttpError;

/// Why no access token could be had. The texts name what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OAuthError {
    #[error(
        "the OAuth2 refresh token in {file} was refused as revoked or expired \
         (invalid_grant{detail}); run `postdesk oauth authorize` to store a new one"
    )]
    Revoked { file: String, detail: String },
    #[error(
        "the token endpoint refused the request ({code}{detail}); check oauth.client_id, \
         oauth.client_secret and oauth.scopes"
    )]
    Refused { code: String, detail: String },
    #[error("there is no refresh token in {file}; run `postdesk oauth authorize` first")]
    NoRefreshToken { file: String },
    #[error("cannot read the refresh token file {file}: {reason}")]
    File { file: String, reason: String },
    #[error("the token endpoint could not be asked: {0}")]
    Unreachable(String),
}

impl OAuthError {
    /// A short name for `/healthz`.
    pub fn code(&self) -> &'static str {
        match self {
            OAuthError::Revoked { .. } => "revoked",
            OAuthError::Refused { .. } => "refused",
            OAuthError::NoRefreshToken { .. } => "no_refresh_token",
            OAuthError::File { .. } => "file",
            OAuthError::Unreachable(_) => "unreachable",
        }
    }

    /// Whether someone must act (retrying alone will not help).
    pub fn needs_action(&self) -> bool {
        !matches!(self, OAuthError::Unreachable(_))
    }
}

/// Sorts a failed token request: refused (someone must act) or transient.
pub(super) fn classify(
    err: RequestTokenError<HttpError, BasicErrorResponse>,
    file: &std::path::Path,
) -> OAuthError {
    match err {
        RequestTokenError::ServerResponse(answer) => {
            let detail = answer
                .error_description()
                .map(|d| format!(": {}", printable(d)))
                .unwrap_or_default();
            match answer.error() {
                BasicErrorResponseType::InvalidGrant => OAuthError::Revoked {
                    file: file.display().to_string(),
                    detail,
                },
                BasicErrorResponseType::Extension(code)
                    if code == "temporarily_unavailable" || code == "server_error" =>
                {
                    OAuthError::Unreachable(format!("{}{detail}", printable(code)))
                }
                other => OAuthError::Refused {
                    code: printable(other.as_ref()),
                    detail,
                },
            }
        }
        RequestTokenError::Request(err) => OAuthError::Unreachable(err.to_string()),
        // The body is not shown: it might hold a token.
        RequestTokenError::Parse(err, _) => {
            OAuthError::Unreachable(format!("the answer is not a token response: {err}"))
        }
        RequestTokenError::Other(text) => OAuthError::Unreachable(printable(&text)),
    }
}

/// Provider text made safe for one log line, and short.
fn printable(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(300)
        .collect()
}
