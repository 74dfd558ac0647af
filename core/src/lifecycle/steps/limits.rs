//! EnforceLimits: the tenant's storage quota and write budget ([`crate::limits`]), enforced from
//! what kamajid measures on its datastore.
//!
//! The hard wall goes up in the daemon's watch of the shard, the moment a write takes the
//! tenant past a limit; this step then puts the soft wall (the policy refusing writes, with a
//! message naming the limit) in place through the tenant's apiserver, waits until the apiserver
//! enforces it, and lowers the hard wall so that the tenant can delete its way back. When the
//! tenant is within its limits again, both come down. `StorageQuotaExceeded` and
//! `WriteBudgetExceeded` say which holds, with the figures.
//!
//! Crash safety: the walls kamajid keeps in memory are lost with it. A fresh process registers
//! nothing as synced, so every tenant passes through this step once after its datastore has
//! been measured, and its etcd role is set to what its record says.

use super::super::ports::{Isolation, Records, Runtime, TenantObjects};
use super::super::{Lifecycle, LifecycleError, Outcome};
use super::Step;
use crate::limits::{self, Breach, Limits, Metered, Wall};
use crate::spec::TenantSpec;
use crate::tenant::*;

/// How long the step waits for the apiserver's admission to enforce a policy just applied.
const SOFT_WALL_WAIT: std::time::Duration = std::time::Duration::from_millis(150);
const SOFT_WALL_TRIES: u32 = 20;

/// Whether the limits of `rec` need work: the breach measured (`m`) differs from the one
/// recorded, or the walls in force do not match it (a hard wall raised by the watch, a soft
/// wall not yet proven, a process that has not set the tenant's role since it started).
pub fn limits_due(rec: &TenantRecord, spec: &TenantSpec, m: Option<&Metered>) -> bool {
    let Some(m) = m else { return false };
    let before = rec.walled();
    let want = limits::breach(m.usage.bytes, m.debt_bytes, &rec.limits(spec), before);
    if want != before || !m.guard.synced {
        return true;
    }
    m.guard.wall != Wall::Down || m.guard.soft != want.any()
}

/// Whether a move or an in-place restore holds the tenant's writes on datastore `ds` now (its role
/// there read-only).
pub fn held_on(rec: &TenantRecord, ds: &crate::ids::DatastoreName) -> bool {
    let restoring = rec
        .restoring
        .as_ref()
        .is_some_and(|r| r.stage >= RestoreStage::Held)
        && rec.datastore.as_ref() == Some(ds);
    restoring
        || rec.moving.as_ref().is_some_and(|m| {
            &m.from == ds && matches!(m.stage, MoveStage::Held | MoveStage::Copied)
        })
}

/// The soft wall's objects for what `rec` records it is walled for (the quota's message when
/// it records nothing: what is removed is the same policy).
pub fn wall_objects(rec: &TenantRecord, spec: &TenantSpec) -> Vec<serde_json::Value> {
    let walled = rec.walled();
    let why = if walled.any() {
        walled
    } else {
        Breach {
            quota: true,
            budget: false,
        }
    };
    crate::bootstrap::quota::objects(&limits::message(rec.name.as_str(), why, &rec.limits(spec)))
}

/// Records what the tenant is walled for, with the figures.
fn record_breach(rec: &mut TenantRecord, m: &Metered, l: &Limits, want: Breach, now: i64) {
    let quota = format!(
        "{} bytes in {} keys of a quota of {} bytes",
        m.usage.bytes, m.usage.keys, l.quota_bytes
    );
    if want.quota {
        rec.set_condition(
            COND_STORAGE_QUOTA,
            true,
            "OverQuota",
            format!(
                "{quota}: new objects and updates are refused until it keeps less than {} % of it",
                limits::QUOTA_CLEAR_PERCENT
            ),
            now,
        );
    } else {
        rec.set_condition(COND_STORAGE_QUOTA, false, "WithinQuota", quota, now);
    }
    let budget = format!(
        "writes {} bytes/s over the last minute, {} bytes beyond a budget of {} bytes/s with a \
         burst of {} bytes",
        m.write_bytes_per_second, m.debt_bytes, l.write_bytes_per_second, l.burst_bytes
    );
    if want.budget {
        rec.set_condition(
            COND_WRITE_BUDGET,
            true,
            "OverBudget",
            format!("{budget}: new objects and updates are refused while the burst drains"),
            now,
        );
    } else if rec.condition(COND_WRITE_BUDGET).is_some() {
        rec.set_condition(COND_WRITE_BUDGET, false, "WithinBudget", budget, now);
    }
}

