//! The company's own group alias (issue 12 §4): a support address that is
//! a Google Group or a distribution list stamps `List-Id` (and the other
//! list headers) on every customer's mail. A List-Id named in
//! `support.lists` makes those headers the alias's, not a list's, and
//! Google Groups' DMARC rewrite (`From: 'Alice' via Support <support@…>`)
//! is undone: the person is read from `X-Original-From`, then `Reply-To`.
//! Pure; decides nothing about kinds or replies (the parent module does).

use super::super::parse::{Mailbox, ParsedMail, parse};
use super::OwnIdentity;

/// The List-Id of a mail, as compared: the part in angle brackets (or the
/// whole value), trimmed and lower-cased. `Support <support.example.com>`
/// and `support.example.com` are the same list.
pub(super) fn list_id(value: &str) -> String {
    let inner = match (value.rfind('<'), value.rfind('>')) {
        (Some(open), Some(close)) if open < close => &value[open + 1..close],
        _ => value,
    };
    inner.trim().to_ascii_lowercase()
}

/// The List-Id of ours this mail carries, if any: then it came through our
/// own group alias and is a person's direct mail.
pub(super) fn own_list(mail: &ParsedMail, own: &OwnIdentity) -> Option<String> {
    if own.lists.is_empty() {
        return None;
    }
    mail.header_all("list-id")
        .map(list_id)
        .find(|id| !id.is_empty() && own.lists.iter().any(|l| list_id(l) == *id))
}

/// The person behind a From the alias rewrote to our own address:
/// `X-Original-From` first, then `Reply-To`, never one of our addresses.
/// `None` when the From is not ours (nothing was rewritten) or nobody
/// else is named.
pub(super) fn person(mail: &ParsedMail, own: &OwnIdentity) -> Option<Mailbox> {
    let from = mail.from.as_ref()?;
    let ours = |m: &Mailbox| {
        own.addresses
            .iter()
            .any(|a| a.eq_ignore_ascii_case(&m.address))
    };
    if !ours(from) {
        return None;
    }
    mail.header_all("x-original-from")
        .filter_map(header_mailbox)
        .chain(mail.reply_to.iter().cloned())
        .find(|m| !ours(m))
}

/// One mailbox from a raw address header value, read by the same parser
/// as From (encoded words, quoting, validity).
fn header_mailbox(value: &str) -> Option<Mailbox> {
    // A value with a line break would start a header of its own.
    if value.contains(['\r', '\n']) {
        return None;
    }
    parse(format!("From: {value}\r\n\r\n").as_bytes())
        .ok()?
        .from
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_ids_compare_by_their_bracketed_part() {
        assert_eq!(
            list_id("Support <Support.Example.COM>"),
            "support.example.com"
        );
        assert_eq!(list_id(" support.example.com "), "support.example.com");
        assert_eq!(list_id("<a.b>"), "a.b");
    }
}
