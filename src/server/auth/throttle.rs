//! Sign-in attempts, throttled per (user name, client address) instead of a hard lock-out: after
//! `free` failures in a row, each further attempt of that pair waits twice as long as the one
//! before (1 s, 2 s, 4 s, … at most 15 minutes). A guesser slows to a crawl, while the real user,
//! from their own address, is never locked out by somebody else's failures. A pair has one
//! attempt at a time: the turn is taken atomically before the password is checked, so a burst of
//! parallel guesses gets one. An address failing for many names (spraying) waits as a whole once
//! it has failed `free * 10` times within 10 minutes.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const LONGEST_WAIT: Duration = Duration::from_secs(15 * 60);
const ADDRESS_WINDOW: Duration = Duration::from_secs(600);
/// Failures an address may make within the window, as a multiple of `free`.
const ADDRESS_FACTOR: u32 = 10;
/// Pairs kept at most: beyond that, new pairs wait until stale ones are forgotten.
const MAX_PAIRS: usize = 50_000;
/// Names are kept to this many characters (an attacker's long names cost no memory).
const NAME_CHARS: usize = 64;

type Pair = (String, Option<IpAddr>);

#[derive(Debug)]
struct Streak {
    failures: u32,
    last: Instant,
    busy: bool,
}

#[derive(Default)]
struct Inner {
    pairs: HashMap<Pair, Streak>,
    addresses: HashMap<IpAddr, Vec<Instant>>,
}

pub struct Throttle {
    free: u32,
    inner: Mutex<Inner>,
}

/// One attempt's turn: a failure unless `succeeded` is called (a dropped, cancelled attempt
/// counts as failed, so cancelling cannot be used to guess for free).
pub struct Turn<'a> {
    throttle: &'a Throttle,
    pair: Pair,
    ok: bool,
}

impl Turn<'_> {
    pub fn succeeded(mut self) {
        self.ok = true;
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        let now = Instant::now();
        let mut inner = self.throttle.lock();
        if self.ok {
            inner.pairs.remove(&self.pair);
            return;
        }
        if let Some(s) = inner.pairs.get_mut(&self.pair) {
            s.failures = s.failures.saturating_add(1);
            s.last = now;
            s.busy = false;
        }
        if let Some(addr) = self.pair.1 {
            inner.addresses.entry(addr).or_default().push(now);
        }
    }
}

/// How long a pair with `failures` in a row waits after its last one.
fn wait_after(failures: u32, free: u32) -> Duration {
    match failures.checked_sub(free) {
        None => Duration::ZERO,
        Some(over) => Duration::from_secs(1u64 << over.min(20)).min(LONGEST_WAIT),
    }
}

impl Throttle {
    pub fn new(free: u32) -> Throttle {
        Throttle { free: free.max(1), inner: Mutex::default() }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The turn of `user` from `address`, or how long to wait for it.
    pub fn take(&self, user: &str, address: Option<IpAddr>) -> Result<Turn<'_>, Duration> {
        let now = Instant::now();
        let pair: Pair = (user.chars().take(NAME_CHARS).collect(), address);
        let mut inner = self.lock();
        forget_stale(&mut inner, now);
        if let Some(addr) = address {
            let recent = inner.addresses.get(&addr).map_or(&[][..], Vec::as_slice);
            if recent.len() >= (self.free * ADDRESS_FACTOR) as usize {
                return Err(ADDRESS_WINDOW.saturating_sub(now - recent[0]).max(Duration::from_secs(1)));
            }
        }
        if !inner.pairs.contains_key(&pair) && inner.pairs.len() >= MAX_PAIRS {
            return Err(Duration::from_secs(1));
        }
        let streak = inner.pairs.entry(pair.clone()).or_insert(Streak { failures: 0, last: now, busy: false });
        if streak.busy {
            return Err(Duration::from_secs(1));
        }
        let ready_at = streak.last + wait_after(streak.failures, self.free);
        if ready_at > now {
            return Err(ready_at - now);
        }
        streak.busy = true;
        Ok(Turn { throttle: self, pair, ok: false })
    }

