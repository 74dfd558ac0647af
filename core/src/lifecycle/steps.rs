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

pub(crate) mod limits;
pub(crate) mod moves;

use super::ports::{Isolation, Records, Runtime, TenantObjects};
use super::{now_unix, open_pki, seal_pki, Lifecycle, LifecycleError, Outcome, Settings};
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
    RotateCredentials,
    Apply,
    AwaitReady,
    ReissueServingCert,
    Bootstrap,
    Reencrypt,
    EnforceLimits,
    AwaitDatastore,
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
pub const CREATE_RUN: [Step; 8] = [
    Step::Place,
    Step::Isolate,
    Step::MintPki,
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
    (Step::Isolate, Undo::By(Step::ReleaseEtcd)),
    (
        Step::MintPki,
        Undo::Nothing("the keys live only in the record, which Forget removes"),
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
    rec.moving.is_none()
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

/// Whether a Ready tenant's resync period has passed at `now`.
pub fn resync_due(rec: &TenantRecord, resync_seconds: i64, now: i64) -> bool {
    rec.phase == Phase::Ready && now - rec.bootstrapped_at >= resync_seconds
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
        service_cidr: net.service_cidr.clone(),
        dns_domain: settings.dns_domain.clone(),
        external_sans: sans,
        leaf_validity: settings.certificate_validity,
    }
}

/// The datastore placement chooses for `req` among `candidacies` (but `except`), with its
/// reservation record as read, which the placing transaction is guarded by.
fn choose(
    candidacies: Vec<super::ports::Candidacy>,
    req: &Request,
    policy: placement::Policy,
    except: Option<&crate::ids::DatastoreName>,
) -> Result<
    (
        crate::ids::DatastoreName,
        Option<super::ports::Versioned<crate::datastore::Reservation>>,
    ),
    placement::PlacementError,
> {
    let plain: Vec<_> = candidacies
        .iter()
        .map(|c| c.candidate.clone())
        .filter(|c| Some(&c.name) != except)
        .collect();
    let chosen = placement::place(req, &plain, policy)?.name.clone();
    let reservation = candidacies
        .into_iter()
        .find(|c| c.candidate.name == chosen)
        .and_then(|c| c.reservation);
    Ok((chosen, reservation))
}

/// Makes `pki` ready to encrypt as `spec` asks: the key of its rotation first, its resources
/// noted as possibly encrypted. Whether anything changed (the configuration then changes too).
fn prepare_encryption(pki: &mut TenantPki, spec: &TenantSpec) -> bool {
    let want = EncryptedWith::of(&spec.encryption);
    let key = pki.ensure_encryption_key(want.rotation);
    let resources = pki.note_encrypted_resources(&want.resources);
    key || resources
}

/// The objects bootstrap applies inside the tenant, and those of add-ons turned off.
fn bootstrap_objects(
    rec: &TenantRecord,
    spec: &TenantSpec,
    pki: &TenantPki,
    endpoint: &str,
    dns_domain: &str,
) -> (Vec<serde_json::Value>, Vec<serde_json::Value>) {
    let inputs = bootstrap::Inputs {
        cluster_name: &rec.name,
        endpoint,
        ca_pem: &pki.ca_bundle(),
        spec,
        dns_domain,
    };
    let (mut apply, mut remove) = (
        bootstrap::render(&inputs),
        bootstrap::disabled_addons(&inputs),
    );
    let wall = limits::wall_objects(rec, spec);
    if rec.walled().any() {
        apply.extend(wall);
    } else {
        remove.extend(wall);
    }
    (apply, remove)
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
        let now = now_unix();
        if rec.deleting {
            return self.teardown(step, rec, rev).await;
        }
        let spec = self.records.spec(&rec)?;
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
                self.save(&rec, rev).await?;
                Ok(Outcome::Ran(Step::Isolate))
            }
            Step::MintPki => {
                let ds = self.datastore(&rec).await?;
                let client_ca = ds.client_ca(&self.kek)?;
                let mut pki = mint(&pki_spec(&rec, &spec, &self.settings), &client_ca)?;
                // Nothing is stored yet: everything the tenant ever writes is encrypted.
                prepare_encryption(&mut pki, &spec);
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
                seal_pki(&self.kek, &mut rec, &pki)?;
                self.save(&rec, rev).await?;
                Ok(Outcome::Ran(Step::MintPki))
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
                if rec.condition(COND_RECONCILED).is_some() {
                    rec.set_condition(COND_RECONCILED, true, "Converged", "", now);
                }
                self.save(&rec, rev).await?;
                Ok(Outcome::Ran(Step::Bootstrap))
            }
            Step::Reencrypt => self.reencrypt(rec, rev, &spec, now).await,
            Step::EnforceLimits => self.enforce_limits(rec, rev, &spec, now).await,
            Step::AwaitDatastore => self.await_datastore(rec, rev, now).await,
            Step::MoveReserve => self.move_reserve(rec, rev, &spec, now).await,
            Step::MovePrepare
            | Step::MoveHold
            | Step::MoveCopy
            | Step::MoveSwitch
            | Step::MoveCleanup => self.move_step(step, rec, rev, &spec, now).await,
            Step::MoveAbort => self.move_abort(rec, rev, now).await,
            Step::RotateCredentials => self.rotate(rec, rev, &spec, now).await,
            Step::RenewCertificates => self.renew(rec, rev, &spec, now).await,
            Step::Resync => {
                // Drift repair: what kamajid owns in the runtime and inside the tenant, again.
                let pki = self.pki(&rec)?;
                let ds = self.datastore(&rec).await?;
                self.runtime
                    .apply(&self.render_input(&rec, &spec, &ds), &pki)
                    .await?;
                self.bootstrap(&mut rec, &spec, &pki, now).await?;
                self.save(&rec, rev).await?;
                Ok(Outcome::Ran(Step::Resync))
            }
            Step::CheckHealth => {
                let ds = self.datastore(&rec).await?;
                let status = self
                    .runtime
                    .status(&self.render_input(&rec, &spec, &ds))
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
            Step::RemoveControlPlane | Step::ReleaseEtcd | Step::Forget => {
                self.teardown(step, rec, rev).await
            }
        }
    }

    async fn place(
        &self,
        mut rec: TenantRecord,
        rev: i64,
        spec: &TenantSpec,
        now: i64,
    ) -> Result<Outcome, LifecycleError> {
        let _one_at_a_time = self.placing.lock().await;
        let candidacies = self.records.candidates().await?;
        let req = Request::new(&spec.placement, rec.reservation_bytes);
        let (chosen, reservation) = match choose(candidacies, &req, self.settings.policy, None) {
            Ok(c) => c,
            Err(e) => {
                self.observer.placement_refused(&e);
                // No room (or no match) now. Waiting would hold the create for its whole
                // timeout and then grab capacity whenever some frees, long after the user gave
                // up: fail it now, with the reasons, holding nothing.
                rec.phase = Phase::Failed;
                rec.set_condition(COND_PLACED, false, "Unschedulable", e.to_string(), now);
                self.save(&rec, rev).await?;
                return Ok(Outcome::Converged);
            }
        };
        rec.set_condition(
            COND_PLACED,
            true,
            "Placed",
            format!("placed on datastore {chosen}"),
            now,
        );
        rec.datastore = Some(chosen);
        self.records.place(&rec, rev, reservation).await?;
        Ok(Outcome::Ran(Step::Place))
    }

    async fn apply(
        &self,
        mut rec: TenantRecord,
        rev: i64,
        spec: &TenantSpec,
        now: i64,
    ) -> Result<Outcome, LifecycleError> {
        let ds = self.datastore(&rec).await?;
        // The serving certificate follows `endpoint_address` and `extra_sans`, which change in
        // place: re-issued (same CA) before the apply that rolls it out.
        let want = pki_spec(&rec, spec, &self.settings);
        let mut pki = self.pki(&rec)?;
        let mut changed = prepare_encryption(&mut pki, spec);
        if !pki::serves_exactly(&pki.apiserver.cert, &want)? {
            pki::reissue_apiserver(&mut pki, &want)?;
            changed = true;
        }
        if changed {
            seal_pki(&self.kek, &mut rec, &pki)?;
        }
        self.runtime
            .apply(&self.render_input(&rec, spec, &ds), &pki)
            .await?;
        if rec.observed_generation < rec.generation
            && rec.observed_generation > 0
            && rec.moving.is_none()
        {
            rec.phase = Phase::Upgrading;
        }
        rec.observed_generation = rec.generation;
        rec.set_condition(
            COND_APPLIED,
            true,
            "Applied",
            format!("generation {} applied", rec.generation),
            now,
        );
        rec.set_condition(
            COND_READY,
            false,
            "Rolling",
            "waiting for the control plane to answer",
            now,
        );
        self.save(&rec, rev).await?;
        Ok(Outcome::Ran(Step::Apply))
    }

    async fn await_ready(
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
        // An address the serving certificate does not name yet is named as soon as the runtime
        // gives it (a load balancer's, a node port's, a cluster IP), and the pods, held at none
        // until then (`Tenant::address_known`), start once with the certificate they keep: pods
        // started before would be replaced at once, a rollout a full admin cluster has no room
        // for.
        let held = rec.endpoint.is_none() && spec.network.endpoint_address.is_none();
        if let Some(e) = status.endpoint.as_deref() {
            let pki = self.pki(&rec)?;
            let host = endpoint_host(e);
            let covered = pki::covers(&pki.apiserver.cert, &host);
            if !covered || held {
                // Recorded now, so the apply that starts or rolls the pods keeps this name.
                rec.endpoint = Some(e.to_owned());
                let (reason, message) = if covered {
                    (
                        "AddressKnown",
                        format!("the control plane starts now that its address {host} is known"),
                    )
                } else {
                    let mut pki = pki;
                    let want = pki_spec(&rec, spec, &self.settings);
                    pki::reissue_apiserver(&mut pki, &want)?;
                    seal_pki(&self.kek, &mut rec, &pki)?;
                    (
                        "ServingCertReissued",
                        format!("serving certificate re-issued for the endpoint address {host}"),
                    )
                };
                rec.set_condition(COND_APPLIED, false, reason, message, now);
                self.save(&rec, rev).await?;
                return Ok(Outcome::Ran(Step::ReissueServingCert));
            }
        }
        let endpoint = match (status.ready, status.endpoint) {
            (true, Some(e)) => e,
            _ => {
                // Written only when what it waits for changes: a thousand waiting tenants must
                // not rewrite their records every round.
                let before = rec.clone();
                if let Some(why) = status.stalled {
                    // It will not start as configured: say so now, in its own words, rather
                    // than wait out the apply's timeout. A spec that fixes it rolls it again.
                    rec.phase = Phase::Degraded;
                    rec.set_condition(COND_READY, false, REASON_STALLED, why, now);
                    if rec != before {
                        tracing::warn!(tenant = %rec.name, "control plane does not start");
                        self.save(&rec, rev).await?;
                    }
                    return Ok(Outcome::Waiting(Step::AwaitReady));
                }
                let reason = if rec.phase == Phase::Degraded {
                    "Unhealthy"
                } else {
                    "Waiting"
                };
                rec.set_condition(COND_READY, false, reason, status.message, now);
                if rec != before {
                    self.save(&rec, rev).await?;
                }
                return Ok(Outcome::Waiting(Step::AwaitReady));
            }
        };
        rec.endpoint = Some(endpoint);
        rec.set_condition(COND_READY, true, "Ready", "", now);
        // Answering again (new, upgraded, or back from Degraded): what kubeadm join needs is
        // applied again before the tenant reads Ready.
        rec.set_condition(
            COND_BOOTSTRAPPED,
            false,
            "Pending",
            "the control plane answers; bootstrapping",
            now,
        );
        self.save(&rec, rev).await?;
        Ok(Outcome::Ran(Step::AwaitReady))
    }

    /// Writes every encrypted object again, so each is stored with the newest key (or, for a
    /// resource no longer encrypted, plain), then retires what no object needs any more. Runs
    /// only once the control plane answers with the configuration that encrypts as the spec
    /// asks: a PKI not yet prepared for it is prepared and rolled out first.
    async fn reencrypt(
        &self,
        mut rec: TenantRecord,
        rev: i64,
        spec: &TenantSpec,
        now: i64,
    ) -> Result<Outcome, LifecycleError> {
        let mut pki = self.pki(&rec)?;
        if prepare_encryption(&mut pki, spec) {
            // A record from before encryption at rest, or a spec change Apply has not seen.
            seal_pki(&self.kek, &mut rec, &pki)?;
            rec.set_condition(
                COND_APPLIED,
                false,
                "EncryptionKeyAdded",
                "rolling out the encryption configuration before rewriting",
                now,
            );
            self.save(&rec, rev).await?;
            return Ok(Outcome::Ran(Step::Reencrypt));
        }
        let want = EncryptedWith::of(&spec.encryption);
        let mut resources = want.all_resources();
        for r in &pki.encrypted_resources {
            if !resources.contains(r) {
                resources.push(r.clone());
            }
        }
        let endpoint = rec.endpoint.clone().unwrap_or_default();
        let admin = pki.admin_kubeconfig(rec.name.as_str(), &endpoint);
        let written = self.objects.rewrite(&endpoint, &admin, &resources).await?;
        if pki.retire_after_rewrite(&want.resources) {
            seal_pki(&self.kek, &mut rec, &pki)?;
            rec.set_condition(
                COND_APPLIED,
                false,
                "EncryptionKeysRetired",
                "rolling out the encryption configuration without the retired keys",
                now,
            );
        }
        rec.set_condition(
            COND_ENCRYPTED,
            true,
            "Rewritten",
            format!(
                "{written} objects of {} written again with key-{}",
                resources.join(", "),
                want.rotation
            ),
            now,
        );
        rec.encrypted = Some(want);
        self.save(&rec, rev).await?;
        Ok(Outcome::Ran(Step::Reencrypt))
    }

    /// Moves the PKI one phase towards the rotation the spec asks: completes a started rotation
    /// first when another is asked, starts one when the generation moved. Apply rolls it out.
    async fn rotate(
        &self,
        mut rec: TenantRecord,
        rev: i64,
        spec: &TenantSpec,
        now: i64,
    ) -> Result<Outcome, LifecycleError> {
        let (want, have) = (spec.credential_rotation, rec.credentials);
        let mut pki = self.pki(&rec)?;
        let pki_spec = pki_spec(&rec, spec, &self.settings);
        let what = if have.started && (want.generation != have.generation || !want.started) {
            pki.complete_rotation(&pki_spec)?;
            rec.credentials.started = false;
            format!(
                "rotation {} completed: the previous CA and service-account key are withdrawn",
                have.generation
            )
        } else if want.generation != have.generation {
            pki.start_rotation(&pki_spec)?;
            rec.credentials = crate::spec::CredentialRotation {
                generation: want.generation,
                started: true,
            };
            format!(
                "rotation {} started: a new CA and service-account key, the previous ones still trusted",
                want.generation
            )
        } else {
            rec.credentials = want;
            "nothing to rotate".to_owned()
        };
        seal_pki(&self.kek, &mut rec, &pki)?;
        rec.set_condition(
            COND_CREDENTIALS,
            !rec.credentials.started,
            if rec.credentials.started {
                "Started"
            } else {
                "Completed"
            },
            what,
            now,
        );
        rec.set_condition(
            COND_APPLIED,
            false,
            "CredentialsRotated",
            "rolling out the rotated credentials",
            now,
        );
        self.save(&rec, rev).await?;
        Ok(Outcome::Ran(Step::RotateCredentials))
    }

    /// Signs the leaf certificates again (same CAs) once the first is within the renewal
    /// window; Apply then rolls them out. A record that does not say when they expire gets the
    /// date recorded instead.
    async fn renew(
        &self,
        mut rec: TenantRecord,
        rev: i64,
        spec: &TenantSpec,
        now: i64,
    ) -> Result<Outcome, LifecycleError> {
        let mut pki = self.pki(&rec)?;
        let expires = pki::leaves_expire_at(&pki);
        if now < expires - self.settings.certificate_renew_before.whole_seconds() {
            seal_pki(&self.kek, &mut rec, &pki)?;
            self.save(&rec, rev).await?;
            return Ok(Outcome::Ran(Step::RenewCertificates));
        }
        let ds = self.datastore(&rec).await?;
        let client_ca = ds.client_ca(&self.kek)?;
        pki::renew_leaves(&mut pki, &pki_spec(&rec, spec, &self.settings), &client_ca)?;
        seal_pki(&self.kek, &mut rec, &pki)?;
        let at = time::OffsetDateTime::from_unix_timestamp(expires)
            .map(|t| t.to_string())
            .unwrap_or_else(|_| expires.to_string());
        rec.set_condition(
            COND_APPLIED,
            false,
            "CertificatesRenewed",
            format!("leaf certificates renewed; the first expired at {at}"),
            now,
        );
        self.save(&rec, rev).await?;
        Ok(Outcome::Ran(Step::RenewCertificates))
    }

    /// Records that the tenant's datastore refuses writes (the tenant turns Degraded and waits),
    /// or that it takes them again (the tenant then goes through Bootstrap back to Ready).
    async fn await_datastore(
        &self,
        mut rec: TenantRecord,
        rev: i64,
        now: i64,
    ) -> Result<Outcome, LifecycleError> {
        let refusing = rec
            .datastore
            .as_ref()
            .and_then(|ds| self.isolation.refusing_writes(ds));
        let before = rec.clone();
        match refusing {
            Some(why) => {
                let ds = rec
                    .datastore
                    .as_ref()
                    .map(ToString::to_string)
                    .unwrap_or_default();
                rec.set_condition(
                    COND_WRITABLE,
                    false,
                    "DatastoreAlarm",
                    format!("datastore {ds} refuses writes: {why}"),
                    now,
                );
                rec.phase = Phase::Degraded;
                if rec != before {
                    tracing::warn!(tenant = %rec.name, datastore = %ds, "datastore refuses writes");
                    self.save(&rec, rev).await?;
                }
                Ok(Outcome::Waiting(Step::AwaitDatastore))
            }
            None => {
                rec.set_condition(COND_WRITABLE, true, "Writable", "", now);
                self.save(&rec, rev).await?;
                Ok(Outcome::Ran(Step::AwaitDatastore))
            }
        }
    }

    /// Applies the bootstrap objects inside the tenant and records it; the caller saves.
    async fn bootstrap(
        &self,
        rec: &mut TenantRecord,
        spec: &TenantSpec,
        pki: &TenantPki,
        now: i64,
    ) -> Result<(), LifecycleError> {
        let endpoint = rec.endpoint.clone().unwrap_or_default();
        let (apply, remove) =
            bootstrap_objects(rec, spec, pki, &endpoint, &self.settings.dns_domain);
        let admin = pki.admin_kubeconfig(rec.name.as_str(), &endpoint);
        self.objects
            .sync(&endpoint, &admin, &apply, &remove)
            .await?;
        rec.bootstrapped_at = now;
        rec.set_condition(
            COND_BOOTSTRAPPED,
            true,
            "Bootstrapped",
            format!("{} objects for kubeadm join applied", apply.len()),
            now,
        );
        Ok(())
    }

    async fn teardown(
        &self,
        step: Step,
        mut rec: TenantRecord,
        rev: i64,
    ) -> Result<Outcome, LifecycleError> {
        let now = now_unix();
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
