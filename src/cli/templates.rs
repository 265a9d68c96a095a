//! `postdesk templates show NAME [--queue Q] [--language L] [--html]`:
//! prints a mail's wording as the queue's templates render the example
//! (the same example `check-config` checks every template with). Reads
//! the templates folder, writes nothing.

use std::process::ExitCode;

use crate::outbound::templates::{TemplateName, Templates, vars};
use crate::settings::Settings;

/// The bad-usage exit code (an unknown name, queue or broken template).
const EX_USAGE: u8 = 2;

/// What to show.
#[derive(Debug, Clone, Default)]
pub struct Show<'a> {
    pub name: &'a str,
    /// Empty: the first queue.
    pub queue: Option<&'a str>,
    /// Another language than the queue's.
    pub language: Option<&'a str>,
    pub html: bool,
}

pub fn show(settings: &Settings, s: &Show) -> anyhow::Result<ExitCode> {
    let Some(name) = TemplateName::parse(s.name) else {
        eprintln!(
            "postdesk: `{}` is not a template: one of {}",
            s.name,
            TemplateName::list()
        );
        return Ok(ExitCode::from(EX_USAGE));
    };
    let queue = match s.queue {
        None => settings.support.queue.clone(),
        Some(q) => match settings.queue(q) {
            Some(found) => found.name,
            None => {
                let names: Vec<String> = settings.queues().into_iter().map(|q| q.name).collect();
                eprintln!(
                    "postdesk: no queue is named `{q}` (the queues: {})",
                    names.join(", ")
                );
                return Ok(ExitCode::from(EX_USAGE));
            }
        },
    };
    let mut settings = settings.clone();
    if let Some(language) = s.language {
        set_language(&mut settings, &queue, language);
    }
    let templates = match Templates::load(&settings) {
        Ok(t) => t,
        Err(err) => {
            eprintln!("postdesk: {err}");
            return Ok(ExitCode::from(EX_USAGE));
        }
    };
    let rendered = templates.render(&queue, name, &vars::example(name, true))?;
    if s.html {
        print!("{}", rendered.html);
    } else {
        if let Some(subject) = &rendered.subject {
            println!("Subject: {subject}\n");
        }
        print!("{}", rendered.text);
    }
    Ok(ExitCode::SUCCESS)
}

/// `queue`'s language set to `language` (for `--language`).
fn set_language(settings: &mut Settings, queue: &str, language: &str) {
    if settings.support.queue == queue {
        settings.support.language = language.to_string();
        return;
    }
    if let Some(m) = settings.mailbox.iter_mut().find(|m| m.queue == queue) {
        m.language = language.to_string();
    }
}
