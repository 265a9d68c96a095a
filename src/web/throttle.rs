//! Throttling of wrong agent keys: per client address (an IPv6 client by
//! its /64, which one host usually owns whole), at most [`MAX_FAILURES`]
//! wrong `?key=` or Bearer values per [`WINDOW`]; after that the address
//! is refused without its key being checked until the window ends. Memory
//! is bounded: at most [`MAX_CLIENTS`] addresses are remembered, the
//! oldest windows dropped first. Pure bookkeeping over a clock passed in;
//! it sends nothing and knows no key.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Wrong keys one client may send per window.
pub const MAX_FAILURES: u32 = 10;
/// The window over which failures count.
pub const WINDOW: Duration = Duration::from_secs(60);
/// Addresses remembered at most.
pub const MAX_CLIENTS: usize = 10_000;

/// Failures per client address, in fixed windows.
#[derive(Debug, Default)]
pub struct GuessThrottle {
    clients: Mutex<HashMap<IpAddr, Window>>,
}

#[derive(Debug, Clone, Copy)]
struct Window {
    started: Instant,
    failures: u32,
}

impl GuessThrottle {
    /// How long `client` must wait before its key is checked again
    /// (`None`: it may try now).
    pub fn blocked_for(&self, client: IpAddr, now: Instant) -> Option<Duration> {
        let clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        let window = clients.get(&bucket(client))?;
        let ends = window.started + WINDOW;
        (window.failures >= MAX_FAILURES && now < ends).then(|| ends - now)
    }

    /// Counts one wrong key from `client`.
    pub fn record_failure(&self, client: IpAddr, now: Instant) {
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        let key = bucket(client);
        if !clients.contains_key(&key) && clients.len() >= MAX_CLIENTS {
            clients.retain(|_, w| now < w.started + WINDOW);
            if clients.len() >= MAX_CLIENTS
                && let Some(oldest) = clients
                    .iter()
                    .min_by_key(|(_, w)| w.started)
                    .map(|(ip, _)| *ip)
            {
                clients.remove(&oldest);
            }
        }
        let window = clients.entry(key).or_insert(Window {
            started: now,
            failures: 0,
        });
        if now >= window.started + WINDOW {
            *window = Window {
                started: now,
                failures: 0,
            };
        }
        window.failures = window.failures.saturating_add(1);
    }

    #[cfg(test)]
    fn remembered(&self) -> usize {
        self.clients.lock().map(|c| c.len()).unwrap_or_default()
    }
}

/// The unit one client is counted as: an IPv4 address, or an IPv6 /64.
fn bucket(client: IpAddr) -> IpAddr {
    match client {
        IpAddr::V4(_) => client,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut segments = v6.segments();
                segments[4..].fill(0);
                IpAddr::V6(segments.into())
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn ten_wrong_keys_block_an_address_for_the_rest_of_the_minute() {
        let throttle = GuessThrottle::default();
        let start = Instant::now();
        let (mallory, ann) = (ip("203.0.113.7"), ip("198.51.100.1"));
        for n in 0..MAX_FAILURES {
            assert_eq!(throttle.blocked_for(mallory, start), None, "try {n}");
            throttle.record_failure(mallory, start);
        }
        let later = start + Duration::from_secs(20);
        assert_eq!(
            throttle.blocked_for(mallory, later),
            Some(Duration::from_secs(40))
        );
        assert_eq!(throttle.blocked_for(ann, later), None, "others unaffected");
        assert_eq!(throttle.blocked_for(mallory, start + WINDOW), None);
        throttle.record_failure(mallory, start + WINDOW);
        assert_eq!(
            throttle.blocked_for(mallory, start + WINDOW),
            None,
            "a new window starts from zero"
        );
    }

    #[test]
    fn an_ipv6_client_is_one_slash_64() {
        let throttle = GuessThrottle::default();
        let now = Instant::now();
        for n in 0..MAX_FAILURES {
            throttle.record_failure(ip(&format!("2001:db8:1:2::{n:x}")), now);
        }
        assert!(
            throttle
                .blocked_for(ip("2001:db8:1:2:ffff::1"), now)
                .is_some()
        );
        assert!(throttle.blocked_for(ip("2001:db8:1:3::1"), now).is_none());
        assert_eq!(bucket(ip("::ffff:192.0.2.1")), ip("192.0.2.1"));
    }

    #[test]
    fn memory_is_bounded_and_the_oldest_go_first() {
        let throttle = GuessThrottle::default();
        let start = Instant::now();
        let first = ip("10.0.0.1");
        for _ in 0..MAX_FAILURES {
            throttle.record_failure(first, start);
        }
        for n in 0..(MAX_CLIENTS as u32 + 500) {
            let client = IpAddr::V4((0x0b00_0000 + n).into());
            throttle.record_failure(client, start + Duration::from_millis(1));
        }
        assert_eq!(throttle.remembered(), MAX_CLIENTS);
        assert!(
            throttle.blocked_for(first, start).is_none(),
            "the oldest window was dropped"
        );
    }
}
