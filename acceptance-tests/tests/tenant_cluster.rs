//! `kamaji_tenant_cluster` through the real terraform CLI, against a real kamajid, two real
//! etcd shards (TLS, client-cert auth, auth on), and the Kubernetes API test double as the
//! admin cluster.

use std::time::Duration;

use acceptance_tests::kube_double::KubeDouble;
use acceptance_tests::*;
use kamaji_proto::v1;

fn tenant(label: &str, name: &str, version: &str, extra: &str) -> String {
    format!(
        "resource \"kamaji_tenant_cluster\" \"{label}\" {{\n  name = \"{name}\"\n  kubernetes_version = \"{version}\"\n{extra}\n  depends_on = [kamaji_datastore.a, kamaji_datastore.b]\n}}\n"
    )
}

struct Pool {
    _a: EtcdProcess,
    _b: EtcdProcess,
    hcl: String,
    endpoints: [String; 2],
}

async fn pool(h: &Harness) -> Pool {
    let a = h.etcd("shard-a", EtcdSecurity::default()).await;
    let b = h.etcd("shard-b", EtcdSecurity::default()).await;
    let mut da = DatastoreHcl::new("a", "shard-a", &a.endpoint);
    da.extra = "  labels = { tier = \"gold\" }".into();
    let db = DatastoreHcl::new("b", "shard-b", &b.endpoint);
    Pool {
        hcl: format!("{PROVIDER_HCL}\n{}\n{}", da.render(), db.render()),
        endpoints: [a.endpoint.clone(), b.endpoint.clone()],
        _a: a,
        _b: b,
    }
}

/// Users and roles other than root on a shard, and its number of keys.
async fn leftovers(h: &Harness, endpoint: &str) -> (Vec<String>, Vec<String>, i64) {
    let tls = kamajid::etcd::EtcdTls {
        ca_pem: Some(h.pki.ca.cert.clone()),
        identity: Some((h.pki.root.cert.clone(), h.pki.root.key.clone())),
    };
    let mut c = kamajid::etcd::connect(&[endpoint.to_owned()], &tls, Duration::from_secs(5))
        .await
        .expect("shard client");
    let users: Vec<String> = c
        .user_list()
        .await
        .expect("users")
        .users()
        .iter()
        .filter(|u| u.as_str() != "root")
        .cloned()
        .collect();
    let roles: Vec<String> = c
        .role_list()
        .await
        .expect("roles")
        .roles()
        .iter()
        .filter(|r| r.as_str() != "root")
        .cloned()
        .collect();
    let keys = c
        .get(
            "",
            Some(
                etcd_client::GetOptions::new()
                    .with_from_key()
                    .with_count_only(),
            ),
        )
        .await
        .expect("count keys")
        .count();
    (users, roles, keys)
}

