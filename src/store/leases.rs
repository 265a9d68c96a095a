//! Mailbox leases and the daemons' signs of life (PostgreSQL: several
//! daemons on one database). Each mailbox is read by one daemon at a time:
//! the holder of its lease, which renews it well before it expires; a
//! lease past its expiry is taken by whoever asks next. The claim is one
//! statement (an upsert guarded by holder or expiry), so two daemons asking
//! at once cannot both win, and every time is the database server's
//! `now()`, so the daemons' clocks never decide who is alive. With SQLite
//! (one daemon per file) every lease is the caller's and nothing is
//! written. Deciding when to ask is the caller's (`crate::lease`).

use std::time::Duration;

use super::Store;
use super::db::Backend;
use crate::sql_params as params;

/// Who holds a mailbox, as `/healthz` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseHolder {
    pub mailbox: String,
    pub holder: String,
}

impl Store {
    /// Takes or renews `mailbox`'s lease for `holder` for `ttl`; returns
    /// whether `holder` holds it now.
    pub fn take_lease(&self, mailbox: &str, holder: &str, ttl: Duration) -> anyhow::Result<bool> {
        if self.backend() == Backend::Sqlite {
            return Ok(true);
        }
        let conn = self.write()?;
        let changed = conn.execute(
            "INSERT INTO mailbox_leases (mailbox, holder, expires_at)
             VALUES (?1, ?2, now() + make_interval(secs => ?3))
             ON CONFLICT (mailbox) DO UPDATE
               SET holder = excluded.holder, expires_at = excluded.expires_at
             WHERE mailbox_leases.holder = excluded.holder OR mailbox_leases.expires_at < now()",
            params![mailbox, holder, ttl.as_secs_f64()],
        )?;
        Ok(changed == 1)
    }

    /// Gives the lease up (at shutdown), so another daemon takes it at once.
    pub fn release_lease(&self, mailbox: &str, holder: &str) -> anyhow::Result<()> {
        if self.backend() == Backend::Sqlite {
            return Ok(());
        }
        self.write()?.execute(
            "DELETE FROM mailbox_leases WHERE mailbox = ?1 AND holder = ?2",
            params![mailbox, holder],
        )?;
        Ok(())
    }

    /// Every live lease.
    pub fn lease_holders(&self) -> anyhow::Result<Vec<LeaseHolder>> {
        if self.backend() == Backend::Sqlite {
            return Ok(Vec::new());
        }
        self.read(|c| {
            c.query_map(
                "SELECT mailbox, holder FROM mailbox_leases WHERE expires_at >= now()
                 ORDER BY mailbox",
                [],
                |r| {
                    Ok(LeaseHolder {
                        mailbox: r.get(0)?,
                        holder: r.get(1)?,
                    })
                },
            )?
            .collect()
        })
    }

