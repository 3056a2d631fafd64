//! How often an account is caught up (`updates.getDifference` on a fresh connection): every
//! tick while there is reason to (a send, a manager watching one of its clients, a client's
//! reply, within their windows), else once in every quarter hour. An account that is only
//! connected then opens 96 connections a day instead of 1,440 (one a minute): official
//! clients keep one connection open, and a connection a minute from changing cloud addresses
//! is the pattern most likely to get an account flagged.

/// After a send: replies and reads are most likely in the hour that follows.
pub const AFTER_SEND_MS: i64 = 60 * 60_000;
/// After a manager looked at one of its clients, or a client wrote.
pub const AFTER_LOOK_MS: i64 = 15 * 60_000;
/// An idle account's catch-up interval.
pub const IDLE_EVERY_MS: i64 = 15 * 60_000;
/// A mark that moves the window by less than this is not written: a tab polling every few
/// seconds writes at most once in this long.
pub const MARK_SLACK_MS: i64 = 4 * 60_000;

/// The schedule's tick on AWS: `template.yaml`'s EventBridge rule, each minute at :00.
pub const AWS_TICK_MS: i64 = 60_000;

/// How new replies and reads reach the app, which tells an open tab when to look again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arrivals {
    /// With the catch-ups of the schedule's ticks, at the multiples of `every_ms` since the
    /// epoch (AWS: the EventBridge rule's `cron`, each minute at :00).
    AtTicks { every_ms: i64 },
    /// Any time: pushed by Telegram over a kept connection (the single-server deployment).
    Live,
}

/// How long a quiet open tab waits at most before it looks again while Telegram pushes.
pub const LIVE_LOOK_MS: i64 = 5_000;
/// How long after its tick a tick's catch-ups are taken to be done, at most (else a quarter of
/// the tick): the fan-out, the queue, a connection to Telegram.
const TICK_SETTLES_MS: i64 = 10_000;

impl Arrivals {
    /// The longest a tab may wait at `now` (unix ms) before its next look and still see what the
    /// next catch-ups bring within seconds: until the next tick's catch-ups are done. Looking more
    /// often while nothing of ours is in flight would only cost requests.
    pub fn look_within_ms(self, now: i64) -> i64 {
        match self {
            Arrivals::Live => LIVE_LOOK_MS,
            Arrivals::AtTicks { every_ms } => {
                let every = every_ms.max(1);
                let settles = (every / 4).min(TICK_SETTLES_MS);
                let since_tick = now.rem_euclid(every);
                if since_tick < settles { settles - since_tick } else { every - since_tick + settles }
            }
        }
    }
}

/// Whether a tick at `now` (the previous one at `now - every`) catches the account up: while
/// it is active (`active_until`, unix ms), at every tick; else at the tick that crosses its
/// quarter-hour mark. Each account's mark is offset by its id, so idle accounts do not all
/// connect at the same minute.
pub fn catch_up_due(connector_id: &str, active_until: i64, now: i64, every: i64) -> bool {
    if now < active_until {
        return true;
    }
    let offset = stable_hash(connector_id) % IDLE_EVERY_MS as u64;
    let quarter = |t: i64| (t - offset as i64).div_euclid(IDLE_EVERY_MS);
    quarter(now) != quarter(now - every.max(1))
}

/// Whether a tick at `now` (the previous one at `now - every`) is the first of its hour.
pub fn first_tick_of_hour(now: i64, every: i64) -> bool {
    const HOUR: i64 = 3_600_000;
    now.div_euclid(HOUR) != (now - every.max(1)).div_euclid(HOUR)
}

/// FNV-1a: the same offset on every instance and after every deploy.
fn stable_hash(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: i64 = 60_000;
    const DAY: i64 = 24 * 60 * MINUTE;

    fn ticks(id: &str, active_until: i64, from: i64, to: i64, every: i64) -> usize {
        (1..).map(|i| from + i * every).take_while(|&t| t <= to).filter(|&t| catch_up_due(id, active_until, t, every)).count()
    }

    #[test]
    fn one_tick_an_hour_is_its_first() {
        let hour = 1_800_000_000_000 - 1_800_000_000_000 % (60 * MINUTE);
        let firsts = |every: i64| (1..=24 * 60 * MINUTE / every).filter(|i| first_tick_of_hour(hour + i * every, every)).count();
        assert_eq!(firsts(MINUTE), 24);
        assert_eq!(firsts(5_000), 24);
        assert!(first_tick_of_hour(hour, MINUTE) && !first_tick_of_hour(hour + MINUTE, MINUTE));
    }

    #[test]
    fn a_quiet_tab_looks_again_just_after_the_next_ticks_catch_ups() {
        let minute = Arrivals::AtTicks { every_ms: MINUTE };
        let tick = 1_800_000_000_000 - 1_800_000_000_000 % MINUTE;
        assert_eq!(minute.look_within_ms(tick), 10_000, "10 s after its tick");
        assert_eq!(minute.look_within_ms(tick + 10_000), MINUTE, "just after: the next one");
        assert_eq!(minute.look_within_ms(tick + 30_000), 40_000);
        assert_eq!(minute.look_within_ms(tick + 59_999), 10_001);
        assert_eq!(Arrivals::AtTicks { every_ms: 5_000 }.look_within_ms(tick + 1_000), 250, "the sandbox's 5 s tick");
        assert_eq!(Arrivals::Live.look_within_ms(tick), LIVE_LOOK_MS);
    }

    #[test]
    fn an_idle_account_is_caught_up_once_a_quarter_hour_whatever_the_tick() {
        let start = 1_800_000_000_000;
        for id in ["sales", "support", "a1b2c3"] {
            assert_eq!(ticks(id, 0, start, start + DAY, MINUTE), 96, "{id}");
            assert_eq!(ticks(id, 0, start, start + DAY, 5_000), 96, "{id}: the sandbox's 5 s tick");
        }
        assert_ne!(stable_hash("sales") % IDLE_EVERY_MS as u64, stable_hash("support") % IDLE_EVERY_MS as u64, "spread");
    }

    #[test]
    fn an_active_account_is_caught_up_at_every_tick_until_its_window_ends() {
        let start = 1_800_000_000_000;
        let until = start + AFTER_SEND_MS;
        assert_eq!(ticks("sales", until, start, until - 1, MINUTE), 59);
        let after = ticks("sales", until, until, until + 3 * IDLE_EVERY_MS, MINUTE);
        assert_eq!(after, 3, "then back to the quarter hour");
    }
}
