//! Settings that work but hurt: a password sent in clear to another host
//! and an LMTP listener open to the network (refused), links that point at
//! this machine, example addresses left from the defaults and a TCP LMTP
//! listener beside a trusted authserv-id (warned about, one line each).
//! Pure: looks at the values only, never resolves a name or opens a
//! connection.

use std::net::IpAddr;

use super::{ImapSettings, Settings, SmtpSettings, TlsMode};

/// `(key, reason)` when `tls = "none"` would cross the network: only a
/// loopback host may be spoken to in clear.
/// Takes one queue's sections; the caller names the key with its queue.
pub(super) fn plaintext_refusal(
    imap: &ImapSettings,
    smtp: &SmtpSettings,
) -> Option<(String, String)> {
    [
        ("imap", imap.tls, &imap.host),
        ("smtp", smtp.tls, &smtp.host),
    ]
    .into_iter()
    .find(|(_, tls, host)| *tls == TlsMode::None && !is_loopback_host(host))
    .map(|(section, _, host)| {
        (
            format!("{section}.tls"),
            format!(
                "is \"none\" but {section}.host `{host}` is not this machine (127.0.0.0/8, \
                 ::1, localhost): the password and every mail would cross the network in \
                 clear; use \"tls\" or \"starttls\""
            ),
        )
    })
}

/// Why `lmtp.listen` is refused: not `HOST:PORT` or `unix:PATH`, or a TCP
/// address off this machine. LMTP has no authentication: whoever connects
/// is trusted as much as the MTA.
pub(super) fn lmtp_listen_refusal(listen: &str) -> Option<String> {
    if listen.is_empty() {
        return None;
    }
    if let Some(path) = listen.strip_prefix("unix:") {
        return path
            .trim()
            .is_empty()
            .then(|| "needs a socket path after `unix:`".to_string());
    }
    let (host, port) = match listen.strip_prefix('[') {
        Some(rest) => rest.split_once("]:").unwrap_or((rest, "")),
        None => listen.rsplit_once(':').unwrap_or((listen, "")),
    };
    if port.parse::<u16>().is_err() {
        return Some(format!(
            "`{listen}` must be HOST:PORT (like 127.0.0.1:2424) or unix:PATH"
        ));
    }
    if is_loopback_host(host) {
        return None;
    }
    Some(format!(
        "`{listen}` is not on this machine (127.0.0.0/8, ::1, localhost): LMTP has no \
         authentication, so anyone who reaches the port could hand in mail, forged agent \
         mail included; use a unix socket (unix:PATH) or 127.0.0.1"
    ))
}

/// One line per setting that is valid but probably a mistake.
pub(super) fn warnings(settings: &Settings) -> Vec<String> {
    let mut out = Vec::new();
    let (listen, authserv) = (&settings.lmtp.listen, &settings.support.trusted_authserv_id);
    if !listen.is_empty() && !listen.starts_with("unix:") && !authserv.is_empty() {
        out.push(format!(
            "lmtp.listen `{listen}` is a TCP port and support.trusted_authserv_id is set: any \
             local user or process that connects to it can hand in a mail with a forged \
             Received/Authentication-Results pair and act as an agent; use a unix socket \
             (unix:PATH, mode 0660, the MTA's group)"
        ));
    }
    let url = &settings.support.public_url;
    let host = url_host(url);
    if is_loopback_host(host) {
        out.push(format!(
            "support.public_url `{url}` points at this machine: the links mailed to customers \
             will not open for them"
        ));
    } else if is_example_domain(host) {
        out.push(format!(
            "support.public_url `{url}` is an example address: the links mailed to customers \
             lead nowhere"
        ));
    }
    let support = &settings.support;
    let addresses = std::iter::once(("support.address", &support.address))
        .chain(support.agents.iter().map(|a| ("support.agents", a)))
        .chain(std::iter::once(("support.agent_list", &support.agent_list)));
    for (key, address) in addresses {
        let domain = address.rsplit_once('@').map_or("", |(_, d)| d);
        if is_example_domain(domain) {
            out.push(format!(
                "{key} `{address}` is an example address (example.com is reserved): no mail \
                 reaches it"
            ));
        }
    }
    out
}

/// 127.0.0.0/8, ::1 (also as `[::1]` or IPv4-mapped) or `localhost`.
pub(super) fn is_loopback_host(host: &str) -> bool {
    let host = host.trim();
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if bare.eq_ignore_ascii_case("localhost") || bare.eq_ignore_ascii_case("localhost.") {
        return true;
    }
    match bare.parse::<IpAddr>() {
        Ok(IpAddr::V6(v6)) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
        Ok(ip) => ip.is_loopback(),
        Err(_) => false,
    }
}

