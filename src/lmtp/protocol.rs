//! The LMTP command state machine (RFC 2033 over RFC 5321's commands),
//! pure: a command line in, the reply (or "read the message now", or
//! "close") out. It knows the transaction (LHLO seen, MAIL, the accepted
//! RCPTs) and the limits; it must not do I/O or store anything. Whether an
//! address is a queue's is asked through the closure the caller passes.

/// Recipients one transaction may have; more get 452 (the MTA sends the
/// rest in another transaction).
pub const MAX_RECIPIENTS: usize = 100;

/// What the session does after a command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Send this reply (lines joined by CRLF, without the last CRLF) and
    /// read the next command.
    Reply(String),
    /// Send 354, then read the message (see `data::DataReader`) and
    /// answer once per recipient of [`Protocol::end_data`].
    Data,
    /// Send this reply and close the connection.
    Close(String),
}

/// The 354 reply that opens the message.
pub const START_DATA: &str = "354 Start mail input; end with <CRLF>.<CRLF>";
/// The reply to a command line longer than the session reads.
pub const LINE_TOO_LONG: &str = "500 5.5.2 Line too long";

/// One connection's protocol state.
#[derive(Debug)]
pub struct Protocol {
    host: String,
    max_message_bytes: u64,
    greeted: bool,
    transaction: Option<Vec<String>>,
}

impl Protocol {
    /// `host` names this server in the greeting and the LHLO reply.
    pub fn new(host: &str, max_message_bytes: u64) -> Protocol {
        Protocol {
            host: host.to_string(),
            max_message_bytes,
            greeted: false,
            transaction: None,
        }
    }

    pub fn greeting(&self) -> String {
        format!("220 {} LMTP postdesk ready", self.host)
    }

    /// The recipients accepted so far in this transaction.
    pub fn recipients(&self) -> &[String] {
        self.transaction.as_deref().unwrap_or_default()
    }

    /// The message was read: the transaction ends, its recipients (one
    /// reply each, in this order) are returned.
    pub fn end_data(&mut self) -> Vec<String> {
        self.transaction.take().unwrap_or_default()
    }

    /// One command line (its CRLF or bare LF included or not).
    pub fn command(&mut self, line: &[u8], is_queue: impl Fn(&str) -> bool) -> Step {
        let line = trim_eol(line);
        let Ok(line) = std::str::from_utf8(line) else {
            return reply("500 5.5.2 Command is not UTF-8");
        };
        let (verb, rest) = line.split_once(' ').unwrap_or((line, ""));
        match verb.to_ascii_uppercase().as_str() {
            "LHLO" => self.lhlo(rest.trim()),
            "MAIL" => self.mail(rest),
            "RCPT" => self.rcpt(rest, is_queue),
            "DATA" => self.data(rest),
            "RSET" => {
                self.transaction = None;
                reply("250 2.0.0 Ok")
            }
            "NOOP" => reply("250 2.0.0 Ok"),
            "QUIT" => Step::Close("221 2.0.0 Bye".to_string()),
            "VRFY" => reply("252 2.5.0 Cannot VRFY; send the mail and see"),
            "HELO" | "EHLO" => reply("500 5.5.1 This is LMTP: say LHLO"),
            _ => reply("500 5.5.2 Command unrecognized"),
        }
    }

    fn lhlo(&mut self, domain: &str) -> Step {
        if domain.is_empty() {
            return reply("501 5.5.4 LHLO needs a domain");
        }
        self.greeted = true;
        self.transaction = None;
        let lines = [
            format!("250-{}", self.host),
            "250-PIPELINING".to_string(),
            "250-ENHANCEDSTATUSCODES".to_string(),
            "250-8BITMIME".to_string(),
            "250-SMTPUTF8".to_string(),
            format!("250 SIZE {}", self.max_message_bytes),
        ];
        Step::Reply(lines.join("\r\n"))
    }

