//! Rate limits of the knock page: a token bucket per key (a source address, a claimed user
//! name), in a bounded map under a `std` mutex held for a few instructions. When the map is
//! full of keys still in use, a new key is refused (fail closed) rather than the map growing.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

/// Keys a limiter keeps at most.
pub const MAX_KEYS: usize = 16_384;

/// Attempts per key: `per_minute` a minute, and at most that many at once.
#[derive(Debug)]
pub struct RateLimit<K> {
    per_minute: u32,
    max_keys: usize,
    buckets: Mutex<HashMap<K, Bucket>>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl<K: Hash + Eq> RateLimit<K> {
    /// A limiter of `per_minute` attempts a minute per key, keeping at most `max_keys` keys.
    pub fn new(per_minute: u32, max_keys: usize) -> RateLimit<K> {
        RateLimit {
            per_minute: per_minute.max(1),
            max_keys: max_keys.max(1),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one attempt for `key` at `now`; `false` when it is over the limit.
    pub fn take(&self, key: K, now: Instant) -> bool {
        let capacity = f64::from(self.per_minute);
        let per_second = capacity / 60.0;
        let refill = |b: &Bucket| {
            let t = b.tokens + now.saturating_duration_since(b.at).as_secs_f64() * per_second;
            t.min(capacity)
        };
        // A poisoned lock only means another thread panicked mid-update of a counter: the
        // counters are still usable.
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !buckets.contains_key(&key) && buckets.len() >= self.max_keys {
            // Forget keys whose buckets have refilled: they are as good as new.
            buckets.retain(|_, b| refill(b) < capacity);
            if buckets.len() >= self.max_keys {
                return false;
            }
        }
        let bucket = buckets.entry(key).or_insert(Bucket {
            tokens: capacity,
            at: now,
        });
        bucket.tokens = refill(bucket);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The key an address is limited by: itself for IPv4, its /64 for IPv6 (one subscriber's
/// network, whose addresses are free to pick).
pub fn address_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(bits.into())
        }
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_key_gets_its_burst_then_one_per_interval() {
        let t0 = Instant::now();
        let limit = RateLimit::new(3, 100);
        assert!(limit.take("a", t0) && limit.take("a", t0) && limit.take("a", t0));
        assert!(!limit.take("a", t0), "the fourth at once is refused");
        assert!(limit.take("b", t0), "another key is not affected");
        assert!(
            limit.take("a", t0 + Duration::from_secs(20)),
            "one back after 20 s"
        );
        assert!(!limit.take("a", t0 + Duration::from_secs(20)));
    }

    #[test]
    fn a_full_map_forgets_refilled_keys_else_refuses() {
        let t0 = Instant::now();
        let limit = RateLimit::new(1, 2);
        assert!(limit.take(1, t0) && limit.take(2, t0));
        assert!(!limit.take(3, t0), "full of keys in use: refused");
        assert!(
            limit.take(3, t0 + Duration::from_secs(61)),
            "the others refilled"
        );
    }

    #[test]
    fn ipv6_is_limited_per_64() {
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(address_key(a), address_key(b));
        assert_ne!(address_key(a), address_key(c));
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(address_key(mapped), "192.0.2.7".parse::<IpAddr>().unwrap());
    }
}
