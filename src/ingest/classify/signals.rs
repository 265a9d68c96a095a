//! The tables and small readers behind [`super::classify`]: which header
//! values, addresses and subjects mark a machine, and how a delivery status
//! notification is read. Pure functions of a [`ParsedMail`]; no decisions
//! about precedence (those live in the parent module).

use std::sync::LazyLock;

use regex::Regex;

use super::super::parse::{MAX_REFERENCES_READ, ParsedMail};

/// Out-of-office and auto-reply words of many languages. They count only
/// at the very start of a subject, followed by a colon (ASCII or
/// full-width) or the end, or wrapped in brackets: `Automatic reply: …`,
/// `[Auto-Reply] …`, `【自动回复】…`. A person's `Autoreply settings?` stays a
/// person.
const AUTO_REPLY_WORDS: &str = r"out\ of\ (?:the\ )?office(?:\ auto[-\ ]?reply|\ reply|\ notice)?
 |auto(?:matic|mated)?[-\ ]?(?:reply|response|respons|responder|answer)
 |autorespond(?:er)?|vacation\ (?:reply|notice|message|response)|on\ vacation|on\ holiday
 |away\ from\ (?:the\ )?office|abwesenheitsnotiz|abwesenheit|abwesend
 |automatische\ (?:rück)?antwort|nicht\ im\ büro|r[ée]ponse\ automatique|absen(?:ce|te?)
 |message\ d'absence|respuesta\ autom[áa]tica|fuera\ de\ (?:la\ )?oficina|ausente
 |risposta\ automatica|fuori\ (?:sede|ufficio)|assente|automatisch\ antwoord
 |afwezig(?:heid)?|niet\ aanwezig|resposta\ autom[áa]tica|fora\ do\ escrit[óo]rio
 |autosvar|automatiskt?\ svar|fr[åa]nvaro|frav[æe]r(?:ende)?|ikke\ til\ stede|poissa(?:olo)?
 |automaattinen\ vastaus|lomavastaaja|automatyczna\ odpowied[źz]|nieobecno[śs][ćc]|nieobecny
 |automatick[áa]\ odpov[ěe][ďd]|automatski\ odgovor|automatikus\ v[áa]lasz
 |otomatik\ (?:yan[ıi]t|cevap)|автоответ|автоматический\ ответ|отсутствую|нет\ на\ месте
 |αυτόματη\ απάντηση|自动回复|自動回覆|自动答复|自動回复|自動応答|自動返信|不在通知
 |자동\ ?응답|부재중";

static AUTO_REPLY_SUBJECT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(&format!(
        r"(?ix)^\s*(?:(?:{w})\s*(?:[:：]|$)|[\[【(（]\s*(?:{w})\s*[\]】)）])",
        w = AUTO_REPLY_WORDS
    ))
    .expect("the auto-reply subject regex is built from literals")
});

/// Sentences that only an absence notice puts anywhere in a subject.
static AUTO_REPLY_ANYWHERE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i)\b(?:is|am|will\s+be)\s+(?:currently\s+)?out\s+of\s+(?:the\s+)?office\b|\bist\s+(?:au(?:ß|ss)er\s+haus|nicht\s+im\s+büro)\b",
    )
    .expect("the auto-reply sentence regex is a valid literal")
});

/// Outlook read receipts sent as TNEF carry no report part, only this.
static READ_RECEIPT_SUBJECT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i)^\s*(?:read|gelesen|lu|le[íi]do|letto|gelezen|lido|l[äa]st|l[æe]st|lest|luettu|przeczytano|přečteno|прочитано|已读|已讀|開封済み|읽음)\s*[:：]",
    )
    .expect("the read receipt regex is a valid literal")
});

