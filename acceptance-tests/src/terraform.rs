//! Driving the real `terraform` (or `tofu`) CLI: [`Workdir`]s, their plans and state as JSON.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::*;

/// The CLI the suites drive: `terraform` on PATH, or OpenTofu when `KAMAJI_TF_CLI=tofu` (built
/// once per machine by `scripts/tofu.sh` at the version in `tools/tofu-build/VERSION`). Any other
/// value is the path of a CLI to use. `make test` runs the suites under both.
pub fn cli() -> PathBuf {
    static CLI: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    CLI.get_or_init(|| match std::env::var("KAMAJI_TF_CLI").as_deref() {
        Err(_) | Ok("") | Ok("terraform") => PathBuf::from("terraform"),
        Ok("tofu") => tofu(),
        Ok(path) => PathBuf::from(path),
    })
    .clone()
}

/// OpenTofu, built once per machine by `scripts/tofu.sh`.
pub fn tofu() -> PathBuf {
    let out = Command::new(workspace().join("scripts/tofu.sh"))
        .output()
        .expect("running scripts/tofu.sh");
    assert!(
        out.status.success(),
        "OpenTofu is not available:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

/// Whether the CLI printed a plan of changes (terraform and tofu word it differently).
pub fn planned_changes(out: &str) -> bool {
    out.contains("Terraform will perform") || out.contains("OpenTofu will perform")
}

/// The outcome of one terraform command.
#[derive(Debug)]
pub struct Tf {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Tf {
    pub fn ok(&self) -> bool {
        self.code == 0
    }
    pub fn output(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }
}

impl From<Output> for Tf {
    fn from(o: Output) -> Self {
        Self {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

/// A Terraform root module.
pub struct Workdir {
    pub dir: PathBuf,
    pub env: Vec<(String, String)>,
}

impl Workdir {
    pub fn write(&self, main_tf: &str) {
        std::fs::write(self.dir.join("main.tf"), main_tf).expect("main.tf");
    }

    pub fn write_file(&self, name: &str, content: &str) {
        std::fs::write(self.dir.join(name), content).expect("file");
    }

    pub fn set_env(&mut self, key: &str, value: Option<&str>) {
        self.env.retain(|(k, _)| k != key);
        if let Some(v) = value {
            self.env.push((key.into(), v.into()));
        }
    }

    pub fn tf(&self, args: &[&str]) -> Tf {
        self.run(&cli(), args)
    }

    /// As [`Self::tf`], with the CLI at `program` (terraform or tofu, whatever KAMAJI_TF_CLI says).
    pub fn run(&self, program: &Path, args: &[&str]) -> Tf {
        let mut cmd = Command::new(program);
        cmd.current_dir(&self.dir).args(args).arg("-no-color");
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd.env_remove("KAMAJI_TOKEN_FILE")
            .env_remove("KAMAJI_CA_CERTIFICATE");
        cmd.output().expect("running terraform").into()
    }

    pub fn apply(&self) -> Tf {
        self.tf(&["apply", "-auto-approve", "-input=false"])
    }

    /// Applies and fails the test with terraform's output when it does not succeed.
    pub fn must_apply(&self) {
        let r = self.apply();
        assert!(r.ok(), "terraform apply failed:\n{}", r.output());
    }

    /// `terraform plan -detailed-exitcode`: 0 no changes, 1 error, 2 changes.
    pub fn plan_code(&self) -> Tf {
        self.tf(&["plan", "-detailed-exitcode", "-input=false"])
    }

    /// The plan as JSON (`terraform show -json` of a saved plan).
    pub fn plan_json(&self) -> serde_json::Value {
        let r = self.tf(&["plan", "-input=false", "-out=tfplan"]);
        assert!(r.ok(), "terraform plan failed:\n{}", r.output());
        let show = self.tf(&["show", "-json", "tfplan"]);
        serde_json::from_str(&show.stdout).expect("plan json")
    }

    /// The state as JSON.
    pub fn state_json(&self) -> serde_json::Value {
        let show = self.tf(&["show", "-json"]);
        assert!(show.ok(), "terraform show failed:\n{}", show.output());
        serde_json::from_str(&show.stdout).expect("state json")
    }

    /// The values of resource `address` in state.
    pub fn resource(&self, address: &str) -> serde_json::Value {
        let state = self.state_json();
        find_resource(&state["values"]["root_module"], address)
            .unwrap_or_else(|| panic!("{address} is not in state:\n{state:#}"))
    }
}

fn find_resource(module: &serde_json::Value, address: &str) -> Option<serde_json::Value> {
    module["resources"]
        .as_array()?
        .iter()
        .find(|r| r["address"] == address)
        .cloned()
}

/// The planned actions per resource address, e.g. `{"kamaji_datastore.a": ["update"]}`.
pub fn planned_actions(
    plan: &serde_json::Value,
) -> std::collections::BTreeMap<String, Vec<String>> {
    plan["resource_changes"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|rc| {
            let actions = rc["change"]["actions"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|a| a.as_str().map(str::to_owned))
                .collect();
            (
                rc["address"].as_str().unwrap_or_default().to_owned(),
                actions,
            )
        })
        .collect()
}
