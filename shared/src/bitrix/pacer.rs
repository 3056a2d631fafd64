//! Bitrix24's own rate limit mirrored on our side: a leaky bucket per portal that drains
//! at a steady rate and holds a burst (`settings/performance/limits.md`). A call that
//! would overflow it waits its turn, so the portal never has to refuse us; a turn further
//! off than the caller can wait is refused at once, with the time it would have waited.

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

/// The pace of token checks for requests nobody has authenticated yet (placements, the
/// connectors page, install events), per portal: a bucket of its own, so that whoever
/// knows a portal's `member_id` can fill only this one, never the one real work drains.
/// Bitrix24 counts "each application request" (`settings/performance/limits.md`); a
/// request with a token it does not know is no application's, so a forged check costs the
/// portal's count nothing, and a confirmed one is then charged to the work bucket too.
/// Ten at once and one a second by default (settings: `OLCHAT_PORTAL_CHECK_RATE` / `_BURST`):
/// more tabs than a portal's users open at once, far fewer requests than a flood would make us send.
pub const CHECK_RATE: PortalRate = PortalRate { per_sec: 1.0, burst: 10.0 };

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

    /// Waits until a call to `portal` fits in its bucket, if that is within `max_wait`;
    /// otherwise reserves nothing and says how long the wait would be.
    pub async fn acquire(&self, portal: &str, max_wait: Duration) -> Result<(), Duration> {
        let wait = self.reserve(portal, Instant::now(), max_wait)?;
        if !wait.is_zero() {
            tracing::debug!(wait_ms = wait.as_millis() as u64, "pacing Bitrix24 calls");
            tokio::time::sleep(wait).await;
        }
        Ok(())
    }

    /// Counts a call to `portal` that was made without a reservation here.
    pub fn charge(&self, portal: &str) {
        // With no limit on the wait, the call is always added.
        let _ = self.add(portal, Instant::now(), None);
    }

    /// How full `portal`'s bucket is now, in calls.
    pub fn level(&self, portal: &str) -> f64 {
        let levels = self.levels.lock().unwrap_or_else(|p| p.into_inner());
        levels.get(portal).map_or(0.0, |(level, at)| (level - at.elapsed().as_secs_f64() * self.rate).max(0.0))
    }

    /// Adds one call made at `now` (or as soon as it fits): how long it must wait; or, when
    /// that is longer than `max_wait`, the wait, and the call is not added.
    fn reserve(&self, portal: &str, now: Instant, max_wait: Duration) -> Result<Duration, Duration> {
        self.add(portal, now, Some(max_wait))
    }

    fn add(&self, portal: &str, now: Instant, max_wait: Option<Duration>) -> Result<Duration, Duration> {
        let mut levels = self.levels.lock().unwrap_or_else(|p| p.into_inner());
        let (level, at) = levels.entry(portal.to_owned()).or_insert((0.0, now));
        let drained = (*level - now.saturating_duration_since(*at).as_secs_f64() * self.rate).max(0.0);
        let wait = Duration::from_secs_f64(((drained + 1.0 - self.burst) / self.rate).max(0.0));
        if max_wait.is_some_and(|max| wait > max) {
            return Err(wait);
        }
        *level = drained + 1.0;
        *at = now;
        Ok(wait)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PATIENT: Duration = Duration::from_secs(3600);

    #[test]
    fn a_burst_passes_then_calls_are_paced_per_portal() {
        let bucket = LeakyBucket::new(PortalRate { per_sec: 2.0, burst: 2.0 });
        let t0 = Instant::now();
        assert_eq!(bucket.reserve("a", t0, PATIENT), Ok(Duration::ZERO));
        assert_eq!(bucket.reserve("a", t0, PATIENT), Ok(Duration::ZERO));
        assert_eq!(bucket.reserve("a", t0, PATIENT), Ok(Duration::from_millis(500)));
        assert_eq!(bucket.reserve("a", t0, PATIENT), Ok(Duration::from_millis(1000)));
        assert_eq!(bucket.reserve("b", t0, PATIENT), Ok(Duration::ZERO), "another portal has its own bucket");
        // Two seconds later four calls have drained: the bucket is empty again.
        assert_eq!(bucket.reserve("a", t0 + Duration::from_secs(2), PATIENT), Ok(Duration::ZERO));
    }

    #[test]
    fn a_turn_further_off_than_the_caller_can_wait_is_refused_at_once_and_reserves_nothing() {
        let bucket = LeakyBucket::new(PortalRate { per_sec: 1.0, burst: 1.0 });
        let t0 = Instant::now();
        assert_eq!(bucket.reserve("a", t0, Duration::ZERO), Ok(Duration::ZERO));
        assert_eq!(bucket.reserve("a", t0, Duration::from_millis(999)), Err(Duration::from_secs(1)));
        // The refusal took no turn: a caller that can wait a second is next, not second next.
        assert_eq!(bucket.reserve("a", t0, Duration::from_secs(1)), Ok(Duration::from_secs(1)));
        assert_eq!(bucket.reserve("a", t0 + Duration::from_secs(2), Duration::ZERO), Ok(Duration::ZERO));
    }

    #[test]
    fn a_charged_call_counts_without_waiting() {
        let bucket = LeakyBucket::new(PortalRate { per_sec: 1.0, burst: 1.0 });
        bucket.charge("a");
        assert!(bucket.reserve("a", Instant::now(), Duration::ZERO).is_err(), "the charged call filled the bucket");
    }
}
