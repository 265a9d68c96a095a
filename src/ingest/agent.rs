//! Agent: who counts as an agent (rule 4 of DESIGN.md) and what an agent's
//! command lines ask for. An agent's mail counts as the agent's only if its
//! From is a configured agent AND it answers a token we signed for that
//! agent (References, In-Reply-To or a plus-address), or, for a fresh mail,
//! the trusted receiving server's Authentication-Results say `dkim=pass`
//! for the agent's domain (or an aligned `spf=pass`). Pure.

use crate::domain::{Address, Status, TicketNumber};
use crate::ingest::authresults::{self, TrustedServer};
use crate::ingest::parse::ParsedMail;
use crate::tokens::{IssueDay, Purpose, Signer};
use chrono::{DateTime, Utc};

/// How an agent's mail was authenticated, and which ticket its token names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentAuth {
    pub agent: String,
    pub ticket: Option<TicketNumber>,
    pub how: String,
    /// The day of the chosen token (see [`AgentAuth::at`]), if any.
    pub issued: Option<IssueDay>,
    /// Every token of ours the mail answers: its ticket and its day.
    pub tokens: Vec<(TicketNumber, IssueDay)>,
    /// The trusted receiving server vouched for the sender (DKIM/SPF),
    /// which needs no token and does not age.
    pub server_vouched: bool,
}

impl AgentAuth {
    /// The authentication as it stands at `now`: of the tokens found, the
    /// newest one still fresh names the ticket and the day, so that an old
    /// token in References (or one made before tokens carried a day, which
    /// reads as a random day) never hides the fresh one the reply answers.
    pub fn at(mut self, now: DateTime<Utc>, max_days: f64) -> AgentAuth {
        let fresh = self
            .tokens
            .iter()
            .filter(|(_, day)| day.is_fresh(now, max_days))
            .max_by_key(|(_, day)| *day);
        if let Some(&(ticket, day)) = fresh {
            self.ticket = Some(ticket);
            self.issued = Some(day);
        }
        self
    }

    /// Whether the authentication still holds at `now`: a token older
    /// than `max_days` (`support.agent_token_days`) no longer does, unless
    /// the trusted server vouched for the mail as well.
    pub fn is_fresh(&self, now: DateTime<Utc>, max_days: f64) -> bool {
        self.server_vouched || self.issued.is_some_and(|day| day.is_fresh(now, max_days))
    }
}

/// Checks an agent's mail. `agent_list` is the shared notification
/// address, whose tokens are signed for nobody in particular. Of several
/// tokens the newest counts (a reply's References carry old ones too).
pub fn authenticate(
    mail: &ParsedMail,
    signer: &Signer,
    agents: &[String],
    agent_list: Option<&str>,
    trusted: TrustedServer,
) -> Option<AgentAuth> {
    let from = mail.from.as_ref()?.address.to_string();
    if !agents.iter().any(|a| a.eq_ignore_ascii_case(&from)) {
        return None;
    }
    let candidates = mail.referenced_ids().into_iter().chain(
        mail.to
            .iter()
            .chain(mail.cc.iter())
            .map(|m| m.address.to_string()),
    );
    let found: Vec<_> = candidates
        .filter_map(|text| {
            if let Some(r) = signer.verify(&text, Some(&from)) {
                return Some((r, "a token signed for this agent"));
            }
            agent_list
                .and_then(|_| signer.verify(&text, None))
                .filter(|r| r.purpose == Purpose::Notification)
                .map(|r| (r, "a token of the agents' list"))
        })
        .collect();
    let tokens = found.iter().map(|(r, _)| (r.ticket, r.issued)).collect();
    let newest = found.into_iter().max_by_key(|(r, _)| r.issued);
    let vouched = dkim_or_spf_pass(mail, &from, trusted);
    let (ticket, issued, how) = match (newest, &vouched) {
        (Some((r, how)), Some(server)) => (
            Some(r.ticket),
            Some(r.issued),
            format!("{how} and {server}"),
        ),
        (Some((r, how)), None) => (Some(r.ticket), Some(r.issued), how.to_string()),
        (None, Some(server)) => (None, None, server.clone()),
        (None, None) => return None,
    };
    Some(AgentAuth {
        agent: from,
        ticket,
        how,
        issued,
        tokens,
        server_vouched: vouched.is_some(),
    })
}

