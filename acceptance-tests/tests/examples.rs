//! Every example under examples/ is valid Terraform for the provider as built now.

use std::path::{Path, PathBuf};
use std::process::Command;

use acceptance_tests::{bin_dir, ensure_built, workspace, write_cli_config, PROVIDER_HCL};

fn example_dirs(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_owned()];
    while let Some(d) = stack.pop() {
        let mut has_tf = false;
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "tf") {
                has_tf = true;
            }
        }
        if has_tf {
            out.push(d);
        }
    }
    out.sort();
    out
}

#[test]
fn every_example_passes_terraform_validate() {
    ensure_built();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .join("examples");
    let tmp = tempfile::tempdir().unwrap();
    let rc = write_cli_config(tmp.path());
    let dirs = example_dirs(&root);
    assert!(dirs.len() >= 7, "examples missing: {dirs:?}");
    // The whole tree first: modules refer to each other by relative path.
    copy_tree(&root, tmp.path());
    for dir in dirs {
        let rel = dir.strip_prefix(&root).unwrap();
        let work = tmp.path().join(rel);
        let mut declares_provider = false;
        let mut needs_init = false;
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            if e.path().extension().is_some_and(|x| x == "tf") {
                let text = std::fs::read_to_string(e.path()).unwrap();
                declares_provider |= text.contains("required_providers");
                needs_init |= text.contains("hashicorp/") || text.contains("module \"");
            }
        }
        if !declares_provider {
            // Registry doc snippets omit the terraform block; without it the source would be hashicorp/kamaji.
            std::fs::write(work.join("versions.tf"), PROVIDER_HCL).unwrap();
        }
        let tf = |args: &[&str]| {
            Command::new("terraform")
                .current_dir(&work)
                .args(args)
                .env("TF_CLI_CONFIG_FILE", &rc)
                .env("CHECKPOINT_DISABLE", "1")
                .output()
                .unwrap()
        };
        if needs_init {
            // Other providers (hashicorp/aws) come from the machine's filesystem mirror, as
            // offline users install them; kamaji itself from the dev override.
            let mirror = plugin_dir(tmp.path());
            let out = tf(&[
                "init",
                "-backend=false",
                "-input=false",
                "-no-color",
                &format!("-plugin-dir={}", mirror.display()),
            ]);
            assert!(
                out.status.success(),
                "examples/{}: terraform init failed:\n{}{}",
                rel.display(),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let out = tf(&["validate", "-no-color"]);
        assert!(
            out.status.success(),
            "examples/{} does not validate:\n{}{}",
            rel.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let p = e.path();
        let dest = to.join(e.file_name());
        if p.is_dir() {
            if e.file_name() != ".terraform" {
                copy_tree(&p, &dest);
            }
        } else if !e
            .file_name()
            .to_string_lossy()
            .starts_with("terraform.tfstate")
            && e.file_name() != ".terraform.lock.hcl"
        {
            std::fs::copy(&p, &dest).unwrap();
        }
    }
}

/// A plugin directory with hashicorp/aws from the machine's mirror and this build's provider.
fn plugin_dir(tmp: &Path) -> PathBuf {
    let dir = tmp.join("plugins");
    let registry = dir.join("registry.terraform.io");
    if !registry.exists() {
        let kamaji = registry.join("kamaji/kamaji/0.1.0/linux_amd64");
        std::fs::create_dir_all(&kamaji).unwrap();
        std::os::unix::fs::symlink(
            bin_dir().join("terraform-provider-kamaji"),
            kamaji.join("terraform-provider-kamaji_v0.1.0"),
        )
        .unwrap();
        // Terraform does not follow symlinked directories here: link file by file.
        link_files(
            &plugin_mirror().join("registry.terraform.io/hashicorp/aws"),
            &registry.join("hashicorp/aws"),
        );
    }
    dir
}

fn link_files(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            link_files(&p, &to.join(e.file_name()));
        } else {
            std::os::unix::fs::symlink(&p, to.join(e.file_name())).unwrap();
        }
    }
}

/// The filesystem mirror of third-party providers: `KAMAJI_TF_PLUGIN_DIR`, else the machine's
/// `/opt/tf-plugins` (which carries hashicorp/aws).
fn plugin_mirror() -> PathBuf {
    let dir = std::env::var_os("KAMAJI_TF_PLUGIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/opt/tf-plugins"));
    assert!(
        dir.join("registry.terraform.io/hashicorp/aws").is_dir(),
        "no hashicorp/aws provider under {}: set KAMAJI_TF_PLUGIN_DIR to a filesystem mirror that has it \
         (find / -maxdepth 6 -path '*hashicorp/aws*' -name 'terraform-provider-aws*')",
        dir.display()
    );
    dir
}

/// The `x.y.z` versions a line sets (`kubernetes_version = "…"`, a variable's `default = "…"`).
fn versions_set(line: &str) -> Option<String> {
    let (key, value) = line.split_once('=')?;
    let key = key.trim();
    if key != "kubernetes_version" && key != "default" {
        return None;
    }
    let v = value.trim().strip_prefix('"')?.split('"').next()?;
    let parts: Vec<_> = v.split('.').collect();
    (parts.len() == 3 && parts.iter().all(|p| p.parse::<u32>().is_ok())).then(|| v.to_owned())
}

fn files(dir: &Path, ext: &str, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() && !p.ends_with(".terraform") {
            files(&p, ext, out);
        } else if p.extension().is_some_and(|x| x == ext) {
            out.push(p);
        }
    }
}

#[test]
fn every_kubernetes_version_the_examples_and_docs_set_is_one_the_tests_run() {
    let root = workspace();
    let tested: Vec<String> = std::fs::read_to_string(root.join("tools/k8s-build/VERSIONS"))
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| l.trim().to_owned())
        .collect();
    let mut paths = vec![root.join("README.md")];
    files(&root.join("examples"), "tf", &mut paths);
    files(&root.join("docs"), "md", &mut paths);
    let mut seen = 0;
    for p in paths {
        for (i, line) in std::fs::read_to_string(&p).unwrap().lines().enumerate() {
            if let Some(v) = versions_set(line) {
                seen += 1;
                assert!(
                    tested.contains(&v),
                    "{}:{}: Kubernetes {v}, but the tests run {tested:?} (tools/k8s-build/VERSIONS)",
                    p.display(),
                    i + 1
                );
            }
        }
    }
    assert!(seen >= 5, "only {seen} versions found: the scan is broken");
}
