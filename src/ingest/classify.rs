//! Classify: what kind of sender wrote a mail. (Temporary minimal version; being replaced.)

use crate::ingest::parse::ParsedMail;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MailKind {
    Human,
    AutoReply,
    Bounce(BounceInfo),
    List,
    OwnMail,
}
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BounceInfo {
    pub original_message_ids: Vec<String>,
    pub failed_recipients: Vec<String>,
    pub status: Option<String>,
}
#[derive(Debug, Clone)]
pub struct OwnIdentity {
    pub addresses: Vec<String>,
    pub message_id_domain: String,
    pub loop_header_value: String,
}
pub const LOOP_HEADER: &str = "X-Postdesk-Loop";
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Classification {
    pub kind: MailKind,
    pub suppress_auto_reply: bool,
    pub reason: String,
}

pub fn classify(mail: &ParsedMail, own: &OwnIdentity) -> Classification {
    if mail.header(LOOP_HEADER) == Some(own.loop_header_value.as_str()) {
        return Classification {
            kind: MailKind::OwnMail,
            suppress_auto_reply: true,
            reason: "our loop header".into(),
        };
    }
    if mail
        .header("auto-submitted")
        .is_some_and(|v| !v.eq_ignore_ascii_case("no"))
    {
        return Classification {
            kind: MailKind::AutoReply,
            suppress_auto_reply: true,
            reason: "Auto-Submitted".into(),
        };
    }
    Classification {
        kind: MailKind::Human,
        suppress_auto_reply: false,
        reason: "a person".into(),
    }
}
