//! Refused SMTP logins, per route (one SMTP account and the queues it
//! carries, see `outbound::routes`): which route the server refuses, since
//! when and why, for `/healthz`, `/metrics` and `outbox list`; and the
//! mail held back while it lasts. A held row stays pending with no attempt
//! counted; its `next_attempt_at` is the route's next try, so the claim
//! passes over it and other routes' mail goes out meanwhile. It must not
//! decide what counts as a refusal or how long to wait (the sender does).

use crate::sql_params as params;
use chrono::{DateTime, Utc};

use super::Store;

/// Since when the SMTP server refuses one route's login, and its words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmtpAuthFailure {
    /// The route's name: its first queue's.
    pub route: String,
    /// The queues whose mail the route carries.
    pub queues: Vec<String>,
    /// The settings keys to fix, as `check-config` names them.
    pub hint: String,
    pub since: DateTime<Utc>,
    pub error: String,
}

impl Store {
    /// Records that the server refused `failure.route`'s login; the first
    /// refusal's time is kept, the latest words (and queues, hint) replace
    /// the older ones.
    pub fn set_smtp_auth_failure(&self, failure: &SmtpAuthFailure) -> anyhow::Result<()> {
        self.write()?.execute(
            "INSERT INTO smtp_auth_routes (route, queues, hint, failing_since, error)
             VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (route) DO UPDATE SET queues = excluded.queues,
                 hint = excluded.hint, error = excluded.error",
            params![
                failure.route,
                failure.queues.join(","),
                failure.hint,
                failure.since,
                failure.error
            ],
        )?;
        Ok(())
    }

    /// Records that `route`'s login worked (or a server answered past it):
    /// its state is cleared and its held mail is no longer marked held.
    pub fn clear_smtp_auth_failure(&self, route: &str) -> anyhow::Result<()> {
        let conn = self.write()?;
        let tx = conn.begin()?;
        tx.execute("DELETE FROM smtp_auth_routes WHERE route = ?1", [route])?;
        tx.execute(
            "UPDATE outbox SET held_for = NULL WHERE held_for = ?1",
            [route],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Every route whose login the server refuses, by name.
    pub fn smtp_auth_failures(&self) -> anyhow::Result<Vec<SmtpAuthFailure>> {
        self.read(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT route, queues, hint, failing_since, error FROM smtp_auth_routes
                 ORDER BY route",
            )?;
            let rows = stmt.query_map([], |r| {
                let queues: String = r.get(1)?;
                Ok(SmtpAuthFailure {
                    route: r.get(0)?,
                    queues: queues.split(',').map(str::to_string).collect(),
                    hint: r.get(2)?,
                    since: r.get(3)?,
                    error: r.get(4)?,
                })
            })?;
            rows.collect::<Result<Vec<_>, _>>()
        })
    }

    /// Forgets the recorded state of routes not in `routes` (the settings
    /// changed since); returns how many.
    pub fn forget_smtp_auth_failures_except(&self, routes: &[String]) -> anyhow::Result<usize> {
        let conn = self.write()?;
        let tx = conn.begin()?;
        let names: Vec<String> = {
            let mut stmt = tx.prepare("SELECT route FROM smtp_auth_routes")?;
            let rows = stmt.query_map([], |r| r.get(0))?;
            rows.collect::<Result<_, _>>()?
        };
        let mut forgotten = 0;
        for name in names.iter().filter(|n| !routes.contains(n)) {
            forgotten += tx.execute("DELETE FROM smtp_auth_routes WHERE route = ?1", [name])?;
        }
        tx.commit()?;
        Ok(forgotten)
    }

    /// Holds claimed (or just refused) rows `ids` of `route` until `until`:
    /// pending, no attempt counted, not due before then.
    pub fn hold_outbox(
        &self,
        ids: &[i64],
        route: &str,
        until: DateTime<Utc>,
    ) -> anyhow::Result<()> {
        let conn = self.write()?;
        let tx = conn.begin()?;
        for id in ids {
            tx.execute(
                "UPDATE outbox SET status = 'pending', next_attempt_at = ?2, held_for = ?3
                 WHERE id = ?1 AND status IN ('pending', 'sending')
                   AND (claimed_by IS NULL OR claimed_by = ?4)",
                params![id, until, route, self.instance],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Makes every held row due at `now` (at start: the settings may have
    /// been fixed); returns the routes that had held mail, by name.
    pub fn release_held_outbox(&self, now: DateTime<Utc>) -> anyhow::Result<Vec<String>> {
        let conn = self.write()?;
        let tx = conn.begin()?;
        // RETURNING would give the new (NULL) held_for: read them first.
        let routes: Vec<String> = {
            let mut stmt = tx.prepare(
                "SELECT DISTINCT held_for FROM outbox
                 WHERE held_for IS NOT NULL AND status = 'pending' ORDER BY held_for",
            )?;
            let rows = stmt.query_map([], |r| r.get(0))?;
            rows.collect::<Result<_, _>>()?
        };
        tx.execute(
            "UPDATE outbox SET next_attempt_at = ?1, held_for = NULL
             WHERE held_for IS NOT NULL AND status = 'pending'",
            [now],
        )?;
        tx.commit()?;
        Ok(routes)
    }
}

#[cfg(test)]
mod tests {
    use chrono::Duration;

    use super::*;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("t.db")).unwrap();
        (dir, store)
    }

    fn failure(route: &str, error: &str, since: DateTime<Utc>) -> SmtpAuthFailure {
        SmtpAuthFailure {
            route: route.into(),
            queues: vec![route.into(), "refunds".into()],
            hint: format!("mailbox[0].smtp.password ({route})"),
            since,
            error: error.into(),
        }
    }

    #[test]
    fn each_route_keeps_its_first_time_and_latest_words() {
        let (_dir, store) = store();
        assert!(store.smtp_auth_failures().unwrap().is_empty());
        let first = Utc::now() - Duration::minutes(5);
        store
            .set_smtp_auth_failure(&failure("billing", "535 one", first))
            .unwrap();
        store
            .set_smtp_auth_failure(&failure("billing", "535 two", Utc::now()))
            .unwrap();
        store
            .set_smtp_auth_failure(&failure("support", "530 three", Utc::now()))
            .unwrap();
        let all = store.smtp_auth_failures().unwrap();
        assert_eq!(all.len(), 2, "{all:?}");
        assert_eq!(
            (all[0].route.as_str(), all[0].error.as_str()),
            ("billing", "535 two")
        );
        assert_eq!(all[0].since.timestamp(), first.timestamp());
        assert_eq!(all[0].queues, ["billing", "refunds"]);
        assert_eq!(all[0].hint, "mailbox[0].smtp.password (billing)");

        // A login that works on one route leaves the other's state alone.
        store.clear_smtp_auth_failure("support").unwrap();
        let left = store.smtp_auth_failures().unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].route, "billing");
        // A route gone from the settings is forgotten at start.
        assert_eq!(
            store
                .forget_smtp_auth_failures_except(&["support".into()])
                .unwrap(),
            1
        );
        assert!(store.smtp_auth_failures().unwrap().is_empty());
    }
}