    fn mail(&mut self, rest: &str) -> Step {
        if !self.greeted {
            return reply("503 5.5.1 Send LHLO first");
        }
        if self.transaction.is_some() {
            return reply("503 5.5.1 Nested MAIL command");
        }
        let Some((_path, params)) = path_after(rest, "FROM:") else {
            return reply("501 5.5.4 Syntax: MAIL FROM:<address>");
        };
        for param in params.split_ascii_whitespace() {
            let (key, value) = param.split_once('=').unwrap_or((param, ""));
            match key.to_ascii_uppercase().as_str() {
                "SIZE" => match value.parse::<u64>() {
                    Ok(size) if size > self.max_message_bytes => {
                        return Step::Reply(format!(
                            "552 5.3.4 Message too big: this desk takes at most {} bytes",
                            self.max_message_bytes
                        ));
                    }
                    Ok(_) => {}
                    Err(_) => return reply("501 5.5.4 SIZE needs a number"),
                },
                "BODY" if ["7BIT", "8BITMIME"].contains(&value.to_ascii_uppercase().as_str()) => {}
                "BODY" => return reply("501 5.5.4 BODY is 7BIT or 8BITMIME"),
                "SMTPUTF8" if value.is_empty() => {}
                _ => return reply("555 5.5.4 Unsupported MAIL parameter"),
            }
        }
        self.transaction = Some(Vec::new());
        reply("250 2.1.0 Ok")
    }

    fn rcpt(&mut self, rest: &str, is_queue: impl Fn(&str) -> bool) -> Step {
        let Some(recipients) = self.transaction.as_mut() else {
            return reply("503 5.5.1 Need MAIL before RCPT");
        };
        let Some((path, params)) = path_after(rest, "TO:") else {
            return reply("501 5.5.4 Syntax: RCPT TO:<address>");
        };
        if !params.trim().is_empty() {
            return reply("555 5.5.4 Unsupported RCPT parameter");
        }
        // A source route (@a,@b:user@domain) is to be ignored (RFC 5321 §4.1.1.3).
        let address = path.rsplit_once(':').map_or(path, |(_, a)| a);
        if !address.contains('@') {
            return reply("501 5.1.3 A recipient needs a domain");
        }
        if recipients.len() >= MAX_RECIPIENTS {
            return reply("452 4.5.3 Too many recipients");
        }
        if !is_queue(address) {
            return reply("550 5.1.1 No support queue has this address");
        }
        recipients.push(address.to_string());
        reply("250 2.1.5 Ok")
    }

    fn data(&mut self, rest: &str) -> Step {
        if !rest.trim().is_empty() {
            return reply("501 5.5.4 DATA takes no parameters");
        }
        match &self.transaction {
            None => reply("503 5.5.1 Need MAIL before DATA"),
            Some(recipients) if recipients.is_empty() => reply("503 5.5.1 No valid recipients"),
            Some(_) => Step::Data,
        }
    }
}

fn reply(text: &str) -> Step {
    Step::Reply(text.to_string())
}

/// A line without its CRLF (or bare LF).
pub fn trim_eol(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// `FROM:<path> PARAMS` (the keyword case-insensitive, spaces allowed
/// after the colon): the path inside the brackets and the parameters.
fn path_after<'a>(rest: &'a str, keyword: &str) -> Option<(&'a str, &'a str)> {
    let head = rest.get(..keyword.len())?;
    if !head.eq_ignore_ascii_case(keyword) {
        return None;
    }
    let after = rest[keyword.len()..].trim_start();
    let inner = after.strip_prefix('<')?;
    let end = inner.find('>')?;
    let path = &inner[..end];
    if path.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return None;
    }
    let params = &inner[end + 1..];
    if !params.is_empty() && !params.starts_with(' ') {
        return None;
    }
    Some((path, params))
}

#[cfg(test)]
#[path = "protocol_tests.rs"]
mod tests;
