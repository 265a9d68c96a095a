//! Authentication-Results: which of a mail's `Authentication-Results`
//! headers (RFC 8601) were written by the receiving server we trust, and
//! what that one header says about a domain. Anybody can write such a
//! header into the mail they send, so a header naming the trusted server
//! counts only where that server put it: above the first `Received` it
//! wrote, or in the run of trace headers right below it (Gmail writes its
//! results there), never among the headers that came from outside (RFC
//! 8601 §5). More than one such header, or one that says both pass and
//! fail for the domain, is a conflict and authenticates nothing. Pure; it
//! must not decide who is an agent (that is `agent`'s job).

/// Trace headers a receiving server writes beside its own `Received`.
const TRACE: [&str; 5] = [
    "authentication-results",
    "received-spf",
    "arc-seal",
    "arc-message-signature",
    "arc-authentication-results",
];

/// What the trusted server's one header says about `domain`: the
/// mechanism that passed (`"dkim"`, or `"spf"` when aligned with the
/// domain), or `None` when it says nothing that authenticates, when it
/// contradicts itself, or when there is not exactly one such header in the
/// trusted part of the header section. `headers` are the top-level headers
/// in order, names lower-cased.
pub fn passed_for(
    headers: &[(String, String)],
    trusted: &str,
    domain: &str,
) -> Option<&'static str> {
    if trusted.is_empty() {
        return None;
    }
    let mut claims = trusted_headers(headers, trusted);
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
    trusted: &'a str,
) -> impl Iterator<Item = &'a str> + 'a {
    let end = trusted_zone_end(headers, trusted);
    headers[..end]
        .iter()
        .filter(|(name, _)| name == "authentication-results")
        .map(|(_, value)| value.as_str())
        .filter(move |value| authserv_id(value).is_some_and(|id| id.eq_ignore_ascii_case(trusted)))
}

/// Where the headers the trusted server vouches for end: after the run of
/// trace headers below the first `Received` it wrote; without such a
/// `Received`, at the first `Received` of all (a milter's results sit
/// above its server's `Received`).
fn trusted_zone_end(headers: &[(String, String)], trusted: &str) -> usize {
    let first_received = headers.iter().position(|(name, _)| name == "received");
    let own = headers
        .iter()
        .position(|(name, value)| name == "received" && received_by(value, trusted));
    match own {
        Some(at) => {
            let below = &headers[at + 1..];
            let run = below
                .iter()
                .take_while(|(name, _)| TRACE.contains(&name.as_str()))
                .count();
            at + 1 + run
        }
        None => first_received.unwrap_or(headers.len()),
    }
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

    const MX: &str = "mx.support.test";

    fn headers(raw: &[(&str, &str)]) -> Vec<(String, String)> {
        raw.iter()
            .map(|(n, v)| (n.to_ascii_lowercase(), v.to_string()))
            .collect()
    }

    #[test]
    fn gmail_shape_results_below_its_own_received_count() {
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
        assert_eq!(passed_for(&h, MX, "support.test"), Some("dkim"));
        assert_eq!(passed_for(&h, MX, "other.test"), None);
        assert_eq!(passed_for(&h, "", "support.test"), None);
    }

    #[test]
    fn milter_shape_results_above_the_servers_received_count() {
        let h = headers(&[
            (
                "Authentication-Results",
                "mx.support.test; spf=pass smtp.mailfrom=support.test",
            ),
            (
                "Received",
                "from mail.support.test by mail.example.net (Postfix) with ESMTPS",
            ),
            ("From", "alice@support.test"),
        ]);
        assert_eq!(passed_for(&h, MX, "support.test"), Some("spf"));
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
    }

    #[test]
    fn a_forged_pass_with_no_real_header_authenticates_nothing() {
        let h = headers(&[
            ("Received", "from evil.test by mx.support.test with ESMTP"),
            ("From", "alice@support.test"),
            ("Subject", "x"),
            (
                "Authentication-Results",
                "mx.support.test; dkim=pass header.d=support.test",
            ),
        ]);
        assert_eq!(passed_for(&h, MX, "support.test"), None);
        // Sent straight to the MX, the forged header is the first one of the
        // mail, right below the server's trace run: two claims, a conflict.
        let h = headers(&[
            ("Authentication-Results", "mx.support.test; dkim=none"),
            ("Received", "from evil.test by mx.support.test with ESMTP"),
            (
                "Authentication-Results",
                "mx.support.test; dkim=pass header.d=support.test",
            ),
            ("From", "alice@support.test"),
        ]);
        assert_eq!(passed_for(&h, MX, "support.test"), None);
    }

    #[test]
    fn a_forged_received_of_the_trusted_server_below_the_real_one_changes_nothing() {
        let h = headers(&[
            (
                "Authentication-Results",
                "mx.support.test; dkim=fail header.d=support.test",
            ),
            ("Received", "from evil.test by mx.support.test with ESMTP"),
            ("Received", "from x by mx.support.test"),
            (
                "Authentication-Results",
                "mx.support.test; dkim=pass header.d=support.test",
            ),
        ]);
        assert_eq!(passed_for(&h, MX, "support.test"), None);
    }

    #[test]
    fn contradictions_and_comments() {
        let both = headers(&[(
            "Authentication-Results",
            "mx.support.test; dkim=pass header.d=support.test; dkim=fail header.d=support.test",
        )]);
        assert_eq!(passed_for(&both, MX, "support.test"), None);
        let commented = headers(&[(
            "Authentication-Results",
            "mx.support.test (version 1); dkim=pass (header.d=evil.test is a comment) header.d=support.test",
        )]);
        assert_eq!(passed_for(&commented, MX, "support.test"), Some("dkim"));
        let comment_only = headers(&[(
            "Authentication-Results",
            "mx.support.test; dkim=pass (header.d=support.test) header.d=evil.test",
        )]);
        assert_eq!(passed_for(&comment_only, MX, "support.test"), None);
        let other_server = headers(&[(
            "Authentication-Results",
            "mx.evil.test; dkim=pass header.d=support.test",
        )]);
        assert_eq!(passed_for(&other_server, MX, "support.test"), None);
    }
}
