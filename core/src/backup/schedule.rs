//! When a tenant's schedule takes its next backup, and which of its scheduled backups its
//! retention lets go. Pure: the leader's scheduler reads the clock and does the work.

use kamaji_model::backup::BackupSchedule;

use super::BackupRecord;

/// After a failed scheduled backup, the next try comes this soon (or at the interval, if
/// shorter).
pub const RETRY_SECONDS: i64 = 300;

/// What the last scheduled backup did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ScheduledRun {
    /// When it started, unix seconds.
    pub at: i64,
    /// The backup it made.
    pub id: Option<String>,
    /// Why it failed.
    pub error: Option<String>,
}

/// When the next scheduled backup is due: at once for a tenant never backed up on schedule,
/// else an interval after the last start (sooner after a failure).
pub fn next_at(schedule: &BackupSchedule, last: Option<&ScheduledRun>) -> i64 {
    match last {
        None => 0,
        Some(r) if r.error.is_some() => r.at + schedule.interval_seconds.min(RETRY_SECONDS),
        Some(r) => r.at + schedule.interval_seconds,
    }
}

/// The scheduled backups among `backups` (one tenant's) that retention lets go at `now`: all but
/// the newest `retention_count`, and those older than `retention_max_age`; never the newest.
/// Backups taken on request are never pruned.
pub fn expired(schedule: &BackupSchedule, backups: &[BackupRecord], now: i64) -> Vec<String> {
    let mut scheduled: Vec<&BackupRecord> = backups.iter().filter(|b| b.scheduled).collect();
    scheduled.sort_by(|a, b| (b.created_at, &b.id).cmp(&(a.created_at, &a.id)));
    scheduled
        .iter()
        .enumerate()
        .skip(1)
        .filter(|(i, b)| {
            *i >= schedule.retention_count as usize
                || schedule
                    .retention_max_age_seconds
                    .is_some_and(|age| now - b.created_at > age)
        })
        .map(|(_, b)| b.id.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backup(id: &str, at: i64, scheduled: bool) -> BackupRecord {
        BackupRecord {
            id: id.into(),
            tenant: "t".into(),
            tenant_id: "t-1".into(),
            labels: Default::default(),
            revision: 1,
            keys: 1,
            bytes: 1,
            size_bytes: 1,
            digest: String::new(),
            kubernetes_version: "1.37.2".into(),
            created_at: at,
            location: String::new(),
            scheduled,
        }
    }

    const HOUR: i64 = 3600;

    /// Thirty days of the leader's ticks (every 30 s, on an injected clock) with a 6-hourly
    /// schedule keeping 4 for at most a day, one run in ten failing: backups start on time,
    /// a failure is retried within 5 minutes, and exactly the retention is kept throughout.
    #[test]
    fn a_month_of_ticks_takes_backups_on_time_and_keeps_exactly_the_retention() {
        let s = BackupSchedule {
            interval_seconds: 6 * HOUR,
            retention_count: 4,
            retention_max_age_seconds: Some(24 * HOUR),
        };
        let start = 1_796_000_000;
        let mut last: Option<ScheduledRun> = None;
        let mut kept = vec![backup("asked", start - 1, false)];
        let (mut taken, mut failed, mut n) = (0, 0, 0u32);
        let mut now = start;
        while now < start + 30 * 24 * HOUR {
            if now >= next_at(&s, last.as_ref()) {
                n += 1;
                if n % 10 == 0 {
                    failed += 1;
                    last = Some(ScheduledRun {
                        at: now,
                        id: None,
                        error: Some("shard down".into()),
                    });
                } else {
                    let id = format!("s{n:04}");
                    kept.push(backup(&id, now, true));
                    taken += 1;
                    if let Some(prev) = &last {
                        let gap = now - prev.at;
                        let want = if prev.error.is_some() {
                            RETRY_SECONDS
                        } else {
                            s.interval_seconds
                        };
                        assert!(
                            (want..want + 30).contains(&gap),
                            "{gap} s after the last run"
                        );
                    }
                    last = Some(ScheduledRun {
                        at: now,
                        id: Some(id),
                        error: None,
                    });
                }
                let gone = expired(&s, &kept, now);
                kept.retain(|b| !gone.contains(&b.id));
            }
            let scheduled = kept.iter().filter(|b| b.scheduled).count();
            assert!(scheduled <= 4, "{scheduled} kept");
            if taken >= 4 {
                assert_eq!(scheduled, 4, "at {now}: the retention exactly");
            }
            now += 30;
        }
        assert!(
            (115..=125).contains(&taken),
            "{taken} taken, {failed} failed"
        );
        assert!(
            kept.iter().any(|b| b.id == "asked"),
            "a backup taken on request is never pruned"
        );
    }

    #[test]
    fn age_lets_old_ones_go_but_never_the_newest() {
        let s = BackupSchedule {
            interval_seconds: HOUR,
            retention_count: 10,
            retention_max_age_seconds: Some(HOUR),
        };
        let all = [
            backup("a", 0, true),
            backup("b", 100, true),
            backup("c", 5000, true),
        ];
        assert_eq!(expired(&s, &all, 5100), ["b", "a"]);
        assert_eq!(expired(&s, &all, 100_000), ["b", "a"]);
        assert!(
            expired(&s, &all[..1], 100_000).is_empty(),
            "the only one stays"
        );
    }
}
