//! The production runtime: each tenant's control plane as objects in the admin cluster,
//! written with server-side apply (field manager `kamajid`, forced: kamajid owns these fields).
//!
//! - apply: the rendered Namespace, Secrets, Deployment, Service, NetworkPolicy and PDB, in that
//!   order; applying an unchanged tenant changes nothing.
//! - status: ready when the Deployment has rolled out its current generation to every desired
//!   replica and they are available (each pod's readiness probe is the apiserver's `/readyz`);
//!   the endpoint comes from the spec's `endpoint_address` when set, else from the Service: a
//!   `NodePort` Service is reached at a Ready node's address on its node port, a `LoadBalancer`
//!   at its load-balancer address (not ready until the cloud gives it one), anything else at
//!   its cluster IP.
//! - delete: deletes the tenant namespace (which takes every object with it) and reports done
//!   once the namespace is gone.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod, Secret, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::Resource;
use serde::Serialize;

use kamaji_core::controlplane::{render, Tenant, DEPLOYMENT, FIELD_MANAGER, SERVICE};
use kamaji_core::ids::TenantName;
use kamaji_core::lifecycle::ports::{PortError, Runtime, RuntimeStatus};
use kamaji_core::pki::TenantPki;

pub struct KubeRuntime {
    client: kube::Client,
}

impl KubeRuntime {
    pub fn new(client: kube::Client) -> Self {
        Self { client }
    }

    fn err(op: &str, tenant: &TenantName, e: impl std::fmt::Display) -> PortError {
        PortError {
            op: format!("{op} tenant {tenant}"),
            detail: e.to_string(),
        }
    }

    async fn apply_one<K>(&self, api: Api<K>, obj: &K, tenant: &TenantName) -> Result<(), PortError>
    where
        K: Resource<DynamicType = ()>
            + Serialize
            + Clone
            + std::fmt::Debug
            + serde::de::DeserializeOwned,
    {
        let name = obj.meta().name.clone().unwrap_or_default();
        let params = PatchParams::apply(FIELD_MANAGER).force();
        api.patch(&name, &params, &Patch::Apply(obj))
            .await
            .map_err(|e| Self::err("applying", tenant, format!("{} {name}: {e}", K::kind(&()))))?;
        Ok(())
    }
}

fn not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

impl Runtime for KubeRuntime {
    async fn apply(&self, t: &Tenant<'_>, pki: &TenantPki) -> Result<(), PortError> {
        let r = render(t, pki);
        let ns = t.name.namespace();
        let c = self.client.clone();
        self.apply_one(Api::<Namespace>::all(c.clone()), &r.namespace, t.name)
            .await?;
        for s in &r.secrets {
            self.apply_one(Api::<Secret>::namespaced(c.clone(), &ns), s, t.name)
                .await?;
        }
        self.apply_one(
            Api::<Deployment>::namespaced(c.clone(), &ns),
            &r.deployment,
            t.name,
        )
        .await?;
        self.apply_one(
            Api::<Service>::namespaced(c.clone(), &ns),
            &r.service,
            t.name,
        )
        .await?;
        self.apply_one(
            Api::<NetworkPolicy>::namespaced(c.clone(), &ns),
            &r.network_policy,
            t.name,
        )
        .await?;
        self.apply_one(
            Api::<PodDisruptionBudget>::namespaced(c, &ns),
            &r.pdb,
            t.name,
        )
        .await?;
        Ok(())
    }

