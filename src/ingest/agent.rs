//! Agent: who counts as an agent (rule 4 of DESIGN.md) and what an agent's
//! command lines ask for. An agent's mail counts as the agent's only if its
//! From is a configured agent AND it answers a token we signed for that
//! agent (References, In-Reply-To or a plus-address), or, for a fresh mail,
//! the trusted receiving server's Authentication-Results say `dkim=pass`
//! for the agent's domain (or an aligned `spf=pass`). Pure.

use crate::domain::{Status, TicketNumber};
use crate::ingest::parse::ParsedMail;
use crate::tokens::{Purpose, Signer};

/// How an agent's mail was authenticated, and which ticket its token names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentAuth {
    pub agent: String,
    pub ticket: Option<TicketNumber>,
    pub how: String,
}

/// Checks an agent's mail. `agent_list` is the shared notification
/// address, whose tokens are signed for nobody in particular.
pub fn authenticate(
    mail: &ParsedMail,
    signer: &Signer,
    agents: &[String],
    agent_list: Option<&str>,
    trusted_authserv_id: &str,
) -> Option<AgentAuth> {
    let from = mail.from.as_ref()?.address.clone();
    if !agents.iter().any(|a| a.eq_ignore_ascii_case(&from)) {
        return None;
    }
    let candidates = mail.referenced_ids().into_iter().chain(
        mail.to
            .iter()
            .chain(mail.cc.iter())
            .map(|m| m.address.clone()),
    );
    for text in candidates {
        if let Some(r) = signer.verify(&text, Some(&from)) {
            return Some(AgentAuth {
                agent: from,
                ticket: Some(r.ticket),
                how: "a token signed for this agent".to_string(),
            });
        }
        let shared = agent_list.is_some()
            && signer
                .verify(&text, None)
                .is_some_and(|r| r.purpose == Purpose::Notification);
        if shared {
            let ticket = signer.verify(&text, None).map(|r| r.ticket);
            return Some(AgentAuth {
                agent: from,
                ticket,
                how: "a token of the agents' list".to_string(),
            });
        }
    }
    dkim_or_spf_pass(mail, &from, trusted_authserv_id).map(|how| AgentAuth {
        agent: from,
        ticket: None,
        how,
    })
}

/// `Authentication-Results: mx.example.com; dkim=pass header.d=example.com`
/// from the trusted server only (RFC 8601: its authserv-id comes first).
fn dkim_or_spf_pass(mail: &ParsedMail, from: &str, trusted: &str) -> Option<String> {
    if trusted.is_empty() {
        return None;
    }
    let domain = from.rsplit('@').next()?.to_ascii_lowercase();
    mail.header_all("authentication-results").find_map(|value| {
        let mut parts = value.split(';');
        let authserv = parts.next()?.split_whitespace().next()?;
        if !authserv.eq_ignore_ascii_case(trusted) {
            return None;
        }
        parts.find_map(|result| {
            let result = result.trim().to_ascii_lowercase();
            let words: Vec<&str> = result.split_whitespace().collect();
            let names_domain = |key: &str| {
                words.iter().any(|w| {
                    w.strip_prefix(key)
                        .is_some_and(|d| d.rsplit('@').next() == Some(domain.as_str()))
                })
            };
            if words.first() == Some(&"dkim=pass") && names_domain("header.d=") {
                Some(format!("dkim=pass for {domain} by {trusted}"))
            } else if words.first() == Some(&"spf=pass")
                && (names_domain("smtp.mailfrom=") || names_domain("smtp.from="))
            {
                Some(format!("aligned spf=pass for {domain} by {trusted}"))
            } else {
                None
            }
        })
    })
}

/// One command line of an agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Note,
    SetStatus(Status),
    Assign(String),
}

/// An agent's mail, read: its commands, the text for the customer, and
/// any lines that were refused (then nothing is applied).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AgentMail {
    pub commands: Vec<Command>,
    pub text: String,
    pub refused: Vec<(String, String)>,
}

impl AgentMail {
    pub fn is_note(&self) -> bool {
        self.commands.contains(&Command::Note)
    }
    pub fn status(&self) -> Option<Status> {
        self.commands.iter().rev().find_map(|c| match c {
            Command::SetStatus(s) => Some(*s),
            _ => None,
        })
    }
    pub fn assignee(&self) -> Option<&str> {
        self.commands.iter().rev().find_map(|c| match c {
            Command::Assign(a) => Some(a.as_str()),
            _ => None,
        })
    }
}

/// The command summary agents see in every notification.
pub const COMMAND_HELP: &str = "Commands (alone on a line at the top of your reply): #note (internal, \
not sent), #open, #pending, #resolve, #close, #status STATE, #assign ADDRESS";

/// Reads the command lines at the top of an agent's (already stripped)
/// text. Commands stop at the first line that is not one.
pub fn read_commands(text: &str, agents: &[String]) -> AgentMail {
    let mut mail = AgentMail::default();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.peek() {
        let trimmed = line.trim();
        if trimmed.is_empty() {
            lines.next();
            continue;
        }
        if !trimmed.starts_with('#') || trimmed.starts_with("# ") || trimmed == "#" {
            break;
        }
        match command(trimmed, agents) {
            Ok(c) => mail.commands.push(c),
            Err(reason) => mail.refused.push((trimmed.to_string(), reason)),
        }
        lines.next();
    }
    mail.text = lines.collect::<Vec<_>>().join("\n").trim().to_string();
    mail
}

