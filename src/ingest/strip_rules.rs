//! Rule tables for `strip`: attribution lines ("On … wrote:") per language,
//! header-block field names per language, forward / original-message
//! markers, delimiter lines and mobile-client signatures. Data only, plus the
//! compiled forms; the algorithm that uses them lives in `strip.rs`.
//! Adding a language means adding rows here, never code elsewhere.

use regex::{Regex, RegexBuilder, RegexSet, RegexSetBuilder};
use std::collections::HashMap;
use std::sync::LazyLock;

/// What an attribution needs besides its shape, so that ordinary sentences
/// that happen to end in "wrote:" are not cut.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Needs {
    /// Nothing: the phrase itself is specific enough.
    Nothing,
    /// A digit (a date or a time).
    Digit,
    /// An `@` (an address).
    At,
    /// A digit or an `@`.
    DigitOrAt,
}

/// Attributions that open with a fixed word ("On", "Am", "Le", …). They are
/// searched forwards from that word over up to `MAX_WINDOW` lines, because
/// clients wrap them. `(language, lead, body)`: the lead is the opening word
/// with what must follow it; the body must match the whole (joined)
/// attribution up to, not including, the final colon.
#[rustfmt::skip]
pub(super) const LEAD_ATTRIBUTIONS: &[(&str, &str, &str)] = &[
    ("en", r"On\s", r"On\s.+\swrote"),
    ("en", r"At\s", r"At\s.+\syou\s+wrote"),
    ("de", r"Am\s", r"Am\s.+\sschrieb(?:\s.+)?"),
    ("fr", r"Le\s", r"Le\s.+\sa\s+écrit"),
    ("es", r"El\s", r"El\s.+\sescribió"),
    ("it", r"Il\s", r"Il\s.+\sha\s+scritto"),
    ("nl", r"Op\s", r"Op\s.+\s(?:schreef(?:\s.+)?|geschreven)"),
    ("pt", r"Em\s", r"Em\s.+\sescreveu"),
    ("pl", r"W\s+dniu\s", r"W\s+dniu\s.+\s(?:pisze|napisał\(a\)|napisała|napisał)"),
    ("pl", r"Dnia\s", r"Dnia\s.+\s(?:pisze|napisał\(a\)|napisała|napisał)"),
    ("sv/no/da", r"Den\s", r"Den\s.+\sskrev(?:\s.+)?"),
    ("cs", r"Dne\s", r"Dne\s.+\snapsal(?:\(a\)|a)?"),
    ("zh", "在", r"在.+[写寫]道"),
];

/// Attributions recognised by how they end; they are searched backwards from
/// their last line over up to three lines. `(language, body, needs)`.
#[rustfmt::skip]
pub(super) const TAIL_ATTRIBUTIONS: &[(&str, &str, Needs)] = &[
    ("en", r".+<[^<>]*@[^<>]*>\s*wrote", Needs::At),
    ("en", r".+\svia\s.+\swrote", Needs::Nothing),
    ("de", r".+\sschrieb(?:\s+am\s.+)?", Needs::DigitOrAt),
    ("nl", r".+\sschreef(?:\s.+)?", Needs::DigitOrAt),
    ("fr", r".+\sa\s+écrit", Needs::DigitOrAt),
    ("es", r".+\sescribió", Needs::DigitOrAt),
    ("it", r".+\sha\s+scritto", Needs::DigitOrAt),
    ("pt", r".+\sescreveu", Needs::DigitOrAt),
    ("pl", r".+\s(?:pisze|napisał\(a\)|napisała|napisał)", Needs::DigitOrAt),
    ("ru", r".+\s(?:пишет|написал\(а\)|написала|написал)", Needs::DigitOrAt),
    ("uk", r".+\s(?:пише|написав\(ла\)|написала|написав)", Needs::DigitOrAt),
    ("sv/no/da", r".+\sskrev(?:\s.+)?", Needs::DigitOrAt),
    ("fi", r".+\skirjoitti(?:\s.+)?", Needs::DigitOrAt),
    ("cs", r".+\snapsal(?:\(a\)|a)?", Needs::DigitOrAt),
    ("tr", r".+\s(?:şunu\s+)?yazdı", Needs::DigitOrAt),
    ("hu", r".+\sezt\s+írta(?:\s.+)?", Needs::DigitOrAt),
    ("ja", r".+の?メッセージ", Needs::DigitOrAt),
    ("ja", r".+さん[はが]書きました", Needs::Nothing),
    ("zh", r".+[写寫]道", Needs::Nothing),
    ("ko", r".+님이\s*작성", Needs::Nothing),
    // Gmail in many locales: "2015-10-18 0:17 GMT+03:00 Name <a@b.c>:",
    // "вт, 5 янв. 2016 г. в 23:39, Name <a@b.c>:".
    ("any", r".*\d{4}.*<\s*[^<>\s]+@[^<>\s]+\s*>", Needs::Nothing),
];

