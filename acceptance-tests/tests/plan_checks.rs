//! Bad input is refused at `terraform plan`, on the attribute at fault, wherever the rule is
//! knowable before the control plane runs; what only the control plane can judge ends the apply
//! within seconds with its own words. Real terraform (or tofu), a real kamajid with the process
//! runtime, the real kube-apiserver, a real etcd shard.

use std::time::Instant;

use acceptance_tests::k8s;
use acceptance_tests::*;

fn tenant(name: &str, version: &str, body: &str) -> String {
    format!(
        "resource \"kamaji_tenant_cluster\" \"{name}\" {{\n  name = \"{name}\"\n  kubernetes_version = \"{version}\"\n{body}\n}}\n"
    )
}

/// `s` with every run of whitespace (terraform's line wrapping) made one space.
fn flat(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_is_refused_at_plan_on_its_attribute() {
    let root = tempfile::tempdir().unwrap();
    let (h, tenants, _) = Harness::with_process_runtime(root.path(), &k8s::bin_dir(), 0).await;
    let _reaper = Reaper(tenants);
    let shard = h.etcd("shard", EtcdSecurity::default()).await;
    let mut ds = DatastoreHcl::new("a", "a", &shard.endpoint);
    ds.extra = "  labels = { tier = \"gold\" }\n".into();
    let pool = h.workdir("pool");
    pool.write(&format!("{PROVIDER_HCL}\n{}", ds.render()));
    pool.must_apply();
    let v = k8s::newest();
    let oidc = |extra: &str| {
        format!(
            "  authentication {{\n    oidc {{\n      issuer_url = \"https://idp.example\"\n      client_id = \"kamaji\"\n{extra}\n    }}\n  }}\n"
        )
    };
    // (body, attribute the error must point at, words it must say)
    let cases: Vec<(String, &str, &str)> = vec![
        // The datastore: one that does not exist, a selector nothing matches.
        ("  datastore = \"nope\"".into(), "datastore", "does not exist"),
        (
            "  datastore_selector = { tier = \"silver\" }".into(),
            "datastore_selector",
            "labels do not match",
        ),
        // Quotas and budgets: 0 is not "the default".
        ("  storage_quota_bytes = 0".into(), "storage_quota_bytes", "0 is not between"),
        (
            "  write_budget_bytes_per_second = 0".into(),
            "write_budget_bytes_per_second",
            "0 is not between",
        ),
        // What kube-apiserver would refuse at start.
        ("  admission_plugins = [\"Foo\"]".into(), "admission_plugins", "is not an admission plugin"),
        ("  admission_plugins = [\"EventRateLimit\"]".into(), "admission_plugins", "configuration file"),
        (
            oidc("").replace("https://idp.example", "https://kubernetes.default.svc.cluster.local"),
            "issuer_url",
            "service-account issuer",
        ),
        (
            oidc("").replace("https://idp.example", "https://u:p@idp.example"),
            "issuer_url",
            "user or a password",
        ),
        (oidc("      groups_prefix = \"oidc:\""), "groups_prefix", "needs groups_claim"),
        (oidc("      username_prefix = \"system:\""), "username_prefix", "reserves"),
        (
            "  audit {\n    policy = \"apiVersion: audit.k8s.io/v1\\nkind: Policy\\nrules: []\"\n  }".into(),
            "policy",
            "no rules",
        ),
        (
            "  audit {\n    policy = \"apiVersion: audit.k8s.io/v1\\nkind: Policy\\nrules:\\n- level: All\"\n  }".into(),
            "policy",
            "rules[0].level",
        ),
        (
            "  network {\n    service_cidr = \"fd00::/108\"\n    pod_cidr = \"fd01::/64\"\n    dns_service_ip = \"fd00::a\"\n  }".into(),
            "service_cidr",
            "IPv6 range",
        ),
        // Flags that break isolation or storage.
        (
            "  extra_args { apiserver = { \"etcd-servers-overrides\" = \"/events#https://x:2379\" } }".into(),
            "extra_args",
            "set by kamajid",
        ),
        (
            "  extra_args { apiserver = { \"storage-backend\" = \"etcd2\" } }".into(),
            "extra_args",
            "set by kamajid",
        ),
        (
            "  extra_args { apiserver = { \"etcd-compaction-interval\" = \"5m\" } }".into(),
            "extra_args",
            "set by kamajid",
        ),
        // Requests above limits; a version there are no binaries for.
        (
            "  resources {\n    apiserver {\n      memory_request = \"2Gi\"\n      memory_limit = \"1Gi\"\n    }\n  }".into(),
            "memory_request",
            "more than memory_limit",
        ),
        ("".into(), "kubernetes_version", "no kube-apiserver for Kubernetes v1.36.99"),
        // A new cluster has nothing to rotate.
        (
            "  credential_rotation {\n    generation = 1\n    phase = \"completed\"\n  }".into(),
            "generation",
            "starts at generation 0",
        ),
        (
            "  credential_rotation {\n    generation = 0\n    phase = \"started\"\n  }".into(),
            "phase",
            "nothing to rotate|no credentials to rotate",
        ),
    ];
    let mut refused = 0;
    let total = cases.len() + 1;
    for (i, (body, attr, says)) in cases.iter().enumerate() {
        let version = if *attr == "kubernetes_version" {
            "1.36.99"
        } else {
            v.as_str()
        };
        let w = h.workdir(&format!("case-{i}"));
        w.write(&format!(
            "{PROVIDER_HCL}\n{}",
            tenant(&format!("t{i}"), version, body)
        ));
        let r = w.tf(&["plan", "-input=false"]);
        let out = r.output();
        assert!(!r.ok(), "plan accepted `{body}`:\n{out}");
        assert!(
            points_at(&out, attr)
                || out.contains(&format!("Invalid {attr}"))
                || flat(&out).contains(&format!(".{attr}")),
            "`{body}`: not on {attr}:\n{out}"
        );
        assert!(
            says.split('|').any(|s| flat(&out).contains(s)),
            "`{body}`: does not say {says:?}:\n{out}"
        );
        refused += 1;
    }
    // A token for a cluster that does not exist.
    let w = h.workdir("token");
    w.write(&format!(
        "{PROVIDER_HCL}\nresource \"kamaji_bootstrap_token\" \"t\" {{\n  tenant_cluster = \"nobody\"\n}}\n"
    ));
    let r = w.tf(&["plan", "-input=false"]);
    assert!(
        !r.ok() && points_at(&r.output(), "tenant_cluster"),
        "{}",
        r.output()
    );
    refused += 1;
    eprintln!("{refused} of {total} bad inputs refused at plan, each on its attribute");

    // What was refused before but is valid: a wildcard SAN, a quantity with an exponent; and a
    // selector that only a datastore of the same plan matches.
    let w = h.workdir("valid");
    let mut silver = DatastoreHcl::new("s", "s", &shard.endpoint);
    silver.extra = "  labels = { tier = \"silver\" }\n".into();
    w.write(&format!(
        "{PROVIDER_HCL}\n{}\n{}",
        silver.render(),
        tenant(
            "ok",
            &v,
            "  datastore_selector = { tier = \"silver\" }\n  network {\n    extra_sans = [\"*.example.com\"]\n  }\n  resources {\n    apiserver {\n      cpu_request = \"1e0\"\n    }\n  }\n  depends_on = [kamaji_datastore.s]"
        )
    ));
    let r = w.tf(&["plan", "-input=false"]);
    assert!(r.ok(), "valid input refused:\n{}", r.output());
}

/// A control plane that cannot start as written (a flag value only kube-apiserver can judge)
/// ends the apply within seconds with the apiserver's own words, not at the create timeout;
/// fixed in the configuration, it converges.
#[tokio::test(flavor = "multi_thread")]
async fn a_control_plane_that_does_not_start_ends_the_apply_with_its_own_error() {
    let root = tempfile::tempdir().unwrap();
    let (h, tenants, _) = Harness::with_process_runtime(root.path(), &k8s::bin_dir(), 1).await;
    let _reaper = Reaper(tenants);
    let shard = h.etcd("shard", EtcdSecurity::default()).await;
    let v = k8s::newest();
    let w = h.workdir("broken");
    let config = |args: &str| {
        format!(
            "{PROVIDER_HCL}\n{}\n{}",
            DatastoreHcl::new("a", "a", &shard.endpoint).render(),
            tenant(
                "broken",
                &v,
                &format!("  extra_args {{ apiserver = {{ {args} }} }}\n  depends_on = [kamaji_datastore.a]")
            )
        )
    };
    w.write(&config("\"max-requests-inflight\" = \"abc\""));
    let start = Instant::now();
    let r = w.apply();
    let took = start.elapsed();
    let out = flat(&r.output());
    eprintln!(
        "the apply ended after {took:?}: {}",
        out.lines().next().unwrap_or_default()
    );
    assert!(!r.ok());
    assert!(out.contains("does not start"), "{out}");
    assert!(
        out.contains("invalid argument \"abc\" for \"--max-requests-inflight\" flag"),
        "{out}"
    );
    assert!(
        took.as_secs() < 120,
        "took {took:?}: the create timeout is 20 minutes"
    );
    // Fixed: converges in place.
    w.write(&config("\"max-requests-inflight\" = \"300\""));
    w.must_apply();
    assert_eq!(
        w.resource("kamaji_tenant_cluster.broken")["values"]["status"],
        "Ready"
    );
    let r = w.tf(&["destroy", "-auto-approve", "-input=false"]);
    assert!(r.ok(), "{}", r.output());
}
