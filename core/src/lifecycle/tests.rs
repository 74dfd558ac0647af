//! The lifecycle on in-memory fakes of its ports, as omicron tests its sagas: every step's
//! effects run twice, a failure at every step is retried to convergence, and a failure at every
//! step of a delete still ends with nothing left.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::fakes::*;
use super::ports::Records;
use super::steps::{next, undo_plan, Due, Step, Undo, CREATE, CREATE_RUN, DELETE};
use super::*;
use crate::controlplane::testing::spec as tenant_spec;
use crate::datastore::DatastoreRecord;
use crate::ids::{DatastoreName, TenantName};
use crate::kek::datastore_aad;
use crate::pki::new_ca;
use crate::spec::ServiceType;
use crate::tenant::*;

type Life = Lifecycle<MemRecords, MemIsolation, MemRuntime, MemObjects>;

struct World {
    life: Life,
    faults: Faults,
    shard: DatastoreName,
}

/// A datastore record with its own client CA, sealed with `kek`.
fn datastore(kek: &Kek, name: &str) -> DatastoreRecord {
    let name = DatastoreName::parse(name).unwrap();
    let client_ca = new_ca("etcd client CA").unwrap();
    DatastoreRecord {
        name: name.clone(),
        endpoints: vec!["https://10.0.0.1:2379".into()],
        ca_certificate: client_ca.cert.clone(),
        client_certificate: String::new(),
        client_key_sealed: String::new(),
        client_key_sha256: String::new(),
        client_ca_certificate: client_ca.cert.clone(),
        client_ca_key_sealed: kek.seal(&datastore_aad(&name), &client_ca.key),
        client_ca_key_sha256: String::new(),
        quota_bytes: 1 << 30,
        max_tenants: None,
        labels: BTreeMap::new(),
        schedulable: true,
        drain: false,
        create_time: 1,
        update_time: 1,
    }
}

fn world() -> World {
    let faults = Faults::default();
    let kek = Kek::from_bytes(&[3; 32]);
    let records = MemRecords {
        faults: faults.clone(),
        ..Default::default()
    };
    let shard = DatastoreName::parse("shard-0").unwrap();
    records.add_datastore(datastore(&kek, "shard-0"));
    let life = Lifecycle::new(
        records,
        MemIsolation {
            faults: faults.clone(),
            ..Default::default()
        },
        Arc::new(MemRuntime {
            faults: faults.clone(),
            ..Default::default()
        }),
        MemObjects {
            faults: faults.clone(),
            ..Default::default()
        },
        kek,
        Settings::default(),
    );
    World {
        life,
        faults,
        shard,
    }
}

impl World {
    async fn create(&self, name: &str) -> TenantName {
        let name = TenantName::parse(name).unwrap();
        let wire = self
            .life
            .records
            .wire(&tenant_spec(ServiceType::LoadBalancer));
        let rec = TenantRecord::new(name.clone(), wire, DEFAULT_RESERVATION_BYTES, now_unix());
        self.life.records.create_tenant(&rec).await.unwrap();
        name
    }

    fn record(&self, name: &TenantName) -> Option<TenantRecord> {
        self.life.records.get(name).map(|v| v.value)
    }

    /// Changes the tenant's spec as an update through the API does.
    async fn update(&self, name: &TenantName, change: impl FnOnce(&mut crate::spec::TenantSpec)) {
        let v = self.life.records.get(name).unwrap();
        let mut rec = v.value;
        let mut spec = self.life.records.spec(&rec).unwrap();
        change(&mut spec);
        rec.spec = self.life.records.wire(&spec);
        rec.generation += 1;
        self.life
            .records
            .update_tenant(&rec, v.revision)
            .await
            .unwrap();
    }

    /// Changes the stored record directly, as an older kamajid or the passing of time would.
    async fn tamper(&self, name: &TenantName, change: impl FnOnce(&mut TenantRecord)) {
        let v = self.life.records.get(name).unwrap();
        let mut rec = v.value;
        change(&mut rec);
        self.life
            .records
            .update_tenant(&rec, v.revision)
            .await
            .unwrap();
    }

    fn pki(&self, name: &TenantName) -> crate::pki::TenantPki {
        open_pki(&self.life.kek, &self.record(name).unwrap())
            .unwrap()
            .unwrap()
    }

    fn runtime_keys(&self, name: &TenantName) -> Vec<String> {
        self.life.runtime.keys.lock().unwrap()[name].clone()
    }

    /// Steps until converged, the steps run.
    async fn steps_to_converge(&self, name: &TenantName) -> Vec<Step> {
        let mut ran = Vec::new();
        for _ in 0..20 {
            match self.life.step(name).await.unwrap() {
                Outcome::Ran(s) => ran.push(s),
                Outcome::Converged => return ran,
                o => panic!("{o:?} after {ran:?}"),
            }
        }
        panic!("no convergence: {ran:?}")
    }

    async fn delete(&self, name: &TenantName) {
        let v = self.life.records.get(name).unwrap();
        let mut rec = v.value;
        rec.mark_deleting(now_unix());
        self.life
            .records
            .update_tenant(&rec, v.revision)
            .await
            .unwrap();
    }

    /// What a converged, Ready tenant holds in the world: one placement, one etcd user, one
    /// control plane, its in-tenant objects.
    fn assert_ready(&self, name: &TenantName) {
        let rec = self.record(name).unwrap();
        assert_eq!(rec.phase, Phase::Ready, "{rec:#?}");
        assert_eq!(rec.endpoint.as_deref(), Some(ENDPOINT));
        assert_eq!(rec.datastore.as_ref(), Some(&self.shard));
        let res = self.life.records.reservation(&self.shard);
        assert_eq!(
            (res.tenants, res.reserved_bytes),
            (1, DEFAULT_RESERVATION_BYTES),
            "placed once"
        );
        let users = self.life.isolation.users.lock().unwrap().clone();
        assert_eq!(
            users.into_iter().collect::<Vec<_>>(),
            [(self.shard.clone(), rec.uid.clone())]
        );
        let applied = self.life.runtime.applied.lock().unwrap();
        let (version, serving) = &applied[name];
        assert_eq!(version, "1.35.2");
        let pki = open_pki(&self.life.kek, &rec).unwrap().unwrap();
        assert_eq!(
            serving, &pki.apiserver.cert,
            "the runtime serves the recorded certificate"
        );
        let objects = self.life.objects.applied.lock().unwrap();
        assert!(
            objects[name.as_str()]
                .iter()
                .any(|o| o.contains("cluster-info")),
            "{objects:?}"
        );
    }

    /// Nothing of any tenant is left anywhere.
    fn assert_clean(&self) {
        assert!(self.life.records.tenants_now().is_empty(), "records left");
        assert_eq!(self.life.records.placements(), 0, "placements left");
        let res = self.life.records.reservation(&self.shard);
        assert_eq!(
            (res.tenants, res.reserved_bytes),
            (0, 0),
            "reservation left"
        );
        assert!(
            self.life.isolation.users.lock().unwrap().is_empty(),
            "etcd users left"
        );
        assert!(
            self.life.runtime.applied.lock().unwrap().is_empty(),
            "control planes left"
        );
    }
}

impl MemRecords {
    fn tenants_now(&self) -> Vec<TenantName> {
        futures::executor::block_on(self.tenants())
            .unwrap()
            .into_iter()
            .map(|t| t.name)
            .collect()
    }
}

/// The call each create step writes its result with, after its effects.
fn save_of(step: Step) -> &'static str {
    if step == Step::Place {
        "records.place"
    } else {
        "records.update"
    }
}

/// The call each step's effect on the world is, where it has one.
fn effect_of(step: Step) -> &'static str {
    match step {
        Step::Place => "records.place",
        Step::Isolate => "isolation.ensure",
        Step::Apply => "runtime.apply",
        Step::AwaitReady => "runtime.status",
        Step::Bootstrap => "objects.sync",
        Step::RemoveControlPlane => "runtime.delete",
        Step::ReleaseEtcd => "isolation.remove",
        _ => "records.release",
    }
}

#[tokio::test]
async fn the_create_flow_runs_its_steps_in_order_and_converges_ready() {
    let w = world();
    let t = w.create("acme").await;
    for step in CREATE_RUN {
        assert_eq!(w.life.step(&t).await.unwrap(), Outcome::Ran(step));
    }
    assert_eq!(w.life.step(&t).await.unwrap(), Outcome::Converged);
    w.assert_ready(&t);
    // Every create step ran, in CREATE's order (Restore only runs for a tenant from a backup).
    let mut run = CREATE_RUN.iter();
    assert!(CREATE
        .iter()
        .filter(|(s, _)| *s != Step::Restore)
        .all(|(s, _)| run.any(|r| r == s)));
}

