//! Konnectivity on the real programs: a real control plane (process runtime) with the real
//! konnectivity server beside it, and the real konnectivity agent inside a network namespace the
//! test creates. Inside it, at an address the host has no route to, a kubelet-like HTTPS
//! endpoint answers (openssl's server, with files as the kubelet's paths: no real kubelet can
//! run without its node). The apiserver reaches it only through the tunnel: `kubectl get --raw
//! /api/v1/nodes/<node>/proxy/...` and `kubectl logs` work while the agent runs, and fail without
//! it; turning the tunnel on and off happens in place.

use std::path::{Path, PathBuf};
use std::process::Command;

use acceptance_tests::k8s::{self, Kubectl};
use acceptance_tests::tunnel::*;
use acceptance_tests::*;

/// The host's end of the link into the namespace, where agents dial the server.
const HOST_IP: &str = "10.200.77.1";
const NS_IP: &str = "10.200.77.2";
/// The node's address: only inside the namespace (the host has no route to it).
const NODE_IP: &str = "10.201.77.5";

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("ip");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A network namespace linked to the host by a veth pair; removed on drop.
struct Netns {
    name: String,
    host_if: String,
}

impl Netns {
    fn create() -> Self {
        let id = std::process::id() % 10_000;
        let (name, host_if, ns_if) = (format!("knp{id}"), format!("knp{id}h"), format!("knp{id}n"));
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        let _ = Command::new("ip").args(["link", "del", &host_if]).output();
        ip(&["netns", "add", &name]);
        let ns = Self {
            name: name.clone(),
            host_if: host_if.clone(),
        };
        ip(&[
            "link", "add", &host_if, "type", "veth", "peer", "name", &ns_if,
        ]);
        ip(&["link", "set", &ns_if, "netns", &name]);
        ip(&["addr", "add", &format!("{HOST_IP}/30"), "dev", &host_if]);
        ip(&["link", "set", &host_if, "up"]);
        for args in [
            vec!["addr", "add", &format!("{NS_IP}/30"), "dev", &ns_if],
            vec!["link", "set", &ns_if, "up"],
            vec!["link", "set", "lo", "up"],
            vec!["addr", "add", &format!("{NODE_IP}/32"), "dev", "lo"],
        ] {
            let mut all = vec!["netns", "exec", &name, "ip"];
            all.extend(args.iter().copied());
            ip(&all);
        }
        ns
    }

    fn spawn(&self, program: &Path, args: &[String], dir: &Path, log: &Path) -> Killed {
        spawn(
            &["ip", "netns", "exec", &self.name],
            program,
            args,
            dir,
            log,
        )
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "pids", &self.name])
            .output()
            .map(|o| {
                for pid in String::from_utf8_lossy(&o.stdout).split_whitespace() {
                    let _ = Command::new("kill").args(["-9", pid]).status();
                }
            });
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_if])
            .output();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_apiserver_reaches_a_node_it_cannot_dial_through_the_konnectivity_tunnel() {
    let server_bin = go_tool("konnectivity-server");
    let agent_bin = go_tool("konnectivity-agent");
    let ns = Netns::create();
    let root = tempfile::tempdir().unwrap();
    let (h, tenants_dir, _) = Harness::with_process_runtime_args(
        root.path(),
        &k8s::bin_dir(),
        0,
        vec![
            format!("--konnectivity-server-bin={}", server_bin.display()),
            // Where workers (here: the namespace) reach the control plane.
            format!("--advertise-address={HOST_IP}"),
        ],
    )
    .await;
    let _reaper = Reaper(tenants_dir.clone());
    let shard = h.etcd("shard", EtcdSecurity::default()).await;
    let ds = DatastoreHcl::new("a", "shard", &shard.endpoint);
    let version = k8s::newest();
    let config = |on: bool| {
        format!(
            r#"{PROVIDER_HCL}
{}
resource "kamaji_tenant_cluster" "t" {{
  name               = "tunnel"
  kubernetes_version = "{version}"
  datastore          = kamaji_datastore.a.name
  network {{
    konnectivity = {on}
  }}
}}
"#,
            ds.render()
        )
    };
    let w = h.workdir("konnectivity");
    w.write(&config(false));
    w.must_apply();
    let t = w.resource("kamaji_tenant_cluster.t")["values"].clone();
    let k = Kubectl::new(
        &w.dir.join("admin.kubeconfig"),
        t["admin_kubeconfig"].as_str().unwrap(),
    );

    // A node whose kubelet listens inside the namespace only.
    let files = root.path().join("kubelet");
    kubelet_files(&files, NODE_IP);
    let _kubelet = ns.spawn(
        &PathBuf::from("openssl"),
        &kubelet_args(&format!("{NODE_IP}:10250")),
        &files,
        &root.path().join("kubelet.log"),
    );
    register_node(&k, NODE_IP, 10250);
    // Without the tunnel the apiserver cannot reach it.
    let direct = node_healthz(&k);
    assert!(
        direct.is_err(),
        "the node was reachable without a tunnel: {direct:?}"
    );

    // The tunnel, in place: the server runs beside the apiserver, the agent add-on is installed.
    w.write(&config(true));
    w.must_apply();
    let t = w.resource("kamaji_tenant_cluster.t")["values"].clone();
    assert_eq!(t["network"]["konnectivity"], true, "{:#}", t["network"]);
    assert!(
        tenants_dir.join("tunnel/konnectivity-server.pid").exists(),
        "no konnectivity server runs"
    );
    let (host, port) = agent_daemonset_target(&k);
    assert_eq!(host, HOST_IP);

    // The agent, inside the namespace, with a token as its DaemonSet's projected volume has it.
    let args = agent_args(
        &k,
        t["cluster_ca_certificate"].as_str().unwrap(),
        root.path(),
        &host,
        &port,
        NODE_IP,
    );
    let agent = ns.spawn(
        &agent_bin,
        &args,
        root.path(),
        &root.path().join("agent.log"),
    );
    let agent_log = root.path().join("agent.log");
    let body = until("the node's /healthz through the tunnel", 90, || {
        node_healthz(&k).map_err(|e| {
            format!(
                "{e}\nagent log:\n{}",
                std::fs::read_to_string(&agent_log).unwrap_or_default()
            )
        })
    });
    assert!(body.contains(HEALTHZ), "{body}");
    let logs = k.must(&["logs", "p", "-c", "c"]);
    assert!(logs.contains(LOG_LINE), "{logs}");

    // The agent stopped: the same requests fail.
    drop(agent);
    until(
        "a refusal once the agent is gone",
        60,
        || match node_healthz(&k) {
            Ok(b) => Err(format!("still answered: {b}")),
            Err(_) => Ok(()),
        },
    );

    // Off, in place: the server stops, the add-on is removed.
    w.write(&config(false));
    w.must_apply();
    assert!(
        !tenants_dir.join("tunnel/konnectivity-server.pid").exists(),
        "the konnectivity server is still recorded"
    );
    until("the agent add-on removed", 60, || {
        let r = k.run(&[
            "get",
            "daemonset",
            "-n",
            "kube-system",
            "konnectivity-agent",
        ]);
        if r.ok {
            Err("still there".into())
        } else {
            Ok(())
        }
    });
    assert_eq!(
        w.plan_code().code,
        0,
        "the plan after turning it off is not empty"
    );
}
