//! Keeping a shared etcd healthy for months: when kamajid compacts a shard, when it defragments
//! a member, and when a shard that raised `NOSPACE` may take writes again. Pure: what etcd
//! reported and what was done before in, decisions out; the daemon's health loop carries them
//! out as the shard's root user.
//!
//! Why kamajid does this: a tenant apiserver cannot compact a shared etcd (its compactor's
//! compare-and-swap on `compact_rev_key`, at the root of the keyspace, is outside its role) and
//! defragmentation needs root, so without kamajid a shard keeps every revision ever written and
//! reaches its quota within days, and then every tenant on it is read-only.
//!
//! Retention: each round notes a mark (the current revision and the time); once the last mark is
//! `retention` old the shard is compacted to it and a new mark is noted. History between one and
//! two retentions old is kept, which is what a kube-apiserver's own compactor keeps on a dedicated
//! etcd (`--etcd-compaction-interval`, 5 minutes by default): a tenant's watches see `410 Gone`
//! no more often than on a cluster of its own.

use serde::{Deserialize, Serialize};

/// How a shard is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Seconds of history kept for tenants' watches (at least; at most twice this).
    pub retention_seconds: i64,
    /// A member is defragmented once this share (percent) of its file is free pages...
    pub defrag_free_percent: i64,
    /// ...and at least this many bytes are free.
    pub defrag_min_free_bytes: i64,
}

/// kube-apiserver's default `--etcd-compaction-interval`.
pub const RETENTION_SECONDS: i64 = 300;
pub const DEFRAG_FREE_PERCENT: i64 = 30;
pub const DEFRAG_MIN_FREE_BYTES: i64 = 64 << 20;

impl Default for Policy {
    fn default() -> Self {
        Self {
            retention_seconds: RETENTION_SECONDS,
            defrag_free_percent: DEFRAG_FREE_PERCENT,
            defrag_min_free_bytes: DEFRAG_MIN_FREE_BYTES,
        }
    }
}

/// What kamajid did to a shard, kept in its status across rounds, restarts and leader changes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Upkeep {
    /// The revision and time noted at the last round that compacted (or started): the next
    /// compaction goes to this revision once it is `retention` old.
    pub mark_revision: i64,
    pub mark_time: i64,
    /// The revision kamajid last compacted to, and when.
    pub compacted_revision: i64,
    pub compacted_time: i64,
    /// When a member was last defragmented.
    pub defragmented_time: i64,
    /// The last thing worth telling about: a recovery from `NOSPACE`, a compaction found done
    /// by someone else.
    pub last_event: String,
}

/// One member as its status reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberSize {
    /// Its file, free pages included.
    pub db_size: i64,
    /// What its data takes in that file.
    pub db_size_in_use: i64,
}

impl MemberSize {
    pub fn free(&self) -> i64 {
        (self.db_size - self.db_size_in_use).max(0)
    }
}

/// The revision to compact to this round, if any, and the mark to note: a new mark once the
/// old one is `retention` old (or there is none yet).
pub fn compaction(
    upkeep: &Upkeep,
    revision: i64,
    now: i64,
    policy: &Policy,
) -> (Option<i64>, Option<(i64, i64)>) {
    if upkeep.mark_time == 0 {
        return (None, Some((revision, now)));
    }
    if now - upkeep.mark_time < policy.retention_seconds {
        return (None, None);
    }
    let target = (upkeep.mark_revision > upkeep.compacted_revision).then_some(upkeep.mark_revision);
    (target, Some((revision, now)))
}

/// Whether a member's free pages are worth returning to the file system.
pub fn defrag_due(m: &MemberSize, policy: &Policy) -> bool {
    m.free() >= policy.defrag_min_free_bytes
        && m.free() * 100 >= m.db_size * policy.defrag_free_percent
}

