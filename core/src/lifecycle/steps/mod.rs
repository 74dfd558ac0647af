//! The steps of a tenant's life, which one is due ([`next`], pure), and what each does.
//!
//! Create, in order ([`CREATE`]), each with the step that undoes it:
//!
//! | step | does | undone by |
//! |---|---|---|
//! | Place | chooses a datastore; records it with the reservation, in one transaction | Forget |
//! | Isolate | the tenant's etcd role and user on that datastore | ReleaseEtcd |
//! | MintPki | the tenant's CA and certificates, sealed into the record | none: the keys live only in the record, gone with it |
//! | Apply | the control plane, in the runtime (no pods until the address clients use is known) | RemoveControlPlane |
//! | AwaitReady | records the address the runtime gave (re-issuing the serving certificate for it), so Apply starts the pods once; then waits until they answer | none: observes |
//! | Bootstrap | what `kubeadm join` needs, inside the tenant; the tenant is Ready | none: those objects live in the tenant's own etcd prefix, removed by ReleaseEtcd |
//!
//! Day two: RotateCredentials (phase one or two of a CA and service-account key rotation; Apply
//! rolls it out), Reencrypt (every encrypted object written again with the newest key, after a key
//! rotation or a change of the encrypted resources; then the old keys are retired),
//! EnforceLimits (the storage quota and write budget: the walls that refuse the tenant's writes
//! while it is past either, see [`limits`]; `StorageQuotaExceeded` and `WriteBudgetExceeded` say
//! which),
//! AwaitDatastore (while the tenant's datastore refuses writes, an etcd alarm such as `NOSPACE`
//! that kamajid's upkeep recovers, the tenant is Degraded with `DatastoreWritable` false),
//! RenewCertificates (the leaf certificates signed again before they expire; Apply rolls them
//! out), Resync (the control plane and the in-tenant objects again, every resync period:
//! drift repair) and CheckHealth (a Ready tenant that stopped answering turns Degraded and goes
//! back through AwaitReady and Bootstrap). Delete runs the undo column ([`undo_plan`]): for a
//! Ready tenant ([`DELETE`]) RemoveControlPlane, ReleaseEtcd (role, then keys, then user), Forget
//! (record, placement and reservation in one transaction); for a create abandoned half-way,
//! only the undos of the steps that may have run.

mod create;
use create::{choose, prepare_encryption};
mod day2;
pub(crate) mod limits;
pub(crate) mod moves;
mod restore;
mod routine;
mod teardown;

use super::ports::{Isolation, Records, Runtime, StepResult, TenantObjects};
use super::{open_pki, seal_pki, Lifecycle, LifecycleError, Outcome, Settings};
use crate::bootstrap;
use crate::controlplane::Tenant;
use crate::datastore::DatastoreRecord;
use crate::etcd_keys::prefix;
use crate::pki::{self, mint, TenantPki, TenantPkiSpec};
use crate::placement::{self, Request};
use crate::spec::{Placement, TenantSpec};
use crate::tenant::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Place,
    Isolate,
    MintPki,
    Restore,
    RestoreHold,
    RestoreStop,
    RestoreWrite,
    RestoreRelease,
    RotateCredentials,
    Apply,
    AwaitReady,
    ReissueServingCert,
    Bootstrap,
    Reencrypt,
    EnforceLimits,
    AwaitDatastore,
    Hibernate,
    RenewCertificates,
    Resync,
    CheckHealth,
    MoveReserve,
    MovePrepare,
    MoveHold,
    MoveCopy,
    MoveSwitch,
    MoveCleanup,
    MoveAbort,
    RemoveControlPlane,
    ReleaseEtcd,
    Forget,
}

/// The create steps as they run when the address clients use is not given up front: the first
/// Apply starts no pods, AwaitReady records the address the runtime gave (ReissueServingCert),
/// and the second Apply starts the pods with a serving certificate that names it.
pub const CREATE_RUN: [Step; 7] = [
    Step::Place,
    Step::Isolate,
    Step::Apply,
    Step::ReissueServingCert,
    Step::Apply,
    Step::AwaitReady,
    Step::Bootstrap,
];