fn values(w: &Workdir, address: &str) -> serde_json::Value {
    w.resource(address)["values"].clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn lifecycle_spread_upgrade_replace_protect_import_drift_destroy() {
    let double = KubeDouble::default();
    let base = double.start().await;
    let h = Harness::start_with_admin_cluster(Some(KubeDouble::kubeconfig(&base))).await;
    let p = pool(&h).await;
    let w = h.workdir("tenants");
    let outputs = r#"
data "kamaji_tenant_cluster" "acme" {
  name = kamaji_tenant_cluster.acme.name
}
output "acme_endpoint" { value = data.kamaji_tenant_cluster.acme.endpoint }
output "acme_kubeconfig" {
  value     = data.kamaji_tenant_cluster.acme.admin_kubeconfig
  sensitive = true
}
"#;
    let write = |acme: &str, beta: &str| {
        w.write(&format!(
            "{}\n{}\n{}\n{outputs}",
            p.hcl,
            tenant("acme", "acme", "1.35.2", acme),
            tenant("beta", "beta", "1.34.1", beta),
        ))
    };

    // Create: two tenants spread over the two shards, each Ready with its endpoint and keys.
    write("", "");
    w.must_apply();
    let (acme, beta) = (
        values(&w, "kamaji_tenant_cluster.acme"),
        values(&w, "kamaji_tenant_cluster.beta"),
    );
    let mut placed = [
        acme["datastore"].as_str().unwrap(),
        beta["datastore"].as_str().unwrap(),
    ];
    placed.sort();
    assert_eq!(placed, ["shard-a", "shard-b"], "spread over both shards");
    assert_eq!(acme["status"], "Ready", "{acme:#}");
    assert_eq!(acme["current_version"], "1.35.2");
    assert_eq!(acme["endpoint"], "https://127.0.0.1:6443");
    assert_eq!(acme["replicas"], 2, "default replicas");
    assert_eq!(acme["network"]["service_cidr"], "10.96.0.0/12");
    assert_eq!(acme["network"]["service_type"], "LoadBalancer");
    let ca = acme["cluster_ca_certificate"].as_str().unwrap();
    assert_eq!(
        acme["ca_cert_hash"].as_str(),
        kamaji_proto::validate::ca_cert_hash(ca).as_deref()
    );
    let kubeconfig = acme["admin_kubeconfig"].as_str().unwrap();
    assert!(
        kubeconfig.contains("server: https://127.0.0.1:6443"),
        "{kubeconfig}"
    );
    let sensitive = &w.resource("kamaji_tenant_cluster.acme")["sensitive_values"];
    assert_eq!(sensitive["admin_kubeconfig"], true);
    assert_eq!(sensitive["client_key"], true);
    let out = &w.state_json()["values"]["outputs"];
    assert_eq!(
        out["acme_endpoint"]["value"], "https://127.0.0.1:6443",
        "data source"
    );
    assert_eq!(out["acme_kubeconfig"]["value"], kubeconfig);
    let uid = acme["uid"].as_str().unwrap().to_owned();
    let dep = double
        .get("/apis/apps/v1/namespaces/tenant-acme/deployments/control-plane")
        .expect("control plane applied");
    assert_eq!(dep["spec"]["replicas"], 2);

    // Nothing changes on a second plan.
    let r = w.plan_code();
    assert_eq!(r.code, 0, "plan after apply is not empty:\n{}", r.output());

    // In place: one minor up and a replica more.
    write("  replicas = 3\n", "");
    let plan = w.tf(&["plan", "-input=false"]);
    assert!(
        plan.ok() && plan.stdout.contains("1 to change, 0 to destroy"),
        "{}",
        plan.output()
    );
    write("  replicas = 3\n", "");
    let staged = std::fs::read_to_string(w.dir.join("main.tf"))
        .unwrap()
        .replacen("1.35.2", "1.36.0", 1);
    w.write(&staged);
    let actions = planned_actions(&w.plan_json());
    assert_eq!(
        actions["kamaji_tenant_cluster.acme"],
        ["update"],
        "{actions:?}"
    );
    w.must_apply();
    let acme = values(&w, "kamaji_tenant_cluster.acme");
    assert_eq!(
        (acme["current_version"].as_str(), acme["uid"].as_str()),
        (Some("1.36.0"), Some(uid.as_str()))
    );
    let dep = double
        .get("/apis/apps/v1/namespaces/tenant-acme/deployments/control-plane")
        .unwrap();
    assert_eq!(dep["spec"]["replicas"], 3);
    let image = dep["spec"]["template"]["spec"]["containers"][0]["image"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(image.ends_with(":v1.36.0"), "{image}");
    let r = w.plan_code();
    assert_eq!(
        r.code,
        0,
        "plan after upgrade is not empty:\n{}",
        r.output()
    );

    // Skipping a minor or going down is refused at plan, naming kubernetes_version.
    for (to, says) in [
        ("1.36.0", "one minor at a time"),
        ("1.33.9", "cannot downgrade"),
    ] {
        let cfg = std::fs::read_to_string(w.dir.join("main.tf"))
            .unwrap()
            .replacen("1.34.1", to, 1);
        w.write(&cfg);
        let r = w.tf(&["plan", "-input=false"]);
        assert!(
            !r.ok() && points_at(&r.output(), "kubernetes_version") && r.output().contains(says),
            "{to}:\n{}",
            r.output()
        );
        w.write(&cfg.replacen(to, "1.34.1", 1));
    }

    // An immutable change replaces the cluster: a new uid, on a shard, Ready again.
    let replaced_cfg = |beta_extra: &str| {
        format!(
            "{}\n{}\n{}\n{outputs}",
            p.hcl,
            tenant("acme", "acme", "1.36.0", "  replicas = 3\n  network {\n    service_cidr = \"10.100.0.0/16\"\n    dns_service_ip = \"10.100.0.10\"\n  }\n"),
            tenant("beta", "beta", "1.34.1", beta_extra),
        )
    };
    w.write(&replaced_cfg(""));
    let plan = w.plan_json();
    let actions = planned_actions(&plan);
    assert_eq!(
        actions["kamaji_tenant_cluster.acme"],
        ["delete", "create"],
        "{actions:?}"
    );
    let replace_paths = plan["resource_changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|rc| rc["address"] == "kamaji_tenant_cluster.acme")
        .unwrap()["change"]["replace_paths"]
        .clone();
    assert!(
        replace_paths.to_string().contains("service_cidr"),
        "{replace_paths}"
    );
    w.must_apply();
    let acme = values(&w, "kamaji_tenant_cluster.acme");
    assert_ne!(acme["uid"].as_str().unwrap(), uid, "replaced");
    assert_eq!(acme["status"], "Ready");
    assert_eq!(acme["network"]["service_cidr"], "10.100.0.0/16");

    // deletion_protection: set in place, then destroy and replacement are refused at plan.
    w.write(&replaced_cfg("  deletion_protection = true\n"));
    w.must_apply();
    let r = w.tf(&["destroy", "-auto-approve", "-input=false"]);
    assert!(
        !r.ok() && r.output().contains("deletion_protection"),
        "{}",
        r.output()
    );
    assert!(!r.output().contains("Destroy complete"), "{}", r.output());
    let mut t = h.tenants().await;
    for name in ["acme", "beta"] {
        t.get_tenant_cluster(v1::GetTenantClusterRequest { name: name.into() })
            .await
            .unwrap_or_else(|e| panic!("{name} lost to a refused destroy: {e}"));
    }
    w.write(&replaced_cfg(
        "  deletion_protection = true\n  datastore_selector = { tier = \"gold\" }\n",
    ));
    let r = w.tf(&["plan", "-input=false"]);
    assert!(
        !r.ok() && points_at(&r.output(), "deletion_protection"),
        "{}",
        r.output()
    );
    w.write(&replaced_cfg(""));
    w.must_apply();

    // Import by name gives the same state: plan is empty after it.
    let r = w.tf(&["state", "rm", "kamaji_tenant_cluster.beta"]);
    assert!(r.ok(), "{}", r.output());
    let r = w.tf(&[
        "import",
        "-input=false",
        "kamaji_tenant_cluster.beta",
        "beta",
    ]);
    assert!(r.ok(), "{}", r.output());
    let r = w.plan_code();
    assert_eq!(r.code, 0, "plan after import is not empty:\n{}", r.output());
    let r = w.tf(&[
        "import",
        "-input=false",
        "kamaji_tenant_cluster.gamma",
        "Not_A_Name",
    ]);
    assert!(!r.ok(), "{}", r.output());

    // Deleted outside Terraform: planned for creation, and re-created.
    t.delete_tenant_cluster(v1::DeleteTenantClusterRequest {
        name: "beta".into(),
    })
    .await
    .unwrap();
    let mut gone = false;
    for _ in 0..120 {
        if t.get_tenant_cluster(v1::GetTenantClusterRequest {
            name: "beta".into(),
        })
        .await
        .is_err()
        {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(gone, "beta not deleted out of band");
    let actions = planned_actions(&w.plan_json());
    assert_eq!(
        actions["kamaji_tenant_cluster.beta"],
        ["create"],
        "{actions:?}"
    );
    w.must_apply();
    assert_eq!(values(&w, "kamaji_tenant_cluster.beta")["status"], "Ready");

    // Destroy: nothing is left in the admin cluster, on either shard, or in kamajid's records.
    let r = w.tf(&["destroy", "-auto-approve", "-input=false"]);
    assert!(r.ok(), "terraform destroy failed:\n{}", r.output());
    assert!(
        double.paths().is_empty(),
        "left in the admin cluster: {:?}",
        double.paths()
    );
    for ep in &p.endpoints {
        assert_eq!(leftovers(&h, ep).await, (vec![], vec![], 0), "left on {ep}");
    }
    let mut state = h.state_etcd().await;
    for prefix in ["/kamajid/v1/tenants/", "/kamajid/v1/placements/"] {
        let n = state
            .get(
                prefix,
                Some(
                    etcd_client::GetOptions::new()
                        .with_prefix()
                        .with_count_only(),
                ),
            )
            .await
            .unwrap()
            .count();
        assert_eq!(n, 0, "records left under {prefix}");
    }
    assert!(h.datastore_names().await.is_empty());
}