#[tokio::test]
async fn pods_start_once_with_the_certificate_that_names_their_address() {
    let w = world();
    let t = w.create("acme").await;
    for step in &CREATE_RUN[..3] {
        assert_eq!(w.life.step(&t).await.unwrap(), Outcome::Ran(*step));
    }
    // Applied with no pods: nothing would answer on an address the certificate may not name.
    assert!(w.life.runtime.held.lock().unwrap().contains(&t));
    assert_eq!(w.record(&t).unwrap().endpoint, None);
    assert_eq!(
        w.life.step(&t).await.unwrap(),
        Outcome::Ran(Step::ReissueServingCert)
    );
    let rec = w.record(&t).unwrap();
    assert_eq!(rec.endpoint.as_deref(), Some(ENDPOINT));
    let applied = rec.condition(COND_APPLIED).unwrap();
    assert!(
        !applied.ok && applied.reason == "AddressKnown",
        "{applied:?}"
    );
    assert_eq!(w.life.step(&t).await.unwrap(), Outcome::Ran(Step::Apply));
    assert!(w.life.runtime.held.lock().unwrap().is_empty());

    // An address given up front (endpoint_address) is in the first certificate: pods at once.
    let w = world();
    let name = TenantName::parse("given").unwrap();
    let mut spec = tenant_spec(ServiceType::LoadBalancer);
    spec.network.endpoint_address = Some("127.0.0.1".into());
    let rec = TenantRecord::new(
        name.clone(),
        w.life.records.wire(&spec),
        DEFAULT_RESERVATION_BYTES,
        now_unix(),
    );
    w.life.records.create_tenant(&rec).await.unwrap();
    for step in [Step::Place, Step::Isolate, Step::Apply] {
        assert_eq!(w.life.step(&name).await.unwrap(), Outcome::Ran(step));
    }
    assert!(w.life.runtime.held.lock().unwrap().is_empty());
    assert_eq!(
        w.life.step(&name).await.unwrap(),
        Outcome::Ran(Step::AwaitReady)
    );
}

/// A kamajid that dies after a step's effects but before recording them runs the step again on
/// the next round: the effects happen twice and the world ends as if once.
#[tokio::test]
async fn every_create_step_whose_record_was_lost_runs_again_to_the_same_end() {
    for (i, step) in CREATE_RUN.into_iter().enumerate() {
        let w = world();
        let t = w.create("acme").await;
        for s in &CREATE_RUN[..i] {
            assert_eq!(w.life.step(&t).await.unwrap(), Outcome::Ran(*s));
        }
        w.faults.arm(save_of(step));
        assert!(w.life.step(&t).await.is_err(), "{step:?}");
        assert_eq!(
            w.life.converge(&t, 20).await.unwrap(),
            Outcome::Converged,
            "after {step:?} ran twice"
        );
        w.assert_ready(&t);
    }
}

#[tokio::test]
async fn a_failure_at_every_create_step_is_reported_then_retried_to_convergence() {
    // (Restore's failures: a_restore_interrupted_or_failing_runs_again…)
    for (step, _) in CREATE.into_iter().filter(|(s, _)| *s != Step::Restore) {
        let w = world();
        let t = w.create("acme").await;
        w.faults.arm(effect_of(step));
        let err = w.life.converge(&t, 20).await.unwrap_err();
        w.life.record_failure(&t, &err.to_string()).await;
        let rec = w.record(&t).unwrap();
        let c = rec.condition(COND_RECONCILED).unwrap();
        assert!(
            !c.ok && c.message.contains("injected failure"),
            "{step:?}: {c:?}"
        );
        assert_eq!(w.life.converge(&t, 20).await.unwrap(), Outcome::Converged);
        w.assert_ready(&t);
        let rec = w.record(&t).unwrap();
        assert!(
            rec.done(COND_RECONCILED),
            "{step:?}: the failure stays reported"
        );
    }
}

/// A create abandoned after any of its steps (deleted half-way) runs the undo column of the
/// steps that ran and of the one that may have begun (a crash can stop it between its effect
/// and its record), last first, and nothing else, and leaves nothing anywhere (omicron's
/// `action_failure_can_unwind`).
#[tokio::test]
async fn a_create_abandoned_after_any_step_is_undone_to_a_clean_slate() {
    let undo_of = |step: Step| {
        CREATE
            .iter()
            .find(|(s, _)| *s == step)
            .and_then(|(_, u)| match u {
                Undo::By(s) => Some(*s),
                Undo::Nothing(_) => None,
            })
    };
    for k in 0..=CREATE_RUN.len() {
        let w = world();
        let t = w.create("acme").await;
        for step in &CREATE_RUN[..k] {
            assert_eq!(w.life.step(&t).await.unwrap(), Outcome::Ran(*step));
        }
        w.delete(&t).await;
        let plan = undo_plan(&w.record(&t).unwrap());
        // The undos of the steps that ran and the next (Place's is Forget: the record is the
        // placement).
        let begun = &CREATE_RUN[..(k + 1).min(CREATE_RUN.len())];
        let mut want: Vec<Step> = begun.iter().rev().filter_map(|s| undo_of(*s)).collect();
        want.dedup();
        if want.last() != Some(&Step::Forget) {
            want.push(Step::Forget);
        }
        assert_eq!(plan, want, "after {:?}", &CREATE_RUN[..k]);
        let mut ran = Vec::new();
        loop {
            match w.life.step(&t).await.unwrap() {
                Outcome::Ran(s) => ran.push(s),
                Outcome::Gone => break,
                o => panic!("{o:?} after {ran:?}"),
            }
        }
        assert_eq!(ran, want, "after {:?}", &CREATE_RUN[..k]);
        w.assert_clean();
    }
}

#[tokio::test]
async fn every_delete_step_interrupted_or_failing_still_leaves_a_clean_slate() {
    for (k, step) in DELETE.into_iter().enumerate() {
        for fault in [effect_of(step), "records.update"] {
            if step == Step::Forget && fault == "records.update" {
                continue; // Forget writes no record: it removes it
            }
            let w = world();
            let t = w.create("acme").await;
            assert_eq!(w.life.converge(&t, 20).await.unwrap(), Outcome::Converged);
            w.delete(&t).await;
            for s in &DELETE[..k] {
                assert_eq!(w.life.step(&t).await.unwrap(), Outcome::Ran(*s));
            }
            w.faults.arm(fault);
            assert!(w.life.step(&t).await.is_err(), "{step:?} {fault}");
            assert_eq!(w.life.converge(&t, 20).await.unwrap(), Outcome::Gone);
            w.assert_clean();
        }
    }
}

