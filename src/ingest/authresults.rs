//! Authentication-Results: which of a mail's `Authentication-Results`
//! headers (RFC 8601) were written by the receiving server we trust, and
//! what that one header says about a domain. Anybody can write such a
//! header into the mail they send, so a header naming the trusted server
//! counts only where that server put it: above the first (topmost)
//! `Received` it wrote, whose `by` names it (RFC 8601 §5). Everything below
//! came from outside. Without such a `Received`, nothing counts. Some
//! servers (Gmail) write their results just below their own `Received`;
//! only where the operator says so (`below_own_received`) does the run of
//! trace headers right below it count too, because a stranger's first
//! header lands there when such a server wrote none. More than one such
//! header, or one that says both pass and fail for the domain, is a
//! conflict and authenticates nothing. Pure; it must not decide who is an
//! agent (that is `agent`'s job).

/// Trace headers a receiving server writes beside its own `Received`.
const TRACE: [&str; 5] = [
    "authentication-results",
    "received-spf",
    "arc-seal",
    "arc-message-signature",
    "arc-authentication-results",
];

/// Whose results count, and where that server writes them.
#[derive(Debug, Clone, Copy)]
pub struct TrustedServer<'a> {
    /// Its authserv-id, which is also the host its `Received` names after
    /// `by`; empty: nobody is trusted.
    pub id: &'a str,
    /// It writes its results right below its own `Received` (Gmail), and
    /// on every mail.
    pub below_own_received: bool,
}

/// What the trusted server's one header says about `domain`: the
/// mechanism that passed (`"dkim"`, or `"spf"` when aligned with the
/// domain), or `None` when it says nothing that authenticates, when it
/// contradicts itself, or when there is not exactly one such header in the
/// trusted part of the header section. `headers` are the top-level headers
/// in order, names lower-cased.
pub fn passed_for(
    headers: &[(String, String)],
    server: TrustedServer,
    domain: &str,
) -> Option<&'static str> {
    if server.id.is_empty() {
        return None;
    }
    let mut claims = trusted_headers(headers, server);
    let header = claims.next()?;
    if claims.next().is_some() {
        return None; // the trusted server writes one per delivery: a conflict
    }
    verdict(header, domain)
}

/// The values of the `Authentication-Results` headers naming `trusted`
/// within the part of the header section that server wrote.
fn trusted_headers<'a>(
    headers: &'a [(String, String)],
    server: TrustedServer<'a>,
) -> impl Iterator<Item = &'a str> + 'a {
    let end = trusted_zone_end(headers, server);
    headers[..end]
        .iter()
        .filter(|(name, _)| name == "authentication-results")
        .map(|(_, value)| value.as_str())
        .filter(move |value| {
            authserv_id(value).is_some_and(|id| id.eq_ignore_ascii_case(server.id))
        })
}

/// Where the headers the trusted server vouches for end: at the first
/// `Received` it wrote (a milter's results sit above it), or after the run
/// of trace headers below it for a server that writes there; 0 (nothing)
/// without such a `Received`.
fn trusted_zone_end(headers: &[(String, String)], server: TrustedServer) -> usize {
    let own = headers
        .iter()
        .position(|(name, value)| name == "received" && received_by(value, server.id));
    let Some(at) = own else {
        return 0;
    };
    if !server.below_own_received {
        return at;
    }
    let run = headers[at + 1..]
        .iter()
        .take_while(|(name, _)| TRACE.contains(&name.as_str()))
        .count();
    at + 1 + run
}

/// Whether a `Received` value names `host` after `by`.
fn received_by(value: &str, host: &str) -> bool {
    let words: Vec<&str> = value.split_whitespace().collect();
    words.windows(2).any(|pair| {
        pair[0].eq_ignore_ascii_case("by")
            && pair[1]
                .trim_matches(|c| c == '(' || c == ')' || c == ';')
                .eq_ignore_ascii_case(host)
    })
}

/// The authserv-id: the first word, before any `;` (a version may follow).
fn authserv_id(value: &str) -> Option<&str> {
    value.split(';').next()?.split_whitespace().next()
}

