//! The tenant lifecycle against real etcd (a state store and shared datastores, secured), the
//! real isolation and in-tenant adapters, and a runtime double whose tenant apiservers are the
//! Kubernetes API test double (no real control plane per tenant here; the acceptance suites run
//! those): resumption after a crash at every step, exact teardown, spreading, and no overcommit
//! under concurrent placements.

mod support;

use std::sync::Arc;
use std::time::Duration;

use etcd_client::GetOptions;
use kamaji_core::datastore::{DatastoreStatusRecord, Phase as DsPhase, Reservation};
use kamaji_core::etcd_keys::prefix;
use kamaji_core::ids::{DatastoreName, TenantName};
use kamaji_core::kek::Kek;
use kamaji_core::lifecycle::steps::{endpoint_host, Step, CREATE_RUN, DELETE};
use kamaji_core::lifecycle::{now_unix, Lifecycle, Outcome, Settings, RESYNC_SECONDS};
use kamaji_core::pki::covers;
use kamaji_core::tenant::{
    Phase, TenantRecord, COND_BOOTSTRAPPED, COND_READY, DEFAULT_RESERVATION_BYTES,
};
use kamaji_proto::v1;
use kamaji_testkit::devenv::{DevPki, EtcdProcess, EtcdSecurity};
use kamajid::datastore::isolation::EtcdIsolation;
use kamajid::datastore::usage::UsageTracker;
use kamajid::etcd::{connect, EtcdTls};
use kamajid::store::{Store, Versioned};
use kamajid::tenant_client::KubeTenantObjects;
use kamajid::wire;
use support::{tenant_spec, MemoryRuntime};

type Life = Lifecycle<Store, EtcdIsolation, MemoryRuntime, KubeTenantObjects>;

struct World {
    _dir: tempfile::TempDir,
    pki: DevPki,
    _state: EtcdProcess,
    shards: Vec<EtcdProcess>,
    store: Store,
    kek: Kek,
    runtime: Arc<MemoryRuntime>,
}

impl World {
    async fn start(quotas: &[i64]) -> Self {
        kamajid::server::install_crypto();
        let dir = tempfile::tempdir().unwrap();
        let pki = DevPki::generate().unwrap();
        let state = EtcdProcess::start(dir.path(), "state", &pki, EtcdSecurity::default())
            .await
            .unwrap();
        let store = Store::new(
            connect(
                std::slice::from_ref(&state.endpoint),
                &tls(&pki),
                Duration::from_secs(5),
            )
            .await
            .unwrap(),
        );
        let kek = Kek::from_bytes(&[9; 32]);
        let mut shards = Vec::new();
        for (i, q) in quotas.iter().enumerate() {
            let name = format!("shard-{i}");
            let etcd = EtcdProcess::start(dir.path(), &name, &pki, EtcdSecurity::default())
                .await
                .unwrap();
            let spec = v1::DatastoreSpec {
                endpoints: vec![etcd.endpoint.clone()],
                ca_certificate: pki.ca.cert.clone(),
                client_certificate: pki.root.cert.clone(),
                client_key: pki.root.key.clone(),
                client_ca_certificate: pki.ca.cert.clone(),
                client_ca_key: pki.ca.key.clone(),
                quota_bytes: *q,
                schedulable: true,
                ..Default::default()
            };
            let rec =
                wire::seal_datastore(&DatastoreName::parse(&name).unwrap(), &spec, &kek, 1, 1);
            let status = DatastoreStatusRecord {
                phase: DsPhase::Ready,
                ..Default::default()
            };
            store.create_datastore(&rec, &status).await.unwrap();
            shards.push(etcd);
        }
        Self {
            _dir: dir,
            pki,
            _state: state,
            shards,
            store,
            kek,
            runtime: Arc::new(MemoryRuntime::default()),
        }
    }

    /// A fresh lifecycle: what a restarted kamajid has.
    fn ctx(&self) -> Life {
        Lifecycle::new(
            self.store.clone(),
            EtcdIsolation::new(
                self.kek.clone(),
                Duration::from_secs(5),
                UsageTracker::new(self.kek.clone(), Duration::from_secs(5)),
                Default::default(),
            ),
            self.runtime.clone(),
            KubeTenantObjects,
            self.kek.clone(),
            Settings::default(),
        )
    }

    /// A new tenant record, as the API's create writes it.
    async fn create(&self, name: &str, spec: &v1::TenantClusterSpec) -> TenantName {
        let name = TenantName::parse(name).unwrap();
        let rec = TenantRecord::new(
            name.clone(),
            wire::encode_spec(spec),
            DEFAULT_RESERVATION_BYTES,
            now_unix(),
        );
        self.store.create_tenant_record(&rec).await.unwrap();
        name
    }

