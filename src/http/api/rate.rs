//! The download API's per-client rate limit, in bounded memory.
//!
//! A generic cell rate algorithm (GCRA) per client: `N` requests per minute, with a burst of
//! up to `N` at once; one instant per client is all it keeps. Clients are keyed by IPv4
//! address, or by IPv6 /64 prefix (one host usually holds a whole /64, so counting its
//! addresses apart would let it rotate through them).
//!
//! The table holds at most `MAX_CLIENTS` clients whatever the callers do. When it is full,
//! clients whose allowance is whole again are dropped first (they are indistinguishable from
//! new ones), at most once a second; clients that still find no room share one overflow
//! allowance. A caller rotating addresses thus cannot grow memory, nor reset a tracked
//! client's count, and only shares a limit with other callers it cannot see.
//!
//! (The `governor` crate's keyed limiter keeps a map that grows until `retain_recent` is
//! called and has no bound of its own; this is the same algorithm with the bound built in.)

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// Clients tracked apart at most (about 5 MiB at most).
pub(crate) const MAX_CLIENTS: usize = 65_536;

/// How often a full table may be scanned for clients to drop.
const PURGE_EVERY: Duration = Duration::from_secs(1);

/// The key of a client: an IPv4 address or an IPv6 /64 prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum ClientKey {
    /// An IPv4 client (also IPv4-mapped IPv6).
    V4(u32),
    /// An IPv6 client's /64.
    V6(u64),
}

impl From<IpAddr> for ClientKey {
    fn from(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => ClientKey::V4(u32::from(v4)),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => ClientKey::V4(u32::from(v4)),
                None => ClientKey::V6((u128::from(v6) >> 64) as u64),
            },
        }
    }
}

/// A per-client limit of requests per minute.
#[derive(Debug)]
pub(crate) struct RateLimiter {
    /// Time one request uses of the allowance.
    interval: Duration,
    /// The whole allowance (a minute).
    burst: Duration,
    capacity: usize,
    table: Mutex<Table>,
}

#[derive(Debug)]
struct Table {
    /// Per client: when its allowance is whole again (the "theoretical arrival time").
    clients: HashMap<ClientKey, Instant>,
    overflow: Instant,
    last_purge: Option<Instant>,
}

impl RateLimiter {
    /// `per_minute` requests a minute per client (at least 1).
    pub fn new(per_minute: u32) -> Self {
        Self::with_capacity(per_minute, MAX_CLIENTS)
    }

    /// The same with another table size (the tests).
    pub fn with_capacity(per_minute: u32, capacity: usize) -> Self {
        let per_minute = per_minute.max(1);
        let burst = Duration::from_secs(60);
        let now = Instant::now();
        Self {
            interval: burst / per_minute,
            burst,
            capacity: capacity.max(1),
            table: Mutex::new(Table {
                clients: HashMap::new(),
                overflow: now,
                last_purge: None,
            }),
        }
    }

    /// Counts a request of `client` at `now`: `Ok` when allowed, else the time until it
    /// would be.
    pub fn check(&self, client: ClientKey, now: Instant) -> Result<(), Duration> {
        let mut t = self.table.lock().unwrap_or_else(|e| e.into_inner());
        if !t.clients.contains_key(&client) && t.clients.len() >= self.capacity {
            let due = t.last_purge.is_none_or(|at| now >= at + PURGE_EVERY);
            if due {
                t.last_purge = Some(now);
                t.clients.retain(|_, whole_at| *whole_at > now);
            }
            if t.clients.len() >= self.capacity {
                let overflow = t.overflow;
                return self.take(overflow, now).map(|next| t.overflow = next);
            }
        }
        let current = t.clients.get(&client).copied().unwrap_or(now);
        let next = self.take(current, now)?;
        t.clients.insert(client, next);
        Ok(())
    }

    /// GCRA: the next "whole again" instant if a request fits the allowance.
    fn take(&self, whole_at: Instant, now: Instant) -> Result<Instant, Duration> {
        let next = whole_at.max(now) + self.interval;
        let limit = now + self.burst;
        if next <= limit {
            Ok(next)
        } else {
            Err(next - limit)
        }
    }

    /// Clients tracked apart now.
    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.table
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clients
            .len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(n: u32) -> ClientKey {
        ClientKey::V4(n)
    }

    #[test]
    fn a_client_gets_its_minute_at_once_then_one_request_per_interval() {
        let rl = RateLimiter::new(120);
        let t = Instant::now();
        for i in 0..120 {
            assert_eq!(rl.check(v4(1), t), Ok(()), "request {i}");
        }
        let wait = rl.check(v4(1), t).unwrap_err();
        assert_eq!(wait, Duration::from_millis(500));
        assert!(rl.check(v4(1), t + Duration::from_millis(499)).is_err());
        assert_eq!(rl.check(v4(1), t + Duration::from_millis(500)), Ok(()));
        // Another client is counted apart.
        assert_eq!(rl.check(v4(2), t), Ok(()));
    }

    #[test]
    fn ipv6_clients_are_counted_by_their_64_prefix() {
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(ClientKey::from(a), ClientKey::from(b));
        assert_ne!(ClientKey::from(a), ClientKey::from(c));
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        let plain: IpAddr = "192.0.2.7".parse().unwrap();
        assert_eq!(ClientKey::from(mapped), ClientKey::from(plain));
    }

    #[test]
    fn rotating_addresses_cannot_grow_the_table_nor_reset_a_tracked_client() {
        let rl = RateLimiter::with_capacity(2, 100);
        let t = Instant::now();
        assert_eq!(rl.check(v4(0), t), Ok(()));
        assert_eq!(rl.check(v4(0), t), Ok(()));
        assert!(rl.check(v4(0), t).is_err());
        for n in 1..10_000 {
            let _ = rl.check(v4(n), t);
        }
        assert_eq!(rl.tracked(), 100);
        // The tracked client is still limited; the overflow is limited as one client.
        assert!(rl.check(v4(0), t).is_err());
        assert!(rl.check(v4(50_000), t).is_err());
        // A minute later every allowance is whole: the table makes room again.
        let later = t + Duration::from_secs(61);
        assert_eq!(rl.check(v4(60_000), later), Ok(()));
        assert_eq!(rl.tracked(), 1);
    }
}
