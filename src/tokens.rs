//! Tokens: private-link tokens (the second they were made, then 128
//! random bits; stored as a key that keeps the time in front of a hash),
//! and HMAC-signed tokens that we put in our Message-IDs and
//! plus-addresses so that a reply can be tied to its ticket (and, for
//! agents, to the agent) without trusting anything the sender wrote.
//! Comparisons are constant-time. Pure apart from reading the OS random
//! source and, for a signed token's day and a Message-ID's second, the
//! clock.

use std::sync::LazyLock;

use hmac::{Hmac, Mac};
use regex::Regex;
use sha2::{Digest, Sha256};

use chrono::{DateTime, Utc};

use crate::domain::TicketNumber;

type HmacSha256 = Hmac<Sha256>;

/// 16 random bytes from the OS, hex-encoded (32 characters).
pub fn random_token() -> anyhow::Result<String> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("the OS random source failed: {e}"))?;
    Ok(hex::encode(bytes))
}

/// A fresh private-link token: the second it was made (8 hex digits),
/// then 16 random bytes (32 hex digits), 40 characters in all.
///
/// Why the time: the link's stored key ([`link_key`]) starts with it, so
/// the keys of new links sort after the ones before and every new link is
/// written at the end of the key index, onto pages that are already in
/// memory. Keys of random tokens scatter over the whole index, and at
/// 100,000 tickets each new ticket's two links dirtied two pages found
/// anywhere in it (issue 16). The time says no more than the confirmation
/// mail's date; the 128 random bits are what make the link unguessable.
pub fn link_token(now: DateTime<Utc>) -> anyhow::Result<String> {
    let second = u32::try_from(now.timestamp().max(0)).unwrap_or(u32::MAX);
    Ok(format!("{second:08x}{}", random_token()?))
}

/// How a link token is stored: only its hash, so a leaked database does
/// not leak working links. A token of [`link_token`]'s form keeps its
/// time in front of the hash (see there); the 32-character tokens of
/// earlier versions are stored, and found, by their hash alone.
pub fn link_key(token: &str) -> String {
    match token.get(..8) {
        Some(second) if token.len() == LINK_TOKEN_LEN => {
            format!("{second}{}", sha256_hex(token.as_bytes()))
        }
        _ => sha256_hex(token.as_bytes()),
    }
}

/// Characters of a [`link_token`]; links of earlier versions have 32.
pub const LINK_TOKEN_LEN: usize = 40;

/// The sha256 of `bytes` in lower-case hex: how tokens, raw mails and
/// attachments are named.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Why we sent a mail; part of the signed token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    Confirmation,
    Status,
    Reply,
    Notification,
    ReplyAddress,
}

impl Purpose {
    fn code(self) -> &'static str {
        match self {
            Purpose::Confirmation => "c",
            Purpose::Status => "s",
            Purpose::Reply => "r",
            Purpose::Notification => "n",
            Purpose::ReplyAddress => "p",
        }
    }

    fn from_code(code: &str) -> Option<Purpose> {
        [
            Purpose::Confirmation,
            Purpose::Status,
            Purpose::Reply,
            Purpose::Notification,
            Purpose::ReplyAddress,
        ]
        .into_iter()
        .find(|p| p.code() == code)
    }
}

/// A token of ours found in a mail, checked against its signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedRef {
    pub ticket: TicketNumber,
    pub purpose: Purpose,
    /// The agent the token was signed for, when it was checked for one.
    pub agent: Option<String>,
    /// The day the token was made, as its nonce says (see [`IssueDay`]).
    pub issued: IssueDay,
}

/// The day a token was made: days since 2020-01-01 (UTC), carried in the
/// first four hex digits of the signed nonce, so that the MAC covers it.
/// Tokens made before the day was carried read as a random day; only an
/// agent's authentication looks at it (a leaked agent token then acts for
/// a while, not forever), threading never does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct IssueDay(pub u16);

impl IssueDay {
    const EPOCH: i64 = 1_577_836_800; // 2020-01-01T00:00:00Z

    pub fn of(time: DateTime<Utc>) -> IssueDay {
        let days = (time.timestamp() - Self::EPOCH).div_euclid(86_400);
        IssueDay(days.clamp(0, i64::from(u16::MAX)) as u16)
    }

    /// Whether a token of this day is still good at `now` for `max_days`
    /// (a day of clock skew allowed, and none from the future beyond it).
    pub fn is_fresh(self, now: DateTime<Utc>, max_days: f64) -> bool {
        let today = i64::from(IssueDay::of(now).0);
        let age = today - i64::from(self.0);
        age >= -1 && (age as f64) <= max_days.ceil()
    }
}

/// Signs and checks tokens with the installation's secret.
#[derive(Clone)]
pub struct Signer {
    key: Vec<u8>,
}