/// The trusted receiving server's verdict on the From domain, read only
/// from the header that server wrote (see [`authresults`]).
fn dkim_or_spf_pass(mail: &ParsedMail, from: &str, trusted: TrustedServer) -> Option<String> {
    let domain = from.rsplit('@').next()?.to_ascii_lowercase();
    let id = trusted.id;
    match authresults::passed_for(&mail.headers, trusted, &domain)? {
        "dkim" => Some(format!("dkim=pass for {domain} by {id}")),
        _ => Some(format!("aligned spf=pass for {domain} by {id}")),
    }
}

/// One command line of an agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Note,
    SetStatus(Status),
    Assign(String),
    /// `#cc ADDRESS`: the address takes part in the ticket from now on.
    Cc(Address),
    /// `#uncc ADDRESS`: the address no longer does.
    Uncc(Address),
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
    /// The addresses `#cc` adds, in order, less those a later `#uncc` removes.
    pub fn cc_added(&self) -> Vec<Address> {
        let mut out: Vec<Address> = Vec::new();
        for c in &self.commands {
            match c {
                Command::Cc(a) if !out.contains(a) => out.push(a.clone()),
                Command::Uncc(a) => out.retain(|x| x != a),
                _ => {}
            }
        }
        out
    }
    /// The addresses `#uncc` removes, less those a later `#cc` adds again.
    pub fn cc_removed(&self) -> Vec<Address> {
        let mut out: Vec<Address> = Vec::new();
        for c in &self.commands {
            match c {
                Command::Uncc(a) if !out.contains(a) => out.push(a.clone()),
                Command::Cc(a) => out.retain(|x| x != a),
                _ => {}
            }
        }
        out
    }
}

