//! What a tenant may keep and write on its shared etcd, the meter that says when it does more,
//! and the walls that stop it. Pure: sizes, times and limits in, decisions out.
//!
//! Two limits, both enforced by kamajid from the shard's own events (the usage watch):
//! - the **storage quota**: bytes of keys and values the tenant keeps (its live data);
//! - the **write budget**: bytes per second it may write, with a burst. Every write adds to the
//!   shard's history until compaction, so the budget is what bounds the history a tenant can
//!   pile up (about `budget × 2 × retention`), which a quota on live data does not: rewriting one
//!   large object over and over keeps its live size flat and fills the shard anyway.
//!
//! Two walls, because etcd has no per-prefix quota and a policy inside the tenant can be deleted
//! by the tenant's own cluster-admin:
//! - the **soft wall**: a ValidatingAdmissionPolicy inside the tenant that refuses creates and
//!   updates from anyone but the control plane, with a message naming the limit. It takes about
//!   a second to come into force (the apiserver's policy informer) and can be deleted;
//! - the **hard wall**: the tenant's etcd role made read-only (but for the admission policies,
//!   so kamajid can put the soft wall in place through the apiserver). It holds at once and no
//!   one inside the tenant can take it down. It goes up the moment a limit is passed and stays
//!   until the soft wall is proven in force; it goes up again whenever the soft wall is touched
//!   or not respected ([`hard_due`]).

use std::collections::VecDeque;

/// A tenant's default write budget is what writes its reservation again in this many seconds.
pub const BUDGET_SECONDS: i64 = 300;
/// Its burst is this many seconds of budget.
pub const BURST_SECONDS: i64 = 75;
/// A quota wall comes down once the tenant keeps less than this share (percent) of its quota,
/// so that it does not flap at the edge.
pub const QUOTA_CLEAR_PERCENT: i64 = 95;
/// While the soft wall is in force, the hard wall goes up again past this share (percent) of the
/// quota, or twice the burst: the soft wall is not holding (the control plane's own writes,
/// which it lets through, or a policy changed behind kamajid's back).
pub const HARD_PERCENT: i64 = 110;

/// A hard wall past this many bursts of debt locks the tenant's role entirely: it kept writing
/// even through the two keys the hard wall leaves it (kamajid's policy).
pub const LOCK_BURSTS: i64 = 3;

/// What a tenant may keep and write on its shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Bytes of keys and values it may keep.
    pub quota_bytes: i64,
    /// Bytes per second it may write, sustained...
    pub write_bytes_per_second: i64,
    /// ...and in a burst beyond that.
    pub burst_bytes: i64,
}

impl Limits {
    /// The limits of a tenant with `quota_bytes`, writing `budget` bytes per second (`None`: the
    /// default for its `reservation_bytes`).
    pub fn new(quota_bytes: i64, reservation_bytes: i64, budget: Option<i64>) -> Self {
        let rate = budget.unwrap_or_else(|| default_budget(reservation_bytes));
        Self {
            quota_bytes,
            write_bytes_per_second: rate,
            burst_bytes: rate.saturating_mul(BURST_SECONDS),
        }
    }
}

/// The write budget of a tenant reserving `reservation_bytes`: its reservation written again
/// every [`BUDGET_SECONDS`], so the history it can pile up within a compaction retention stays
/// about its reservation (64 MiB → 218 KiB/s; an idle tenant writes about 1 KB/s).
pub fn default_budget(reservation_bytes: i64) -> i64 {
    (reservation_bytes / BUDGET_SECONDS).max(1024)
}

/// A tenant's writes, metered from the shard's events: a leaky bucket (the bytes written beyond
/// the budget, draining at the budget's rate) for the wall, and bytes per 10-second slot for the
/// figures shown to users. Times are milliseconds on any monotonic clock.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Meter {
    debt: f64,
    last_ms: i64,
    slots: VecDeque<(i64, i64)>,
}

const SLOT_MS: i64 = 10_000;

impl Meter {
    /// `bytes` written at `now_ms` by a tenant whose budget is `rate` bytes per second; slots
    /// older than `keep_secs` are dropped.
    pub fn record(&mut self, bytes: i64, now_ms: i64, rate: i64, keep_secs: i64) {
        self.debt = self.debt_at(now_ms, rate) + bytes as f64;
        self.last_ms = self.last_ms.max(now_ms);
        let slot = now_ms.div_euclid(SLOT_MS);
        match self.slots.back_mut() {
            Some((s, b)) if *s == slot => *b += bytes,
            _ => self.slots.push_back((slot, bytes)),
        }
        let oldest = (now_ms - keep_secs * 1000).div_euclid(SLOT_MS);
        while self.slots.front().is_some_and(|(s, _)| *s < oldest) {
            self.slots.pop_front();
        }
    }

    fn debt_at(&self, now_ms: i64, rate: i64) -> f64 {
        let drained = (now_ms - self.last_ms).max(0) as f64 / 1000.0 * rate as f64;
        (self.debt - drained).max(0.0)
    }

