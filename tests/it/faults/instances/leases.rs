//! Who reads which mailbox, as the daemons under test show it: the
//! `mailbox_leases` table, each daemon's `/healthz`, and whether the
//! daemons still run. Read-only: it only kills the daemon it is asked to.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::super::rig::{DaemonProcess, Log, within};
use super::MAILBOXES;
use super::cluster::rows;

/// Every lease: (mailbox, holder); empty while the database is away.
pub fn leases(url: &str) -> Vec<(String, String)> {
    let sql = "SELECT mailbox, holder FROM mailbox_leases ORDER BY mailbox";
    let found = rows(url, sql).unwrap_or_default().into_iter();
    found.map(|r| (r[0].clone(), r[1].clone())).collect()
}

/// The pid in an instance name `host:pid:random`.
pub fn pid_of(instance: &str) -> Option<u32> {
    instance.split(':').nth(1)?.parse().ok()
}

/// SIGKILLs the daemon holding the most leases; its index, instance name
/// and the mailboxes it held.
pub fn kill_busiest(daemons: &mut [DaemonProcess], url: &str) -> (usize, String, Vec<String>) {
    let mut by_holder: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (mailbox, holder) in leases(url) {
        by_holder.entry(holder).or_default().push(mailbox);
    }
    let (instance, mailboxes) = (by_holder.into_iter())
        .max_by_key(|(_, m)| m.len())
        .expect("someone holds a lease");
    let index = (daemons.iter())
        .position(|d| Some(d.pid()) == pid_of(&instance))
        .unwrap_or_else(|| panic!("the holder {instance} is none of the daemons"));
    daemons[index].kill9();
    (index, instance, mailboxes)
}

/// Seconds until each of `mailboxes` is held by a survivor (`alive` pids)
/// instead of `dead`; fails after `limit` seconds.
pub async fn takeover(
    url: &str,
    dead: &str,
    mailboxes: &[String],
    alive: &[u32],
    limit: u64,
) -> f64 {
    let t0 = Instant::now();
    let by_survivor = |holder: &str| pid_of(holder).is_some_and(|p| alive.contains(&p));
    within(
        "the survivors take the dead daemon's mailboxes over",
        limit,
        || async {
            let now = leases(url);
            let taken = mailboxes.iter().all(|m| {
                (now.iter()).any(|(mb, holder)| mb == m && holder != dead && by_survivor(holder))
            });
            taken.then_some(())
        },
    )
    .await;
    t0.elapsed().as_secs_f64()
}

/// Fails, with the daemon's last log lines, if a survivor has exited.
pub fn all_running(survivors: &mut [DaemonProcess], log: &Log) {
    for d in survivors {
        if let Some(status) = d.exited() {
            let pid = d.pid();
            panic!(
                "the surviving daemon {pid} exited on its own ({status}); its last lines:\n{}",
                last_lines(log, pid, 40)
            );
        }
    }
}

/// The last `n` log lines of daemon `pid`.
pub fn last_lines(log: &Log, pid: u32, n: usize) -> String {
    let mine: Vec<String> = (log.matching(&format!("[{pid}] ").to_string()).into_iter())
        .map(|(_, l)| l)
        .collect();
    mine[mine.len().saturating_sub(n)..].join("\n")
}

/// Every mailbox is held by a survivor, and each survivor's `/healthz`
/// names that holder, `elsewhere` everywhere but at the holder. The
/// failure shows the last look and the daemons' last lines.
pub async fn health_agrees(url: &str, webs: &[SocketAddr], alive: &[u32], log: &Log) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let why = match holders_seen(url, webs, alive).await {
            Ok(()) => return,
            Err(why) => why,
        };
        if Instant::now() > deadline {
            let tails: Vec<String> = alive.iter().map(|p| last_lines(log, *p, 25)).collect();
            panic!(
                "the survivors' /healthz do not agree on the holders after 30 s: {why}\n{}",
                tails.join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn holders_seen(url: &str, webs: &[SocketAddr], alive: &[u32]) -> Result<(), String> {
    let held: BTreeMap<String, String> = leases(url).into_iter().collect();
    let by_survivor = (held.values()).all(|h| pid_of(h).is_some_and(|p| alive.contains(&p)));
    if held.len() != MAILBOXES || !by_survivor {
        return Err(format!("leases {held:?}, survivors {alive:?}"));
    }
    let mut reading: BTreeMap<String, usize> = BTreeMap::new();
    let mut holders: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut bodies = Vec::new();
    for web in webs {
        let got = reqwest::get(format!("http://{web}/healthz")).await;
        let body = match got {
            Ok(answer) => answer.text().await.unwrap_or_default(),
            Err(e) => return Err(format!("{web}/healthz: {e}")),
        };
        let health: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        for m in health["mailboxes"].as_array().into_iter().flatten() {
            let queue = m["queue"].as_str().unwrap_or_default().to_string();
            if m["state"] != "elsewhere" {
                *reading.entry(queue.clone()).or_default() += 1;
            }
            let holder = m["holder"].as_str().unwrap_or_default().to_string();
            holders.entry(queue).or_default().insert(holder);
        }
        bodies.push(body);
    }
    let agreed = holders.len() == MAILBOXES
        && holders.values().all(|h| h.len() == 1)
        && reading.len() == MAILBOXES
        && reading.values().all(|n| *n == 1);
    if agreed {
        Ok(())
    } else {
        Err(format!("leases {held:?}; /healthz {bodies:?}"))
    }
}
