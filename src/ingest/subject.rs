//! Subject: finding the ticket tag in a subject and cleaning reply and
//! forward prefixes. Pure.
//!
//! This module owns the shape of our subject tag (`[TAG #N]`), how a tag
//! mangled by mail clients is still recognised, and which reply/forward
//! prefixes (in every common language) are cleaned off to get a ticket's
//! subject. It must not decide threading (that is `thread`'s job, which
//! also checks the sender is a participant), must not touch the store, and
//! must never panic on any UTF-8 input.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};

use regex::Regex;

/// What is shown when nothing is left of a subject.
pub const NO_SUBJECT: &str = "(no subject)";

/// One reply or forward prefix at the start of a subject, with an optional
/// counter (`Re[2]:`, `Re^3:`, `Re(2):`) and an ASCII or full-width colon.
/// Alternatives that share a start (`fw`/`fwd`, `antw`/`antwort`) are
/// fine: the colon required after the group makes the regex try the next
/// one. `R:` is Italian and only counts when a space follows it, so
/// `R:the robot` and `R2: …` stay.
static PREFIX: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?ix)^\s*(?:
            (?:re|aw|sv|vs|antw|antwort|odp|wg|fwd|fw|tr|rv|rif|ynt|vá|odg|atb|ref|réf
              |enc|pd|vl|vb|doorst|ats|prsl|ilt|İlt|továbbítás|отв|ответ|πρθ|απ|σχετ
              |השב|הועבר|رد|توجيه|trả\ lời|chuyển\ tiếp
              |回复|答复|转发|返信|轉寄|回覆|轉發|転送)
            \s*(?:\[\d{1,6}\]|\^\d{1,6}|\(\d{1,6}\))?\s*[:：]
          | r:\s
        )\s*",
    )
    .expect("the prefix regex is a valid literal")
});

/// `[Fwd: subject]`, the old Netscape/Mozilla way of forwarding.
static BRACKETED_FORWARD: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?is)^\s*\[fwd?\s*:\s*(.*)\]\s*$")
        .expect("the bracketed forward regex is a valid literal")
});

static WHITESPACE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\s+").expect("the whitespace regex is a valid literal"));

/// The regex for our tag, in every mangled form clients produce: doubled
/// brackets, missing or extra spaces, a link pasted after the tag word or
/// after the number. Group 1 is the number. `None` when the tag makes no
/// valid regex (it always does; this only keeps the function total).
fn tag_regex(tag: &str) -> Option<Arc<Regex>> {
    // Compiling costs far more than matching (it was a third of the ingest
    // CPU time), and a daemon has one tag: keep each compiled once. Shared
    // behind an Arc, not cloned: a cloned Regex starts with a cold cache.
    static COMPILED: LazyLock<Mutex<HashMap<String, Option<Arc<Regex>>>>> =
        LazyLock::new(Default::default);
    let mut compiled = COMPILED.lock().unwrap_or_else(|p| p.into_inner());
    if compiled.len() > 64 {
        compiled.clear(); // only tests use many tags; stay bounded anyway
    }
    compiled
        .entry(tag.to_string())
        .or_insert_with(|| {
            let words: Vec<String> = tag.split_whitespace().map(regex::escape).collect();
            let link = r"(?:\s*<[^<>\[\]]*>)*";
            let pattern = format!(
                r"(?i)\[+\s*{words}{link}\s*#\s*(\d{{1,20}}){link}\s*\]+",
                words = words.join(r"\s+"),
            );
            Regex::new(&pattern).ok().map(Arc::new)
        })
        .clone()
}

/// The ticket number in a subject tag `[TAG #N]`, found anywhere,
/// case-insensitive, with extra spaces (`[ ticket  # 42 ]`), doubled, or
/// mangled by clients (`[Ticket#42]`, `[Ticket #42]]`, a tag turned into a
/// link like `[Ticket <https://…> #42]` or `[Ticket #42 <mailto:…>]`). When
/// several different numbers appear, the first wins.
pub fn find_tag(subject: &str, tag: &str) -> Option<u64> {
    let re = tag_regex(tag)?;
    re.captures_iter(subject)
        .find_map(|c| c.get(1).and_then(|n| n.as_str().parse::<u64>().ok()))
}

