//! `postdesk migrate-db --to postgres://USER:PASSWORD@HOST:PORT/DB`: the
//! SQLite desk the configuration names (`database.path`) copied into an
//! empty PostgreSQL database by `store::copy_to_postgres`, then, per table,
//! the rows on each side and the checksum over every raw mail from each
//! side. Exit 0 when all agree (the copy is committed), 1 otherwise
//! (nothing is committed). It prints; it does not copy or compare itself.

use std::fmt::Write as _;
use std::process::ExitCode;

use crate::settings::Settings;
use crate::store::{CopyReport, copy_to_postgres};

/// Runs `migrate-db --to URL`.
pub fn run(settings: &Settings, to: &str) -> anyhow::Result<ExitCode> {
    let source = &settings.database.path;
    let report = copy_to_postgres(source, to, &settings.database.ca_file)?;
    print!(
        "{}",
        summary(&report, &source.display().to_string(), &target_name(to))
    );
    Ok(if report.committed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The target as an operator names it, never with its password.
fn target_name(url: &str) -> String {
    match url.parse::<postgres::Config>() {
        Ok(config) => {
            let hosts: Vec<String> = config
                .get_hosts()
                .iter()
                .zip(config.get_ports().iter().chain(std::iter::repeat(&5432)))
                .map(|(host, port)| match host {
                    postgres::config::Host::Tcp(name) => format!("{name}:{port}"),
                    postgres::config::Host::Unix(path) => path.display().to_string(),
                })
                .collect();
            format!(
                "PostgreSQL database {} on {}",
                config.get_dbname().unwrap_or("(default)"),
                hosts.join(", ")
            )
        }
        Err(_) => "the PostgreSQL database".to_string(),
    }
}

/// The printed report: a table of counts, the checksums, what was settled.
fn summary(report: &CopyReport, source: &str, target: &str) -> String {
    let mut out = String::new();
    let verb = if report.committed {
        "Copied"
    } else {
        "Did NOT copy"
    };
    let _ = writeln!(
        out,
        "{verb} {source} into {target} ({:.1} s).",
        report.seconds
    );
    let _ = writeln!(out, "{:<18} {:>12} {:>12}", "table", "SQLite", "PostgreSQL");
    for t in &report.tables {
        let mark = if t.source == t.target {
            ""
        } else {
            "  DIFFERS"
        };
        let _ = writeln!(
            out,
            "{:<18} {:>12} {:>12}{mark}",
            t.table, t.source, t.target
        );
    }
    if !report.search_complete {
        let _ = writeln!(
            out,
            "message_search does not hold exactly the messages it indexes  DIFFERS"
        );
    }
    let same = report.source_checksum == report.target_checksum;
    let _ = writeln!(
        out,
        "raw mail SHA-256   SQLite     {}",
        report.source_checksum
    );
    let _ = writeln!(
        out,
        "                   PostgreSQL {}{}",
        report.target_checksum,
        if same { "" } else { "  DIFFERS" }
    );
    if report.settled_sent + report.settled_requeued > 0 {
        let _ = writeln!(
            out,
            "Mail left mid-send: {} recorded as sent (the sent journal names them), {} queued again.",
            report.settled_sent, report.settled_requeued
        );
    }
    if report.repaired_texts > 0 {
        let _ = writeln!(
            out,
            "{} text values held a NUL character or invalid UTF-8, which PostgreSQL cannot \
             store; each such character is U+FFFD there.",
            report.repaired_texts
        );
    }
    let _ = writeln!(
        out,
        "{}",
        if report.committed {
            "Every count and the checksum match; the copy is committed. Set [database] url to \
             this database and start postdesk; the SQLite file is unchanged."
        } else {
            "Something differs: the copy was rolled back and the PostgreSQL database is as \
             it was."
        }
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::TableCount;

    #[test]
    fn the_target_is_named_without_its_password() {
        let name = target_name("postgres://desk:s3cret@127.0.0.1:5433/support");
        assert_eq!(name, "PostgreSQL database support on 127.0.0.1:5433");
    }

    #[test]
    fn a_difference_is_marked_and_said() {
        let report = CopyReport {
            tables: vec![TableCount {
                table: "messages".into(),
                source: 5,
                target: 4,
            }],
            search_complete: true,
            source_checksum: "aa".into(),
            target_checksum: "aa".into(),
            settled_sent: 1,
            settled_requeued: 0,
            repaired_texts: 0,
            committed: false,
            seconds: 1.0,
        };
        let text = summary(&report, "desk.db", "PostgreSQL database x on h:1");
        assert!(text.contains("Did NOT copy"), "{text}");
        assert!(
            text.contains("messages") && text.contains("DIFFERS"),
            "{text}"
        );
        assert!(text.contains("rolled back"), "{text}");
        assert!(text.contains("1 recorded as sent"), "{text}");
    }
}
