//! Provider presets and the `[oauth]` checks: which token endpoint, device
//! endpoint and scopes a provider has, a key set in `[oauth]` overriding the
//! preset, and the `oauth2` client made from them. Pure: looks at values
//! only, never resolves a name or connects.

use std::net::IpAddr;

use oauth2::basic::BasicClient;
use oauth2::url::{Host, Url};
use oauth2::{
    AuthType, ClientId, ClientSecret, DeviceAuthorizationUrl, EndpointMaybeSet, EndpointNotSet,
    EndpointSet, TokenUrl,
};

use crate::settings::{AuthMethod, OAuthSettings};

const MICROSOFT_LOGIN: &str = "https://login.microsoftonline.com";
const MICROSOFT_SCOPES: [&str; 3] = [
    "https://outlook.office.com/IMAP.AccessAsUser.All",
    "https://outlook.office.com/SMTP.Send",
    "offline_access",
];
const GOOGLE_TOKEN: &str = "https://oauth2.googleapis.com/token";
const GOOGLE_DEVICE: &str = "https://oauth2.googleapis.com/device/code";
const GOOGLE_SCOPE: &str = "https://mail.google.com/";

/// Where one `[oauth]` section gets its tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoints {
    pub token_url: String,
    pub device_url: String,
    pub scopes: Vec<String>,
}

/// A key of `[oauth]` that cannot be used, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub key: String,
    pub reason: String,
}

fn invalid(key: &str, reason: impl Into<String>) -> Invalid {
    Invalid {
        key: format!("oauth.{key}"),
        reason: reason.into(),
    }
}

impl Endpoints {
    /// The provider's preset with the keys set in `settings` on top; for
    /// `custom`, every one of them must be set.
    pub fn resolve(settings: &OAuthSettings) -> Result<Endpoints, Invalid> {
        let (token_url, device_url, scopes) = match settings.provider.as_str() {
            "microsoft" => {
                let tenant = settings.tenant.trim();
                let tenant_ok = !tenant.is_empty()
                    && tenant
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
                if !tenant_ok {
                    return Err(invalid(
                        "tenant",
                        "must be the directory (tenant) ID, a domain, or \"organizations\"",
                    ));
                }
                let base = format!("{MICROSOFT_LOGIN}/{tenant}/oauth2/v2.0");
                let scopes = MICROSOFT_SCOPES.map(String::from).to_vec();
                (
                    format!("{base}/token"),
                    format!("{base}/devicecode"),
                    scopes,
                )
            }
            "google" => (
                GOOGLE_TOKEN.to_string(),
                GOOGLE_DEVICE.to_string(),
                vec![GOOGLE_SCOPE.to_string()],
            ),
            "custom" => {
                for (key, empty) in [
                    ("token_url", settings.token_url.trim().is_empty()),
                    ("device_url", settings.device_url.trim().is_empty()),
                    ("scopes", settings.scopes.is_empty()),
                ] {
                    if empty {
                        return Err(invalid(key, "must be set when provider is \"custom\""));
                    }
                }
                (String::new(), String::new(), Vec::new())
            }
            other => {
                return Err(invalid(
                    "provider",
                    format!("`{other}` is not one of \"microsoft\", \"google\", \"custom\""),
                ));
            }
        };
        let pick = |set: &str, preset: String| {
            if set.trim().is_empty() {
                preset
            } else {
                set.trim().to_string()
            }
        };
        let endpoints = Endpoints {
            token_url: pick(&settings.token_url, token_url),
            device_url: pick(&settings.device_url, device_url),
            scopes: if settings.scopes.is_empty() {
                scopes
            } else {
                settings.scopes.clone()
            },
        };
        check_url("token_url", &endpoints.token_url)?;
        check_url("device_url", &endpoints.device_url)?;
        Ok(endpoints)
    }
}

/// The `oauth2` client: a token endpoint always, a device endpoint maybe.
pub(super) type OAuthClient =
    BasicClient<EndpointNotSet, EndpointMaybeSet, EndpointNotSet, EndpointNotSet, EndpointSet>;

/// Builds the `oauth2` client for `settings` (secrets go in the form body:
/// both Microsoft and Google accept that, not both accept Basic).
pub(super) fn client(
    settings: &OAuthSettings,
    endpoints: &Endpoints,
) -> anyhow::Result<OAuthClient> {
    let token_url = TokenUrl::new(endpoints.token_url.clone())?;
    let device_url = DeviceAuthorizationUrl::new(endpoints.device_url.clone())?;
    let mut client = BasicClient::new(ClientId::new(settings.client_id.trim().to_string()))
        .set_auth_type(AuthType::RequestBody)
        .set_token_uri(token_url)
        .set_device_authorization_url_option(Some(device_url));
    if !settings.client_secret.is_empty() {
        client = client.set_client_secret(ClientSecret::new(
            settings.client_secret.expose().to_string(),
        ));
    }
    Ok(client)
}

/// Checks `[oauth]` (and the logins that use it) when IMAP or SMTP logs
/// in with XOAUTH2; nothing when neither does. `imap_user` and
/// `smtp_user` are the SASL user names.
pub fn check_settings(
    imap: (AuthMethod, &str),
    smtp: (AuthMethod, &str),
    settings: &OAuthSettings,
) -> Result<(), Invalid> {
    let users = [("imap", imap), ("smtp", smtp)];
    if !users
        .iter()
        .any(|(_, (auth, _))| *auth == AuthMethod::Xoauth2)
    {
        return Ok(());
    }
    for (section, (auth, user)) in users {
        if auth == AuthMethod::Xoauth2 && user.trim().is_empty() {
            return Err(Invalid {
                key: format!("{section}.username"),
                reason: format!(
                    "must be the mailbox's address when {section}.auth is \"xoauth2\" \
                     (the token is presented for this user)"
                ),
            });
        }
    }
    if settings.client_id.trim().is_empty() {
        return Err(invalid(
            "client_id",
            "must be the application (client) ID registered with the provider",
        ));
    }
    if settings.refresh_token_file.trim().is_empty() {
        return Err(invalid(
            "refresh_token_file",
            "must name the file that keeps the refresh token (written by `postdesk oauth \
             authorize`)",
        ));
    }
    Endpoints::resolve(settings).map(|_| ())
}

