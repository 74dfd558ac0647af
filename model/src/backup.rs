//! A tenant's backup schedule: how often kamajid backs it up and how many of those backups it
//! keeps.

use crate::error::FieldError;

/// Backups kept when `retention_count` is unset.
pub const DEFAULT_RETENTION_COUNT: u32 = 7;
/// At most this many scheduled backups are kept per tenant.
pub const MAX_RETENTION_COUNT: u32 = 1000;
/// The shortest interval: a backup reads the whole prefix, which is not free.
pub const MIN_INTERVAL_SECONDS: i64 = 60;
/// The longest interval, and the longest age kept.
pub const MAX_SECONDS: i64 = 366 * 86_400;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackupSchedule {
    /// Seconds between the starts of two backups.
    pub interval_seconds: i64,
    /// Scheduled backups kept, the newest ones.
    pub retention_count: u32,
    /// Scheduled backups older than this go, whatever the count (the newest always stays).
    pub retention_max_age_seconds: Option<i64>,
}

/// `15m`, `6h`, `1d`, `1d12h`: whole numbers of `m`inutes, `h`ours and `d`ays. Seconds.
pub fn duration(field: &str, v: &str) -> Result<i64, FieldError> {
    let bad = || {
        FieldError::new(
            field,
            format!("{v:?} is not a duration; write it in minutes, hours or days, e.g. \"30m\", \"6h\", \"1d\" or \"1d12h\""),
        )
    };
    let (mut total, mut digits) = (0i64, String::new());
    for c in v.trim().chars() {
        match c {
            '0'..='9' => digits.push(c),
            'm' | 'h' | 'd' if !digits.is_empty() => {
                let n: i64 = digits.parse().map_err(|_| bad())?;
                let unit = match c {
                    'm' => 60,
                    'h' => 3600,
                    _ => 86_400,
                };
                total = n
                    .checked_mul(unit)
                    .and_then(|s| total.checked_add(s))
                    .ok_or_else(bad)?;
                digits.clear();
            }
            _ => return Err(bad()),
        }
    }
    if !digits.is_empty() || total == 0 && v.trim().is_empty() {
        return Err(bad());
    }
    Ok(total)
}

/// The schedule as written: `interval`, `retention_count` (0: the default) and
/// `retention_max_age` (empty: none).
pub fn schedule(
    field: &str,
    interval: &str,
    retention_count: u32,
    retention_max_age: &str,
) -> Result<BackupSchedule, Vec<FieldError>> {
    let mut errs = Vec::new();
    let f = |k: &str| format!("{field}.{k}");
    let range = |name: &str, s: i64, min: i64| {
        if (min..=MAX_SECONDS).contains(&s) {
            Ok(s)
        } else {
            Err(FieldError::new(
                name,
                format!("is out of range: from {}m to 366d", min / 60),
            ))
        }
    };
    let interval = duration(&f("interval"), interval)
        .and_then(|s| range(&f("interval"), s, MIN_INTERVAL_SECONDS))
        .map_err(|e| errs.push(e))
        .unwrap_or(0);
    if retention_count > MAX_RETENTION_COUNT {
        errs.push(FieldError::new(
            f("retention_count"),
            format!("{retention_count} is more than {MAX_RETENTION_COUNT}"),
        ));
    }
    let max_age = if retention_max_age.is_empty() {
        None
    } else {
        duration(&f("retention_max_age"), retention_max_age)
            .and_then(|s| range(&f("retention_max_age"), s, MIN_INTERVAL_SECONDS))
            .map_err(|e| errs.push(e))
            .ok()
    };
    if !errs.is_empty() {
        return Err(errs);
    }
    Ok(BackupSchedule {
        interval_seconds: interval,
        retention_count: if retention_count == 0 {
            DEFAULT_RETENTION_COUNT
        } else {
            retention_count
        },
        retention_max_age_seconds: max_age,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_minutes_hours_and_days() {
        assert_eq!(duration("x", "30m"), Ok(1800));
        assert_eq!(duration("x", "1d12h"), Ok(129_600));
        for bad in ["", "10", "h", "5s", "1.5h", "-1h", "1h 30m"] {
            assert!(duration("x", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_schedule_is_checked_on_the_attribute_at_fault() {
        let s = schedule("backup_schedule", "6h", 0, "").unwrap();
        assert_eq!(s.retention_count, DEFAULT_RETENTION_COUNT);
        assert_eq!(s.retention_max_age_seconds, None);
        let fields = |r: Result<BackupSchedule, Vec<FieldError>>| {
            r.unwrap_err()
                .into_iter()
                .map(|e| e.field)
                .collect::<Vec<_>>()
        };
        assert_eq!(fields(schedule("b", "30s", 1, "")), ["b.interval"]);
        assert_eq!(fields(schedule("b", "400d", 1, "")), ["b.interval"]);
        assert_eq!(
            fields(schedule("b", "1h", 5000, "forever")),
            ["b.retention_count", "b.retention_max_age"]
        );
    }
}
