//! A job's hold on work another job may be doing at the same moment (the openline queue is an
//! SQS standard queue: it delivers out of order, in parallel, sometimes twice). Taken by a
//! conditional write on the work's record, ended by its holder, or by time if the holder died.

use std::time::Duration;

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// The job run holding it.
    pub holder: String,
    /// Unix ms.
    pub until: i64,
}

/// A record whose work is claimed with a lease.
pub trait Leased {
    fn lease(&mut self) -> &mut Option<Lease>;
}

/// What a claim found.
#[derive(Debug, PartialEq, Eq)]
pub enum Claim<T> {
    /// Ours until the lease ends: the record as claimed.
    Taken(T),
    /// Another job holds it this much longer.
    Held(Duration),
    /// Nothing left to do.
    Done,
}

/// Takes `slot` for `holder` until `now + term` (unix ms) unless another holder's lease is
/// still live: how much longer that one lasts then.
pub fn take(slot: &mut Option<Lease>, holder: &str, term: Duration, now: i64) -> Result<(), Duration> {
    match slot {
        Some(lease) if lease.holder != holder && lease.until > now => Err(Duration::from_millis((lease.until - now) as u64)),
        _ => {
            *slot = Some(Lease { holder: holder.to_owned(), until: now + term.as_millis() as i64 });
            Ok(())
        }
    }
}

/// Ends `holder`'s lease; `false` when it holds none (it expired and another took it).
pub fn release(slot: &mut Option<Lease>, holder: &str) -> bool {
    let ours = slot.as_ref().is_some_and(|l| l.holder == holder);
    if ours {
        *slot = None;
    }
    ours
}

#[cfg(test)]
mod tests {
    use super::*;

    const TERM: Duration = Duration::from_secs(10);

    #[test]
    fn a_live_lease_is_exclusive_until_it_ends_or_is_released() {
        let mut slot = None;
        assert_eq!(take(&mut slot, "a", TERM, 1_000), Ok(()));
        assert_eq!(take(&mut slot, "b", TERM, 2_000), Err(Duration::from_secs(9)));
        assert_eq!(take(&mut slot, "a", TERM, 2_000), Ok(()), "the holder may renew");
        assert!(!release(&mut slot, "b"), "only the holder releases");
        assert_eq!(take(&mut slot, "b", TERM, 12_000), Ok(()), "an expired lease is free");
        assert!(!release(&mut slot, "a"), "the old holder cannot end the new one's");
        assert!(release(&mut slot, "b"));
        assert_eq!((slot, take(&mut None, "c", TERM, 0)), (None, Ok(())));
    }
}
