//! A Kubernetes API test double that behaves like a cluster for the calls kamajid makes:
//! server-side apply (PATCH), GET of objects and of collections (with a `type=` field selector;
//! a namespaced resource also cluster-wide), watches of a collection (`watch=true`: every object
//! as ADDED, then each change as it happens; label selectors are not applied), and DELETE (a
//! namespace takes everything in it). It stores what is applied, bumps
//! `metadata.generation` when a spec changes, and plays the controllers' part: a Deployment is
//! rolled out and available at once.
//!
//! As an admin cluster it also plays the tenant's pods: each Service gets its own loopback
//! address (`127.x.y.z`, as cluster IP and load-balancer address), and once the tenant's `pki`
//! Secret is there, a tenant apiserver double answers at that address and the Service port over
//! TLS with the tenant's own serving certificate, re-read when the Secret changes. Its objects are
//! reachable through [`KubeDouble::tenant`]. Test code only; kamajid talks to it through a
//! kubeconfig exactly as to a real apiserver.

use std::collections::{BTreeMap, HashMap};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::{json, Value};

/// Requests served, by every admin-cluster double and every tenant apiserver double of this
/// process (for the benchmark's figures of what kamajid asks at rest).
static ADMIN_REQUESTS: AtomicU64 = AtomicU64::new(0);
static TENANT_REQUESTS: AtomicU64 = AtomicU64::new(0);

/// (admin cluster, tenant apiservers) requests served so far by this process's doubles.
pub fn requests_served() -> (u64, u64) {
    (
        ADMIN_REQUESTS.load(Ordering::Relaxed),
        TENANT_REQUESTS.load(Ordering::Relaxed),
    )
}

/// A change to one object, as a watch tells it.
#[derive(Clone)]
struct Change {
    path: String,
    kind: &'static str,
    object: Value,
}

/// Every change, to every watch of this double.
#[derive(Clone)]
struct Changes(tokio::sync::broadcast::Sender<Change>);

impl Default for Changes {
    fn default() -> Self {
        Self(tokio::sync::broadcast::channel(8192).0)
    }
}

impl Changes {
    fn tell(&self, path: &str, kind: &'static str, object: &Value) {
        // No watch open: nobody to tell.
        let _ = self.0.send(Change {
            path: path.to_owned(),
            kind,
            object: object.clone(),
        });
    }
}

#[derive(Clone, Default)]
pub struct KubeDouble {
    objects: Arc<Mutex<BTreeMap<String, Value>>>,
    changes: Changes,
    /// Set on an admin cluster: tenant apiserver doubles by tenant namespace.
    tenants: Option<Arc<Mutex<HashMap<String, TenantServer>>>>,
    next_ip: Arc<Mutex<u32>>,
}

/// A tenant apiserver double serving TLS; stops when dropped.
pub struct TenantServer {
    pub api: KubeDouble,
    pub addr: SocketAddr,
    cert: String,
    tls: Arc<RwLock<Arc<rustls::ServerConfig>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TenantServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn status(code: u16, reason: &str, message: String) -> Response {
    let body = json!({"apiVersion": "v1", "kind": "Status", "status": "Failure", "reason": reason, "code": code, "message": message});
    (
        StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        axum::Json(body),
    )
        .into_response()
}

/// The namespace an object path belongs to, e.g. `/api/v1/namespaces/tenant-a/secrets/pki`.
fn namespace_of(path: &str) -> Option<&str> {
    let rest = path.split("/namespaces/").nth(1)?;
    Some(rest.split('/').next().unwrap_or(rest))
}

fn tls_config(cert: &str, key: &str) -> Option<Arc<rustls::ServerConfig>> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert.as_bytes())
        .collect::<Result<_, _>>()
        .ok()?;
    let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).ok()?;
    let cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .ok()?
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .ok()?;
    Some(Arc::new(cfg))
}

/// Accepts TLS connections with whatever configuration is current.
struct TlsListener {
    tcp: tokio::net::TcpListener,
    tls: Arc<RwLock<Arc<rustls::ServerConfig>>>,
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((stream, addr)) = self.tcp.accept().await else {
                continue;
            };
            let cfg = match self.tls.read() {
                Ok(c) => c.clone(),
                Err(_) => continue,
            };
            if let Ok(s) = tokio_rustls::TlsAcceptor::from(cfg).accept(stream).await {
                return (s, addr);
            }
        }
    }

    fn local_addr(&self) -> tokio::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