/// An https URL, or plain http to this machine only (test servers): a
/// token endpoint answers with bearer tokens.
fn check_url(key: &str, value: &str) -> Result<(), Invalid> {
    let url =
        Url::parse(value).map_err(|e| invalid(key, format!("`{value}` is not a URL: {e}")))?;
    let loopback = match url.host() {
        Some(Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        Some(Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        None => return Err(invalid(key, format!("`{value}` has no host"))),
    };
    match url.scheme() {
        "https" => Ok(()),
        "http" if loopback => Ok(()),
        _ => Err(invalid(
            key,
            format!(
                "`{value}` must start with https:// (plain http only to this machine, for \
                 tests): tokens would cross the network in clear"
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::Secret;

    fn oauth(provider: &str) -> OAuthSettings {
        OAuthSettings {
            provider: provider.to_string(),
            tenant: "organizations".to_string(),
            client_id: "client".to_string(),
            client_secret: Secret::default(),
            token_url: String::new(),
            device_url: String::new(),
            scopes: Vec::new(),
            refresh_token_file: "/var/lib/postdesk/refresh".to_string(),
        }
    }

    #[test]
    fn microsoft_uses_the_tenant_and_the_outlook_scopes() {
        let mut s = oauth("microsoft");
        s.tenant = "contoso.onmicrosoft.com".to_string();
        let e = Endpoints::resolve(&s).unwrap();
        assert_eq!(
            e.token_url,
            "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token"
        );
        assert_eq!(
            e.device_url,
            "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/devicecode"
        );
        assert_eq!(
            e.scopes,
            [
                "https://outlook.office.com/IMAP.AccessAsUser.All",
                "https://outlook.office.com/SMTP.Send",
                "offline_access"
            ]
        );
        // A tenant that would change the URL's path is refused.
        s.tenant = "evil/../x".to_string();
        assert_eq!(Endpoints::resolve(&s).unwrap_err().key, "oauth.tenant");
    }

    #[test]
    fn google_has_its_own_endpoints_and_one_scope() {
        let e = Endpoints::resolve(&oauth("google")).unwrap();
        assert_eq!(e.token_url, "https://oauth2.googleapis.com/token");
        assert_eq!(e.device_url, "https://oauth2.googleapis.com/device/code");
        assert_eq!(e.scopes, ["https://mail.google.com/"]);
    }

    #[test]
    fn a_set_key_overrides_the_preset() {
        let mut s = oauth("google");
        s.scopes = vec!["https://mail.google.com/".into(), "email".into()];
        s.token_url = "http://127.0.0.1:9/token".to_string();
        let e = Endpoints::resolve(&s).unwrap();
        assert_eq!(e.scopes.len(), 2);
        assert_eq!(e.token_url, "http://127.0.0.1:9/token");
    }

    #[test]
    fn custom_names_the_first_missing_key() {
        let mut s = oauth("custom");
        assert_eq!(Endpoints::resolve(&s).unwrap_err().key, "oauth.token_url");
        s.token_url = "https://idp.example.net/token".to_string();
        assert_eq!(Endpoints::resolve(&s).unwrap_err().key, "oauth.device_url");
        s.device_url = "https://idp.example.net/device".to_string();
        assert_eq!(Endpoints::resolve(&s).unwrap_err().key, "oauth.scopes");
        s.scopes = vec!["mail".to_string()];
        assert!(Endpoints::resolve(&s).is_ok());
        s.provider = "yahoo".to_string();
        assert_eq!(Endpoints::resolve(&s).unwrap_err().key, "oauth.provider");
    }

    #[test]
    fn plain_http_is_refused_beyond_this_machine() {
        let mut s = oauth("custom");
        s.device_url = "http://localhost:8080/device".to_string();
        s.scopes = vec!["mail".to_string()];
        s.token_url = "http://idp.example.net/token".to_string();
        let err = Endpoints::resolve(&s).unwrap_err();
        assert_eq!(err.key, "oauth.token_url");
        assert!(err.reason.contains("https://"), "{}", err.reason);
        s.token_url = "http://[::1]:8080/token".to_string();
        assert!(Endpoints::resolve(&s).is_ok());
        s.token_url = "ftp://127.0.0.1/token".to_string();
        assert!(Endpoints::resolve(&s).is_err());
    }

    #[test]
    fn nothing_is_checked_unless_a_login_uses_xoauth2() {
        let mut s = oauth("microsoft");
        s.client_id.clear();
        let password = (AuthMethod::Password, "");
        assert!(check_settings(password, password, &s).is_ok());
        let oauth_imap = (AuthMethod::Xoauth2, "support@example.com");
        assert_eq!(
            check_settings(oauth_imap, password, &s).unwrap_err().key,
            "oauth.client_id"
        );
        s.client_id = "id".to_string();
        assert!(check_settings(oauth_imap, password, &s).is_ok());
        s.refresh_token_file.clear();
        assert_eq!(
            check_settings(password, oauth_imap, &s).unwrap_err().key,
            "oauth.refresh_token_file"
        );
        let nobody = (AuthMethod::Xoauth2, " ");
        assert_eq!(
            check_settings(password, nobody, &s).unwrap_err().key,
            "smtp.username"
        );
    }
}