fn command(line: &str, agents: &[String]) -> Result<Command, String> {
    let mut words = line[1..].split_whitespace();
    let verb = words.next().unwrap_or_default().to_ascii_lowercase();
    let arg = words.collect::<Vec<_>>().join(" ");
    let no_arg = |c: Command| {
        if arg.is_empty() {
            Ok(c)
        } else {
            Err(format!("#{verb} takes no argument"))
        }
    };
    match verb.as_str() {
        "note" => Ok(Command::Note),
        "open" => no_arg(Command::SetStatus(Status::Open)),
        "pending" => no_arg(Command::SetStatus(Status::Pending)),
        "resolve" | "resolved" => no_arg(Command::SetStatus(Status::Resolved)),
        "close" | "closed" => no_arg(Command::SetStatus(Status::Closed)),
        "status" => match Status::parse(&arg) {
            Ok(Status::New) => Err("a ticket cannot be set back to new".to_string()),
            Ok(s) => Ok(Command::SetStatus(s)),
            Err(e) => Err(e),
        },
        "assign" => {
            let who = arg
                .trim_matches(|c| c == '<' || c == '>')
                .to_ascii_lowercase();
            if agents.iter().any(|a| a.eq_ignore_ascii_case(&who)) {
                Ok(Command::Assign(who))
            } else {
                Err(format!("`{arg}` is not one of the configured agents"))
            }
        }
        _ => Err(format!("#{verb} is not a command; {COMMAND_HELP}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::parse::parse;

    fn agents() -> Vec<String> {
        vec![
            "alice@support.test".to_string(),
            "bob@support.test".to_string(),
        ]
    }

    #[test]
    fn commands_at_the_top_are_read_and_removed() {
        let m = read_commands(
            "#resolve\n#assign Bob@support.test\n\nFixed it.\n#not a command",
            &agents(),
        );
        assert_eq!(
            m.commands,
            vec![
                Command::SetStatus(Status::Resolved),
                Command::Assign("bob@support.test".into())
            ]
        );
        assert_eq!(m.text, "Fixed it.\n#not a command");
        assert!(m.refused.is_empty());
    }

    #[test]
    fn unknown_or_bad_commands_are_refused_with_a_reason() {
        let m = read_commands("#frobnicate\nHello", &agents());
        assert_eq!(m.refused.len(), 1);
        assert!(m.refused[0].1.contains("not a command"));
        let m = read_commands("#assign mallory@evil.test", &agents());
        assert!(m.refused[0].1.contains("not one of the configured agents"));
        let m = read_commands("#status new", &agents());
        assert_eq!(m.refused.len(), 1);
        let m = read_commands("#status pending\nx", &agents());
        assert_eq!(m.status(), Some(Status::Pending));
    }

    #[test]
    fn a_note_is_a_note() {
        let m = read_commands("#note\nCustomer sounds upset.", &agents());
        assert!(m.is_note());
        assert_eq!(m.text, "Customer sounds upset.");
    }

    #[test]
    fn only_a_token_signed_for_that_agent_authenticates() {
        let signer = Signer::new("k");
        let id = signer
            .message_id(
                TicketNumber(3),
                Purpose::Notification,
                Some("alice@support.test"),
                "support.test",
            )
            .unwrap();
        let raw =
            |from: &str| format!("From: {from}\r\nIn-Reply-To: <{id}>\r\nSubject: x\r\n\r\nhi\r\n");
        let ok = parse(raw("alice@support.test").as_bytes()).unwrap();
        let auth = authenticate(&ok, &signer, &agents(), None, "").unwrap();
        assert_eq!(auth.ticket, Some(TicketNumber(3)));
        let other_agent = parse(raw("bob@support.test").as_bytes()).unwrap();
        assert_eq!(
            authenticate(&other_agent, &signer, &agents(), None, ""),
            None
        );
        let stranger = parse(raw("eve@evil.test").as_bytes()).unwrap();
        assert_eq!(authenticate(&stranger, &signer, &agents(), None, ""), None);
    }

    #[test]
    fn dkim_pass_from_the_trusted_server_authenticates_a_fresh_mail() {
        let raw = "From: alice@support.test\r\nAuthentication-Results: mx.support.test; dkim=pass header.d=support.test header.s=s1\r\nSubject: x\r\n\r\nhi\r\n";
        let mail = parse(raw.as_bytes()).unwrap();
        let signer = Signer::new("k");
        assert!(authenticate(&mail, &signer, &agents(), None, "mx.support.test").is_some());
        assert!(authenticate(&mail, &signer, &agents(), None, "other.test").is_none());
        assert!(authenticate(&mail, &signer, &agents(), None, "").is_none());
        let forged = "From: alice@support.test\r\nAuthentication-Results: mx.support.test; dkim=fail header.d=support.test\r\nSubject: x\r\n\r\nhi\r\n";
        let mail = parse(forged.as_bytes()).unwrap();
        assert!(authenticate(&mail, &signer, &agents(), None, "mx.support.test").is_none());
    }
}
