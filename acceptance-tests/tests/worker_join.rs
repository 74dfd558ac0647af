//! Worker join against the real programs: a tenant run by the process runtime on the real
//! kube-apiserver and kube-controller-manager, a `kamaji_bootstrap_token` through terraform (or
//! tofu), and then what a joining worker does, done by the real tools:
//!
//! - the controller-manager's bootstrap signer signs `cluster-info` for the token;
//! - `kubeadm join … --dry-run` (the `join_command` terraform returned, verbatim, plus
//!   `--dry-run`) performs token discovery: it fetches `cluster-info`, checks its JWS signature
//!   with the token and the CA against `--discovery-token-ca-cert-hash`, then reads
//!   `kubeadm-config`, `kubelet-config` and its Node as the bootstrap token's user; a wrong hash
//!   is refused (dry run too), and so is an expired token (`kubeadm join --config`, not a dry
//!   run: it fails in discovery, before it writes anything);
//! - the kubelet's TLS bootstrap, as its client makes it: a CSR for `system:node:<name>` to the
//!   `kubernetes.io/kube-apiserver-client-kubelet` signer, sent with the bootstrap token, is
//!   approved by the real csrapproving controller and signed by the real csrsigning controller;
//!   with that certificate the node registers and updates its own Node, reads what a kubelet
//!   reads, and cannot touch another node (Node authorizer, NodeRestriction).

use std::path::Path;
use std::time::{Duration, Instant};

use acceptance_tests::k8s::{self, Kubectl};
use acceptance_tests::*;
use base64::Engine;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

fn config(ds: &str, version: &str) -> String {
    format!(
        r#"{PROVIDER_HCL}
{ds}
resource "kamaji_tenant_cluster" "acme" {{
  name               = "acme"
  kubernetes_version = "{version}"
  datastore          = kamaji_datastore.a.name
}}

resource "kamaji_bootstrap_token" "workers" {{
  tenant_cluster = kamaji_tenant_cluster.acme.name
  ttl            = "2h"
  description    = "workers of acme"
}}

resource "kamaji_bootstrap_token" "short" {{
  tenant_cluster = kamaji_tenant_cluster.acme.name
  ttl            = "1m"
}}
"#
    )
}

/// A kubeconfig for `server` with the tenant CA and either a bearer token or a client cert.
fn kubeconfig(server: &str, ca_pem: &str, user: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: t\n  cluster:\n    server: {server}\n    certificate-authority-data: {}\ncontexts:\n- name: t\n  context:\n    cluster: t\n    user: u\ncurrent-context: t\nusers:\n- name: u\n  user:\n{user}",
        B64.encode(ca_pem)
    )
}