fn secret_value(secret: &Value, key: &str) -> Option<String> {
    if let Some(s) = secret["stringData"][key].as_str() {
        return Some(s.to_owned());
    }
    let b = secret["data"][key].as_str()?;
    let raw = base64::engine::general_purpose::STANDARD.decode(b).ok()?;
    String::from_utf8(raw).ok()
}

impl KubeDouble {
    /// An admin cluster: also runs a tenant apiserver double per tenant namespace.
    pub fn admin_cluster() -> Self {
        // A random second octet keeps concurrently running test processes apart.
        let seed = std::process::id()
            ^ std::time::UNIX_EPOCH
                .elapsed()
                .map_or(0, |d| d.subsec_nanos());
        Self {
            tenants: Some(Arc::default()),
            next_ip: Arc::new(Mutex::new((seed % 250 + 2) << 16)),
            ..Default::default()
        }
    }

    /// Serves on a random loopback port; returns the base URL.
    pub async fn start(&self) -> String {
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(self.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{addr}")
    }

    /// The API as an axum router, for servers that add routes of their own.
    pub fn router(&self) -> axum::Router {
        axum::Router::new()
            .fallback(handle)
            .with_state(self.clone())
    }

    /// Every stored object path, sorted.
    pub fn paths(&self) -> Vec<String> {
        self.objects.lock().unwrap().keys().cloned().collect()
    }

    pub fn get(&self, path: &str) -> Option<Value> {
        self.objects.lock().unwrap().get(path).cloned()
    }

    /// Stores `obj` at `path` as if someone else had written it (drift).
    pub fn put(&self, path: &str, obj: Value) {
        let mut objects = self.objects.lock().unwrap();
        let kind = if objects.contains_key(path) {
            "MODIFIED"
        } else {
            "ADDED"
        };
        self.changes.tell(path, kind, &obj);
        objects.insert(path.to_owned(), obj);
    }

    pub fn remove(&self, path: &str) -> Option<Value> {
        let gone = self.objects.lock().unwrap().remove(path)?;
        self.changes.tell(path, "DELETED", &gone);
        Some(gone)
    }

    /// The tenant apiserver double of the tenant in namespace `ns`, once it runs.
    pub fn tenant(&self, ns: &str) -> Option<KubeDouble> {
        let tenants = self.tenants.as_ref()?.lock().unwrap();
        tenants.get(ns).map(|t| t.api.clone())
    }

    /// A kubeconfig pointing at `base`.
    pub fn kubeconfig(base: &str) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: double\n  cluster:\n    server: {base}\ncontexts:\n- name: double\n  context:\n    cluster: double\n    user: double\ncurrent-context: double\nusers:\n- name: double\n  user:\n    token: test\n"
        )
    }

    fn next_loopback(&self) -> String {
        let mut n = self.next_ip.lock().unwrap();
        *n += 1;
        Ipv4Addr::from(0x7f00_0000 | (*n & 0x00ff_ffff)).to_string()
    }

    /// Starts, re-keys or leaves alone the tenant apiserver of namespace `ns`.
    fn sync_tenant(&self, ns: &str, objects: &BTreeMap<String, Value>) {
        let Some(tenants) = &self.tenants else { return };
        let service = objects
            .iter()
            .find(|(p, o)| namespace_of(p) == Some(ns) && o["kind"] == "Service");
        let secret = objects.get(&format!("/api/v1/namespaces/{ns}/secrets/pki"));
        let (Some((_, svc)), Some(secret)) = (service, secret) else {
            return;
        };
        let (Some(cert), Some(key)) = (
            secret_value(secret, "apiserver.crt"),
            secret_value(secret, "apiserver.key"),
        ) else {
            return;
        };
        let mut tenants = tenants.lock().unwrap();
        if let Some(t) = tenants.get(ns) {
            if t.cert != cert {
                if let (Some(cfg), Ok(mut cur)) = (tls_config(&cert, &key), t.tls.write()) {
                    *cur = cfg;
                }
                if let Some(t) = tenants.get_mut(ns) {
                    t.cert = cert;
                }
            }
            return;
        }
        let (Some(ip), Some(port)) = (
            svc["spec"]["clusterIP"].as_str(),
            svc["spec"]["ports"][0]["port"].as_u64(),
        ) else {
            return;
        };
        let Some(cfg) = tls_config(&cert, &key) else {
            return;
        };
        let Ok(tcp) = std::net::TcpListener::bind((ip, port as u16)) else {
            return;
        };
        if let Some(t) = TenantServer::serve(tcp, cert, cfg) {
            tenants.insert(ns.to_owned(), t);
        }
    }
}