/// How a create step is undone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Undo {
    By(Step),
    /// Nothing to undo, and why.
    Nothing(&'static str),
}

/// The create flow, in order, each step with its undo.
pub const CREATE: [(Step, Undo); 6] = [
    (Step::Place, Undo::By(Step::Forget)),
    // Also mints the PKI, in the same write: the keys live only in the record, which Forget
    // removes. (MintPki alone runs only for a record isolated by an older kamajid.)
    (Step::Isolate, Undo::By(Step::ReleaseEtcd)),
    (
        Step::Restore,
        Undo::Nothing("it writes only under the tenant's etcd prefix, which ReleaseEtcd deletes"),
    ),
    (Step::Apply, Undo::By(Step::RemoveControlPlane)),
    (Step::AwaitReady, Undo::Nothing("it only observes")),
    (
        Step::Bootstrap,
        Undo::Nothing("the objects live in the tenant's etcd prefix, which ReleaseEtcd deletes"),
    ),
];

/// The move flow, in order, each step with how it is undone while the move is abandoned
/// ([`Step::MoveAbort`], possible until the switch). After the switch the move only goes on.
pub const MOVE: [(Step, Undo); 6] = [
    (Step::MoveReserve, Undo::By(Step::MoveAbort)),
    (Step::MovePrepare, Undo::By(Step::MoveAbort)),
    (Step::MoveHold, Undo::By(Step::MoveAbort)),
    (Step::MoveCopy, Undo::By(Step::MoveAbort)),
    (
        Step::MoveSwitch,
        Undo::Nothing("the target holds the data of record from here on"),
    ),
    (
        Step::MoveCleanup,
        Undo::Nothing("it removes the source's copy, which nothing reads any more"),
    ),
];

/// The delete flow of a tenant whose create finished: the create flow's undos, reversed
/// ([`undo_plan`] of a Ready tenant).
pub const DELETE: [Step; 3] = [Step::RemoveControlPlane, Step::ReleaseEtcd, Step::Forget];

/// Whether create step `step` may have touched the world for `rec`: it ran, or it started and
/// may have stopped half-way (a crash between its effect and its record).
fn may_have_run(rec: &TenantRecord, step: Step) -> bool {
    match step {
        // The record is the placement: it exists.
        Step::Place => true,
        // Runs once placed; a role or user may exist before it records them.
        Step::Isolate => rec.datastore.is_some(),
        // Runs only once the PKI is minted.
        Step::Apply => rec.pki.is_some() || rec.done(COND_APPLIED),
        _ => false,
    }
}

/// What deleting `rec` runs, in order: the undo of every create step that may have run, last
/// step first, as [`CREATE`] pairs them. A create abandoned half-way undoes what it did and
/// nothing more.
pub fn undo_plan(rec: &TenantRecord) -> Vec<Step> {
    CREATE
        .iter()
        .rev()
        .filter(|(step, _)| may_have_run(rec, *step))
        .filter_map(|(_, undo)| match undo {
            Undo::By(s) => Some(*s),
            Undo::Nothing(_) => None,
        })
        .collect()
}

/// Whether undo step `step` is done for `rec` (Forget never is: it removes the record).
fn undone(rec: &TenantRecord, step: Step) -> bool {
    match step {
        Step::RemoveControlPlane => rec.done(COND_REMOVED),
        Step::ReleaseEtcd => rec.done(COND_RELEASED),
        _ => false,
    }
}

