//! Automatic upgrades: the version a tenant's release channel moves it to, whether a moment is
//! open for that (maintenance window, exclusions), when the next opening comes, and which
//! tenants start one now: one per datastore at a time, so that a bad release stops at the first
//! tenant of each shard and a shard never restarts several control planes at once. Pure: the
//! clock and the versions kamajid serves are arguments.

use std::collections::{BTreeMap, BTreeSet};

use crate::ids::{DatastoreName, TenantName};
use crate::spec::{TenantSpec, Version};
use crate::tenant::{Phase, TenantRecord};
use kamaji_model::maintenance::{Exclusion, ExclusionScope, Maintenance, ReleaseChannel, Window};

/// How far ahead the next opening is looked for: a window on one weekday, or an exclusion of
/// up to 180 days, opens within this.
const HORIZON_DAYS: i64 = 400;

/// The versions kamajid serves (the binaries or images it has), and from which patch a next
/// minor counts as stable.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Served {
    versions: Vec<Version>,
    pub stable_after_patches: u32,
}

/// By default a minor is stable from its second patch (`1.38.2`): the `.0` and `.1` releases
/// are where a new minor's regressions are found and fixed.
pub const STABLE_AFTER_PATCHES: u32 = 2;

impl Served {
    pub fn new(mut versions: Vec<Version>, stable_after_patches: u32) -> Self {
        versions.sort();
        versions.dedup();
        Self {
            versions,
            stable_after_patches,
        }
    }

    pub fn versions(&self) -> &[Version] {
        &self.versions
    }

    fn newest_of(&self, minor: u32, min_patch: u32) -> Option<Version> {
        self.versions
            .iter()
            .rev()
            .find(|v| v.minor == minor && v.patch >= min_patch)
            .copied()
    }
}

/// The version `channel` moves a tenant running `running` to, if any: on `stable` the next
/// minor once it is stable (one minor at a time, as Kubernetes' skew policy asks), else on
/// `patch` or `stable` the newest patch of the running minor.
pub fn target(channel: ReleaseChannel, running: Version, served: &Served) -> Option<Version> {
    let patch = || served.newest_of(running.minor, running.patch + 1);
    match channel {
        ReleaseChannel::None => None,
        ReleaseChannel::Patch => patch(),
        ReleaseChannel::Stable => served
            .newest_of(running.minor + 1, served.stable_after_patches)
            .or_else(patch),
    }
}

/// Why an upgrade may not start at a moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Closed {
    OutsideWindow,
    /// An exclusion, by name.
    Excluded(String),
}

/// Whether `t` (unix seconds) falls in `window` (none: any time). A window may run past
/// midnight, so the day before is looked at too.
pub fn in_window(window: Option<&Window>, t: i64) -> bool {
    let Some(w) = window else { return true };
    let today = t.div_euclid(86_400) * 86_400;
    [today, today - 86_400].into_iter().any(|day| {
        let weekday = time::OffsetDateTime::from_unix_timestamp(day)
            .map(|d| d.weekday())
            .ok();
        let on_day = w.days.is_empty() || weekday.is_some_and(|d| w.days.contains(&d));
        let start = day + i64::from(w.start_minute) * 60;
        on_day && (start..start + i64::from(w.duration_hours) * 3600).contains(&t)
    })
}

/// The exclusion that blocks an upgrade at `t`, if any (`minor`: the upgrade is to another
/// minor, which `no_minor_upgrades` blocks too).
pub fn excluded(exclusions: &[Exclusion], t: i64, minor: bool) -> Option<&Exclusion> {
    exclusions
        .iter()
        .find(|x| (x.start..x.end).contains(&t) && (x.scope == ExclusionScope::NoUpgrades || minor))
}

/// Whether an upgrade (to another minor when `minor`) may start at `t`.
pub fn open(m: &Maintenance, t: i64, minor: bool) -> Result<(), Closed> {
    if let Some(x) = excluded(&m.exclusions, t, minor) {
        return Err(Closed::Excluded(x.name.clone()));
    }
    if !in_window(m.window.as_ref(), t) {
        return Err(Closed::OutsideWindow);
    }
    Ok(())
}

