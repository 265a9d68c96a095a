//! When to refresh an access token and how long to wait after a failed
//! refresh. Pure arithmetic on durations, so that it is tested without a
//! clock or a server.

use std::time::Duration;

/// Providers that leave out `expires_in` are assumed to give an hour.
pub const ASSUMED_LIFETIME: Duration = Duration::from_secs(3600);

/// The most a token is refreshed ahead of its expiry.
const MAX_MARGIN: Duration = Duration::from_secs(60);

/// How long after it was issued a token of `lifetime` is refreshed: 60 s
/// before it expires, but never before 80% of its life (short-lived tokens
/// would otherwise be refreshed at once, every time).
pub fn refresh_after(lifetime: Duration) -> Duration {
    let margin = (lifetime / 5).min(MAX_MARGIN);
    lifetime.saturating_sub(margin)
}

/// How long after it was issued a token of `lifetime` may still be handed
/// out when refreshing it failed: up to one second before it expires (the
/// server checks it a moment later).
pub fn usable_for(lifetime: Duration) -> Duration {
    lifetime.saturating_sub(Duration::from_secs(1))
}

/// What kind of failure a pause follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The endpoint could not be reached or answered oddly: soon again.
    Transient,
    /// The endpoint refused (a revoked refresh token, a wrong client):
    /// nothing changes until someone acts, so ask rarely.
    Refused,
}

/// The pause before the next refresh after `previous` (none: the first
/// failure), doubling up to a cap: transient 2 s … 2 min, refused
/// 10 s … 10 min.
pub fn next_pause(kind: FailureKind, previous: Option<Duration>) -> Duration {
    let (first, cap) = match kind {
        FailureKind::Transient => (Duration::from_secs(2), Duration::from_secs(120)),
        FailureKind::Refused => (Duration::from_secs(10), Duration::from_secs(600)),
    };
    match previous {
        None => first,
        Some(p) => (p * 2).clamp(first, cap),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    #[test]
    fn an_hour_token_is_refreshed_a_minute_early() {
        assert_eq!(refresh_after(secs(3600.0)), secs(3540.0));
        assert_eq!(refresh_after(secs(3599.0)), secs(3539.0));
    }

    #[test]
    fn a_short_token_is_refreshed_at_four_fifths_of_its_life() {
        assert_eq!(refresh_after(secs(3.0)), secs(2.4));
        assert_eq!(refresh_after(secs(100.0)), secs(80.0));
        // 300 s is where the two rules meet.
        assert_eq!(refresh_after(secs(300.0)), secs(240.0));
        assert_eq!(refresh_after(Duration::ZERO), Duration::ZERO);
    }

    #[test]
    fn a_token_is_usable_until_a_second_before_expiry() {
        assert_eq!(usable_for(secs(3.0)), secs(2.0));
        assert_eq!(usable_for(secs(0.5)), Duration::ZERO);
    }

    #[test]
    fn pauses_double_to_their_cap() {
        let mut p = None;
        let mut seen = Vec::new();
        for _ in 0..9 {
            let next = next_pause(FailureKind::Transient, p);
            seen.push(next.as_secs());
            p = Some(next);
        }
        assert_eq!(seen, [2, 4, 8, 16, 32, 64, 120, 120, 120]);
        assert_eq!(next_pause(FailureKind::Refused, None), secs(10.0));
        assert_eq!(
            next_pause(FailureKind::Refused, Some(secs(400.0))),
            secs(600.0)
        );
        // After transient pauses, a refusal starts at its own minimum.
        assert_eq!(
            next_pause(FailureKind::Refused, Some(secs(2.0))),
            secs(10.0)
        );
    }
}
