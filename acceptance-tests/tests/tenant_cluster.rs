//! `kamaji_tenant_cluster` through the real terraform (or tofu) CLI, against a real kamajid, two
//! real etcd shards (TLS, client-cert auth, auth on) and a real admin cluster (kube-apiserver and
//! kube-controller-manager), whose node runs the control planes as pods; a stand-in for a cloud's
//! load-balancer controller hands the `LoadBalancer` Services their addresses. The quickstart
//! runs on the process runtime, as `make demo` does.

use std::time::Duration;

use base64::Engine;

use acceptance_tests::admin_cluster::{self, AdminCluster};
use acceptance_tests::k8s::{self, Kubectl};
use acceptance_tests::*;
use kamaji_proto::v1;

/// A tenant with requests small enough that every replica here, and a rollout's extra pod,
/// fits the two-core node.
fn tenant(label: &str, name: &str, version: &str, extra: &str) -> String {
    format!(
        "resource \"kamaji_tenant_cluster\" \"{label}\" {{\n  name = \"{name}\"\n  kubernetes_version = \"{version}\"\n{extra}\n  resources {{\n    apiserver {{\n      cpu_request = \"100m\"\n      memory_request = \"256Mi\"\n    }}\n    controller_manager {{\n      cpu_request = \"20m\"\n    }}\n    scheduler {{\n      cpu_request = \"10m\"\n    }}\n  }}\n  depends_on = [kamaji_datastore.a, kamaji_datastore.b]\n}}\n"
    )
}

/// A `network {}` block with the tenant's API port (its load balancer's port: load balancers
/// here share one address range, tenants' ports keep them apart) and more lines.
fn network(port: u16, more: &str) -> String {
    format!("  network {{\n    port = {port}\n{more}  }}\n")
}