/// Bounce subjects of common MTAs and their translations, at the start of
/// the subject. A subject alone never makes a bounce: it needs a machine
/// sender too (see the parent module).
static BOUNCE_SUBJECT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?ix)^\s*(?:
  undeliver(?:ed|able)|delivery\ status\ notification\ \((?:failure|failed|error)\)
 |delivery\ status\ notification:\ (?:error|fail)|(?:mail\ )?delivery\ (?:failure|failed|error)
 |mail\ delivery\ (?:failed|failure|error|problem)|failure\ notice|returned\ mail
 |returned\ to\ sender|message\ not\ delivered|mail\ system\ error|email\ delivery\ error
 |delivery\ notification:\ delivery\ has\ failed|notice:\ mail\ delivery\ status
 |non\ remis|non\ distribuable|[ée]chec\ de\ (?:la\ )?(?:remise|distribution)|impossible\ de\ remettre
 |unzustellbar|nicht\ zustellbar|zustellung\ fehlgeschlagen|fehler\ bei\ der\ zustellung
 |benachrichtigung\ zum\ übermittlungsstatus\ \(fehlgeschlagen\)|onbestelbaar|niet\ bezorgd
 |non\ recapitabile|mancato\ recapito|impossibile\ recapitare|no\ se\ (?:puede|pudo)\ entregar
 |no\ entregado|notificación\ de\ estado\ de\ entrega\ \((?:error|fallo|failure)\)
 |não\ é\ possível\ entregar|não\ entregue|falha\ na\ entrega|olevererbart
 |kan\ ikke\ leveres|kunne\ ikke\ leveres|ikke\ leveret|ei\ voitu\ toimittaa|toimittamaton
 |nie\ można\ dostarczyć|niedostarczalne|niedoręczalne|nie\ dostarczono|nelze\ doručit
 |nedoručitelné|kézbesíthetetlen|teslim\ edilemedi|недоставляемое|невозможно\ доставить
 |(?:ваше\ )?сообщение\ не\ доставлено|не\ доставлено|无法投递|未送达|系统退信|退信
 |無法傳遞|配信不能|配信エラー|配信失敗|전달되지\ 않음|배달\ 실패
)",
    )
    .expect("the bounce subject regex is a valid literal")
});

/// X-Mailer / User-Agent values of auto-responders.
static AUTO_REPLY_MAILER: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)vacation|auto[- ]?reply|auto[- ]?respon|out of office")
        .expect("the auto-reply mailer regex is a valid literal")
});

/// Local parts that never read their mail: no-reply senders, MTAs, list
/// robots. A `+detail` is ignored.
static MACHINE_LOCAL_PART: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?ix)no[-_.]?reply|do[-_.]?not[-_.]?reply|dont[-_.]?reply|^mailer[-_.]?daemon$
 |^postmaster$|^bounces?(?:[-_.].*)?$|^listserv$|^majordomo$|^auto[-_.]?reply$|^autoresponder$",
    )
    .expect("the machine local part regex is a valid literal")
});

static REPORT_TYPE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"(?i)report-type\s*=\s*"?([a-z0-9._/-]+)"#)
        .expect("the report-type regex is a valid literal")
});

static DSN_FIELD: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?im)^[ \t]*(action|status|final-recipient|original-recipient|reporting-mta)[ \t]*:[ \t]*(.*)$")
        .expect("the DSN field regex is a valid literal")
});

static MESSAGE_ID_LINE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?im)^[ \t>]*(?:x-original-)?message-id[ \t]*:\s*<?([^\s<>]+)")
        .expect("the Message-ID line regex is a valid literal")
});

static ENHANCED_STATUS: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"(?:^|[\s(\[:;'"=#-])([45]\.\d{1,3}\.\d{1,3})(?:$|[\s)\]:;,'"-]|\.(?:\s|$))"#)
        .expect("the enhanced status regex is a valid literal")
});

/// How plain-text bounces name a failed recipient at a line start: qmail
/// and Yahoo `<addr>:`, OpenSMTPD `addr: 550 …`, Exchange
/// `addr<mailto:addr>`.
static TEXT_RECIPIENT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?m)^[ \t]*(?:<([^<>\s]+@[^<>\s]+)>:|([^<>\s:]+@[^<>\s:]+):\s|([^<>\s]+@[^<>\s]+)<mailto:)",
    )
    .expect("the text recipient regex is a valid literal")
});

/// Machine-generated notification systems that write no RFC 3834 header.
pub(super) const NOTIFICATION_HEADERS: &[&str] = &["x-jira-fingerprint", "x-servicenow-generated"];

/// Headers whose mere presence marks an auto-responder.
pub(super) const AUTO_REPLY_HEADERS: &[&str] = &[
    "x-autoreply",
    "x-autorespond",
    "x-autoresponder",
    "x-autoreply-from",
    "x-mail-autoreply",
];

