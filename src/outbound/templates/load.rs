//! Loading the templates once at start: for each queue, each mail and
//! each format, the first of `DIR/QUEUE/NAME.EXT`, `DIR/NAME.LANG.EXT`,
//! `DIR/NAME.EXT` and the built-in NAME in the queue's language. Every
//! template is checked here (it parses, names only its variables, renders
//! its example with and without the optional values), and a stray file in
//! the folder is refused, so that `check-config` names the file and line
//! of any mistake. The only I/O of the module: reading that folder.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use minijinja::syntax::SyntaxConfig;
use minijinja::{AutoEscape, Environment, UndefinedBehavior, Value};

use super::{Format, QueueWording, TemplateName, Templates, builtin, vars};
use crate::settings::{Queue, Settings};

/// Why the templates cannot be used; each names the file (and line).
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("templates: {file}:{line}: {detail}")]
    Template {
        file: String,
        line: usize,
        detail: String,
    },
    #[error("templates: {file}: {detail}")]
    File { file: String, detail: String },
    #[error("{key}: {detail}")]
    Setting { key: String, detail: String },
}

/// `FILE:LINE: detail` of a minijinja error.
pub(super) fn describe(err: &minijinja::Error) -> String {
    let detail = err
        .detail()
        .map_or_else(|| err.kind().to_string(), str::to_string);
    format!(
        "{}:{}: {detail}",
        err.name().unwrap_or("?"),
        err.line().unwrap_or(0)
    )
}

impl Templates {
    /// The templates of every queue of `settings`: `[templates] dir`'s
    /// files over the built-in wording, each checked.
    pub fn load(settings: &Settings) -> Result<Templates, TemplateError> {
        let dir = settings.templates.dir.trim();
        let dir = (!dir.is_empty()).then(|| PathBuf::from(dir));
        Templates::build(&settings.queues(), dir.as_deref())
    }

    /// The built-in wording of every queue of `settings` in its language
    /// (English where it has none), no files read.
    pub fn builtin(settings: &Settings) -> Templates {
        let mut queues = settings.queues();
        for q in &mut queues {
            if !builtin::LANGUAGES.contains(&q.language.as_str()) {
                q.language = "en".to_string();
            }
        }
        Templates::build(&queues, None).unwrap_or_else(|_| Templates::english())
    }

    /// The built-in English wording for a queue named "".
    pub(super) fn english() -> Templates {
        let mut env = environment();
        let mut chosen = BTreeMap::new();
        for name in TemplateName::ALL {
            for format in Format::BOTH {
                let file = format!("built-in en/{name}.{}", format.extension());
                let source = builtin::source("en", name, format).unwrap_or_default();
                // The built-in templates are literals, checked by the tests.
                env.add_template_owned(file.clone(), source)
                    .expect("the built-in English templates parse");
                chosen.insert((name, format), file);
            }
        }
        let queue = QueueWording {
            name: String::new(),
            display_name: "Support".into(),
            address: String::new(),
            language: "en".into(),
            chosen,
        };
        Templates {
            env,
            queues: vec![queue],
        }
    }

    fn build(queues: &[Queue], dir: Option<&Path>) -> Result<Templates, TemplateError> {
        let mut env = environment();
        let mut added = BTreeSet::new();
        let mut wordings = Vec::new();
        if let Some(dir) = dir {
            check_folder(dir, queues)?;
        }
        for q in queues {
            check_language(q)?;
            let mut chosen = BTreeMap::new();
            for name in TemplateName::ALL {
                for format in Format::BOTH {
                    let (file, source) = pick(q, dir, name, format)?;
                    if added.insert(file.clone()) {
                        env.add_template_owned(file.clone(), source)
                            .map_err(|e| template_error(&e, &file))?;
                        check_variables(&env, &file, name)?;
                    }
                    chosen.insert((name, format), file);
                }
            }
            wordings.push(QueueWording {
                name: q.name.clone(),
                display_name: q.display_name.clone(),
                address: q.address.clone(),
                language: q.language.clone(),
                chosen,
            });
        }
        let templates = Templates {
            env,
            queues: wordings,
        };
        templates.check_examples()?;
        Ok(templates)
    }