    /// Bytes written beyond the budget, not yet drained, at `now_ms`.
    pub fn debt(&self, now_ms: i64, rate: i64) -> i64 {
        self.debt_at(now_ms, rate) as i64
    }

    /// Forgets the debt (a tenant that just arrived on this shard: a move's copy is kamajid's
    /// writing, not the tenant's).
    pub fn forgive(&mut self) {
        self.debt = 0.0;
    }

    /// Bytes written in the `secs` seconds before `now_ms` (whole slots).
    pub fn written_within(&self, now_ms: i64, secs: i64) -> i64 {
        let oldest = (now_ms - secs * 1000).div_euclid(SLOT_MS);
        self.slots
            .iter()
            .filter(|(s, _)| *s >= oldest)
            .map(|(_, b)| b)
            .sum()
    }

    /// Bytes per second written over the last minute.
    pub fn rate(&self, now_ms: i64) -> i64 {
        self.written_within(now_ms, 60) / 60
    }
}

/// How high a tenant's hard wall is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub enum Wall {
    #[default]
    Down,
    /// Its etcd role is read-only but for kamajid's policy keys.
    Up,
    /// Its etcd role is read-only: it kept writing even through the policy keys.
    Locked,
}

/// What kamajid enforces on one tenant of one datastore.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Guard {
    /// Its limits, as the lifecycle registered them (none yet: nothing is enforced).
    pub limits: Option<Limits>,
    /// A move holds its writes on this datastore (its role is read-only).
    pub held: bool,
    /// The hard wall.
    pub wall: Wall,
    /// The soft wall (the policy inside the tenant) is proven to refuse writes.
    pub soft: bool,
    /// The lifecycle has set the tenant's walls (and so its role) since this process started.
    pub synced: bool,
    /// What the tenant's record says it is walled for (the watch keeps the walls' hysteresis).
    pub walled: Breach,
}

/// What a tenant keeps and writes on a datastore, and how it is walled there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Metered {
    pub usage: crate::usage::StorageUsage,
    /// Bytes per second written over the last minute.
    pub write_bytes_per_second: i64,
    /// Bytes written within the history the datastore keeps.
    pub history_bytes: i64,
    /// Bytes written beyond its budget and not drained yet (0 while no limits are registered).
    pub debt_bytes: i64,
    pub guard: Guard,
}

/// The hard wall a tenant needs now, given its soft wall (`soft`: proven in force): locked
/// when its debt passes [`LOCK_BURSTS`] bursts, up when [`hard_due`], else `None` (no reason to
/// raise it; only the lifecycle lowers it).
pub fn wall_due(used: i64, debt: i64, l: &Limits, soft: bool, walled: Breach) -> Option<Wall> {
    if debt > l.burst_bytes.saturating_mul(LOCK_BURSTS) {
        Some(Wall::Locked)
    } else if hard_due(used, debt, l, soft, walled) {
        Some(Wall::Up)
    } else {
        None
    }
}

/// Which limits a tenant is walled for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Breach {
    pub quota: bool,
    pub budget: bool,
}

impl Breach {
    pub fn any(self) -> bool {
        self.quota || self.budget
    }
}

/// The limits a tenant keeping `used` bytes with `debt` bytes of writes beyond its budget is
/// walled for, given those it was walled for (`walled`): a wall goes up past a limit and comes
/// down only well within it ([`QUOTA_CLEAR_PERCENT`], half the burst), so it does not flap.
pub fn breach(used: i64, debt: i64, l: &Limits, walled: Breach) -> Breach {
    Breach {
        quota: if walled.quota {
            used * 100 >= l.quota_bytes * QUOTA_CLEAR_PERCENT
        } else {
            used > l.quota_bytes
        },
        budget: if walled.budget {
            debt > l.burst_bytes / 2
        } else {
            debt > l.burst_bytes
        },
    }
}

/// Whether the hard wall must go up (again) for a tenant walled for `walled` whose soft wall is
/// in force (`soft`): at once past a limit (or still past it, by the walls' hysteresis) while it
/// is not, or well past one while it is.
pub fn hard_due(used: i64, debt: i64, l: &Limits, soft: bool, walled: Breach) -> bool {
    if soft {
        used * 100 > l.quota_bytes * HARD_PERCENT || debt > l.burst_bytes.saturating_mul(2)
    } else {
        breach(used, debt, l, walled).any()
    }
}

