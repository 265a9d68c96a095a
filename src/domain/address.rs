//! Address: an e-mail address checked once, at the edge (a parsed mail, a
//! row read from the store, a command's argument), and trusted inside. The
//! rule is what lettre, which writes every mail we send, accepts, so that
//! an address we keep can always be written into a mail; lower-cased and
//! at most 254 bytes (RFC 5321's path limit). Pure; no I/O.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

/// The longest address that fits an SMTP path (RFC 5321 §4.5.3.1.3).
pub const MAX_ADDRESS_LEN: usize = 254;

/// A valid, lower-cased e-mail address.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct Address(String);

/// Why a text is not an address we can use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    #[error("`{0}` is longer than {MAX_ADDRESS_LEN} bytes")]
    TooLong(String),
    #[error("`{0}` is not a valid e-mail address")]
    Invalid(String),
}

impl Address {
    /// Parses `value` (surrounding blanks and one pair of angle brackets
    /// are tolerated), lower-cases it, and checks it as lettre would.
    pub fn parse(value: &str) -> Result<Address, AddressError> {
        let trimmed = value.trim();
        let bare = trimmed
            .strip_prefix('<')
            .and_then(|v| v.strip_suffix('>'))
            .unwrap_or(trimmed)
            .trim();
        if bare.len() > MAX_ADDRESS_LEN {
            let shown: String = bare.chars().take(40).collect();
            return Err(AddressError::TooLong(format!("{shown}…")));
        }
        let lower = bare.to_ascii_lowercase();
        match lettre::Address::from_str(&lower) {
            Ok(_) => Ok(Address(lower)),
            Err(_) => Err(AddressError::Invalid(bare.to_string())),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The part after the last `@`.
    pub fn domain(&self) -> &str {
        self.0.rsplit('@').next().unwrap_or_default()
    }
}

impl FromStr for Address {
    type Err = AddressError;
    fn from_str(value: &str) -> Result<Address, AddressError> {
        Address::parse(value)
    }
}

impl std::ops::Deref for Address {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for Address {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<Address> for String {
    fn from(address: Address) -> String {
        address.0
    }
}

impl PartialEq<str> for Address {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for Address {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl PartialEq<String> for Address {
    fn eq(&self, other: &String) -> bool {
        &self.0 == other
    }
}

impl PartialEq<Address> for String {
    fn eq(&self, other: &Address) -> bool {
        *self == other.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn good_addresses_parse_lower_cased() {
        let a = Address::parse(" <Ann@Example.TEST> ").unwrap();
        assert_eq!(a, "ann@example.test");
        assert_eq!(a.domain(), "example.test");
        assert!(Address::parse("tickets+abc.def@support.test").is_ok());
        assert!(Address::parse("o'brien@example.test").is_ok());
        // A quoted local part is valid (RFC 5322) and lettre writes it.
        assert!(Address::parse("\"two words\"@example.test").is_ok());
    }

    #[test]
    fn the_addresses_that_blocked_tickets_are_refused() {
        // mail-parser reads `"bad address"@evil.test` as the name "bad
        // address" and the address "@evil.test".
        for bad in [
            "bad address@evil.test",
            "x@",
            "a@b@c.test",
            "@evil.test",
            "",
            "no-at-sign",
            "a b@evil.test",
            "a@evil..test",
            "a@evil.test\r\nBcc: x@y.test",
        ] {
            assert!(Address::parse(bad).is_err(), "{bad:?} must be refused");
        }
    }

    #[test]
    fn every_address_we_keep_is_one_lettre_accepts() {
        for text in [
            "ann@example.test",
            "A.B+c@Sub.Example.Test",
            "x@[127.0.0.1]",
        ] {
            let a = Address::parse(text).unwrap();
            assert!(lettre::Address::from_str(a.as_str()).is_ok(), "{a}");
        }
    }

    #[test]
    fn an_address_longer_than_an_smtp_path_is_refused() {
        let long = format!("{}@{}.test", "a".repeat(60), "b".repeat(200));
        assert!(matches!(
            Address::parse(&long),
            Err(AddressError::TooLong(_))
        ));
        let fits = format!("{}@{}test", "a".repeat(60), "b.".repeat(90));
        assert!(fits.len() <= MAX_ADDRESS_LEN);
        assert!(Address::parse(&fits).is_ok(), "{fits}");
    }
}
