//! A Kubernetes API test double that behaves like a cluster for the calls kamajid makes:
//! server-side apply (PATCH), GET and namespace DELETE of namespaced objects. It stores what is
//! applied, bumps `metadata.generation` when a spec changes, and plays the controllers' part:
//! a Deployment is rolled out and available at once, a LoadBalancer Service gets 127.0.0.1.
//! Test code only; kamajid talks to it through a kubeconfig exactly as to a real apiserver.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

#[derive(Clone, Default)]
pub struct KubeDouble {
    objects: Arc<Mutex<BTreeMap<String, Value>>>,
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

impl KubeDouble {
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

    /// Every stored object path, sorted.
    pub fn paths(&self) -> Vec<String> {
        self.objects.lock().unwrap().keys().cloned().collect()
    }

    pub fn get(&self, path: &str) -> Option<Value> {
        self.objects.lock().unwrap().get(path).cloned()
    }

    /// A kubeconfig pointing at `base`.
    pub fn kubeconfig(base: &str) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: double\n  cluster:\n    server: {base}\ncontexts:\n- name: double\n  context:\n    cluster: double\n    user: double\ncurrent-context: double\nusers:\n- name: double\n  user:\n    token: test\n"
        )
    }
}

async fn handle(State(d): State<KubeDouble>, method: Method, uri: Uri, body: Bytes) -> Response {
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
                Some("Service") => {
                    obj["spec"]["clusterIP"] = json!("10.0.0.10");
                    if obj["spec"]["type"] == "LoadBalancer" {
                        obj["status"] = json!({"loadBalancer": {"ingress": [{"ip": "127.0.0.1"}]}});
                    }
                }
                _ => {}
            }
            objects.insert(path, obj.clone());
            (StatusCode::OK, axum::Json(obj)).into_response()
        }
        Method::GET => match objects.get(&path) {
            Some(o) => (StatusCode::OK, axum::Json(o.clone())).into_response(),
            None => status(404, "NotFound", format!("{path} not found")),
        },
        Method::DELETE => {
            let Some(obj) = objects.remove(&path) else {
                return status(404, "NotFound", format!("{path} not found"));
            };
            // Deleting a namespace takes everything in it.
            if obj["kind"] == "Namespace" {
                let ns = obj["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                objects.retain(|p, _| namespace_of(p) != Some(ns.as_str()));
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
