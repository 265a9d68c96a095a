//! `postdesk oauth authorize [--mailbox Q]`: signs a mailbox in once with
//! the device-code flow of its `[oauth]` settings (the first queue's, or
//! queue Q's) and stores the refresh token in `oauth.refresh_token_file`.
//! Prints the verification URL and the code for the person signing in,
//! and what was stored where; never a token. Exit 0 stored, 2 a setting
//! or queue that cannot be used, 1 the sign-in did not finish.

use std::process::ExitCode;

use clap::Subcommand;

use crate::oauth::{DeviceFlowError, authorize};
use crate::settings::Settings;

const EX_USAGE_CONFIG: u8 = 2;

/// `postdesk oauth …`
#[derive(Debug, Subcommand)]
pub enum OauthCommand {
    /// Sign in with the device-code flow (a URL and a code to enter in any
    /// browser) and store the refresh token in oauth.refresh_token_file.
    Authorize {
        /// The queue whose mailbox signs in (default: the first, [support]).
        #[arg(long)]
        mailbox: Option<String>,
    },
}

pub fn run(settings: &Settings, command: OauthCommand) -> anyhow::Result<ExitCode> {
    match command {
        OauthCommand::Authorize { mailbox } => authorize_queue(settings, mailbox.as_deref()),
    }
}

fn authorize_queue(settings: &Settings, mailbox: Option<&str>) -> anyhow::Result<ExitCode> {
    let queue = match mailbox {
        None => settings.queues().into_iter().next(),
        Some(name) => settings.queue(name),
    };
    let Some(queue) = queue else {
        let names: Vec<String> = settings.queues().into_iter().map(|q| q.name).collect();
        eprintln!(
            "postdesk: there is no queue {:?}; the queues are: {}",
            mailbox.unwrap_or_default(),
            names.join(", ")
        );
        return Ok(ExitCode::from(EX_USAGE_CONFIG));
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut out = std::io::stdout();
    match runtime.block_on(authorize(&queue.oauth, &mut out, None)) {
        Ok(file) => {
            println!(
                "Signed in. The refresh token for queue {} is stored in {} (mode 0600); a \
                 running postdesk picks it up at its next token refresh.",
                queue.name,
                file.path().display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(DeviceFlowError::Config { key, reason }) => {
            eprintln!(
                "postdesk: invalid configuration key `{}`: {reason}",
                queue.key(&key)
            );
            Ok(ExitCode::from(EX_USAGE_CONFIG))
        }
        Err(err) => {
            eprintln!("postdesk: {err}");
            Ok(ExitCode::FAILURE)
        }
    }
}