/// `kubeadm` of the tenant's version, with `args`; its whole output. A dry run writes under
/// `dir`, not under /etc/kubernetes.
fn kubeadm(version: &str, args: &[&str], dir: &Path) -> (bool, String) {
    let out = std::process::Command::new(k8s::program(version, "kubeadm"))
        .args(args)
        .env("KUBEADM_JOIN_DRYRUN_DIR", dir)
        .current_dir(dir)
        .output()
        .expect("kubeadm");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

async fn eventually(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(
            start.elapsed() < Duration::from_secs(secs),
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn kubeadm_discovers_with_the_join_command_and_a_node_bootstraps_its_certificate() {
    let root = tempfile::tempdir().unwrap();
    let (h, tenants_dir, _) = Harness::with_process_runtime(root.path(), &k8s::bin_dir(), 0).await;
    let _reaper = Reaper(tenants_dir);
    let shard = h.etcd("shard", EtcdSecurity::default()).await;
    let version = k8s::newest();
    let w = h.workdir("join");
    w.write(&config(
        &DatastoreHcl::new("a", "shard", &shard.endpoint).render(),
        &version,
    ));
    w.must_apply();
    let acme = w.resource("kamaji_tenant_cluster.acme")["values"].clone();
    let token = w.resource("kamaji_bootstrap_token.workers")["values"].clone();
    let short = w.resource("kamaji_bootstrap_token.short")["values"].clone();
    let endpoint = acme["endpoint"].as_str().unwrap().to_owned();
    let ca = acme["cluster_ca_certificate"].as_str().unwrap().to_owned();
    let admin = Kubectl::new(
        &w.dir.join("admin.kubeconfig"),
        acme["admin_kubeconfig"].as_str().unwrap(),
    );
    let id = token["token_id"].as_str().unwrap().to_owned();
    let full_token = token["token"].as_str().unwrap().to_owned();

    // The real bootstrap signer signs cluster-info for the token (a detached JWS per token id).
    eventually("cluster-info to be signed for the token", 60, || {
        let ci = admin.json(&["configmap", "cluster-info", "-n", "kube-public"]);
        ci["data"][format!("jws-kubeconfig-{id}")].is_string()
    })
    .await;

    // kubeadm runs the join command terraform returned, as a worker's cloud-init would, with
    // --dry-run: discovery and every read of the join are real, nothing is written to the host.
    let join = token["join_command"].as_str().unwrap().to_owned();
    assert!(join.starts_with("kubeadm join "), "{join}");
    let mut args: Vec<&str> = join.split_whitespace().skip(1).collect();
    let dry = [
        "--dry-run",
        "--ignore-preflight-errors=all",
        "--node-name=worker-1",
    ];
    args.extend(dry);
    let (ok, out) = kubeadm(&version, &args, &w.dir);
    assert!(ok, "kubeadm join --dry-run failed:\n{out}");
    assert!(
        out.contains("Would start the kubelet") || out.contains("kubelet-start"),
        "{out}"
    );

    // A hash that is not the tenant CA's is refused: the worker would not trust this cluster.
    let wrong = format!("sha256:{}", "0".repeat(64));
    let server = endpoint.trim_start_matches("https://");
    let mut bad = vec![
        "join",
        server,
        "--token",
        &full_token,
        "--discovery-token-ca-cert-hash",
        &wrong,
    ];
    bad.extend(dry);
    let (ok, out) = kubeadm(&version, &bad, &w.dir);
    assert!(!ok, "a wrong CA hash was accepted:\n{out}");
    assert!(out.contains("none of the public keys"), "{out}");

    // The 1m token: once expired the real token cleaner removes it, the signer drops its
    // signature, and kubeadm refuses it.
    let short_id = short["token_id"].as_str().unwrap().to_owned();
    let short_join = short["join_command"].as_str().unwrap().to_owned();
    eventually("the expired token's signature to go", 240, || {
        let ci = admin.json(&["configmap", "cluster-info", "-n", "kube-public"]);
        ci["data"][format!("jws-kubeconfig-{short_id}")].is_null()
    })
    .await;
    // Not a dry run here: a dry run swaps a token the cluster does not sign for a built-in
    // sample one and then fails on that. Discovery is the first thing `kubeadm join` does and it
    // fails there, before anything is written; its wait is cut from 5 minutes to 20 s.
    let (short_token, short_hash) = (
        short["token"].as_str().unwrap().to_owned(),
        short["ca_cert_hash"].as_str().unwrap().to_owned(),
    );
    assert!(short_join.contains(&short_hash), "{short_join}");
    let join_config = w.dir.join("join-expired.yaml");
    std::fs::write(
        &join_config,
        format!(
            "apiVersion: kubeadm.k8s.io/v1beta4\nkind: JoinConfiguration\ndiscovery:\n  bootstrapToken:\n    apiServerEndpoint: {server}\n    token: {short_token}\n    caCertHashes: [\"{short_hash}\"]\ntimeouts:\n  discovery: 20s\nnodeRegistration:\n  name: worker-9\n"
        ),
    )
    .unwrap();
    let (ok, out) = kubeadm(
        &version,
        &[
            "join",
            "--config",
            join_config.to_str().unwrap(),
            "--ignore-preflight-errors=all",
        ],
        &w.dir,
    );
    assert!(!ok, "an expired token was accepted:\n{out}");
    assert!(
        out.contains(&format!("could not find a JWS signature in the cluster-info ConfigMap for token ID \"{short_id}\"")),
        "{out}"
    );
    // Terraform sees it gone and plans a new one.
    let plan = planned_actions(&w.plan_json());
    assert_eq!(plan["kamaji_bootstrap_token.short"], ["create"], "{plan:?}");

    // The kubelet's TLS bootstrap: a key, a CSR for system:node:worker-1, sent with the token.
    let dir = w.dir.join("worker-1");
    std::fs::create_dir_all(&dir).unwrap();
    let key = openssl(
        &[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ],
        b"",
    );
    let key_path = dir.join("kubelet.key");
    write_private(&key_path, &String::from_utf8_lossy(&key));
    let csr = openssl(
        &[
            "req",
            "-new",
            "-key",
            key_path.to_str().unwrap(),
            "-subj",
            "/O=system:nodes/CN=system:node:worker-1",
        ],
        b"",
    );
    let bootstrap = Kubectl::new(
        &dir.join("bootstrap-kubelet.conf"),
        &kubeconfig(&endpoint, &ca, &format!("    token: {full_token}\n")),
    );
    let csr_name = "node-csr-worker-1";
    bootstrap.apply(&format!(
        r#"{{"apiVersion":"certificates.k8s.io/v1","kind":"CertificateSigningRequest",
"metadata":{{"name":"{csr_name}"}},
"spec":{{"request":"{}","signerName":"kubernetes.io/kube-apiserver-client-kubelet",
"usages":["digital signature","client auth"]}}}}"#,
        B64.encode(&csr)
    ));
    let mut issued = String::new();
    eventually("the CSR to be approved and signed", 60, || {
        let c = admin.json(&["csr", csr_name]);
        issued = c["status"]["certificate"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        !issued.is_empty()
    })
    .await;
    let c = admin.json(&["csr", csr_name]);
    let approved = &c["status"]["conditions"][0];
    assert_eq!(approved["type"], "Approved", "{c:#}");
    assert_eq!(approved["reason"], "AutoApproved", "{c:#}");
    let cert = B64.decode(&issued).unwrap();
    let subject = openssl(&["x509", "-noout", "-subject", "-issuer"], &cert);
    let subject = String::from_utf8_lossy(&subject);
    assert!(
        subject.contains("system:node:worker-1") && subject.contains("system:nodes"),
        "{subject}"
    );

    // The node, with its certificate, does what a kubelet does and nothing more.
    let node = Kubectl::new(
        &dir.join("kubelet.conf"),
        &kubeconfig(
            &endpoint,
            &ca,
            &format!(
                "    client-certificate-data: {}\n    client-key-data: {}\n",
                B64.encode(&cert),
                B64.encode(&key)
            ),
        ),
    );
    assert_eq!(
        node.must(&[
            "auth",
            "whoami",
            "-o",
            "jsonpath={.status.userInfo.username}"
        ]),
        "system:node:worker-1"
    );
    let node_obj = |name: &str| {
        format!(
            r#"{{"apiVersion":"v1","kind":"Node","metadata":{{"name":"{name}","labels":{{"kubernetes.io/hostname":"{name}"}}}}}}"#
        )
    };
    node.must_with(&["create", "-f", "-"], &node_obj("worker-1"));
    // Its status, as a kubelet sends it: a PATCH of nodes/status (kubectl would GET the
    // subresource first, which the Node authorizer does not grant).
    std::fs::write(dir.join("ca.crt"), &ca).unwrap();
    std::fs::write(dir.join("kubelet.crt"), &cert).unwrap();
    let patched = std::process::Command::new("curl")
        .args(["-sS", "--fail-with-body", "-X", "PATCH"])
        .arg("--cacert")
        .arg(dir.join("ca.crt"))
        .arg("--cert")
        .arg(dir.join("kubelet.crt"))
        .arg("--key")
        .arg(&key_path)
        .args(["-H", "Content-Type: application/merge-patch+json", "-d"])
        .arg(r#"{"status":{"conditions":[{"type":"Ready","status":"False","reason":"KubeletNotReady","message":"no container runtime","lastHeartbeatTime":"2026-01-01T00:00:00Z","lastTransitionTime":"2026-01-01T00:00:00Z"}]}}"#)
        .arg(format!("{endpoint}/api/v1/nodes/worker-1/status"))
        .output()
        .expect("curl");
    assert!(
        patched.status.success(),
        "{}{}",
        String::from_utf8_lossy(&patched.stdout),
        String::from_utf8_lossy(&patched.stderr)
    );
    node.must(&["get", "node", "worker-1"]);
    node.must(&["get", "configmap", "kubelet-config", "-n", "kube-system"]);
    node.must(&["get", "configmap", "kubeadm-config", "-n", "kube-system"]);
    // Another node is off limits: neither created nor changed by worker-1.
    let r = node.run_with(&["create", "-f", "-"], Some(&node_obj("worker-2")));
    assert!(
        !r.ok && r.stderr.contains("Forbidden"),
        "{}{}",
        r.stdout,
        r.stderr
    );
    admin.must_with(&["create", "-f", "-"], &node_obj("worker-2"));
    let r = node.run(&["label", "node", "worker-2", "pool=stolen"]);
    assert!(
        !r.ok && r.stderr.contains("Forbidden"),
        "{}{}",
        r.stdout,
        r.stderr
    );
    let r = node.run(&["delete", "node", "worker-2"]);
    assert!(
        !r.ok && r.stderr.contains("Forbidden"),
        "{}{}",
        r.stdout,
        r.stderr
    );
    let status = admin.json(&["node", "worker-1"]);
    assert_eq!(
        status["status"]["conditions"][0]["reason"],
        "KubeletNotReady"
    );
}

/// Host paths a kubelet uses whatever its `--root-dir`; removed after the test when it made them.
const KUBELET_HOST_PATHS: [&str; 3] = ["/var/lib/kubelet", "/var/log/pods", "/var/log/containers"];

/// Stops a process and, once gone, removes what the kubelet left on the host.
struct Stop(Vec<std::process::Child>, Vec<&'static str>);

impl Drop for Stop {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
        for p in &self.1 {
            let _ = std::fs::remove_dir_all(p);
        }
    }
}

/// A real kubelet (built from the same module) with Debian's containerd joins a tenant as far as
/// this machine allows: it TLS-bootstraps with a token terraform issued, its CSR is approved and
/// signed, it registers its Node and reports it; its pods cannot start (no image can be pulled
/// here), so the Node stays NotReady.
#[tokio::test(flavor = "multi_thread")]
async fn a_real_kubelet_bootstraps_and_registers_its_node() {
    assert_eq!(
        uid(),
        0,
        "a kubelet and containerd run as root; run the tests as root (CI does)"
    );
    let root = tempfile::tempdir().unwrap();
    let (h, tenants_dir, _) = Harness::with_process_runtime(root.path(), &k8s::bin_dir(), 1).await;
    let _reaper = Reaper(tenants_dir);
    let shard = h.etcd("shard", EtcdSecurity::default()).await;
    let version = k8s::newest();
    let w = h.workdir("kubelet");
    w.write(&config(
        &DatastoreHcl::new("a", "shard", &shard.endpoint).render(),
        &version,
    ));
    w.must_apply();
    let acme = w.resource("kamaji_tenant_cluster.acme")["values"].clone();
    let token = w.resource("kamaji_bootstrap_token.workers")["values"].clone();
    let endpoint = acme["endpoint"].as_str().unwrap().to_owned();
    let ca = acme["cluster_ca_certificate"].as_str().unwrap().to_owned();
    let admin = Kubectl::new(
        &w.dir.join("admin.kubeconfig"),
        acme["admin_kubeconfig"].as_str().unwrap(),
    );

    // containerd, private to this test: its root, state and socket under the test directory.
    let dir = root.path().join("node");
    std::fs::create_dir_all(dir.join("manifests")).unwrap();
    let made: Vec<&'static str> = KUBELET_HOST_PATHS
        .into_iter()
        .filter(|p| !Path::new(p).exists())
        .collect();
    let default = std::process::Command::new("containerd")
        .args(["config", "default"])
        .output()
        .expect("containerd (scripts/install-deps.sh installs it)");
    let sock = dir.join("containerd.sock");
    let ctd_config: String = String::from_utf8_lossy(&default.stdout)
        .lines()
        .map(|l| match l.trim_start() {
            t if t.starts_with("root = ") && !l.starts_with(' ') => {
                format!("root = {:?}", dir.join("containerd/root"))
            }
            t if t.starts_with("state = ") && !l.starts_with(' ') => {
                format!("state = {:?}", dir.join("containerd/state"))
            }
            t if t.starts_with("address = \"/run/containerd/containerd.sock\"") => {
                format!("  address = {sock:?}")
            }
            _ => l.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(dir.join("containerd.toml"), ctd_config).unwrap();
    let log = |name: &str| std::fs::File::create(dir.join(name)).unwrap();
    let containerd = std::process::Command::new("containerd")
        .arg("--config")
        .arg(dir.join("containerd.toml"))
        .stdout(log("containerd.log"))
        .stderr(log("containerd.err"))
        .spawn()
        .expect("containerd");
    let mut running = Stop(vec![containerd], made);
    eventually("containerd to listen", 30, || sock.exists()).await;

    // What `kubeadm join` would write for the kubelet: the bootstrap kubeconfig with the token,
    // and the kubelet configuration the cluster publishes, with this host's paths.
    std::fs::write(dir.join("ca.crt"), &ca).unwrap();
    write_private(
        &dir.join("bootstrap-kubelet.conf"),
        &kubeconfig(
            &endpoint,
            &ca,
            &format!("    token: {}\n", token["token"].as_str().unwrap()),
        ),
    );
    let published: serde_json::Value = serde_json::from_str(
        admin.json(&["configmap", "kubelet-config", "-n", "kube-system"])["data"]["kubelet"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(published["clusterDNS"][0], "10.96.0.10");
    let mut cfg = published.clone();
    cfg["authentication"]["x509"]["clientCAFile"] = dir.join("ca.crt").display().to_string().into();
    cfg["staticPodPath"] = dir.join("manifests").display().to_string().into();
    cfg["containerRuntimeEndpoint"] = format!("unix://{}", sock.display()).into();
    // This host: no systemd, cgroup v1 (which kubelets refuse unless told), swap maybe.
    for (k, v) in [
        ("cgroupDriver", serde_json::json!("cgroupfs")),
        ("failCgroupV1", serde_json::json!(false)),
        ("failSwapOn", serde_json::json!(false)),
        ("cgroupsPerQOS", serde_json::json!(false)),
        ("enforceNodeAllocatable", serde_json::json!([])),
        ("healthzPort", serde_json::json!(0)),
        ("readOnlyPort", serde_json::json!(0)),
        ("port", serde_json::json!(free_port())),
    ] {
        cfg[k] = v;
    }
    std::fs::write(dir.join("kubelet.json"), cfg.to_string()).unwrap();
    let kubelet = std::process::Command::new(k8s::program(&version, "kubelet"))
        .arg(format!(
            "--bootstrap-kubeconfig={}",
            dir.join("bootstrap-kubelet.conf").display()
        ))
        .arg(format!(
            "--kubeconfig={}",
            dir.join("kubelet.conf").display()
        ))
        .arg(format!("--config={}", dir.join("kubelet.json").display()))
        .arg(format!("--root-dir={}", dir.join("kubelet").display()))
        .arg(format!("--cert-dir={}", dir.join("pki").display()))
        .arg("--hostname-override=worker-real")
        .stdout(log("kubelet.out"))
        .stderr(log("kubelet.log"))
        .spawn()
        .expect("kubelet");
    running.0.push(kubelet);

    // TLS bootstrap: its CSR, made with the token, approved and signed by the real controllers.
    let id = token["token_id"].as_str().unwrap().to_owned();
    let mut csr = serde_json::Value::Null;
    eventually("the kubelet's CSR to be issued", 90, || {
        let all = admin.json(&["csr"]);
        csr = all["items"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["spec"]["username"] == format!("system:bootstrap:{id}"))
            .cloned()
            .unwrap_or_default();
        csr["status"]["certificate"].is_string()
    })
    .await;
    assert_eq!(
        csr["spec"]["signerName"],
        "kubernetes.io/kube-apiserver-client-kubelet"
    );
    assert_eq!(csr["status"]["conditions"][0]["type"], "Approved");
    let pem = std::fs::read(dir.join("pki/kubelet-client-current.pem")).unwrap();
    let subject =
        String::from_utf8_lossy(&openssl(&["x509", "-noout", "-subject"], &pem)).into_owned();
    assert!(subject.contains("system:node:worker-real"), "{subject}");

    // It registered its Node with its own credentials, and reports it.
    let mut node = serde_json::Value::Null;
    eventually(
        "the kubelet to register its Node and report its status",
        90,
        || {
            let r = admin.run(&["get", "node", "worker-real", "-o", "json"]);
            node = serde_json::from_str(&r.stdout).unwrap_or_default();
            node["status"]["nodeInfo"]["kubeletVersion"].is_string()
                && node["status"]["conditions"]
                    .as_array()
                    .is_some_and(|c| !c.is_empty())
        },
    )
    .await;
    assert_eq!(
        node["status"]["nodeInfo"]["kubeletVersion"],
        format!("v{version}")
    );
    assert!(
        node["status"]["nodeInfo"]["containerRuntimeVersion"]
            .as_str()
            .unwrap_or_default()
            .starts_with("containerd://"),
        "{node:#}"
    );
    let ready = node["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Ready")
        .cloned()
        .unwrap_or_default();
    // No CNI and no pullable image here: the node is registered but not Ready.
    assert_eq!(ready["status"], "False", "{node:#}");
    drop(running);
}

/// The user this test runs as (`/proc/self` belongs to it).
fn uid() -> u32 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self")
        .map(|m| m.uid())
        .unwrap_or(u32::MAX)
}