/// The first moment from `now` on when an upgrade (to another minor when `minor`) may start:
/// `now` itself, a window's start or an exclusion's end (where the open times begin), within
/// [`HORIZON_DAYS`]; `None` if none comes.
pub fn next_opening(m: &Maintenance, now: i64, minor: bool) -> Option<i64> {
    let today = now.div_euclid(86_400) * 86_400;
    let starts = m.window.iter().flat_map(|w| {
        (-1..HORIZON_DAYS).map(move |d| today + d * 86_400 + i64::from(w.start_minute) * 60)
    });
    let ends = m.exclusions.iter().map(|x| x.end);
    let candidates: BTreeSet<i64> = std::iter::once(now)
        .chain(starts)
        .chain(ends)
        .filter(|t| *t >= now)
        .collect();
    candidates.into_iter().find(|t| open(m, *t, minor).is_ok())
}

/// The automatic upgrade in store for a tenant: where to, from when, and why it waits now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planned {
    pub to: Version,
    pub not_before: Option<i64>,
    /// The exclusion that blocks it now, if one does.
    pub waiting_for: Option<String>,
}

/// What a tenant running `running` with `m` has in store at `now`.
pub fn planned(m: &Maintenance, running: Version, served: &Served, now: i64) -> Option<Planned> {
    let to = target(m.channel, running, served)?;
    let minor = to.minor > running.minor;
    Some(Planned {
        to,
        not_before: next_opening(m, now, minor),
        waiting_for: match open(m, now, minor) {
            Err(Closed::Excluded(name)) => Some(name),
            _ => None,
        },
    })
}

/// The version `rec` is to run: its spec's, or the one its release channel moved it to when
/// that is newer (the spec's is then a floor: the user's HCL does not change).
pub fn desired(rec: &TenantRecord, spec: &TenantSpec) -> Version {
    let auto = rec.auto_version.as_deref().and_then(Version::parse);
    auto.map_or(spec.kubernetes_version, |a| a.max(spec.kubernetes_version))
}

/// The version `rec`'s control plane runs, as last recorded Ready.
pub fn running(rec: &TenantRecord) -> Option<Version> {
    rec.current_version.as_deref().and_then(Version::parse)
}

/// Whether `rec` is changing version now, or is about to: an upgrade recorded but unfinished,
/// or a version chosen that it does not run yet.
pub fn upgrading(rec: &TenantRecord, spec: Option<&TenantSpec>) -> bool {
    rec.phase == Phase::Upgrading
        || rec
            .last_upgrade
            .as_ref()
            .is_some_and(|u| u.finished_at == 0)
        || spec.is_some_and(|s| Some(desired(rec, s)) != running(rec) && running(rec).is_some())
}

/// The tenants that start an automatic upgrade at `now`, with the version each moves to: of
/// every datastore where no tenant is changing version, the first due tenant by name. A
/// tenant is due when it is Ready, its channel has a target and the moment is open for it.
pub fn due_upgrades(
    tenants: &[(TenantRecord, Option<TenantSpec>)],
    served: &Served,
    now: i64,
) -> Vec<(TenantName, Version)> {
    let mut busy: BTreeSet<&DatastoreName> = BTreeSet::new();
    let mut chosen: BTreeMap<&DatastoreName, (&TenantName, Version)> = BTreeMap::new();
    for (rec, spec) in tenants {
        let Some(ds) = &rec.datastore else { continue };
        // A hibernated tenant finishes its upgrade when it wakes: it holds no one up till then.
        let asleep = spec.as_ref().is_some_and(|s| s.hibernated);
        if (upgrading(rec, spec.as_ref()) && !asleep) || rec.moving.is_some() {
            busy.insert(ds);
            continue;
        }
        let (Some(spec), Some(run)) = (spec, running(rec)) else {
            continue;
        };
        if rec.deleting || rec.phase != Phase::Ready || spec.hibernated {
            continue;
        }
        let Some(to) = target(spec.maintenance.channel, run, served) else {
            continue;
        };
        if open(&spec.maintenance, now, to.minor > run.minor).is_err() {
            continue;
        }
        let first = chosen.get(ds).is_none_or(|(name, _)| rec.name < **name);
        if first {
            chosen.insert(ds, (&rec.name, to));
        }
    }
    chosen
        .into_iter()
        .filter(|(ds, _)| !busy.contains(ds))
        .map(|(_, (name, to))| (name.clone(), to))
        .collect()
}

#[cfg(test)]
mod tests;
