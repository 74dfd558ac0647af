//! The routine steps of a tenant that is up or asleep: Resync (drift repair), CheckHealth and
//! the check a round makes from the listed record, and Hibernate.

use super::*;

impl<R: Records, I: Isolation, T: Runtime, O: TenantObjects> Lifecycle<R, I, T, O> {
    /// A Ready tenant's routine health check from the record a round listed: neither the
    /// record nor its datastore is read again from the state store (at thousands of tenants
    /// those reads were most of kamajid's requests at rest). True when the control plane is
    /// healthy; anything else (unhealthy, unreadable) is left to the step, which reads the
    /// record again and writes what it finds under its revision.
    pub(in crate::lifecycle) async fn healthy_as_listed(
        &self,
        rec: &TenantRecord,
        ds: Option<&DatastoreRecord>,
    ) -> bool {
        let (Some(ds), Ok(spec)) = (ds, self.spec_of(rec)) else {
            return false;
        };
        let started = std::time::Instant::now();
        match self
            .runtime
            .health(&self.render_input(rec, &spec, ds))
            .await
        {
            Ok(status) if status.ready => {
                self.set_checked(&rec.name, true);
                crate::lifecycle::log_step(&rec.name, Step::CheckHealth, StepResult::Ran, None);
                self.observer
                    .performed(rec, Step::CheckHealth, StepResult::Ran, started.elapsed());
                true
            }
            _ => false,
        }
    }

    /// Drift repair: what kamajid owns in the runtime and inside the tenant, again.
    pub(super) async fn resync(
        &self,
        mut rec: TenantRecord,
        rev: i64,
        spec: &TenantSpec,
        now: i64,
    ) -> Result<Outcome, LifecycleError> {
        let pki = self.pki(&rec)?;
        let ds = self.datastore(&rec).await?;
        self.runtime
            .apply(&self.render_input(&rec, spec, &ds), &pki)
            .await?;
        self.bootstrap(&mut rec, spec, &pki, now).await?;
        // Records from before the issuer was recorded learn it here.
        rec.service_account_issuer = Some(self.issuer_of(&rec, spec));
        self.save(&rec, rev).await?;
        Ok(Outcome::Ran(Step::Resync))
    }

    /// Reached when the round's check from what the runtime knows did not find the tenant
    /// healthy: asked afresh before it is called Degraded.
    pub(super) async fn check_health(
        &self,
        mut rec: TenantRecord,
        rev: i64,
        spec: &TenantSpec,
        now: i64,
    ) -> Result<Outcome, LifecycleError> {
        let ds = self.datastore(&rec).await?;
        let status = self
            .runtime
            .status(&self.render_input(&rec, spec, &ds))
            .await?;
        self.set_checked(&rec.name, status.ready);
        if status.ready {
            return Ok(Outcome::Converged);
        }
        tracing::warn!(tenant = %rec.name, reason = %status.message, "control plane unhealthy");
        rec.phase = Phase::Degraded;
        rec.set_condition(COND_READY, false, "Unhealthy", status.message, now);
        self.save(&rec, rev).await?;
        Ok(Outcome::Ran(Step::CheckHealth))
    }

    /// Records that the control plane is stopped (the Apply before it stopped it).
    pub(super) async fn hibernate(
        &self,
        mut rec: TenantRecord,
        rev: i64,
        now: i64,
    ) -> Result<Outcome, LifecycleError> {
        rec.phase = Phase::Hibernated;
        rec.set_condition(
            COND_READY,
            false,
            "Hibernated",
            "hibernated = true: the control plane is stopped",
            now,
        );
        // Waking goes through Bootstrap again (in-tenant objects may have drifted).
        rec.set_condition(
            COND_BOOTSTRAPPED,
            false,
            "Hibernated",
            "bootstrapped again when woken",
            now,
        );
        self.save(&rec, rev).await?;
        Ok(Outcome::Ran(Step::Hibernate))
    }
}