/// The subject without reply/forward prefixes and without our tag(s): what
/// a ticket's subject is. Prefixes of every common language, nested and
/// counted (`Re: AW: Re[2]: Fwd:`), ASCII or full-width colons. Runs of
/// whitespace become one space. Empty result → `(no subject)`.
pub fn clean_subject(subject: &str, tag: &str) -> String {
    let re = tag_regex(tag);
    let mut current = WHITESPACE.replace_all(subject, " ").trim().to_string();
    // Whitespace is normalised first, so every round that changes the
    // subject shortens it: the loop ends.
    loop {
        let mut next = current.clone();
        if let Some(inner) = BRACKETED_FORWARD.captures(&next).and_then(|c| c.get(1)) {
            next = inner.as_str().to_string();
        }
        while let Some(m) = PREFIX.find(&next).filter(|m| !m.is_empty()) {
            next = next[m.end()..].to_string();
        }
        if let Some(re) = &re {
            next = re.replace_all(&next, " ").into_owned();
        }
        next = WHITESPACE.replace_all(&next, " ").trim().to_string();
        if next == current {
            break;
        }
        current = next;
    }
    if current.is_empty() {
        NO_SUBJECT.to_string()
    } else {
        current
    }
}

/// `[TAG #N] base` where base = [`clean_subject`]: the tag exactly once,
/// never doubled, whatever the subject carried before.
pub fn tagged_subject(subject: &str, tag: &str, number: u64) -> String {
    format!("[{} #{number}] {}", tag.trim(), clean_subject(subject, tag))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const TAG: &str = "Ticket";

    #[test]
    fn cleans_prefixes_of_many_languages() {
        let table: &[(&str, &str)] = &[
            ("Printer on fire", "Printer on fire"),
            ("Re: Printer on fire", "Printer on fire"),
            ("RE: RE: Re: Printer", "Printer"),
            ("Aw: Drucker kaputt", "Drucker kaputt"),
            ("AW: WG: Drucker kaputt", "Drucker kaputt"),
            ("Sv: Skrivaren", "Skrivaren"),
            ("SV: VS: Skriveren", "Skriveren"),
            ("VS: Tulostin", "Tulostin"),
            ("Antw: Printer", "Printer"),
            ("Antwort: Drucker", "Drucker"),
            ("Odp: Drukarka", "Drukarka"),
            ("Fwd: Fw: FW: printer", "printer"),
            ("TR: Imprimante", "Imprimante"),
            ("RV: Impresora", "Impresora"),
            ("R: Stampante", "Stampante"),
            ("Rif: Stampante", "Stampante"),
            ("Ynt: Yazıcı", "Yazıcı"),
            ("Vá: Nyomtató", "Nyomtató"),
            ("Odg: Pisač", "Pisač"),
            ("Atb: Printeris", "Printeris"),
            ("Vs: Tulostin", "Tulostin"),
            ("Ref: order 7", "order 7"),
            ("Réf : Imprimante", "Imprimante"),
            ("回复：打印机", "打印机"),
            ("答复: 打印机", "打印机"),
            ("转发: 打印机", "打印机"),
            ("返信: プリンター", "プリンター"),
            ("轉寄：印表機", "印表機"),
            ("回覆: 印表機", "印表機"),
            ("Re[2]: Printer", "Printer"),
            ("Re^3: Printer", "Printer"),
            ("Re(2): Printer", "Printer"),
            ("RE：Printer", "Printer"),
            ("Re : Printer", "Printer"),
            ("ENC: Impressora", "Impressora"),
            ("ΑΠ: Εκτυπωτής", "Εκτυπωτής"),
            ("[Fwd: Printer on fire]", "Printer on fire"),
            ("Re: [Ticket #42] Printer", "Printer"),
            ("[Ticket #42] Re: [Ticket #42] Printer", "Printer"),
            ("AW: [ticket#42] Re: Printer", "Printer"),
            ("Printer [Ticket #42] broken", "Printer broken"),
            ("Re:", NO_SUBJECT),
            ("", NO_SUBJECT),
            ("   \t ", NO_SUBJECT),
            ("[Ticket #7]", NO_SUBJECT),
            // Words that merely start like a prefix stay.
            ("Regarding the invoice", "Regarding the invoice"),
            ("Fwdx: nothing", "Fwdx: nothing"),
            ("Rechnung: offen", "Rechnung: offen"),
            ("R2: the robot", "R2: the robot"),
            ("R:the robot", "R:the robot"),
            ("Broken R: drive", "Broken R: drive"),
            ("Re: Fwd: Printer\tis   on fire", "Printer is on fire"),
        ];
        for (input, want) in table {
            assert_eq!(clean_subject(input, TAG), *want, "subject {input:?}");
        }
    }

    #[test]
    fn finds_mangled_tags() {
        let table: &[(&str, Option<u64>)] = &[
            ("[Ticket #42] Printer", Some(42)),
            ("Re: [Ticket #42] Printer", Some(42)),
            ("Printer [ticket #42]", Some(42)),
            ("[ ticket  # 42 ] Printer", Some(42)),
            ("[Ticket#42] Printer", Some(42)),
            ("[Ticket #42]] Printer", Some(42)),
            ("[[Ticket #42]] Printer", Some(42)),
            (
                "[Ticket <https://help.example.test/t/42> #42] Printer",
                Some(42),
            ),
            ("[Ticket #42 <mailto:help@example.test>] Printer", Some(42)),
            ("[Ticket #42] [Ticket #42] doubled", Some(42)),
            ("[Ticket #7] Re: [Ticket #42] two", Some(7)),
            ("[Ticket #99999999999999999999999] [Ticket #5]", Some(5)),
            ("[Ticket #] no number", None),
            ("[Tickets #42] other tag", None),
            ("[MyTicket #42] other tag", None),
            ("Ticket #42 without brackets", None),
            ("#42", None),
            ("", None),
        ];
        for (input, want) in table {
            assert_eq!(find_tag(input, TAG), *want, "subject {input:?}");
        }
        assert_eq!(find_tag("[Acme  Help #3] x", "Acme Help"), Some(3));
        assert_eq!(find_tag("[a.b #3] x", "a.b"), Some(3));
        assert_eq!(find_tag("[axb #3] x", "a.b"), None);
    }

    #[test]
    fn tags_exactly_once() {
        assert_eq!(tagged_subject("Printer", TAG, 5), "[Ticket #5] Printer");
        assert_eq!(
            tagged_subject("Re: [Ticket #5] Printer", TAG, 5),
            "[Ticket #5] Printer"
        );
        assert_eq!(
            tagged_subject("AW: [ticket#5]] Printer", TAG, 5),
            "[Ticket #5] Printer"
        );
        assert_eq!(tagged_subject("", TAG, 5), "[Ticket #5] (no subject)");
    }

    proptest! {
        #[test]
        fn tagging_is_idempotent_and_findable(
            s in "\\PC{0,60}",
            junk in "(Re: |AW: |\\[Ticket #[0-9]{1,3}\\] |Fwd: |R: |回复：| )*",
            tag in "[A-Za-z][A-Za-z0-9 ._-]{0,12}",
            n in any::<u64>(),
        ) {
            let subject = format!("{junk}{s}");
            let once = tagged_subject(&subject, &tag, n);
            prop_assert_eq!(&tagged_subject(&once, &tag, n), &once);
            prop_assert_eq!(find_tag(&once, &tag), Some(n));
            let clean = clean_subject(&subject, &tag);
            prop_assert_eq!(&clean_subject(&clean, &tag), &clean);
        }

        #[test]
        fn never_panics(s in any::<String>(), tag in any::<String>()) {
            let _ = find_tag(&s, &tag);
            let _ = clean_subject(&s, &tag);
            let _ = tagged_subject(&s, &tag, 1);
        }
    }
}