/// What is due besides what the record says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Due {
    /// A Ready tenant's resync period has passed.
    pub resync: bool,
    /// A Ready tenant's control plane has not been checked for a while.
    pub health: bool,
    /// Encrypted objects are not all written as the spec asks ([`reencrypt_due`]).
    pub reencrypt: bool,
    /// The leaf certificates expire soon, or their expiry is not recorded ([`renew_due`]).
    pub renew: bool,
    /// The spec asks for another phase of a credential rotation than the PKI is at.
    pub rotate: bool,
    /// What the tenant keeps and writes, or the walls in force, do not match what is recorded
    /// ([`limits::limits_due`]).
    pub limits: bool,
    /// The tenant is to move off its datastore ([`move_due`]).
    pub relocate: bool,
    /// A move not yet switched is no longer wanted ([`abort_due`]).
    pub abort_move: bool,
    /// The tenant's datastore refuses writes, or did when last recorded ([`writable_due`]).
    pub datastore_refusing: bool,
    /// The spec asks the control plane stopped (`hibernated`).
    pub hibernate: bool,
    /// The tenant is created from a backup whose objects are not written back yet.
    pub restore: bool,
}

/// Whether the datastore's refusal of writes (`refusing`, as its last health round found)
/// differs from what the record says, or still holds.
pub fn writable_due(rec: &TenantRecord, refusing: Option<&str>) -> bool {
    refusing.is_some() || rec.condition(COND_WRITABLE).is_some_and(|c| !c.ok)
}

/// Whether the tenant is to move off its datastore: the spec names another, or (when it names
/// none) the tenant is evicted (its selector no longer matches, or its datastore is drained).
pub fn move_due(rec: &TenantRecord, spec: &TenantSpec) -> bool {
    let Some(current) = &rec.datastore else {
        return false;
    };
    // A hibernated tenant is not moved: a drain waits for it to wake (or go).
    rec.moving.is_none()
        && !spec.hibernated
        && match &spec.placement {
            Placement::Named(n) => n != current,
            _ => rec.evict,
        }
}

/// Whether a move that has not switched yet is no longer wanted: the spec names another
/// datastore than its target, or the tenant is no longer evicted.
pub fn abort_due(rec: &TenantRecord, spec: &TenantSpec) -> bool {
    match &rec.moving {
        Some(m) if m.stage < MoveStage::Switched => match &spec.placement {
            Placement::Named(n) => *n != m.to,
            _ => !rec.evict,
        },
        _ => false,
    }
}

/// Whether the tenant's encrypted objects are not all written with the key and for the
/// resources `spec` asks.
pub fn reencrypt_due(rec: &TenantRecord, spec: &TenantSpec) -> bool {
    rec.encrypted.as_ref() != Some(&EncryptedWith::of(&spec.encryption))
}

/// Whether the first leaf certificate expires within `renew_before` of `now` (or its expiry
/// was never recorded).
pub fn renew_due(rec: &TenantRecord, renew_before: time::Duration, now: i64) -> bool {
    rec.pki.as_ref().is_some_and(|p| {
        p.certificates_expire_at == 0
            || now >= p.certificates_expire_at - renew_before.whole_seconds()
    })
}

/// Whether a Ready tenant's drift repair is due at `now`: once every `resync_seconds`, at a
/// moment of the period that is the tenant's own (from its id), so that tenants created or
/// restarted together do not all repair at once: a fleet's resyncs spread evenly over the
/// period. Due when the last bootstrap came before the tenant's latest slot.
pub fn resync_due(rec: &TenantRecord, resync_seconds: i64, now: i64) -> bool {
    if rec.phase != Phase::Ready {
        return false;
    }
    let period = resync_seconds.max(1);
    let offset = resync_offset(rec.uid.as_str(), period);
    let latest_slot = (now - offset).div_euclid(period) * period + offset;
    rec.bootstrapped_at < latest_slot
}

/// A tenant's moment in a resync period of `period` seconds: FNV-1a of its id, so that every
/// kamajid (and every restart) gives a tenant the same one.
fn resync_offset(id: &str, period: i64) -> i64 {
    let hash = id.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    i64::try_from(hash % period.unsigned_abs()).unwrap_or(0)
}

