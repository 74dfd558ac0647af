//! The TenantClusters API end to end inside kamajid: gRPC in, reconcile driver, real etcd
//! (state and a shared datastore, secured), and a runtime double in place of the admin cluster.

mod support;

use std::sync::Arc;
use std::time::Duration;

use kamaji_core::datastore::{DatastoreStatusRecord, Phase as DsPhase};
use kamaji_core::ids::{DatastoreName, TenantName};
use kamaji_core::kek::Kek;
use kamaji_core::lifecycle::{Lifecycle, Settings};
use kamaji_core::tenant::DEFAULT_RESERVATION_BYTES;
use kamaji_proto::errors::field_errors;
use kamaji_proto::v1::bootstrap_tokens_client::BootstrapTokensClient;
use kamaji_proto::v1::bootstrap_tokens_server::BootstrapTokensServer;
use kamaji_proto::v1::tenant_clusters_client::TenantClustersClient;
use kamaji_proto::v1::tenant_clusters_server::TenantClustersServer;
use kamaji_proto::v1::{self, TenantClusterPhase};
use kamaji_testkit::devenv::{DevPki, EtcdProcess, EtcdSecurity};
use kamajid::api::bootstrap_tokens::BootstrapTokenApi;
use kamajid::api::tenants::TenantApi;
use kamajid::datastore::isolation::EtcdIsolation;
use kamajid::datastore::usage::UsageTracker;
use kamajid::etcd::{connect, EtcdTls};
use kamajid::service::TenantService;
use kamajid::store::Store;
use kamajid::tenant_client::KubeTenantObjects;
use kamajid::wire;
use support::{tenant_spec, MemoryRuntime};
use tokio_stream::StreamExt;
use tonic::transport::Channel;
use tonic::Code;

async fn wait_phase(
    c: &mut TenantClustersClient<Channel>,
    name: &str,
    phase: TenantClusterPhase,
) -> v1::TenantCluster {
    let mut stream = c
        .watch_tenant_cluster(v1::WatchTenantClusterRequest { name: name.into() })
        .await
        .unwrap()
        .into_inner();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let next = tokio::time::timeout_at(deadline, stream.next())
            .await
            .expect("timed out watching");
        let t = next.expect("stream ended").expect("watch error");
        if t.status.as_ref().unwrap().phase == phase as i32 {
            return t;
        }
    }
}