/// Attributions without a final colon (whole-line patterns).
pub(super) const BARE_ATTRIBUTIONS: &[&str] = &[
    // "2013/7/20 sam via Discourse Meta <info@discourse.org>"
    r"\d{4}[/.-]\d{1,2}[/.-]\d{1,2}\s.+<\s*[^<>\s]+@[^<>\s]+\s*>",
    // "2016-03-03 17:21 GMT+01:00 Some One"
    r"\d{4}-\d{2}-\d{2}\s+\d{1,2}:\d{2}\s+GMT[+-]\d{1,2}:?\d{2}\s+[^<>@:\s][^<>@:]*",
];

/// Titles of forwarded / original messages, written between dashes:
/// "---------- Forwarded message ---------", "-----Original Message-----".
#[rustfmt::skip]
pub(super) const DASHED_MARKERS: &[(&str, &str)] = &[
    ("en", "Forwarded message|Original Message|Reply Message"),
    ("de", "Weitergeleitete Nachricht|Ursprüngliche Nachricht|Originalnachricht"),
    ("fr", "Message transféré|Message d'origine|Message original"),
    ("es", "Mensaje reenviado|Mensaje original"),
    ("it", "Messaggio inoltrato|Messaggio originale"),
    ("nl", "Doorgestuurd bericht|Oorspronkelijk bericht|Origineel bericht"),
    ("pt", "Mensagem encaminhada|Mensagem reencaminhada|Mensagem original"),
    ("pl", "Przekazana wiadomość|Wiadomość przekazana|Wiadomość oryginalna|Oryginalna wiadomość"),
    ("ru", "Пересылаемое сообщение|Пересланное сообщение|Исходное сообщение"),
    ("sv", "Vidarebefordrat meddelande|Ursprungligt meddelande|Originalmeddelande"),
    ("no", "Videresendt melding|Opprinnelig melding"),
    ("da", "Videresendt meddelelse|Oprindelig meddelelse"),
    ("fi", "Välitetty viesti|Alkuperäinen viesti"),
    ("cs", "Přeposlaná zpráva|Původní zpráva"),
    ("ja", "転送されたメッセージ|元のメッセージ"),
    ("zh", "已转发邮件|转发的邮件|原始邮件"),
];

/// Apple Mail's "Begin forwarded message:" and its translations.
#[rustfmt::skip]
pub(super) const COLON_MARKERS: &[(&str, &str)] = &[
    ("en", "Begin forwarded message"),
    ("de", "Anfang der weitergeleiteten Nachricht"),
    ("fr", "Début du message réexpédié"),
    ("es", "Inicio del mensaje reenviado"),
    ("it", "Inizio messaggio inoltrato"),
    ("nl", "Begin doorgestuurd bericht"),
    ("pt", "Início da mensagem reencaminhada"),
    ("ru", "Начало переадресованного сообщения"),
    ("pl", "Początek przekazywanej wiadomości"),
    ("sv/no/da", "Vidarebefordrat brev|Videresendt e-post|Videresendt besked"),
    ("ja/zh", "転送されたメッセージ|转发的邮件"),
];

/// Header-block field names per language, by role: `[language, from, sent,
/// to, cc, subject, reply-to]`, alternatives separated by `|`.
#[rustfmt::skip]
pub(super) const HEADER_FIELDS: &[[&str; 7]] = &[
    ["en", "From", "Sent|Date", "To", "Cc|Bcc", "Subject", "Reply-To"],
    ["de", "Von", "Gesendet|Datum", "An", "Cc|Kopie", "Betreff", "Antwort an"],
    ["fr", "De", "Envoyé|Envoyé le|Date", "À|A", "Cc", "Objet", "Répondre à"],
    ["es", "De", "Enviado|Enviado el|Fecha", "Para", "CC", "Asunto", "Responder a"],
    ["it", "Da", "Inviato|Data", "A", "Cc", "Oggetto", "Rispondi a"],
    ["nl", "Van", "Verzonden|Datum", "Aan", "CC", "Onderwerp", "Beantwoorden"],
    ["pt", "De", "Enviada em|Enviado em|Enviado|Data", "Para", "Cc", "Assunto", "Responder a"],
    ["pl", "Od", "Wysłano|Wysłane|Data", "Do", "DW", "Temat", "Odpowiedź do"],
    ["ru", "От", "Отправлено|Дата", "Кому", "Копия", "Тема", "Ответить"],
    ["uk", "Від", "Надіслано|Дата", "Кому", "Копія", "Тема", ""],
    ["sv", "Från", "Skickat|Datum", "Till", "Kopia", "Ämne", "Svara till"],
    ["no/da", "Fra", "Sendt|Dato", "Til", "Kopi|Cc", "Emne", "Svar til"],
    ["fi", "Lähettäjä", "Lähetetty|Päivämäärä", "Vastaanottaja", "Kopio", "Aihe", ""],
    ["cs", "Od", "Odesláno|Datum", "Komu", "Kopie", "Předmět", ""],
    ["hu", "Feladó", "Elküldve|Dátum", "Címzett", "Másolat", "Tárgy", ""],
    ["tr", "Kimden", "Gönderildi|Tarih", "Kime", "Bilgi", "Konu", ""],
    ["ja", "差出人", "送信日時|日付", "宛先", "CC", "件名", ""],
    ["zh", "发件人|寄件者", "发送时间|日期|寄件日期", "收件人", "抄送|副本", "主题|主旨", ""],
];

