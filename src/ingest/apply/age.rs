//! The age rule: a new ticket's sender gets a confirmation only for a mail
//! at most `limits.confirm_max_age_hours` old (issue 12). A mailbox read for
//! the first time, or a mail held up on the way, must not make postdesk
//! answer days late. Pure: the mail and `now` in, a reason out; it must not
//! decide anything else (agents are notified of every ticket regardless).

use chrono::{DateTime, Duration, Utc};

use crate::ingest::parse::ParsedMail;

/// Why a mail this old gets no confirmation, or `None` when it is young
/// enough. The age is `now` minus its `Date:`, or minus the time we
/// received it where it has no Date or one in the future.
pub fn too_old_to_confirm(mail: &ParsedMail, now: DateTime<Utc>, max_hours: f64) -> Option<String> {
    let age = now - written_at(mail, now);
    let limit = Duration::milliseconds((max_hours * 3_600_000.0) as i64);
    (age > limit).then(|| format!("no confirmation: the mail is {} old", describe(age)))
}

/// When the mail was written: its `Date:` unless missing or in the future
/// (a wrong clock), then when our server received it (the topmost
/// `Received:`), then `now`.
fn written_at(mail: &ParsedMail, now: DateTime<Utc>) -> DateTime<Utc> {
    mail.date
        .filter(|d| *d <= now)
        .or_else(|| received_at(mail).filter(|d| *d <= now))
        .unwrap_or(now)
}

/// The date the topmost `Received:` header gives (after its last `;`).
fn received_at(mail: &ParsedMail) -> Option<DateTime<Utc>> {
    let value = mail.header("received")?;
    let (_, date) = value.rsplit_once(';')?;
    // A trailing comment such as "(UTC)" is not part of RFC 2822 dates.
    let date = match date.find('(') {
        Some(at) => &date[..at],
        None => date,
    };
    DateTime::parse_from_rfc2822(date.trim())
        .ok()
        .map(|d| d.with_timezone(&Utc))
}

/// "3 days", "5 hours", "40 minutes": whole units, rounded down.
fn describe(age: Duration) -> String {
    let plural = |n: i64, unit: &str| {
        if n == 1 {
            format!("1 {unit}")
        } else {
            format!("{n} {unit}s")
        }
    };
    if age >= Duration::hours(48) {
        plural(age.num_days(), "day")
    } else if age >= Duration::hours(2) {
        plural(age.num_hours(), "hour")
    } else {
        plural(age.num_minutes(), "minute")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 5, 12, 0, 0).unwrap()
    }

    fn mail(date: Option<DateTime<Utc>>, received: Option<&str>) -> ParsedMail {
        let headers = received
            .map(|r| vec![("received".to_string(), r.to_string())])
            .unwrap_or_default();
        ParsedMail {
            date,
            headers,
            ..ParsedMail::default()
        }
    }

    #[test]
    fn a_mail_three_days_old_gets_no_confirmation_and_says_why() {
        let m = mail(Some(now() - Duration::hours(75)), None);
        assert_eq!(
            too_old_to_confirm(&m, now(), 48.0).as_deref(),
            Some("no confirmation: the mail is 3 days old")
        );
    }

    #[test]
    fn a_mail_within_the_limit_is_confirmed_and_the_limit_is_inclusive() {
        let fresh = mail(Some(now() - Duration::minutes(5)), None);
        assert_eq!(too_old_to_confirm(&fresh, now(), 48.0), None);
        let at_limit = mail(Some(now() - Duration::hours(48)), None);
        assert_eq!(too_old_to_confirm(&at_limit, now(), 48.0), None);
        let past = mail(
            Some(now() - Duration::hours(48) - Duration::seconds(1)),
            None,
        );
        assert!(too_old_to_confirm(&past, now(), 48.0).is_some());
    }

    #[test]
    fn fractional_limits_count_and_small_ages_read_in_minutes_or_hours() {
        let m = mail(Some(now() - Duration::minutes(40)), None);
        assert_eq!(
            too_old_to_confirm(&m, now(), 0.5).as_deref(),
            Some("no confirmation: the mail is 40 minutes old")
        );
        let m = mail(Some(now() - Duration::hours(5)), None);
        assert_eq!(
            too_old_to_confirm(&m, now(), 1.0).as_deref(),
            Some("no confirmation: the mail is 5 hours old")
        );
    }

    #[test]
    fn without_a_date_the_time_we_received_it_counts() {
        let old =
            "from mx.example.test by imap.support.test; Mon, 30 Nov 2026 08:00:00 +0000 (UTC)";
        let m = mail(None, Some(old));
        assert_eq!(
            too_old_to_confirm(&m, now(), 48.0).as_deref(),
            Some("no confirmation: the mail is 5 days old")
        );
        // No Date and no usable Received: it is taken as arriving now.
        assert_eq!(too_old_to_confirm(&mail(None, None), now(), 48.0), None);
        let garbled = mail(None, Some("from x by y; not a date"));
        assert_eq!(too_old_to_confirm(&garbled, now(), 48.0), None);
    }

    #[test]
    fn a_date_in_the_future_cannot_hide_an_old_mail() {
        let old = "by imap.support.test; Mon, 30 Nov 2026 08:00:00 +0000";
        let m = mail(Some(now() + Duration::days(365)), Some(old));
        assert!(too_old_to_confirm(&m, now(), 48.0).is_some());
        // And a future Date alone is not "old".
        let m = mail(Some(now() + Duration::days(365)), None);
        assert_eq!(too_old_to_confirm(&m, now(), 48.0), None);
    }
}