    /// Renders each queue's templates with the examples (every optional
    /// value set, then none): what the strict checks find only when run.
    fn check_examples(&self) -> Result<(), TemplateError> {
        for q in &self.queues {
            for name in TemplateName::ALL {
                for full in [true, false] {
                    let vars = vars::example(name, full);
                    self.render(&q.name, name, &vars).map_err(|e| {
                        let file = e.name().unwrap_or_default().to_string();
                        template_error(&e, &file)
                    })?;
                }
            }
        }
        Ok(())
    }
}

/// The engine as every template is read: strict about unknown values,
/// HTML-escaping in `.html` only, block tags on lines of their own leave
/// no blank lines, a final newline kept.
fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_auto_escape_callback(|name| {
        if name.ends_with(".html") {
            AutoEscape::Html
        } else {
            AutoEscape::None
        }
    });
    // minijinja's own HTML escaping also writes `/` as `&#x2f;`, which
    // makes every link in an href unreadable in the source; ours keeps it.
    env.set_formatter(|out, state, value| {
        let plain = matches!(state.auto_escape(), AutoEscape::Html) && !value.is_safe();
        match value.as_str() {
            Some(text) if plain => {
                out.write_str(&crate::outbound::html::escape(text))
                    .map_err(|e| {
                        minijinja::Error::new(minijinja::ErrorKind::WriteFailure, e.to_string())
                    })
            }
            _ => minijinja::escape_formatter(out, state, value),
        }
    });
    env.add_filter("paragraphs", |text: &str| {
        Value::from_safe_string(crate::outbound::html::fragment_from_text(text))
    });
    if let Ok(syntax) = SyntaxConfig::builder()
        .trim_blocks(true)
        .lstrip_blocks(true)
        .keep_trailing_newline(true)
        .build()
    {
        env.set_syntax(syntax);
    }
    env
}

/// The file (or built-in) that words `name` in `format` for `q`, and its text.
fn pick(
    q: &Queue,
    dir: Option<&Path>,
    name: TemplateName,
    format: Format,
) -> Result<(String, String), TemplateError> {
    let ext = format.extension();
    if let Some(dir) = dir {
        let candidates = [
            dir.join(&q.name).join(format!("{name}.{ext}")),
            dir.join(format!("{name}.{}.{ext}", q.language)),
            dir.join(format!("{name}.{ext}")),
        ];
        for path in candidates {
            if path.is_file() {
                let file = path.display().to_string();
                let source = std::fs::read_to_string(&path).map_err(|e| TemplateError::File {
                    file: file.clone(),
                    detail: format!("cannot be read: {e}"),
                })?;
                return Ok((file, source));
            }
        }
    }
    match builtin::source(&q.language, name, format) {
        Some(source) => Ok((
            format!("built-in {}/{name}.{ext}", q.language),
            source.to_string(),
        )),
        None => Err(TemplateError::Setting {
            key: language_key(q),
            detail: format!(
                "`{}` has no built-in wording ({}): put {name}.{ext} for it into [templates] dir",
                q.language,
                builtin::LANGUAGES.join(", ")
            ),
        }),
    }
}

/// `support.language` or `mailbox[N].language`.
fn language_key(q: &Queue) -> String {
    match q.index {
        None => "support.language".to_string(),
        Some(_) => q.key("language"),
    }
}

/// A language is a short code: `de`, `pt-BR`.
fn check_language(q: &Queue) -> Result<(), TemplateError> {
    let l = &q.language;
    let ok = (2..=8).contains(&l.len()) && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    if ok {
        return Ok(());
    }
    Err(TemplateError::Setting {
        key: language_key(q),
        detail: format!("`{l}` is not a language code like en, de, fr or es"),
    })
}