/// Column of the sender in `HEADER_FIELDS`.
pub(super) const FROM_ROLE: usize = 1;

/// Mobile-client and "get the app" signature lines, matched against a line
/// with its links removed. Only trailing lines are ever dropped for these.
#[rustfmt::skip]
pub(super) const DEVICE_SIGNATURES: &[(&str, &str)] = &[
    ("en", r"[(<]*\s*sent (?:from|via|with) \S.*"),
    ("en", r"[(<]+\s*sent by \S.*"),
    ("en", r"\w+ from (?:my )?mobile\b.*"),
    ("en", r"from my (?:iphone|ipad|ipod|android|mobile|phone|cell|samsung|galaxy|blackberry|tablet|smartphone|device)\b.*"),
    ("en", r"get outlook for (?:ios|android)\b.*"),
    ("fr", r"envoyé (?:de|depuis|à partir de) \S.*"),
    ("fr", r"obtenir outlook pour (?:ios|android)\b.*"),
    ("de", r"(?:von|mit) (?:meinem|outlook) .+ gesendet\.?"),
    ("de", r"diese nachricht wurde von .+ gesendet\.?"),
    ("de", r"gesendet (?:von|mit) (?:meinem )?\S.*"),
    ("de", r"holen sie sich outlook für (?:ios|android)\b.*"),
    ("es", r"enviado (?:desde|con) \S.*"),
    ("es", r"obt[eé]n(?:er)? outlook para (?:ios|android)\b.*"),
    ("pt", r"enviad[oa] (?:do|de|a partir do) \S.*"),
    ("pt", r"obter o outlook para (?:ios|android)\b.*"),
    ("it", r"inviato (?:da|dal mio|con) \S.*"),
    ("it", r"scarica outlook per (?:ios|android)\b.*"),
    ("nl", r"(?:verzonden|verstuurd) (?:vanaf|met|van) \S.*"),
    ("nl", r"outlook voor (?:ios|android) downloaden\b.*"),
    ("pl", r"wysła(?:ne|no) z \S.*"),
    ("ru", r"(?:отправлено|послано) (?:с|из|со) \S.*"),
    ("ru", r"получить outlook для (?:ios|android)\b.*"),
    ("sv", r"skickat från \S.*"),
    ("sv", r"hämta outlook för (?:ios|android)\b.*"),
    ("no/da", r"sendt fra \S.*"),
    ("no/da", r"(?:hent|få) outlook (?:til|for) (?:ios|android)\b.*"),
    ("fi", r"lähetetty \S+(?:sta|stä)\b.*"),
    ("ja", r".*から送信"),
    ("zh", r"(?:发自|來自|来自|发送自)我的\s*\S.*"),
    ("zh", r"從我的\s*.+\s*傳送"),
];

/// Longest line (in bytes) that can be part of an attribution or a header.
pub(super) const MAX_RULE_LINE: usize = 1000;
/// Most lines a wrapped attribution may span.
pub(super) const MAX_WINDOW: usize = 6;
/// Most non-empty lines after a weak delimiter ("---", "***") for what
/// follows to count as a signature rather than more text.
pub(super) const MAX_SIGNATURE_LINES: usize = 10;
/// A quoted line at least this long may have been wrapped by a client, its
/// rest landing on an unquoted line.
pub(super) const WRAP_WIDTH: usize = 50;
/// Longest mobile signature line, links removed.
pub(super) const MAX_SIGNATURE_CHARS: usize = 80;

fn build(pattern: &str) -> Regex {
    RegexBuilder::new(pattern)
        .case_insensitive(true)
        .build()
        .expect("strip rule tables are literals and compile")
}

fn build_set<I: IntoIterator<Item = String>>(patterns: I) -> RegexSet {
    RegexSetBuilder::new(patterns)
        .case_insensitive(true)
        .build()
        .expect("strip rule tables are literals and compile")
}

const COLON_END: &str = r"\s*(?:[:：]|-{2,})\s*$";
const DASH_START: &str = r"^(?:-{2,}\s*)?";

