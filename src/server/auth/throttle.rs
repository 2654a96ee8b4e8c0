//! Sign-in attempts, throttled per (user name, client address) instead of a hard lock-out: after
//! `free` failures in a row, each further attempt of that pair waits twice as long as the one
//! before (1 s, 2 s, 4 s, … at most 15 minutes). A guesser slows to a crawl, while the real user,
//! from their own address, is never locked out by somebody else's failures. Turns are taken
//! atomically before the password is checked, each in flight counted against the free attempts:
//! a burst of parallel guesses gets the free attempts left, not more, and once they are spent the
//! pair has one attempt at a time (two tabs signing in at once both get through). An address
//! failing for many names (spraying) waits as a whole once it has failed, or has in flight,
//! `free * 10` attempts within 10 minutes. Addresses are keyed as the network one client holds:
//! an IPv4 address, an IPv6 /64 (a client with a /64 cannot take fresh turns per address). When
//! the table is full, the pairs idle longest are forgotten first (never a real user's turn).

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
    /// Attempts in flight.
    busy: u32,
}

#[derive(Default)]
struct Inner {
    pairs: HashMap<Pair, Streak>,
    /// Per address: its failures in the window, and its attempts in flight.
    addresses: HashMap<IpAddr, (Vec<Instant>, u32)>,
    /// When stale entries were last forgotten (at most once a second).
    swept: Option<Instant>,
}

/// The key of a client's address: IPv4 as it is, IPv6 as its /64 (IPv4-mapped IPv6 as IPv4).
pub fn network_of(addr: IpAddr) -> IpAddr {
    match addr.to_canonical() {
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
        v4 => v4,
    }
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
            if let Some((_, busy)) = self.pair.1.and_then(|a| inner.addresses.get_mut(&a)) {
                *busy = busy.saturating_sub(1);
            }
            return;
        }
        if let Some(s) = inner.pairs.get_mut(&self.pair) {
            s.failures = s.failures.saturating_add(1);
            s.last = now;
            s.busy = s.busy.saturating_sub(1);
        }
        if let Some(addr) = self.pair.1 {
            let (failures, busy) = inner.addresses.entry(addr).or_default();
            failures.push(now);
            *busy = busy.saturating_sub(1);
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
        Throttle { free: free.clamp(1, 1000), inner: Mutex::default() }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The turn of `user` from `address`, or how long to wait for it.
    pub fn take(&self, user: &str, address: Option<IpAddr>) -> Result<Turn<'_>, Duration> {
        let now = Instant::now();
        let address = address.map(network_of);
        let pair: Pair = (user.chars().take(NAME_CHARS).collect(), address);
        let mut inner = self.lock();
        if inner.swept.is_none_or(|t| now.saturating_duration_since(t) >= Duration::from_secs(1)) {
            forget_stale(&mut inner, now);
            inner.swept = Some(now);
        }
        if let Some(addr) = address {
            let (recent, busy) = inner.addresses.get(&addr).map_or((&[][..], 0), |(v, b)| (v.as_slice(), *b));
            if recent.len() + busy as usize >= (self.free * ADDRESS_FACTOR) as usize {
                let oldest = recent.first().map_or(Duration::ZERO, |t| now.saturating_duration_since(*t));
                return Err(ADDRESS_WINDOW.saturating_sub(oldest).max(Duration::from_secs(1)));
            }
        }
        if !inner.pairs.contains_key(&pair) && inner.pairs.len() >= MAX_PAIRS {
            forget_idlest(&mut inner);
        }
        let streak = inner.pairs.entry(pair.clone()).or_insert(Streak { failures: 0, last: now, busy: 0 });
        // Within the free attempts, counting those in flight as failed until they say otherwise.
        if streak.failures + streak.busy >= self.free {
            if streak.busy > 0 {
                return Err(Duration::from_secs(1));
            }
            let waited = now.saturating_duration_since(streak.last);
            let wait = wait_after(streak.failures, self.free);
            if waited < wait {
                return Err(wait - waited);
            }
        }
        streak.busy += 1;
        if let Some(addr) = address {
            inner.addresses.entry(addr).or_default().1 += 1;
        }
        Ok(Turn { throttle: self, pair, ok: false })
    }

    #[cfg(test)]
    fn backdate(&self, by: Duration) {
        let mut inner = self.lock();
        for s in inner.pairs.values_mut() {
            s.last -= by;
        }
        for (v, _) in inner.addresses.values_mut() {
            v.iter_mut().for_each(|t| *t -= by);
        }
        inner.swept = None;
    }

    #[cfg(test)]
    fn kept(&self) -> (usize, usize) {
        let inner = self.lock();
        (inner.pairs.len(), inner.addresses.len())
    }
}