    #[cfg(test)]
    fn backdate(&self, by: Duration) {
        let mut inner = self.lock();
        for s in inner.pairs.values_mut() {
            s.last -= by;
        }
        for v in inner.addresses.values_mut() {
            v.iter_mut().for_each(|t| *t -= by);
        }
    }

    #[cfg(test)]
    fn kept(&self) -> (usize, usize) {
        let inner = self.lock();
        (inner.pairs.len(), inner.addresses.len())
    }
}

/// Forgets pairs whose wait has long passed and address failures out of the window.
fn forget_stale(inner: &mut Inner, now: Instant) {
    inner.pairs.retain(|_, s| s.busy || now - s.last < LONGEST_WAIT + ADDRESS_WINDOW);
    inner.addresses.retain(|_, v| {
        v.retain(|t| now - *t < ADDRESS_WINDOW);
        !v.is_empty()
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn failures_slow_the_pair_down_and_nobody_else() {
        let t = Throttle::new(3);
        for _ in 0..3 {
            drop(t.take("ana", addr("10.0.0.9")).expect("the free attempts"));
        }
        let wait = t.take("ana", addr("10.0.0.9")).err().expect("the fourth waits");
        assert!(wait <= Duration::from_secs(1) && wait > Duration::ZERO, "{wait:?}");
        // The real user, from her own address, is not locked out by the guesser.
        t.take("ana", addr("192.168.1.5")).expect("another address").succeeded();
        t.take("bo", addr("10.0.0.9")).expect("another name");
        // The wait doubles with each failure after the free ones, and a success forgets it all.
        t.backdate(Duration::from_secs(1));
        drop(t.take("ana", addr("10.0.0.9")).unwrap());
        let wait = t.take("ana", addr("10.0.0.9")).err().unwrap();
        assert!(wait > Duration::from_secs(1) && wait <= Duration::from_secs(2), "{wait:?}");
        t.backdate(Duration::from_secs(2));
        t.take("ana", addr("10.0.0.9")).unwrap().succeeded();
        t.take("ana", addr("10.0.0.9")).expect("forgotten after a success").succeeded();
        assert_eq!(wait_after(3 + 40, 3), LONGEST_WAIT, "the wait has a ceiling");
    }

    #[test]
    fn a_pair_has_one_attempt_at_a_time() {
        let t = Throttle::new(5);
        let first = t.take("ana", addr("10.0.0.9")).unwrap();
        assert!(t.take("ana", addr("10.0.0.9")).is_err(), "a parallel guess waits for the first");
        drop(first);
        assert!(t.take("ana", addr("10.0.0.9")).is_ok());
    }

    #[test]
    fn an_address_spraying_names_waits_as_a_whole() {
        let t = Throttle::new(2);
        for i in 0..20 {
            drop(t.take(&format!("user{i}"), addr("10.0.0.66")).expect("one guess per name"));
        }
        assert!(t.take("someone-else", addr("10.0.0.66")).is_err(), "20 failures in 10 minutes");
        assert!(t.take("someone-else", addr("10.0.0.67")).is_ok(), "the next address is not");
    }

    #[test]
    fn what_is_out_of_its_window_is_forgotten_keys_included() {
        let t = Throttle::new(2);
        for i in 0..30 {
            drop(t.take(&format!("once{i}"), addr(&format!("10.1.0.{i}"))).unwrap());
        }
        assert_eq!(t.kept(), (30, 30));
        t.backdate(LONGEST_WAIT + ADDRESS_WINDOW);
        drop(t.take("ana", addr("10.0.0.1")).unwrap());
        assert_eq!(t.kept(), (1, 1), "only the newest attempt is kept");
        let long = "x".repeat(10_000);
        drop(t.take(&long, addr("10.0.0.1")).unwrap());
        assert!(t.lock().pairs.keys().all(|(n, _)| n.len() <= NAME_CHARS));
    }
}