/// The command summary agents see in every notification.
pub const COMMAND_HELP: &str = "Commands (alone on a line at the top of your reply): #note (internal, \
not sent), #open, #pending, #resolve, #close, #status STATE, #assign ADDRESS, #cc ADDRESS \
(add a Cc), #uncc ADDRESS (remove one)";

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
        "cc" | "uncc" => {
            let address = Address::parse(&arg).map_err(|e| format!("#{verb}: {e}"))?;
            if agents.iter().any(|a| *a == address) {
                return Err(format!(
                    "{address} is an agent: agents see every ticket already"
                ));
            }
            Ok(if verb == "cc" {
                Command::Cc(address)
            } else {
                Command::Uncc(address)
            })
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
    fn cc_and_uncc_take_one_valid_address_that_is_no_agent() {
        let m = read_commands(
            "#cc <Carol@Customer.test>\n#uncc dave@customer.test\nHello",
            &agents(),
        );
        assert!(m.refused.is_empty(), "{:?}", m.refused);
        assert_eq!(
            m.cc_added(),
            vec![Address::parse("carol@customer.test").unwrap()]
        );
        assert_eq!(
            m.cc_removed(),
            vec![Address::parse("dave@customer.test").unwrap()]
        );
        assert_eq!(m.text, "Hello");
        let m = read_commands(
            "#cc carol@customer.test\n#uncc carol@customer.test",
            &agents(),
        );
        assert!(m.cc_added().is_empty());
        assert_eq!(m.cc_removed().len(), 1);
        for bad in [
            "#cc",
            "#cc x@",
            "#cc a@b@c.test",
            "#cc bad address@evil.test",
        ] {
            let m = read_commands(bad, &agents());
            assert_eq!(m.refused.len(), 1, "{bad} must be refused");
        }
        let m = read_commands("#cc bob@support.test", &agents());
        assert!(m.refused[0].1.contains("is an agent"));
        assert!(COMMAND_HELP.contains("#cc ADDRESS") && COMMAND_HELP.contains("#uncc ADDRESS"));
    }

    #[test]
    fn a_note_is_a_note() {
        let m = read_commands("#note\nCustomer sounds upset.", &agents());
        assert!(m.is_note());
        assert_eq!(m.text, "Customer sounds upset.");
    }

    fn trusting(id: &str) -> TrustedServer<'_> {
        TrustedServer {
            id,
            below_own_received: false,
        }
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
        let none = trusting("");
        let ok = parse(raw("alice@support.test").as_bytes()).unwrap();
        let auth = authenticate(&ok, &signer, &agents(), None, none).unwrap();
        assert_eq!(auth.ticket, Some(TicketNumber(3)));
        let other_agent = parse(raw("bob@support.test").as_bytes()).unwrap();
        assert_eq!(
            authenticate(&other_agent, &signer, &agents(), None, none),
            None
        );
        let stranger = parse(raw("eve@evil.test").as_bytes()).unwrap();
        assert_eq!(
            authenticate(&stranger, &signer, &agents(), None, none),
            None
        );
    }

    #[test]
    fn of_several_tokens_the_newest_counts() {
        let signer = Signer::new("k");
        let now: DateTime<Utc> = "2026-12-05T10:00:00Z".parse().unwrap();
        let token = |ticket: i64, days_ago: i64| {
            let day = IssueDay::of(now - chrono::Duration::days(days_ago));
            signer
                .token_on(
                    TicketNumber(ticket),
                    Purpose::Notification,
                    Some("alice@support.test"),
                    day,
                )
                .unwrap()
        };
        let raw = format!(
            "From: alice@support.test\r\nIn-Reply-To: <pd.{}@support.test>\r\n\
             References: <pd.{}@support.test> <pd.{}@support.test>\r\nSubject: x\r\n\r\nhi\r\n",
            token(4, 90),
            token(4, 2),
            token(4, 60)
        );
        let mail = parse(raw.as_bytes()).unwrap();
        let auth = authenticate(&mail, &signer, &agents(), None, trusting("")).unwrap();
        assert_eq!(
            auth.issued,
            Some(IssueDay::of(now - chrono::Duration::days(2)))
        );
        assert!(auth.is_fresh(now, 30.0));
        assert!(!auth.is_fresh(now + chrono::Duration::days(40), 30.0));
    }

    #[test]
    fn a_token_dated_in_the_future_never_hides_the_fresh_one() {
        // A token made before tokens carried a day reads as a random one,
        // most often far ahead: beside it, the fresh token still counts.
        let signer = Signer::new("k");
        let now: DateTime<Utc> = "2026-12-05T10:00:00Z".parse().unwrap();
        let agent = Some("alice@support.test");
        let odd = signer
            .token_on(
                TicketNumber(7),
                Purpose::Notification,
                agent,
                IssueDay(u16::MAX),
            )
            .unwrap();
        let fresh = signer
            .token_on(
                TicketNumber(4),
                Purpose::Notification,
                agent,
                IssueDay::of(now),
            )
            .unwrap();
        let raw = format!(
            "From: alice@support.test\r\nIn-Reply-To: <pd.{fresh}@support.test>\r\n\
             References: <pd.{odd}@support.test>\r\nSubject: x\r\n\r\nhi\r\n"
        );
        let mail = parse(raw.as_bytes()).unwrap();
        let auth = authenticate(&mail, &signer, &agents(), None, trusting("")).unwrap();
        assert_eq!(
            auth.ticket,
            Some(TicketNumber(7)),
            "the newest day, unchecked"
        );
        assert!(!auth.is_fresh(now, 30.0));
        let auth = auth.at(now, 30.0);
        assert!(auth.is_fresh(now, 30.0));
        assert_eq!(
            auth.ticket,
            Some(TicketNumber(4)),
            "the fresh token's ticket"
        );
    }

    #[test]
    fn dkim_pass_from_the_trusted_server_authenticates_a_fresh_mail() {
        let received = "Received: from mail.support.test by mx.support.test with ESMTPS\r\n";
        let raw = format!(
            "Authentication-Results: mx.support.test; dkim=pass header.d=support.test header.s=s1\r\n{received}From: alice@support.test\r\nSubject: x\r\n\r\nhi\r\n"
        );
        let mail = parse(raw.as_bytes()).unwrap();
        let signer = Signer::new("k");
        let auth =
            authenticate(&mail, &signer, &agents(), None, trusting("mx.support.test")).unwrap();
        assert!(auth.server_vouched && auth.is_fresh(Utc::now(), 30.0));
        assert!(authenticate(&mail, &signer, &agents(), None, trusting("other.test")).is_none());
        assert!(authenticate(&mail, &signer, &agents(), None, trusting("")).is_none());
        let forged = format!(
            "Authentication-Results: mx.support.test; dkim=fail header.d=support.test\r\n{received}From: alice@support.test\r\nAuthentication-Results: mx.support.test; dkim=pass header.d=support.test\r\nSubject: x\r\n\r\nhi\r\n"
        );
        let mail = parse(forged.as_bytes()).unwrap();
        assert!(
            authenticate(&mail, &signer, &agents(), None, trusting("mx.support.test")).is_none()
        );
    }
}
