//! A real kamajid (in-process) on a real, secured state etcd, and helpers to start datastores.

#![allow(dead_code)]

use std::path::PathBuf;
use std::time::Duration;

use kamaji_core::controlplane::Tenant;
use kamaji_core::ids::TenantName;
use kamaji_core::kek::Kek;
use kamaji_core::lifecycle::ports::{PortError, Runtime, RuntimeStatus};
use kamaji_core::pki::TenantPki;
use kamaji_proto::v1::datastores_client::DatastoresClient;
use kamaji_proto::v1::{self, DatastoreSpec};
use kamaji_testkit::devenv::{write_file, DevPki, EtcdProcess, EtcdSecurity};
use kamajid::config::{ServeConfig, StateEtcdConfig};
use kamajid::etcd::{connect, EtcdTls};
use tokio::sync::watch;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig};

pub const TOKEN: &str = "test-token-0123456789abcdef";

pub struct Env {
    /// Where kamajid serves /healthz and /readyz.
    pub metrics: std::net::SocketAddr,
    pub dir: tempfile::TempDir,
    pub pki: DevPki,
    pub state: EtcdProcess,
    pub endpoint: String,
    stop: watch::Sender<bool>,
    server: tokio::task::JoinHandle<Result<(), kamajid::server::ServeError>>,
}

pub type Client = DatastoresClient<InterceptedService<Channel, Bearer>>;

#[derive(Clone)]
pub struct Bearer(pub Option<String>);

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(t) = &self.0 {
            req.metadata_mut()
                .insert("authorization", format!("Bearer {t}").parse().unwrap());
        }
        Ok(req)
    }
}

impl Env {
    /// Starts a secured state etcd and kamajid with a fast health loop.
    pub async fn start() -> Self {
        kamajid::server::install_crypto();
        let dir = tempfile::tempdir().unwrap();
        let pki = DevPki::generate().unwrap();
        let pki_dir = dir.path().join("pki");
        pki.write(&pki_dir).unwrap();
        write_file(
            &dir.path().join("tokens"),
            &format!("# test\n{TOKEN}\n"),
            true,
        )
        .unwrap();
        write_file(&dir.path().join("kek"), &Kek::generate_encoded(), true).unwrap();
        let state = EtcdProcess::start(dir.path(), "state", &pki, EtcdSecurity::default())
            .await
            .unwrap();
        // Bound here, port 0: the server takes the listener, so no port is chosen and lost.
        let listener = kamajid::server::bind("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let port = listener.local_addr().unwrap().port();
        let metrics: std::net::SocketAddr =
            format!("127.0.0.1:{}", kamaji_testkit::devenv::free_port())
                .parse()
                .unwrap();
        let cfg = ServeConfig {
            listen: listener.local_addr().unwrap(),
            metrics_listen: metrics,
            tls_cert_file: pki_dir.join("server.crt"),
            tls_key_file: pki_dir.join("server.key"),
            tokens_file: dir.path().join("tokens"),
            kek_file: dir.path().join("kek"),
            state_etcd: StateEtcdConfig {
                endpoints: vec![state.endpoint.clone()],
                ca_file: Some(pki_dir.join("ca.crt")),
                cert_file: Some(pki_dir.join("root.crt")),
                key_file: Some(pki_dir.join("root.key")),
            },
            health_interval_seconds: 1,
            probe_timeout_seconds: 2,
            leader_lease_seconds: 3,
            kubeconfig: None,
            tenant_dns_domain: "cluster.local".into(),
            tenant_reservation_mib: 64,
            resync_seconds: kamaji_core::lifecycle::RESYNC_SECONDS,
            certificate_validity_seconds: 365 * 86_400,
            certificate_renew_before_seconds: 30 * 86_400,
            drain_parallel: kamaji_core::lifecycle::drain::DRAIN_PARALLEL as u16,
            service_account_issuer_base_url: None,
            issuer_listen: None,
            served_versions: Vec::new(),
            stable_after_patches: kamaji_core::maintenance::STABLE_AFTER_PATCHES,
            backup_store: None,
            process: Default::default(),
            shards: Default::default(),
        };
        let (stop, rx) = watch::channel(false);
        let server = tokio::spawn(kamajid::server::serve(cfg, listener, rx));
        let endpoint = format!("https://127.0.0.1:{port}");
        Self {
            metrics,
            dir,
            pki,
            state,
            endpoint,
            stop,
            server,
        }
    }

    pub async fn client_with(&self, token: Option<&str>) -> Client {
        let tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&self.pki.ca.cert));
        let channel = Channel::from_shared(self.endpoint.clone())
            .unwrap()
            .tls_config(tls)
            .unwrap()
            .connect()
            .await
            .unwrap();
        DatastoresClient::with_interceptor(channel, Bearer(token.map(str::to_owned)))
    }

    pub async fn client(&self) -> Client {
        self.client_with(Some(TOKEN)).await
    }

    /// Starts a datastore etcd sharing the env's PKI.
    pub async fn datastore(&self, name: &str, security: EtcdSecurity) -> EtcdProcess {
        EtcdProcess::start(self.dir.path(), name, &self.pki, security)
            .await
            .unwrap()
    }

    /// The registration spec for an etcd of this env, with the env's root credentials.
    pub fn spec(&self, etcd: &EtcdProcess) -> DatastoreSpec {
        DatastoreSpec {
            endpoints: vec![etcd.endpoint.clone()],
            ca_certificate: self.pki.ca.cert.clone(),
            client_certificate: self.pki.root.cert.clone(),
            client_key: self.pki.root.key.clone(),
            client_ca_certificate: self.pki.ca.cert.clone(),
            client_ca_key: self.pki.ca.key.clone(),
            quota_bytes: kamaji_proto::DEFAULT_QUOTA_BYTES,
            max_tenants: None,
            labels: [("tier".to_string(), "standard".to_string())].into(),
            schedulable: true,
            drain: false,
        }
    }

    /// A raw client on the state etcd, as root, to look at what kamajid stored.
    pub async fn state_client(&self) -> etcd_client::Client {
        let tls = EtcdTls {
            ca_pem: Some(self.pki.ca.cert.clone()),
            identity: Some((self.pki.root.cert.clone(), self.pki.root.key.clone())),
        };
        connect(
            std::slice::from_ref(&self.state.endpoint),
            &tls,
            Duration::from_secs(5),
        )
        .await
        .unwrap()
    }

    pub fn path(&self) -> PathBuf {
        self.dir.path().to_owned()
    }

    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = tokio::time::timeout(Duration::from_secs(10), self.server).await;
    }
}