/// The step due for `rec`, if any.
pub fn next(rec: &TenantRecord, due: Due) -> Option<Step> {
    if rec.deleting {
        return undo_plan(rec).into_iter().find(|s| !undone(rec, *s));
    }
    if rec.phase == Phase::Failed {
        return None; // terminal: only its deletion is left to do
    }
    if rec.datastore.is_none() {
        return Some(Step::Place);
    }
    if !rec.done(COND_ISOLATED) {
        return Some(Step::Isolate);
    }
    if rec.pki.is_none() {
        return Some(Step::MintPki);
    }
    // Before the first Apply: the apiserver starts on the restored objects.
    if due.restore {
        return Some(Step::Restore);
    }
    // A move goes on before anything else: from its hold to its switch the tenant cannot write.
    if due.abort_move {
        return Some(Step::MoveAbort);
    }
    match rec.moving.as_ref().map(|m| m.stage) {
        Some(MoveStage::Reserved) => return Some(Step::MovePrepare),
        Some(MoveStage::Prepared) => return Some(Step::MoveHold),
        Some(MoveStage::Held) => return Some(Step::MoveCopy),
        Some(MoveStage::Copied) => return Some(Step::MoveSwitch),
        Some(MoveStage::Switched) => {}
        None if due.relocate => return Some(Step::MoveReserve),
        None => {}
    }
    // An in-place restore goes on before anything else too: from its hold to its release the
    // tenant cannot write, and its control plane stays stopped until its objects are whole.
    match rec.restoring.as_ref().map(|r| r.stage) {
        Some(RestoreStage::Requested) => return Some(Step::RestoreHold),
        Some(RestoreStage::Held) => return Some(Step::RestoreStop),
        Some(RestoreStage::Stopped) => return Some(Step::RestoreWrite),
        Some(RestoreStage::Written) => return Some(Step::RestoreRelease),
        None => {}
    }
    // A datastore that refuses writes: nothing below can work, and the tenant is not Ready.
    if due.datastore_refusing {
        return Some(Step::AwaitDatastore);
    }
    // Before Apply: the apply that follows rolls out the rotated credentials with the rest.
    if due.rotate {
        return Some(Step::RotateCredentials);
    }
    if !rec.done(COND_APPLIED) || rec.observed_generation < rec.generation {
        return Some(Step::Apply);
    }
    // Hibernated: the apply above stopped the control plane. Only renewal goes on (its apply
    // keeps it stopped), so that waking finds certificates that have not expired; nothing
    // that needs the control plane answering runs until then.
    if due.hibernate && rec.moving.is_none() {
        if rec.phase != Phase::Hibernated {
            return Some(Step::Hibernate);
        }
        return due.renew.then_some(Step::RenewCertificates);
    }
    if !rec.done(COND_READY) {
        return Some(Step::AwaitReady);
    }
    // Before the tenant reads Ready again: a key rotation is done when every object is
    // written with the new key, and that is when an apply waiting for Ready should return.
    if due.reencrypt {
        return Some(Step::Reencrypt);
    }
    // Switched, running on the target and bootstrapped there: the source's copy goes.
    if rec.moving.is_some() && rec.done(COND_BOOTSTRAPPED) {
        return Some(Step::MoveCleanup);
    }
    if !rec.done(COND_BOOTSTRAPPED) || rec.phase != Phase::Ready {
        return Some(Step::Bootstrap);
    }
    if due.limits {
        return Some(Step::EnforceLimits);
    }
    if due.renew {
        return Some(Step::RenewCertificates);
    }
    if due.resync {
        return Some(Step::Resync);
    }
    if due.health {
        return Some(Step::CheckHealth);
    }
    None
}

/// `host` of `https://host:port` (IPv6 without brackets).
pub fn endpoint_host(endpoint: &str) -> String {
    let hp = bootstrap::host_port(endpoint);
    let host = match hp.rsplit_once(':') {
        Some((h, p)) if p.chars().all(|c| c.is_ascii_digit()) => h,
        _ => hp,
    };
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned()
}