/// The share of its quota a shard recovered from `NOSPACE` may still fill while keeping the
/// history within the retention. Above it the history goes too (tenants' watches relist): a
/// shard disarmed at 89 % full, say, raised the alarm again within seconds of writes.
pub const RECOVERED_PERCENT: i64 = 80;

/// Whether a shard that raised `NOSPACE` and whose largest file is `db_size` after compacting
/// to the retention's mark has room enough to keep that history.
pub fn room_with_history(db_size: i64, quota_bytes: i64) -> bool {
    quota_bytes > 0 && db_size * 100 < quota_bytes * RECOVERED_PERCENT
}

/// The share of its quota a shard's file may reach before it takes no new tenant: past it,
/// ordinary growth raises `NOSPACE` soon.
pub const FULL_PERCENT: i64 = 95;

/// Whether a shard whose largest file is `db_size` may be told to take writes again
/// (`NOSPACE` disarmed): with less room left it would raise the alarm again at once.
pub fn may_disarm(db_size: i64, quota_bytes: i64) -> bool {
    quota_bytes > 0 && db_size * 100 < quota_bytes * 90
}

/// The quota a shard really has: the one declared for it, or etcd's own
/// `--quota-backend-bytes` when etcd reports a smaller one.
pub fn effective_quota(declared: i64, etcd_quota: i64) -> i64 {
    if etcd_quota > 0 && etcd_quota < declared {
        etcd_quota
    } else {
        declared
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: Policy = Policy {
        retention_seconds: 300,
        defrag_free_percent: 30,
        defrag_min_free_bytes: 1 << 20,
    };

    #[test]
    fn the_first_round_only_notes_a_mark_then_compaction_follows_the_retention() {
        let mut u = Upkeep::default();
        assert_eq!(compaction(&u, 100, 1000, &P), (None, Some((100, 1000))));
        u.mark_revision = 100;
        u.mark_time = 1000;
        // Not yet retention old: nothing, and the mark stays.
        assert_eq!(compaction(&u, 500, 1299, &P), (None, None));
        // Retention old: compact to the mark, note the current revision.
        assert_eq!(
            compaction(&u, 900, 1300, &P),
            (Some(100), Some((900, 1300)))
        );
        // A mark not past what is compacted is not compacted to again.
        u.compacted_revision = 100;
        assert_eq!(compaction(&u, 900, 1300, &P), (None, Some((900, 1300))));
    }

    #[test]
    fn history_kept_is_between_one_and_two_retentions() {
        // Rounds every 15 s, one revision per second: after each compaction, the oldest
        // revision kept is between 300 and 600 s old.
        let mut u = Upkeep::default();
        for now in (0..3600).step_by(15) {
            let rev = now + 1;
            let (target, mark) = compaction(&u, rev, now, &P);
            if let Some(t) = target {
                u.compacted_revision = t;
                let age = now - (t - 1);
                assert!((300..=600).contains(&age), "kept {age} s at {now}");
            }
            if let Some((r, t)) = mark {
                u.mark_revision = r;
                u.mark_time = t;
            }
        }
        assert!(u.compacted_revision > 2800, "{u:?}");
    }

    #[test]
    fn a_member_is_defragmented_once_enough_of_its_file_is_free() {
        let m = |db, used| MemberSize {
            db_size: db,
            db_size_in_use: used,
        };
        assert!(defrag_due(&m(10 << 20, 5 << 20), &P));
        assert!(!defrag_due(&m(10 << 20, 8 << 20), &P), "20 % free");
        assert!(
            !defrag_due(&m((1 << 20) - 1, 0), &P),
            "less than the minimum"
        );
        assert!(may_disarm(80, 100));
        assert!(!may_disarm(90, 100));
        assert!(room_with_history(79, 100));
        assert!(
            !room_with_history(89, 100),
            "would be disarmed, but fills again at once"
        );
        assert_eq!(effective_quota(8 << 30, 2 << 30), 2 << 30);
        assert_eq!(effective_quota(1 << 30, 0), 1 << 30);
    }
}