    /// Marks a tenant for deletion, as the API's delete does.
    async fn mark_deleting(&self, name: &TenantName) {
        let v = self.versioned(name).await.unwrap();
        let mut rec = v.value;
        rec.mark_deleting(now_unix());
        self.store
            .update_tenant_record(&rec, v.revision)
            .await
            .unwrap();
    }

    async fn shard_admin(&self, i: usize) -> etcd_client::Client {
        connect(
            std::slice::from_ref(&self.shards[i].endpoint),
            &tls(&self.pki),
            Duration::from_secs(5),
        )
        .await
        .unwrap()
    }

    async fn record(&self, name: &TenantName) -> Option<TenantRecord> {
        self.versioned(name).await.map(|v| v.value)
    }

    /// The record with its revision, to change it as the API would.
    async fn versioned(&self, name: &TenantName) -> Option<Versioned<TenantRecord>> {
        self.store.tenant_record(name).await.unwrap()
    }

    async fn reservation(&self, shard: &str) -> Reservation {
        self.store
            .candidacies()
            .await
            .unwrap()
            .into_iter()
            .find(|c| c.candidate.name == shard)
            .and_then(|c| c.reservation)
            .map(|v| v.value)
            .unwrap_or_default()
    }
}

fn tls(pki: &DevPki) -> EtcdTls {
    EtcdTls {
        ca_pem: Some(pki.ca.cert.clone()),
        identity: Some((pki.root.cert.clone(), pki.root.key.clone())),
    }
}

const GIB: i64 = 1 << 30;

#[tokio::test]
async fn a_kamajid_killed_after_any_step_resumes_and_deletion_leaves_nothing() {
    let w = World::start(&[2 * GIB]).await;
    let admin = w.shard_admin(0).await;
    for k in 0..=CREATE_RUN.len() {
        let name = w
            .create(&format!("crash-{k}"), &tenant_spec("1.35.1"))
            .await;
        {
            let first = w.ctx();
            for s in &CREATE_RUN[..k] {
                assert_eq!(first.step(&name).await.unwrap(), Outcome::Ran(*s));
            }
        } // kamajid dies here
        assert_eq!(
            w.ctx().converge(&name, 20).await.unwrap(),
            Outcome::Converged,
            "after a crash at step {k}"
        );
        let rec = w.record(&name).await.unwrap();
        assert_eq!(rec.phase, Phase::Ready);
        assert_eq!(rec.datastore.as_ref().map(|d| d.as_str()), Some("shard-0"));
        let api = w
            .runtime
            .tenant_api(name.as_str())
            .expect("tenant apiserver");
        let endpoint = rec.endpoint.clone().unwrap();
        assert!(endpoint.starts_with("https://127.0.0.1:"), "{endpoint}");
        // Bootstrapped: what kubeadm join discovers is in the tenant, pointing at the endpoint.
        const CLUSTER_INFO: &str = "/api/v1/namespaces/kube-public/configmaps/cluster-info";
        let ci = api.get(CLUSTER_INFO).expect("cluster-info");
        assert!(ci["data"]["kubeconfig"]
            .as_str()
            .unwrap()
            .contains(&format!("server: {endpoint}")));
        assert!(rec.condition(COND_BOOTSTRAPPED).is_some_and(|c| c.ok));
        // Drift inside the tenant is repaired at the next resync.
        api.remove(CLUSTER_INFO);
        let v = w.versioned(&name).await.unwrap();
        let mut stale = v.value.clone();
        stale.bootstrapped_at -= RESYNC_SECONDS;
        w.store
            .update_tenant_record(&stale, v.revision)
            .await
            .unwrap();
        assert_eq!(
            w.ctx().step(&name).await.unwrap(),
            Outcome::Ran(Step::Resync)
        );
        assert!(api.get(CLUSTER_INFO).is_some(), "cluster-info not restored");
        assert_eq!(
            w.ctx().converge(&name, 5).await.unwrap(),
            Outcome::Converged
        );
        let rec = w.record(&name).await.unwrap();
        assert!(rec
            .pki
            .as_ref()
            .unwrap()
            .ca_certificate
            .contains("BEGIN CERTIFICATE"));
        assert!(
            !serde_json::to_string(&rec).unwrap().contains("PRIVATE KEY"),
            "tenant keys stored in clear"
        );
        assert!(
            admin.clone().user_get(rec.uid.as_str()).await.is_ok(),
            "etcd user missing"
        );

        // The tenant writes data, then is deleted with a crash after each teardown step.
        let mut c = admin.clone();
        c.put(format!("{}registry/x", prefix(&rec.uid)), "v", None)
            .await
            .unwrap();
        w.mark_deleting(&name).await;
        {
            let first = w.ctx();
            for s in &DELETE[..(k % DELETE.len())] {
                assert_eq!(first.step(&name).await.unwrap(), Outcome::Ran(*s));
            }
        }
        assert_eq!(w.ctx().converge(&name, 10).await.unwrap(), Outcome::Gone);
        assert!(w.record(&name).await.is_none());
        assert!(
            admin.clone().user_get(rec.uid.as_str()).await.is_err(),
            "etcd user left behind"
        );
        assert!(
            admin.clone().role_get(rec.uid.as_str()).await.is_err(),
            "etcd role left behind"
        );
        let keys = c
            .get(prefix(&rec.uid), Some(GetOptions::new().with_prefix()))
            .await
            .unwrap();
        assert!(keys.kvs().is_empty(), "tenant keys left behind");
    }
    assert!(
        w.runtime.versions.lock().unwrap().is_empty(),
        "control planes left behind"
    );
    assert_eq!(
        w.reservation("shard-0").await,
        Reservation::default(),
        "reservations leaked"
    );
    let mut raw = w.store.client();
    let placements = raw
        .get(
            "/kamajid/v1/placements/",
            Some(GetOptions::new().with_prefix()),
        )
        .await
        .unwrap();
    assert!(placements.kvs().is_empty(), "placements leaked");
}