/// The tenant answers with the admin kubeconfig terraform returned, and kamajid bootstrapped it at
/// `endpoint` (cluster-info names it).
fn answers_at(w: &Workdir, label: &str, endpoint: &str) -> Kubectl {
    let v = values(w, &format!("kamaji_tenant_cluster.{label}"));
    let k = Kubectl::new(
        &w.dir.join(format!("{label}.kubeconfig")),
        v["admin_kubeconfig"].as_str().expect("admin_kubeconfig"),
    );
    let ci = k.json(&["configmap", "cluster-info", "-n", "kube-public"]);
    assert!(
        ci["data"]["kubeconfig"]
            .as_str()
            .unwrap_or_default()
            .contains(&format!("server: {endpoint}")),
        "cluster-info of {label} does not point at {endpoint}: {ci:#}"
    );
    k
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

fn values(w: &Workdir, address: &str) -> serde_json::Value {
    w.resource(address)["values"].clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn lifecycle_spread_upgrade_replace_protect_import_drift_destroy() {
    let (admin, _pods, h) = admin_cluster::harness(vec![]).await;
    let admin_k = admin.kubectl();
    let p = pool(&h).await;
    let (old, new) = (k8s::oldest(), k8s::newest());
    let (acme_port, beta_port) = (free_port(), free_port());
    let acme_net = |more: &str| network(acme_port, more);
    let beta_net = |more: &str| network(beta_port, more);
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
            tenant("acme", "acme", &old, &format!("{acme}{}", acme_net(""))),
            tenant("beta", "beta", &old, &format!("{beta}{}", beta_net(""))),
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
    assert_eq!(acme["current_version"], old.as_str());
    // The admin cluster's load balancer gave the Service its address.
    let lb = admin_k.json(&["service", "kube-apiserver", "-n", "tenant-acme"])["status"]
        ["loadBalancer"]["ingress"][0]["ip"]
        .as_str()
        .expect("the load balancer's address")
        .to_owned();
    let endpoint = format!("https://{lb}:{acme_port}");
    assert_eq!(acme["endpoint"], endpoint.as_str());
    answers_at(&w, "acme", &endpoint).must(&["get", "ns", "default"]);
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
        kubeconfig.contains(&format!("server: {endpoint}")),
        "{kubeconfig}"
    );
    let sensitive = &w.resource("kamaji_tenant_cluster.acme")["sensitive_values"];
    assert_eq!(sensitive["admin_kubeconfig"], true);
    assert_eq!(sensitive["client_key"], true);
    let out = &w.state_json()["values"]["outputs"];
    assert_eq!(
        out["acme_endpoint"]["value"],
        endpoint.as_str(),
        "data source"
    );
    assert_eq!(out["acme_kubeconfig"]["value"], kubeconfig);
    let uid = acme["uid"].as_str().unwrap().to_owned();
    let dep = admin_k.json(&["deployment", "control-plane", "-n", "tenant-acme"]);
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
        .replacen(&old, &new, 1);
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
        (Some(new.as_str()), Some(uid.as_str()))
    );
    let dep = admin_k.json(&["deployment", "control-plane", "-n", "tenant-acme"]);
    assert_eq!(dep["spec"]["replicas"], 3);
    let image = dep["spec"]["template"]["spec"]["containers"][0]["image"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(image.ends_with(&format!(":v{new}")), "{image}");
    let version: serde_json::Value = serde_json::from_str(
        &answers_at(&w, "acme", &endpoint).must(&["get", "--raw", "/version"]),
    )
    .unwrap();
    assert_eq!(version["gitVersion"], format!("v{new}"));
    let r = w.plan_code();
    assert_eq!(
        r.code,
        0,
        "plan after upgrade is not empty:\n{}",
        r.output()
    );

    // A move on the Kubernetes runtime: acme to beta's shard, in place. The Deployment rolls
    // out against the new shard; acme's objects and kubeconfig stay; its old shard keeps nothing.
    let from = acme["datastore"].as_str().unwrap().to_owned();
    let (to, from_endpoint) = if from == "shard-a" {
        ("shard-b", p.endpoints[0].clone())
    } else {
        ("shard-a", p.endpoints[1].clone())
    };
    let before = Kubectl::new(&w.dir.join("acme-before-move.kubeconfig"), kubeconfig);
    before.must(&["create", "configmap", "before-move", "--from-literal=k=v"]);
    write(&format!("  replicas = 3\n  datastore = \"{to}\"\n"), "");
    let moved_cfg = std::fs::read_to_string(w.dir.join("main.tf"))
        .unwrap()
        .replacen(&old, &new, 1);
    w.write(&moved_cfg);
    assert_eq!(
        planned_actions(&w.plan_json())["kamaji_tenant_cluster.acme"],
        ["update"],
        "a move is in place"
    );
    w.must_apply();
    let acme = values(&w, "kamaji_tenant_cluster.acme");
    assert_eq!(
        (
            acme["datastore"].as_str(),
            acme["uid"].as_str(),
            acme["status"].as_str()
        ),
        (Some(to), Some(uid.as_str()), Some("Ready"))
    );
    assert_eq!(
        before.must(&[
            "get",
            "configmap",
            "before-move",
            "-o",
            "jsonpath={.data.k}"
        ]),
        "v",
        "the kubeconfig from before the move reads what was written before it"
    );
    let left: Vec<_> = h
        .shard_keys(&from_endpoint)
        .await
        .into_iter()
        .filter(|k| k.starts_with(&format!("/{uid}/")))
        .collect();
    assert!(left.is_empty(), "acme left keys on {from}: {left:?}");
    let st = h
        .tenants()
        .await
        .get_tenant_cluster(v1::GetTenantClusterRequest {
            name: "acme".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .status
        .unwrap();
    let moved = st.conditions.iter().find(|c| c.r#type == "Moved").unwrap();
    assert_eq!(moved.status, v1::ConditionStatus::True as i32, "{moved:?}");
    eprintln!("Kubernetes runtime, 3 replicas: {}", moved.message);
    let r = w.plan_code();
    assert_eq!(
        r.code,
        0,
        "plan after the move is not empty:\n{}",
        r.output()
    );

    // Going down is refused at plan, naming kubernetes_version (skipping a minor is refused
    // the same way: tenants_api covers it, as no third minor is built here).
    {
        let (to, says) = ("1.35.4", "cannot downgrade");
        let cfg = std::fs::read_to_string(w.dir.join("main.tf"))
            .unwrap()
            .replacen(&format!("\"{old}\""), &format!("\"{to}\""), 1);
        w.write(&cfg);
        let r = w.tf(&["plan", "-input=false"]);
        assert!(
            !r.ok() && points_at(&r.output(), "kubernetes_version") && r.output().contains(says),
            "{to}:\n{}",
            r.output()
        );
        w.write(&cfg.replacen(&format!("\"{to}\""), &format!("\"{old}\""), 1));
    }

    // An immutable change replaces the cluster: a new uid, on a shard, Ready again.
    let replaced_net =
        "    service_cidr = \"10.100.0.0/16\"\n    dns_service_ip = \"10.100.0.10\"\n";
    let replaced_cfg = |beta_extra: &str| {
        format!(
            "{}\n{}\n{}\n{outputs}",
            p.hcl,
            tenant(
                "acme",
                "acme",
                &new,
                &format!("  replicas = 3\n{}", acme_net(replaced_net))
            ),
            tenant(
                "beta",
                "beta",
                &old,
                &format!("{beta_extra}{}", beta_net(""))
            ),
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
    // The new cluster is a new one (its own Service and load-balancer address): its own CA,
    // nothing of the old one's data.
    let endpoint = acme["endpoint"].as_str().unwrap().to_owned();
    answers_at(&w, "acme", &endpoint).must(&["get", "ns", "default"]);

    // Serving names change in place: same uid and CA, a re-issued certificate that names them.
    // The endpoint address is the one the Service already has, so kamajid still reaches it.
    let (uid, ca, endpoint) = (
        acme["uid"].clone(),
        acme["cluster_ca_certificate"].clone(),
        acme["endpoint"].as_str().unwrap().to_owned(),
    );
    let host = endpoint
        .trim_start_matches("https://")
        .rsplit_once(':')
        .unwrap()
        .0
        .to_owned();
    w.write(&format!(
        "{}\n{}\n{}\n{outputs}",
        p.hcl,
        tenant("acme", "acme", &new, &format!("  replicas = 3\n{}", acme_net(&format!("{replaced_net}    endpoint_address = \"{host}\"\n    extra_sans = [\"api.acme.example\"]\n")))),
        tenant("beta", "beta", &old, &beta_net("")),
    ));
    let actions = planned_actions(&w.plan_json());
    assert_eq!(
        actions["kamaji_tenant_cluster.acme"],
        ["update"],
        "{actions:?}"
    );
    w.must_apply();
    let acme = values(&w, "kamaji_tenant_cluster.acme");
    assert_eq!((&acme["uid"], &acme["cluster_ca_certificate"]), (&uid, &ca));
    assert_eq!(acme["endpoint"], endpoint.as_str());
    assert_eq!(acme["status"], "Ready");
    let secret = admin_k.json(&["secret", "pki", "-n", "tenant-acme"]);
    let cert = base64::engine::general_purpose::STANDARD
        .decode(secret["data"]["apiserver.crt"].as_str().unwrap())
        .unwrap();
    let sans = String::from_utf8(openssl(
        &["x509", "-noout", "-ext", "subjectAltName"],
        &cert,
    ))
    .unwrap();
    assert!(
        sans.contains("DNS:api.acme.example") && sans.contains(&format!("IP Address:{host}")),
        "{sans}"
    );
    // The running apiserver serves it (the pods rolled with the new certificate).
    answers_at(&w, "acme", &endpoint).must(&["get", "ns", "default"]);
    let r = w.plan_code();
    assert_eq!(
        r.code,
        0,
        "plan after a SAN change is not empty:\n{}",
        r.output()
    );

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
    // A change that replaces (the service range) is refused at plan while protected.
    w.write(&format!(
        "{}\n{}\n{}\n{outputs}",
        p.hcl,
        tenant(
            "acme",
            "acme",
            &new,
            &format!("  replicas = 3\n{}", acme_net(replaced_net))
        ),
        tenant(
            "beta",
            "beta",
            &old,
            &format!("  deletion_protection = true\n{}", beta_net(replaced_net))
        ),
    ));
    let r = w.tf(&["plan", "-input=false"]);
    assert!(
        !r.ok() && points_at(&r.output(), "deletion_protection"),
        "{}",
        r.output()
    );
    // A selector is not a replacement (it would move the cluster in place; this one matches
    // where beta is, so nothing moves): protection does not stand in its way.
    w.write(&replaced_cfg(
        "  deletion_protection = true\n  datastore_selector = { tier = \"gold\" }\n",
    ));
    assert_eq!(
        planned_actions(&w.plan_json())["kamaji_tenant_cluster.beta"],
        ["update"]
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

    // J: destroying a datastore that holds tenants this plan leaves in place is refused at plan,
    // naming them (here from a second configuration that holds only the datastore).
    let other = h.workdir("datastore-only");
    other.write(&format!(
        "{PROVIDER_HCL}\n{}",
        DatastoreHcl::new("a", "shard-a", &p.endpoints[0]).render()
    ));
    let imported = other.tf(&["import", "-input=false", "kamaji_datastore.a", "shard-a"]);
    assert!(imported.ok(), "{}", imported.output());
    let on_a: Vec<String> = h
        .tenants()
        .await
        .list_tenant_clusters(v1::ListTenantClustersRequest {
            datastore: "shard-a".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .tenant_clusters
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert!(!on_a.is_empty());
    let r = other.tf(&["plan", "-destroy", "-input=false"]);
    let out = r.output();
    assert!(
        !r.ok(),
        "destroying a datastore with tenants planned:\n{out}"
    );
    assert!(
        out.contains("still holds tenant clusters")
            && on_a.iter().all(|t| out.contains(t.as_str())),
        "{out}"
    );
    assert!(!planned_changes(&out), "{out}");

    // Destroy: nothing is left in the admin cluster, on either shard, or in kamajid's records;
    // tenants and their datastores in one plan pass the check above (dependents go first).
    let r = w.tf(&["destroy", "-auto-approve", "-input=false"]);
    assert!(r.ok(), "terraform destroy failed:\n{}", r.output());
    assert!(
        admin.kamajid_objects().is_empty(),
        "left in the admin cluster: {:?}",
        admin.kamajid_objects()
    );
    for ep in &p.endpoints {
        assert_eq!(
            h.shard_leftovers(ep).await,
            (vec![], vec![], 0),
            "left on {ep}"
        );
    }
    let mut state = h.state_etcd().await;
    // H: no reservation record outlives its datastore.
    for prefix in [
        "/kamajid/v1/tenants/",
        "/kamajid/v1/placements/",
        "/kamajid/v1/reservations/",
    ] {
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

/// One bad input: the attribute lines of the tenant, the attribute the error must point at,
/// and a phrase of the message.
struct Bad {
    case: &'static str,
    body: &'static str,
    attribute: &'static str,
    says: &'static str,
}

const fn bad(
    case: &'static str,
    body: &'static str,
    attribute: &'static str,
    says: &'static str,
) -> Bad {
    Bad {
        case,
        body,
        attribute,
        says,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_inputs_fail_naming_the_attribute_and_create_nothing() {
    // A real admin cluster; no pods need to run (the one tenant made here is never used).
    let admin = AdminCluster::start().await;
    let h = Harness::start_with_admin_cluster(Some(admin.kubeconfig.clone())).await;
    let p = pool(&h).await;
    // Registered once, outside the per-case root modules.
    let w = h.workdir("pool");
    w.write(&p.hcl);
    w.must_apply();
    // A tenant that exists already, made without Terraform.
    let mut t = h.tenants().await;
    let spec = v1::TenantClusterSpec {
        kubernetes_version: "1.35.2".into(),
        replicas: 1,
        network: Some(v1::Network {
            service_cidr: "10.96.0.0/12".into(),
            pod_cidr: "10.244.0.0/16".into(),
            dns_service_ip: "10.96.0.10".into(),
            port: 6443,
            service_type: v1::ServiceType::LoadBalancer as i32,
            ..Default::default()
        }),
        ..Default::default()
    };
    t.create_tenant_cluster(v1::CreateTenantClusterRequest {
        name: "taken".into(),
        spec: Some(spec),
        validate_only: false,
        planned_datastores: Vec::new(),
    })
    .await
    .expect("create taken");

    let plan_time = [
        bad("name-syntax", "  name = \"Bad_Name\"\n  kubernetes_version = \"1.35.2\"\n", "name", "DNS-1123"),
        bad("name-length", "  name = \"a-name-that-is-far-too-long-for-a-tenant-cluster-xyz\"\n  kubernetes_version = \"1.35.2\"\n", "name", "longer than 50"),
        bad("name-taken", "  name = \"taken\"\n  kubernetes_version = \"1.35.2\"\n", "name", "Import it with"),
        bad("version-old", "  name = \"t\"\n  kubernetes_version = \"1.20.0\"\n", "kubernetes_version", "not supported"),
        bad("version-syntax", "  name = \"t\"\n  kubernetes_version = \"latest\"\n", "kubernetes_version", "not a Kubernetes version"),
        bad("version-from-variable", "  name = \"t\"\n  kubernetes_version = var.k8s\n", "kubernetes_version", "not supported"),
        bad("replicas-zero", "  name = \"t\"\n  kubernetes_version = \"1.35.2\"\n  replicas = 0\n", "replicas", "between 1 and 9"),
        bad("replicas-many", "  name = \"t\"\n  kubernetes_version = \"1.35.2\"\n  replicas = 12\n", "replicas", "between 1 and 9"),
        // G: numbers the API cannot carry are judged as written, on their attribute.
        bad("replicas-negative", "  name = \"t\"\n  kubernetes_version = \"1.35.2\"\n  replicas = -1\n", "replicas", "-1 is not between 1 and 9"),
        bad("replicas-fraction", "  name = \"t\"\n  kubernetes_version = \"1.35.2\"\n  replicas = 1.5\n", "replicas", "1.5 is not a whole number"),
        bad("port-huge", "  name = \"t\"\n  kubernetes_version = \"1.35.2\"\n  network {\n    port = pow(2, 63)\n  }\n", "port", "is too large: whole numbers here are at most"),
        bad("port-negative", "  name = \"t\"\n  kubernetes_version = \"1.35.2\"\n  network {\n    port = -443\n  }\n", "port", "-443 is not a TCP port"),
        bad("datastore-syntax", "  name = \"t\"\n  kubernetes_version = \"1.35.2\"\n  datastore = \"Shard_A\"\n", "datastore", "DNS-1123"),
        bad("datastore-and-selector", "  name = \"t\"\n  kubernetes_version = \"1.35.2\"\n  datastore = \"shard-a\"\n  datastore_selector = { tier = \"gold\" }\n", "datastore_selector", "not both"),
        bad("selector-syntax", "  name = \"t\"\n  kubernetes_version = \"1.35.2\"\n  datastore_selector = { \"bad key\" = \"x\" }\n", "datastore_selector", "invalid"),
        bad("service-cidr-syntax", "  name = \"t\"\n  kubernetes_version = \"1.35.2\"\n  network {\n    service_cidr = \"10.96.0.0/33\"\n  }\n", "service_cidr", "too small"),
        bad("service-cidr-host-bits", "  name = \"t\"\n  kubernetes_version = \"1.35.2\"\n  network {\n    service_cidr = \"10.96.0.1/12\"\n    dns_service_ip = \"10.96.0.10\"\n  }\n", "service_cidr", "host bits"),
        bad("pod-cidr-overlap", "  name = \"t\"\n  kubernetes_version = \"1.35.2\"\n  network {\n    pod_cidr = \"10.96.0.0/16\"\n  }\n", "pod_cidr", "overlaps"),
        bad("dns-outside", "  name = \"t\"\n  kubernetes_version = \"1.35.2\"\n  network {\n    dns_service_ip = \"192.168.0.10\"\n  }\n", "dns_service_ip", "outside service_cidr"),
        bad("dns-not-ip", "  name = \"t\"\n  kubernetes_version = \"1.35.2\"\n  network {\n    dns_service_ip = \"dns\"\n  }\n", "dns_service_ip", "not an IP"),
        bad("port", "  name = \"t\"\n  kubernetes_version = \"1.35.2\"\n  network {\n    port = 70000\n  }\n", "port", "1 to 65535"),
        bad("service-type", "  name = \"t\"\n  kubernetes_version = \"1.35.2\"\n  network {\n    service_type = \"Ingress\"\n  }\n", "service_type", "ClusterIP, NodePort or LoadBalancer"),
        bad("endpoint-address", "  name = \"t\"\n  kubernetes_version = \"1.35.2\"\n  network {\n    endpoint_address = \"not a host!\"\n  }\n", "endpoint_address", "neither an IP"),
        bad("extra-sans", "  name = \"t\"\n  kubernetes_version = \"1.35.2\"\n  network {\n    extra_sans = [\"ok.example\", \"-bad-\"]\n  }\n", "extra_sans", "neither an IP"),
        bad("cpu-quantity", "  name = \"t\"\n  kubernetes_version = \"1.35.2\"\n  resources {\n    apiserver {\n      cpu_request = \"lots\"\n    }\n  }\n", "cpu_request", "quantity"),
        bad("memory-quantity", "  name = \"t\"\n  kubernetes_version = \"1.35.2\"\n  resources {\n    scheduler {\n      memory_limit = \"1GB\"\n    }\n  }\n", "memory_limit", "quantity"),
        bad("admission-plugin", "  name = \"t\"\n  kubernetes_version = \"1.35.2\"\n  admission_plugins = [\"node-restriction\"]\n", "admission_plugins", "NodeRestriction"),
        bad("managed-flag", "  name = \"t\"\n  kubernetes_version = \"1.35.2\"\n  extra_args {\n    apiserver = { \"etcd-servers\" = \"https://elsewhere:2379\" }\n  }\n", "apiserver", "set by kamajid"),
        bad("flag-dashes", "  name = \"t\"\n  kubernetes_version = \"1.35.2\"\n  extra_args {\n    scheduler = { \"--v\" = \"4\" }\n  }\n", "scheduler", "without leading dashes"),
        bad("labels", "  name = \"t\"\n  kubernetes_version = \"1.35.2\"\n  labels = { \"team\" = \"a value with spaces\" }\n", "labels", "invalid"),
        bad("timeouts-zero", "  name = \"t\"\n  kubernetes_version = \"1.35.2\"\n  timeouts {\n    delete = \"0s\"\n  }\n", "delete", "longer than 0s"),
        bad("timeouts", "  name = \"t\"\n  kubernetes_version = \"1.35.2\"\n  timeouts {\n    create = \"soon\"\n  }\n", "create", "duration"),
        bad("authorized-network", "  name = \"t\"\n  kubernetes_version = \"1.35.2\"\n  network {\n    authorized_networks = [\"203.0.113.0/24\", \"10.0.0.1/8\"]\n  }\n", "authorized_networks", "host bits set"),
        bad("authorized-network-syntax", "  name = \"t\"\n  kubernetes_version = \"1.35.2\"\n  network {\n    authorized_networks = [\"office\"]\n  }\n", "authorized_networks", "CIDR notation"),
        bad("encryption-resource", "  name = \"t\"\n  kubernetes_version = \"1.35.2\"\n  encryption {\n    resources = [\"Config Maps\"]\n  }\n", "resources", "as the apiserver names it"),
        bad("key-rotation-negative", "  name = \"t\"\n  kubernetes_version = \"1.35.2\"\n  encryption {\n    key_rotation = -1\n  }\n", "key_rotation", "-1 is not a rotation number"),
        bad("oidc-http", "  name = \"t\"\n  kubernetes_version = \"1.35.2\"\n  authentication {\n    oidc {\n      issuer_url = \"http://idp.example\"\n      client_id = \"k\"\n    }\n  }\n", "issuer_url", "not an https URL"),
        bad("oidc-ca", "  name = \"t\"\n  kubernetes_version = \"1.35.2\"\n  authentication {\n    oidc {\n      issuer_url = \"https://idp.example\"\n      client_id = \"k\"\n      ca_certificate = \"not a pem\"\n    }\n  }\n", "ca_certificate", "PEM"),
        bad("audit-preset", "  name = \"t\"\n  kubernetes_version = \"1.35.2\"\n  audit {\n    preset = \"everything\"\n  }\n", "preset", "metadata, request, request_response"),
        bad("audit-empty", "  name = \"t\"\n  kubernetes_version = \"1.35.2\"\n  audit {\n  }\n", "audit", "set a preset"),
        bad("audit-age", "  name = \"t\"\n  kubernetes_version = \"1.35.2\"\n  audit {\n    preset = \"metadata\"\n    max_age_days = 0\n  }\n", "max_age_days", "between 1 and 3650"),
        bad("audit-policy", "  name = \"t\"\n  kubernetes_version = \"1.35.2\"\n  audit {\n    policy = \"rules: []\"\n  }\n", "policy", "audit.k8s.io/v1 Policy"),
        bad("datastore-unknown", "  name = \"t-unknown\"\n  kubernetes_version = \"1.35.2\"\n  datastore = \"nowhere\"\n", "datastore", "does not exist"),
        bad("selector-unmatched", "  name = \"t-unmatched\"\n  kubernetes_version = \"1.35.2\"\n  datastore_selector = { tier = \"platinum\" }\n", "datastore_selector", "labels do not match"),
    ];
    // Every one at plan, kamajid's judgements too (no datastore of that name, none whose labels
    // match).
    let run = |b: &Bad| {
        let w = h.workdir(b.case);
        w.write(&format!(
            "{PROVIDER_HCL}\nvariable \"k8s\" {{\n  default = \"1.99.0\"\n}}\nresource \"kamaji_tenant_cluster\" \"t\" {{\n{}}}\n",
            b.body
        ));
        let r = w.tf(&["plan", "-input=false"]);
        let out = r.output();
        assert!(!r.ok(), "{}: accepted:\n{out}", b.case);
        assert!(
            points_at(&out, b.attribute),
            "{}: error does not point at {}:\n{out}",
            b.case,
            b.attribute
        );
        assert!(
            out.contains(b.says),
            "{}: error lacks {:?}:\n{out}",
            b.case,
            b.says
        );
        assert!(
            !out.contains("stack backtrace"),
            "{}: backtrace:\n{out}",
            b.case
        );
        assert!(
            !planned_changes(&out),
            "{}: failed only after planning",
            b.case
        );
    };
    std::thread::scope(|s| {
        for b in &plan_time {
            s.spawn(|| run(b));
        }
    });
    assert!(plan_time.len() >= 20);

    // Nothing was created: kamajid holds only `taken`, the admin cluster only its objects.
    let names: Vec<String> = t
        .list_tenant_clusters(v1::ListTenantClustersRequest::default())
        .await
        .unwrap()
        .into_inner()
        .tenant_clusters
        .into_iter()
        .map(|c| c.name)
        .collect();
    assert_eq!(names, ["taken"]);
    let left = admin.kamajid_objects();
    assert!(
        !left.is_empty() && left.iter().all(|o| o.contains("tenant-taken")),
        "{left:?}"
    );
}

/// `examples/quickstart` as shipped: two datastores and two tenant clusters, spread.
#[tokio::test(flavor = "multi_thread")]
async fn quickstart_runs_two_tenants_on_two_shards() {
    // As `make demo` runs it: the process runtime, on the real programs.
    let root = tempfile::tempdir().unwrap();
    let (h, tenants_dir, _) = Harness::with_process_runtime(root.path(), &k8s::bin_dir(), 0).await;
    let _reaper = Reaper(tenants_dir.clone());
    let a = h.etcd("qs-1", EtcdSecurity::default()).await;
    let b = h.etcd("qs-2", EtcdSecurity::default()).await;
    let w = h.workdir("quickstart");
    let example =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/quickstart/main.tf");
    w.write(&std::fs::read_to_string(example).expect("quickstart"));
    w.write_file(
        "terraform.tfvars.json",
        &serde_json::json!({
            "kamaji_endpoint": h.endpoint,
            "pki_dir": w.dir,
            "datastore_endpoints": [a.endpoint, b.endpoint],
        })
        .to_string(),
    );
    w.must_apply();
    let out = &w.state_json()["values"]["outputs"];
    let tenants = &out["tenant_clusters"]["value"];
    let mut shards: Vec<&str> = ["alpha", "beta"]
        .iter()
        .map(|n| {
            assert_eq!(tenants[n]["status"], "Ready", "{tenants:#}");
            // The quickstart's default: the newest version the tests build.
            assert_eq!(
                tenants[n]["version"],
                acceptance_tests::k8s::newest().as_str()
            );
            tenants[n]["datastore"].as_str().unwrap()
        })
        .collect();
    shards.sort();
    assert_eq!(shards, ["etcd-1", "etcd-2"]);
    for ds in ["etcd-1", "etcd-2"] {
        assert_eq!(out["datastores"]["value"][ds]["tenants"], 1, "{out:#}");
    }
    assert_eq!(out["kubeconfigs"]["sensitive"], true);
    assert!(out["kubeconfigs"]["value"]["alpha"]
        .as_str()
        .unwrap()
        .contains("kubernetes-admin"));
    let r = w.plan_code();
    assert_eq!(r.code, 0, "quickstart drifts:\n{}", r.output());
    for name in ["alpha", "beta"] {
        let k = Kubectl::new(
            &w.dir.join(format!("{name}.kubeconfig")),
            out["kubeconfigs"]["value"][name].as_str().unwrap(),
        );
        k.must(&["get", "ns", "kube-system"]);
    }
    let r = w.tf(&["destroy", "-auto-approve", "-input=false"]);
    assert!(r.ok(), "{}", r.output());
    assert!(pids_under(&tenants_dir).is_empty(), "tenant processes left");
}
