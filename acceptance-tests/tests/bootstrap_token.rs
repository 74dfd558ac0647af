//! Worker join through the real `terraform` (or tofu) CLI: a tenant cluster, the shipped
//! `examples/modules/worker-cloud-init` module and its `kamaji_bootstrap_token`, against a real
//! kamajid, real etcd and a real admin cluster whose node runs the tenant's control plane as
//! pods. What a joining worker then does is in worker_join.rs.

use acceptance_tests::admin_cluster;
use acceptance_tests::k8s::{self, Kubectl};
use acceptance_tests::*;

const TOKEN: &str = "module.join.kamaji_bootstrap_token.this";

/// The token resource inside the module, from state.
fn token(w: &Workdir) -> serde_json::Value {
    let state = w.state_json();
    state["values"]["root_module"]["child_modules"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|m| m["resources"].as_array().cloned().unwrap_or_default())
        .find(|r| r["address"] == TOKEN)
        .map(|r| r["values"].clone())
        .unwrap_or_else(|| panic!("{TOKEN} not in state:\n{state:#}"))
}

/// kubeadm's recipe for `--discovery-token-ca-cert-hash`, run with openssl.
fn openssl_ca_hash(pem: &str) -> String {
    let pipe = openssl;
    let pubkey = pipe(&["x509", "-pubkey", "-noout"], pem.as_bytes());
    let der = pipe(&["pkey", "-pubin", "-outform", "der"], &pubkey);
    let digest = String::from_utf8(pipe(&["dgst", "-sha256", "-r"], &der)).unwrap();
    digest.split_whitespace().next().unwrap().to_owned()
}