/// A record whose PKI decrypts but does not decode (a kamajid that wrote another shape) stops
/// the tenant with the reason; its CA stays, never re-minted. Likewise a spec that does not
/// decode.
#[tokio::test]
async fn a_stored_pki_or_spec_that_does_not_decode_stops_the_tenant_and_keeps_its_ca() {
    let w = world();
    let t = w.create("acme").await;
    assert_eq!(w.life.converge(&t, 20).await.unwrap(), Outcome::Converged);
    let v = w.life.records.get(&t).unwrap();
    let mut rec = v.value;
    let ca = rec.pki.as_ref().unwrap().ca_certificate.clone();
    rec.pki.as_mut().unwrap().sealed = w
        .life
        .kek
        .seal(&crate::kek::tenant_aad(&t), r#"{"ca":"not a pki"}"#);
    rec.generation += 1; // something to do: an apply
    w.life
        .records
        .update_tenant(&rec, v.revision)
        .await
        .unwrap();
    let err = w.life.converge(&t, 20).await.unwrap_err();
    assert!(
        err.to_string()
            .contains("stored PKI of tenant acme does not decode"),
        "{err}"
    );
    w.life.record_failure(&t, &err.to_string()).await;
    let rec = w.record(&t).unwrap();
    assert_eq!(
        rec.pki.as_ref().unwrap().ca_certificate,
        ca,
        "the CA was replaced"
    );
    assert_eq!(rec.phase, Phase::Degraded);
    assert!(rec
        .condition(COND_RECONCILED)
        .unwrap()
        .message
        .contains("does not decode"));

    let t2 = w.create("beta").await;
    let v = w.life.records.get(&t2).unwrap();
    let mut rec = v.value;
    rec.spec = WireSpec("not protobuf".into());
    w.life
        .records
        .update_tenant(&rec, v.revision)
        .await
        .unwrap();
    let err = w.life.converge(&t2, 20).await.unwrap_err();
    assert!(
        err.to_string()
            .contains("the spec of tenant beta does not decode"),
        "{err}"
    );
    assert!(
        w.record(&t2).unwrap().datastore.is_none(),
        "placed on a spec it cannot read"
    );
}

#[tokio::test]
async fn a_round_checks_a_healthy_tenant_from_its_listing_and_reads_it_only_when_it_is_not() {
    let w = world();
    let t = w.create("acme").await;
    assert_eq!(w.life.converge(&t, 20).await.unwrap(), Outcome::Converged);
    w.life.set_checked(&t, false);
    let before = w.life.records.get(&t).unwrap().revision;
    // Reading the record would fail: the routine check does not read it.
    w.faults.arm("records.get");
    w.life.round().await;
    assert!(!w.life.health_due(&t), "checked");
    assert!(
        w.life.records.tenant(&t).await.is_err(),
        "the armed read is still armed: the round did not read the record"
    );
    assert_eq!(w.life.records.get(&t).unwrap().revision, before);
    // Unhealthy: the step reads the record and writes what it found.
    w.life.runtime.down.lock().unwrap().insert(t.clone());
    w.life.set_checked(&t, false);
    w.life.round().await;
    let rec = w.record(&t).unwrap();
    assert_eq!(rec.phase, Phase::Degraded);
    assert_eq!(rec.condition(COND_READY).unwrap().reason, "Unhealthy");
}

#[tokio::test]
async fn a_ready_tenant_that_stops_answering_goes_degraded_and_comes_back_bootstrapped() {
    let w = world();
    let t = w.create("acme").await;
    assert_eq!(w.life.converge(&t, 20).await.unwrap(), Outcome::Converged);
    w.life.runtime.down.lock().unwrap().insert(t.clone());
    w.life.objects.applied.lock().unwrap().clear();
    // The check that converge just made is not due again for a while: make it due now.
    w.life.set_checked(&t, false);
    assert_eq!(
        w.life.step(&t).await.unwrap(),
        Outcome::Ran(Step::CheckHealth)
    );
    let rec = w.record(&t).unwrap();
    assert_eq!(rec.phase, Phase::Degraded);
    assert_eq!(rec.condition(COND_READY).unwrap().reason, "Unhealthy");
    // While down, each round waits without rewriting the record.
    let before = w.life.records.get(&t).unwrap().revision;
    assert_eq!(
        w.life.converge(&t, 20).await.unwrap(),
        Outcome::Waiting(Step::AwaitReady)
    );
    assert_eq!(w.life.records.get(&t).unwrap().revision, before);
    w.life.runtime.down.lock().unwrap().clear();
    assert_eq!(w.life.converge(&t, 20).await.unwrap(), Outcome::Converged);
    w.assert_ready(&t);
}

#[tokio::test]
async fn a_control_plane_that_fails_at_start_says_why_at_once_and_recovers_when_fixed() {
    let w = world();
    let t = w.create("acme").await;
    let why =
        "kube-apiserver exits right after it starts (3 times in a row): plugin Foo is unknown";
    w.life
        .runtime
        .stalled
        .lock()
        .unwrap()
        .insert(t.clone(), why.into());
    assert_eq!(
        w.life.converge(&t, 20).await.unwrap(),
        Outcome::Waiting(Step::AwaitReady)
    );
    let rec = w.record(&t).unwrap();
    assert_eq!(rec.phase, Phase::Degraded);
    let c = rec.condition(COND_READY).unwrap();
    assert_eq!(
        (c.reason.as_str(), c.message.as_str()),
        (REASON_STALLED, why)
    );
    // Nothing new: nothing rewritten.
    let before = w.life.records.get(&t).unwrap().revision;
    assert_eq!(
        w.life.converge(&t, 20).await.unwrap(),
        Outcome::Waiting(Step::AwaitReady)
    );
    assert_eq!(w.life.records.get(&t).unwrap().revision, before);
    // Fixed (a spec the runtime can start): Ready.
    w.life.runtime.stalled.lock().unwrap().clear();
    assert_eq!(w.life.converge(&t, 20).await.unwrap(), Outcome::Converged);
    w.assert_ready(&t);
}

#[test]
fn the_next_step_follows_from_the_record_alone() {
    let name = TenantName::parse("acme").unwrap();
    let mut rec = TenantRecord::new(name, WireSpec::default(), 1, 0);
    let due = Due::default();
    assert_eq!(next(&rec, due), Some(Step::Place));
    rec.datastore = Some(DatastoreName::parse("a").unwrap());
    assert_eq!(next(&rec, due), Some(Step::Isolate));
    rec.set_condition(COND_ISOLATED, true, "", "", 0);
    assert_eq!(next(&rec, due), Some(Step::MintPki));
    rec.pki = Some(StoredPki {
        sealed: String::new(),
        ca_certificate: String::new(),
        certificates_expire_at: 1,
        stored_as: None,
    });
    assert_eq!(next(&rec, due), Some(Step::Apply));
    rec.set_condition(COND_APPLIED, true, "", "", 0);
    rec.observed_generation = 1;
    assert_eq!(next(&rec, due), Some(Step::AwaitReady));
    rec.set_condition(COND_READY, true, "", "", 0);
    assert_eq!(next(&rec, due), Some(Step::Bootstrap));
    rec.set_condition(COND_BOOTSTRAPPED, true, "", "", 0);
    rec.phase = Phase::Ready;
    assert_eq!(next(&rec, due), None);
    assert_eq!(
        next(
            &rec,
            Due {
                resync: true,
                health: true,
                ..due
            }
        ),
        Some(Step::Resync)
    );
    let all = Due {
        resync: true,
        health: true,
        reencrypt: true,
        renew: true,
        rotate: false,
        limits: true,
        relocate: false,
        abort_move: false,
        datastore_refusing: false,
        hibernate: false,
        restore: false,
    };
    assert_eq!(next(&rec, all), Some(Step::Reencrypt), "rewrites first");
    rec.set_condition(COND_BOOTSTRAPPED, false, "", "", 0);
    assert_eq!(
        next(&rec, all),
        Some(Step::Reencrypt),
        "rewrites before the tenant reads Ready again"
    );
    rec.set_condition(COND_BOOTSTRAPPED, true, "", "", 0);
    assert_eq!(
        next(
            &rec,
            Due {
                reencrypt: false,
                ..all
            }
        ),
        Some(Step::EnforceLimits),
        "the quota before the rest of day two"
    );
    assert_eq!(
        next(
            &rec,
            Due {
                reencrypt: false,
                limits: false,
                ..all
            }
        ),
        Some(Step::RenewCertificates)
    );
    assert_eq!(
        next(
            &rec,
            Due {
                health: true,
                ..due
            }
        ),
        Some(Step::CheckHealth)
    );
    rec.generation = 2;
    assert_eq!(
        next(&rec, due),
        Some(Step::Apply),
        "a new spec is applied first"
    );
    assert_eq!(
        next(
            &rec,
            Due {
                rotate: true,
                ..due
            }
        ),
        Some(Step::RotateCredentials),
        "with the rotated credentials"
    );
    rec.mark_deleting(0);
    assert_eq!(next(&rec, due), Some(Step::RemoveControlPlane));
    rec.set_condition(COND_REMOVED, true, "", "", 0);
    assert_eq!(next(&rec, due), Some(Step::ReleaseEtcd));
    rec.set_condition(COND_RELEASED, true, "", "", 0);
    assert_eq!(next(&rec, due), Some(Step::Forget));
    let mut failed = TenantRecord::new(TenantName::parse("f").unwrap(), WireSpec::default(), 1, 0);
    failed.phase = Phase::Failed;
    assert_eq!(next(&failed, due), None, "terminal");
}

#[tokio::test]
async fn a_new_tenant_encrypts_from_its_first_write_and_needs_no_rewrite() {
    let w = world();
    let t = w.create("acme").await;
    w.steps_to_converge(&t).await;
    assert_eq!(w.runtime_keys(&t), ["key-0"]);
    let rec = w.record(&t).unwrap();
    assert_eq!(rec.encrypted.as_ref().map(|e| e.rotation), Some(0));
    assert!(rec.done(COND_ENCRYPTED));
    assert!(w.life.objects.rewrites.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_key_rotation_encrypts_with_the_new_key_rewrites_everything_then_retires_the_old() {
    let w = world();
    let t = w.create("acme").await;
    w.steps_to_converge(&t).await;
    w.update(&t, |s| {
        s.encryption.key_rotation = 1;
        s.encryption.resources = vec!["configmaps".into()];
    })
    .await;
    // Rolled out with both keys, the new one first, before anything is rewritten.
    for step in [Step::Apply, Step::AwaitReady] {
        assert_eq!(w.life.step(&t).await.unwrap(), Outcome::Ran(step));
    }
    assert_eq!(w.runtime_keys(&t), ["key-1", "key-0"]);
    // The rewrite fails once: nothing is retired, it runs again.
    w.faults.arm("objects.rewrite");
    assert!(w.life.step(&t).await.is_err());
    assert_eq!(w.pki(&t).encryption_keys.len(), 2);
    assert_eq!(
        w.life.step(&t).await.unwrap(),
        Outcome::Ran(Step::Reencrypt)
    );
    assert_eq!(
        w.life.objects.rewrites.lock().unwrap().clone(),
        [(
            "acme".to_owned(),
            vec!["secrets".to_owned(), "configmaps".to_owned()]
        )]
    );
    let pki = w.pki(&t);
    assert_eq!(
        pki.encryption_keys
            .iter()
            .map(|k| k.name())
            .collect::<Vec<_>>(),
        ["key-1"]
    );
    // Then rolled out without the old key.
    let ran = w.steps_to_converge(&t).await;
    assert_eq!(ran, [Step::Apply, Step::AwaitReady, Step::Bootstrap]);
    assert_eq!(w.runtime_keys(&t), ["key-1"]);
    assert_eq!(w.record(&t).unwrap().encrypted.unwrap().rotation, 1);

    // Dropping configmaps: written plain again, then no longer read with the keys.
    w.update(&t, |s| s.encryption.resources.clear()).await;
    w.steps_to_converge(&t).await;
    let rewrites = w.life.objects.rewrites.lock().unwrap().clone();
    assert_eq!(rewrites.last().unwrap().1, ["secrets", "configmaps"]);
    assert!(w.pki(&t).encrypted_resources.is_empty());
    w.assert_ready(&t);
}

#[tokio::test]
async fn a_tenant_from_before_encryption_at_rest_gets_a_key_rolled_out_then_its_secrets_rewritten()
{
    let w = world();
    let t = w.create("acme").await;
    w.steps_to_converge(&t).await;
    let kek = w.life.kek.clone();
    w.tamper(&t, |rec| {
        let mut pki = open_pki(&kek, rec).unwrap().unwrap();
        pki.encryption_keys.clear();
        seal_pki(&kek, rec, &pki).unwrap();
        rec.encrypted = None;
    })
    .await;
    let ran = w.steps_to_converge(&t).await;
    assert_eq!(
        ran,
        [
            Step::Reencrypt, // adds the key; nothing rewritten yet
            Step::Apply,
            Step::AwaitReady,
            Step::Reencrypt,
            Step::Bootstrap,
        ]
    );
    assert_eq!(w.life.objects.rewrites.lock().unwrap().len(), 1);
    assert_eq!(w.runtime_keys(&t), ["key-0"]);
}

#[tokio::test]
async fn leaf_certificates_are_renewed_within_the_window_with_the_same_ca() {
    let mut w = world();
    w.life.settings.certificate_validity = time::Duration::hours(2);
    w.life.settings.certificate_renew_before = time::Duration::hours(1);
    let t = w.create("acme").await;
    w.steps_to_converge(&t).await;
    let before = w.pki(&t);
    let expires = w.record(&t).unwrap().pki.unwrap().certificates_expire_at;
    assert!((expires - now_unix() - 7200).abs() < 60, "{expires}");
    assert!(w.steps_to_converge(&t).await.is_empty(), "not due yet");

    // An expiry not recorded (an older kamajid): recorded, nothing renewed.
    w.tamper(&t, |rec| {
        rec.pki.as_mut().unwrap().certificates_expire_at = 0
    })
    .await;
    assert_eq!(w.steps_to_converge(&t).await, [Step::RenewCertificates]);
    assert_eq!(
        w.pki(&t).credentials_fingerprint(),
        before.credentials_fingerprint()
    );
    assert_eq!(
        w.record(&t).unwrap().pki.unwrap().certificates_expire_at,
        expires
    );

    // The operator widens the window (and the validity with it): every leaf signed again by
    // the same CA, rolled out.
    w.life.settings.certificate_validity = time::Duration::hours(4);
    w.life.settings.certificate_renew_before = time::Duration::hours(3);
    let ran = w.steps_to_converge(&t).await;
    assert_eq!(
        ran,
        [
            Step::RenewCertificates,
            Step::Apply,
            Step::AwaitReady,
            Step::Bootstrap
        ]
    );
    let after = w.pki(&t);
    assert_ne!(
        after.credentials_fingerprint(),
        before.credentials_fingerprint()
    );
    assert_eq!(after.ca, before.ca);
    assert_eq!(after.service_account_key, before.service_account_key);
    assert!(crate::pki::issued_by(&after.admin.cert, &before.ca.cert));
    let expires = w.record(&t).unwrap().pki.unwrap().certificates_expire_at;
    assert!((expires - now_unix() - 4 * 3600).abs() < 60, "{expires}");
    assert!(w.steps_to_converge(&t).await.is_empty(), "renewed once");
    w.assert_ready(&t);
}

#[tokio::test]
async fn a_credential_rotation_trusts_both_cas_until_it_completes() {
    use crate::pki::issued_by;
    use crate::spec::CredentialRotation;
    let w = world();
    let t = w.create("acme").await;
    w.steps_to_converge(&t).await;
    let before = w.pki(&t);

    // Phase one: a new CA signs the clients; the server still shows the old one, both are
    // trusted, and tokens of both service-account keys verify.
    w.update(&t, |s| {
        s.credential_rotation = CredentialRotation {
            generation: 1,
            started: true,
        }
    })
    .await;
    let steps = [
        Step::RotateCredentials,
        Step::Apply,
        Step::AwaitReady,
        Step::Bootstrap,
    ];
    assert_eq!(w.steps_to_converge(&t).await, steps);
    let mid = w.pki(&t);
    assert_ne!(mid.ca, before.ca);
    assert_eq!(mid.previous.as_ref().map(|p| &p.ca), Some(&before.ca));
    assert!(issued_by(&mid.admin.cert, &mid.ca.cert));
    assert!(
        issued_by(&mid.apiserver.cert, &before.ca.cert),
        "clients holding only the old CA still verify the server"
    );
    assert!(issued_by(
        &mid.apiserver_kubelet_client.cert,
        &before.ca.cert
    ));
    assert_eq!(
        mid.ca_bundle(),
        format!("{}{}", mid.ca.cert, before.ca.cert)
    );
    assert!(mid
        .service_account_pubs()
        .ends_with(&before.service_account_pub));
    assert_ne!(mid.service_account_key, before.service_account_key);
    let rec = w.record(&t).unwrap();
    assert_eq!(rec.pki.as_ref().unwrap().ca_certificate, mid.ca_bundle());
    assert!(
        !rec.done(COND_CREDENTIALS),
        "a started rotation is not done"
    );
    w.assert_ready(&t);

    // Phase two: the old CA and key are withdrawn; the server shows the new CA.
    w.update(&t, |s| s.credential_rotation.started = false)
        .await;
    assert_eq!(w.steps_to_converge(&t).await, steps);
    let after = w.pki(&t);
    assert_eq!(after.ca, mid.ca);
    assert!(after.previous.is_none());
    assert_eq!(after.ca_bundle(), after.ca.cert);
    assert_eq!(after.service_account_pubs(), mid.service_account_pub);
    assert!(issued_by(&after.apiserver.cert, &after.ca.cert));
    assert!(issued_by(
        &after.apiserver_kubelet_client.cert,
        &after.ca.cert
    ));
    let rec = w.record(&t).unwrap();
    assert!(rec.done(COND_CREDENTIALS));
    assert_eq!(
        rec.credentials,
        CredentialRotation {
            generation: 1,
            started: false
        }
    );
    w.assert_ready(&t);
}

#[tokio::test]
async fn a_tenant_past_its_quota_is_walled_until_well_back_under_it() {
    use crate::limits::Wall;
    use crate::usage::StorageUsage;
    let w = world();
    let t = w.create("acme").await;
    let u = w.create("other").await;
    assert_eq!(w.life.converge(&t, 20).await.unwrap(), Outcome::Converged);
    assert_eq!(w.life.converge(&u, 20).await.unwrap(), Outcome::Converged);
    let rec = w.record(&t).unwrap();
    let (id, ds) = (rec.uid.clone(), rec.datastore.clone().unwrap());
    let set = |bytes: i64| {
        w.life
            .isolation
            .usage
            .lock()
            .unwrap()
            .insert(id.clone(), StorageUsage { bytes, keys: 10 });
    };
    let policy_applied = || {
        w.life.objects.applied.lock().unwrap()["acme"]
            .iter()
            .any(|o| o.contains("ValidatingAdmissionPolicy"))
    };
    let guard = || w.life.isolation.guard(&ds, &id);

    // Measured for the first time: the role is set to what the record says (no wall), once.
    set(DEFAULT_RESERVATION_BYTES);
    assert_eq!(
        w.life.step(&t).await.unwrap(),
        Outcome::Ran(Step::EnforceLimits)
    );
    assert!(guard().synced && guard().wall == Wall::Down && !guard().soft);
    assert_eq!(
        guard().limits.unwrap().quota_bytes,
        DEFAULT_RESERVATION_BYTES,
        "the limits are registered for the watch"
    );
    assert_eq!(w.life.step(&t).await.unwrap(), Outcome::Converged);

    // Past it: recorded at once (the status says it), the hard wall up...
    set(DEFAULT_RESERVATION_BYTES + 1);
    assert_eq!(
        w.life.step(&t).await.unwrap(),
        Outcome::Ran(Step::EnforceLimits)
    );
    assert!(w.record(&t).unwrap().over_quota());
    assert_eq!(guard().wall, Wall::Up);
    assert!(!policy_applied());
    // ...and held while the apiserver is slow to enforce the policy.
    *w.life.objects.admission_lag.lock().unwrap() = 25;
    assert_eq!(
        w.life.step(&t).await.unwrap(),
        Outcome::Waiting(Step::EnforceLimits)
    );
    assert_eq!(guard().wall, Wall::Up);
    assert!(policy_applied());
    // Enforced: the hard wall comes down (deletes work), the soft one holds; the cluster stays
    // Ready and says why its writes are refused.
    assert_eq!(
        w.life.step(&t).await.unwrap(),
        Outcome::Ran(Step::EnforceLimits)
    );
    assert!(guard().soft && guard().wall == Wall::Down);
    let rec = w.record(&t).unwrap();
    assert!(rec.over_quota());
    assert_eq!(rec.phase, Phase::Ready);
    let c = rec.condition(COND_STORAGE_QUOTA).unwrap();
    assert!(
        c.message
            .contains(&format!("{} bytes", DEFAULT_RESERVATION_BYTES + 1)),
        "{c:?}"
    );
    assert_eq!(w.life.step(&t).await.unwrap(), Outcome::Converged);
    // A resync keeps it while over.
    w.tamper(&t, |r| r.bootstrapped_at = 0).await;
    assert_eq!(w.life.converge(&t, 20).await.unwrap(), Outcome::Converged);
    assert!(policy_applied());
    // The other tenant is untouched.
    assert!(!w.record(&u).unwrap().over_quota());
    // The policy changed behind kamajid's back (the watch marks it unproven and raises the
    // hard wall): put back and proven again.
    w.life
        .isolation
        .set_walls(&ds, &id, Wall::Up, false)
        .await
        .unwrap();
    assert_eq!(
        w.life.step(&t).await.unwrap(),
        Outcome::Ran(Step::EnforceLimits)
    );
    assert!(guard().soft && guard().wall == Wall::Down);

    // Just back under the quota is not enough (no flapping at the edge); under 95 % is.
    set(DEFAULT_RESERVATION_BYTES - 1);
    assert_eq!(w.life.step(&t).await.unwrap(), Outcome::Converged);
    assert!(w.record(&t).unwrap().over_quota());
    set(DEFAULT_RESERVATION_BYTES * 9 / 10);
    assert_eq!(
        w.life.step(&t).await.unwrap(),
        Outcome::Ran(Step::EnforceLimits)
    );
    let rec = w.record(&t).unwrap();
    assert!(!rec.over_quota());
    assert_eq!(
        rec.condition(COND_STORAGE_QUOTA).unwrap().reason,
        "WithinQuota"
    );
    // Recorded first; the walls come down in the next pass.
    assert_eq!(
        w.life.step(&t).await.unwrap(),
        Outcome::Ran(Step::EnforceLimits)
    );
    assert!(!policy_applied());
    assert!(!guard().soft && guard().wall == Wall::Down);
    assert_eq!(w.life.step(&t).await.unwrap(), Outcome::Converged);

    // A raised quota lifts it too.
    set(DEFAULT_RESERVATION_BYTES + 1);
    assert_eq!(w.life.converge(&t, 20).await.unwrap(), Outcome::Converged);
    assert!(w.record(&t).unwrap().over_quota());
    w.update(&t, |s| {
        s.storage_quota_bytes = Some(DEFAULT_RESERVATION_BYTES * 2)
    })
    .await;
    assert_eq!(w.life.converge(&t, 20).await.unwrap(), Outcome::Converged);
    assert!(!w.record(&t).unwrap().over_quota());
    assert!(!policy_applied());
}

#[tokio::test]
async fn a_tenant_past_its_write_budget_is_walled_until_half_its_burst_drained() {
    use crate::limits::{Limits, Wall};
    use crate::usage::StorageUsage;
    let w = world();
    let t = w.create("acme").await;
    assert_eq!(w.life.converge(&t, 20).await.unwrap(), Outcome::Converged);
    let rec = w.record(&t).unwrap();
    let (id, ds) = (rec.uid.clone(), rec.datastore.clone().unwrap());
    w.life.isolation.usage.lock().unwrap().insert(
        id.clone(),
        StorageUsage {
            bytes: 1000,
            keys: 10,
        },
    );
    let burst = Limits::new(1, DEFAULT_RESERVATION_BYTES, None).burst_bytes;
    let owe = |d: i64| {
        w.life.isolation.debt.lock().unwrap().insert(id.clone(), d);
    };
    let guard = || w.life.isolation.guard(&ds, &id);
    owe(0);
    assert_eq!(w.life.converge(&t, 20).await.unwrap(), Outcome::Converged);

    owe(burst + 1);
    assert_eq!(w.life.converge(&t, 20).await.unwrap(), Outcome::Converged);
    let rec = w.record(&t).unwrap();
    assert!(rec.walled().budget && !rec.walled().quota);
    let c = rec.condition(COND_WRITE_BUDGET).unwrap();
    assert!(c.ok && c.message.contains("beyond a budget of"), "{c:?}");
    assert!(guard().soft);

    // Kept writing through the policy's keys: locked, and nothing is tried until it drains.
    w.life
        .isolation
        .set_walls(&ds, &id, Wall::Locked, false)
        .await
        .unwrap();
    owe(burst * 4);
    assert_eq!(
        w.life.step(&t).await.unwrap(),
        Outcome::Waiting(Step::EnforceLimits)
    );
    assert_eq!(guard().wall, Wall::Locked);
    owe(burst);
    assert_eq!(w.life.converge(&t, 20).await.unwrap(), Outcome::Converged);
    assert!(guard().soft && guard().wall == Wall::Down);

    // Half the burst drained: writes are allowed again.
    owe(burst / 2);
    assert_eq!(w.life.converge(&t, 20).await.unwrap(), Outcome::Converged);
    let rec = w.record(&t).unwrap();
    assert!(!rec.walled().any());
    assert_eq!(
        rec.condition(COND_WRITE_BUDGET).unwrap().reason,
        "WithinBudget"
    );
    assert!(!guard().soft && guard().wall == Wall::Down);
}

// --- Moves between datastores ---------------------------------------------------------------

impl World {
    /// A second datastore, and tenant `acme` Ready on the first, asked to move to the second.
    async fn moving(&self) -> (TenantName, DatastoreName) {
        let target = DatastoreName::parse("shard-1").unwrap();
        let t = self.create("acme").await;
        assert_eq!(
            self.life.converge(&t, 20).await.unwrap(),
            Outcome::Converged
        );
        self.life
            .records
            .add_datastore(datastore(&self.life.kek, "shard-1"));
        let to = target.clone();
        self.update(&t, move |s| s.placement = crate::spec::Placement::Named(to))
            .await;
        (t, target)
    }

    /// Sets the moving tenant's datastore back: the next step undoes the move, and the tenant
    /// then lives where it was.
    async fn abandon_move(&self, t: &TenantName) {
        let back = self.shard.clone();
        self.update(t, move |s| {
            s.placement = crate::spec::Placement::Named(back)
        })
        .await;
        assert_eq!(
            self.life.step(t).await.unwrap(),
            Outcome::Ran(Step::MoveAbort)
        );
        assert_eq!(self.life.converge(t, 20).await.unwrap(), Outcome::Converged);
        self.assert_lives_on(t, &self.shard);
    }

    /// The tenant lives on `on` alone: its record, placement, reservation, etcd user, and no
    /// hold or copy anywhere else.
    fn assert_lives_on(&self, t: &TenantName, on: &DatastoreName) {
        let rec = self.record(t).unwrap();
        assert_eq!(rec.datastore.as_ref(), Some(on), "{rec:#?}");
        assert_eq!(rec.moving, None);
        assert_eq!(rec.phase, Phase::Ready, "{rec:#?}");
        for ds in ["shard-0", "shard-1"] {
            let ds = DatastoreName::parse(ds).unwrap();
            let r = self.life.records.reservation(&ds);
            let want = if &ds == on {
                (1, DEFAULT_RESERVATION_BYTES)
            } else {
                (0, 0)
            };
            assert_eq!((r.tenants, r.reserved_bytes), want, "reservation on {ds}");
        }
        assert_eq!(self.life.records.placements(), 1);
        let users: Vec<_> = self
            .life
            .isolation
            .users
            .lock()
            .unwrap()
            .iter()
            .cloned()
            .collect();
        assert_eq!(users, [(on.clone(), rec.uid.clone())], "etcd users");
        assert!(
            self.life.isolation.held.lock().unwrap().is_empty(),
            "writes still held"
        );
        let copies: Vec<_> = self
            .life
            .isolation
            .copies
            .lock()
            .unwrap()
            .iter()
            .cloned()
            .collect();
        assert!(
            copies.iter().all(|(ds, _)| ds == on),
            "a copy left off {on}: {copies:?}"
        );
    }
}

/// The record write each move step ends with.
fn move_save_of(step: Step) -> &'static str {
    match step {
        Step::MoveReserve => "records.reserve_move",
        Step::MoveSwitch => "records.switch_move",
        _ => "records.update",
    }
}

#[tokio::test]
async fn a_move_holds_writes_copies_switches_and_then_removes_the_source() {
    let w = world();
    let (t, target) = w.moving().await;
    let uid = w.record(&t).unwrap().uid;
    let etcd_cert_before = w.pki(&t).etcd_client.cert;
    let mut ran = Vec::new();
    for _ in 0..20 {
        match w.life.step(&t).await.unwrap() {
            Outcome::Ran(s) => {
                ran.push(s);
                let rec = w.record(&t).unwrap();
                if s == Step::MoveHold {
                    assert!(w
                        .life
                        .isolation
                        .held
                        .lock()
                        .unwrap()
                        .contains(&(w.shard.clone(), uid.clone())));
                }
                if s != Step::MoveCleanup {
                    assert_eq!(rec.phase, Phase::Moving, "after {s:?}");
                }
            }
            Outcome::Converged => break,
            o => panic!("{o:?} after {ran:?}"),
        }
    }
    assert_eq!(
        ran,
        [
            Step::MoveReserve,
            Step::MovePrepare,
            Step::MoveHold,
            Step::MoveCopy,
            Step::MoveSwitch,
            Step::Apply,
            Step::AwaitReady,
            Step::Bootstrap,
            Step::MoveCleanup
        ]
    );
    w.assert_lives_on(&t, &target);
    let rec = w.record(&t).unwrap();
    let c = rec.condition(COND_MOVED).unwrap();
    assert!(c.ok && c.message.contains("10 keys"), "{c:?}");
    assert_eq!(rec.observed_generation, rec.generation);
    assert_ne!(
        w.pki(&t).etcd_client.cert,
        etcd_cert_before,
        "the etcd certificate is signed by the target's client CA"
    );
}

/// A kamajid that dies after a move step's effects but before recording them runs the step
/// again: the move ends as if each ran once.
#[tokio::test]
async fn every_move_step_whose_record_was_lost_runs_again_to_the_same_end() {
    for (i, (step, _)) in MOVE.into_iter().enumerate() {
        let w = world();
        let (t, target) = w.moving().await;
        for (s, _) in &MOVE[..i] {
            if *s == Step::MoveCleanup {
                break;
            }
            assert_eq!(w.life.step(&t).await.unwrap(), Outcome::Ran(*s));
        }
        if step == Step::MoveCleanup {
            // Apply, AwaitReady, Bootstrap come between the switch and the cleanup.
            for s in [Step::Apply, Step::AwaitReady, Step::Bootstrap] {
                assert_eq!(w.life.step(&t).await.unwrap(), Outcome::Ran(s));
            }
        }
        w.faults.arm(move_save_of(step));
        assert!(w.life.step(&t).await.is_err(), "{step:?}");
        assert_eq!(
            w.life.converge(&t, 30).await.unwrap(),
            Outcome::Converged,
            "after {step:?} ran twice"
        );
        w.assert_lives_on(&t, &target);
    }
}

/// Until the switch, a move that is no longer wanted is undone whatever stage it reached: the
/// tenant stays where it was, writable, with nothing left on the target.
#[tokio::test]
async fn a_move_abandoned_before_the_switch_leaves_the_tenant_where_it_was() {
    // As far as MOVE's undo column says MoveAbort undoes it.
    let abortable = MOVE
        .iter()
        .take_while(|(_, u)| *u == Undo::By(Step::MoveAbort))
        .count();
    assert_eq!(abortable, 4, "reserve, prepare, hold, copy");
    for k in 1..=abortable {
        let w = world();
        let (t, _) = w.moving().await;
        for (s, _) in &MOVE[..k] {
            assert_eq!(w.life.step(&t).await.unwrap(), Outcome::Ran(*s));
        }
        w.abandon_move(&t).await;
        let rec = w.record(&t).unwrap();
        assert_eq!(rec.condition(COND_MOVED).unwrap().reason, "Abandoned");
    }
}

/// A target millions of revisions behind is raised a bounded number of writes per round:
/// the tenant still writes meanwhile, its `Moved` condition says how far the raise is, and
/// the move can still be abandoned half-way.
#[tokio::test]
async fn a_long_revision_raise_runs_in_rounds_shows_progress_and_can_be_abandoned() {
    use super::steps::moves::ALIGN_WRITES_PER_ROUND;
    for abandon in [false, true] {
        let w = world();
        let (t, target) = w.moving().await;
        *w.life.isolation.revision_gap.lock().unwrap() = 2 * ALIGN_WRITES_PER_ROUND + 7;
        assert_eq!(
            w.life.step(&t).await.unwrap(),
            Outcome::Ran(Step::MoveReserve)
        );
        for left in [ALIGN_WRITES_PER_ROUND + 7, 7] {
            assert_eq!(
                w.life.step(&t).await.unwrap(),
                Outcome::Waiting(Step::MovePrepare)
            );
            let rec = w.record(&t).unwrap();
            let c = rec.condition(COND_MOVED).unwrap();
            assert!(
                c.message
                    .contains(&format!("{left} revision(s) to go (writes stay allowed")),
                "{c:?}"
            );
            assert_eq!(rec.phase, Phase::Moving);
            assert!(w.life.isolation.held.lock().unwrap().is_empty());
        }
        if abandon {
            w.abandon_move(&t).await;
        } else {
            assert_eq!(
                w.life.step(&t).await.unwrap(),
                Outcome::Ran(Step::MovePrepare)
            );
            let c = w
                .record(&t)
                .unwrap()
                .condition(COND_MOVED)
                .cloned()
                .unwrap();
            assert!(!c.message.contains("to go"), "{c:?}");
            assert_eq!(w.life.converge(&t, 20).await.unwrap(), Outcome::Converged);
            w.assert_lives_on(&t, &target);
        }
    }
}

/// A tenant deleted at any stage of a move leaves nothing on either datastore.
#[tokio::test]
async fn a_tenant_deleted_mid_move_leaves_nothing_on_either_datastore() {
    for k in 1..=5 {
        let w = world();
        let (t, _) = w.moving().await;
        for (s, _) in &MOVE[..k] {
            assert_eq!(w.life.step(&t).await.unwrap(), Outcome::Ran(*s));
        }
        w.delete(&t).await;
        assert_eq!(
            w.life.converge(&t, 20).await.unwrap(),
            Outcome::Gone,
            "stage {k}"
        );
        assert!(
            w.life.isolation.users.lock().unwrap().is_empty(),
            "stage {k}"
        );
        assert!(
            w.life.isolation.copies.lock().unwrap().is_empty(),
            "stage {k}"
        );
        assert_eq!(w.life.records.placements(), 0);
        for ds in ["shard-0", "shard-1"] {
            let r = w
                .life
                .records
                .reservation(&DatastoreName::parse(ds).unwrap());
            assert_eq!((r.tenants, r.reserved_bytes), (0, 0), "{ds} at stage {k}");
        }
    }
}

#[test]
fn resyncs_of_tenants_created_together_spread_over_the_period_and_each_comes_once_a_period() {
    const PERIOD: i64 = 600;
    let mut buckets = [0u32; 10];
    for n in 0..1000 {
        let name = TenantName::parse(&format!("t{n}")).unwrap();
        let mut rec = TenantRecord::new(name, WireSpec::default(), 1, 0);
        rec.phase = Phase::Ready;
        rec.bootstrapped_at = 1_000_000;
        let first = (rec.bootstrapped_at + 1..=rec.bootstrapped_at + PERIOD)
            .find(|&t| steps::resync_due(&rec, PERIOD, t))
            .expect("due within one period of its bootstrap");
        buckets[usize::try_from((first - rec.bootstrapped_at - 1) / 60).unwrap()] += 1;
        // Repaired then: due again exactly one period later, not before.
        rec.bootstrapped_at = first;
        assert!(!steps::resync_due(&rec, PERIOD, first + PERIOD - 1));
        assert!(steps::resync_due(&rec, PERIOD, first + PERIOD));
        rec.phase = Phase::Degraded;
        assert!(!steps::resync_due(&rec, PERIOD, first + 10 * PERIOD));
    }
    // Even: each tenth of the period takes about a tenth of the fleet (100 each).
    assert!(
        buckets.iter().all(|&b| (50..=150).contains(&b)),
        "{buckets:?}"
    );
}

#[tokio::test]
async fn a_hibernated_tenant_stops_keeps_its_credentials_renews_and_wakes_through_bootstrap() {
    let w = world();
    let t = w.create("acme").await;
    w.steps_to_converge(&t).await;
    let awake = w.record(&t).unwrap();
    let ca = w.pki(&t).ca.cert.clone();

    w.update(&t, |s| s.hibernated = true).await;
    assert_eq!(
        w.steps_to_converge(&t).await,
        [Step::Apply, Step::Hibernate]
    );
    let rec = w.record(&t).unwrap();
    assert_eq!(rec.phase, Phase::Hibernated);
    assert!(w.life.runtime.held.lock().unwrap().contains(&t), "no pods");
    assert_eq!(rec.endpoint, awake.endpoint);
    assert_eq!(rec.datastore, awake.datastore);
    // Nothing that needs the control plane runs: no health check, no resync, no bootstrap.
    let due = Due {
        hibernate: true,
        health: true,
        resync: true,
        limits: true,
        reencrypt: true,
        ..Due::default()
    };
    assert_eq!(next(&rec, due), None);
    assert_eq!(
        next(&rec, Due { renew: true, ..due }),
        Some(Step::RenewCertificates),
        "certificates are renewed while it sleeps"
    );

    // Renewal due: it runs, and the tenant stays stopped.
    w.tamper(&t, |r| {
        if let Some(p) = r.pki.as_mut() {
            p.certificates_expire_at = 0;
        }
    })
    .await;
    let ran = w.steps_to_converge(&t).await;
    assert!(ran.contains(&Step::RenewCertificates), "{ran:?}");
    assert_eq!(w.record(&t).unwrap().phase, Phase::Hibernated);
    assert!(w.life.runtime.held.lock().unwrap().contains(&t));

    w.update(&t, |s| s.hibernated = false).await;
    assert_eq!(
        w.steps_to_converge(&t).await,
        [Step::Apply, Step::AwaitReady, Step::Bootstrap]
    );
    let rec = w.record(&t).unwrap();
    assert_eq!(rec.phase, Phase::Ready);
    assert!(!w.life.runtime.held.lock().unwrap().contains(&t));
    assert_eq!(
        w.pki(&t).ca.cert,
        ca,
        "the same CA: kubeconfigs and nodes keep working"
    );
    assert_eq!(rec.endpoint, awake.endpoint);

    // A hibernated tenant is deleted as any other.
    w.update(&t, |s| s.hibernated = true).await;
    w.steps_to_converge(&t).await;
    w.delete(&t).await;
    assert_eq!(w.life.converge(&t, 20).await.unwrap(), Outcome::Gone);
    assert!(w.record(&t).is_none());
}

#[test]
fn a_hibernated_tenant_is_not_moved_off_a_drained_datastore() {
    let mut rec = TenantRecord::new(TenantName::parse("h").unwrap(), WireSpec::default(), 1, 0);
    rec.datastore = Some(DatastoreName::parse("a").unwrap());
    rec.evict = true;
    let mut spec = tenant_spec(ServiceType::LoadBalancer);
    assert!(steps::move_due(&rec, &spec));
    spec.hibernated = true;
    assert!(!steps::move_due(&rec, &spec));
}

#[tokio::test]
async fn a_tenant_created_hibernated_starts_nothing_until_woken() {
    let w = world();
    let t = w.create("sleeper").await;
    w.update(&t, |s| s.hibernated = true).await;
    assert_eq!(
        w.steps_to_converge(&t).await,
        [Step::Place, Step::Isolate, Step::Apply, Step::Hibernate]
    );
    assert_eq!(w.record(&t).unwrap().phase, Phase::Hibernated);
    assert!(w.life.runtime.held.lock().unwrap().contains(&t));
    w.update(&t, |s| s.hibernated = false).await;
    let ran = w.steps_to_converge(&t).await;
    assert_eq!(ran.last(), Some(&Step::Bootstrap), "{ran:?}");
    assert_eq!(w.record(&t).unwrap().phase, Phase::Ready);
}

/// A clock the test sets.
#[derive(Default)]
struct TestClock(std::sync::atomic::AtomicI64);

impl ports::Clock for TestClock {
    fn now(&self) -> i64 {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl TestClock {
    fn set(&self, rfc3339: &str) {
        let t = kamaji_model::maintenance::timestamp("t", rfc3339).unwrap();
        self.0.store(t, std::sync::atomic::Ordering::SeqCst);
    }
}

#[tokio::test]
async fn a_release_channel_upgrades_inside_its_window_and_leaves_the_spec_as_written() {
    use kamaji_model::maintenance::{window, Maintenance, ReleaseChannel};
    let clock = Arc::new(TestClock::default());
    let mut w = world();
    w.life = w.life.with_clock(clock.clone());
    w.life.settings.served = crate::maintenance::Served::new(
        ["1.35.2", "1.35.4"]
            .iter()
            .map(|v| crate::spec::Version::parse(v).unwrap())
            .collect(),
        2,
    );
    // A Friday noon.
    clock.set("2026-12-04T12:00:00Z");
    let t = w.create("acme").await;
    w.steps_to_converge(&t).await;
    w.update(&t, |s| {
        s.maintenance = Maintenance {
            channel: ReleaseChannel::Patch,
            window: Some(window("w", "02:00", 2, &["saturday".into()]).unwrap()),
            exclusions: vec![],
        }
    })
    .await;
    w.steps_to_converge(&t).await;
    w.life.round().await;
    let rec = w.record(&t).unwrap();
    assert_eq!(
        rec.current_version.as_deref(),
        Some("1.35.2"),
        "outside the window"
    );
    assert_eq!(rec.auto_version, None);

    clock.set("2026-12-05T02:30:00Z");
    w.life.round().await;
    w.steps_to_converge(&t).await;
    let rec = w.record(&t).unwrap();
    assert_eq!(rec.phase, Phase::Ready);
    assert_eq!(rec.current_version.as_deref(), Some("1.35.4"));
    assert_eq!(w.life.runtime.applied.lock().unwrap()[&t].0, "1.35.4");
    let u = rec.last_upgrade.clone().unwrap();
    assert_eq!(
        (u.from.as_str(), u.to.as_str(), u.automatic),
        ("1.35.2", "1.35.4", true)
    );
    assert_eq!(u.started_at, clock.now());
    assert!(u.finished_at >= u.started_at);
    // The spec is as the user wrote it: a GitOps plan has nothing to change.
    let spec = w.life.records.spec(&rec).unwrap();
    assert_eq!(spec.kubernetes_version.to_string(), "1.35.2");
    // Nothing newer is served: the next round leaves it.
    w.life.round().await;
    assert_eq!(w.record(&t).unwrap().generation, rec.generation);
}

/// A tenant created from a backup: the backup's secrets, as the fake isolation hands them out.
fn backup_secrets(w: &World, id: &str) -> crate::backup::archive::Secrets {
    let secrets = crate::backup::archive::Secrets {
        encryption_keys: vec![
            crate::pki::EncryptionKey::generate(7),
            crate::pki::EncryptionKey::generate(6),
        ],
        encrypted_resources: vec!["configmaps".into()],
        identity: None,
    };
    w.life
        .isolation
        .backups
        .lock()
        .unwrap()
        .insert(id.into(), secrets.clone());
    secrets
}

#[tokio::test]
async fn a_tenant_from_a_backup_is_restored_before_its_apiserver_starts_and_reads_the_backups_keys()
{
    let w = world();
    let secrets = backup_secrets(&w, "src-20261206000000-0001");
    let t = w.create("copy").await;
    w.update(&t, |s| {
        s.restore_from = Some("src-20261206000000-0001".into())
    })
    .await;
    let ran = w.steps_to_converge(&t).await;
    let at = |s: Step| ran.iter().position(|r| *r == s).unwrap();
    assert_eq!(
        &ran[..3],
        [Step::Place, Step::Isolate, Step::Restore],
        "{ran:?}"
    );
    assert!(at(Step::Restore) < at(Step::Apply));
    assert_eq!(ran.iter().filter(|s| **s == Step::Restore).count(), 1);
    w.assert_ready(&t);
    let restored = w.life.isolation.restored.lock().unwrap().clone();
    assert_eq!(restored.len(), 1);
    assert_eq!(restored[0].2, "src-20261206000000-0001");
    // The spec asks another key than the backup's objects were written with: they were read
    // with the backup's keys, rewritten with the tenant's own, and the backup's keys retired.
    assert!(ran.contains(&Step::Reencrypt), "{ran:?}");
    let pki = w.pki(&t);
    assert_eq!(pki.encryption_keys.len(), 1);
    assert!(pki.encryption_keys[0].secret != secrets.encryption_keys[0].secret);
    let rec = w.record(&t).unwrap();
    assert!(rec.done(COND_RESTORED));
}

#[tokio::test]
async fn a_restore_interrupted_or_failing_runs_again_and_a_missing_backup_starts_nothing() {
    let w = world();
    backup_secrets(&w, "src-1");
    let t = w.create("copy").await;
    w.update(&t, |s| s.restore_from = Some("src-1".into()))
        .await;
    for s in [Step::Place, Step::Isolate] {
        assert_eq!(w.life.step(&t).await.unwrap(), Outcome::Ran(s));
    }
    // Written, then the record lost; then the restore itself failing.
    w.faults.arm("records.update");
    assert!(w.life.step(&t).await.is_err());
    w.faults.arm("isolation.restore");
    assert!(w.life.step(&t).await.is_err());
    assert!(w.life.runtime.applied.lock().unwrap().is_empty());
    assert_eq!(w.life.converge(&t, 20).await.unwrap(), Outcome::Converged);
    w.assert_ready(&t);
    assert_eq!(w.life.isolation.restored.lock().unwrap().len(), 2);

    let lost = w.create("orphan").await;
    w.update(&lost, |s| s.restore_from = Some("gone-1".into()))
        .await;
    for _ in 0..5 {
        if let Err(e) = w.life.step(&lost).await {
            w.life.record_failure(&lost, &e.to_string()).await;
        }
    }
    let rec = w.record(&lost).unwrap();
    assert!(!rec.done(COND_RESTORED));
    assert!(!w.life.runtime.applied.lock().unwrap().contains_key(&lost));
    let why = rec.condition(COND_RECONCILED).unwrap();
    assert!(why.message.contains("no such backup"), "{why:?}");
}

/// What an in-place restore request through the API records.
fn restore_requested(backup: &str) -> impl FnOnce(&mut TenantRecord) + '_ {
    move |rec| {
        rec.restoring = Some(InPlaceRestore {
            backup: backup.into(),
            stage: RestoreStage::Requested,
            requested_at: 1,
            held_at: 0,
            keys: 0,
        })
    }
}

#[tokio::test]
async fn an_in_place_restore_holds_writes_stops_writes_back_releases_and_starts_again() {
    let w = world();
    let t = w.create("acme").await;
    assert_eq!(w.life.converge(&t, 20).await.unwrap(), Outcome::Converged);
    let key_before = w.pki(&t).encryption_keys[0].clone();
    // A backup taken before a key rotation: its objects need a key the tenant retired since.
    let old = crate::pki::EncryptionKey::generate(7);
    w.life.isolation.backups.lock().unwrap().insert(
        "acme-1".into(),
        crate::backup::archive::Secrets {
            encryption_keys: vec![old.clone()],
            encrypted_resources: vec![],
            identity: None,
        },
    );
    w.tamper(&t, restore_requested("acme-1")).await;
    let (ds, id) = (w.shard.clone(), w.record(&t).unwrap().uid);
    let held = |w: &World| {
        w.life
            .isolation
            .held
            .lock()
            .unwrap()
            .contains(&(ds.clone(), id.clone()))
    };
    assert_eq!(
        w.life.step(&t).await.unwrap(),
        Outcome::Ran(Step::RestoreHold)
    );
    assert!(held(&w));
    assert_eq!(w.record(&t).unwrap().phase, Phase::Restoring);
    assert_eq!(
        w.life.step(&t).await.unwrap(),
        Outcome::Ran(Step::RestoreStop)
    );
    assert!(w.life.runtime.held.lock().unwrap().contains(&t), "stopped");
    assert_eq!(
        w.life.step(&t).await.unwrap(),
        Outcome::Ran(Step::RestoreWrite)
    );
    assert_eq!(w.life.isolation.restored.lock().unwrap().len(), 1);
    assert!(held(&w), "still held until the write is whole");
    assert_eq!(
        w.life.step(&t).await.unwrap(),
        Outcome::Ran(Step::RestoreRelease)
    );
    assert!(!held(&w));
    let ran = w.steps_to_converge(&t).await;
    assert_eq!(ran[0], Step::Apply, "started again: {ran:?}");
    assert!(ran.contains(&Step::Bootstrap));
    // The backup's key read its objects, which were then rewritten with the tenant's own.
    assert!(ran.contains(&Step::Reencrypt), "{ran:?}");
    let rec = w.record(&t).unwrap();
    assert_eq!(rec.phase, Phase::Ready);
    assert!(rec.restoring.is_none());
    let last = rec.last_restore.unwrap();
    assert_eq!(last.backup, "acme-1");
    assert!(last.held_seconds >= 0);
    let pki = w.pki(&t);
    assert_eq!(pki.encryption_keys, [key_before]);
}

#[tokio::test]
async fn every_in_place_restore_stage_whose_record_was_lost_runs_again_to_the_same_end() {
    let stages = [
        Step::RestoreHold,
        Step::RestoreStop,
        Step::RestoreWrite,
        Step::RestoreRelease,
    ];
    for (i, step) in stages.into_iter().enumerate() {
        let w = world();
        backup_secrets(&w, "acme-1");
        let t = w.create("acme").await;
        assert_eq!(w.life.converge(&t, 20).await.unwrap(), Outcome::Converged);
        w.tamper(&t, restore_requested("acme-1")).await;
        for s in &stages[..i] {
            assert_eq!(w.life.step(&t).await.unwrap(), Outcome::Ran(*s));
        }
        w.faults.arm("records.update");
        assert!(w.life.step(&t).await.is_err(), "{step:?}");
        assert_eq!(w.record(&t).unwrap().restoring.unwrap().stage as usize, i);
        assert_eq!(
            w.life.converge(&t, 30).await.unwrap(),
            Outcome::Converged,
            "{step:?}"
        );
        w.assert_ready(&t);
        let rec = w.record(&t).unwrap();
        assert!(
            rec.restoring.is_none() && rec.last_restore.is_some(),
            "{step:?}"
        );
        assert!(
            w.life.isolation.held.lock().unwrap().is_empty(),
            "{step:?}: released"
        );
    }
}

#[tokio::test]
async fn a_backup_encrypted_with_another_clusters_key_of_the_same_name_is_not_restored_in_place() {
    let w = world();
    let t = w.create("acme").await;
    assert_eq!(w.life.converge(&t, 20).await.unwrap(), Outcome::Converged);
    let rotation = w.pki(&t).encryption_keys[0].rotation;
    w.life.isolation.backups.lock().unwrap().insert(
        "other-1".into(),
        crate::backup::archive::Secrets {
            encryption_keys: vec![crate::pki::EncryptionKey::generate(rotation)],
            encrypted_resources: vec![],
            identity: None,
        },
    );
    w.tamper(&t, restore_requested("other-1")).await;
    for _ in 0..2 {
        w.life.step(&t).await.unwrap();
    }
    let err = w.life.step(&t).await.unwrap_err();
    assert!(err.to_string().contains("new cluster"), "{err}");
    assert_eq!(
        w.record(&t).unwrap().restoring.unwrap().stage,
        RestoreStage::Stopped
    );
}

#[tokio::test]
async fn a_restore_that_keeps_the_identity_takes_the_backups_ca_but_its_own_datastore_certificate()
{
    let w = world();
    let src = w.create("src").await;
    assert_eq!(w.life.converge(&src, 20).await.unwrap(), Outcome::Converged);
    let theirs = w.pki(&src);
    let mut secrets = backup_secrets(&w, "src-1");
    secrets.identity = Some(crate::backup::archive::Identity(
        serde_json::to_string(&theirs).unwrap(),
    ));
    w.life
        .isolation
        .backups
        .lock()
        .unwrap()
        .insert("src-1".into(), secrets);
    let t = w.create("twin").await;
    w.update(&t, |s| {
        s.restore_from = Some("src-1".into());
        s.restore_keep_identity = true;
    })
    .await;
    assert_eq!(w.life.converge(&t, 30).await.unwrap(), Outcome::Converged);
    assert_eq!(w.record(&t).unwrap().phase, Phase::Ready);
    let ours = w.pki(&t);
    assert_eq!(ours.ca, theirs.ca);
    assert_eq!(ours.service_account_key, theirs.service_account_key);
    assert_ne!(
        ours.etcd_client.cert, theirs.etcd_client.cert,
        "its own datastore user"
    );

    // A backup without an identity cannot be restored keeping one.
    backup_secrets(&w, "plain-1");
    let u = w.create("nameless").await;
    w.update(&u, |s| {
        s.restore_from = Some("plain-1".into());
        s.restore_keep_identity = true;
    })
    .await;
    let err = w.life.converge(&u, 10).await.unwrap_err();
    assert!(err.to_string().contains("carries no identity"), "{err}");
}
