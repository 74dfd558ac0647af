//! Konnectivity: the apiserver reaches the cluster's network (kubelets for logs, exec and
//! port-forward; webhooks, aggregated APIs and services) through a tunnel that an agent on each
//! node opens *to* the control plane, so workers may sit where the control plane cannot dial
//! them. The konnectivity server runs beside the apiserver, which talks to it over a Unix socket
//! (gRPC mode, as its egress selector configuration says); agents dial the server's agent port
//! and prove who they are with a service-account token of audience [`AUDIENCE`], which the
//! server checks with a TokenReview through the controller-manager's kubeconfig (its default
//! RBAC role may create TokenReviews, so no new identity is minted).
//!
//! The server and agent are `sigs.k8s.io/apiserver-network-proxy` at [`VERSION`]
//! (`tools/upstream/PROGRAMS`): one release for every supported minor, since their tunnel
//! protocol and the apiserver's `EgressSelectorConfiguration` v1beta1 have not changed across
//! them.

use super::flags::Layout;

/// The release of the server and agent, as built and imaged.
pub const VERSION: &str = "v0.36.0";
pub const SERVER_IMAGE: &str = "registry.k8s.io/kas-network-proxy/proxy-server";
pub const AGENT_IMAGE: &str = "registry.k8s.io/kas-network-proxy/proxy-agent";
/// The audience of the agents' tokens, and who they must be.
pub const AUDIENCE: &str = "system:konnectivity-server";
pub const AGENT_NAMESPACE: &str = "kube-system";
pub const AGENT_SERVICE_ACCOUNT: &str = "konnectivity-agent";
/// The server's socket, in a pod (an emptyDir the apiserver's container mounts too).
pub const POD_SOCKET_DIR: &str = "/run/konnectivity";
pub const SOCKET_NAME: &str = "konnectivity-server.socket";
/// The egress configuration file among the apiserver's configuration files.
pub const EGRESS_CONFIG: &str = "egress-selector.yaml";

/// Where the server listens besides its socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ServerPorts {
    /// Where agents connect (TLS with the apiserver's serving certificate).
    pub agent: u32,
    /// Local only: metrics and debug.
    pub admin: u32,
    pub health: u32,
}

/// Ports in a pod, as upstream's examples use them.
pub const POD_PORTS: ServerPorts = ServerPorts {
    agent: 8132,
    admin: 8133,
    health: 8134,
};

/// The agents' ports on each node (host network): upstream's defaults.
pub const AGENT_ADMIN_PORT: u32 = 8133;
pub const AGENT_HEALTH_PORT: u32 = 8134;

/// The apiserver's `EgressSelectorConfiguration`: traffic to the cluster's network goes through
/// the server at `socket`; traffic to etcd and the control plane does not.
pub fn egress_selector(socket: &str) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "apiserver.k8s.io/v1beta1",
        "kind": "EgressSelectorConfiguration",
        "egressSelections": [{
            "name": "cluster",
            "connection": {
                "proxyProtocol": "GRPC",
                "transport": {"uds": {"udsName": socket}}
            }
        }]
    })
}

/// The konnectivity server's flags. `health_bind_address` as for the other components;
/// `server_count` is how many servers agents must each reach (one per apiserver replica).
pub fn server(
    layout: &Layout,
    ports: ServerPorts,
    health_bind_address: &str,
    server_count: u32,
) -> Vec<String> {
    let pki = &layout.pki_dir;
    [
        ("uds-name", layout.konnectivity_socket.clone()),
        ("delete-existing-uds-file", "true".into()),
        ("server-port", "0".into()),
        ("mode", "grpc".into()),
        ("cluster-cert", format!("{pki}/apiserver.crt")),
        ("cluster-key", format!("{pki}/apiserver.key")),
        ("agent-port", ports.agent.to_string()),
        ("admin-port", ports.admin.to_string()),
        ("admin-bind-address", "127.0.0.1".into()),
        ("health-port", ports.health.to_string()),
        ("health-bind-address", health_bind_address.into()),
        (
            "kubeconfig",
            format!("{}/controller-manager.conf", layout.kubeconfig_dir),
        ),
        ("authentication-audience", AUDIENCE.into()),
        ("agent-namespace", AGENT_NAMESPACE.into()),
        ("agent-service-account", AGENT_SERVICE_ACCOUNT.into()),
        // To the agent of the node a request is for, else any.
        ("proxy-strategies", "destHost,default".into()),
        ("server-count", server_count.max(1).to_string()),
    ]
    .into_iter()
    .map(|(k, v)| format!("--{k}={v}"))
    .collect()
}

/// The agent's flags: dial `host:port` (the server, verified against the cluster CA the
/// service-account volume carries), authenticate with the projected token at `token_path`.
pub fn agent(host: &str, port: u16, ca_cert: &str, token_path: &str) -> Vec<String> {
    [
        ("proxy-server-host", host.to_owned()),
        ("proxy-server-port", port.to_string()),
        ("ca-cert", ca_cert.to_owned()),
        ("service-account-token-path", token_path.to_owned()),
        ("admin-server-port", AGENT_ADMIN_PORT.to_string()),
        ("health-server-port", AGENT_HEALTH_PORT.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| format!("--{k}={v}"))
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_apiserver_reaches_the_cluster_through_the_servers_socket() {
        let e = egress_selector("/run/konnectivity/konnectivity-server.socket");
        let sel = &e["egressSelections"][0];
        assert_eq!(sel["name"], "cluster");
        assert_eq!(sel["connection"]["proxyProtocol"], "GRPC");
        assert_eq!(
            sel["connection"]["transport"]["uds"]["udsName"],
            "/run/konnectivity/konnectivity-server.socket"
        );
        let layout = Layout::pod();
        let flags = server(&layout, POD_PORTS, "0.0.0.0", 2);
        for want in [
            "--uds-name=/run/konnectivity/konnectivity-server.socket",
            "--server-port=0",
            "--agent-port=8132",
            "--admin-bind-address=127.0.0.1",
            "--authentication-audience=system:konnectivity-server",
            "--agent-service-account=konnectivity-agent",
            "--kubeconfig=/etc/kubernetes/kubeconfig/controller-manager.conf",
            "--cluster-cert=/etc/kubernetes/pki/apiserver.crt",
            "--server-count=2",
        ] {
            assert!(flags.contains(&want.to_owned()), "{want} not in {flags:?}");
        }
    }
}

#[cfg(test)]
mod version {
    /// The release pods run is the one built for tests and images (`tools/upstream/PROGRAMS`).
    #[test]
    fn the_imaged_release_is_the_built_one() {
        let programs = include_str!("../../../tools/upstream/PROGRAMS");
        for name in ["konnectivity-server", "konnectivity-agent"] {
            let line = programs
                .lines()
                .find(|l| l.split_whitespace().next() == Some(name))
                .unwrap_or_else(|| panic!("{name} is not in tools/upstream/PROGRAMS"));
            assert_eq!(
                line.split_whitespace().nth(2),
                Some(super::VERSION),
                "{line}"
            );
        }
    }
}