/// Serves `app` over TLS with `cert`/`key` on `tcp` until the task is aborted.
pub fn serve_tls(
    tcp: std::net::TcpListener,
    cert: &str,
    key: &str,
    app: axum::Router,
) -> Option<tokio::task::JoinHandle<()>> {
    tcp.set_nonblocking(true).ok()?;
    let listener = TlsListener {
        tcp: tokio::net::TcpListener::from_std(tcp).ok()?,
        tls: Arc::new(RwLock::new(tls_config(cert, key)?)),
    };
    Some(tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    }))
}

impl TenantServer {
    /// A tenant apiserver double on a free loopback port, serving `cert`/`key`.
    pub fn start(cert: &str, key: &str) -> Option<Self> {
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").ok()?;
        Self::serve(tcp, cert.to_owned(), tls_config(cert, key)?)
    }

    fn serve(
        tcp: std::net::TcpListener,
        cert: String,
        cfg: Arc<rustls::ServerConfig>,
    ) -> Option<Self> {
        tcp.set_nonblocking(true).ok()?;
        let addr = tcp.local_addr().ok()?;
        let tcp = tokio::net::TcpListener::from_std(tcp).ok()?;
        let api = KubeDouble::default();
        let tls = Arc::new(RwLock::new(cfg));
        let app = axum::Router::new().fallback(handle).with_state(api.clone());
        let listener = TlsListener {
            tcp,
            tls: tls.clone(),
        };
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Some(Self {
            api,
            addr,
            cert,
            tls,
            task,
        })
    }
}

/// Whether `path` names a collection (`.../secrets`) rather than one object (`.../secrets/x`).
fn is_collection(path: &str) -> bool {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let rest = match segs.first() {
        Some(&"api") => &segs[segs.len().min(2)..],
        Some(&"apis") => &segs[segs.len().min(3)..],
        _ => return false,
    };
    match rest {
        ["namespaces", _, _] => true,
        ["namespaces", _, _, _] => false,
        [_] => true,
        _ => false,
    }
}

/// Whether the object at `path` is in collection `coll`: directly under it, or (a cluster-wide
/// collection of a namespaced resource, `<group>/<resource>`) at
/// `<group>/namespaces/<ns>/<resource>/<name>`.
fn in_collection(coll: &str, path: &str) -> bool {
    if let Some(rest) = path.strip_prefix(coll).and_then(|r| r.strip_prefix('/')) {
        return !rest.contains('/');
    }
    let Some((group, resource)) = coll.rsplit_once('/') else {
        return false;
    };
    path.strip_prefix(group)
        .and_then(|r| r.strip_prefix("/namespaces/"))
        .and_then(|r| r.split_once('/'))
        .and_then(|(_, r)| r.strip_prefix(resource))
        .and_then(|r| r.strip_prefix('/'))
        .is_some_and(|name| !name.is_empty() && !name.contains('/'))
}

/// Whether the query asks for a watch.
fn is_watch(uri: &Uri) -> bool {
    uri.query()
        .is_some_and(|q| q.split('&').any(|kv| kv == "watch=true" || kv == "watch=1"))
}

/// One watch event, as a line of the stream.
fn watch_line(kind: &str, object: Value) -> Result<Bytes, std::convert::Infallible> {
    Ok(Bytes::from(format!(
        "{}\n",
        json!({"type": kind, "object": object})
    )))
}

/// A watch of collection `coll`: every object in it as ADDED, then every change to it until the
/// client goes (or falls too far behind: the stream ends and the client lists again).
fn watch(d: &KubeDouble, objects: &BTreeMap<String, Value>, coll: String) -> Response {
    use futures::StreamExt;
    let rx = d.changes.0.subscribe();
    let now: Vec<_> = objects
        .iter()
        .filter(|(p, _)| in_collection(&coll, p))
        .map(|(_, o)| watch_line("ADDED", o.clone()))
        .collect();
    let later = futures::stream::unfold((rx, coll), |(mut rx, coll)| async move {
        loop {
            match rx.recv().await {
                Ok(c) if in_collection(&coll, &c.path) => {
                    return Some((watch_line(c.kind, c.object), (rx, coll)));
                }
                Ok(_) => continue,
                Err(_) => return None,
            }
        }
    });
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "application/json")
        .body(axum::body::Body::from_stream(
            futures::stream::iter(now).chain(later),
        ))
        .unwrap_or_else(|_| status(500, "InternalError", "watch".into()))
}

