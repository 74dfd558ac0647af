//! The Konnectivity agent add-on: on every node (host network), it dials the tenant's
//! konnectivity server and carries the apiserver's traffic to the node's network (see
//! [`crate::controlplane::konnectivity`]). It authenticates with a projected token of its own
//! service account, of the server's audience, refreshed by the kubelet.

use serde_json::{json, Value};

use super::{meta, Inputs};
use crate::controlplane::konnectivity::{self as knp, AGENT_NAMESPACE, AGENT_SERVICE_ACCOUNT};

const TOKEN_DIR: &str = "/var/run/secrets/tokens";
const TOKEN_FILE: &str = "konnectivity-agent-token";
const SA_CA: &str = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt";

/// The agent's ServiceAccount and DaemonSet, dialing `tunnel` (`host:port`; only names matter
/// when the objects are removed).
pub fn agent(_i: &Inputs<'_>, tunnel: &str) -> Vec<Value> {
    let (host, port) = tunnel.rsplit_once(':').unwrap_or((tunnel, "0"));
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let mut args = knp::agent(
        host,
        port.parse().unwrap_or(0),
        SA_CA,
        &format!("{TOKEN_DIR}/{TOKEN_FILE}"),
    );
    // The server sends a request for a node's address to that node's agent.
    args.push("--agent-identifiers=ipv4=$(HOST_IP)".into());
    let labels = json!({"k8s-app": "konnectivity-agent"});
    vec![
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta(AGENT_SERVICE_ACCOUNT, Some(AGENT_NAMESPACE))}),
        json!({
            "apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": meta("konnectivity-agent", Some(AGENT_NAMESPACE)),
            "spec": {
                "selector": {"matchLabels": labels},
                "updateStrategy": {"type": "RollingUpdate"},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "priorityClassName": "system-node-critical",
                        "serviceAccountName": AGENT_SERVICE_ACCOUNT,
                        "hostNetwork": true,
                        "nodeSelector": {"kubernetes.io/os": "linux"},
                        "tolerations": [{"operator": "Exists"}],
                        "containers": [{
                            "name": "konnectivity-agent",
                            "image": format!("{}:{}", knp::AGENT_IMAGE, knp::VERSION),
                            "command": ["/proxy-agent"],
                            "args": args,
                            "env": [{"name": "HOST_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}}],
                            "livenessProbe": {
                                "httpGet": {"host": "127.0.0.1", "port": knp::AGENT_HEALTH_PORT, "path": "/healthz"},
                                "initialDelaySeconds": 15,
                                "timeoutSeconds": 15,
                            },
                            "securityContext": {"allowPrivilegeEscalation": false, "runAsNonRoot": true, "runAsUser": 65534, "readOnlyRootFilesystem": true, "capabilities": {"drop": ["ALL"]}},
                            "volumeMounts": [{"name": "token", "mountPath": TOKEN_DIR}],
                        }],
                        "volumes": [{
                            "name": "token",
                            "projected": {"sources": [{"serviceAccountToken": {
                                "path": TOKEN_FILE,
                                "audience": knp::AUDIENCE,
                                "expirationSeconds": 3600,
                            }}]},
                        }],
                    },
                },
            },
        }),
    ]
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::super::{disabled_addons, render};

    #[test]
    fn the_agent_dials_the_reported_tunnel_with_a_token_of_the_servers_audience() {
        let mut i = inputs(true, true);
        let mut spec = i.spec.clone();
        spec.network.konnectivity = true;
        i.spec = Box::leak(Box::new(spec));
        // Not yet reported: nothing to dial, nothing rendered.
        assert!(render(&i)
            .iter()
            .all(|o| o["metadata"]["name"] != "konnectivity-agent"));
        i.tunnel = Some("203.0.113.10:16446");
        let objs = render(&i);
        let ds = find(
            &objs,
            "DaemonSet",
            Some("kube-system"),
            "konnectivity-agent",
        );
        let pod = &ds["spec"]["template"]["spec"];
        assert_eq!(pod["hostNetwork"], true);
        let args: Vec<&str> = pod["containers"][0]["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap())
            .collect();
        assert!(
            args.contains(&"--proxy-server-host=203.0.113.10"),
            "{args:?}"
        );
        assert!(args.contains(&"--proxy-server-port=16446"), "{args:?}");
        let token = &pod["volumes"][0]["projected"]["sources"][0]["serviceAccountToken"];
        assert_eq!(token["audience"], "system:konnectivity-server");
        find(
            &objs,
            "ServiceAccount",
            Some("kube-system"),
            "konnectivity-agent",
        );
        // Off: removed.
        let off = inputs(true, true);
        let gone = disabled_addons(&off);
        find(
            &gone,
            "DaemonSet",
            Some("kube-system"),
            "konnectivity-agent",
        );
    }
}
