//! SMTP routes: which account a mail of ours goes out through. A queue
//! whose `[[mailbox]]` sets `smtp.*` (or `oauth.*` while it logs in with
//! XOAUTH2) has its own account; every other queue shares the global
//! `[smtp]`. Queues with the same settings share one route, so the sender
//! keeps one mailer per distinct account. The route is picked by the
//! outbox row's envelope sender, which is the queue's address. A route is
//! named by its first queue (the name keys its refused-login state and
//! held mail in the store) and knows which settings keys fix its login.
//! Pure: it builds no mailer (the sender does, from a route's settings)
//! and sends nothing.

use std::sync::Arc;

use crate::oauth::TokenSource;
use crate::settings::{AuthMethod, Queue, SmtpSettings};

/// One SMTP account and the queues whose mail it carries.
#[derive(Clone)]
pub struct SmtpRoute {
    pub smtp: SmtpSettings,
    /// Where XOAUTH2 access tokens come from, when `smtp.auth` says so.
    pub oauth: Option<Arc<TokenSource>>,
    /// The queues' names, the first one naming the route.
    pub queues: Vec<String>,
    /// The settings keys an operator fixes when the server refuses this
    /// route's login, as `check-config` names them.
    pub hint: String,
    /// The queues' addresses, lower-case: envelope senders of this route.
    addresses: Vec<String>,
}

/// Every route; the first is the first queue's, and carries any mail
/// whose sender is no queue's address.
#[derive(Clone)]
pub struct SmtpRoutes {
    routes: Vec<SmtpRoute>,
}

impl SmtpRoutes {
    /// Groups `queues` (each with its token source, if any) by account.
    /// `queues` must hold the first queue at least.
    pub fn new(queues: Vec<(Queue, Option<Arc<TokenSource>>)>) -> SmtpRoutes {
        let mut routes: Vec<(String, SmtpRoute)> = Vec::new();
        for (queue, oauth) in queues {
            let key = account_key(&queue);
            let address = queue.address.to_ascii_lowercase();
            if let Some((_, route)) = routes.iter_mut().find(|(k, _)| *k == key) {
                route.queues.push(queue.name);
                route.addresses.push(address);
                continue;
            }
            let oauth = oauth.filter(|_| queue.smtp.auth == AuthMethod::Xoauth2);
            let hint = login_hint(&queue);
            let route = SmtpRoute {
                smtp: queue.smtp,
                oauth,
                hint,
                queues: vec![queue.name],
                addresses: vec![address],
            };
            routes.push((key, route));
        }
        SmtpRoutes {
            routes: routes.into_iter().map(|(_, r)| r).collect(),
        }
    }

    pub fn routes(&self) -> &[SmtpRoute] {
        &self.routes
    }

    /// The first queue's route: its settings bound the retries and
    /// timeouts of the outbox as a whole.
    pub fn first(&self) -> Option<&SmtpRoute> {
        self.routes.first()
    }

    /// The index of the route for a mail sent from `envelope_from` (a
    /// queue's address, or a plus-address of it); 0 for any other.
    pub fn pick(&self, envelope_from: &str) -> usize {
        let sender = envelope_from.trim().to_ascii_lowercase();
        let base = match sender.split_once('@') {
            Some((local, domain)) => {
                let local = local.split_once('+').map_or(local, |(base, _)| base);
                format!("{local}@{domain}")
            }
            None => sender,
        };
        self.routes
            .iter()
            .position(|r| r.addresses.contains(&base))
            .unwrap_or(0)
    }
}

impl SmtpRoute {
    /// The route's name: its first queue's (one word, unique).
    pub fn name(&self) -> &str {
        self.queues.first().map_or("", String::as_str)
    }
}

/// Where `queue`'s SMTP login is set: `smtp.password` for the first
/// queue, `mailbox[0].smtp.password` for a `[[mailbox]]` of its own
/// account; with XOAUTH2 its refresh token and how to get a new one.
fn login_hint(queue: &Queue) -> String {
    match queue.smtp.auth {
        AuthMethod::Password => format!(
            "{} and {}",
            queue.key("smtp.username"),
            queue.key("smtp.password")
        ),
        AuthMethod::Xoauth2 => {
            let mailbox = match queue.index {
                None => String::new(),
                Some(_) => format!(" --mailbox {}", queue.name),
            };
            format!(
                "{} (sign in again: postdesk oauth authorize{mailbox})",
                queue.key("oauth.refresh_token_file")
            )
        }
    }
}

