//! Templates: the wording of every mail postdesk writes itself, per queue
//! and language, as minijinja templates (`.txt` and `.html`). Owns the
//! built-in wording (English, German, French, Spanish, embedded), the
//! lookup of an operator's override files (`load.rs`), the variables each
//! mail offers (`vars.rs`) and rendering. Loading reads files once at
//! start and checks every template (syntax, unknown variables, a render
//! of the example) so that a broken one is refused by `check-config`, not
//! met at send time; rendering itself is pure. It must not build mail
//! (that is `compose`) nor decide who gets one.
//!
//! A `.txt` template may begin with a `Subject: …` line and a blank line:
//! that is the mail's subject (the ticket tag is still added by compose).
//! An `.html` template is autoescaped; a fragment (not starting with
//! `<!DOCTYPE` or `<html`) is wrapped in the page all our mails share.
//! The filter `paragraphs` shows a text as escaped paragraphs with links.

mod builtin;
mod load;
pub mod vars;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, LazyLock};

use minijinja::{Environment, Value};

pub use load::TemplateError;
pub use vars::Vars;

/// A mail of ours that has a template.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TemplateName {
    /// To the customer: a new ticket was opened.
    Confirmation,
    /// To the customer: an agent changed the status.
    Status,
    /// To an agent: a customer wrote.
    Notification,
    /// Below an agent's reply relayed to the customer.
    RelayFooter,
    /// To a sender whose mail was over the size limit.
    Oversize,
    /// To an agent whose command lines were refused.
    Refused,
    /// To an agent whose mail came from their address but was not proven
    /// theirs (kept as a note).
    Unproven,
}

impl TemplateName {
    pub const ALL: [TemplateName; 7] = [
        TemplateName::Confirmation,
        TemplateName::Status,
        TemplateName::Notification,
        TemplateName::RelayFooter,
        TemplateName::Oversize,
        TemplateName::Refused,
        TemplateName::Unproven,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TemplateName::Confirmation => "confirmation",
            TemplateName::Status => "status",
            TemplateName::Notification => "notification",
            TemplateName::RelayFooter => "relay-footer",
            TemplateName::Oversize => "oversize",
            TemplateName::Refused => "refused",
            TemplateName::Unproven => "unproven",
        }
    }

    pub fn parse(value: &str) -> Option<TemplateName> {
        TemplateName::ALL.into_iter().find(|n| n.as_str() == value)
    }

    /// Every name, for messages: `confirmation, status, …`.
    pub fn list() -> String {
        let names: Vec<&str> = TemplateName::ALL.iter().map(|n| n.as_str()).collect();
        names.join(", ")
    }
}

impl fmt::Display for TemplateName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `.txt` or `.html`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Format {
    Text,
    Html,
}

impl Format {
    pub const BOTH: [Format; 2] = [Format::Text, Format::Html];

    pub fn extension(self) -> &'static str {
        match self {
            Format::Text => "txt",
            Format::Html => "html",
        }
    }
}

/// A rendered mail: the subject where the template sets one, the text
/// part and the HTML part (a whole page; `html_body` is the template's
/// own output, for a part of a page such as `relay-footer`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub subject: Option<String>,
    pub text: String,
    pub html: String,
    pub html_body: String,
}

/// One queue as its templates see it.
#[derive(Debug, Clone)]
pub(crate) struct QueueWording {
    pub name: String,
    pub display_name: String,
    pub address: String,
    pub language: String,
    /// The registered template of each (name, format), after the lookup.
    pub chosen: BTreeMap<(TemplateName, Format), String>,
}

/// Every queue's templates, loaded and checked once (see `load.rs`).
pub struct Templates {
    env: Environment<'static>,
    queues: Vec<QueueWording>,
}

impl fmt::Debug for Templates {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.queues.iter().map(|q| q.name.as_str()).collect();
        f.debug_struct("Templates").field("queues", &names).finish()
    }
}

/// The built-in English wording of a queue named "": what an [`Identity`]
/// carries until the pipeline gives it its queue's.
///
/// [`Identity`]: crate::outbound::compose::Identity
static ENGLISH: LazyLock<Arc<Templates>> = LazyLock::new(|| Arc::new(Templates::english()));

