//! Mailbox leases and the daemons' signs of life. Each mailbox is read by
//! one daemon at a time: the holder of its lease, which renews it well
//! before it expires; a lease past its expiry is taken by whoever asks
//! next. The claim is one statement (an upsert guarded by holder or
//! expiry), so two daemons asking at once cannot both win. Deciding when
//! to ask is the caller's (`crate::lease`).

use chrono::{DateTime, Duration, Utc};

use super::Store;
use crate::sql_params as params;

/// Who holds a mailbox, as `/healthz` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseHolder {
    pub mailbox: String,
    pub holder: String,
    pub expires_at: DateTime<Utc>,
}

impl Store {
    /// Takes or renews `mailbox`'s lease for `holder` until `now + ttl`;
    /// returns whether `holder` holds it now.
    pub fn take_lease(
        &self,
        mailbox: &str,
        holder: &str,
        ttl: Duration,
        now: DateTime<Utc>,
    ) -> anyhow::Result<bool> {
        let conn = self.write()?;
        let changed = conn.execute(
            "INSERT INTO mailbox_leases (mailbox, holder, expires_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (mailbox) DO UPDATE
               SET holder = excluded.holder, expires_at = excluded.expires_at
             WHERE mailbox_leases.holder = excluded.holder OR mailbox_leases.expires_at < ?4",
            params![mailbox, holder, now + ttl, now],
        )?;
        Ok(changed == 1)
    }

    /// Gives the lease up (at shutdown), so another daemon takes it at once.
    pub fn release_lease(&self, mailbox: &str, holder: &str) -> anyhow::Result<()> {
        self.write()?.execute(
            "DELETE FROM mailbox_leases WHERE mailbox = ?1 AND holder = ?2",
            params![mailbox, holder],
        )?;
        Ok(())
    }

    /// Every lease, live or expired.
    pub fn lease_holders(&self) -> anyhow::Result<Vec<LeaseHolder>> {
        self.read(|c| {
            c.query_map(
                "SELECT mailbox, holder, expires_at FROM mailbox_leases ORDER BY mailbox",
                [],
                |r| {
                    Ok(LeaseHolder {
                        mailbox: r.get(0)?,
                        holder: r.get(1)?,
                        expires_at: r.get(2)?,
                    })
                },
            )?
            .collect()
        })
    }

    /// Records that `instance` is alive; returns the instances not seen
    /// since `now - silence` (gone: their claimed outbox rows are put back).
    pub fn instance_alive(
        &self,
        instance: &str,
        started_at: DateTime<Utc>,
        silence: Duration,
        now: DateTime<Utc>,
    ) -> anyhow::Result<Vec<String>> {
        let conn = self.write()?;
        let tx = conn.begin()?;
        tx.execute(
            "INSERT INTO instances (id, started_at, seen_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (id) DO UPDATE SET seen_at = excluded.seen_at",
            params![instance, started_at, now],
        )?;
        // Silent ones, and claims of daemons that stopped (and forgot
        // themselves) with rows still marked `sending`.
        let gone: Vec<String> = tx
            .query_map(
                "SELECT id FROM instances WHERE seen_at < ?1
                 UNION
                 SELECT DISTINCT claimed_by FROM outbox
                  WHERE status = 'sending' AND claimed_by IS NOT NULL
                    AND claimed_by NOT IN (SELECT id FROM instances)",
                params![now - silence],
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

    /// Forgets `instance` (a clean stop); rows it left `sending` are put
    /// back by the next heartbeat of any daemon (this one after a restart).
    pub fn instance_stopped(&self, instance: &str) -> anyhow::Result<()> {
        self.write()?
            .execute("DELETE FROM instances WHERE id = ?1", [instance])?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_is_held_by_one_until_it_expires_then_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("t.db")).unwrap();
        let t0 = Utc::now();
        let ttl = Duration::seconds(15);
        assert!(store.take_lease("support", "a", ttl, t0).unwrap());
        assert!(
            !store
                .take_lease("support", "b", ttl, t0 + Duration::seconds(5))
                .unwrap()
        );
        assert!(
            store
                .take_lease("support", "a", ttl, t0 + Duration::seconds(10))
                .unwrap()
        );
        // a renewed at t0+10, so it holds until t0+25.
        assert!(
            !store
                .take_lease("support", "b", ttl, t0 + Duration::seconds(24))
                .unwrap()
        );
        assert!(
            store
                .take_lease("support", "b", ttl, t0 + Duration::seconds(26))
                .unwrap()
        );
        assert!(
            !store
                .take_lease("support", "a", ttl, t0 + Duration::seconds(27))
                .unwrap()
        );
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
        assert!(
            store
                .take_lease("support", "a", ttl, t0 + Duration::seconds(28))
                .unwrap()
        );
    }
}
