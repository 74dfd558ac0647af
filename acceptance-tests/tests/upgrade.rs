//! Upgrades lose nothing: what the last landed version wrote loads in this one.
//!
//! `fixtures/upgrade/<commit>/` holds what `make demo` at that commit left (see its README):
//! kamajid's records as its state etcd held them, the KEK that sealed their secrets, the
//! Terraform state of `examples/quickstart` and the dev PKI its HCL reads. This kamajid starts
//! on those records, and this provider plans that state with that configuration: nothing to
//! change, every record readable, every sealed secret opening.

use std::path::{Path, PathBuf};

use acceptance_tests::*;
use kamaji_proto::v1;

/// The last landed version; the ones before it stay tested too (an installation may skip a
/// version).
const LANDED: &str = "04e1041";
const EARLIER: [&str; 2] = ["746f5ed", "bf81a44"];

fn fixture(commit: &str) -> PathBuf {
    workspace()
        .join("acceptance-tests/fixtures/upgrade")
        .join(commit)
}

fn records(dir: &Path) -> Vec<(String, String)> {
    let all: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(dir.join("records.json")).unwrap()).unwrap();
    all.into_iter()
        .map(|(k, v)| {
            let v = match v {
                serde_json::Value::Null => String::new(),
                // A value that is not JSON (a sealed PKI set) is kept as a string.
                serde_json::Value::String(s) => s,
                v => v.to_string(),
            };
            (k, v)
        })
        .collect()
}

/// `text` (JSON) with the JSON string of `old` replaced by that of `new`.
fn swap_json(text: &str, old: &str, new: &str) -> String {
    text.replace(
        &serde_json::Value::from(old).to_string(),
        &serde_json::Value::from(new).to_string(),
    )
}

/// The version of the CLI under test: a state written by a newer terraform than the one on a
/// machine is refused by that terraform, whatever its providers say.
fn cli_version(w: &Workdir) -> String {
    let v: serde_json::Value = serde_json::from_str(&w.tf(&["version", "-json"]).stdout).unwrap();
    v["terraform_version"].as_str().unwrap().to_owned()
}

/// The fixture's root certificate, signed again for the same key when it has expired (the dev
/// PKI's leaves last a year, the fixture longer): the HCL reads it into the datastores and the
/// provider refuses an expired one at plan. Everything that holds it (records, state, files)
/// gets the same new one, so nothing else of the fixture changes.
fn renew_root_if_expired(dir: &Path, out: &Path) -> Option<(String, String)> {
    use rcgen::{CertificateParams, DnType, Issuer, KeyPair};
    let old = std::fs::read_to_string(dir.join("pki/root.crt")).unwrap();
    let expires = kamaji_core::pki::not_after(&old).unwrap();
    let now = time::OffsetDateTime::now_utc();
    if expires > now.unix_timestamp() + 86_400 {
        return None;
    }
    let read = |f: &str| std::fs::read_to_string(dir.join("pki").join(f)).unwrap();
    let issuer =
        Issuer::from_ca_cert_pem(&read("ca.crt"), KeyPair::from_pem(&read("ca.key")).unwrap())
            .unwrap();
    let key = KeyPair::from_pem(&read("root.key")).unwrap();
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name.push(DnType::CommonName, "root");
    p.not_before = now - time::Duration::days(1);
    p.not_after = now + time::Duration::days(30);
    let new = p.signed_by(&key, &issuer).unwrap().pem();
    std::fs::write(out.join("root.crt"), &new).unwrap();
    Some((old, new))
}

