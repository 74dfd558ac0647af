//! Automatic upgrades as a user asks for them: a release channel (which versions kamajid moves a
//! tenant to by itself), a weekly maintenance window (when) and exclusions (when not). The rules
//! here judge what users write; kamajid's core decides from these values which version is due
//! and when (`kamaji_core::maintenance`).

use crate::error::FieldError;

/// Which versions kamajid moves a tenant to without a change of its spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReleaseChannel {
    /// Only what `kubernetes_version` says.
    #[default]
    None,
    /// The newest patch kamajid serves of the minor the tenant runs.
    Patch,
    /// Also the next minor, once kamajid serves a patch of it numbered at least its
    /// stable threshold (a minor that has been out a few patches).
    Stable,
}

pub const CHANNELS: [&str; 3] = ["none", "patch", "stable"];

impl ReleaseChannel {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Patch => "patch",
            Self::Stable => "stable",
        }
    }

    /// A channel as written; empty is `none`.
    pub fn parse(field: &str, v: &str) -> Result<Self, FieldError> {
        match v {
            "" | "none" => Ok(Self::None),
            "patch" => Ok(Self::Patch),
            "stable" => Ok(Self::Stable),
            other => Err(FieldError::new(
                field,
                format!(
                    "{other:?} is not a release channel; one of {}",
                    CHANNELS.join(", ")
                ),
            )),
        }
    }
}

/// A weekly window, in UTC: from `start_minute` after midnight, `duration_hours` long (it may
/// run past midnight into the next day), on `days` (none: every day).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    pub start_minute: u32,
    pub duration_hours: u32,
    pub days: Vec<time::Weekday>,
}

/// The longest window: a day, every day, is "any time".
pub const MAX_WINDOW_HOURS: u32 = 24;

/// What an exclusion blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ExclusionScope {
    /// Every automatic upgrade.
    #[default]
    NoUpgrades,
    /// Upgrades to another minor; patches still go (security fixes keep coming).
    NoMinorUpgrades,
}

pub const SCOPES: [&str; 2] = ["no_upgrades", "no_minor_upgrades"];

impl ExclusionScope {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NoUpgrades => "no_upgrades",
            Self::NoMinorUpgrades => "no_minor_upgrades",
        }
    }
}

/// A period, `[start, end)` in unix seconds, in which automatic upgrades (or some) do not run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exclusion {
    pub name: String,
    pub start: i64,
    pub end: i64,
    pub scope: ExclusionScope,
}

/// The longest exclusion: a forgotten one must not hold back security patches for ever (GKE
/// caps its own at a few months too).
pub const MAX_EXCLUSION_DAYS: i64 = 180;

/// How and when kamajid upgrades a tenant by itself.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Maintenance {
    pub channel: ReleaseChannel,
    /// None: any time.
    pub window: Option<Window>,
    pub exclusions: Vec<Exclusion>,
}

const DAYS: [(&str, time::Weekday); 7] = [
    ("monday", time::Weekday::Monday),
    ("tuesday", time::Weekday::Tuesday),
    ("wednesday", time::Weekday::Wednesday),
    ("thursday", time::Weekday::Thursday),
    ("friday", time::Weekday::Friday),
    ("saturday", time::Weekday::Saturday),
    ("sunday", time::Weekday::Sunday),
];

/// The lowercase English name of `d`, as users write it.
pub fn day_name(d: time::Weekday) -> &'static str {
    DAYS.iter().find(|(_, w)| *w == d).map_or("", |(n, _)| n)
}

/// A window as written under `field` (`maintenance_window`): `start` as `HH:MM` UTC, a
/// duration of 1 to 24 hours, days by name. Every refusal, one per attribute.
pub fn window(
    field: &str,
    start: &str,
    duration_hours: u32,
    days: &[String],
) -> Result<Window, Vec<FieldError>> {
    let mut errs = Vec::new();
    let start_minute = parse_hh_mm(start).ok_or_else(|| {
        FieldError::new(
            format!("{field}.start"),
            format!("{start:?} is not a time of day; write it as HH:MM in UTC, e.g. \"02:30\""),
        )
    });
    if !(1..=MAX_WINDOW_HOURS).contains(&duration_hours) {
        errs.push(FieldError::new(
            format!("{field}.duration_hours"),
            format!("{duration_hours} is not between 1 and {MAX_WINDOW_HOURS} hours"),
        ));
    }
    let mut parsed = Vec::new();
    for d in days {
        match DAYS.iter().find(|(n, _)| *n == d.as_str()) {
            Some((_, w)) if parsed.contains(w) => errs.push(FieldError::new(
                format!("{field}.days"),
                format!("{d:?} is listed twice"),
            )),
            Some((_, w)) => parsed.push(*w),
            None => errs.push(FieldError::new(
                format!("{field}.days"),
                format!(
                    "{d:?} is not a day; use {}",
                    DAYS.map(|(n, _)| n).join(", ")
                ),
            )),
        }
    }
    match start_minute {
        Ok(m) if errs.is_empty() => Ok(Window {
            start_minute: m,
            duration_hours,
            days: parsed,
        }),
        Ok(_) => Err(errs),
        Err(e) => {
            errs.insert(0, e);
            Err(errs)
        }
    }
}

fn parse_hh_mm(s: &str) -> Option<u32> {
    let (h, m) = s.split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    (h < 24 && m < 60).then_some(h * 60 + m)
}

