//! Settings that work but hurt: a password sent in clear to another host
//! (refused), links that point at this machine and example addresses left
//! from the defaults (warned about, one line each). Pure: looks at the
//! values only, never resolves a name or opens a connection.

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

/// One line per setting that is valid but probably a mistake.
pub(super) fn warnings(settings: &Settings) -> Vec<String> {
    let mut out = Vec::new();
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
}