/// The reserved example domains (RFC 2606) and their subdomains.
fn is_example_domain(domain: &str) -> bool {
    let domain = domain.trim().trim_end_matches('.').to_ascii_lowercase();
    ["example.com", "example.net", "example.org"]
        .iter()
        .any(|d| domain == *d || domain.ends_with(&format!(".{d}")))
}

/// The host of an http(s) URL: no scheme, user, port or path.
fn url_host(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if host_port.starts_with('[') {
        return host_port
            .split_once(']')
            .map_or(host_port, |(h, _)| h.trim_start_matches('['));
    }
    host_port.split(':').next().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts_are_recognised() {
        for host in [
            "127.0.0.1",
            "127.8.9.10",
            "::1",
            "[::1]",
            "localhost",
            "LocalHost",
            "::ffff:127.0.0.1",
        ] {
            assert!(is_loopback_host(host), "{host}");
        }
        for host in [
            "10.0.0.1",
            "mail.example.net",
            "localhost.evil.test",
            "128.0.0.1",
            "::2",
            "",
        ] {
            assert!(!is_loopback_host(host), "{host}");
        }
    }

    #[test]
    fn url_hosts_are_found() {
        assert_eq!(url_host("http://127.0.0.1:8025"), "127.0.0.1");
        assert_eq!(url_host("https://u:p@[::1]:8/t"), "::1");
        assert_eq!(
            url_host("https://support.example.com/x?y#z"),
            "support.example.com"
        );
        assert_eq!(
            url_host("https://127.0.0.1.evil.test/"),
            "127.0.0.1.evil.test"
        );
    }

    #[test]
    fn an_lmtp_listener_off_this_machine_is_refused() {
        for ok in [
            "",
            "127.0.0.1:2424",
            "[::1]:24",
            "localhost:2424",
            "unix:/var/spool/postfix/postdesk/lmtp.sock",
        ] {
            assert_eq!(lmtp_listen_refusal(ok), None, "{ok}");
        }
        for open in [
            "0.0.0.0:2424",
            "[::]:2424",
            "192.0.2.7:24",
            "mx.shop.test:24",
        ] {
            let reason = lmtp_listen_refusal(open).expect(open);
            assert!(reason.contains("no authentication"), "{reason}");
        }
        for bad in ["127.0.0.1", "127.0.0.1:lmtp", "unix:", "[::1]"] {
            let reason = lmtp_listen_refusal(bad).expect(bad);
            assert!(reason.contains("HOST:PORT") || reason.contains("socket path"));
        }
    }

    fn load(pairs: &[(&str, &str)]) -> Result<Settings, super::super::SettingsError> {
        let env = pairs
            .iter()
            .map(|(k, v)| (format!("POSTDESK__{k}"), v.to_string()))
            .collect();
        Settings::load_with_env(None, env)
    }

    #[test]
    fn check_config_refuses_a_network_lmtp_listener_by_its_key() {
        let err = load(&[("LMTP__LISTEN", "0.0.0.0:2424")]).expect_err("refused");
        let text = err.to_string();
        assert!(text.contains("lmtp.listen"), "{text}");
        assert!(text.contains("no authentication"), "{text}");
        load(&[("LMTP__LISTEN", "127.0.0.1:2424")]).expect("loopback is accepted");
    }

    #[test]
    fn a_tcp_lmtp_listener_beside_a_trusted_authserv_id_is_warned_about_once() {
        let lmtp_warnings = |pairs: &[(&str, &str)]| -> Vec<String> {
            let settings = load(pairs).expect("valid");
            let all = settings.warnings();
            all.into_iter().filter(|w| w.starts_with("lmtp.")).collect()
        };
        let trusted = ("SUPPORT__TRUSTED_AUTHSERV_ID", "mx.shop.test");
        let tcp = ("LMTP__LISTEN", "127.0.0.1:2424");
        let warned = lmtp_warnings(&[trusted, tcp]);
        assert_eq!(warned.len(), 1, "{warned:?}");
        assert!(warned[0].contains("forged"), "{}", warned[0]);
        assert!(!warned[0].contains('\n'));
        let socket = ("LMTP__LISTEN", "unix:/run/postdesk/lmtp.sock");
        assert!(lmtp_warnings(&[trusted, socket]).is_empty());
        assert!(lmtp_warnings(&[tcp]).is_empty(), "nothing is trusted");
        assert!(lmtp_warnings(&[trusted]).is_empty(), "no LMTP");
    }
}
