//! The leader's backup schedules: every few seconds, each tenant whose schedule is due is
//! backed up, the outcome recorded on the tenant (its status shows it), and the scheduled
//! backups its retention lets go are deleted. Decisions are [`kamaji_core::backup::schedule`]'s;
//! the clock is injected, so time-driven tests set it.

use std::sync::Arc;
use std::time::Duration;

use kamaji_core::backup::schedule::{expired, next_at, ScheduledRun};
use kamaji_core::backup::BackupSchedule;
use kamaji_core::ids::TenantName;
use kamaji_core::lifecycle::ports::Clock;
use kamaji_core::tenant::TenantRecord;
use tokio::sync::watch;

use super::Backups;
use crate::service::TenantService;

/// How often the leader looks for backups due.
pub const TICK: Duration = Duration::from_secs(15);
/// The label scheduled backups carry.
pub const SCHEDULED_LABEL: &str = "kamaji.clastix.io/scheduled";

pub struct Scheduler {
    pub service: Arc<TenantService>,
    pub backups: Arc<Backups>,
    pub etcd_timeout: Duration,
    pub clock: Arc<dyn Clock>,
}

impl Scheduler {
    /// `rec`'s schedule, when it has one and can be backed up now.
    fn schedule_of(&self, rec: &TenantRecord) -> Option<BackupSchedule> {
        if rec.deleting || rec.moving.is_some() || rec.current_version.is_none() {
            return None;
        }
        let wire = self.service.store.wire_spec(rec).ok()?;
        kamaji_proto::tenant::from_stored(&wire)
            .ok()?
            .backup_schedule
    }

    /// One pass over every tenant: takes the backups due, records each outcome, lets go what
    /// retention says. How many backups it took.
    pub async fn tick(&self) -> usize {
        let records = match self.service.store.tenant_records().await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "backup schedules: listing tenants");
                return 0;
            }
        };
        let mut taken = 0;
        for rec in records {
            let Some(schedule) = self.schedule_of(&rec) else {
                continue;
            };
            let now = self.clock.now();
            if now < next_at(&schedule, rec.last_backup.as_ref()) {
                continue;
            }
            let labels = [(SCHEDULED_LABEL.to_owned(), "true".to_owned())].into();
            let run = match crate::api::backups::take(
                &self.service,
                &self.backups,
                self.etcd_timeout,
                &rec.name,
                labels,
                true,
            )
            .await
            {
                Ok(b) => {
                    taken += 1;
                    ScheduledRun {
                        at: now,
                        id: Some(b.id),
                        error: None,
                    }
                }
                Err(s) => {
                    tracing::warn!(tenant = %rec.name, error = %s.message(), "scheduled backup failed");
                    ScheduledRun {
                        at: now,
                        id: None,
                        error: Some(s.message().to_owned()),
                    }
                }
            };
            self.record(&rec.name, run).await;
            self.prune(&rec.name, &schedule).await;
        }
        taken
    }

    /// Records `run` on the tenant (a compare-and-swap, retried when the lifecycle wrote first).
    async fn record(&self, name: &TenantName, run: ScheduledRun) {
        for _ in 0..5 {
            let Ok(Some(mut v)) = self.service.store.tenant_record(name).await else {
                return;
            };
            v.value.last_backup = Some(run.clone());
            match self
                .service
                .store
                .update_tenant_record(&v.value, v.revision)
                .await
            {
                Ok(()) => return,
                Err(crate::store::StoreError::Conflict { .. }) => continue,
                Err(e) => {
                    tracing::warn!(tenant = %name, error = %e, "recording a scheduled backup");
                    return;
                }
            }
        }
    }

    /// Deletes the scheduled backups of `name` its retention lets go.
    async fn prune(&self, name: &TenantName, schedule: &BackupSchedule) {
        let Ok(all) = self.backups.list(name.as_str()).await else {
            return;
        };
        for id in expired(schedule, &all, self.clock.now()) {
            match self.backups.delete(&id).await {
                Ok(()) => {
                    tracing::info!(tenant = %name, backup = %id, "scheduled backup let go by its retention")
                }
                Err(e) => {
                    tracing::warn!(tenant = %name, backup = %id, error = %e, "deleting a scheduled backup")
                }
            }
        }
    }

    /// Ticks every [`TICK`] while this replica leads, until shutdown.
    pub async fn run(
        self: Arc<Self>,
        mut leading: watch::Receiver<bool>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        loop {
            if *leading.borrow() {
                self.tick().await;
            }
            tokio::select! {
                _ = tokio::time::sleep(TICK) => {}
                _ = leading.changed() => {}
                _ = shutdown.changed() => return,
            }
        }
    }
}
