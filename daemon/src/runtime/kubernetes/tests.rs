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
        issuer_base: None,
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
        issuer_base: None,
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
