//! Subject: finding the ticket tag in a subject and cleaning reply and
//! forward prefixes. Pure.
//!
//! This module owns the shape of our subject tag (`[TAG #N]`), how a tag
//! mangled by mail clients is still recognised, and which reply/forward
//! prefixes (in every common language) are cleaned off to get a ticket's
//! subject. It must not decide threading (that is `thread`'s job, which
//! also checks the sender is a participant), must not touch the store, and
//! must never panic on any UTF-8 input.

use std::sync::{Arc, LazyLock};

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

/// The inside of `[Fwd: subject]` (or `[Fw: …]`), the old Netscape/Mozilla
/// way of forwarding, when `s` (trimmed at its start) is one. Looks at the
/// two ends only, so that unwrapping nested ones stays linear.
fn bracketed_forward(s: &str) -> Option<&str> {
    let body = s.strip_prefix('[')?.trim_end().strip_suffix(']')?;
    let head = body.get(..2).filter(|h| h.eq_ignore_ascii_case("fw"))?;
    let rest = &body[head.len()..];
    let rest = match rest.get(..1) {
        Some(d) if d.eq_ignore_ascii_case("d") => &rest[1..],
        _ => rest,
    };
    let inner = rest.trim_start().strip_prefix(':')?;
    Some(inner.trim_start())
}

static WHITESPACE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\s+").expect("the whitespace regex is a valid literal"));

/// Our subject tag (`support.tag`) with its regex, compiled once: compiling
/// costs far more than matching (per mail it was a third of all ingest
/// CPU time).
#[derive(Debug, Clone)]
pub struct SubjectTag {
    text: String,
    /// The tag in every mangled form clients produce: doubled brackets,
    /// missing or extra spaces, a link pasted after the tag word or after
    /// the number. Group 1 is the number. `None` when the tag makes no
    /// valid regex (it always does; this only keeps the type total).
    /// Shared, not cloned, with the pipeline: a cloned `Regex` starts an
    /// empty cache pool, and the pipeline is cloned for every batch, so
    /// each batch built these regexes' lazy DFAs anew (~1.4% of ingest's
    /// CPU).
    regex: Option<Arc<Regex>>,
    /// The same, anchored at the start: a failed match costs nothing, so
    /// stripping leading tags one by one stays linear.
    leading: Option<Arc<Regex>>,
}

/// Rounds of [`SubjectTag::clean`]: a round strips everything it can in
/// one pass; another is only needed where removing a tag in the middle
/// glues a prefix together (`Re[Ticket #1]: x`), which real subjects never
/// do. Bounded, so that a hostile subject cannot make the rounds quadratic.
const CLEAN_ROUNDS: usize = 4;

impl SubjectTag {
    pub fn new(tag: &str) -> SubjectTag {
        let words: Vec<String> = tag.split_whitespace().map(regex::escape).collect();
        let link = r"(?:\s*<[^<>\[\]]*>)*";
        let pattern = format!(
            r"\[+\s*{words}{link}\s*#\s*(\d{{1,20}}){link}\s*\]+",
            words = words.join(r"\s+"),
        );
        SubjectTag {
            text: tag.trim().to_string(),
            regex: Regex::new(&format!("(?i){pattern}")).ok().map(Arc::new),
            leading: Regex::new(&format!(r"(?i)^\s*{pattern}\s*"))
                .ok()
                .map(Arc::new),
        }
    }

    /// The tag word(s), as in `[TAG #N]`.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The ticket number in a subject tag `[TAG #N]`, found anywhere,
    /// case-insensitive, with extra spaces (`[ ticket  # 42 ]`), doubled, or
    /// mangled by clients (`[Ticket#42]`, `[Ticket #42]]`, a tag turned into
    /// a link like `[Ticket <https://…> #42]` or `[Ticket #42 <mailto:…>]`).
    /// When several different numbers appear, the first wins.
    pub fn find(&self, subject: &str) -> Option<u64> {
        self.regex
            .as_ref()?
            .captures_iter(subject)
            .find_map(|c| c.get(1).and_then(|n| n.as_str().parse::<u64>().ok()))
    }