/// dkim=pass with `header.d` = domain, or spf=pass with the envelope sender
/// in the domain; a fail for the domain anywhere in the header wins.
fn verdict(header: &str, domain: &str) -> Option<&'static str> {
    let domain = domain.to_ascii_lowercase();
    let (mut passed, mut failed) = (None, false);
    for result in header.split(';').skip(1) {
        let result = strip_comments(result).to_ascii_lowercase();
        let words: Vec<&str> = result.split_whitespace().collect();
        let Some((method, outcome)) = words.first().and_then(|w| w.split_once('=')) else {
            continue;
        };
        let names = |key: &str| {
            words.iter().any(|w| {
                w.strip_prefix(key)
                    .is_some_and(|d| d.rsplit('@').next() == Some(domain.as_str()))
            })
        };
        let about_domain = match method {
            "dkim" => names("header.d=") || names("header.i="),
            "spf" => names("smtp.mailfrom=") || names("smtp.from="),
            _ => false,
        };
        if !about_domain {
            continue;
        }
        match (method, outcome) {
            ("dkim", "pass") => passed = passed.or(Some("dkim")),
            ("spf", "pass") => passed = passed.or(Some("spf")),
            _ => failed = true,
        }
    }
    if failed { None } else { passed }
}

/// RFC 8601 allows comments in parentheses anywhere; they carry no result.
fn strip_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut depth = 0usize;
    for c in text.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            _ if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const MX: TrustedServer = TrustedServer {
        id: "mx.support.test",
        below_own_received: false,
    };
    const GMAIL_LIKE: TrustedServer = TrustedServer {
        id: "mx.support.test",
        below_own_received: true,
    };

    fn headers(raw: &[(&str, &str)]) -> Vec<(String, String)> {
        raw.iter()
            .map(|(n, v)| (n.to_ascii_lowercase(), v.to_string()))
            .collect()
    }

    /// One header of the trusted server, above its own `Received`.
    fn one(results: &str) -> Vec<(String, String)> {
        headers(&[
            ("Authentication-Results", results),
            (
                "Received",
                "from mail.support.test by mx.support.test with ESMTPS",
            ),
            ("From", "alice@support.test"),
        ])
    }

    #[test]
    fn results_above_the_servers_own_received_count() {
        // A milter's results sit above its server's Received; the mail
        // store's own Received (Dovecot LMTP) may come on top of both.
        let h = headers(&[
            (
                "Received",
                "from mx.support.test by store.support.test (Dovecot) with LMTP",
            ),
            (
                "Authentication-Results",
                "mx.support.test; spf=pass smtp.mailfrom=support.test",
            ),
            (
                "Received",
                "from mail.support.test by mx.support.test (Postfix) with ESMTPS",
            ),
            ("From", "alice@support.test"),
        ]);
        assert_eq!(passed_for(&h, MX, "support.test"), Some("spf"));
        assert_eq!(passed_for(&h, MX, "other.test"), None);
        let nobody = TrustedServer { id: "", ..MX };
        assert_eq!(passed_for(&h, nobody, "support.test"), None);
    }

    #[test]
    fn gmail_shape_results_below_its_own_received_count_only_when_configured() {
        let h = headers(&[
            (
                "Received",
                "by 2002:a05:6000:1 with SMTP id x; Mon, 1 Jan 2026",
            ),
            (
                "Received",
                "from mail.support.test (mail.support.test [192.0.2.1]) by mx.support.test with ESMTPS id y",
            ),
            (
                "Received-SPF",
                "pass (mx.support.test: domain of alice@support.test designates 192.0.2.1)",
            ),
            (
                "Authentication-Results",
                "mx.support.test; dkim=pass header.i=@support.test header.s=s1; spf=pass smtp.mailfrom=alice@support.test",
            ),
            ("Received", "from laptop by mail.support.test"),
            ("From", "alice@support.test"),
        ]);
        assert_eq!(passed_for(&h, GMAIL_LIKE, "support.test"), Some("dkim"));
        assert_eq!(passed_for(&h, MX, "support.test"), None);
    }

    #[test]
    fn a_forged_pass_below_the_real_fail_authenticates_nothing() {
        // The attack: the trusted server says fail on top; the
        // stranger wrote a pass into the mail itself.
        let h = headers(&[
            (
                "Authentication-Results",
                "mx.support.test; dkim=fail header.d=support.test",
            ),
            ("Received", "from evil.test by mx.support.test with ESMTP"),
            ("From", "alice@support.test"),
            (
                "Authentication-Results",
                "mx.support.test; dkim=pass header.d=support.test",
            ),
        ]);
        assert_eq!(passed_for(&h, MX, "support.test"), None);
        assert_eq!(passed_for(&h, GMAIL_LIKE, "support.test"), None);
    }

    #[test]
    fn a_forged_pass_right_below_a_server_that_wrote_none_authenticates_nothing() {
        // Sent straight to an MX that writes no results of its own (an
        // OpenDKIM default for unsigned mail): the stranger's first header
        // sits right below the server's Received.
        let h = headers(&[
            ("Received", "from evil.test by mx.support.test with ESMTP"),
            (
                "Authentication-Results",
                "mx.support.test; dkim=pass header.d=support.test",
            ),
            ("From", "alice@support.test"),
        ]);
        assert_eq!(passed_for(&h, MX, "support.test"), None);
        // A server configured as writing below always writes: then the
        // stranger's claim is a second one, a conflict.
        let h = headers(&[
            ("Received", "from evil.test by mx.support.test with ESMTP"),
            ("Authentication-Results", "mx.support.test; dkim=none"),
            (
                "Authentication-Results",
                "mx.support.test; dkim=pass header.d=support.test",
            ),
            ("From", "alice@support.test"),
        ]);
        assert_eq!(passed_for(&h, GMAIL_LIKE, "support.test"), None);
    }

    #[test]
    fn a_forged_received_of_the_trusted_server_below_the_real_one_changes_nothing() {
        let h = headers(&[
            (
                "Authentication-Results",
                "mx.support.test; dkim=fail header.d=support.test",
            ),
            ("Received", "from evil.test by mx.support.test with ESMTP"),
            (
                "Authentication-Results",
                "mx.support.test; dkim=pass header.d=support.test",
            ),
            ("Received", "from x by mx.support.test"),
        ]);
        assert_eq!(passed_for(&h, MX, "support.test"), None);
    }

    #[test]
    fn without_a_received_of_the_trusted_server_nothing_counts() {
        let h = headers(&[
            (
                "Authentication-Results",
                "mx.support.test; dkim=pass header.d=support.test",
            ),
            ("From", "alice@support.test"),
        ]);
        assert_eq!(passed_for(&h, MX, "support.test"), None);
    }

    #[test]
    fn contradictions_and_comments() {
        let both = one(
            "mx.support.test; dkim=pass header.d=support.test; dkim=fail header.d=support.test",
        );
        assert_eq!(passed_for(&both, MX, "support.test"), None);
        let commented = one(
            "mx.support.test (version 1); dkim=pass (header.d=evil.test is a comment) header.d=support.test",
        );
        assert_eq!(passed_for(&commented, MX, "support.test"), Some("dkim"));
        let comment_only =
            one("mx.support.test; dkim=pass (header.d=support.test) header.d=evil.test");
        assert_eq!(passed_for(&comment_only, MX, "support.test"), None);
        let other_server = one("mx.evil.test; dkim=pass header.d=support.test");
        assert_eq!(passed_for(&other_server, MX, "support.test"), None);
        let two = headers(&[
            (
                "Authentication-Results",
                "mx.support.test; dkim=pass header.d=support.test",
            ),
            (
                "Authentication-Results",
                "mx.support.test; dkim=pass header.d=support.test",
            ),
            ("Received", "from mail.support.test by mx.support.test"),
        ]);
        assert_eq!(passed_for(&two, MX, "support.test"), None, "two claims");
    }
}
