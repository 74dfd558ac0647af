//! The undo steps a delete runs ([`super::undo_plan`]): RemoveControlPlane, ReleaseEtcd, Forget.

use super::*;
impl<R: Records, I: Isolation, T: Runtime, O: TenantObjects> Lifecycle<R, I, T, O> {
    pub(super) async fn teardown(
        &self,
        step: Step,
        mut rec: TenantRecord,
        rev: i64,
    ) -> Result<Outcome, LifecycleError> {
        let now = self.now();
        match step {
            Step::RemoveControlPlane => {
                if self.runtime.delete(&rec.name).await? {
                    rec.set_condition(COND_REMOVED, true, "Removed", "control plane removed", now);
                }
                self.save(&rec, rev).await?;
                Ok(Outcome::Ran(Step::RemoveControlPlane))
            }
            Step::ReleaseEtcd => {
                let ds = self.datastore(&rec).await?;
                self.isolation.remove(&ds, &rec.uid).await?;
                // Deleted mid-move: the other side holds a copy, or the source not yet cleaned.
                if let Some(m) = &rec.moving {
                    let other = if m.stage < MoveStage::Switched {
                        &m.to
                    } else {
                        &m.from
                    };
                    if let Some(ds) = self.records.datastore(other).await? {
                        self.isolation.remove(&ds, &rec.uid).await?;
                    }
                }
                rec.set_condition(
                    COND_RELEASED,
                    true,
                    "Released",
                    "etcd role, keys and user removed",
                    now,
                );
                self.save(&rec, rev).await?;
                Ok(Outcome::Ran(Step::ReleaseEtcd))
            }
            _ => {
                self.records.release(&rec, rev).await?;
                self.set_checked(&rec.name, false);
                Ok(Outcome::Ran(Step::Forget))
            }
        }
    }
}