/// Headers that mark mailing-list mail (RFC 2369, RFC 2919, ezmlm).
pub(super) const LIST_HEADERS: &[&str] = &[
    "list-id",
    "list-unsubscribe",
    "list-post",
    "x-mailing-list",
    "mailing-list",
];

/// The first token of a header value, lower-cased: `auto-replied` of
/// `Auto-Replied (vacation); x=y`.
pub(super) fn token(value: &str) -> String {
    value
        .split(|c: char| c == ';' || c == '(' || c.is_whitespace())
        .find(|t| !t.is_empty())
        .unwrap_or("")
        .to_ascii_lowercase()
}

/// The first value of a header whose first token is one of `tokens`.
pub(super) fn header_token_in(mail: &ParsedMail, name: &str, tokens: &[&str]) -> Option<String> {
    mail.header_all(name)
        .map(token)
        .find(|t| tokens.contains(&t.as_str()))
}

pub(super) fn has_header(mail: &ParsedMail, name: &str) -> bool {
    mail.header_all(name).any(|v| !v.trim().is_empty())
}

pub(super) fn report_type(mail: &ParsedMail) -> Option<String> {
    if mail.content_type != "multipart/report" {
        return None;
    }
    let ct = mail.header("content-type")?;
    REPORT_TYPE
        .captures(ct)
        .and_then(|c| c.get(1))
        .map(|m| m.as_str().to_ascii_lowercase())
}

pub(super) fn is_auto_reply_subject(subject: &str) -> bool {
    AUTO_REPLY_SUBJECT.is_match(subject) || AUTO_REPLY_ANYWHERE.is_match(subject)
}

pub(super) fn is_read_receipt(mail: &ParsedMail) -> bool {
    mail.content_type == "application/ms-tnef" && READ_RECEIPT_SUBJECT.is_match(&mail.subject)
}

pub(super) fn is_bounce_subject(subject: &str) -> bool {
    BOUNCE_SUBJECT.is_match(subject)
}

pub(super) fn is_auto_reply_mailer(mail: &ParsedMail) -> bool {
    ["x-mailer", "user-agent"]
        .iter()
        .any(|h| mail.header_all(h).any(|v| AUTO_REPLY_MAILER.is_match(v)))
}

pub(super) fn local_part(address: &str) -> &str {
    let local = address.rsplit_once('@').map_or(address, |(l, _)| l);
    local.split('+').next().unwrap_or(local)
}

pub(super) fn is_machine_address(address: &str) -> bool {
    MACHINE_LOCAL_PART.is_match(&local_part(address).to_ascii_lowercase())
}

pub(super) fn is_mailer_daemon(address: &str) -> bool {
    let local = local_part(address).to_ascii_lowercase();
    local == "mailer-daemon" || local == "mailer_daemon" || local == "mailerdaemon"
}

/// `Return-Path: <>`, the null envelope sender of bounces and (RFC 3834)
/// auto-replies.
pub(super) fn null_return_path(mail: &ParsedMail) -> bool {
    mail.header_all("return-path")
        .any(|v| v.chars().all(|c| c == '<' || c == '>' || c.is_whitespace()))
}

/// `Return-Path: <MAILER-DAEMON>` as some MTAs write the null sender.
pub(super) fn mailer_daemon_return_path(mail: &ParsedMail) -> bool {
    mail.header_all("return-path").any(|v| {
        let v = v.trim().trim_start_matches('<').trim_end_matches('>');
        is_mailer_daemon(v)
    })
}

/// What the machine-readable part of a delivery status notification says.
#[derive(Debug, Default)]
pub(super) struct Dsn {
    pub actions: Vec<String>,
    pub statuses: Vec<String>,
    pub recipients: Vec<String>,
}

impl Dsn {
    /// A DSN that reports only delays or successes: not a failure.
    pub fn is_not_a_failure(&self) -> bool {
        !self.actions.is_empty() && !self.actions.iter().any(|a| a == "failed")
    }
}

/// A text with DSN fields (`Action:`, `Final-Recipient:`, `Reporting-MTA:`).
pub(super) fn looks_like_dsn(text: &str) -> bool {
    let mut has_action = false;
    let mut has_recipient = false;
    for c in DSN_FIELD.captures_iter(text) {
        match c.get(1).map(|m| m.as_str().to_ascii_lowercase()).as_deref() {
            Some("action") => has_action = true,
            Some("final-recipient" | "original-recipient" | "reporting-mta") => {
                has_recipient = true
            }
            _ => {}
        }
    }
    has_action || has_recipient
}