impl<R: Records, I: Isolation, T: Runtime, O: TenantObjects> Lifecycle<R, I, T, O> {
    pub(super) async fn enforce_limits(
        &self,
        mut rec: TenantRecord,
        rev: i64,
        spec: &TenantSpec,
        now: i64,
    ) -> Result<Outcome, LifecycleError> {
        let Some(ds) = rec.datastore.clone() else {
            return Ok(Outcome::Converged);
        };
        let Some(m) = self.isolation.metered(&ds, &rec.uid) else {
            return Ok(Outcome::Converged);
        };
        let l = rec.limits(spec);
        let before = rec.walled();
        let want = limits::breach(m.usage.bytes, m.debt_bytes, &l, before);
        if want != before || !m.guard.synced {
            // What it is walled for changes: recorded first (with the figures), so that the
            // status says it as soon as kamajid knows; the walls follow in the next pass. A hard
            // wall the watch has not raised yet goes up now.
            if want.any() && m.guard.wall == Wall::Down && !m.guard.soft {
                self.isolation
                    .set_walls(&ds, &rec.uid, Wall::Up, false)
                    .await?;
            }
            if want != before {
                if want.any() {
                    tracing::warn!(tenant = %rec.name, quota = want.quota, budget = want.budget, "past its limits: writes refused");
                } else {
                    tracing::info!(tenant = %rec.name, "back within its limits: writes allowed again");
                }
                record_breach(&mut rec, &m, &l, want, now);
                self.save(&rec, rev).await?;
                return Ok(Outcome::Ran(Step::EnforceLimits));
            }
        }
        let endpoint = rec.endpoint.clone().unwrap_or_default();
        let admin = self
            .pki(&rec)?
            .admin_kubeconfig(rec.name.as_str(), &endpoint);
        let wall = wall_objects(&rec, spec);

        if !want.any() {
            // The policy may be in place: walls still up, or a process that does not know
            // (removing one that is not there costs a call that finds nothing).
            let maybe_policy = m.guard.soft || m.guard.wall != Wall::Down || !m.guard.synced;
            self.isolation
                .set_walls(&ds, &rec.uid, Wall::Down, false)
                .await?;
            if maybe_policy {
                self.objects.sync(&endpoint, &admin, &[], &wall).await?;
            }
            return Ok(Outcome::Ran(Step::EnforceLimits));
        }
        // Kept writing through the only keys the hard wall leaves it: locked until its debt
        // drains below the lock's threshold.
        if m.guard.wall == Wall::Locked
            && m.debt_bytes > l.burst_bytes.saturating_mul(limits::LOCK_BURSTS)
        {
            return Ok(Outcome::Waiting(Step::EnforceLimits));
        }
        // The hard wall holds while the soft one is put in place (its keys stay writable).
        self.isolation
            .set_walls(&ds, &rec.uid, Wall::Up, false)
            .await?;
        self.objects.sync(&endpoint, &admin, &wall, &[]).await?;
        for _ in 0..SOFT_WALL_TRIES {
            if self.objects.refuses_writes(&endpoint, &admin).await? {
                // Deletes work again; the watch raises the hard wall if the soft one is touched.
                self.isolation
                    .set_walls(&ds, &rec.uid, Wall::Down, true)
                    .await?;
                return Ok(Outcome::Ran(Step::EnforceLimits));
            }
            tokio::time::sleep(SOFT_WALL_WAIT).await;
        }
        Ok(Outcome::Waiting(Step::EnforceLimits))
    }
}