#[tokio::test(flavor = "multi_thread")]
async fn records_and_terraform_state_of_the_last_landed_version_load_and_plan_no_change() {
    loads_and_plans_no_change(LANDED).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn records_and_terraform_state_of_earlier_versions_load_and_plan_no_change() {
    for commit in EARLIER {
        loads_and_plans_no_change(commit).await;
    }
}

async fn loads_and_plans_no_change(commit: &str) {
    let dir = fixture(commit);
    let tmp = tempfile::tempdir().unwrap();
    let renewed = renew_root_if_expired(&dir, tmp.path());
    let swap = |text: String| match &renewed {
        Some((old, new)) => text.replace(old.as_str(), new.as_str()),
        None => text,
    };
    let pki = DevPki::read(&dir.join("pki")).expect("the fixture's dev PKI");
    let mut pki = pki;
    // kamajid serves, and the state etcd runs, on a fresh certificate of the fixture's CA.
    pki.server = issue(&pki.ca, "kamaji-dev-server", &["localhost", "127.0.0.1"]).unwrap();
    pki.root = issue(&pki.ca, "root", &[]).unwrap();
    let h = Harness::start_from(Start {
        pki: Some(pki),
        kek: Some(std::fs::read_to_string(dir.join("kek")).unwrap()),
        records: records(&dir)
            .into_iter()
            .map(|(k, v)| {
                // A JSON string holds the PEM with escaped newlines.
                let v = match &renewed {
                    Some((old, new)) => swap_json(&v, old, new),
                    None => v,
                };
                (k, v)
            })
            .collect(),
        ..Default::default()
    })
    .await;

    // Every record reads back through the API: datastores with their sealed keys' fingerprints,
    // tenants with their spec, status and CA.
    let mut ds = h.client().await;
    let list = ds
        .list_datastores(v1::ListDatastoresRequest::default())
        .await
        .unwrap_or_else(|e| panic!("datastores of {commit}: {e}"))
        .into_inner();
    let names: Vec<_> = list.datastores.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names, ["etcd-1", "etcd-2"]);
    let mut tc = h.tenants().await;
    for name in ["alpha", "beta"] {
        let t = tc
            .get_tenant_cluster(v1::GetTenantClusterRequest { name: name.into() })
            .await
            .unwrap_or_else(|e| panic!("tenant {name} of {commit}: {e}"))
            .into_inner();
        let st = t.status.unwrap();
        assert_eq!(st.phase, v1::TenantClusterPhase::Ready as i32, "{name}");
        assert!(st.cluster_ca_certificate.contains("BEGIN CERTIFICATE"));
        assert_eq!(t.spec.unwrap().kubernetes_version, "1.37.2");
        // The sealed PKI opens with the fixture's KEK: the credentials come back.
        let creds = tc
            .get_tenant_cluster_credentials(v1::GetTenantClusterCredentialsRequest {
                name: name.into(),
            })
            .await
            .unwrap_or_else(|e| panic!("credentials of {name}: {e}"))
            .into_inner();
        assert!(creds.admin_kubeconfig.contains("client-key-data"), "{name}");
    }

    // The Terraform state plans no change with the same configuration.
    let w = h.workdir("quickstart");
    std::fs::copy(dir.join("main.tf"), w.dir.join("main.tf")).unwrap();
    let state_path = w.dir.join("terraform.tfstate");
    let mut state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("terraform.tfstate")).unwrap())
            .unwrap();
    if let Some((old, new)) = &renewed {
        state = serde_json::from_str(&swap_json(&state.to_string(), old, new)).unwrap();
    }
    state["terraform_version"] = cli_version(&w).into();
    std::fs::write(&state_path, state.to_string()).unwrap();
    let vars: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("quickstart.tfvars.json")).unwrap())
            .unwrap();
    let mut vars = vars.as_object().unwrap().clone();
    vars.insert("kamaji_endpoint".into(), h.endpoint.clone().into());
    vars.insert("pki_dir".into(), w.dir.display().to_string().into());
    w.write_file(
        "upgrade.auto.tfvars.json",
        &serde_json::Value::from(vars).to_string(),
    );
    // The workdir's PKI files are the fixture's (the HCL reads them into the datastores).
    for f in ["ca.crt", "ca.key", "root.crt", "root.key"] {
        let text = std::fs::read_to_string(dir.join("pki").join(f)).unwrap();
        std::fs::write(w.dir.join(f), swap(text)).unwrap();
    }
    let plan = w.plan_code();
    assert_eq!(
        plan.code,
        0,
        "the state of {commit} plans changes (or fails):\n{}",
        plan.output()
    );
    // Refreshed: the new computed attributes are filled in from the old records.
    let after = w.tf(&["apply", "-refresh-only", "-auto-approve", "-input=false"]);
    assert!(after.ok(), "{}", after.output());
    let shard = w.resource("kamaji_datastore.shard[0]");
    assert!(shard["values"]["alarms"].is_array(), "{shard:#}");
    assert_eq!(shard["values"]["name"], "etcd-1");
}