/// What a refused write says inside the tenant: which limit, and how to get back under it.
/// Without live figures, so the policy carrying it does not change while the wall is up.
pub fn message(cluster: &str, b: Breach, l: &Limits) -> String {
    let mut why = Vec::new();
    if b.quota {
        why.push(format!(
            "keeps more than its storage quota of {} bytes: new objects and updates are \
             refused (deletes work) until it keeps less than {} % of it, or \
             storage_quota_bytes is raised",
            l.quota_bytes, QUOTA_CLEAR_PERCENT
        ));
    }
    if b.budget {
        why.push(format!(
            "wrote more than its write budget of {} bytes/s allows (a burst of {} bytes): new \
             objects and updates are refused for about {} s while the burst drains, or until \
             write_budget_bytes_per_second is raised",
            l.write_bytes_per_second,
            l.burst_bytes,
            (l.burst_bytes / 2) / l.write_bytes_per_second.max(1)
        ));
    }
    format!("tenant cluster {cluster} {}", why.join("; and it "))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: i64 = 1 << 20;

    fn l() -> Limits {
        Limits::new(64 * MIB, 64 * MIB, None)
    }

    #[test]
    fn the_default_budget_writes_the_reservation_again_in_five_minutes() {
        let l = l();
        assert_eq!(l.write_bytes_per_second, 64 * MIB / 300);
        assert_eq!(l.burst_bytes, l.write_bytes_per_second * 75);
        assert_eq!(Limits::new(1, 1, Some(5000)).burst_bytes, 375_000);
        assert_eq!(default_budget(0), 1024);
    }

    #[test]
    fn the_debt_grows_with_writes_beyond_the_budget_and_drains_at_its_rate() {
        let rate = 1000;
        let mut m = Meter::default();
        // An idle tenant writing less than its budget owes nothing.
        for s in 0..100 {
            m.record(500, s * 1000, rate, 600);
        }
        assert!(m.debt(100_000, rate) <= 500, "{}", m.debt(100_000, rate));
        // A burst: 50 kB at once.
        m.record(50_000, 100_000, rate, 600);
        assert!((50_000..=50_500).contains(&m.debt(100_000, rate)));
        // Ten seconds later, 10 kB drained.
        assert!((40_000..=40_500).contains(&m.debt(110_000, rate)));
        assert_eq!(m.debt(200_000, rate), 0);
        m.record(10, 200_000, rate, 600);
        m.forgive();
        assert_eq!(m.debt(200_000, rate), 0);
    }

    #[test]
    fn figures_count_what_was_written_in_the_window() {
        let mut m = Meter::default();
        for s in 0..700 {
            m.record(100, s * 1000, 1 << 30, 600);
        }
        assert_eq!(m.rate(700_000), 100);
        let h = m.written_within(700_000, 600);
        assert!((59_000..=61_000).contains(&h), "{h}");
        assert!(m.slots.len() <= 62, "{}", m.slots.len());
    }

    #[test]
    fn walls_go_up_past_a_limit_and_come_down_well_within_it() {
        let l = l();
        let none = Breach::default();
        assert_eq!(breach(64 * MIB, 0, &l, none), none);
        let q = breach(64 * MIB + 1, 0, &l, none);
        assert!(q.quota && !q.budget);
        // Just under the quota again: still walled, until 95 %.
        assert!(breach(64 * MIB - 1, 0, &l, q).quota);
        assert!(!breach(60 * MIB, 0, &l, q).quota);
        let b = breach(0, l.burst_bytes + 1, &l, none);
        assert!(b.budget && !b.quota);
        assert!(breach(0, l.burst_bytes / 2 + 1, &l, b).budget);
        assert!(!breach(0, l.burst_bytes / 2, &l, b).any());
    }

    #[test]
    fn the_hard_wall_goes_up_at_once_and_again_when_the_soft_wall_is_not_holding() {
        let l = l();
        let none = Breach::default();
        assert!(hard_due(64 * MIB + 1, 0, &l, false, none));
        assert!(
            !hard_due(64 * MIB + 1, 0, &l, true, none),
            "the soft wall holds it"
        );
        assert!(hard_due(71 * MIB, 0, &l, true, none), "past 110 %");
        assert!(hard_due(0, l.burst_bytes * 2 + 1, &l, true, none));
        assert!(!hard_due(0, l.burst_bytes + 1, &l, true, none));
        // Its soft wall removed while it is still walled for its budget (draining): up again,
        // though no longer past the burst itself.
        let budget = Breach {
            quota: false,
            budget: true,
        };
        assert!(!hard_due(0, l.burst_bytes * 3 / 4, &l, false, none));
        assert!(hard_due(0, l.burst_bytes * 3 / 4, &l, false, budget));
        assert_eq!(
            wall_due(0, l.burst_bytes * 3 + 1, &l, true, none),
            Some(Wall::Locked)
        );
    }

    #[test]
    fn the_message_names_the_limit_and_how_to_get_back_under_it() {
        let l = l();
        let both = Breach {
            quota: true,
            budget: true,
        };
        let m = message("acme", both, &l);
        assert!(
            m.starts_with(
                "tenant cluster acme keeps more than its storage quota of 67108864 bytes"
            ),
            "{m}"
        );
        assert!(m.contains("storage_quota_bytes") && m.contains("write_budget_bytes_per_second"));
        assert!(m.contains("223696 bytes/s"), "{m}");
    }
}
