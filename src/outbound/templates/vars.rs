//! The variables each template may use (the README's table says the
//! same) and the example values `check-config` and `templates show`
//! render with. A template that names any other variable is refused at
//! load. Pure.

use std::collections::BTreeMap;

use minijinja::Value;

use super::{QueueWording, TemplateName};

/// Every template gets these (from its queue).
pub const COMMON: [&str; 4] = ["queue", "queue_name", "support_address", "language"];

/// The globals of minijinja's builtins, never an unknown variable.
pub const GLOBALS: [&str; 4] = ["range", "dict", "namespace", "debug"];

/// The variables of `name` besides [`COMMON`].
pub fn variables(name: TemplateName) -> &'static [&'static str] {
    match name {
        TemplateName::Confirmation => &[
            "ticket",
            "subject",
            "status",
            "tag",
            "link",
            "requester_link",
            "requester_name",
            "follows",
            "text",
            "text_cut",
            "quote",
        ],
        TemplateName::Status => &[
            "ticket",
            "subject",
            "status",
            "tag",
            "link",
            "requester_name",
        ],
        TemplateName::Notification => &[
            "ticket",
            "subject",
            "status",
            "tag",
            "link",
            "agent_name",
            "customer",
            "requester",
            "requester_name",
            "cc",
            "proposed_cc",
            "is_new_ticket",
            "text",
            "commands",
        ],
        TemplateName::RelayFooter => &["ticket", "subject", "tag", "link", "agent_name"],
        TemplateName::Oversize => &["subject", "requester_name", "size", "limit"],
        TemplateName::Refused => &["subject", "agent_name", "reasons", "commands"],
        TemplateName::Unproven => &["ticket", "subject", "agent_name", "why", "commands"],
    }
}

/// Whether `variable` may be used in `name`.
pub fn is_known(name: TemplateName, variable: &str) -> bool {
    COMMON.contains(&variable) || GLOBALS.contains(&variable) || variables(name).contains(&variable)
}

/// The values of one mail's variables.
#[derive(Debug, Clone, Default)]
pub struct Vars(BTreeMap<&'static str, Value>);

impl Vars {
    pub fn new() -> Vars {
        Vars::default()
    }

    pub fn set(mut self, key: &'static str, value: impl Into<Value>) -> Vars {
        self.0.insert(key, value.into());
        self
    }

    /// These values and the queue's own, as one context.
    pub(super) fn with_queue(&self, q: &QueueWording) -> Value {
        let mut all = self.0.clone();
        all.insert("queue", Value::from(q.name.clone()));
        all.insert("queue_name", Value::from(q.display_name.clone()));
        all.insert("support_address", Value::from(q.address.clone()));
        all.insert("language", Value::from(q.language.clone()));
        Value::from(all)
    }
}

/// One refused command line and why, for `refused`.
pub fn reason(line: &str, why: &str) -> Value {
    let mut map = BTreeMap::new();
    map.insert("line", Value::from(line));
    map.insert("why", Value::from(why));
    Value::from(map)
}

/// The example of `name`: `full` sets every optional value, else they are
/// none (both are rendered at load, so either branch of an `if` is tried).
pub fn example(name: TemplateName, full: bool) -> Vars {
    let link = "https://support.example.com/t/3q2-EXAMPLE";
    let text = "My printer shows error E42 since this morning.\nI restarted it twice.";
    let opt = |value: &str| full.then(|| value.to_string());
    let base = Vars::new()
        .set("ticket", 1042)
        .set("subject", "Printer shows E42")
        .set("tag", "[Ticket #1042]")
        .set("link", link);
    match name {
        TemplateName::Confirmation => base
            .set("status", "new")
            .set(
                "requester_link",
                "https://support.example.com/r/7fk-EXAMPLE",
            )
            .set("requester_name", opt("Ann Example"))
            .set("follows", full.then_some(1041))
            .set("text", text)
            .set("text_cut", full)
            .set(
                "quote",
                "> My printer shows error E42 since this morning.\n> I restarted it twice.",
            ),
        TemplateName::Status => base
            .set("status", if full { "resolved" } else { "pending" })
            .set("requester_name", opt("Ann Example")),
        TemplateName::Notification => base
            .set("status", if full { "open" } else { "new" })
            .set("agent_name", "Alice Agent")
            .set("customer", "Ann Example <ann@customer.example>")
            .set("requester", "Ann Example <ann@customer.example>")
            .set("requester_name", opt("Ann Example"))
            .set("cc", opt("Bob <bob@customer.example>"))
            .set("proposed_cc", opt("Carol <carol@customer.example>"))
            .set("is_new_ticket", full)
            .set("text", text)
            .set("commands", crate::ingest::agent::COMMAND_HELP),
        TemplateName::RelayFooter => base.set("agent_name", "Alice Agent"),
        TemplateName::Oversize => Vars::new()
            .set("subject", "Scans of all our invoices")
            .set("requester_name", opt("Ann Example"))
            .set("size", 48_234_113)
            .set("limit", 26_214_400),
        TemplateName::Refused => Vars::new()
            .set("subject", "Re: [Ticket #1042] Printer shows E42")
            .set("agent_name", "Alice Agent")
            .set(
                "reasons",
                vec![reason("#resolv", "#resolv is not a command")],
            )
            .set("commands", crate::ingest::agent::COMMAND_HELP),
        TemplateName::Unproven => base
            .set("subject", "Re: [Ticket #1042] Printer shows E42")
            .set("agent_name", "Alice Agent")
            .set("why", "it answers none of our mails to you")
            .set("commands", crate::ingest::agent::COMMAND_HELP),
    }
}