#[tokio::test]
async fn create_watch_upgrade_protect_and_delete_a_tenant_through_the_api() {
    kamajid::server::install_crypto();
    let dir = tempfile::tempdir().unwrap();
    let pki = DevPki::generate().unwrap();
    let state = EtcdProcess::start(dir.path(), "state", &pki, EtcdSecurity::default())
        .await
        .unwrap();
    let shard = EtcdProcess::start(dir.path(), "shard", &pki, EtcdSecurity::default())
        .await
        .unwrap();
    let tls = EtcdTls {
        ca_pem: Some(pki.ca.cert.clone()),
        identity: Some((pki.root.cert.clone(), pki.root.key.clone())),
    };
    let store = Store::new(
        connect(
            std::slice::from_ref(&state.endpoint),
            &tls,
            Duration::from_secs(5),
        )
        .await
        .unwrap(),
    );
    let kek = Kek::from_bytes(&[3; 32]);
    let ds_spec = v1::DatastoreSpec {
        endpoints: vec![shard.endpoint.clone()],
        ca_certificate: pki.ca.cert.clone(),
        client_certificate: pki.root.cert.clone(),
        client_key: pki.root.key.clone(),
        client_ca_certificate: pki.ca.cert.clone(),
        client_ca_key: pki.ca.key.clone(),
        quota_bytes: 1 << 30,
        schedulable: true,
        ..Default::default()
    };
    let ready = DatastoreStatusRecord {
        phase: DsPhase::Ready,
        ..Default::default()
    };
    let shard_name = DatastoreName::parse("shard").unwrap();
    store
        .create_datastore(
            &wire::seal_datastore(&shard_name, &ds_spec, &kek, 1, 1),
            &ready,
        )
        .await
        .unwrap();

    let runtime = Arc::new(MemoryRuntime::default());
    let wake = Arc::new(tokio::sync::Notify::new());
    let (_leader_tx, leader_rx) = tokio::sync::watch::channel(true);
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let usage = UsageTracker::new(kek.clone(), Duration::from_secs(5));
    let life = Arc::new(Lifecycle::new(
        store.clone(),
        EtcdIsolation::new(
            kek.clone(),
            Duration::from_secs(5),
            usage.clone(),
            Default::default(),
        ),
        runtime.clone(),
        KubeTenantObjects,
        kek.clone(),
        Settings::default(),
    ));
    let driver = tokio::spawn(life.run(
        Duration::from_millis(200),
        wake.clone(),
        leader_rx,
        stop_rx.clone(),
    ));
    let service = Arc::new(TenantService {
        store: store.clone(),
        kek: kek.clone(),
        wake,
        reservation_bytes: DEFAULT_RESERVATION_BYTES,
        usage,
        observer: Arc::new(kamaji_core::lifecycle::ports::Unobserved),
        issuer_base: None,
        served: Default::default(),
        backups: None,
    });
    let api = TenantApi {
        service: service.clone(),
        runtime: Some(Arc::new(RunsAnything)),
    };
    let tokens_api = BootstrapTokenApi { service };
    let listener = kamajid::server::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TenantClustersServer::new(api))
            .add_service(BootstrapTokensServer::new(tokens_api))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    let mut c = TenantClustersClient::connect(format!("http://127.0.0.1:{port}"))
        .await
        .unwrap();

    // A tenant no datastore can take is refused before anything is stored.
    let mut nowhere = tenant_spec("1.34.3");
    nowhere.datastore = "missing".into();
    let err = c
        .create_tenant_cluster(v1::CreateTenantClusterRequest {
            name: "lost".into(),
            spec: Some(nowhere),
            validate_only: false,
            planned_datastores: Vec::new(),
        })
        .await
        .unwrap_err();
    let f = &field_errors(&err)[0];
    assert_eq!(
        (err.code(), f.field.as_str()),
        (Code::FailedPrecondition, "datastore")
    );
    assert!(
        f.message.contains("\"missing\" does not exist"),
        "{}",
        f.message
    );
    let mut picky = tenant_spec("1.34.3");
    picky.datastore_selector = [("tier".to_owned(), "gold".to_owned())].into();
    let err = c
        .create_tenant_cluster(v1::CreateTenantClusterRequest {
            name: "lost".into(),
            spec: Some(picky),
            validate_only: false,
            planned_datastores: Vec::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(field_errors(&err)[0].field, "datastore_selector");
    assert!(store
        .tenant_record(&TenantName::parse("lost").unwrap())
        .await
        .unwrap()
        .is_none());

    // Create returns at once; watching shows it become Ready with an endpoint and a CA.
    let created = c
        .create_tenant_cluster(v1::CreateTenantClusterRequest {
            name: "acme".into(),
            spec: Some(tenant_spec("1.34.3")),
            validate_only: false,
            planned_datastores: Vec::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        created.status.unwrap().phase,
        TenantClusterPhase::Provisioning as i32
    );
    let t = wait_phase(&mut c, "acme", TenantClusterPhase::Ready).await;
    let st = t.status.unwrap();
    assert_eq!(
        (st.datastore.as_str(), st.current_version.as_str()),
        ("shard", "1.34.3")
    );
    assert!(
        st.endpoint.starts_with("https://127.0.0.1:"),
        "{}",
        st.endpoint
    );
    assert!(st.cluster_ca_certificate.contains("BEGIN CERTIFICATE"));
    assert_eq!(
        Some(st.ca_cert_hash.clone()),
        kamaji_proto::validate::ca_cert_hash(&st.cluster_ca_certificate)
    );
    assert_eq!(st.ca_cert_hash.len(), 64);
    let creds = c
        .get_tenant_cluster_credentials(v1::GetTenantClusterCredentialsRequest {
            name: "acme".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(creds
        .admin_kubeconfig
        .contains(&format!("server: {}", st.endpoint)));

    // Bootstrap tokens: created as kubeadm writes them inside the tenant, listed and read back
    // without their secret half, gone once deleted or expired.
    let mut tk = BootstrapTokensClient::connect(format!("http://127.0.0.1:{port}"))
        .await
        .unwrap();
    let created = tk
        .create_bootstrap_token(v1::CreateBootstrapTokenRequest {
            tenant_cluster: "acme".into(),
            ttl_seconds: 3600,
            description: "workers of acme".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let (id, secret) = created.token.split_once('.').unwrap();
    assert_eq!((id.len(), secret.len()), (6, 16));
    assert_eq!(created.id, id);
    assert_eq!(created.ca_cert_hash, format!("sha256:{}", st.ca_cert_hash));
    let host_port = st.endpoint.trim_start_matches("https://");
    assert_eq!(
        created.join_command,
        format!(
            "kubeadm join {host_port} --token {} --discovery-token-ca-cert-hash sha256:{}",
            created.token, st.ca_cert_hash
        )
    );
    let expires = created.expire_time.unwrap().seconds;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    assert!(
        (now + 3590..=now + 3601).contains(&expires),
        "{expires} vs {now}"
    );
    let inside = runtime.tenant_api("acme").unwrap();
    let secret_path = format!("/api/v1/namespaces/kube-system/secrets/bootstrap-token-{id}");
    let obj = inside
        .get(&secret_path)
        .expect("token Secret in the tenant");
    assert_eq!(obj["type"], "bootstrap.kubernetes.io/token");
    assert_eq!(obj["stringData"]["token-secret"], secret);
    assert_eq!(
        obj["stringData"]["auth-extra-groups"],
        "system:bootstrappers:kubeadm:default-node-token"
    );
    let read = tk
        .get_bootstrap_token(v1::GetBootstrapTokenRequest {
            tenant_cluster: "acme".into(),
            id: id.into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        read.token.is_empty() && read.join_command.is_empty(),
        "secret half returned"
    );
    assert_eq!(
        (read.description.as_str(), read.expire_time.unwrap().seconds),
        ("workers of acme", expires)
    );
    assert_eq!(read.usages, ["authentication", "signing"]);
    let listed = tk
        .list_bootstrap_tokens(v1::ListBootstrapTokensRequest {
            tenant_cluster: "acme".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        listed
            .tokens
            .iter()
            .map(|t| t.id.as_str())
            .collect::<Vec<_>>(),
        [id]
    );
    // An expired token reads as gone even before the token cleaner removes it.
    let mut old = obj.clone();
    old["stringData"]["expiration"] = "2020-01-01T00:00:00Z".into();
    inside.put(&secret_path, old);
    let err = tk
        .get_bootstrap_token(v1::GetBootstrapTokenRequest {
            tenant_cluster: "acme".into(),
            id: id.into(),
        })
        .await
        .unwrap_err();
    assert_eq!(
        (err.code(), field_errors(&err)[0].field.as_str()),
        (Code::NotFound, "id")
    );
    tk.delete_bootstrap_token(v1::DeleteBootstrapTokenRequest {
        tenant_cluster: "acme".into(),
        id: id.into(),
    })
    .await
    .unwrap();
    assert!(
        inside.get(&secret_path).is_none(),
        "token Secret left behind"
    );
    for (req, field) in [
        (
            v1::CreateBootstrapTokenRequest {
                tenant_cluster: "acme".into(),
                ttl_seconds: 10,
                description: String::new(),
            },
            "ttl",
        ),
        (
            v1::CreateBootstrapTokenRequest {
                tenant_cluster: "nobody".into(),
                ttl_seconds: 600,
                description: String::new(),
            },
            "tenant_cluster",
        ),
    ] {
        let err = tk.create_bootstrap_token(req).await.unwrap_err();
        assert_eq!(field_errors(&err)[0].field, field, "{err:?}");
    }

    // Bad input and forbidden changes name their field.
    let err = c
        .create_tenant_cluster(v1::CreateTenantClusterRequest {
            name: "Bad".into(),
            spec: Some(tenant_spec("1.20.0")),
            validate_only: false,
            planned_datastores: Vec::new(),
        })
        .await
        .unwrap_err();
    let fields: Vec<String> = field_errors(&err).into_iter().map(|f| f.field).collect();
    assert_eq!(
        (err.code(), fields),
        (
            Code::InvalidArgument,
            vec!["name".to_owned(), "kubernetes_version".to_owned()]
        )
    );
    // A public issuer from a kamajid that publishes none: refused at plan, naming the field.
    let err = c
        .create_tenant_cluster(v1::CreateTenantClusterRequest {
            name: "public".into(),
            spec: Some(v1::TenantClusterSpec {
                public_issuer: true,
                ..tenant_spec("1.34.3")
            }),
            validate_only: true,
            planned_datastores: Vec::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(field_errors(&err)[0].field, "public_issuer", "{err:?}");
    assert!(
        err.message().contains("--service-account-issuer-base-url"),
        "{err:?}"
    );
    let update = |s| v1::UpdateTenantClusterRequest {
        name: "acme".into(),
        spec: Some(s),
        validate_only: false,
    };
    let err = c
        .update_tenant_cluster(update(tenant_spec("1.36.0")))
        .await
        .unwrap_err();
    assert!(
        err.message().contains("one minor at a time"),
        "{}",
        err.message()
    );
    let err = c
        .update_tenant_cluster(update(tenant_spec("1.33.9")))
        .await
        .unwrap_err();
    assert!(
        err.message().contains("cannot downgrade"),
        "{}",
        err.message()
    );
    let mut moved = tenant_spec("1.34.3");
    moved.network.as_mut().unwrap().service_cidr = "10.96.0.0/16".into();
    let err = c.update_tenant_cluster(update(moved)).await.unwrap_err();
    assert_eq!(field_errors(&err)[0].field, "network.service_cidr");

    // An upgrade by one minor happens in place.
    let mut next = tenant_spec("1.35.0");
    next.deletion_protection = true;
    let up = c
        .update_tenant_cluster(update(next))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(up.generation, 2);
    let t = wait_phase(&mut c, "acme", TenantClusterPhase::Ready).await;
    assert_eq!(t.status.unwrap().current_version, "1.35.0");
    assert_eq!(runtime.versions.lock().unwrap()["acme"], "1.35.0");

    // deletion_protection blocks delete; once lifted, delete ends the watch with NOT_FOUND.
    let err = c
        .delete_tenant_cluster(v1::DeleteTenantClusterRequest {
            name: "acme".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(field_errors(&err)[0].field, "deletion_protection");
    c.update_tenant_cluster(update(tenant_spec("1.35.0")))
        .await
        .unwrap();
    c.delete_tenant_cluster(v1::DeleteTenantClusterRequest {
        name: "acme".into(),
    })
    .await
    .unwrap();
    let mut stream = c
        .watch_tenant_cluster(v1::WatchTenantClusterRequest {
            name: "acme".into(),
        })
        .await
        .map(|r| r.into_inner());
    let ended = loop {
        match &mut stream {
            Err(e) => break e.code(),
            Ok(s) => match tokio::time::timeout(Duration::from_secs(30), s.next())
                .await
                .expect("timed out")
            {
                Some(Ok(_)) => continue,
                Some(Err(e)) => break e.code(),
                None => panic!("stream ended without NOT_FOUND"),
            },
        }
    };
    assert_eq!(ended, Code::NotFound);
    assert!(runtime.versions.lock().unwrap().is_empty());
    let _ = stop.send(true);
    let _ = driver.await;
    server.abort();
}

/// A runtime that can run any spec: what these tests check is kamajid's own refusals.
struct RunsAnything;

impl kamajid::runtime::Capabilities for RunsAnything {
    fn refuses(
        &self,
        _spec: &kamaji_core::spec::TenantSpec,
    ) -> Vec<kamaji_proto::errors::FieldError> {
        Vec::new()
    }
}
