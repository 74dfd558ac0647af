//! Moving a tenant between datastores in place ([`super::MOVE`]): its keys are copied to the
//! target while its writes are held on the source, its control plane is switched to the target,
//! then the source's copy is removed. Each stage is recorded once its effects are done, so a
//! kamajid killed anywhere resumes; until the switch a move that is no longer wanted is undone
//! ([`Step::MoveAbort`]): the source never stops being the data of record before the switch,
//! and the target is from the switch on, so there are never two live copies or none.
//!
//! resourceVersions never go backwards for the tenant's clients: before the copy the target's
//! revision is raised past the source's ([`Isolation::align_revision`]), so every object copied,
//! and everything written after, carries a higher resourceVersion than any seen before. A
//! client's watch that reconnects after the switch resumes or re-lists, as after any apiserver
//! restart; nothing has to be restarted.

use super::super::ports::{Isolation, Records, Runtime, TenantObjects};
use super::super::{Lifecycle, LifecycleError, Outcome};
use super::Step;
use crate::pki;
use crate::placement::Request;
use crate::spec::TenantSpec;
use crate::tenant::*;

/// Writes one leader round spends raising a move's target revision (about 5 s at this
/// machine's 10k writes/s): between shards whose revisions differ by millions the raise takes
/// many rounds, and meanwhile other tenants are served, progress is shown and the move can
/// still be abandoned.
pub const ALIGN_WRITES_PER_ROUND: u64 = 50_000;

/// The `Moved` condition's message while a move runs.
fn moving_message(from: &impl std::fmt::Display, to: &impl std::fmt::Display, left: u64) -> String {
    if left == 0 {
        format!("moving from datastore {from} to {to}")
    } else {
        format!(
            "moving from datastore {from} to {to}: raising {to}'s revision past {from}'s, \
             {left} revision(s) to go (writes stay allowed meanwhile)"
        )
    }
}

impl<R: Records, I: Isolation, T: Runtime, O: TenantObjects> Lifecycle<R, I, T, O> {
    /// Chooses the target (any datastore with room that the spec accepts, but the current one)
    /// and reserves room there, with the move, in one transaction. No room: the tenant stays,
    /// and `Moved` says why.
    pub(in crate::lifecycle) async fn move_reserve(
        &self,
        mut rec: TenantRecord,
        rev: i64,
        spec: &TenantSpec,
        now: i64,
    ) -> Result<Outcome, LifecycleError> {
        let _one_at_a_time = self.placing.lock().await;
        let from = self.datastore(&rec).await?.name;
        let candidacies = self.records.candidates().await?;
        let drained = candidacies
            .iter()
            .any(|c| c.candidate.name == from && c.candidate.draining);
        let req = Request::new(&spec.placement, rec.reservation_bytes);
        let (to, reservation) =
            match super::choose(candidacies, &req, self.settings.policy, Some(&from)) {
                Ok(c) => c,
                Err(e) => {
                    let before = rec.clone();
                    rec.set_condition(
                        COND_MOVED,
                        false,
                        "NoRoom",
                        format!("stays on datastore {from}: {e}"),
                        now,
                    );
                    // Evicted by a drain: give its place in the drain to another tenant; the
                    // drain tries this one again later (from this moment).
                    if drained && rec.evict {
                        rec.evict = false;
                        if let Some(c) = rec.conditions.iter_mut().find(|c| c.kind == COND_MOVED) {
                            c.since = now;
                        }
                    }
                    if rec != before {
                        self.save(&rec, rev).await?;
                    }
                    return Ok(Outcome::Waiting(Step::MoveReserve));
                }
            };
        rec.set_condition(
            COND_MOVED,
            false,
            "Moving",
            moving_message(&from, &to, 0),
            now,
        );
        rec.moving = Some(Move {
            from,
            to,
            stage: MoveStage::Reserved,
            started_at: now,
            held_at: 0,
            copied_keys: 0,
            copied_bytes: 0,
        });
        rec.phase = Phase::Moving;
        self.records.reserve_move(&rec, rev, reservation).await?;
        Ok(Outcome::Ran(Step::MoveReserve))
    }