fn config(module: &str, version: &str, port: u16, ttl: &str, addons: &str) -> String {
    format!(
        r#"
resource "kamaji_tenant_cluster" "acme" {{
  name               = "acme"
  kubernetes_version = "{version}"
  datastore          = kamaji_datastore.a.name
  network {{
    port = {port}
  }}
  {addons}
}}

module "join" {{
  source             = "{module}"
  tenant_cluster     = kamaji_tenant_cluster.acme.name
  kubernetes_version = kamaji_tenant_cluster.acme.kubernetes_version
  token_ttl          = "{ttl}"
  node_labels        = {{ pool = "general" }}
}}

output "cloud_init" {{
  value     = module.join.cloud_init
  sensitive = true
}}
output "expires_at" {{ value = module.join.token_expires_at }}
"#
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_module_joins_workers_with_an_expiring_token_that_terraform_replaces() {
    let (_admin, _pods, h) = admin_cluster::harness(vec![]).await;
    let (version, port) = (k8s::newest(), free_port());
    let shard = h.etcd("shard", EtcdSecurity::default()).await;
    let ds = DatastoreHcl::new("a", "shard", &shard.endpoint);
    let module = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/modules/worker-cloud-init")
        .canonicalize()
        .unwrap();
    let module = module.display().to_string();
    let w = h.workdir("join");
    let write_with = |ttl: &str, addons: &str| {
        w.write(&format!(
            "{PROVIDER_HCL}\n{}\n{}",
            ds.render(),
            config(&module, &version, port, ttl, addons)
        ))
    };
    let write = |ttl: &str| write_with(ttl, "");
    write("2h");
    let got = w.tf(&["get", "-no-color"]);
    assert!(got.ok(), "terraform get:\n{}", got.output());
    w.must_apply();

    // The token is kubeadm's, in the tenant, and the join command carries the right hash.
    let acme = w.resource("kamaji_tenant_cluster.acme")["values"].clone();
    // The LoadBalancer Service's address (handed out as a cloud would), on the tenant's port.
    let endpoint = acme["endpoint"].as_str().unwrap().to_owned();
    assert!(
        endpoint.starts_with("https://198.51.100.") && endpoint.ends_with(&format!(":{port}")),
        "{endpoint}"
    );
    let tenant = Kubectl::new(
        &w.dir.join("acme.kubeconfig"),
        acme["admin_kubeconfig"].as_str().unwrap(),
    );
    let ca = acme["cluster_ca_certificate"].as_str().unwrap();
    let hash = openssl_ca_hash(ca);
    let t = token(&w);
    let (id, tok) = (
        t["token_id"].as_str().unwrap().to_owned(),
        t["token"].as_str().unwrap().to_owned(),
    );
    assert!(
        tok.starts_with(&format!("{id}.")) && tok.len() == 23,
        "{tok}"
    );
    assert_eq!(t["ca_cert_hash"], format!("sha256:{hash}"));
    assert_eq!(acme["ca_cert_hash"], hash.as_str());
    assert_eq!(
        t["join_command"],
        format!(
            "kubeadm join {} --token {tok} --discovery-token-ca-cert-hash sha256:{hash}",
            endpoint.trim_start_matches("https://")
        )
    );
    let secret_name = format!("bootstrap-token-{id}");
    let secret = tenant.json(&["secret", &secret_name, "-n", "kube-system"]);
    assert_eq!(secret["type"], "bootstrap.kubernetes.io/token");
    let data = |s: &serde_json::Value, k: &str| -> String {
        use base64::Engine;
        String::from_utf8(
            base64::engine::general_purpose::STANDARD
                .decode(s["data"][k].as_str().unwrap_or_default())
                .unwrap(),
        )
        .unwrap()
    };
    assert_eq!(
        data(&secret, "expiration"),
        t["expires_at"].as_str().unwrap()
    );
    assert_eq!(data(&secret, "description"), "workers of acme (terraform)");
    let sensitive = &w.state_json()["values"]["root_module"]["child_modules"][0]["resources"][0]
        ["sensitive_values"];
    assert_eq!(sensitive["token"], true, "{sensitive:#}");
    assert_eq!(sensitive["join_command"], true);
    let out = w.tf(&["output", "-raw", "cloud_init"]);
    assert!(out.stdout.starts_with("#cloud-config"), "{}", out.stdout);
    assert!(out.stdout.contains(t["join_command"].as_str().unwrap()));
    let minor = version.rsplit_once('.').unwrap().0;
    assert!(out
        .stdout
        .contains(&format!("pkgs.k8s.io/core:/stable:/v{minor}/deb/")));
    assert!(out.stdout.contains("--node-labels=pool=general"));
    assert_eq!(w.plan_code().code, 0, "re-plan not empty");

    // Deleted inside the tenant: the next plan creates a new token.
    tenant.must(&["delete", "secret", &secret_name, "-n", "kube-system"]);
    let plan = w.plan_json();
    assert_eq!(planned_actions(&plan)[TOKEN], ["create"], "{plan:#}");
    w.must_apply();
    let second = token(&w)["token_id"].as_str().unwrap().to_owned();
    assert_ne!(second, id);

    // Expired (whether or not the tenant's token cleaner removed it yet): planned for re-creation.
    tenant.must(&[
        "patch",
        "secret",
        &format!("bootstrap-token-{second}"),
        "-n",
        "kube-system",
        "--type=merge",
        "-p",
        r#"{"stringData":{"expiration":"2020-01-01T00:00:00Z"}}"#,
    ]);
    assert_eq!(planned_actions(&w.plan_json())[TOKEN], ["create"]);
    w.must_apply();
    let third = token(&w)["token_id"].as_str().unwrap().to_owned();

    // A new ttl replaces the token; the old one is deleted.
    write("48h");
    assert_eq!(planned_actions(&w.plan_json())[TOKEN], ["delete", "create"]);
    w.must_apply();
    let gone = |id: &str| {
        let r = tenant.run(&[
            "get",
            "secret",
            &format!("bootstrap-token-{id}"),
            "-n",
            "kube-system",
        ]);
        !r.ok && r.stderr.contains("NotFound")
    };
    assert!(gone(&third), "replaced token left in the tenant");

    // Bad input is refused at plan, naming the attribute.
    // J: "0s" is a duration, too short, not a misread one.
    for (ttl, msg) in [
        ("30s", "out of range"),
        ("0s", "\"0s\" is out of range"),
        ("soon", "not a duration"),
    ] {
        write(ttl);
        let r = w.plan_code();
        assert_eq!(r.code, 1, "{}", r.output());
        assert!(
            r.output().contains("Invalid ttl") && r.output().contains(msg),
            "{}",
            r.output()
        );
    }
    write("48h");

    // Add-ons are on by default, at the tenant's version; turning kube-proxy off removes it in place.
    const KUBE_PROXY: [&str; 4] = ["daemonset", "kube-proxy", "-n", "kube-system"];
    const COREDNS: [&str; 4] = ["deployment", "coredns", "-n", "kube-system"];
    let exists = |what: &[&str]| {
        let mut a = vec!["get"];
        a.extend_from_slice(what);
        tenant.run(&a).ok
    };
    let acme = w.resource("kamaji_tenant_cluster.acme")["values"].clone();
    assert_eq!(
        acme["addons"],
        serde_json::json!({"coredns": true, "kube_proxy": true})
    );
    let ds = tenant.json(&KUBE_PROXY);
    assert_eq!(
        ds["spec"]["template"]["spec"]["containers"][0]["image"],
        format!("registry.k8s.io/kube-proxy:v{version}")
    );
    assert!(exists(&COREDNS), "coredns");
    write_with("48h", "addons {\n    kube_proxy = false\n  }");
    assert_eq!(
        planned_actions(&w.plan_json())["kamaji_tenant_cluster.acme"],
        ["update"]
    );
    w.must_apply();
    assert!(!exists(&KUBE_PROXY), "kube-proxy not removed");
    assert!(exists(&COREDNS), "coredns removed too");
    assert_eq!(w.plan_code().code, 0, "re-plan not empty");

    // Destroying the module deletes its token from the running tenant; then everything goes.
    let last = token(&w)["token_id"].as_str().unwrap().to_owned();
    let r = w.tf(&[
        "destroy",
        "-auto-approve",
        "-input=false",
        "-target=module.join",
    ]);
    assert!(r.ok(), "destroy of the module:\n{}", r.output());
    assert!(gone(&last), "token left after destroy");
    let r = w.tf(&["destroy", "-auto-approve", "-input=false"]);
    assert!(r.ok(), "destroy:\n{}", r.output());
}
