//! Reads per client (issue 31): each client (its address as the ingress saw it, `auth::client`;
//! an IPv6 client as its /64) may make `client_reads_per_s` reads a second on average, in bursts
//! of `client_read_burst`, counted by the `governor` crate's keyed limiter (GCRA). Past that it is
//! answered 429 (`middleware::client_reads`) with `Retry-After`, before any handler or backend is reached. Changes (every POST:
//! the kill switch first), the probes, the metrics and the built assets are never limited, so a
//! client hammering the reports cannot starve on-call. Clients sharing one address (an office
//! behind NAT) share its allowance: the defaults leave room for dozens of open pages.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::server::auth::network_of;

/// Requests between two sweeps of clients no longer limited (their state is forgotten).
const SWEEP_EVERY: u64 = 4096;

pub struct ClientReads {
    limiter: DefaultKeyedRateLimiter<IpAddr>,
    clock: DefaultClock,
    seen: AtomicU64,
}

impl ClientReads {
    /// None when `per_s` is 0 (no limit).
    pub fn new(per_s: u32, burst: u32) -> Option<ClientReads> {
        let quota = Quota::per_second(NonZeroU32::new(per_s)?).allow_burst(NonZeroU32::new(burst.max(per_s))?);
        Some(ClientReads {
            limiter: RateLimiter::keyed(quota),
            clock: DefaultClock::default(),
            seen: AtomicU64::new(0),
        })
    }

    /// A read by `client`, or how long it must wait.
    pub fn check(&self, client: IpAddr) -> Result<(), Duration> {
        if self.seen.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            self.limiter.retain_recent();
        }
        self.limiter.check_key(&network_of(client)).map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_gets_its_burst_then_waits_and_others_are_not_held() {
        let reads = ClientReads::new(1, 5).unwrap();
        let a: IpAddr = "203.0.113.7".parse().unwrap();
        let b: IpAddr = "203.0.113.8".parse().unwrap();
        assert_eq!((0..20).filter(|_| reads.check(a).is_ok()).count(), 5, "the burst, then nothing");
        let wait = reads.check(a).unwrap_err();
        assert!(wait > Duration::ZERO && wait <= Duration::from_secs(1), "{wait:?}");
        assert!(reads.check(b).is_ok(), "another client is not held");
        // The same /64 is one client.
        let v6 = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!((0..10).filter(|i| reads.check(v6(&format!("2001:db8::{i}"))).is_ok()).count(), 5);
        assert!(ClientReads::new(0, 10).is_none(), "0: no limit");
    }
}