    async fn status(&self, t: &Tenant<'_>) -> Result<RuntimeStatus, PortError> {
        let ns = t.name.namespace();
        let d = Api::<Deployment>::namespaced(self.client.clone(), &ns)
            .get_opt(DEPLOYMENT)
            .await
            .map_err(|e| Self::err("reading the deployment of", t.name, e))?;
        let Some(d) = d else {
            return Ok(RuntimeStatus {
                ready: false,
                endpoint: None,
                message: "control-plane deployment not found".into(),
                stalled: None,
            });
        };
        let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
        let st = d.status.clone().unwrap_or_default();
        let rolled = st.observed_generation.unwrap_or(0) >= d.metadata.generation.unwrap_or(0);
        let updated = st.updated_replicas.unwrap_or(0);
        let available = st.available_replicas.unwrap_or(0);
        let ready =
            rolled && updated >= want && available >= want && st.replicas.unwrap_or(0) == want;

        let net = &t.spec.network;
        let reached = if let Some(address) = &net.endpoint_address {
            Some((address.clone(), net.port))
        } else {
            let svc = Api::<Service>::namespaced(self.client.clone(), &ns)
                .get_opt(SERVICE)
                .await
                .map_err(|e| Self::err("reading the service of", t.name, e))?;
            match svc {
                Some(svc) if node_port(&svc).is_some() => {
                    let nodes = Api::<Node>::all(self.client.clone())
                        .list(&ListParams::default())
                        .await
                        .map_err(|e| Self::err("listing the nodes for", t.name, e))?;
                    node_address(&nodes.items).zip(node_port(&svc))
                }
                Some(svc) => service_address(svc).map(|h| (h, net.port)),
                None => None,
            }
        };
        let endpoint = reached.map(|(h, port)| {
            if h.contains(':') {
                format!("https://[{h}]:{port}")
            } else {
                format!("https://{h}:{port}")
            }
        });
        let (message, stalled) = if ready && endpoint.is_none() {
            (
                format!(
                    "waiting for the {} Service's address",
                    t.spec.network.service_type.kubernetes_name()
                ),
                None,
            )
        } else if ready {
            (String::new(), None)
        } else {
            let pods = Api::<Pod>::namespaced(self.client.clone(), &ns)
                .list(&ListParams::default().labels("app.kubernetes.io/component=control-plane"))
                .await
                .map_err(|e| Self::err("listing the control-plane pods of", t.name, e))?;
            (
                format!(
                    "{available}/{want} control-plane replicas available, {updated}/{want} updated"
                ),
                stalled(&pods.items),
            )
        };
        Ok(RuntimeStatus {
            ready: ready && endpoint.is_some(),
            endpoint,
            message,
            stalled,
        })
    }

    async fn delete(&self, tenant: &TenantName) -> Result<bool, PortError> {
        let api = Api::<Namespace>::all(self.client.clone());
        let ns = tenant.namespace();
        match api.delete(&ns, &DeleteParams::foreground()).await {
            Ok(_) => {}
            Err(e) if not_found(&e) => return Ok(true),
            Err(e) => return Err(Self::err("deleting the namespace of", tenant, e)),
        }
        match api.get_opt(&ns).await {
            Ok(None) => Ok(true),
            Ok(Some(_)) => Ok(false),
            Err(e) => Err(Self::err("reading the namespace of", tenant, e)),
        }
    }
}

/// The node port of a `NodePort` Service's API port, once allocated.
fn node_port(svc: &Service) -> Option<u16> {
    let spec = svc.spec.as_ref()?;
    if spec.type_.as_deref() != Some("NodePort") {
        return None;
    }
    let port = spec.ports.as_ref()?.first()?.node_port?;
    u16::try_from(port).ok()
}

/// Where a Service other than a `NodePort` one is reached: a `LoadBalancer` at its load
/// balancer's address, once the cloud gave it one (its cluster IP is no address for users
/// outside), anything else at its cluster IP.
fn service_address(s: Service) -> Option<String> {
    let balanced = s
        .spec
        .as_ref()
        .is_some_and(|sp| sp.type_.as_deref() == Some("LoadBalancer"));
    if balanced {
        let ingress = s
            .status
            .and_then(|st| st.load_balancer)
            .and_then(|lb| lb.ingress)
            .and_then(|i| i.into_iter().next());
        return ingress.and_then(|i| i.ip.or(i.hostname));
    }
    s.spec
        .and_then(|sp| sp.cluster_ip)
        .filter(|ip| ip != "None")
}