pub async fn create(
    client: &mut Client,
    name: &str,
    spec: DatastoreSpec,
) -> Result<v1::Datastore, tonic::Status> {
    client
        .create_datastore(v1::CreateDatastoreRequest {
            name: name.into(),
            spec: Some(spec),
        })
        .await
        .map(|r| r.into_inner())
}

pub async fn names(client: &mut Client) -> Vec<String> {
    client
        .list_datastores(v1::ListDatastoresRequest::default())
        .await
        .unwrap()
        .into_inner()
        .datastores
        .into_iter()
        .map(|d| d.name)
        .collect()
}

pub use kamaji_testkit::kube_double;

/// A runtime double for tenant tests: remembers the version applied per tenant; a tenant is
/// ready once the version its spec asks for has been applied. Its "control plane" is a tenant
/// apiserver double on loopback serving the tenant's own certificate, so bootstrap runs for real.
#[derive(Default)]
pub struct MemoryRuntime {
    pub versions: std::sync::Mutex<std::collections::HashMap<String, String>>,
    pub apis: std::sync::Mutex<std::collections::HashMap<String, kube_double::TenantServer>>,
    /// The serving certificate each tenant's last apply rolled out.
    pub serving_certs: std::sync::Mutex<std::collections::HashMap<String, String>>,
}

impl MemoryRuntime {
    /// The objects inside tenant `name`'s apiserver double.
    pub fn tenant_api(&self, name: &str) -> Option<kube_double::KubeDouble> {
        self.apis.lock().unwrap().get(name).map(|t| t.api.clone())
    }
}

impl Runtime for MemoryRuntime {
    async fn apply(&self, t: &Tenant<'_>, pki: &TenantPki) -> Result<(), PortError> {
        assert!(pki.etcd_client.cert.contains("BEGIN CERTIFICATE"));
        let name = t.name.to_string();
        self.serving_certs
            .lock()
            .unwrap()
            .insert(name.clone(), pki.apiserver.cert.clone());
        self.versions
            .lock()
            .unwrap()
            .insert(name.clone(), t.spec.kubernetes_version.to_string());
        self.apis.lock().unwrap().entry(name).or_insert_with(|| {
            kube_double::TenantServer::start(&pki.apiserver.cert, &pki.apiserver.key)
                .expect("tenant apiserver double")
        });
        Ok(())
    }
    async fn status(&self, t: &Tenant<'_>) -> Result<RuntimeStatus, PortError> {
        let name = t.name.to_string();
        let ready = self.versions.lock().unwrap().get(&name)
            == Some(&t.spec.kubernetes_version.to_string());
        let endpoint = self
            .apis
            .lock()
            .unwrap()
            .get(&name)
            .map(|s| format!("https://{}", s.addr));
        Ok(RuntimeStatus {
            ready,
            endpoint,
            message: "rolling out".into(),
            stalled: None,
            tunnel: None,
        })
    }
    async fn delete(&self, tenant: &TenantName) -> Result<bool, PortError> {
        self.versions.lock().unwrap().remove(tenant.as_str());
        self.apis.lock().unwrap().remove(tenant.as_str());
        Ok(true)
    }
}

/// A valid tenant spec at `version`.
pub fn tenant_spec(version: &str) -> v1::TenantClusterSpec {
    v1::TenantClusterSpec {
        kubernetes_version: version.into(),
        replicas: 2,
        network: Some(v1::Network {
            service_cidr: "10.96.0.0/12".into(),
            pod_cidr: "10.244.0.0/16".into(),
            dns_service_ip: "10.96.0.10".into(),
            port: 6443,
            service_type: v1::ServiceType::LoadBalancer as i32,
            ..Default::default()
        }),
        ..Default::default()
    }
}