/// The names the tenant's serving certificate must carry beyond the in-cluster ones: the
/// address users gave, the extra names, and the endpoint the runtime reports.
pub fn pki_spec(rec: &TenantRecord, spec: &TenantSpec, settings: &Settings) -> TenantPkiSpec {
    let net = &spec.network;
    let mut sans: Vec<String> = net.endpoint_address.iter().cloned().collect();
    for s in &net.extra_sans {
        if !sans.contains(s) {
            sans.push(s.clone());
        }
    }
    if let Some(host) = rec.endpoint.as_deref().map(endpoint_host) {
        if !sans.contains(&host) {
            sans.push(host);
        }
    }
    TenantPkiSpec {
        tenant_id: rec.uid.clone(),
        service_cidr: net.service_cidr,
        dns_domain: settings.dns_domain.clone(),
        external_sans: sans,
        leaf_validity: settings.certificate_validity,
    }
}

impl<R: Records, I: Isolation, T: Runtime, O: TenantObjects> Lifecycle<R, I, T, O> {
    async fn save(&self, rec: &TenantRecord, revision: i64) -> Result<(), LifecycleError> {
        self.records.update_tenant(rec, revision).await?;
        Ok(())
    }

    async fn datastore(&self, rec: &TenantRecord) -> Result<DatastoreRecord, LifecycleError> {
        let name = rec
            .datastore
            .as_ref()
            .ok_or_else(|| LifecycleError::Datastore {
                datastore: String::new(),
                detail: format!("tenant {} is not placed", rec.name),
            })?;
        self.records
            .datastore(name)
            .await?
            .ok_or_else(|| LifecycleError::Datastore {
                datastore: name.to_string(),
                detail: "no longer registered".into(),
            })
    }

    /// Mints the tenant's PKI into `rec`, with its encryption keys and the credentials
    /// generation it starts at.
    fn mint_into(
        &self,
        rec: &mut TenantRecord,
        spec: &TenantSpec,
        ds: &DatastoreRecord,
        now: i64,
    ) -> Result<(), LifecycleError> {
        let client_ca = ds.client_ca(&self.kek)?;
        let mut pki = mint(&pki_spec(rec, spec, &self.settings), &client_ca)?;
        // Nothing is stored yet: everything the tenant ever writes is encrypted.
        prepare_encryption(&mut pki, spec);
        let want = EncryptedWith::of(&spec.encryption);
        rec.set_condition(
            COND_ENCRYPTED,
            true,
            "Encrypted",
            format!(
                "every object of {} is written with key-{}",
                want.all_resources().join(", "),
                want.rotation
            ),
            now,
        );
        rec.encrypted = Some(want);
        // A new PKI has nothing to rotate from.
        rec.credentials = spec.credential_rotation;
        seal_pki(&self.kek, rec, &pki)
    }

    /// The service-account issuer the tenant's apiserver is applied with.
    fn issuer_of(&self, rec: &TenantRecord, spec: &TenantSpec) -> String {
        crate::controlplane::flags::service_account_issuer(
            spec,
            &rec.uid,
            &self.settings.dns_domain,
            self.settings.issuer_base.as_deref(),
        )
    }