/// `12.c.0a1b2c3d4e5f6789.<32 hex mac>`: ticket, purpose, nonce, MAC.
/// ASCII digits only: a ticket number is one, and Unicode's `\d` made
/// the compiled pattern ~0.6 MB larger.
static TOKEN_RE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?:^|[.+<])([0-9]{1,18})\.([a-z])\.([0-9a-f]{16})\.([0-9a-f]{32})(?:$|[@>])")
        .expect("the token pattern is a valid regex")
});

impl Signer {
    pub fn new(secret: &str) -> Signer {
        Signer {
            key: secret.as_bytes().to_vec(),
        }
    }

    /// A fresh signed token for `ticket`, made today. `agent` binds it to
    /// one agent's address, so that only that agent's reply authenticates
    /// with it.
    pub fn token(
        &self,
        ticket: TicketNumber,
        purpose: Purpose,
        agent: Option<&str>,
    ) -> anyhow::Result<String> {
        self.token_on(ticket, purpose, agent, IssueDay::of(Utc::now()))
    }

    /// [`Signer::token`] made on a given day.
    pub fn token_on(
        &self,
        ticket: TicketNumber,
        purpose: Purpose,
        agent: Option<&str>,
        day: IssueDay,
    ) -> anyhow::Result<String> {
        let mut random = [0u8; 6];
        getrandom::fill(&mut random)
            .map_err(|e| anyhow::anyhow!("the OS random source failed: {e}"))?;
        let nonce = format!("{:04x}{}", day.0, hex::encode(random));
        let mac = self.mac(ticket, purpose.code(), &nonce, agent);
        Ok(format!(
            "{}.{}.{nonce}.{}",
            ticket.0,
            purpose.code(),
            hex::encode(mac)
        ))
    }

    /// A Message-ID (without brackets) that carries a signed token:
    /// `pd.SECONDS.TOKEN@domain`. The second it was made (ten digits)
    /// comes first so that the IDs of our mails sort in the order they
    /// were made: the outbox's and the messages' unique indexes take each
    /// new one at their end, not at its ticket's place, which for mail on
    /// an older ticket was a random page of a large index (issue 16).
    /// [`Signer::verify`] finds the token wherever it is, so IDs of
    /// earlier versions (`pd.TOKEN@domain`) still thread.
    pub fn message_id(
        &self,
        ticket: TicketNumber,
        purpose: Purpose,
        agent: Option<&str>,
        domain: &str,
    ) -> anyhow::Result<String> {
        let second = Utc::now().timestamp().max(0);
        Ok(format!(
            "pd.{second:010}.{}@{domain}",
            self.token(ticket, purpose, agent)?
        ))
    }

    /// Finds a valid token of ours in `text` (a Message-ID or an address).
    /// With `agent`, only a token signed for that agent counts; without,
    /// only a token signed for nobody in particular.
    pub fn verify(&self, text: &str, agent: Option<&str>) -> Option<SignedRef> {
        TOKEN_RE.captures_iter(text).find_map(|caps| {
            let ticket = caps[1].parse::<i64>().ok()?;
            let purpose = Purpose::from_code(&caps[2])?;
            let given = hex::decode(&caps[4]).ok()?;
            let mut mac = HmacSha256::new_from_slice(&self.key).ok()?;
            mac.update(&payload(ticket, &caps[2], &caps[3], agent));
            // verify_truncated_left compares in constant time.
            mac.verify_truncated_left(&given).ok()?;
            let issued = u16::from_str_radix(caps[3].get(..4)?, 16).ok()?;
            Some(SignedRef {
                ticket: TicketNumber(ticket),
                purpose,
                agent: agent.map(str::to_ascii_lowercase),
                issued: IssueDay(issued),
            })
        })
    }

    fn mac(
        &self,
        ticket: TicketNumber,
        purpose: &str,
        nonce: &str,
        agent: Option<&str>,
    ) -> Vec<u8> {
        // HMAC accepts keys of any length, so this cannot fail.
        let mut mac = HmacSha256::new_from_slice(&self.key).unwrap_or_else(|_| unreachable!());
        mac.update(&payload(ticket.0, purpose, nonce, agent));
        mac.finalize().into_bytes()[..16].to_vec()
    }
}

