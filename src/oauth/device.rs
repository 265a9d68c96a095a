//! The device-code flow (RFC 8628) of `postdesk oauth authorize`: ask the
//! device endpoint for a code, show the person the verification URL and
//! the code, poll the token endpoint as the provider asks (`interval`, and
//! 5 s more on every `slow_down`) until they have signed in, then store the
//! refresh token atomically with mode 0600. It prints only the URL, the
//! code and what happened: never a token.

use std::io::Write;
use std::time::Duration;

use oauth2::{RequestTokenError, StandardDeviceAuthorizationResponse, TokenResponse as _};

use super::file::RefreshTokenFile;
use super::http::HttpClient;
use super::preset::{Endpoints, client};
use crate::settings::OAuthSettings;

/// Why no refresh token was stored.
#[derive(Debug, thiserror::Error)]
pub enum DeviceFlowError {
    #[error("invalid configuration key `{key}`: {reason}")]
    Config { key: String, reason: String },
    #[error("the device endpoint did not give a code: {0}")]
    Code(String),
    #[error("signing in did not finish: {0}")]
    Token(String),
    #[error(
        "the provider gave no refresh token; is `offline_access` among oauth.scopes \
         (Microsoft), or is the app a \"TVs and Limited Input devices\" client (Google)?"
    )]
    NoRefreshToken,
    #[error("cannot store the refresh token in {file}: {reason}")]
    Store { file: String, reason: String },
    #[error("cannot print the sign-in instructions: {0}")]
    Print(String),
}

/// Runs the flow for `settings`, telling the person what to do on `out`,
/// and stores the refresh token in `oauth.refresh_token_file`. `limit`
/// caps the wait below the code's own lifetime.
pub async fn authorize(
    settings: &OAuthSettings,
    out: &mut (dyn Write + Send),
    limit: Option<Duration>,
) -> Result<RefreshTokenFile, DeviceFlowError> {
    let config = |key: &str, reason: String| DeviceFlowError::Config {
        key: key.to_string(),
        reason,
    };
    let endpoints = Endpoints::resolve(settings).map_err(|e| config(&e.key, e.reason))?;
    if settings.client_id.trim().is_empty() {
        return Err(config("oauth.client_id", "must be set".to_string()));
    }
    let path = settings.refresh_token_file.trim();
    if path.is_empty() {
        return Err(config(
            "oauth.refresh_token_file",
            "must be set".to_string(),
        ));
    }
    let client =
        client(settings, &endpoints).map_err(|e| config("oauth.device_url", e.to_string()))?;
    let http = HttpClient::new();
    let scopes = endpoints.scopes.iter().cloned().map(oauth2::Scope::new);
    let details: StandardDeviceAuthorizationResponse = client
        .exchange_device_code()
        .map_err(|e| DeviceFlowError::Code(e.to_string()))?
        .add_scopes(scopes)
        .request_async(&http)
        .await
        .map_err(|e| DeviceFlowError::Code(describe(e)))?;
    let uri = details.verification_uri().as_str();
    let code = details.user_code().secret();
    let print = |e: std::io::Error| DeviceFlowError::Print(e.to_string());
    writeln!(out, "To let postdesk read and send mail, open").map_err(print)?;
    writeln!(out, "    {uri}").map_err(print)?;
    writeln!(out, "and enter the code").map_err(print)?;
    writeln!(out, "    {code}").map_err(print)?;
    if let Some(complete) = details.verification_uri_complete() {
        writeln!(out, "(or open {} directly)", complete.secret()).map_err(print)?;
    }
    let minutes = details.expires_in().as_secs().div_ceil(60);
    writeln!(
        out,
        "Waiting for the sign-in (the code is valid for {minutes} min) ..."
    )
    .map_err(print)?;
    out.flush().map_err(print)?;
    let token = client
        .exchange_device_access_token(&details)
        .request_async(&http, tokio::time::sleep, limit)
        .await
        .map_err(|e| DeviceFlowError::Token(describe(e)))?;
    let refresh = token
        .refresh_token()
        .ok_or(DeviceFlowError::NoRefreshToken)?;
    let file = RefreshTokenFile::new(path);
    file.write(refresh.secret())
        .map_err(|e| DeviceFlowError::Store {
            file: path.to_string(),
            reason: e.to_string(),
        })?;
    Ok(file)
}

/// A failed request in words: the provider's error code and description,
/// never the body (it may hold a token).
fn describe<RE, T>(err: RequestTokenError<RE, T>) -> String
where
    RE: std::error::Error + 'static,
    T: oauth2::ErrorResponse + 'static,
{
    match err {
        RequestTokenError::ServerResponse(answer) => {
            let text = serde_json::to_value(&answer).unwrap_or_default();
            let code = text["error"].as_str().unwrap_or("error").to_string();
            match text["error_description"].as_str() {
                Some(d) => format!(
                    "{code}: {}",
                    d.chars()
                        .filter(|c| !c.is_control())
                        .take(300)
                        .collect::<String>()
                ),
                None => code,
            }
        }
        RequestTokenError::Request(e) => e.to_string(),
        RequestTokenError::Parse(e, _) => format!("the answer is not what OAuth2 says: {e}"),
        RequestTokenError::Other(text) => text,
    }
}