    /// The stages after the reservation, each idempotent.
    pub(in crate::lifecycle) async fn move_step(
        &self,
        step: Step,
        mut rec: TenantRecord,
        rev: i64,
        spec: &TenantSpec,
        now: i64,
    ) -> Result<Outcome, LifecycleError> {
        let Some(mut m) = rec.moving.clone() else {
            return Ok(Outcome::Converged);
        };
        let from = self.records.datastore(&m.from).await?;
        let to = self.records.datastore(&m.to).await?;
        let gone = |name: &crate::ids::DatastoreName| LifecycleError::Datastore {
            datastore: name.to_string(),
            detail: "no longer registered".into(),
        };
        match step {
            Step::MovePrepare => {
                let (from, to) = (
                    from.ok_or_else(|| gone(&m.from))?,
                    to.ok_or_else(|| gone(&m.to))?,
                );
                self.isolation.ensure(&to, &rec.uid).await?;
                // Most of the revision gap is closed now, while the tenant still writes, a
                // bounded number of writes per round.
                let left = self
                    .isolation
                    .align_revision(&from, &to, ALIGN_WRITES_PER_ROUND)
                    .await?;
                rec.set_condition(
                    COND_MOVED,
                    false,
                    "Moving",
                    moving_message(&m.from, &m.to, left),
                    now,
                );
                if left > 0 {
                    rec.moving = Some(m);
                    self.save(&rec, rev).await?;
                    return Ok(Outcome::Waiting(Step::MovePrepare));
                }
                m.stage = MoveStage::Prepared;
            }
            Step::MoveHold => {
                let from = from.ok_or_else(|| gone(&m.from))?;
                self.isolation.hold_writes(&from, &rec.uid, true).await?;
                m.stage = MoveStage::Held;
                m.held_at = now;
            }
            Step::MoveCopy => {
                let (from, to) = (
                    from.ok_or_else(|| gone(&m.from))?,
                    to.ok_or_else(|| gone(&m.to))?,
                );
                // What the source wrote since the preparation: seconds of writes, raised in full
                // before a key is copied.
                let left = self.isolation.align_revision(&from, &to, u64::MAX).await?;
                if left > 0 {
                    return Err(LifecycleError::Datastore {
                        datastore: m.to.to_string(),
                        detail: format!("its revision is still {left} behind {}'s", m.from),
                    });
                }
                let copied = self.isolation.copy(&from, &to, &rec.uid).await?;
                m.stage = MoveStage::Copied;
                m.copied_keys = copied.keys;
                m.copied_bytes = copied.bytes;
            }
            Step::MoveSwitch => {
                let to = to.ok_or_else(|| gone(&m.to))?;
                // The target trusts its own client CA for the tenant's etcd certificate.
                let mut pki = self.pki(&rec)?;
                let client_ca = to.client_ca(&self.kek)?;
                pki::reissue_etcd_client(
                    &mut pki,
                    &super::pki_spec(&rec, spec, &self.settings),
                    &client_ca,
                )?;
                super::super::seal_pki(&self.kek, &mut rec, &pki)?;
                m.stage = MoveStage::Switched;
                rec.datastore = Some(m.to.clone());
                rec.moving = Some(m);
                rec.set_condition(
                    COND_APPLIED,
                    false,
                    "Moved",
                    "rolling the control plane out to the new datastore",
                    now,
                );
                self.records.switch_move(&rec, rev).await?;
                return Ok(Outcome::Ran(Step::MoveSwitch));
            }
            _ => {
                // MoveCleanup: the control plane runs on the target and answers.
                if let Some(from) = from {
                    self.isolation.remove(&from, &rec.uid).await?;
                }
                let held = (now - m.held_at).max(0);
                rec.set_condition(
                    COND_MOVED,
                    true,
                    "Moved",
                    format!(
                        "moved from datastore {} to {}: {} keys ({} bytes) copied; writes held {held}s, \
                         the move took {}s",
                        m.from,
                        m.to,
                        m.copied_keys,
                        m.copied_bytes,
                        (now - m.started_at).max(0)
                    ),
                    now,
                );
                rec.moving = None;
                rec.evict = false;
                rec.phase = Phase::Ready;
                self.save(&rec, rev).await?;
                return Ok(Outcome::Ran(Step::MoveCleanup));
            }
        }
        rec.moving = Some(m);
        self.save(&rec, rev).await?;
        Ok(Outcome::Ran(step))
    }

    /// Undoes a move that has not switched: writes allowed again on the source, the target's
    /// copy, user and role removed, its reservation released. The source never stopped being
    /// the data of record.
    pub(in crate::lifecycle) async fn move_abort(
        &self,
        mut rec: TenantRecord,
        rev: i64,
        now: i64,
    ) -> Result<Outcome, LifecycleError> {
        let Some(m) = rec.moving.clone() else {
            return Ok(Outcome::Converged);
        };
        if let Some(from) = self.records.datastore(&m.from).await? {
            self.isolation.hold_writes(&from, &rec.uid, false).await?;
        }
        if let Some(to) = self.records.datastore(&m.to).await? {
            self.isolation.remove(&to, &rec.uid).await?;
        }
        rec.moving = None;
        rec.set_condition(
            COND_MOVED,
            false,
            "Abandoned",
            format!(
                "the move from datastore {} to {} is no longer wanted; the tenant stays on {}",
                m.from, m.to, m.from
            ),
            now,
        );
        // Back to Ready through Bootstrap, which checks the tenant answers.
        rec.phase = Phase::Provisioning;
        rec.set_condition(
            COND_BOOTSTRAPPED,
            false,
            "Pending",
            "after an abandoned move",
            now,
        );
        self.records.abort_move(&rec, rev, &m.to).await?;
        Ok(Outcome::Ran(Step::MoveAbort))
    }
}
