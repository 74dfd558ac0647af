//! kamajid installed as an operator installs it: `helm install` of `daemon/deploy/chart/kamajid`
//! (helm built from its Go module by `scripts/go-tool.sh`) into an admin cluster whose node
//! runs the image `scripts/images.sh` built, reached through its NodePort on the host's address.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use base64::Engine;
use kamaji_core::controlplane::exposure::KAMAJID_LABEL;

use crate::admin_cluster::AdminCluster;
use crate::k8s::Kubectl;
use crate::{bin_dir, workspace, write_cli_config, Workdir};

/// The namespace the tests and the demo install kamajid into.
pub const NAMESPACE: &str = "kamaji-system";
/// The release name: the chart names its objects `kamajid`, `kamajid-tls`, ...
pub const RELEASE: &str = "kamajid";

/// helm, built once per machine.
pub fn helm() -> PathBuf {
    static HELM: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    HELM.get_or_init(|| {
        let out = Command::new(workspace().join("scripts/go-tool.sh"))
            .arg("helm")
            .output()
            .expect("running scripts/go-tool.sh helm");
        assert!(
            out.status.success(),
            "helm is not available:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
    })
    .clone()
}

pub fn chart_dir() -> PathBuf {
    workspace().join("daemon/deploy/chart/kamajid")
}

/// kamajid, installed by the chart and reachable from this host.
pub struct Installed {
    /// `https://<host address>:<node port>`
    pub endpoint: String,
    pub token: String,
    /// The CA of kamajid's serving certificate (the chart's, or the one given).
    pub ca_pem: String,
    kubectl: Kubectl,
}

impl Installed {
    /// `helm upgrade --install` with `values` (`key=value` for `--set`), waiting for the rollout;
    /// then reads the token and CA from the Secrets the release uses.
    pub fn install(admin: &AdminCluster, node_port: u16, values: &[String]) -> Self {
        let kubectl = admin.kubectl();
        let host = crate::node::host_ip();
        let mut args: Vec<String> = vec![
            "upgrade".into(),
            "--install".into(),
            RELEASE.into(),
            chart_dir().display().to_string(),
            "--namespace".into(),
            NAMESPACE.into(),
            "--create-namespace".into(),
            "--wait".into(),
            "--timeout".into(),
            "5m".into(),
            "--set".into(),
            "service.type=NodePort".into(),
            "--set".into(),
            format!("service.nodePort={node_port}"),
            "--set".into(),
            format!("tls.extraSANs={{{host}}}"),
        ];
        for v in values {
            args.push("--set".into());
            args.push(v.clone());
        }
        let out = helm_run(&kubectl, &args);
        assert!(
            out.0,
            "helm install failed:\n{}\n{}",
            out.1,
            describe(&kubectl)
        );
        // As the chart's notes say: tenants' NetworkPolicies admit kamajid by its namespace's label.
        kubectl.must(&[
            "label",
            "namespace",
            NAMESPACE,
            &format!("{}={}", KAMAJID_LABEL.0, KAMAJID_LABEL.1),
            "--overwrite",
        ]);
        let secret = |name: &str, key: &str| -> String {
            let s = kubectl.json(&["secret", name, "-n", NAMESPACE]);
            let b64 = s["data"][key]
                .as_str()
                .unwrap_or_else(|| panic!("secret {name} has no {key}"));
            String::from_utf8(
                base64::engine::general_purpose::STANDARD
                    .decode(b64)
                    .expect("base64"),
            )
            .expect("utf-8")
        };
        let tls = kubectl
            .json(&["deployment", RELEASE, "-n", NAMESPACE])
            .pointer("/spec/template/spec/volumes")
            .and_then(|v| v.as_array().cloned())
            .unwrap_or_default()
            .iter()
            .find(|v| v["name"] == "tls")
            .and_then(|v| v["secret"]["secretName"].as_str().map(str::to_owned))
            .expect("the deployment mounts a tls secret");
        let tokens = format!("{RELEASE}-tokens");
        let token = secret(&tokens, "tokens")
            .lines()
            .next()
            .unwrap_or_default()
            .trim()
            .to_owned();
        Self {
            endpoint: format!("https://{host}:{node_port}"),
            token,
            ca_pem: secret(&tls, "ca.crt"),
            kubectl,
        }
    }

    /// A Terraform root module in `dir` whose provider talks to this kamajid.
    pub fn workdir(&self, dir: PathBuf) -> Workdir {
        std::fs::create_dir_all(&dir).expect("workdir");
        let ca = dir.join("kamajid-ca.crt");
        std::fs::write(&ca, &self.ca_pem).expect("kamajid CA");
        let cli_config = write_cli_config(&dir);
        let _ = bin_dir();
        Workdir {
            dir,
            env: vec![
                (
                    "TF_CLI_CONFIG_FILE".into(),
                    cli_config.display().to_string(),
                ),
                ("KAMAJI_ENDPOINT".into(), self.endpoint.clone()),
                ("KAMAJI_TOKEN".into(), self.token.clone()),
                (
                    "KAMAJI_CA_CERTIFICATE_FILE".into(),
                    ca.display().to_string(),
                ),
                ("TF_IN_AUTOMATION".into(), "1".into()),
                ("CHECKPOINT_DISABLE".into(), "1".into()),
            ],
        }
    }

    /// kamajid's pods, as `name` (Running and Ready or not).
    pub fn pods(&self) -> Vec<(String, bool)> {
        let list = self.kubectl.json(&[
            "pods",
            "-n",
            NAMESPACE,
            "-l",
            "app.kubernetes.io/name=kamajid",
        ]);
        list["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
            .map(|p| {
                let ready = crate::k8s::pod_ready(p);
                (
                    p["metadata"]["name"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                    ready,
                )
            })
            .collect()
    }

    /// Waits until `n` kamajid pods are Ready.
    pub async fn await_ready_pods(&self, n: usize, secs: u64) {
        let start = Instant::now();
        loop {
            let pods = self.pods();
            if pods.iter().filter(|(_, r)| *r).count() >= n {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(secs),
                "{n} kamajid pods not Ready within {secs}s: {pods:?}\n{}",
                describe(&self.kubectl)
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

/// Runs helm with the admin cluster's kubeconfig: success and the whole output.
pub fn helm_run(kubectl: &Kubectl, args: &[String]) -> (bool, String) {
    let out = Command::new(helm())
        .args(args)
        .env("KUBECONFIG", &kubectl.kubeconfig)
        .env(
            "HELM_CACHE_HOME",
            std::env::temp_dir().join("kamaji-helm/cache"),
        )
        .env(
            "HELM_CONFIG_HOME",
            std::env::temp_dir().join("kamaji-helm/config"),
        )
        .env(
            "HELM_DATA_HOME",
            std::env::temp_dir().join("kamaji-helm/data"),
        )
        .output()
        .expect("running helm");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// What the release's pods are doing, for a failure message.
pub fn describe(kubectl: &Kubectl) -> String {
    let pods = kubectl.run(&["get", "pods", "-n", NAMESPACE, "-o", "wide"]);
    let events = kubectl.run(&["get", "events", "-n", NAMESPACE, "--sort-by=.lastTimestamp"]);
    let logs = kubectl.run(&[
        "logs",
        "-n",
        NAMESPACE,
        "-l",
        "app.kubernetes.io/name=kamajid",
        "--tail=30",
        "--all-containers",
    ]);
    format!(
        "pods:\n{}{}\nevents:\n{}\nlogs:\n{}{}",
        pods.stdout, pods.stderr, events.stdout, logs.stdout, logs.stderr
    )
}
