//! What the Konnectivity tests share: the real server and agent (built from their Go module by
//! `scripts/go-tool.sh`), and a kubelet-like HTTPS endpoint (openssl's server answering with
//! files named as the kubelet's paths), reachable at an address only the agent can dial.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::k8s::Kubectl;
use crate::workspace;

/// A child process killed on drop.
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// An upstream program of `tools/upstream/PROGRAMS`, built once per machine.
pub fn go_tool(name: &str) -> PathBuf {
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

/// Text the kubelet-like endpoint answers `/healthz` with, and the log of container `c` of pod
/// `default/p`.
pub const HEALTHZ: &str = "kubelet behind the tunnel";
pub const LOG_LINE: &str = "a line the node logged";

/// Writes the kubelet-like endpoint's files into `dir`: `/healthz` and the container log
/// `kubectl logs p -c c` asks for, and a self-signed certificate for `ip`.
pub fn kubelet_files(dir: &Path, ip: &str) {
    std::fs::create_dir_all(dir.join("containerLogs/default/p")).unwrap();
    // kubectl's --request-timeout reaches the kubelet as a query, which openssl's server takes
    // as part of the file name.
    for name in ["healthz", "healthz?timeout=10s"] {
        std::fs::write(dir.join(name), format!("{HEALTHZ}\n")).unwrap();
    }
    std::fs::write(
        dir.join("containerLogs/default/p/c"),
        format!("{LOG_LINE}\n"),
    )
    .unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let mut p = rcgen::CertificateParams::new(vec!["n1".to_owned()]).unwrap();
    p.subject_alt_names
        .push(rcgen::SanType::IpAddress(ip.parse().unwrap()));
    let cert = p.self_signed(&key).unwrap();
    std::fs::write(dir.join("kubelet.crt"), cert.pem()).unwrap();
    std::fs::write(dir.join("kubelet.key"), key.serialize_pem()).unwrap();
}

/// The arguments of openssl's server as the kubelet-like endpoint at `addr` (`ip:port`),
/// serving the files [`kubelet_files`] wrote into its working directory.
pub fn kubelet_args(addr: &str) -> Vec<String> {
    [
        "s_server",
        "-accept",
        addr,
        "-cert",
        "kubelet.crt",
        "-key",
        "kubelet.key",
        "-WWW",
        "-quiet",
    ]
    .map(String::from)
    .to_vec()
}

/// Starts `program` with `args` in `dir`, its output to `log` (`prefix`, e.g. `ip netns exec
/// NAME`, runs it elsewhere).
pub fn spawn(prefix: &[&str], program: &Path, args: &[String], dir: &Path, log: &Path) -> Killed {
    let log = std::fs::File::create(log).unwrap();
    let mut cmd = match prefix.split_first() {
        Some((first, rest)) => {
            let mut c = Command::new(first);
            c.args(rest).arg(program);
            c
        }
        None => Command::new(program),
    };
    Killed(
        cmd.args(args)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("starting a program"),
    )
}

/// Node `n1` at `ip`, its kubelet on `port`, and pod `default/p` (container `c`) on it.
pub fn register_node(k: &Kubectl, ip: &str, port: u16) {
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
            r#"{{"status":{{"addresses":[{{"type":"InternalIP","address":"{ip}"}}],"daemonEndpoints":{{"kubeletEndpoint":{{"Port":{port}}}}}}}}}"#
        ),
    ]);
    // The controller-manager creates the namespace's default ServiceAccount, which pods need.
    k.eventually(&["get", "serviceaccount", "default"], 60);
    k.must_with(
        &["apply", "-f", "-"],
        r#"{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "default"},
            "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10.2"}]}}"#,
    );
}

/// `kubectl get --raw` of node n1's `/healthz` through its apiserver, with a short timeout.
pub fn node_healthz(k: &Kubectl) -> Result<String, String> {
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

/// The agent's token as its DaemonSet's projected volume has it, and the cluster CA, written
/// into `dir`; the arguments of an agent dialing `host:port` with them, for node `node_ip`.
pub fn agent_args(
    k: &Kubectl,
    ca: &str,
    dir: &Path,
    host: &str,
    port: &str,
    node_ip: &str,
) -> Vec<String> {
    let token = k.must(&[
        "create",
        "token",
        "konnectivity-agent",
        "-n",
        "kube-system",
        "--audience=system:konnectivity-server",
    ]);
    std::fs::write(dir.join("agent.token"), token.trim()).unwrap();
    std::fs::write(dir.join("ca.crt"), ca).unwrap();
    vec![
        format!("--proxy-server-host={host}"),
        format!("--proxy-server-port={port}"),
        format!("--ca-cert={}", dir.join("ca.crt").display()),
        format!(
            "--service-account-token-path={}",
            dir.join("agent.token").display()
        ),
        format!("--agent-identifiers=ipv4={node_ip}"),
        "--admin-server-port=18133".into(),
        "--health-server-port=18134".into(),
    ]
}

/// The server port the agent add-on of the cluster `k` talks to dials.
pub fn agent_daemonset_target(k: &Kubectl) -> (String, String) {
    let ds = k.json(&["daemonset", "-n", "kube-system", "konnectivity-agent"]);
    let args: Vec<String> = ds["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array()
        .expect("the agent's args")
        .iter()
        .filter_map(|a| a.as_str().map(str::to_owned))
        .collect();
    let flag = |name: &str| {
        args.iter()
            .find_map(|a| a.strip_prefix(&format!("--{name}=")).map(str::to_owned))
            .unwrap_or_else(|| panic!("no --{name} in {args:?}"))
    };
    (flag("proxy-server-host"), flag("proxy-server-port"))
}

/// Polls `f` every second until it gives a value, up to `secs`.
pub fn until<T>(what: &str, secs: u64, mut f: impl FnMut() -> Result<T, String>) -> T {
    let start = std::time::Instant::now();
    loop {
        match f() {
            Ok(v) => return v,
            Err(e) => assert!(
                start.elapsed() < std::time::Duration::from_secs(secs),
                "{what} within {secs}s: {e}"
            ),
        }
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
}
