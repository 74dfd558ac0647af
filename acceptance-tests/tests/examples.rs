//! Every example under examples/ is valid Terraform for the provider as built now.

use std::path::{Path, PathBuf};
use std::process::Command;

use acceptance_tests::{ensure_built, write_cli_config, PROVIDER_HCL};

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
    assert!(dirs.len() >= 5, "examples missing: {dirs:?}");
    for dir in dirs {
        let rel = dir.strip_prefix(&root).unwrap();
        let work = tmp.path().join(rel);
        std::fs::create_dir_all(&work).unwrap();
        let mut declares_provider = false;
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            if e.path().extension().is_some_and(|x| x == "tf") {
                let text = std::fs::read_to_string(e.path()).unwrap();
                declares_provider |= text.contains("required_providers");
                std::fs::write(work.join(e.file_name()), text).unwrap();
            }
        }
        if !declares_provider {
            // Registry doc snippets omit the terraform block; without it the source would be hashicorp/kamaji.
            std::fs::write(work.join("versions.tf"), PROVIDER_HCL).unwrap();
        }
        let out = Command::new("terraform")
            .current_dir(&work)
            .args(["validate", "-no-color"])
            .env("TF_CLI_CONFIG_FILE", &rc)
            .env("CHECKPOINT_DISABLE", "1")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "examples/{} does not validate:\n{}{}",
            rel.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