/// Forgets pairs whose wait has long passed and address failures out of the window.
fn forget_stale(inner: &mut Inner, now: Instant) {
    inner.pairs.retain(|_, s| s.busy > 0 || now.saturating_duration_since(s.last) < LONGEST_WAIT + ADDRESS_WINDOW);
    inner.addresses.retain(|_, (v, busy)| {
        v.retain(|t| now.saturating_duration_since(*t) < ADDRESS_WINDOW);
        !v.is_empty() || *busy > 0
    });
}

/// The table is full: the tenth of the pairs idle longest (none in flight) is forgotten.
fn forget_idlest(inner: &mut Inner) {
    let mut idle: Vec<(Instant, Pair)> =
        inner.pairs.iter().filter(|(_, s)| s.busy == 0).map(|(p, s)| (s.last, p.clone())).collect();
    idle.sort_by_key(|(last, _)| *last);
    for (_, p) in idle.into_iter().take(MAX_PAIRS / 10) {
        inner.pairs.remove(&p);
    }
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
    fn parallel_attempts_get_the_free_ones_left_then_one_at_a_time() {
        let t = Throttle::new(3);
        // Two tabs signing in at once: both get their turn.
        let (a, b) = (t.take("ana", addr("10.0.0.9")).unwrap(), t.take("ana", addr("10.0.0.9")).unwrap());
        a.succeeded();
        b.succeeded();
        // A burst of guesses: the three free ones, not a fourth, however parallel.
        let burst: Vec<_> = (0..10).filter_map(|_| t.take("ana", addr("10.0.0.9")).ok()).collect();
        assert_eq!(burst.len(), 3);
        drop(burst);
        assert!(t.take("ana", addr("10.0.0.9")).is_err(), "three failures: the pair waits");
        // Past the free ones, one at a time.
        t.backdate(Duration::from_secs(1));
        let one = t.take("ana", addr("10.0.0.9")).unwrap();
        assert!(t.take("ana", addr("10.0.0.9")).is_err(), "a parallel guess waits for the first");
        drop(one);
    }

    #[test]
    fn an_ipv6_client_is_its_64_and_a_mapped_ipv4_is_ipv4() {
        let t = Throttle::new(1);
        drop(t.take("ana", addr("2001:db8:1:2::5")).unwrap());
        assert!(t.take("ana", addr("2001:db8:1:2::6")).is_err(), "the same /64");
        assert!(t.take("ana", addr("2001:db8:1:3::6")).is_ok(), "another /64");
        assert_eq!(network_of("::ffff:10.1.2.3".parse().unwrap()), "10.1.2.3".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn parallel_names_from_one_address_count_while_in_flight() {
        let t = Throttle::new(2);
        let turns: Vec<_> = (0..50).filter_map(|i| t.take(&format!("user{i}"), addr("10.0.0.66")).ok()).collect();
        assert_eq!(turns.len(), 20, "the address's cap holds while the guesses are in flight");
    }

    #[test]
    fn a_full_table_forgets_the_idlest_pairs_not_new_users() {
        let t = Throttle::new(2);
        {
            let mut inner = t.lock();
            let old = Instant::now();
            for i in 0..MAX_PAIRS {
                inner.pairs.insert((format!("n{i}"), None), Streak { failures: 1, last: old, busy: 0 });
            }
        }
        t.take("ana", addr("10.0.0.1")).expect("a new pair when the table is full").succeeded();
        assert!(t.lock().pairs.len() <= MAX_PAIRS - MAX_PAIRS / 10 + 1);
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
