//! The provider as a user installs it: `scripts/release.sh` (what `make release` runs) builds the
//! registry's artefacts and a filesystem mirror; `terraform init` and `tofu init` install the
//! provider from that mirror (no dev_overrides) and apply a datastore with it.

use std::path::Path;
use std::process::Command;

use acceptance_tests::*;

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().expect("running a command");
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A throwaway signing key in its own keyring (the operator's own key in a real release).
fn signing_key(gnupg: &Path) -> String {
    std::fs::create_dir_all(gnupg).unwrap();
    std::fs::set_permissions(gnupg, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    run(Command::new("gpg").env("GNUPGHOME", gnupg).args([
        "--batch",
        // No pinentry is needed (or installed without recommends): the key has no passphrase.
        "--pinentry-mode",
        "loopback",
        "--passphrase",
        "",
        "--quick-gen-key",
        "kamaji release test <release@example.invalid>",
        "ed25519",
        "sign",
        "never",
    ]));
    let keys = run(Command::new("gpg").env("GNUPGHOME", gnupg).args([
        "--batch",
        "--with-colons",
        "--list-secret-keys",
    ]));
    keys.lines()
        .find_map(|l| l.strip_prefix("fpr:"))
        .map(|l| l.trim_matches(':').to_owned())
        .expect("a fingerprint")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_release_installs_from_its_mirror_under_terraform_and_tofu_and_applies() {
    ensure_built();
    let tmp = tempfile::tempdir().unwrap();
    let (dist, gnupg) = (tmp.path().join("dist"), tmp.path().join("gnupg"));
    let key = signing_key(&gnupg);
    let version = env!("CARGO_PKG_VERSION");
    run(Command::new(workspace().join("scripts/release.sh"))
        .env("OUT", &dist)
        .env("BINARY", bin_dir().join("terraform-provider-kamaji"))
        .env("GPG_KEY_ID", &key)
        .env("GNUPGHOME", &gnupg));

    // The registry's artefacts: named as it expects, their digests right, the digests signed.
    let base = format!("terraform-provider-kamaji_{version}");
    let zip = format!("{base}_linux_amd64.zip");
    for f in [
        zip.clone(),
        format!("{base}_manifest.json"),
        format!("{base}_SHA256SUMS"),
        format!("{base}_SHA256SUMS.sig"),
    ] {
        assert!(dist.join(&f).is_file(), "{f} missing");
    }
    let sums = run(Command::new("sha256sum")
        .current_dir(&dist)
        .args(["-c", &format!("{base}_SHA256SUMS")]));
    assert_eq!(sums.matches(": OK").count(), 2, "{sums}");
    let verified = run(Command::new("gpg").env("GNUPGHOME", &gnupg).args([
        "--batch",
        "--verify",
        dist.join(format!("{base}_SHA256SUMS.sig"))
            .to_str()
            .unwrap(),
        dist.join(format!("{base}_SHA256SUMS")).to_str().unwrap(),
    ]));
    assert!(verified.contains("Good signature"), "{verified}");
    let manifest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dist.join(format!("{base}_manifest.json"))).unwrap(),
    )
    .unwrap();
    assert_eq!(manifest["metadata"]["protocol_versions"][0], "6.0");
    let listing = run(Command::new("unzip").arg("-l").arg(dist.join(&zip)));
    assert!(
        listing.contains(&format!("terraform-provider-kamaji_v{version}")),
        "{listing}"
    );

    // terraform and tofu install it from the mirror and apply with it.
    let h = Harness::start().await;
    let etcd = h.etcd("released", EtcdSecurity::default()).await;
    for (label, cli) in [
        ("terraform", std::path::PathBuf::from("terraform")),
        ("tofu", tofu()),
    ] {
        let mut w = h.workdir(label);
        w.set_env(
            "TF_CLI_CONFIG_FILE",
            Some(dist.join("terraformrc").to_str().unwrap()),
        );
        let ds = DatastoreHcl::new("a", &format!("from-{label}"), &etcd.endpoint);
        w.write(&format!("{PROVIDER_HCL}\n{}", ds.render()));
        let init = w.run(&cli, &["init", "-input=false"]);
        assert!(init.ok(), "{label} init:\n{}", init.output());
        assert!(
            init.output()
                .contains(&format!("Installed kamaji/kamaji v{version}")),
            "{label} init did not install from the mirror:\n{}",
            init.output()
        );
        let host = if label == "tofu" {
            "registry.opentofu.org"
        } else {
            "registry.terraform.io"
        };
        let installed = w.dir.join(format!(
            ".terraform/providers/{host}/kamaji/kamaji/{version}/linux_amd64/terraform-provider-kamaji_v{version}"
        ));
        assert!(installed.is_file(), "{} missing", installed.display());
        let lock = std::fs::read_to_string(w.dir.join(".terraform.lock.hcl")).unwrap();
        assert!(lock.contains(&format!("{host}/kamaji/kamaji")), "{lock}");
        let apply = w.run(&cli, &["apply", "-auto-approve", "-input=false"]);
        assert!(apply.ok(), "{label} apply:\n{}", apply.output());
        assert!(
            h.datastore_names().await.contains(&format!("from-{label}")),
            "{label} applied nothing"
        );
        let destroy = w.run(&cli, &["destroy", "-auto-approve", "-input=false"]);
        assert!(destroy.ok(), "{label} destroy:\n{}", destroy.output());
    }
}