impl Templates {
    /// The file (or built-in) each template of `queue` comes from.
    pub fn sources(&self, queue: &str) -> Vec<(TemplateName, Format, String)> {
        self.queue(queue)
            .chosen
            .iter()
            .map(|((name, format), file)| (*name, *format, file.clone()))
            .collect()
    }

    /// The names of the queues, the first one first.
    pub fn queue_names(&self) -> Vec<String> {
        self.queues.iter().map(|q| q.name.clone()).collect()
    }

    fn queue(&self, name: &str) -> &QueueWording {
        self.queues
            .iter()
            .find(|q| q.name == name)
            .or_else(|| self.queues.first())
            .unwrap_or_else(|| &ENGLISH.queues[0])
    }

    /// Renders `name` for `queue` with `vars` (plus the queue's own).
    pub fn render(
        &self,
        queue: &str,
        name: TemplateName,
        vars: &Vars,
    ) -> Result<Rendered, minijinja::Error> {
        let q = self.queue(queue);
        let ctx = vars.with_queue(q);
        let text = self.render_one(q, name, Format::Text, &ctx)?;
        let html = self.render_one(q, name, Format::Html, &ctx)?;
        let (subject, text) = split_subject(&text);
        Ok(Rendered {
            subject,
            text,
            html: wrap_html(&html),
            html_body: html,
        })
    }

    fn render_one(
        &self,
        q: &QueueWording,
        name: TemplateName,
        format: Format,
        ctx: &Value,
    ) -> Result<String, minijinja::Error> {
        let file = q.chosen.get(&(name, format)).ok_or_else(|| {
            minijinja::Error::new(
                minijinja::ErrorKind::TemplateNotFound,
                format!("no {name}.{} for queue {}", format.extension(), q.name),
            )
        })?;
        self.env.get_template(file)?.render(ctx)
    }
}

/// What a queue's [`Identity`](crate::outbound::compose::Identity) uses
/// to word its mails: the loaded set and the queue's name in it.
#[derive(Debug, Clone)]
pub struct Wording {
    set: Arc<Templates>,
    queue: String,
}

impl Default for Wording {
    /// The built-in English wording.
    fn default() -> Wording {
        Wording {
            set: ENGLISH.clone(),
            queue: String::new(),
        }
    }
}

impl Wording {
    pub fn new(set: Arc<Templates>, queue: &str) -> Wording {
        Wording {
            set,
            queue: queue.to_string(),
        }
    }

    /// Renders `name`. An operator's template that fails here (the checks
    /// at load render an example, not every value) gives way to the
    /// built-in English one, so that the mail still goes out.
    pub fn render(&self, name: TemplateName, vars: &Vars) -> anyhow::Result<Rendered> {
        match self.set.render(&self.queue, name, vars) {
            Ok(rendered) => Ok(rendered),
            Err(err) => {
                tracing::error!(
                    "The template {name} of queue {} failed ({}); the built-in English one is used.",
                    self.queue,
                    load::describe(&err)
                );
                ENGLISH
                    .render("", name, vars)
                    .map_err(|e| anyhow::anyhow!("the built-in template {name}: {e}"))
            }
        }
    }
}

/// A leading `Subject: …` line and the blank line after it, taken off.
fn split_subject(text: &str) -> (Option<String>, String) {
    let Some(rest) = text.strip_prefix("Subject:") else {
        return (None, text.to_string());
    };
    let (line, body) = rest.split_once('\n').unwrap_or((rest, ""));
    let body = body
        .strip_prefix("\r\n")
        .or_else(|| body.strip_prefix('\n'));
    let subject = line.trim().to_string();
    (Some(subject), body.unwrap_or_default().to_string())
}

/// An HTML fragment in our mails' page (`html::document`); a whole page
/// as it is.
fn wrap_html(html: &str) -> String {
    let start = html.trim_start();
    let lower = start.get(..14).unwrap_or(start).to_ascii_lowercase();
    if lower.starts_with("<!doctype") || lower.starts_with("<html") {
        return html.to_string();
    }
    crate::outbound::html::document(start.trim_end())
}

#[cfg(test)]
mod tests;