/// `type=<value>` from a `fieldSelector` query parameter.
fn type_selector(uri: &Uri) -> Option<String> {
    let q = uri.query()?;
    let sel = q
        .split('&')
        .find_map(|kv| kv.strip_prefix("fieldSelector="))?;
    let decoded = sel
        .replace("%3D", "=")
        .replace("%3d", "=")
        .replace("%2F", "/")
        .replace("%2f", "/");
    decoded.strip_prefix("type=").map(str::to_owned)
}

async fn handle(State(d): State<KubeDouble>, method: Method, uri: Uri, body: Bytes) -> Response {
    if d.tenants.is_some() {
        ADMIN_REQUESTS.fetch_add(1, Ordering::Relaxed);
    } else {
        TENANT_REQUESTS.fetch_add(1, Ordering::Relaxed);
    }
    let path = uri.path().to_owned();
    let mut objects = d.objects.lock().unwrap();
    match method {
        Method::PATCH => {
            let Ok(mut obj) = serde_json::from_slice::<Value>(&body) else {
                return status(400, "BadRequest", "body is not JSON".into());
            };
            let prev = objects.get(&path).cloned();
            let generation = match &prev {
                Some(p) if p["spec"] == obj["spec"] => {
                    p["metadata"]["generation"].as_i64().unwrap_or(1)
                }
                Some(p) => p["metadata"]["generation"].as_i64().unwrap_or(1) + 1,
                None => 1,
            };
            obj["metadata"]["generation"] = json!(generation);
            obj["metadata"]["uid"] = json!(format!("uid-{}", path.len()));
            obj["metadata"]["resourceVersion"] = json!(generation.to_string());
            match obj["kind"].as_str() {
                Some("Deployment") => {
                    let r = obj["spec"]["replicas"].as_i64().unwrap_or(1);
                    obj["status"] = json!({"observedGeneration": generation, "replicas": r, "updatedReplicas": r, "readyReplicas": r, "availableReplicas": r});
                }
                Some("Service") if obj["spec"]["clusterIP"].is_null() => {
                    let ip = match prev.as_ref().and_then(|p| p["spec"]["clusterIP"].as_str()) {
                        Some(ip) => ip.to_owned(),
                        None if d.tenants.is_some() => d.next_loopback(),
                        None => "10.0.0.10".to_owned(),
                    };
                    obj["spec"]["clusterIP"] = json!(ip);
                    if obj["spec"]["type"] == "LoadBalancer" {
                        obj["status"] = json!({"loadBalancer": {"ingress": [{"ip": ip}]}});
                    }
                }
                _ => {}
            }
            d.changes.tell(
                &path,
                if prev.is_some() { "MODIFIED" } else { "ADDED" },
                &obj,
            );
            objects.insert(path.clone(), obj.clone());
            if let Some(ns) = namespace_of(&path) {
                d.sync_tenant(ns, &objects);
            }
            (StatusCode::OK, axum::Json(obj)).into_response()
        }
        Method::GET => {
            if let Some(o) = objects.get(&path) {
                return (StatusCode::OK, axum::Json(o.clone())).into_response();
            }
            if !is_collection(&path) {
                return status(404, "NotFound", format!("{path} not found"));
            }
            if is_watch(&uri) {
                return watch(&d, &objects, path);
            }
            // A collection: the objects in it.
            let want_type = type_selector(&uri);
            let items: Vec<Value> = objects
                .iter()
                .filter(|(p, _)| in_collection(&path, p))
                .map(|(_, o)| o.clone())
                .filter(|o| want_type.as_deref().is_none_or(|t| o["type"] == t))
                .collect();
            let kind = items
                .first()
                .and_then(|o| o["kind"].as_str())
                .map(|k| format!("{k}List"))
                .unwrap_or_else(|| "List".into());
            let list = json!({"apiVersion": "v1", "kind": kind, "metadata": {"resourceVersion": "1"}, "items": items});
            (StatusCode::OK, axum::Json(list)).into_response()
        }
        Method::DELETE => {
            let Some(obj) = objects.remove(&path) else {
                return status(404, "NotFound", format!("{path} not found"));
            };
            d.changes.tell(&path, "DELETED", &obj);
            // Deleting a namespace takes everything in it, its tenant apiserver included.
            if obj["kind"] == "Namespace" {
                let ns = obj["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                objects.retain(|p, o| {
                    let keep = namespace_of(p) != Some(ns.as_str());
                    if !keep {
                        d.changes.tell(p, "DELETED", o);
                    }
                    keep
                });
                if let Some(t) = &d.tenants {
                    t.lock().unwrap().remove(&ns);
                }
            }
            (StatusCode::OK, axum::Json(obj)).into_response()
        }
        _ => status(
            405,
            "MethodNotAllowed",
            format!("{method} is not served by the double"),
        ),
    }
}