#[tokio::test]
async fn a_ready_tenant_whose_control_plane_stops_answering_goes_degraded_and_recovers() {
    let w = World::start(&[2 * GIB]).await;
    let name = &w.create("flaky", &tenant_spec("1.35.1")).await;
    let ctx = w.ctx();
    assert_eq!(ctx.converge(name, 20).await.unwrap(), Outcome::Converged);
    assert_eq!(w.record(name).await.unwrap().phase, Phase::Ready);

    // The control plane dies (the runtime no longer reports it ready) and its objects go too.
    let applied = w
        .runtime
        .versions
        .lock()
        .unwrap()
        .remove(name.as_str())
        .unwrap();
    const CLUSTER_INFO: &str = "/api/v1/namespaces/kube-public/configmaps/cluster-info";
    w.runtime
        .tenant_api(name.as_str())
        .unwrap()
        .remove(CLUSTER_INFO);
    // Checked recently: this kamajid does not ask again within HEALTH_RESYNC.
    assert_eq!(ctx.step(name).await.unwrap(), Outcome::Converged);
    // Due (a fresh kamajid, or HEALTH_RESYNC later): the tenant reads Degraded with the reason.
    assert_eq!(
        w.ctx().step(name).await.unwrap(),
        Outcome::Ran(Step::CheckHealth)
    );
    let rec = w.record(name).await.unwrap();
    assert_eq!(rec.phase, Phase::Degraded);
    let ready = rec.condition(COND_READY).unwrap();
    assert!(!ready.ok);
    assert_eq!(ready.reason, "Unhealthy");
    assert_eq!(ready.message, "rolling out");
    let shown = wire::tenant_to_proto(&rec, w.store.wire_spec(&rec).unwrap());
    assert!(shown.status.unwrap().phase == v1::TenantClusterPhase::Degraded as i32);

    // While it stays down, each round waits without rewriting the record.
    let before = w.versioned(name).await.unwrap();
    assert_eq!(
        w.ctx().converge(name, 20).await.unwrap(),
        Outcome::Waiting(Step::AwaitReady)
    );
    let after = w.versioned(name).await.unwrap();
    assert_eq!(after.revision, before.revision, "a wait rewrote the record");

    // Back: Ready again, and bootstrapped again, so what kubeadm join needs is restored.
    w.runtime
        .versions
        .lock()
        .unwrap()
        .insert(name.to_string(), applied);
    assert_eq!(
        w.ctx().converge(name, 20).await.unwrap(),
        Outcome::Converged
    );
    let rec = w.record(name).await.unwrap();
    assert_eq!(rec.phase, Phase::Ready);
    assert!(rec.condition(COND_READY).unwrap().ok);
    assert!(
        w.runtime
            .tenant_api(name.as_str())
            .unwrap()
            .get(CLUSTER_INFO)
            .is_some(),
        "cluster-info not restored after recovery"
    );
}