/// The address a `NodePort` Service is reached at: of the Ready, schedulable nodes, the first by
/// name (stable while it stays), its external address when it has one, else its internal one.
pub fn node_address(nodes: &[Node]) -> Option<String> {
    let ready = |n: &&Node| {
        let st = n.status.as_ref();
        let is_ready = st
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
        let cordoned = n
            .spec
            .as_ref()
            .and_then(|s| s.unschedulable)
            .unwrap_or(false);
        is_ready && !cordoned
    };
    let mut candidates: Vec<&Node> = nodes.iter().filter(ready).collect();
    candidates.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    candidates.into_iter().find_map(|n| {
        let addrs = n.status.as_ref()?.addresses.as_ref()?;
        let of = |kind: &str| {
            addrs
                .iter()
                .find(|a| a.type_ == kind)
                .map(|a| a.address.clone())
        };
        of("ExternalIP").or_else(|| of("InternalIP"))
    })
}

/// A container restarted this often after failing is not going to start as configured.
const STALLED_RESTARTS: i32 = 3;

/// Why the control plane will not start as configured, from its pods: a container the kubelet
/// keeps restarting (crash loop, or killed for memory), with what it said last (the rendered
/// pods put the tail of its log in its termination message when it fails).
pub fn stalled(pods: &[Pod]) -> Option<String> {
    let mut out = Vec::new();
    for pod in pods {
        let statuses = pod
            .status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref());
        for c in statuses.into_iter().flatten() {
            let last = c.last_state.as_ref().and_then(|l| l.terminated.as_ref());
            let waiting = c
                .state
                .as_ref()
                .and_then(|s| s.waiting.as_ref())
                .and_then(|w| w.reason.as_deref());
            if c.restart_count < STALLED_RESTARTS
                || (waiting != Some("CrashLoopBackOff") && last.is_none())
            {
                continue;
            }
            let said = last
                .map(|t| {
                    let reason = t
                        .reason
                        .clone()
                        .unwrap_or_else(|| format!("exit code {}", t.exit_code));
                    match t
                        .message
                        .as_deref()
                        .map(str::trim)
                        .filter(|m| !m.is_empty())
                    {
                        Some(m) => format!("{reason}: {}", last_line(m)),
                        None => reason,
                    }
                })
                .unwrap_or_default();
            let entry = format!(
                "{} {} ({} restarts): {said}",
                c.name,
                waiting.unwrap_or("restarting"),
                c.restart_count
            );
            if !out.contains(&entry) {
                out.push(entry);
            }
        }
    }
    (!out.is_empty()).then(|| out.join("; "))
}

