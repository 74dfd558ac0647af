//! The real Kubernetes programs the tests run: kube-apiserver, kube-controller-manager,
//! kube-scheduler, kubeadm and kubectl at the versions in `tools/k8s-build/VERSIONS`, provided by
//! `scripts/k8s-binaries.sh` (reused from the machine's cache, downloaded and checksum-verified,
//! or built from the `k8s.io/kubernetes` Go module), and a small `kubectl` driver.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use crate::workspace;

/// The versions tests run, oldest first (`tools/k8s-build/VERSIONS`).
pub fn versions() -> Vec<String> {
    include_str!("../../tools/k8s-build/VERSIONS")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect()
}

/// The newest version tests run.
pub fn newest() -> String {
    versions()
        .pop()
        .expect("tools/k8s-build/VERSIONS names a version")
}

/// The oldest version tests run (the upgrade test starts there).
pub fn oldest() -> String {
    versions()
        .into_iter()
        .next()
        .expect("tools/k8s-build/VERSIONS names a version")
}

/// The `--k8s-bin-dir` holding `v<version>/` for every version tests run; provided once per test
/// binary (the script locks per version, so parallel test binaries wait for one build).
pub fn bin_dir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let mut dir = None;
        for v in versions() {
            let out = Command::new(workspace().join("scripts/k8s-binaries.sh"))
                .arg(&v)
                .output()
                .expect("running scripts/k8s-binaries.sh");
            assert!(
                out.status.success(),
                "the Kubernetes v{v} programs are not available:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
            dir = Some(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()));
        }
        dir.expect("at least one version")
    })
    .clone()
}

/// A program of `version`, e.g. `program("1.37.2", "kubeadm")`.
pub fn program(version: &str, name: &str) -> PathBuf {
    bin_dir().join(format!("v{version}")).join(name)
}

/// The outcome of one kubectl or kubeadm run.
#[derive(Debug)]
pub struct Run {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    fn of(out: std::process::Output) -> Self {
        Self {
            ok: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

/// kubectl (of the newest version) against one cluster.
pub struct Kubectl {
    pub kubeconfig: PathBuf,
}

impl Kubectl {
    /// Writes `kubeconfig` (mode 0600) to `path` and drives the cluster it names.
    pub fn new(path: &Path, kubeconfig: &str) -> Self {
        crate::write_private(path, kubeconfig);
        Self {
            kubeconfig: path.to_owned(),
        }
    }

    /// Runs `kubectl ARGS` with `stdin`.
    pub fn run_with(&self, args: &[&str], stdin: Option<&str>) -> Run {
        use std::io::Write;
        let mut child = Command::new(program(&newest(), "kubectl"))
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--request-timeout=20s")
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("kubectl");
        let mut input = child.stdin.take().expect("stdin");
        if let Some(s) = stdin {
            input.write_all(s.as_bytes()).expect("kubectl stdin");
        }
        drop(input);
        Run::of(child.wait_with_output().expect("kubectl"))
    }

    pub fn run(&self, args: &[&str]) -> Run {
        self.run_with(args, None)
    }

    /// Runs `kubectl ARGS` and fails the test with kubectl's output unless it succeeds.
    pub fn must(&self, args: &[&str]) -> String {
        let r = self.run(args);
        assert!(r.ok, "kubectl {args:?} failed:\n{}{}", r.stdout, r.stderr);
        r.stdout
    }

    /// Runs `kubectl ARGS` with `stdin` and fails the test unless it succeeds.
    pub fn must_with(&self, args: &[&str], stdin: &str) -> String {
        let r = self.run_with(args, Some(stdin));
        assert!(r.ok, "kubectl {args:?} failed:\n{}{}", r.stdout, r.stderr);
        r.stdout
    }

    /// `kubectl apply -f -` of `manifest`.
    pub fn apply(&self, manifest: &str) -> String {
        let r = self.run_with(&["apply", "-f", "-"], Some(manifest));
        assert!(r.ok, "kubectl apply failed:\n{}{}", r.stdout, r.stderr);
        r.stdout
    }

    /// `kubectl get ARGS -o json`.
    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut a = vec!["get"];
        a.extend_from_slice(args);
        a.extend_from_slice(&["-o", "json"]);
        serde_json::from_str(&self.must(&a)).expect("kubectl json")
    }

    /// Waits until `kubectl ARGS` succeeds, up to `secs`; returns its output.
    pub fn eventually(&self, args: &[&str], secs: u64) -> String {
        let start = std::time::Instant::now();
        loop {
            let r = self.run(args);
            if r.ok {
                return r.stdout;
            }
            assert!(
                start.elapsed().as_secs() < secs,
                "kubectl {args:?} did not succeed within {secs}s:\n{}{}",
                r.stdout,
                r.stderr
            );
            std::thread::sleep(std::time::Duration::from_millis(500));
        }
    }
}

/// Whether pod `p` (as `kubectl get -o json` gives it) has its Ready condition true.
pub fn pod_ready(p: &serde_json::Value) -> bool {
    p["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True")
}