    /// The subject without reply/forward prefixes and without our tag(s):
    /// what a ticket's subject is. Prefixes of every common language, nested
    /// and counted (`Re: AW: Re[2]: Fwd:`), ASCII or full-width colons. Runs
    /// of whitespace become one space. Empty result → `(no subject)`.
    /// Linear in the subject: prefixes are skipped, not copied off one by
    /// one (250,000 `Re: ` took 5.9 s that way).
    pub fn clean(&self, subject: &str) -> String {
        let mut current = WHITESPACE.replace_all(subject, " ").trim().to_string();
        for _ in 0..CLEAN_ROUNDS {
            let rest = self.skip_leading(&current);
            let next = match &self.regex {
                Some(re) => re.replace_all(rest, " "),
                None => rest.into(),
            };
            let next = WHITESPACE.replace_all(&next, " ").trim().to_string();
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

    /// `subject` after its leading prefixes, tags and `[Fwd: …]` wrappers,
    /// in any mix: a slice, each step anchored at the start (constant work
    /// for a step that does not match).
    fn skip_leading<'s>(&self, subject: &'s str) -> &'s str {
        let mut rest = subject.trim_start();
        loop {
            let before = rest.len();
            if let Some(m) = PREFIX.find(rest).filter(|m| !m.is_empty()) {
                rest = &rest[m.end()..];
            }
            if let Some(m) = self.leading.as_ref().and_then(|re| re.find(rest)) {
                rest = &rest[m.end()..];
            }
            if let Some(inner) = bracketed_forward(rest) {
                rest = inner;
            }
            rest = rest.trim_start();
            if rest.len() == before {
                return rest;
            }
        }
    }

    /// `[TAG #N] base` where base = [`SubjectTag::clean`]: the tag exactly
    /// once, never doubled, whatever the subject carried before.
    pub fn tagged(&self, subject: &str, number: u64) -> String {
        format!("[{} #{number}] {}", self.text, self.clean(subject))
    }
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
            assert_eq!(
                SubjectTag::new(TAG).clean(input),
                *want,
                "subject {input:?}"
            );
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
            assert_eq!(SubjectTag::new(TAG).find(input), *want, "subject {input:?}");
        }
        assert_eq!(
            SubjectTag::new("Acme Help").find("[Acme  Help #3] x"),
            Some(3)
        );
        assert_eq!(SubjectTag::new("a.b").find("[a.b #3] x"), Some(3));
        assert_eq!(SubjectTag::new("a.b").find("[axb #3] x"), None);
    }

    #[test]
    fn tags_exactly_once() {
        assert_eq!(
            SubjectTag::new(TAG).tagged("Printer", 5),
            "[Ticket #5] Printer"
        );
        assert_eq!(
            SubjectTag::new(TAG).tagged("Re: [Ticket #5] Printer", 5),
            "[Ticket #5] Printer"
        );
        assert_eq!(
            SubjectTag::new(TAG).tagged("AW: [ticket#5]] Printer", 5),
            "[Ticket #5] Printer"
        );
        assert_eq!(
            SubjectTag::new(TAG).tagged("", 5),
            "[Ticket #5] (no subject)"
        );
    }

    #[test]
    fn a_quarter_million_prefixes_clean_in_one_pass() {
        // Issue 17: each prefix copied the rest of the subject (5.9 s in
        // release, minutes in a debug test run). The harm is the time; this
        // finishes at once when the pass is linear.
        let tag = SubjectTag::new(TAG);
        let subject = format!("{}help", "Re: ".repeat(250_000));
        assert_eq!(tag.clean(&subject), "help");
        let mixed = format!("{}Printer", "Re: [Ticket #4] AW: ".repeat(50_000));
        assert_eq!(tag.clean(&mixed), "Printer");
        assert_eq!(tag.tagged(&mixed, 4), "[Ticket #4] Printer");
    }

    #[test]
    fn nested_bracketed_forwards_unwrap_in_one_pass() {
        let depth = 100_000;
        let subject = format!("{}Printer{}", "[Fwd: Re: ".repeat(depth), "]".repeat(depth));
        assert_eq!(SubjectTag::new(TAG).clean(&subject), "Printer");
        assert_eq!(SubjectTag::new(TAG).clean("[Fw: x]"), "x");
        assert_eq!(SubjectTag::new(TAG).clean("[Fwx: x]"), "[Fwx: x]");
        assert_eq!(SubjectTag::new(TAG).clean("Re[Ticket #1]: x"), "x");
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
            let once = SubjectTag::new(&tag).tagged(&subject, n);
            prop_assert_eq!(&SubjectTag::new(&tag).tagged(&once, n), &once);
            prop_assert_eq!(SubjectTag::new(&tag).find(&once), Some(n));
            let clean = SubjectTag::new(&tag).clean(&subject);
            prop_assert_eq!(&SubjectTag::new(&tag).clean(&clean), &clean);
        }

        #[test]
        fn never_panics(s in any::<String>(), tag in any::<String>()) {
            let _ = SubjectTag::new(&tag).find(&s);
            let _ = SubjectTag::new(&tag).clean(&s);
            let _ = SubjectTag::new(&tag).tagged(&s, 1);
        }
    }
}