    /// How many live leases `holder` has, and how many daemons are alive
    /// (seen within `silence`; at least one, the caller).
    pub fn lease_load(&self, holder: &str, silence: Duration) -> anyhow::Result<(usize, usize)> {
        if self.backend() == Backend::Sqlite {
            return Ok((0, 1));
        }
        self.read(|c| {
            c.query_row(
                "SELECT (SELECT count(*) FROM mailbox_leases
                          WHERE holder = ?1 AND expires_at >= now()),
                        (SELECT count(*) FROM instances
                          WHERE seen_at >= now() - make_interval(secs => ?2))",
                params![holder, silence.as_secs_f64()],
                |r| {
                    let mine: i64 = r.get(0)?;
                    let live: i64 = r.get(1)?;
                    Ok((mine.max(0) as usize, live.max(1) as usize))
                },
            )
        })
    }

    /// Records that `instance` is alive; puts back the outbox rows claimed
    /// by daemons silent for `silence` (and by those that stopped and
    /// forgot themselves); returns those daemons.
    pub fn instance_alive(&self, instance: &str, silence: Duration) -> anyhow::Result<Vec<String>> {
        if self.backend() == Backend::Sqlite {
            return Ok(Vec::new());
        }
        let conn = self.write()?;
        let tx = conn.begin()?;
        tx.execute(
            "INSERT INTO instances (id, started_at, seen_at) VALUES (?1, now(), now())
             ON CONFLICT (id) DO UPDATE SET seen_at = now()",
            [instance],
        )?;
        let gone: Vec<String> = tx
            .query_map(
                "SELECT id FROM instances WHERE seen_at < now() - make_interval(secs => ?1)
                 UNION
                 SELECT DISTINCT claimed_by FROM outbox
                  WHERE status = 'sending' AND claimed_by IS NOT NULL
                    AND claimed_by NOT IN (SELECT id FROM instances)",
                [silence.as_secs_f64()],
                |r| r.get(0),
            )?
            .collect::<Result<_, _>>()?;
        for id in &gone {
            let requeued = tx.execute(
                "UPDATE outbox SET status = 'pending', claimed_by = NULL
                 WHERE status = 'sending' AND claimed_by = ?1",
                [id],
            )?;
            if requeued > 0 {
                tracing::warn!(
                    "{requeued} outgoing mails claimed by the stopped daemon {id} are queued again \
                     (one may reach its recipient twice, with the same Message-ID)."
                );
            }
            tx.execute("DELETE FROM instances WHERE id = ?1", [id])?;
        }
        tx.commit()?;
        Ok(gone)
    }

    /// A clean stop, once this daemon's sender has finished: puts back what
    /// it left `sending` and forgets it, so nobody waits for its silence.
    pub fn instance_stopped(&self, instance: &str) -> anyhow::Result<()> {
        if self.backend() == Backend::Sqlite {
            return Ok(());
        }
        let conn = self.write()?;
        let tx = conn.begin()?;
        tx.execute(
            "UPDATE outbox SET status = 'pending', claimed_by = NULL
             WHERE status = 'sending' AND claimed_by = ?1",
            [instance],
        )?;
        tx.execute("DELETE FROM instances WHERE id = ?1", [instance])?;
        tx.commit()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A store on the test cluster, or `None` (SQLite runs: no leases).
    fn postgres_store(dir: &std::path::Path) -> Option<Store> {
        let store = Store::open(&dir.join("t.db")).unwrap();
        (store.backend() == Backend::Postgres).then_some(store)
    }

    #[test]
    fn a_lease_is_held_by_one_until_it_expires_then_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let Some(store) = postgres_store(dir.path()) else {
            eprintln!("PostgreSQL only: set POSTDESK_TEST_POSTGRES");
            return;
        };
        let ttl = Duration::from_millis(800);
        assert!(store.take_lease("support", "a", ttl).unwrap());
        assert!(!store.take_lease("support", "b", ttl).unwrap());
        assert!(store.take_lease("support", "a", ttl).unwrap(), "renewed");
        assert_eq!(store.lease_load("a", Duration::from_secs(60)).unwrap().0, 1);
        std::thread::sleep(Duration::from_millis(1000));
        assert!(store.lease_holders().unwrap().is_empty(), "expired");
        assert!(store.take_lease("support", "b", ttl).unwrap(), "taken over");
        assert!(!store.take_lease("support", "a", ttl).unwrap());
        let holders = store.lease_holders().unwrap();
        assert_eq!(holders.len(), 1);
        assert_eq!(holders[0].holder, "b");
        store.release_lease("support", "a").unwrap();
        assert_eq!(
            store.lease_holders().unwrap()[0].holder,
            "b",
            "only the holder releases"
        );
        store.release_lease("support", "b").unwrap();
        assert!(store.take_lease("support", "a", ttl).unwrap());
    }

    #[test]
    fn a_silent_daemons_claims_are_queued_again_a_live_ones_are_not() {
        let dir = tempfile::tempdir().unwrap();
        let Some(store) = postgres_store(dir.path()) else {
            eprintln!("PostgreSQL only: set POSTDESK_TEST_POSTGRES");
            return;
        };
        let silence = Duration::from_millis(700);
        assert!(store.instance_alive("a", silence).unwrap().is_empty());
        assert!(store.instance_alive("b", silence).unwrap().is_empty());
        std::thread::sleep(Duration::from_millis(900));
        // b beats again; a has been silent.
        assert_eq!(
            store.instance_alive("b", silence).unwrap(),
            vec!["a".to_string()]
        );
        assert!(
            store.instance_alive("b", silence).unwrap().is_empty(),
            "forgotten once"
        );
        assert_eq!(store.lease_load("b", Duration::from_secs(60)).unwrap().1, 1);
    }
}
