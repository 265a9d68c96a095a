//! Private mail stacks: `scripts/mailstack start` in a short directory
//! under /tmp on a free port base, for the tests that stop Dovecot or
//! Postfix or need Dovecot configured otherwise (OAuth2); the shared stack
//! is never touched. Stopped, and the directory
//! removed, on drop, also when the test panics.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::support::Stack;

fn mailstack_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/mailstack")
}

/// Runs `scripts/mailstack ARGS` (blocking): its stdout, or why it failed.
fn mailstack(args: &[&str]) -> Result<String, String> {
    mailstack_with(&[], args)
}

/// [`mailstack`] with `env` added (e.g. `MAILSTACK_OAUTH_URL` at `start`).
fn mailstack_with(env: &[(&str, &str)], args: &[&str]) -> Result<String, String> {
    let out = Command::new(mailstack_script())
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

/// A Dovecot + Postfix of this test's own, in a short directory under
/// /tmp, on free ports. Stopped (and its directory removed) on drop.
pub struct PrivateStack {
    pub dir: PathBuf,
    pub stack: Stack,
}

impl PrivateStack {
    pub async fn start() -> PrivateStack {
        Self::start_with(Vec::new()).await
    }

    /// [`PrivateStack::start`] with `env` for `scripts/mailstack start`
    /// (`MAILSTACK_OAUTH_URL`: Dovecot also takes XOAUTH2, each token checked
    /// at that introspection URL).
    pub async fn start_with(env: Vec<(&'static str, String)>) -> PrivateStack {
        tokio::task::spawn_blocking(move || Self::start_blocking(&env))
            .await
            .expect("starting the private stack did not panic")
    }

    fn start_blocking(env: &[(&str, String)]) -> PrivateStack {
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let mut last_error = String::new();
        for _ in 0..3 {
            let dir = tempfile::Builder::new()
                .prefix("pdf.")
                .tempdir_in("/tmp")
                .expect("a temp dir under /tmp")
                .keep();
            let started = mailstack(&["free-base"]).and_then(|base| {
                let path = dir.to_str().expect("a UTF-8 path");
                mailstack_with(&env, &["start", path, base.trim()])
            });
            match started {
                Ok(_) => {
                    let stack = stack_of(&dir);
                    return PrivateStack { dir, stack };
                }
                // Another run may have taken the ports in between: new base.
                Err(err) => {
                    let _ = mailstack(&["stop", dir.to_str().unwrap_or_default()]);
                    let _ = std::fs::remove_dir_all(&dir);
                    last_error = err;
                }
            }
        }
        panic!("no private mail stack after 3 attempts: {last_error}");
    }

    async fn half(&self, action: &str) {
        let dir = self.dir.display().to_string();
        let action = action.to_string();
        tokio::task::spawn_blocking(move || mailstack(&[&action, &dir]))
            .await
            .expect("mailstack did not panic")
            .unwrap_or_else(|err| panic!("{err}"));
    }

    /// Ends `user`'s IMAP sessions (`doveadm kick`): a client must log in
    /// again.
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

    pub async fn stop_dovecot(&self) {
        self.half("stop-dovecot").await;
    }

    pub async fn start_dovecot(&self) {
        self.half("start-dovecot").await;
    }

    pub async fn stop_postfix(&self) {
        self.half("stop-postfix").await;
    }

    pub async fn start_postfix(&self) {
        self.half("start-postfix").await;
    }
}

impl Drop for PrivateStack {
    fn drop(&mut self) {
        let dir = self.dir.display().to_string();
        match mailstack(&["stop", &dir]) {
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