/// Refuses a variable `name` does not offer, at the line that names it.
fn check_variables(env: &Environment, file: &str, name: TemplateName) -> Result<(), TemplateError> {
    let template = env
        .get_template(file)
        .map_err(|e| template_error(&e, file))?;
    let mut unknown: Vec<String> = template
        .undeclared_variables(false)
        .into_iter()
        .filter(|v| !vars::is_known(name, v))
        .collect();
    unknown.sort();
    let Some(first) = unknown.first() else {
        return Ok(());
    };
    let line = line_of(template.source(), first);
    let mut offered: Vec<&str> = vars::COMMON.to_vec();
    offered.extend(vars::variables(name));
    Err(TemplateError::Template {
        file: file.to_string(),
        line,
        detail: format!(
            "unknown variable `{first}`; {name} offers {}",
            offered.join(", ")
        ),
    })
}

/// The first line (1-based) where `word` stands as a whole word.
fn line_of(source: &str, word: &str) -> usize {
    let is_ident = |c: char| c.is_alphanumeric() || c == '_';
    source
        .lines()
        .position(|line| {
            line.match_indices(word).any(|(i, _)| {
                let before = line[..i].chars().next_back();
                let after = line[i + word.len()..].chars().next();
                !before.is_some_and(is_ident) && !after.is_some_and(is_ident)
            })
        })
        .map_or(0, |i| i + 1)
}

fn template_error(err: &minijinja::Error, file: &str) -> TemplateError {
    TemplateError::Template {
        file: err.name().unwrap_or(file).to_string(),
        line: err.line().unwrap_or(0),
        detail: err
            .detail()
            .map_or_else(|| err.kind().to_string(), str::to_string),
    }
}

/// Every file in the folder must be a template of ours, every folder a
/// queue's: a misspelt name would otherwise be ignored without a word.
fn check_folder(dir: &Path, queues: &[Queue]) -> Result<(), TemplateError> {
    let unreadable = |path: &Path, e: std::io::Error| TemplateError::File {
        file: path.display().to_string(),
        detail: format!("cannot be read: {e}"),
    };
    let entries = std::fs::read_dir(dir).map_err(|e| TemplateError::Setting {
        key: "templates.dir".into(),
        detail: format!("the folder `{}` cannot be read: {e}", dir.display()),
    })?;
    for entry in entries {
        let path = entry.map_err(|e| unreadable(dir, e))?.path();
        if path.is_dir() {
            let queue = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            if !queues.iter().any(|q| q.name == queue) {
                return Err(stray(&path, "is a folder but no queue is named so"));
            }
            for inner in std::fs::read_dir(&path).map_err(|e| unreadable(&path, e))? {
                let inner = inner.map_err(|e| unreadable(&path, e))?.path();
                check_file_name(&inner, false)?;
            }
        } else {
            check_file_name(&path, true)?;
        }
    }
    Ok(())
}

/// `NAME.txt`, `NAME.html`, and at the top also `NAME.LANG.txt|html`.
fn check_file_name(path: &Path, top: bool) -> Result<(), TemplateError> {
    let file = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    let parts: Vec<&str> = file.split('.').collect();
    let ok = match parts.as_slice() {
        [name, "txt" | "html"] => TemplateName::parse(name).is_some(),
        [name, _lang, "txt" | "html"] => top && TemplateName::parse(name).is_some(),
        _ => false,
    };
    if ok || file.starts_with('.') {
        return Ok(());
    }
    Err(stray(
        path,
        &format!(
            "is not a template: write NAME.txt or NAME.html{} (NAME one of {})",
            if top { " or NAME.LANG.txt" } else { "" },
            TemplateName::list()
        ),
    ))
}

fn stray(path: &Path, why: &str) -> TemplateError {
    TemplateError::File {
        file: path.display().to_string(),
        detail: why.to_string(),
    }
}