/// Reads the DSN fields of the report parts that are DSNs or, when none
/// is (a broken MIME structure hides it), of the body text if the body
/// carries them.
pub(super) fn read_dsn(mail: &ParsedMail) -> Dsn {
    let mut sources: Vec<&str> = mail
        .report_parts
        .iter()
        .map(String::as_str)
        .filter(|p| looks_like_dsn(p))
        .collect();
    if sources.is_empty() && looks_like_dsn(&mail.text) {
        sources.push(&mail.text);
    }
    let mut dsn = Dsn::default();
    for text in sources {
        for c in DSN_FIELD.captures_iter(text) {
            let (Some(name), Some(value)) = (c.get(1), c.get(2)) else {
                continue;
            };
            let value = value.as_str().trim();
            match name.as_str().to_ascii_lowercase().as_str() {
                "action" => dsn.actions.push(token(value)),
                "status" => {
                    if let Some(code) = ENHANCED_STATUS
                        .captures(&format!(" {value}"))
                        .and_then(|c| c.get(1))
                    {
                        dsn.statuses.push(code.as_str().to_string());
                    }
                }
                "final-recipient" | "original-recipient" => {
                    let addr = value.rsplit(';').next().unwrap_or(value);
                    push_address(&mut dsn.recipients, addr);
                }
                _ => {}
            }
        }
    }
    dsn
}

fn push_address(list: &mut Vec<String>, raw: &str) {
    let addr = raw
        .trim()
        .trim_start_matches('<')
        .trim_end_matches('>')
        .trim()
        .to_lowercase();
    if addr.contains('@') && !list.contains(&addr) {
        list.push(addr);
    }
}

/// Failed recipients: the DSN's, then `X-Failed-Recipients`, then (for
/// plain-text bounces with neither) recipients named in the text.
pub(super) fn failed_recipients(mail: &ParsedMail, dsn: &Dsn) -> Vec<String> {
    let mut out = dsn.recipients.clone();
    for value in mail.header_all("x-failed-recipients") {
        for addr in value.split(',') {
            push_address(&mut out, addr);
        }
    }
    if out.is_empty() {
        for c in TEXT_RECIPIENT.captures_iter(&mail.text) {
            if let Some(m) = c.get(1).or_else(|| c.get(2)).or_else(|| c.get(3)) {
                push_address(&mut out, m.as_str());
            }
        }
    }
    out
}

/// The first enhanced status code: the DSN's, else one in the text.
pub(super) fn status(mail: &ParsedMail, dsn: &Dsn) -> Option<String> {
    dsn.statuses.first().cloned().or_else(|| {
        ENHANCED_STATUS
            .captures(&mail.text)
            .and_then(|c| c.get(1))
            .map(|m| m.as_str().to_string())
    })
}

/// Message-IDs of the mail that bounced: from the report parts (attached
/// headers), then quoted headers in the text, then In-Reply-To and
/// References. Never the bounce's own Message-ID.
pub(super) fn original_message_ids(mail: &ParsedMail) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let quoted = mail
        .report_parts
        .iter()
        .map(String::as_str)
        .chain([mail.text.as_str()]);
    let found = quoted.flat_map(|t| {
        MESSAGE_ID_LINE
            .captures_iter(t)
            .filter_map(|c| c.get(1).map(|m| m.as_str().to_string()))
            .collect::<Vec<_>>()
    });
    // A set, not `out.contains`: 200,000 references made that quadratic.
    let mut seen = std::collections::HashSet::new();
    // The newest references only, and a bounded list: each id costs the
    // store an update.
    let newest = &mail.references[mail.references.len().saturating_sub(MAX_REFERENCES_READ)..];
    for id in found
        .chain(mail.in_reply_to.iter().cloned())
        .chain(newest.iter().cloned())
    {
        if id.contains('@') && Some(&id) != mail.message_id.as_ref() && seen.insert(id.clone()) {
            out.push(id);
            if out.len() == MAX_REFERENCES_READ {
                break;
            }
        }
    }
    out
}