/// What makes two queues' SMTP accounts the same: every setting of
/// `[smtp]` (the password as is, not redacted) and, for XOAUTH2, where
/// its tokens come from.
fn account_key(queue: &Queue) -> String {
    let s = &queue.smtp;
    let mut key = format!(
        "{:?}\0{}\0{}\0{:?}\0{}\0{}\0{}\0{}\0{}",
        s.auth,
        s.host,
        s.port,
        s.tls,
        s.username,
        s.password.expose(),
        s.ca_file,
        s.timeout_seconds,
        s.max_attempts
    );
    if s.auth == AuthMethod::Xoauth2 {
        let o = &queue.oauth;
        key.push_str(&format!(
            "\0{}\0{}\0{}\0{}\0{}",
            o.provider, o.tenant, o.client_id, o.token_url, o.refresh_token_file
        ));
    }
    key
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::Settings;

    fn settings(pairs: &[(&str, &str)]) -> Settings {
        let env = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::load_with_env(None, env).unwrap()
    }

    fn routes(s: &Settings) -> SmtpRoutes {
        SmtpRoutes::new(s.queues().into_iter().map(|q| (q, None)).collect())
    }

    const BILLING: [(&str, &str); 3] = [
        ("POSTDESK__MAILBOX__0__QUEUE", "billing"),
        ("POSTDESK__MAILBOX__0__ADDRESS", "billing@shop.test"),
        ("POSTDESK__MAILBOX__0__IMAP__ENABLED", "false"),
    ];

    #[test]
    fn a_queue_without_smtp_keys_shares_the_global_account() {
        let r = routes(&settings(&BILLING));
        assert_eq!(r.routes().len(), 1);
        assert_eq!(r.routes()[0].queues, ["support", "billing"]);
        assert_eq!(r.pick("billing@shop.test"), 0);
        assert_eq!(r.routes()[0].name(), "support");
        assert_eq!(r.routes()[0].hint, "smtp.username and smtp.password");
    }

    #[test]
    fn a_queue_with_its_own_smtp_keys_gets_its_own_route() {
        let mut pairs = BILLING.to_vec();
        pairs.push(("POSTDESK__MAILBOX__0__SMTP__USERNAME", "billing"));
        pairs.push(("POSTDESK__MAILBOX__0__SMTP__PASSWORD", "other"));
        let r = routes(&settings(&pairs));
        assert_eq!(r.routes().len(), 2);
        assert_eq!(r.pick("Billing@Shop.test"), 1);
        assert_eq!(r.pick("billing+1.2.abc@shop.test"), 1);
        assert_eq!(r.pick("tickets@example.com"), 0);
        assert_eq!(r.pick("stranger@else.test"), 0);
        assert_eq!(r.routes()[1].smtp.username, "billing");
        assert_eq!(r.routes()[1].name(), "billing");
        assert_eq!(
            r.routes()[1].hint,
            "mailbox[0].smtp.username and mailbox[0].smtp.password"
        );
        // Only the password differs: still another account.
        let mut pairs = BILLING.to_vec();
        pairs.push(("POSTDESK__MAILBOX__0__SMTP__PASSWORD", "other"));
        assert_eq!(routes(&settings(&pairs)).routes().len(), 2);
    }

    #[test]
    fn an_xoauth2_route_names_its_token_and_the_sign_in() {
        let queues = settings(&BILLING).queues();
        let (mut first, mut billing) = (queues[0].clone(), queues[1].clone());
        first.smtp.auth = AuthMethod::Xoauth2;
        billing.smtp.auth = AuthMethod::Xoauth2;
        assert_eq!(
            login_hint(&first),
            "oauth.refresh_token_file (sign in again: postdesk oauth authorize)"
        );
        assert_eq!(
            login_hint(&billing),
            "mailbox[0].oauth.refresh_token_file (sign in again: postdesk oauth authorize \
             --mailbox billing)"
        );
    }
}
