//! The `postdesk` binary: clap → settings → telemetry → the command. The
//! daemon (`run`) lives in `app`; the one-shot commands are thin calls on
//! the store. Exit codes: 0 done, 2 invalid configuration or usage, 65
//! unusable input, 75 temporary failure (sysexits, for MTA pipes; `ingest`
//! also gives 75 for a configuration it cannot use, so the MTA retries).

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use chrono::Utc;
use clap::{Parser, Subcommand, ValueEnum};
use tokio_util::sync::CancellationToken;

use postdesk::app::{self, App};
use postdesk::domain::{Status, TicketNumber};
use postdesk::settings::Settings;
use postdesk::store::{IngestReport, Kept, RetryOutcome, Store};
use postdesk::terminal;

const EX_USAGE_CONFIG: u8 = 2;
const EX_TEMPFAIL: u8 = 75;

#[derive(Parser)]
#[command(
    name = "postdesk",
    version,
    about = "An email-driven support-ticketing daemon"
)]
struct Cli {
    /// The configuration file (TOML); every key defaults to config/default.toml.
    #[arg(long, global = true, env = "POSTDESK_CONFIG")]
    config: Option<PathBuf>,
    /// Log format.
    #[arg(long, global = true, value_enum, default_value = "text")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon until SIGTERM or SIGINT.
    Run,
    /// Create or upgrade the database, then exit.
    Migrate,
    /// Copy the SQLite desk (database.path) into an empty PostgreSQL
    /// database, compare counts and a raw-mail checksum; exit 1 if any differ.
    MigrateDb {
        /// The target: postgres://USER:PASSWORD@HOST:PORT/DB (or from the
        /// environment, which keeps the password out of the process list).
        #[arg(long, env = "POSTDESK_MIGRATE_TO", hide_env_values = true)]
        to: String,
    },
    /// Print the effective configuration (secrets as ***); exit 2 if invalid.
    CheckConfig,
    /// Ingest one raw mail from FILE, or from standard input with `-`.
    Ingest { file: String },
    /// Bring the mail already in a queue's IMAP folder in as history:
    /// threaded, dated by itself, tickets closed, nothing sent, nothing
    /// changed on the server.
    Import {
        /// Only this queue (default: every queue that reads IMAP).
        #[arg(long)]
        queue: Option<String>,
        /// Only mail that arrived on or after this day (YYYY-MM-DD).
        #[arg(long)]
        since: Option<String>,
    },
    /// List or show tickets.
    Tickets {
        #[command(subcommand)]
        command: TicketsCommand,
    },
    /// Say which ticket a message went to, and why.
    Explain { message_id: String },
    /// Mails that could not be processed.
    Quarantine {
        #[command(subcommand)]
        command: QuarantineCommand,
    },
    /// Machine mails (auto-replies, bounces, bulk mail) that answer no
    /// ticket, kept apart from the quarantine; retry and drop as there.
    Ignored {
        #[command(subcommand)]
        command: QuarantineCommand,
    },
    /// Private status links.
    Tokens {
        #[command(subcommand)]
        command: TokensCommand,
    },
    /// Copy the database to FILE (and its sent journal to FILE.sent) while
    /// the daemon runs; never overwrites FILE.
    Backup { file: PathBuf },
    /// Replace the database with the backup FILE (and FILE.sent); refuses
    /// while a daemon uses the database, and an existing one without --force.
    Restore {
        file: PathBuf,
        #[arg(long)]
        force: bool,
    },
    /// Erase a customer's data (GDPR Art. 17) and print what was removed.
    Erase {
        address: String,
        /// Only count what would be removed.
        #[arg(long)]
        dry_run: bool,
    },
    /// OAuth2 for XOAUTH2 logins (Microsoft 365, Gmail): `oauth authorize`.
    Oauth {
        #[command(subcommand)]
        command: postdesk::cli::oauth::OauthCommand,
    },
    /// Outgoing mail: list it, or queue failed mail again.
    Outbox {
        #[command(subcommand)]
        command: OutboxCommand,
    },
    /// The wording of our mails: `templates show NAME` prints the example.
    Templates {
        #[command(subcommand)]
        command: TemplatesCommand,
    },
}