fn payload(ticket: i64, purpose: &str, nonce: &str, agent: Option<&str>) -> Vec<u8> {
    let agent = agent.map(str::to_ascii_lowercase).unwrap_or_default();
    format!("postdesk\0{ticket}\0{purpose}\0{nonce}\0{agent}").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn random_tokens_are_128_bit_and_differ() {
        let a = random_token().unwrap();
        let b = random_token().unwrap();
        assert_eq!(a.len(), 32);
        assert_ne!(a, b);
    }

    #[test]
    fn link_keys_of_later_links_sort_after_earlier_ones_and_old_links_keep_their_hash() {
        let at = |secs| DateTime::from_timestamp(secs, 0).unwrap();
        let early = link_token(at(1_800_000_000)).unwrap();
        let late = link_token(at(1_800_000_001)).unwrap();
        assert_eq!(early.len(), LINK_TOKEN_LEN);
        assert!(early.starts_with("6b49d200"), "{early}");
        assert_ne!(early[8..], late[8..], "the random part differs");
        assert!(link_key(&early) < link_key(&late));
        assert_eq!(link_key(&early).len(), 72);
        assert_eq!(&link_key(&early)[..8], &early[..8]);
        assert_eq!(link_key(&early)[8..], sha256_hex(early.as_bytes()));
        // A link of an earlier version: found by its hash, as it was stored.
        let old = random_token().unwrap();
        assert_eq!(link_key(&old), sha256_hex(old.as_bytes()));
    }

    #[test]
    fn a_signed_message_id_verifies_and_a_forged_one_does_not() {
        let signer = Signer::new("secret");
        let id = signer
            .message_id(
                TicketNumber(42),
                Purpose::Confirmation,
                None,
                "example.test",
            )
            .unwrap();
        let found = signer.verify(&id, None).unwrap();
        assert_eq!(found.ticket, TicketNumber(42));
        assert_eq!(found.purpose, Purpose::Confirmation);
        let forged = id.replacen(".42.c.", ".43.c.", 1);
        assert_ne!(forged, id);
        assert_eq!(signer.verify(&forged, None), None);
        assert_eq!(Signer::new("other").verify(&id, None), None);
        // An ID of an earlier version (no second in front) still verifies.
        let earlier = id.replacen(&id[3..14], "", 1);
        assert!(earlier.starts_with("pd.42.c."), "{earlier}");
        assert_eq!(signer.verify(&earlier, None), Some(found));
    }

    #[test]
    fn our_message_ids_sort_in_the_order_they_were_made() {
        let signer = Signer::new("secret");
        let id = |ticket| {
            signer
                .message_id(TicketNumber(ticket), Purpose::Status, None, "example.test")
                .unwrap()
        };
        let (old_ticket, new_ticket) = (id(900_000), id(7));
        let second = &old_ticket[3..13];
        assert!(second.bytes().all(|b| b.is_ascii_digit()), "{old_ticket}");
        assert_eq!(old_ticket.as_bytes()[13], b'.');
        std::thread::sleep(std::time::Duration::from_millis(1100));
        // Made a second later: sorts after, whatever the ticket numbers.
        assert!(id(1) > old_ticket && id(1) > new_ticket);
    }

    #[test]
    fn an_agent_token_only_verifies_for_that_agent() {
        let signer = Signer::new("secret");
        let token = signer
            .token(
                TicketNumber(7),
                Purpose::Notification,
                Some("Alice@Example.test"),
            )
            .unwrap();
        let address = format!("tickets+{token}@example.test");
        assert!(
            signer
                .verify(&address, Some("alice@example.test"))
                .is_some()
        );
        assert!(signer.verify(&address, Some("bob@example.test")).is_none());
        assert!(signer.verify(&address, None).is_none());
    }

    #[test]
    fn a_token_carries_its_day_under_the_signature() {
        let signer = Signer::new("secret");
        let day = IssueDay::of("2026-12-05T10:00:00Z".parse().unwrap());
        let token = signer
            .token_on(
                TicketNumber(7),
                Purpose::Notification,
                Some("a@x.test"),
                day,
            )
            .unwrap();
        let found = signer.verify(&token, Some("a@x.test")).unwrap();
        assert_eq!(found.issued, day);
        // Changing the day breaks the MAC: an old token cannot be made young.
        let (ticket_and_purpose, rest) = token.split_at(4);
        let younger = format!("{ticket_and_purpose}{:04x}{}", day.0 + 30, &rest[4..]);
        assert_eq!(signer.verify(&younger, Some("a@x.test")), None);
        let now: DateTime<Utc> = "2026-12-20T10:00:00Z".parse().unwrap();
        assert!(day.is_fresh(now, 30.0));
        assert!(!day.is_fresh(now, 10.0));
        assert!(
            !IssueDay(day.0 + 20).is_fresh(now, 30.0),
            "not from the future"
        );
    }

    proptest! {
        #[test]
        fn verify_never_panics(text in ".{0,200}") {
            let _ = Signer::new("k").verify(&text, None);
        }

        #[test]
        fn tokens_round_trip(ticket in 1i64..1_000_000_000) {
            let signer = Signer::new("k");
            let id = signer.message_id(TicketNumber(ticket), Purpose::Status, None, "d.test").unwrap();
            prop_assert_eq!(signer.verify(&format!("<{id}>"), None).map(|r| r.ticket), Some(TicketNumber(ticket)));
        }
    }
}
