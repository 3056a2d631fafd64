//! Bitrix24's own rate limit mirrored on our side: a leaky bucket per portal that drains
//! at a steady rate and holds a burst. A call that would overflow it waits, so the portal
//! never has to refuse us.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How fast a portal takes requests: Bitrix24's standard plans drain 2 a second and block
/// above 50; Enterprise, 5 and 250.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PortalRate {
    pub per_sec: f64,
    pub burst: f64,
}

impl Default for PortalRate {
    fn default() -> Self {
        Self { per_sec: 2.0, burst: 50.0 }
    }
}

pub struct LeakyBucket {
    rate: f64,
    burst: f64,
    /// Per portal: the level after the last reservation, and when it was made.
    levels: Mutex<HashMap<String, (f64, Instant)>>,
}

impl LeakyBucket {
    pub fn new(rate: PortalRate) -> Self {
        Self { rate: rate.per_sec, burst: rate.burst, levels: Mutex::new(HashMap::new()) }
    }

    /// Waits until a call to `portal` fits in its bucket.
    pub async fn acquire(&self, portal: &str) {
        let wait = self.reserve(portal, Instant::now());
        if !wait.is_zero() {
            tracing::debug!(wait_ms = wait.as_millis() as u64, "pacing Bitrix24 calls");
            tokio::time::sleep(wait).await;
        }
    }

    /// Adds one call made at `now` (or as soon as it fits): how long it must wait.
    fn reserve(&self, portal: &str, now: Instant) -> Duration {
        let mut levels = self.levels.lock().unwrap_or_else(|p| p.into_inner());
        let (level, at) = levels.entry(portal.to_owned()).or_insert((0.0, now));
        let drained = (*level - now.saturating_duration_since(*at).as_secs_f64() * self.rate).max(0.0);
        *level = drained + 1.0;
        *at = now;
        Duration::from_secs_f64(((*level - self.burst) / self.rate).max(0.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_passes_then_calls_are_paced_per_portal() {
        let bucket = LeakyBucket::new(PortalRate { per_sec: 2.0, burst: 2.0 });
        let t0 = Instant::now();
        assert_eq!(bucket.reserve("a", t0), Duration::ZERO);
        assert_eq!(bucket.reserve("a", t0), Duration::ZERO);
        assert_eq!(bucket.reserve("a", t0), Duration::from_millis(500));
        assert_eq!(bucket.reserve("a", t0), Duration::from_millis(1000));
        assert_eq!(bucket.reserve("b", t0), Duration::ZERO, "another portal has its own bucket");
        // Two seconds later four calls have drained: the bucket is empty again.
        assert_eq!(bucket.reserve("a", t0 + Duration::from_secs(2)), Duration::ZERO);
    }
}