/// A line (quote markers removed) that opens a lead attribution.
pub(super) static LEAD_START: LazyLock<Regex> = LazyLock::new(|| {
    let leads: Vec<&str> = LEAD_ATTRIBUTIONS.iter().map(|r| r.1).collect();
    build(&format!(r"{DASH_START}(?:{})", leads.join("|")))
});

/// Whole lead attributions (joined lines, quote markers removed).
pub(super) static LEAD_SET: LazyLock<RegexSet> = LazyLock::new(|| {
    build_set(
        LEAD_ATTRIBUTIONS
            .iter()
            .map(|r| format!("{DASH_START}{}{COLON_END}", r.2)),
    )
});

/// Whole tail attributions, in the order of `TAIL_ATTRIBUTIONS`, followed by
/// the `BARE_ATTRIBUTIONS`.
pub(super) static TAIL_SET: LazyLock<RegexSet> = LazyLock::new(|| {
    let tails = TAIL_ATTRIBUTIONS
        .iter()
        .map(|r| format!("^{}{COLON_END}", r.1));
    let bare = BARE_ATTRIBUTIONS.iter().map(|r| format!(r"^{r}\s*$"));
    build_set(tails.chain(bare))
});

/// Needs of each pattern in `TAIL_SET`.
pub(super) fn tail_needs(index: usize) -> Needs {
    TAIL_ATTRIBUTIONS.get(index).map_or(Needs::Nothing, |r| r.2)
}

fn alternatives(table: &[(&str, &str)]) -> String {
    let names = table.iter().flat_map(|r| r.1.split('|'));
    names.map(regex::escape).collect::<Vec<_>>().join("|")
}

/// A forward / original-message marker line.
pub(super) static MARKER: LazyLock<Regex> = LazyLock::new(|| {
    let dashed = alternatives(DASHED_MARKERS);
    let colon = alternatives(COLON_MARKERS);
    build(&format!(
        r"^[\s>*]*(?:-{{2,}}\s*(?:{dashed})\s*-{{2,}}|(?:{colon})\s*[:：])[\s*]*$"
    ))
});

/// A header-block line; group `name` is the field name.
pub(super) static HEADER_LINE: LazyLock<Regex> = LazyLock::new(|| {
    let mut names: Vec<&str> = HEADER_ROLES.keys().map(String::as_str).collect();
    names.sort_by_key(|n| (std::cmp::Reverse(n.len()), *n));
    let names: Vec<String> = names.into_iter().map(regex::escape).collect();
    let names = names.join("|");
    build(&format!(
        r"^[\s>]*\*{{0,2}}(?P<name>{names})\*{{0,2}}\s*[:：]\s*\*{{0,2}}\s*\S"
    ))
});

/// Field name (lower case) to its column in `HEADER_FIELDS`.
pub(super) static HEADER_ROLES: LazyLock<HashMap<String, usize>> = LazyLock::new(|| {
    let mut roles = HashMap::new();
    for row in HEADER_FIELDS {
        for (role, names) in row.iter().enumerate().skip(1) {
            for name in names.split('|').filter(|n| !n.is_empty()) {
                roles.entry(name.to_lowercase()).or_insert(role);
            }
        }
    }
    roles
});

/// Separator lines: "--", "-- ", "______", "-----", "***" and the like, and
/// a lone "ᐧ" (U+1427), which Gmail tracking extensions put before their
/// signature.
pub(super) static DELIMITER: LazyLock<Regex> =
    LazyLock::new(|| build(r"^[ \t]*(?:[-_=+~#*]{2,}|ᐧ)[ \t]*$"));

/// Delimiters that always end the new text: the usenet "-- " and the long
/// underscore line of Outlook.
pub(super) static STRONG_DELIMITER: LazyLock<Regex> =
    LazyLock::new(|| build(r"^(?:--[ \t]?|[ \t]*_{5,}[ \t]*)$"));

/// Quoted lines: "> …" and supercite "Name> …".
pub(super) static QUOTE: LazyLock<Regex> =
    LazyLock::new(|| build(r"^[ \t]*(?:>|[A-Za-z][A-Za-z0-9_.-]{0,9}>(?:[ \t]|$))"));

pub(super) static SIGNATURE_SET: LazyLock<RegexSet> =
    LazyLock::new(|| build_set(DEVICE_SIGNATURES.iter().map(|r| format!(r"^{}\s*$", r.1))));

/// Links inside a signature line: `<http…>`, `(http…)`, bare URLs, and
/// markdown brackets.
pub(super) static LINKS: LazyLock<Regex> = LazyLock::new(|| {
    build(r"<(?:https?|mailto):[^>]*>|\((?:https?|mailto):[^)]*\)|https?://\S+|[\[\]]")
});

/// Code fence lines (```), whose content is never classified.
pub(super) static FENCE: LazyLock<Regex> = LazyLock::new(|| build(r"^[ \t]*```"));