#[derive(Subcommand)]
enum TemplatesCommand {
    /// Print mail NAME (confirmation, status, notification, relay-footer,
    /// oversize, refused, unproven) as a queue's templates word it.
    Show {
        name: String,
        /// The queue (default: the first one).
        #[arg(long)]
        queue: Option<String>,
        /// Another language than the queue's (en, de, fr, es).
        #[arg(long)]
        language: Option<String>,
        /// The HTML part instead of subject and text.
        #[arg(long)]
        html: bool,
    },
}

#[derive(Subcommand)]
enum OutboxCommand {
    /// Outgoing mail, newest first: id, status, ticket, recipients, subject,
    /// attempts, created and sent time, last error.
    List {
        /// Only mail that could not be delivered.
        #[arg(long)]
        failed: bool,
        #[arg(long)]
        json: bool,
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Queue failed mail ID again (the same bytes, so the same Message-ID;
    /// attempts start again), or with --all-failed every failed mail.
    Retry {
        #[arg(required_unless_present = "all_failed", conflicts_with = "all_failed")]
        id: Option<i64>,
        #[arg(long)]
        all_failed: bool,
    },
}

#[derive(Subcommand)]
enum TokensCommand {
    /// Revoke every link to ticket N and to its requester's list; print the new ones.
    Rotate { number: String },
}

#[derive(Subcommand)]
enum TicketsCommand {
    List {
        #[arg(long)]
        status: Option<String>,
        /// Only the tickets of this queue (`[support] queue` or a
        /// `[[mailbox]]`'s `queue`).
        #[arg(long)]
        queue: Option<String>,
        #[arg(long)]
        json: bool,
    },
    Show {
        number: String,
        #[arg(long)]
        json: bool,
    },
    /// Tickets whose subject or messages (notes too) match, best first:
    /// words (all required), "quoted phrases", word* for a prefix.
    Search {
        #[arg(required = true)]
        query: Vec<String>,
        #[arg(long)]
        json: bool,
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// Set a ticket's status; the customer gets the status email.
    SetStatus {
        number: String,
        status: String,
        /// An internal note stored with the change.
        #[arg(long)]
        note: Option<String>,
    },
}

#[derive(Subcommand)]
enum QuarantineCommand {
    List {
        #[arg(long)]
        json: bool,
    },
    /// Process kept mail ID again (after an upgrade, a raised limit, or once
    /// its ticket exists); on success it leaves the quarantine or the
    /// ignored list. Exit 1 if it is still kept. Takes either kind's ID.
    Retry { id: i64 },
    /// Delete kept mail ID (quarantined or ignored) and its stored bytes.
    Drop { id: i64 },
}

fn main() -> ExitCode {
    postdesk::allocator::tune();
    let cli = Cli::parse();
    let settings = match Settings::load(cli.config.as_deref()) {
        Ok(settings) => settings,
        Err(err) => {
            eprintln!("postdesk: {err}");
            // An MTA bounces the customer's mail on any other code; with 75
            // it keeps the mail and retries once the config is fixed.
            let code = match cli.command {
                Command::Ingest { .. } => EX_TEMPFAIL,
                _ => EX_USAGE_CONFIG,
            };
            return ExitCode::from(code);
        }
    };
    init_tracing(cli.log_format);
    // Both ring and (in some builds) aws-lc-rs may be present: pick ring.
    let _ = rustls::crypto::ring::default_provider().install_default();
    match dispatch(cli.command, settings) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("postdesk: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing(format: LogFormat) {
    let filter = postdesk::logging::filter(std::env::var("RUST_LOG").ok().as_deref());
    // Colour codes only for a person at a terminal, not for journald or files.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// The database as an operator names it: the SQLite file, or the
/// PostgreSQL server and database (never the password).
fn database_name(db: &postdesk::settings::DatabaseSettings) -> String {
    if db.url.is_empty() {
        return db.path.display().to_string();
    }
    match db.url.expose().parse::<postgres::Config>() {
        Ok(config) => format!(
            "PostgreSQL database {} on {:?}",
            config.get_dbname().unwrap_or("(default)"),
            config.get_hosts()
        ),
        Err(_) => "the PostgreSQL database".to_string(),
    }
}

fn dispatch(command: Command, settings: Settings) -> anyhow::Result<ExitCode> {
    match command {
        Command::Run => run_daemon(settings),
        Command::Migrate => {
            let applied = Store::migrate_database(&settings.database)?;
            println!(
                "{applied} migrations applied to {}",
                database_name(&settings.database)
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::MigrateDb { to } => postdesk::cli::migrate_db::run(&settings, &to),
        Command::CheckConfig => {
            if let Err(err) = postdesk::outbound::templates::Templates::load(&settings) {
                eprintln!("postdesk: {err}");
                return Ok(ExitCode::from(EX_USAGE_CONFIG));
            }
            print!("{}", settings.redacted_toml());
            for warning in settings.warnings() {
                eprintln!("postdesk: warning: {}", terminal::line(&warning));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Ingest { file } => postdesk::cli::ingest::run(&settings, &file),
        Command::Import { queue, since } => {
            postdesk::cli::import::run(&settings, queue.as_deref(), since.as_deref())
        }
        Command::Tickets {
            command: TicketsCommand::Search { query, json, limit },
        } => postdesk::cli::search::run(&settings, &query, json, limit),
        Command::Tickets { command } => tickets(&settings, command),
        Command::Explain { message_id } => explain(&settings, &message_id),
        Command::Tokens {
            command: TokensCommand::Rotate { number },
        } => rotate_links(&settings, &number),
        Command::Quarantine { command } => quarantine(&settings, command, Kept::Fault),
        Command::Ignored { command } => quarantine(&settings, command, Kept::Ignored),
        Command::Backup { .. } | Command::Restore { .. } if !settings.database.url.is_empty() => {
            anyhow::bail!(
                "backup and restore copy the SQLite file; with PostgreSQL (database.url) use pg_dump and pg_restore"
            )
        }
        Command::Backup { file } => {
            let report = postdesk::store::backup(&settings.database.path, &file)?;
            let (db, file) = (settings.database.path.display(), file.display());
            println!("{db} copied to {file}: {report}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Restore { file, force } => {
            let report = postdesk::store::restore(&file, &settings.database.path, force)?;
            let (db, file) = (settings.database.path.display(), file.display());
            println!("{db} restored from {file}: {report}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Erase { address, dry_run } => erase(&settings, &address, dry_run),
        Command::Oauth { command } => postdesk::cli::oauth::run(&settings, command),
        Command::Templates {
            command:
                TemplatesCommand::Show {
                    name,
                    queue,
                    language,
                    html,
                },
        } => postdesk::cli::templates::show(
            &settings,
            &postdesk::cli::templates::Show {
                name: &name,
                queue: queue.as_deref(),
                language: language.as_deref(),
                html,
            },
        ),
        Command::Outbox { command } => match command {
            OutboxCommand::List {
                failed,
                json,
                limit,
            } => postdesk::cli::outbox::list(&settings, failed, json, limit),
            OutboxCommand::Retry { id, .. } => postdesk::cli::outbox::retry(&settings, id),
        },
    }
}

/// `erase ADDRESS [--dry-run]`.
fn erase(settings: &Settings, address: &str, dry_run: bool) -> anyhow::Result<ExitCode> {
    let trimmed = address.trim();
    if !trimmed.contains('@') || trimmed.chars().any(char::is_whitespace) {
        eprintln!("postdesk: {address:?} is not an e-mail address");
        return Ok(ExitCode::from(EX_USAGE_CONFIG));
    }
    let (store, _) = app::open_store(settings)?;
    let r = store.erase_address(trimmed, dry_run, Utc::now())?;
    println!(
        "{} {}: {} tickets, {} messages, {} raw mails, {} attachments, {} blobs, {} links, \
         {} outbox mails, {} participant entries, {} quarantined mails, {} sent-journal entries",
        if dry_run { "Would erase" } else { "Erased" },
        terminal::line(trimmed),
        r.tickets,
        r.messages,
        r.raw_mails,
        r.attachments,
        r.blobs,
        r.tokens,
        r.outbox,
        r.participants,
        r.quarantined,
        r.journal_entries
    );
    if r.wal_truncated == Some(false) {
        eprintln!(
            "postdesk: warning: a reader kept the WAL file busy; old pages stay in it until the \
             next checkpoint (stop the daemon and run erase again to be sure)"
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `quarantine|ignored list|retry|drop`: `list` shows `kind`, retry and
/// drop take an ID of either kind (one table).
fn quarantine(
    settings: &Settings,
    command: QuarantineCommand,
    kind: Kept,
) -> anyhow::Result<ExitCode> {
    let (store, pipeline) = app::open_store(settings)?;
    // Retry and drop take either kind's ID; the words follow the command.
    let noun = match kind {
        Kept::Fault => "quarantined mail",
        Kept::Ignored => "ignored mail",
    };
    match command {
        QuarantineCommand::List { json } => {
            let items = store.kept_list(kind)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&items)?);
            } else {
                for q in items {
                    println!(
                        "{}\t{}\t{} bytes\t{}",
                        q.id,
                        terminal::line(&q.dedup_key),
                        q.size,
                        terminal::line(&q.reason)
                    );
                }
            }
        }
        QuarantineCommand::Retry { id } => {
            match store.quarantine_retry(&pipeline, id, Utc::now())? {
                Some(RetryOutcome::Ingested(report)) => {
                    app::log_report(&report);
                    println!("{noun} {id}: {}", describe(&report));
                }
                Some(RetryOutcome::StillQuarantined { reason }) => {
                    eprintln!(
                        "postdesk: {noun} {id} still cannot be processed: {}",
                        terminal::line(&reason)
                    );
                    return Ok(ExitCode::FAILURE);
                }
                Some(RetryOutcome::StillIgnored { reason }) => {
                    eprintln!(
                        "postdesk: mail {id} is still ignored: {}",
                        terminal::line(&reason)
                    );
                    return Ok(ExitCode::FAILURE);
                }
                None => {
                    eprintln!("postdesk: there is no {noun} {id}");
                    return Ok(ExitCode::FAILURE);
                }
            }
        }
        QuarantineCommand::Drop { id } => {
            if !store.quarantine_drop(id)? {
                eprintln!("postdesk: there is no {noun} {id}");
                return Ok(ExitCode::FAILURE);
            }
            println!("{noun} {id} deleted");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn run_daemon(settings: Settings) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    for warning in settings.warnings() {
        tracing::warn!("Configuration: {warning}");
    }
    runtime.block_on(async {
        let app = App::build(settings).await?;
        let shutdown = CancellationToken::new();
        tokio::spawn(cancel_on_signal(shutdown.clone()));
        app.run(shutdown).await?;
        Ok(ExitCode::SUCCESS)
    })
}

async fn cancel_on_signal(shutdown: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("Cannot listen for SIGTERM/SIGINT; stop the daemon with SIGKILL.");
        return;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received."),
        _ = int.recv() => tracing::info!("SIGINT received."),
    }
    shutdown.cancel();
}

fn describe(report: &IngestReport) -> String {
    postdesk::intake::Verdict::from(report.clone()).to_string()
}

fn tickets(settings: &Settings, command: TicketsCommand) -> anyhow::Result<ExitCode> {
    let (store, pipeline) = app::open_store(settings)?;
    match command {
        // Dispatched before the store is opened here (`cli::search`).
        TicketsCommand::Search { .. } => {}
        TicketsCommand::List {
            status,
            queue,
            json,
        } => {
            let status = match status.map(|s| Status::parse(&s)).transpose() {
                Ok(status) => status,
                Err(err) => {
                    eprintln!("postdesk: {err}");
                    return Ok(ExitCode::from(EX_USAGE_CONFIG));
                }
            };
            let queue = match queue.map(|q| settings.queue(&q).ok_or(q)).transpose() {
                Ok(queue) => queue.map(|q| q.name),
                Err(unknown) => {
                    let known: Vec<String> =
                        settings.queues().into_iter().map(|q| q.name).collect();
                    eprintln!(
                        "postdesk: there is no queue `{}`; the queues are: {}",
                        terminal::line(&unknown),
                        known.join(", ")
                    );
                    return Ok(ExitCode::from(EX_USAGE_CONFIG));
                }
            };
            let list = store.list_tickets_in(status, queue.as_deref())?;
            if json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                for t in list {
                    println!(
                        "#{}\t{}\t{}\t{}\t{}",
                        t.number,
                        t.status,
                        t.last_activity_at.format("%Y-%m-%d %H:%M"),
                        terminal::line(&t.requester),
                        terminal::line(&t.subject)
                    );
                }
            }
        }
        TicketsCommand::SetStatus {
            number,
            status,
            note,
        } => {
            let parsed =
                TicketNumber::parse(&number).and_then(|n| Ok((n, Status::parse(&status)?)));
            let (number, status) = match parsed {
                Ok(pair) => pair,
                Err(err) => {
                    eprintln!("postdesk: {err}");
                    return Ok(ExitCode::from(EX_USAGE_CONFIG));
                }
            };
            match store.set_status(&pipeline, number, status, note.as_deref(), Utc::now())? {
                Some(old) if old == status => println!("ticket #{number} is already {status}"),
                Some(old) => {
                    println!("ticket #{number}: {old} → {status}; the customer will be told")
                }
                None => {
                    eprintln!("postdesk: there is no ticket #{number}");
                    return Ok(ExitCode::FAILURE);
                }
            }
        }
        TicketsCommand::Show { number, json } => {
            let number = match TicketNumber::parse(&number) {
                Ok(n) => n,
                Err(err) => {
                    eprintln!("postdesk: {err}");
                    return Ok(ExitCode::from(EX_USAGE_CONFIG));
                }
            };
            let Some(ticket) = store.ticket_detail(number)? else {
                eprintln!("postdesk: there is no ticket #{number}");
                return Ok(ExitCode::FAILURE);
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&ticket)?);
            } else {
                let s = &ticket.summary;
                println!(
                    "#{} {} [{}] from {}",
                    s.number,
                    terminal::line(&s.subject),
                    s.status,
                    terminal::line(&s.requester)
                );
                for m in &ticket.messages {
                    println!(
                        "\n--- {} {} {} ({})",
                        m.date.format("%Y-%m-%d %H:%M"),
                        m.direction,
                        terminal::line(&m.from),
                        m.kind
                    );
                    println!("{}", terminal::block(&m.text));
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `tokens rotate N`: the old links of ticket N (and of its requester's
/// list) stop working; the new ones are printed once, never stored in clear.
fn rotate_links(settings: &Settings, number: &str) -> anyhow::Result<ExitCode> {
    let number = match TicketNumber::parse(number) {
        Ok(n) => n,
        Err(err) => {
            eprintln!("postdesk: {err}");
            return Ok(ExitCode::from(EX_USAGE_CONFIG));
        }
    };
    let (store, _) = app::open_store(settings)?;
    let Some(links) = store.rotate_ticket_links(number, Utc::now())? else {
        eprintln!("postdesk: there is no ticket #{number}");
        return Ok(ExitCode::FAILURE);
    };
    let base = settings.support.public_url.trim_end_matches('/');
    println!(
        "{} old links of ticket #{number} and of {} no longer work. The new ones:",
        links.revoked, links.requester
    );
    println!("ticket #{number}: {base}/t/{}", links.ticket_token);
    println!(
        "all tickets of {}: {base}/r/{}",
        links.requester, links.requester_token
    );
    Ok(ExitCode::SUCCESS)
}

fn explain(settings: &Settings, message_id: &str) -> anyhow::Result<ExitCode> {
    let (store, _) = app::open_store(settings)?;
    if let Some(e) = store.explain(message_id)? {
        println!(
            "<{}> went to ticket #{} as {} ({}): {}.",
            terminal::line(&e.message_id),
            e.ticket,
            e.kind,
            e.direction,
            terminal::line(&e.reason)
        );
        if !e.classification.is_empty() {
            println!("Classified as: {}.", terminal::line(&e.classification));
        }
        return Ok(ExitCode::SUCCESS);
    }
    if let Some((kind, reason)) = store.kept_reason(message_id)? {
        let place = match kind {
            Kept::Fault => "is in the quarantine",
            Kept::Ignored => "was ignored (postdesk ignored list)",
        };
        println!(
            "<{}> {place}: {}.",
            terminal::line(message_id),
            terminal::line(&reason)
        );
        return Ok(ExitCode::SUCCESS);
    }
    eprintln!("postdesk: no message <{message_id}> is stored");
    Ok(ExitCode::FAILURE)
}