#[tokio::test]
async fn changing_the_serving_names_reissues_the_certificate_in_place() {
    let w = World::start(&[2 * GIB]).await;
    let mut spec = tenant_spec("1.35.1");
    spec.network.as_mut().unwrap().extra_sans = vec!["old.acme.example".into()];
    let name = &w.create("renamed", &spec).await;
    assert_eq!(
        w.ctx().converge(name, 20).await.unwrap(),
        Outcome::Converged
    );
    let before = w.record(name).await.unwrap();
    let served = |w: &World| w.runtime.serving_certs.lock().unwrap()[name.as_str()].clone();
    let first = served(&w);
    assert!(covers(&first, "old.acme.example"));

    // What the API's update does: a new spec, the next generation.
    let net = spec.network.as_mut().unwrap();
    net.extra_sans = vec!["new.acme.example".into()];
    net.endpoint_address = "203.0.113.7".into();
    let v = w.versioned(name).await.unwrap();
    let mut rec = v.value;
    rec.spec = wire::encode_spec(&spec);
    rec.generation += 1;
    w.store
        .update_tenant_record(&rec, v.revision)
        .await
        .unwrap();
    assert_eq!(
        w.ctx().converge(name, 20).await.unwrap(),
        Outcome::Converged
    );

    let after = w.record(name).await.unwrap();
    assert_eq!(after.phase, Phase::Ready);
    assert_eq!(after.uid, before.uid, "the cluster was replaced");
    let ca = |r: &TenantRecord| r.pki.as_ref().unwrap().ca_certificate.clone();
    assert_eq!(
        ca(&after),
        ca(&before),
        "the CA changed: kubeconfigs would break"
    );
    let cert = served(&w);
    assert_ne!(cert, first, "the new certificate was not rolled out");
    for host in ["new.acme.example", "203.0.113.7"] {
        assert!(covers(&cert, host), "{host} missing");
    }
    assert!(!covers(&cert, "old.acme.example"), "a removed name stayed");
    // The endpoint the runtime reports is still served (workers joined through it).
    let host = endpoint_host(after.endpoint.as_deref().unwrap());
    assert!(covers(&cert, &host));
    // Converged means nothing more to do: no re-issue on every round.
    assert_eq!(w.ctx().converge(name, 5).await.unwrap(), Outcome::Converged);
    assert_eq!(served(&w), cert);
}

#[tokio::test]
async fn tenants_spread_over_shards_and_concurrent_placements_never_overcommit() {
    let w = World::start(&[GIB, GIB]).await;
    for i in 0..6 {
        let name = w
            .create(&format!("spread-{i}"), &tenant_spec("1.35.1"))
            .await;
        assert_eq!(
            w.ctx().converge(&name, 20).await.unwrap(),
            Outcome::Converged
        );
    }
    assert_eq!(w.reservation("shard-0").await.tenants, 3);
    assert_eq!(w.reservation("shard-1").await.tenants, 3);

    // A small shard with room for exactly three 64 MiB reservations, and eight tenants at once.
    let small = World::start(&[3 * 64 * 1024 * 1024 + 1024]).await;
    let mut names = Vec::new();
    for i in 0..8 {
        names.push(
            small
                .create(&format!("race-{i}"), &tenant_spec("1.35.1"))
                .await,
        );
    }
    let results = futures::future::join_all(names.iter().map(|n| {
        let ctx = small.ctx();
        let n = n.clone();
        async move { ctx.converge(&n, 40).await }
    }))
    .await;
    assert!(results.iter().all(|r| r.is_ok()), "{results:?}");
    let mut placed = Vec::new();
    for n in &names {
        let rec = small.record(n).await.unwrap();
        if rec.datastore.is_some() {
            placed.push(n.clone());
            continue;
        }
        // The others fail at once with the reason, and hold nothing.
        assert_eq!(rec.phase, Phase::Failed, "{rec:?}");
        let c = rec
            .condition("DatastoreAssigned")
            .expect("DatastoreAssigned condition");
        assert!(
            !c.ok
                && c.message.contains("no datastore can take the tenant")
                && c.message.contains("bytes free"),
            "{c:?}"
        );
    }
    assert_eq!(placed.len(), 3, "{placed:?}");
    let res = small.reservation("shard-0").await;
    assert_eq!(res.tenants, 3);
    assert!(res.reserved_bytes <= 3 * 64 * 1024 * 1024 + 1024);
    // Capacity frees: a failed tenant never takes it later, behind its user's back.
    small.mark_deleting(&placed[0]).await;
    small.ctx().converge(&placed[0], 40).await.unwrap();
    for n in names.iter().filter(|n| !placed.contains(n)) {
        small.ctx().converge(n, 40).await.unwrap();
        let rec = small.record(n).await.unwrap();
        assert!(
            rec.datastore.is_none() && rec.phase == Phase::Failed,
            "{rec:?}"
        );
    }
    let res = small.reservation("shard-0").await;
    assert_eq!(res.tenants, 2);
}