    /// What the runtime renders the tenant from.
    fn render_input<'a>(
        &'a self,
        rec: &'a TenantRecord,
        spec: &'a TenantSpec,
        ds: &'a DatastoreRecord,
    ) -> Tenant<'a> {
        Tenant {
            name: &rec.name,
            id: &rec.uid,
            spec,
            etcd_endpoints: &ds.endpoints,
            etcd_ca_certificate: &ds.ca_certificate,
            dns_domain: &self.settings.dns_domain,
            issuer_base: self.settings.issuer_base.as_deref(),
            address_known: rec.endpoint.is_some() || spec.network.endpoint_address.is_some(),
        }
    }

    /// The PKI a step past MintPki needs: recorded, and decoding.
    fn pki(&self, rec: &TenantRecord) -> Result<TenantPki, LifecycleError> {
        open_pki(&self.kek, rec)?.ok_or_else(|| {
            crate::lifecycle::ports::RecordError::Corrupt {
                what: format!("tenant {}", rec.name),
                detail: "its PKI is missing".into(),
            }
            .into()
        })
    }

    pub(super) async fn perform(
        &self,
        step: Step,
        mut rec: TenantRecord,
        rev: i64,
    ) -> Result<Outcome, LifecycleError> {
        let now = self.now();
        if rec.deleting {
            return self.teardown(step, rec, rev).await;
        }
        let spec = self.spec_of(&rec)?;
        match step {
            Step::Place => self.place(rec, rev, &spec, now).await,
            Step::Isolate => {
                let ds = self.datastore(&rec).await?;
                self.isolation.ensure(&ds, &rec.uid).await?;
                rec.set_condition(
                    COND_ISOLATED,
                    true,
                    "UserAndRoleReady",
                    format!("etcd user {} fenced into {}", rec.uid, prefix(&rec.uid)),
                    now,
                );
                // Minting touches nothing outside the record and has nothing to undo, so a
                // create saves both in one write (a crash before it isolates again: `ensure`
                // is idempotent).
                if rec.pki.is_none() {
                    self.mint_into(&mut rec, &spec, &ds, now)?;
                }
                self.save(&rec, rev).await?;
                Ok(Outcome::Ran(Step::Isolate))
            }
            Step::MintPki => {
                let ds = self.datastore(&rec).await?;
                self.mint_into(&mut rec, &spec, &ds, now)?;
                self.save(&rec, rev).await?;
                Ok(Outcome::Ran(Step::MintPki))
            }
            Step::Restore => self.restore(rec, rev, &spec, now).await,
            Step::RestoreHold | Step::RestoreStop | Step::RestoreWrite | Step::RestoreRelease => {
                self.restore_in_place(step, rec, rev, &spec, now).await
            }
            Step::Apply => self.apply(rec, rev, &spec, now).await,
            Step::AwaitReady | Step::ReissueServingCert => {
                self.await_ready(rec, rev, &spec, now).await
            }
            Step::Bootstrap => {
                let pki = self.pki(&rec)?;
                self.bootstrap(&mut rec, &spec, &pki, now).await?;
                rec.phase = if rec.moving.is_some() {
                    Phase::Moving
                } else {
                    Phase::Ready
                };
                rec.current_version = Some(spec.kubernetes_version.to_string());
                if let Some(u) = rec.last_upgrade.as_mut().filter(|u| u.finished_at == 0) {
                    if u.to == spec.kubernetes_version.to_string() {
                        u.finished_at = now;
                    }
                }
                if rec.condition(COND_RECONCILED).is_some() {
                    rec.set_condition(COND_RECONCILED, true, "Converged", "", now);
                }
                self.save(&rec, rev).await?;
                Ok(Outcome::Ran(Step::Bootstrap))
            }
            Step::Reencrypt => self.reencrypt(rec, rev, &spec, now).await,
            Step::EnforceLimits => self.enforce_limits(rec, rev, &spec, now).await,
            Step::AwaitDatastore => self.await_datastore(rec, rev, now).await,
            Step::Hibernate => self.hibernate(rec, rev, now).await,
            Step::MoveReserve => self.move_reserve(rec, rev, &spec, now).await,
            Step::MovePrepare
            | Step::MoveHold
            | Step::MoveCopy
            | Step::MoveSwitch
            | Step::MoveCleanup => self.move_step(step, rec, rev, &spec, now).await,
            Step::MoveAbort => self.move_abort(rec, rev, now).await,
            Step::RotateCredentials => self.rotate(rec, rev, &spec, now).await,
            Step::RenewCertificates => self.renew(rec, rev, &spec, now).await,
            Step::Resync => self.resync(rec, rev, &spec, now).await,
            Step::CheckHealth => self.check_health(rec, rev, &spec, now).await,
            Step::RemoveControlPlane | Step::ReleaseEtcd | Step::Forget => {
                self.teardown(step, rec, rev).await
            }
        }
    }
}