/// An RFC 3339 time (`2026-11-27T00:00:00Z`) as unix seconds.
pub fn timestamp(field: &str, v: &str) -> Result<i64, FieldError> {
    time::OffsetDateTime::parse(v, &time::format_description::well_known::Rfc3339)
        .map(|t| t.unix_timestamp())
        .map_err(|_| {
            FieldError::new(
                field,
                format!("{v:?} is not an RFC 3339 time such as \"2026-11-27T00:00:00Z\""),
            )
        })
}

/// One exclusion as written under `field` (`maintenance_exclusion[0]`).
pub fn exclusion(
    field: &str,
    name: &str,
    start: &str,
    end: &str,
    scope: &str,
) -> Result<Exclusion, Vec<FieldError>> {
    let mut errs = Vec::new();
    if name.is_empty() {
        errs.push(FieldError::new(
            format!("{field}.name"),
            "is required: it says why upgrades wait",
        ));
    }
    let scope = match scope {
        "" | "no_upgrades" => Some(ExclusionScope::NoUpgrades),
        "no_minor_upgrades" => Some(ExclusionScope::NoMinorUpgrades),
        other => {
            errs.push(FieldError::new(
                format!("{field}.scope"),
                format!("{other:?} is not a scope; one of {}", SCOPES.join(", ")),
            ));
            None
        }
    };
    let start = timestamp(&format!("{field}.start"), start).map_err(|e| errs.push(e));
    let end = timestamp(&format!("{field}.end"), end).map_err(|e| errs.push(e));
    if let (Ok(s), Ok(e)) = (start, end) {
        if e <= s {
            errs.push(FieldError::new(
                format!("{field}.end"),
                "must come after start",
            ));
        } else if e - s > MAX_EXCLUSION_DAYS * 86_400 {
            errs.push(FieldError::new(
                format!("{field}.end"),
                format!(
                    "an exclusion lasts at most {MAX_EXCLUSION_DAYS} days, so that security \
                     patches are not held back for ever; this one lasts {} days",
                    (e - s) / 86_400
                ),
            ));
        }
    }
    match (start, end, scope) {
        (Ok(start), Ok(end), Some(scope)) if errs.is_empty() => Ok(Exclusion {
            name: name.to_owned(),
            start,
            end,
            scope,
        }),
        _ => Err(errs),
    }
}

/// Names of exclusions must differ: they are what status reports as the reason upgrades wait.
pub fn exclusion_names<'a>(
    field: &str,
    names: impl IntoIterator<Item = &'a str>,
) -> Result<(), FieldError> {
    let mut seen = std::collections::BTreeSet::new();
    for n in names {
        if !n.is_empty() && !seen.insert(n) {
            return Err(FieldError::new(
                field,
                format!("two exclusions are named {n:?}; names must differ"),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_read_as_users_write_them() {
        let w = window("maintenance_window", "02:30", 4, &["saturday".into()]).unwrap();
        assert_eq!(w.start_minute, 150);
        assert_eq!(w.days, [time::Weekday::Saturday]);
        let errs = window("maintenance_window", "25:00", 0, &["sat".into()]).unwrap_err();
        let fields: Vec<_> = errs.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "maintenance_window.start",
                "maintenance_window.duration_hours",
                "maintenance_window.days"
            ]
        );
        assert!(errs[2].message.contains("monday, tuesday"), "{}", errs[2]);
        assert!(window("w", "2:30", 1, &[]).is_err());
        assert!(window("w", "23:59", 24, &[]).is_ok());
        let twice = window("w", "00:00", 1, &["friday".into(), "friday".into()]).unwrap_err();
        assert!(twice[0].message.contains("twice"));
    }

    #[test]
    fn exclusions_are_bounded_and_named() {
        let e = exclusion(
            "maintenance_exclusion[0]",
            "black-friday",
            "2026-11-27T00:00:00Z",
            "2026-12-01T00:00:00+00:00",
            "no_minor_upgrades",
        )
        .unwrap();
        assert_eq!(e.end - e.start, 4 * 86_400);
        assert_eq!(e.scope, ExclusionScope::NoMinorUpgrades);
        let errs = exclusion("x[1]", "", "yesterday", "2026-12-01T00:00:00Z", "never").unwrap_err();
        let fields: Vec<_> = errs.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["x[1].name", "x[1].scope", "x[1].start"]);
        let backwards =
            exclusion("x", "n", "2026-12-02T00:00:00Z", "2026-12-01T00:00:00Z", "").unwrap_err();
        assert_eq!(backwards[0].field, "x.end");
        let long =
            exclusion("x", "n", "2026-01-01T00:00:00Z", "2026-12-01T00:00:00Z", "").unwrap_err();
        assert!(long[0].message.contains("at most 180 days"), "{}", long[0]);
        assert!(exclusion_names("x", ["a", "b", "a"]).is_err());
        assert!(exclusion_names("x", ["a", "b"]).is_ok());
    }

    #[test]
    fn channels_are_named() {
        assert_eq!(
            ReleaseChannel::parse("c", "").unwrap(),
            ReleaseChannel::None
        );
        assert_eq!(
            ReleaseChannel::parse("c", "stable").unwrap(),
            ReleaseChannel::Stable
        );
        let e = ReleaseChannel::parse("release_channel", "rapid").unwrap_err();
        assert_eq!(e.field, "release_channel");
        assert!(e.message.contains("none, patch, stable"));
    }
}