/// The last error line of a termination message (the tail of the container's log).
fn last_line(m: &str) -> String {
    let lines: Vec<&str> = m.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    lines
        .iter()
        .rev()
        .find(|l| l.starts_with("Error: ") || l.starts_with('E') || l.starts_with('F'))
        .or(lines.last())
        .map(|l| l.to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    //! The shape of every call, against a scripted API server (tower-test), as kube-rs'
    //! controller examples do: method, path, field manager, and the body we send.
    use super::*;
    use http::{Method, Request, Response};
    use kamaji_core::ids::TenantId;
    use kamaji_core::pki::{mint, new_ca, TenantPkiSpec};
    use kamaji_proto::v1;
    use kube::client::Body;

    fn acme() -> (TenantName, TenantId) {
        (
            TenantName::parse("acme").unwrap(),
            TenantId::parse("acme-1").unwrap(),
        )
    }

    type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

    fn spec(endpoint: &str) -> v1::TenantClusterSpec {
        v1::TenantClusterSpec {
            kubernetes_version: "1.35.1".into(),
            replicas: 2,
            network: Some(v1::Network {
                service_cidr: "10.96.0.0/12".into(),
                pod_cidr: "10.244.0.0/16".into(),
                dns_service_ip: "10.96.0.10".into(),
                port: 6443,
                service_type: v1::ServiceType::LoadBalancer as i32,
                endpoint_address: endpoint.into(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn runtime() -> (KubeRuntime, Handle) {
        let (svc, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        (KubeRuntime::new(kube::Client::new(svc, "default")), handle)
    }

    async fn body_json(req: Request<Body>) -> serde_json::Value {
        let bytes = req.into_body().collect_bytes().await.unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    fn respond(
        send: tower_test::mock::SendResponse<Response<Body>>,
        status: u16,
        body: serde_json::Value,
    ) {
        send.send_response(
            Response::builder()
                .status(status)
                .body(Body::from(serde_json::to_vec(&body).unwrap()))
                .unwrap(),
        );
    }

    #[tokio::test]
    async fn apply_server_side_applies_every_object_in_order_as_kamajid() {
        let (rt, mut handle) = runtime();
        let s = kamaji_proto::tenant::from_stored(&spec("")).unwrap();
        let (name, id) = acme();
        let eps = vec!["https://10.0.0.1:2379".to_owned()];
        let etcd_ca = new_ca("etcd").unwrap();
        let pki = mint(
            &TenantPkiSpec {
                tenant_id: id.clone(),
                service_cidr: "10.96.0.0/12".parse().unwrap(),
                dns_domain: "cluster.local".into(),
                external_sans: vec![],
                leaf_validity: kamaji_core::pki::LEAF_VALIDITY,
            },
            &etcd_ca,
        )
        .unwrap();
        let t = Tenant {
            name: &name,
            id: &id,
            spec: &s,
            etcd_endpoints: &eps,
            etcd_ca_certificate: &etcd_ca.cert,
            dns_domain: "cluster.local",
            address_known: true,
        };
        let server = tokio::spawn(async move {
            let expected = [
                "/api/v1/namespaces/tenant-acme",
                "/api/v1/namespaces/tenant-acme/secrets/pki",
                "/api/v1/namespaces/tenant-acme/secrets/etcd-pki",
                "/api/v1/namespaces/tenant-acme/secrets/kubeconfigs",
                "/api/v1/namespaces/tenant-acme/secrets/config",
                "/apis/apps/v1/namespaces/tenant-acme/deployments/control-plane",
                "/api/v1/namespaces/tenant-acme/services/kube-apiserver",
                "/apis/networking.k8s.io/v1/namespaces/tenant-acme/networkpolicies/kube-apiserver-ingress",
                "/apis/policy/v1/namespaces/tenant-acme/poddisruptionbudgets/control-plane",
            ];
            for path in expected {
                let (req, send) = handle.next_request().await.expect("a request");
                assert_eq!(req.method(), Method::PATCH);
                assert_eq!(req.uri().path(), path);
                let q = req.uri().query().unwrap_or_default().to_owned();
                assert!(
                    q.contains("fieldManager=kamajid") && q.contains("force=true"),
                    "{q}"
                );
                assert_eq!(
                    req.headers()["content-type"],
                    "application/apply-patch+yaml"
                );
                let body = body_json(req).await;
                assert_eq!(
                    body["metadata"]["labels"]["kamaji.io/tenant"], "acme",
                    "{path}"
                );
                respond(send, 200, body);
            }
        });
        rt.apply(&t, &pki).await.unwrap();
        server.await.unwrap();
    }

    fn deployment(generation: i64, observed: i64, available: i32) -> serde_json::Value {
        serde_json::json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "control-plane", "namespace": "tenant-acme", "generation": generation},
            "spec": {"replicas": 2, "selector": {}, "template": {}},
            "status": {"observedGeneration": observed, "replicas": 2, "updatedReplicas": 2, "availableReplicas": available}
        })
    }

    #[tokio::test]
    async fn status_waits_for_the_rollout_and_takes_the_endpoint_from_the_load_balancer() {
        let (rt, mut handle) = runtime();
        let s = kamaji_proto::tenant::from_stored(&spec("")).unwrap();
        let (name, id) = acme();
        let t = Tenant {
            name: &name,
            id: &id,
            spec: &s,
            etcd_endpoints: &[],
            etcd_ca_certificate: "",
            dns_domain: "cluster.local",
            address_known: true,
        };
        let server = tokio::spawn(async move {
            for dep in [deployment(3, 2, 2), deployment(3, 3, 1)] {
                let (req, send) = handle.next_request().await.unwrap();
                assert_eq!(
                    req.uri().path(),
                    "/apis/apps/v1/namespaces/tenant-acme/deployments/control-plane"
                );
                respond(send, 200, dep);
                let (req, send) = handle.next_request().await.unwrap();
                assert_eq!(
                    req.uri().path(),
                    "/api/v1/namespaces/tenant-acme/services/kube-apiserver"
                );
                respond(
                    send,
                    200,
                    serde_json::json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "kube-apiserver"},
                    "spec": {"type": "LoadBalancer", "clusterIP": "10.1.2.3"}, "status": {"loadBalancer": {"ingress": [{"ip": "203.0.113.9"}]}}}),
                );
                // Not ready: its pods say whether it is worth waiting.
                let (req, send) = handle.next_request().await.unwrap();
                assert_eq!(req.uri().path(), "/api/v1/namespaces/tenant-acme/pods");
                assert_eq!(
                    req.uri().query(),
                    Some("&labelSelector=app.kubernetes.io%2Fcomponent%3Dcontrol-plane")
                );
                respond(
                    send,
                    200,
                    serde_json::json!({"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": []}),
                );
            }
            let (_, send) = handle.next_request().await.unwrap();
            respond(send, 200, deployment(3, 3, 2));
            let (_, send) = handle.next_request().await.unwrap();
            respond(
                send,
                200,
                serde_json::json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "kube-apiserver"},
                "spec": {"type": "LoadBalancer", "clusterIP": "10.1.2.3"}, "status": {"loadBalancer": {"ingress": [{"ip": "203.0.113.9"}]}}}),
            );
        });
        let old_generation = rt.status(&t).await.unwrap();
        assert!(
            !old_generation.ready,
            "a rollout that has not observed the new generation is not ready"
        );
        let one_down = rt.status(&t).await.unwrap();
        assert!(!one_down.ready);
        assert_eq!(
            one_down.message,
            "1/2 control-plane replicas available, 2/2 updated"
        );
        assert_eq!(one_down.stalled, None);
        let ready = rt.status(&t).await.unwrap();
        assert!(ready.ready, "{}", ready.message);
        assert_eq!(ready.endpoint.as_deref(), Some("https://203.0.113.9:6443"));
        server.await.unwrap();
    }

    #[test]
    fn a_load_balancer_is_reached_at_its_address_only_once_the_cloud_gave_it_one() {
        let svc = |ty: &str, ingress: serde_json::Value| -> Service {
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": "kube-apiserver"},
                "spec": {"type": ty, "clusterIP": "10.1.2.3"},
                "status": {"loadBalancer": {"ingress": ingress}},
            }))
            .unwrap()
        };
        assert_eq!(
            service_address(svc("LoadBalancer", serde_json::json!([]))),
            None
        );
        assert_eq!(
            service_address(svc(
                "LoadBalancer",
                serde_json::json!([{"hostname": "lb.example"}])
            ))
            .as_deref(),
            Some("lb.example")
        );
        assert_eq!(
            service_address(svc("ClusterIP", serde_json::json!([]))).as_deref(),
            Some("10.1.2.3")
        );
    }

    #[test]
    fn a_node_port_is_reached_on_the_first_ready_schedulable_node_by_its_external_address_first() {
        let node = |name: &str, ready: &str, cordoned: bool, addrs: serde_json::Value| -> Node {
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": name},
                "spec": {"unschedulable": cordoned},
                "status": {
                    "conditions": [{"type": "Ready", "status": ready}],
                    "addresses": addrs,
                },
            }))
            .unwrap()
        };
        let internal = |ip: &str| serde_json::json!([{"type": "InternalIP", "address": ip}, {"type": "Hostname", "address": "h"}]);
        let both = serde_json::json!([{"type": "InternalIP", "address": "10.0.0.3"}, {"type": "ExternalIP", "address": "203.0.113.3"}]);
        assert_eq!(node_address(&[]), None);
        let nodes = [
            node("c", "True", false, both),
            node("a", "False", false, internal("10.0.0.1")),
            node("b", "True", true, internal("10.0.0.2")),
        ];
        assert_eq!(node_address(&nodes).as_deref(), Some("203.0.113.3"));
        let nodes = [
            node("z", "True", false, internal("10.0.0.26")),
            node("d", "True", false, internal("10.0.0.4")),
        ];
        assert_eq!(node_address(&nodes).as_deref(), Some("10.0.0.4"));
    }

    #[test]
    fn a_container_the_kubelet_keeps_restarting_says_why_in_its_own_words() {
        let pod = |restarts: i32, waiting: &str, last: serde_json::Value| -> Pod {
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": "control-plane-1"},
                "status": {"containerStatuses": [{
                    "name": "kube-apiserver", "image": "x", "imageID": "", "ready": false,
                    "restartCount": restarts,
                    "state": {"waiting": {"reason": waiting}},
                    "lastState": {"terminated": last},
                }]},
            }))
            .unwrap()
        };
        let failed = serde_json::json!({"exitCode": 1, "reason": "Error",
            "message": "I1204 serving\nE1204 19:36:36.426733 1 run.go:72] \"command failed\" err=\"plugin Foo is unknown\"\n"});
        assert_eq!(
            stalled(&[pod(2, "CrashLoopBackOff", failed.clone())]),
            None,
            "not yet"
        );
        let why = stalled(&[pod(4, "CrashLoopBackOff", failed)]).unwrap();
        assert!(
            why.starts_with("kube-apiserver CrashLoopBackOff (4 restarts): Error: E1204")
                && why.contains("plugin Foo is unknown"),
            "{why}"
        );
        let oom = stalled(&[pod(
            3,
            "CrashLoopBackOff",
            serde_json::json!({"exitCode": 137, "reason": "OOMKilled"}),
        )])
        .unwrap();
        assert!(oom.ends_with("OOMKilled"), "{oom}");
    }

    #[tokio::test]
    async fn delete_removes_the_namespace_and_reports_done_once_it_is_gone() {
        let (rt, mut handle) = runtime();
        let server = tokio::spawn(async move {
            let (req, send) = handle.next_request().await.unwrap();
            assert_eq!(
                (req.method().clone(), req.uri().path().to_owned()),
                (Method::DELETE, "/api/v1/namespaces/tenant-acme".to_owned())
            );
            respond(
                send,
                200,
                serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "tenant-acme"}, "status": {"phase": "Terminating"}}),
            );
            let (_, send) = handle.next_request().await.unwrap();
            respond(
                send,
                200,
                serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "tenant-acme"}, "status": {"phase": "Terminating"}}),
            );
            let (_, send) = handle.next_request().await.unwrap();
            respond(
                send,
                404,
                serde_json::json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404, "message": "namespaces \"tenant-acme\" not found"}),
            );
        });
        let (name, _) = acme();
        assert!(!rt.delete(&name).await.unwrap(), "still terminating");
        assert!(rt.delete(&name).await.unwrap(), "gone");
        server.await.unwrap();
    }
}
