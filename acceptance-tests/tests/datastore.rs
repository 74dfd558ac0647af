//! `kamaji_datastore` through the real terraform CLI, against a real kamajid and real etcd.

use acceptance_tests::*;
use kamaji_proto::v1;

fn config(blocks: &[String], extra: &str) -> String {
    format!("{PROVIDER_HCL}\n{}\n{extra}", blocks.join("\n"))
}

#[tokio::test(flavor = "multi_thread")]
async fn lifecycle_apply_replan_update_replace_import_drift_destroy() {
    let h = Harness::start().await;
    let etcd_a = h.etcd("etcd-a", EtcdSecurity::default()).await;
    let etcd_b = h.etcd("etcd-b", EtcdSecurity::default()).await;
    let w = h.workdir("lifecycle");
    let data = r#"
data "kamaji_datastores" "standard" {
  labels     = { tier = "standard" }
  depends_on = [kamaji_datastore.a, kamaji_datastore.b]
}
data "kamaji_datastore" "a" {
  name       = kamaji_datastore.a.name
}
output "standard" { value = data.kamaji_datastores.standard.names }
output "a_status" { value = data.kamaji_datastore.a.status }
"#;
    let mut a = DatastoreHcl::new("a", "shard-a", &etcd_a.endpoint);
    a.extra = "  labels = { tier = \"standard\" }".into();
    let mut b = DatastoreHcl::new("b", "shard-b", &etcd_b.endpoint);
    b.extra = "  labels = { tier = \"premium\" }".into();

    // Create.
    w.write(&config(&[a.render(), b.render()], data));
    w.must_apply();
    let ra = w.resource("kamaji_datastore.a");
    assert_eq!(ra["values"]["status"], "Ready", "{ra:#}");
    assert_eq!(ra["values"]["id"], "shard-a");
    assert!(ra["values"]["etcd_version"]
        .as_str()
        .unwrap()
        .starts_with("3."));
    assert_eq!(
        ra["values"]["quota_bytes"],
        2i64 * 1024 * 1024 * 1024,
        "default quota"
    );
    assert_eq!(ra["values"]["schedulable"], true, "default schedulable");
    assert_eq!(ra["values"]["tenant_count"], 0);
    assert_eq!(ra["sensitive_values"]["client_key"], true);
    assert_eq!(ra["sensitive_values"]["client_ca_key"], true);
    let outputs = &w.state_json()["values"]["outputs"];
    assert_eq!(
        outputs["standard"]["value"],
        serde_json::json!(["shard-a"]),
        "label filter"
    );
    assert_eq!(outputs["a_status"]["value"], "Ready");
    assert_eq!(h.datastore_names().await, ["shard-a", "shard-b"]);

    // Nothing changes on a second plan.
    let p = w.plan_code();
    assert_eq!(p.code, 0, "plan after apply is not empty:\n{}", p.output());

    // In-place update.
    a.extra = "  labels = { tier = \"standard\", zone = \"z1\" }\n  quota_bytes = 4294967296\n  max_tenants = 40\n  schedulable = false".into();
    w.write(&config(&[a.render(), b.render()], data));
    let plan = w.plan_json();
    let actions = planned_actions(&plan);
    assert_eq!(actions["kamaji_datastore.a"], ["update"], "{actions:?}");
    assert_eq!(actions["kamaji_datastore.b"], ["no-op"], "{actions:?}");
    w.must_apply();
    let got = h
        .client()
        .await
        .get_datastore(v1::GetDatastoreRequest {
            name: "shard-a".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let spec = got.spec.unwrap();
    assert_eq!(
        (spec.quota_bytes, spec.max_tenants, spec.schedulable),
        (4294967296, Some(40), false)
    );
    assert_eq!(spec.labels.get("zone").map(String::as_str), Some("z1"));
    assert_eq!(w.plan_code().code, 0, "plan after update is not empty");

    // Renaming replaces, and says why.
    b.name = "\"shard-b2\"".into();
    w.write(&config(&[a.render(), b.render()], data));
    let plan = w.plan_json();
    assert_eq!(
        planned_actions(&plan)["kamaji_datastore.b"],
        ["delete", "create"]
    );
    let rc = plan["resource_changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["address"] == "kamaji_datastore.b")
        .unwrap();
    assert_eq!(rc["change"]["replace_paths"], serde_json::json!([["name"]]));
    w.must_apply();
    assert_eq!(h.datastore_names().await, ["shard-a", "shard-b2"]);

    // Deleted outside Terraform: planned for creation, and apply brings it back.
    h.client()
        .await
        .delete_datastore(v1::DeleteDatastoreRequest {
            name: "shard-b2".into(),
        })
        .await
        .unwrap();
    let plan = w.plan_json();
    assert_eq!(planned_actions(&plan)["kamaji_datastore.b"], ["create"]);
    w.must_apply();
    assert_eq!(h.datastore_names().await, ["shard-a", "shard-b2"]);

    // Import into a fresh state: only the write-only keys are recorded, nothing is replaced.
    let w2 = h.workdir("imported");
    w2.write(&config(&[a.render()], ""));
    let r = w2.tf(&["import", "-input=false", "kamaji_datastore.a", "shard-a"]);
    assert!(r.ok(), "import failed:\n{}", r.output());
    let imported = w2.resource("kamaji_datastore.a");
    assert_eq!(imported["values"]["quota_bytes"], 4294967296i64);
    assert_eq!(
        imported["values"]["client_key"],
        serde_json::Value::Null,
        "keys never come back from kamajid"
    );
    let plan = w2.plan_json();
    assert_eq!(planned_actions(&plan)["kamaji_datastore.a"], ["update"]);
    w2.must_apply();
    assert_eq!(
        w2.plan_code().code,
        0,
        "plan after import+apply is not empty"
    );
    let r = w2.tf(&[
        "import",
        "-input=false",
        "kamaji_datastore.nope",
        "Not_A_Name",
    ]);
    assert!(!r.ok());

    // Destroy removes everything from kamajid.
    std::fs::remove_file(w2.dir.join("terraform.tfstate")).unwrap();
    let r = w.tf(&["destroy", "-auto-approve", "-input=false"]);
    assert!(r.ok(), "destroy failed:\n{}", r.output());
    assert!(h.datastore_names().await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn records_survive_a_kamajid_crash_and_the_new_process_keeps_probing() {
    let mut h = Harness::start().await;
    let mut etcd = h.etcd("etcd-r", EtcdSecurity::default()).await;
    let w = h.workdir("restart");
    w.write(&config(
        &[DatastoreHcl::new("r", "shard-r", &etcd.endpoint).render()],
        "",
    ));
    w.must_apply();
    h.restart_kamajid();
    let p = w.plan_code();
    assert_eq!(
        p.code,
        0,
        "plan after a kamajid restart is not empty:\n{}",
        p.output()
    );
    // The restarted process takes leadership and its health loop sees the datastore die.
    etcd.stop().await;
    let mut status = String::new();
    for _ in 0..60 {
        let r = w.tf(&["apply", "-refresh-only", "-auto-approve", "-input=false"]);
        assert!(r.ok(), "{}", r.output());
        status = w.resource("kamaji_datastore.r")["values"]["status"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if status == "Unreachable" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    assert_eq!(status, "Unreachable");
}

#[tokio::test(flavor = "multi_thread")]
async fn destroy_is_refused_while_tenants_are_placed_on_the_datastore() {
    let h = Harness::start().await;
    let etcd = h.etcd("etcd-t", EtcdSecurity::default()).await;
    let w = h.workdir("tenants");
    w.write(&config(
        &[DatastoreHcl::new("t", "shard-t", &etcd.endpoint).render()],
        "",
    ));
    w.must_apply();
    // A placement as the tenant reconciler records it.
    h.state_etcd()
        .await
        .put("/kamajid/v1/placements/shard-t/team-a", "{}", None)
        .await
        .unwrap();
    let r = w.tf(&["destroy", "-auto-approve", "-input=false"]);
    assert!(!r.ok());
    assert!(
        r.stderr.contains("team-a") && r.stderr.contains("still holds 1 tenant"),
        "{}",
        r.stderr
    );
    // J: the datastore is in use; no attribute of it is at fault.
    assert!(!r.stderr.contains("Invalid name"), "{}", r.stderr);
    assert_eq!(h.datastore_names().await, ["shard-t"]);
    // The refresh before the destroy recorded the tenant.
    assert_eq!(
        w.resource("kamaji_datastore.t")["values"]["tenant_count"],
        1
    );
}

/// One bad input: the HCL change, the attribute the error must name, and a phrase from the
/// message.
struct Bad {
    case: &'static str,
    hcl: DatastoreHcl,
    attribute: &'static str,
    says: &'static str,
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_inputs_fail_naming_the_attribute_and_store_nothing() {
    let h = Harness::start().await;
    let good = h.etcd("etcd-good", EtcdSecurity::default()).await;
    let no_auth = h
        .etcd(
            "etcd-noauth",
            EtcdSecurity {
                client_cert_auth: true,
                auth: false,
                ..Default::default()
            },
        )
        .await;
    let no_cert_auth = h
        .etcd(
            "etcd-nocert",
            EtcdSecurity {
                client_cert_auth: false,
                auth: false,
                ..Default::default()
            },
        )
        .await;
    let ep = good.endpoint.clone();
    let other_ca = new_ca("another CA").unwrap();
    let alice = issue(&h.pki.ca, "alice", &[]).unwrap();
    let old = expired(&h.pki.ca, "root");

    // Register one so a duplicate name can be refused at plan.
    let w = h.workdir("existing");
    w.write(&config(
        &[DatastoreHcl::new("x", "taken", &ep).render()],
        "",
    ));
    w.must_apply();

    let with = |f: &dyn Fn(&mut DatastoreHcl)| {
        let mut d = DatastoreHcl::new("bad", "bad-input", &ep);
        f(&mut d);
        d
    };
    let lit = |s: &str| format!("{s:?}");
    let plan_time = vec![
        Bad {
            case: "name-uppercase",
            hcl: with(&|d| d.name = lit("Bad_Name")),
            attribute: "name",
            says: "DNS-1123",
        },
        Bad {
            case: "name-too-long",
            hcl: with(&|d| d.name = lit(&"a".repeat(64))),
            attribute: "name",
            says: "DNS-1123",
        },
        Bad {
            case: "name-taken",
            hcl: with(&|d| d.name = lit("taken")),
            attribute: "name",
            says: "already has a datastore",
        },
        Bad {
            case: "no-endpoints",
            hcl: with(&|d| d.endpoints.clear()),
            attribute: "endpoints",
            says: "at least one",
        },
        Bad {
            case: "http-endpoint",
            hcl: with(&|d| d.endpoints = vec!["http://127.0.0.1:2379".into()]),
            attribute: "endpoints",
            says: "only https",
        },
        Bad {
            case: "no-port",
            hcl: with(&|d| d.endpoints = vec!["https://127.0.0.1".into()]),
            attribute: "endpoints",
            says: "no port",
        },
        Bad {
            case: "not-a-url",
            hcl: with(&|d| d.endpoints = vec!["etcd.local:2379".into()]),
            attribute: "endpoints",
            says: "https",
        },
        Bad {
            case: "ca-not-pem",
            hcl: with(&|d| d.ca_certificate = lit("hello")),
            attribute: "ca_certificate",
            says: "PEM",
        },
        Bad {
            case: "client-cert-not-pem",
            hcl: with(&|d| {
                d.client_certificate =
                    lit("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
            }),
            attribute: "client_certificate",
            says: "X.509",
        },
        Bad {
            case: "client-key-not-a-key",
            hcl: with(&|d| d.client_key = "file(\"root.crt\")".into()),
            attribute: "client_key",
            says: "not a PEM private key",
        },
        Bad {
            case: "client-key-mismatch",
            hcl: with(&|d| d.client_key = "file(\"server.key\")".into()),
            attribute: "client_key",
            says: "not the private key of the certificate in client_certificate",
        },
        Bad {
            case: "client-cert-expired",
            hcl: with(&|d| {
                d.client_certificate = "file(\"old.crt\")".into();
                d.client_key = "file(\"old.key\")".into();
            }),
            attribute: "client_certificate",
            says: "not valid now",
        },
        Bad {
            case: "client-ca-not-ca",
            hcl: with(&|d| {
                d.client_ca_certificate = "file(\"root.crt\")".into();
                d.client_ca_key = "file(\"root.key\")".into();
            }),
            attribute: "client_ca_certificate",
            says: "not a CA",
        },
        Bad {
            case: "client-ca-key-mismatch",
            hcl: with(&|d| d.client_ca_key = "file(\"root.key\")".into()),
            attribute: "client_ca_key",
            says: "not the private key",
        },
        Bad {
            case: "quota-zero",
            hcl: with(&|d| d.extra = "  quota_bytes = 0".into()),
            attribute: "quota_bytes",
            says: "positive",
        },
        // G: numbers that are not whole, or too large for any number of bytes.
        Bad {
            case: "quota-fraction",
            hcl: with(&|d| d.extra = "  quota_bytes = 1.5".into()),
            attribute: "quota_bytes",
            says: "1.5 is not a whole number",
        },
        Bad {
            case: "quota-huge",
            hcl: with(&|d| d.extra = "  quota_bytes = pow(2, 63)".into()),
            attribute: "quota_bytes",
            says: "is too large: whole numbers here are at most",
        },
        Bad {
            case: "max-tenants-negative",
            hcl: with(&|d| d.extra = "  max_tenants = -1".into()),
            attribute: "max_tenants",
            says: "got -1",
        },
        Bad {
            case: "max-tenants-zero",
            hcl: with(&|d| d.extra = "  max_tenants = 0".into()),
            attribute: "max_tenants",
            says: "at least 1",
        },
        Bad {
            case: "label-key",
            hcl: with(&|d| d.extra = "  labels = { \"bad key\" = \"x\" }".into()),
            attribute: "labels",
            says: "label key",
        },
        Bad {
            case: "label-value",
            hcl: with(&|d| d.extra = "  labels = { zone = \"-x-\" }".into()),
            attribute: "labels",
            says: "label value",
        },
    ];
    // Only kamajid can know these: they fail at apply, still naming the attribute.
    let apply_time = vec![
        Bad {
            case: "auth-disabled",
            hcl: DatastoreHcl::new("bad", "bad-noauth", &no_auth.endpoint),
            attribute: "endpoints",
            says: "authentication disabled",
        },
        Bad {
            case: "client-cert-auth-off",
            hcl: DatastoreHcl::new("bad", "bad-nocert", &no_cert_auth.endpoint),
            attribute: "endpoints",
            says: "--client-cert-auth",
        },
        Bad {
            case: "untrusted-server",
            hcl: with(&|d| d.ca_certificate = "file(\"other.crt\")".into()),
            attribute: "ca_certificate",
            says: "not trusted",
        },
        Bad {
            case: "not-root",
            hcl: with(&|d| {
                d.client_certificate = "file(\"alice.crt\")".into();
                d.client_key = "file(\"alice.key\")".into();
            }),
            attribute: "client_certificate",
            says: "not an etcd root user",
        },
        Bad {
            case: "unreachable",
            hcl: with(&|d| d.endpoints = vec![format!("https://127.0.0.1:{}", free_port())]),
            attribute: "endpoints",
            says: "cannot reach etcd",
        },
    ];

    let run = |bad: &Bad, apply: bool| {
        let w = h.workdir(bad.case);
        w.write_file("old.crt", &old.cert);
        w.write_file("old.key", &old.key);
        w.write_file("other.crt", &other_ca.cert);
        w.write_file("alice.crt", &alice.cert);
        w.write_file("alice.key", &alice.key);
        w.write(&config(&[bad.hcl.render()], ""));
        let plan = w.tf(&["plan", "-input=false"]);
        let r = if apply {
            assert!(
                plan.ok(),
                "{}: plan should pass, only kamajid can tell:\n{}",
                bad.case,
                plan.output()
            );
            w.apply()
        } else {
            plan
        };
        let out = r.output();
        assert!(!r.ok(), "{}: accepted", bad.case);
        assert!(
            points_at(&out, bad.attribute),
            "{}: error does not point at {}:\n{out}",
            bad.case,
            bad.attribute
        );
        assert!(
            out.contains(bad.says),
            "{}: error lacks {:?}:\n{out}",
            bad.case,
            bad.says
        );
        assert!(
            !out.contains("PRIVATE KEY-----") && !out.contains("stack backtrace"),
            "{}: leaked a key or a backtrace:\n{out}",
            bad.case
        );
        if !apply {
            assert!(
                !planned_changes(&out),
                "{}: failed only after planning",
                bad.case
            );
        }
    };
    std::thread::scope(|s| {
        for b in &plan_time {
            s.spawn(|| run(b, false));
        }
        for b in &apply_time {
            s.spawn(|| run(b, true));
        }
    });
    assert_eq!(
        h.datastore_names().await,
        ["taken"],
        "a refused datastore was stored"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn provider_settings_errors_name_the_setting() {
    let h = Harness::start().await;
    let etcd = h.etcd("etcd-p", EtcdSecurity::default()).await;
    let mut w = h.workdir("provider");
    w.write(&config(
        &[DatastoreHcl::new("p", "shard-p", &etcd.endpoint).render()],
        "",
    ));

    w.set_env("KAMAJI_TOKEN", None);
    let r = w.tf(&["plan", "-input=false"]);
    assert!(
        !r.ok() && r.stderr.contains("Missing kamajid token") && r.stderr.contains("KAMAJI_TOKEN"),
        "{}",
        r.output()
    );

    w.set_env("KAMAJI_TOKEN", Some("wrong-token-0123456789"));
    let r = w.tf(&["plan", "-input=false"]);
    assert!(
        !r.ok() && r.stderr.contains("refused the credentials"),
        "{}",
        r.output()
    );
    assert!(
        !r.stderr.contains("wrong-token"),
        "the token was echoed:\n{}",
        r.stderr
    );

    // The provider block works as well as the environment, and reports a dead endpoint clearly.
    w.set_env("KAMAJI_TOKEN", Some(TOKEN));
    w.set_env("KAMAJI_ENDPOINT", None);
    let dead = format!("https://127.0.0.1:{}", free_port());
    w.write(&format!(
        "{}\nprovider \"kamaji\" {{\n  endpoint = \"{dead}\"\n}}\n",
        config(
            &[DatastoreHcl::new("p", "shard-p", &etcd.endpoint).render()],
            ""
        )
    ));
    let r = w.apply();
    assert!(
        !r.ok() && r.stderr.contains("did not answer"),
        "{}",
        r.output()
    );

    // J: a plain-HTTP endpoint is refused at plan with what to write instead, from the block
    // and from the environment alike.
    let plain = plain_http_endpoint(&h);
    w.write(&format!(
        "{}\nprovider \"kamaji\" {{\n  endpoint = \"{plain}\"\n}}\n",
        config(
            &[DatastoreHcl::new("p", "shard-p", &etcd.endpoint).render()],
            ""
        )
    ));
    let r = w.tf(&["plan", "-input=false"]);
    let https = plain.replace("http://", "https://");
    let said = |r: &Tf| r.stderr.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        !r.ok()
            && said(&r).contains("TLS only")
            && said(&r).contains(&https)
            && points_at(&r.output(), "endpoint"),
        "{}",
        r.output()
    );
    w.write(&config(
        &[DatastoreHcl::new("p", "shard-p", &etcd.endpoint).render()],
        "",
    ));
    w.set_env("KAMAJI_ENDPOINT", Some(&plain));
    let r = w.tf(&["plan", "-input=false"]);
    assert!(
        !r.ok() && said(&r).contains("TLS only") && !r.stderr.contains("h2 protocol"),
        "{}",
        r.output()
    );
    assert!(h.datastore_names().await.is_empty());
}

/// kamajid's own address as a plain-HTTP URL, as a user might mistype it.
fn plain_http_endpoint(h: &Harness) -> String {
    h.endpoint.replace("https://", "http://")
}
