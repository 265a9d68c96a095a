//! A private mail stack whose Dovecot also takes XOAUTH2 (IMAP, and SMTP
//! submission through Dovecot SASL), each token checked at the fake
//! provider's introspection URL (`MAILSTACK_OAUTH_URL` at `start`). The
//! shared stack is never touched. Stopped, and its directory removed, on
//! drop, also when the test panics.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::support::Stack;

fn mailstack(env: &[(&str, &str)], args: &[&str]) -> Result<String, String> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/mailstack");
    let out = Command::new(script)
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run scripts/mailstack: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "scripts/mailstack {args:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

pub struct OAuthStack {
    pub dir: PathBuf,
    pub stack: Stack,
}

impl OAuthStack {
    pub async fn start(introspection_url: &str) -> OAuthStack {
        let url = introspection_url.to_string();
        tokio::task::spawn_blocking(move || Self::start_blocking(&url))
            .await
            .expect("starting the stack did not panic")
    }

    fn start_blocking(url: &str) -> OAuthStack {
        let mut last_error = String::new();
        for _ in 0..3 {
            let dir = tempfile::Builder::new()
                .prefix("pdo.")
                .tempdir_in("/tmp")
                .expect("a temp dir under /tmp")
                .keep();
            let path = dir.to_str().expect("a UTF-8 path").to_string();
            let env = [("MAILSTACK_OAUTH_URL", url)];
            let started = mailstack(&[], &["free-base"])
                .and_then(|base| mailstack(&env, &["start", &path, base.trim()]));
            match started {
                Ok(_) => {
                    let stack = stack_of(&dir);
                    return OAuthStack { dir, stack };
                }
                // Another run may have taken the ports in between: new base.
                Err(err) => {
                    let _ = mailstack(&[], &["stop", &path]);
                    let _ = std::fs::remove_dir_all(&dir);
                    last_error = err;
                }
            }
        }
        panic!("no private mail stack with OAuth2 after 3 attempts: {last_error}");
    }

    /// Ends `user`'s IMAP sessions (`doveadm kick`): the daemon must log
    /// in again, with a token that is current by then.
    pub async fn kick(&self, user: &str) {
        let config = self.dir.join("dovecot/dovecot.conf");
        let user = user.to_string();
        let out = tokio::task::spawn_blocking(move || {
            Command::new("doveadm")
                .arg("-c")
                .arg(config)
                .args(["kick", &user])
                .stdin(Stdio::null())
                .output()
        })
        .await
        .expect("doveadm did not panic")
        .expect("doveadm runs");
        // Exit 68 (EX_NOUSER): nobody was logged in; fine between logins.
        assert!(
            out.status.success() || out.status.code() == Some(68),
            "doveadm kick: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for OAuthStack {
    fn drop(&mut self) {
        let dir = self.dir.display().to_string();
        match mailstack(&[], &["stop", &dir]) {
            Ok(_) => {
                let _ = std::fs::remove_dir_all(&self.dir);
            }
            Err(err) => eprintln!("{err} (logs kept in {dir}/log)"),
        }
    }
}

/// The `Stack` of the instance in `dir`, from the env file `start` wrote.
fn stack_of(dir: &Path) -> Stack {
    let text = std::fs::read_to_string(dir.join("env")).expect("the stack's env file");
    let vars: BTreeMap<&str, &str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("export ")?.split_once('='))
        .collect();
    Stack::from_vars(|name| vars.get(name).copied().expect(name).to_string())
}
