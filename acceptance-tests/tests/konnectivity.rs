//! Konnectivity on the real programs: a real control plane (process runtime) with the real
//! konnectivity server beside it, and the real konnectivity agent inside a network namespace the
//! test creates. Inside it, at an address the host has no route to, a kubelet-like HTTPS
//! endpoint answers (openssl's server, with files as the kubelet's paths: no real kubelet can
//! run without its node). The apiserver reaches it only through the tunnel: `kubectl get --raw
//! /api/v1/nodes/<node>/proxy/...` and `kubectl logs` work while the agent runs, and fail without
//! it; turning the tunnel on and off happens in place.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use acceptance_tests::k8s::{self, Kubectl};
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

    fn spawn(&self, program: &Path, args: &[String], dir: &Path, log: &Path) -> Child {
        let log = std::fs::File::create(log).unwrap();
        Command::new("ip")
            .args(["netns", "exec", &self.name])
            .arg(program)
            .args(args)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("starting a program in the namespace")
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

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn go_tool(name: &str) -> PathBuf {
    let out = Command::new(workspace().join("scripts/go-tool.sh"))
        .arg(name)
        .output()
        .expect("scripts/go-tool.sh");
    assert!(
        out.status.success(),
        "{name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

/// The kubelet-like endpoint's files: `/healthz` and the container log `kubectl logs` asks for.
fn kubelet_files(dir: &Path) {
    std::fs::create_dir_all(dir.join("containerLogs/default/p")).unwrap();
    // kubectl's --request-timeout reaches the kubelet as a query, which openssl's server takes
    // as part of the file name.
    for name in ["healthz", "healthz?timeout=10s"] {
        std::fs::write(dir.join(name), "kubelet inside the namespace\n").unwrap();
    }
    std::fs::write(
        dir.join("containerLogs/default/p/c"),
        "a line the node logged\n",
    )
    .unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let mut p = rcgen::CertificateParams::new(vec!["n1".to_owned()]).unwrap();
    p.subject_alt_names
        .push(rcgen::SanType::IpAddress(NODE_IP.parse().unwrap()));
    let cert = p.self_signed(&key).unwrap();
    std::fs::write(dir.join("kubelet.crt"), cert.pem()).unwrap();
    std::fs::write(dir.join("kubelet.key"), key.serialize_pem()).unwrap();
}

/// `kubectl get --raw` of the node's `/healthz` through the apiserver, with a short timeout.
fn node_healthz(k: &Kubectl) -> Result<String, String> {
    let r = k.run(&[
        "get",
        "--raw",
        "/api/v1/nodes/n1/proxy/healthz",
        "--request-timeout=10s",
    ]);
    if r.ok {
        Ok(r.stdout)
    } else {
        Err(format!("{}{}", r.stdout, r.stderr))
    }
}

fn until<T>(what: &str, secs: u64, mut f: impl FnMut() -> Result<T, String>) -> T {
    let start = Instant::now();
    loop {
        match f() {
            Ok(v) => return v,
            Err(e) => assert!(
                start.elapsed() < Duration::from_secs(secs),
                "{what} within {secs}s: {e}"
            ),
        }
        std::thread::sleep(Duration::from_secs(1));
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
    kubelet_files(&files);
    let openssl = PathBuf::from("openssl");
    let _kubelet = Killed(
        ns.spawn(
            &openssl,
            &[
                "s_server",
                "-accept",
                &format!("{NODE_IP}:10250"),
                "-cert",
                "kubelet.crt",
                "-key",
                "kubelet.key",
                "-WWW",
                "-quiet",
            ]
            .map(String::from),
            &files,
            &root.path().join("kubelet.log"),
        ),
    );
    k.must_with(
        &["apply", "-f", "-"],
        r#"{"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}}"#,
    );
    k.must(&[
        "patch",
        "node",
        "n1",
        "--subresource=status",
        "--type=merge",
        "-p",
        &format!(
            r#"{{"status":{{"addresses":[{{"type":"InternalIP","address":"{NODE_IP}"}}],"daemonEndpoints":{{"kubeletEndpoint":{{"Port":10250}}}}}}}}"#
        ),
    ]);
    // The controller-manager creates the namespace's default ServiceAccount, which pods need.
    k.eventually(&["get", "serviceaccount", "default"], 60);
    k.must_with(
        &["apply", "-f", "-"],
        r#"{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "default"},
            "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10.2"}]}}"#,
    );
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
    let ds_json = k.json(&["daemonset", "-n", "kube-system", "konnectivity-agent"]);
    let args = ds_json["spec"]["template"]["spec"]["containers"][0]["args"].to_string();
    assert!(
        args.contains(&format!("--proxy-server-host={HOST_IP}")),
        "{args}"
    );
    let port = args
        .split("--proxy-server-port=")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("the agent's server port")
        .to_owned();

    // The agent, inside the namespace, with a token as its DaemonSet's projected volume has it.
    let token = k.must(&[
        "create",
        "token",
        "konnectivity-agent",
        "-n",
        "kube-system",
        "--audience=system:konnectivity-server",
    ]);
    std::fs::write(root.path().join("agent.token"), token.trim()).unwrap();
    std::fs::write(
        root.path().join("ca.crt"),
        t["cluster_ca_certificate"].as_str().unwrap(),
    )
    .unwrap();
    let agent_args = |r: &Path| {
        vec![
            format!("--proxy-server-host={HOST_IP}"),
            format!("--proxy-server-port={port}"),
            format!("--ca-cert={}", r.join("ca.crt").display()),
            format!(
                "--service-account-token-path={}",
                r.join("agent.token").display()
            ),
            format!("--agent-identifiers=ipv4={NODE_IP}"),
            "--admin-server-port=18133".into(),
            "--health-server-port=18134".into(),
        ]
    };
    let agent = Killed(ns.spawn(
        &agent_bin,
        &agent_args(root.path()),
        root.path(),
        &root.path().join("agent.log"),
    ));
    let agent_log = root.path().join("agent.log");
    let body = until("the node's /healthz through the tunnel", 90, || {
        node_healthz(&k).map_err(|e| {
            format!(
                "{e}\nagent log:\n{}",
                std::fs::read_to_string(&agent_log).unwrap_or_default()
            )
        })
    });
    assert!(body.contains("kubelet inside the namespace"), "{body}");
    let logs = k.must(&["logs", "p", "-c", "c"]);
    assert!(logs.contains("a line the node logged"), "{logs}");

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
