//! Other helpdesks' acknowledgements and challenge-response systems: the
//! markers that make their mail an auto-reply (issue 12 §4). Well-known
//! markers only, each a header or sender those systems write themselves.
//! Zendesk and Freshdesk put `Auto-Submitted: auto-generated` on their
//! mail, which the parent module already reads. Pure.

use std::sync::LazyLock;

use regex::Regex;

use super::super::parse::ParsedMail;
use super::signals::{has_header, header_token_in};

/// RT's acknowledgement subject: `AutoReply:` after its `[rtname #123]`
/// tag (a bare leading `AutoReply:` is an out-of-office subject already).
static RT_AUTOREPLY_SUBJECT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)^\s*(?:re:\s*)?\[[^\]\[]{1,100}#\s*\d+\]\s*autoreply\s*:")
        .expect("the RT subject regex is a valid literal")
});

/// Domains of challenge-response services: their "please confirm you are
/// human" mails come from them or link to them.
const CHALLENGE_DOMAINS: &[&str] = &[
    "spamarrest.com",
    "boxbe.com",
    "mailinblack.com",
    "bluebottle.com",
];

static CHALLENGE_LINK: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)https?://(?:[a-z0-9-]+\.)*(?:spamarrest|boxbe|mailinblack|bluebottle)\.com\b")
        .expect("the challenge link regex is a valid literal")
});

/// What a challenge asks for, beside its link: a person's mail that only
/// mentions such a service carries no such sentence.
static CHALLENGE_WORDS: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i)verif|confirm|approv|guest\s+list|authentif|not\s+a\s+(?:robot|spammer)|are\s+(?:a\s+)?human",
    )
    .expect("the challenge words regex is a valid literal")
});

/// Why the mail is another helpdesk's automatic mail, if it is.
pub(super) fn helpdesk_evidence(mail: &ParsedMail) -> Option<String> {
    if has_header(mail, "x-rt-loop-prevention") {
        return Some("sent by RT (X-RT-Loop-Prevention)".to_string());
    }
    if RT_AUTOREPLY_SUBJECT.is_match(&mail.subject) {
        return Some(format!("RT acknowledgement subject {:?}", mail.subject));
    }
    for name in ["x-otrs-loop", "x-otobo-loop", "x-kix-loop"] {
        if mail
            .header_all(name)
            .any(|v| !matches!(v.trim().to_ascii_lowercase().as_str(), "" | "no" | "false"))
        {
            return Some(format!("Znuny/OTRS loop header {name}"));
        }
    }
    if let Some(t) = header_token_in(mail, "x-loop", &["yes", "true"]) {
        // Zammad's and OTRS's notifications; list software puts an address here.
        return Some(format!("X-Loop: {t} (Zammad, OTRS)"));
    }
    challenge_evidence(mail)
}

/// A challenge-response system asking the sender to prove they are a person.
fn challenge_evidence(mail: &ParsedMail) -> Option<String> {
    if let Some(v) = mail
        .header_all("x-delivery-agent")
        .find(|v| v.trim_start().to_ascii_lowercase().starts_with("tmda"))
    {
        return Some(format!(
            "challenge-response: X-Delivery-Agent: {}",
            v.trim()
        ));
    }
    let from = mail.from.as_ref().map(|f| f.address.as_str()).unwrap_or("");
    let domain = from.rsplit_once('@').map_or("", |(_, d)| d);
    if let Some(service) = CHALLENGE_DOMAINS
        .iter()
        .find(|d| domain == **d || domain.ends_with(&format!(".{d}")))
    {
        return Some(format!("challenge-response: sent by {service}"));
    }
    let link = CHALLENGE_LINK.find(&mail.text)?;
    let asks = CHALLENGE_WORDS.is_match(&mail.subject) || CHALLENGE_WORDS.is_match(&mail.text);
    asks.then(|| format!("challenge-response: asks to confirm at {}", link.as_str()))
}
