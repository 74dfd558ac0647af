//! What an operator watches kamajid through, on a running kamajid (the process runtime: real
//! control planes) with a real tenant: the metrics scrape, parsed by the real `promtool` built
//! from the Prometheus Go module and checked against what the test created; readiness over
//! HTTP and `grpc.health.v1`; the lifecycle's log lines; the provider's debug log; and no
//! secret in any of those logs.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use acceptance_tests::k8s;
use acceptance_tests::*;
use kamaji_proto::v1;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

/// The promtool of tools/upstream/PROGRAMS (built once per machine by scripts/install-deps.sh).
fn promtool() -> String {
    let out = Command::new(workspace().join("scripts/go-tool.sh"))
        .arg("promtool")
        .output()
        .expect("scripts/go-tool.sh promtool");
    assert!(
        out.status.success(),
        "promtool: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// `promtool check metrics` on `text`: its exit status and what it said.
fn promtool_check(text: &str) -> (bool, String) {
    use std::io::Write;
    let mut child = Command::new(promtool())
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// The value of the sample `series` (name and labels exactly as written) in a scrape.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.split(' ').next()?.parse().ok())
}

fn must(text: &str, series: &str) -> f64 {
    sample(text, series).unwrap_or_else(|| panic!("{series} not in the scrape:\n{text}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_scrape_shows_what_kamajid_runs_promtool_parses_it_and_no_log_holds_a_secret() {
    let root = tempfile::tempdir().unwrap();
    let (h, tenants_dir, _) = Harness::with_process_runtime(root.path(), &k8s::bin_dir(), 0).await;
    let _reaper = Reaper(tenants_dir.clone());
    let shard = h.etcd("shard", EtcdSecurity::default()).await;
    let mut ds = DatastoreHcl::new("a", "shard", &shard.endpoint);
    ds.extra = "  labels = { zone = \"earth\" }\n".into();
    let version = k8s::newest();
    let mut w = h.workdir("watched");
    w.set_env("TF_LOG", Some("DEBUG"));
    w.write(&format!(
        "{PROVIDER_HCL}\n{}\nresource \"kamaji_tenant_cluster\" \"w\" {{\n  name               = \"watched\"\n  kubernetes_version = \"{version}\"\n  datastore          = kamaji_datastore.a.name\n}}\n",
        ds.render()
    ));
    let apply = w.apply();
    assert!(apply.ok(), "terraform apply failed:\n{}", apply.output());

    // The provider's debug log shows its calls and the tenant's phases while it waits.
    let log = apply.stderr.clone();
    assert!(
        log.contains("calling kamajid")
            && log.contains("kamaji.v1.TenantClusters/CreateTenantCluster"),
        "no RPC in the provider's debug log"
    );
    assert!(
        log.lines()
            .any(|l| l.contains("tenant cluster") && l.contains("phase=Provisioning")),
        "no phase change in the provider's debug log:\n{}",
        log.lines()
            .filter(|l| l.contains("terraform-provider-kamaji"))
            .take(40)
            .collect::<Vec<_>>()
            .join("\n")
    );

    // A tenant no datastore takes (its labels match none) is refused at once, and counted.
    let mut t = h.tenants().await;
    let refused = v1::TenantClusterSpec {
        kubernetes_version: version.clone(),
        replicas: 1,
        datastore_selector: [("zone".to_owned(), "mars".to_owned())].into(),
        network: Some(v1::Network {
            service_cidr: "10.96.0.0/12".into(),
            pod_cidr: "10.244.0.0/16".into(),
            dns_service_ip: "10.96.0.10".into(),
            port: 6443,
            service_type: v1::ServiceType::ClusterIp as i32,
            ..Default::default()
        }),
        ..Default::default()
    };
    let e = t
        .create_tenant_cluster(v1::CreateTenantClusterRequest {
            name: "nowhere".into(),
            spec: Some(refused),
            validate_only: false,
            planned_datastores: Vec::new(),
        })
        .await
        .expect_err("no datastore matches");
    assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{e:?}");

    // The leader lists the fleet every round: wait for a scrape that has seen the tenant.
    let url = format!("{}/metrics", h.metrics);
    let start = Instant::now();
    let text = loop {
        let (status, ty, text) = http_get(&url, None);
        assert_eq!(status, 200, "{text}");
        assert!(ty.starts_with("text/plain; version=0.0.4"), "{ty}");
        if sample(&text, "kamaji_tenants{phase=\"Ready\"}") == Some(1.0) {
            break text;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the scrape never showed one Ready tenant:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    println!(
        "one scrape ({} lines, {} bytes):\n{text}",
        text.lines().count(),
        text.len()
    );

    // Prometheus' own parser and linter take it.
    let (ok, said) = promtool_check(&text);
    assert!(ok, "promtool check metrics refused the scrape:\n{said}");
    println!("promtool check metrics: ok {said}");

    // What it says is what the test made.
    assert_eq!(must(&text, "kamaji_leader"), 1.0);
    assert_eq!(
        must(
            &text,
            "kamaji_tenant_phase{tenant=\"watched\",phase=\"Ready\"}"
        ),
        1.0
    );
    assert_eq!(must(&text, "kamaji_tenants{phase=\"Failed\"}"), 0.0);
    assert!(!text.contains("tenant=\"nowhere\""));
    assert_eq!(
        must(
            &text,
            "kamaji_placement_refusals_total{reason=\"selector_mismatch\"}"
        ),
        1.0
    );
    assert_eq!(
        must(&text, "kamaji_datastore_tenants{datastore=\"shard\"}"),
        1.0
    );
    assert_eq!(
        must(&text, "kamaji_datastore_healthy{datastore=\"shard\"}"),
        1.0
    );
    // The datastore's quota as registered, or etcd's own when that is smaller.
    let got = h
        .client()
        .await
        .get_datastore(v1::GetDatastoreRequest {
            name: "shard".into(),
        })
        .await
        .expect("get datastore")
        .into_inner();
    let registered = got.spec.expect("spec").quota_bytes;
    let etcd_own = got.status.expect("status").etcd_quota_bytes;
    let effective = if etcd_own > 0 {
        registered.min(etcd_own)
    } else {
        registered
    };
    assert_eq!(
        must(&text, "kamaji_datastore_quota_bytes{datastore=\"shard\"}"),
        effective as f64
    );
    assert!(must(&text, "kamaji_datastore_used_bytes{datastore=\"shard\"}") > 0.0);
    assert!(
        must(
            &text,
            "kamaji_datastore_reserved_bytes{datastore=\"shard\"}"
        ) >= (64 << 20) as f64
    );
    let expiry = must(
        &text,
        "kamaji_tenant_certificate_expiry_seconds{tenant=\"watched\"}",
    );
    assert!(
        (364.0 * 86400.0..=365.0 * 86400.0).contains(&expiry),
        "{expiry}"
    );
    assert!(
        must(
            &text,
            "kamaji_lifecycle_step_duration_seconds_count{step=\"Bootstrap\",result=\"ran\"}"
        ) >= 1.0
    );
    assert!(
        must(
            &text,
            "kamaji_grpc_server_handled_total{method=\"/kamaji.v1.TenantClusters/CreateTenantCluster\",code=\"Ok\"}"
        ) >= 1.0
    );
    assert_eq!(
        must(
            &text,
            "kamaji_grpc_server_handled_total{method=\"/kamaji.v1.TenantClusters/CreateTenantCluster\",code=\"FailedPrecondition\"}"
        ),
        1.0
    );
    assert_eq!(must(&text, "kamaji_moves_in_progress"), 0.0);
    assert!(text.contains("kamaji_build_info{version=\""));

    // Every metric the shipped alerts and dashboard query is one kamajid serves.
    let served: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.split(' ').next())
        .collect();
    let chart = workspace().join("daemon/deploy/chart/kamajid/files");
    for file in ["alerts.yaml", "dashboard.json"] {
        let body = std::fs::read_to_string(chart.join(file)).unwrap();
        let mut queried: Vec<&str> = body
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .filter(|w| w.starts_with("kamaji_"))
            .collect();
        queried.sort_unstable();
        queried.dedup();
        assert!(queried.len() >= 8, "{file}: {queried:?}");
        for q in queried {
            let base = ["_bucket", "_count", "_sum"]
                .iter()
                .find_map(|s| q.strip_suffix(s))
                .unwrap_or(q);
            assert!(
                served.contains(&q) || served.contains(&base),
                "{file} queries {q}, which kamajid does not serve"
            );
        }
    }

    // OpenMetrics when asked for, as Prometheus asks.
    let (status, ty, om) = http_get(
        &url,
        Some("application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"),
    );
    assert_eq!(status, 200);
    assert!(ty.starts_with("application/openmetrics-text"), "{ty}");
    assert!(om.ends_with("# EOF\n"));
    assert!(om.contains("# TYPE kamaji_placement_refusals counter"));

    // Ready over HTTP and over grpc.health.v1, for the server and each API service.
    let (status, _, body) = http_get(&format!("{}/readyz", h.metrics), None);
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    let mut health = HealthClient::new(h.channel().await);
    for service in ["", "kamaji.v1.TenantClusters", "kamaji.v1.Datastores"] {
        let r = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .expect("health check")
            .into_inner();
        assert_eq!(r.status(), ServingStatus::Serving, "{service:?}");
    }

    // The lifecycle logs each step once, with its tenant, step and outcome.
    let kamajid_log = std::fs::read_to_string(h.dir.path().join("kamajid.log")).unwrap();
    let bootstrap: Vec<_> = kamajid_log
        .lines()
        .filter(|l| {
            l.contains("lifecycle step")
                && l.contains("tenant=watched")
                && l.contains("step=Bootstrap")
        })
        .collect();
    assert_eq!(bootstrap.len(), 1, "{kamajid_log}");
    assert!(bootstrap[0].contains("outcome=ran"), "{}", bootstrap[0]);

    // No secret in kamajid's log or the provider's: no private key, no token, not the
    // tenant's admin credentials.
    let state = w.resource("kamaji_tenant_cluster.w")["values"].clone();
    let kubeconfig = state["admin_kubeconfig"].as_str().unwrap().to_owned();
    let client_key = kubeconfig
        .lines()
        .find_map(|l| l.trim().strip_prefix("client-key-data: "))
        .expect("client-key-data")
        .to_owned();
    let tenant_key = std::fs::read_to_string(tenants_dir.join("watched/pki/apiserver.key"))
        .expect("apiserver key");
    let key_body = tenant_key.lines().nth(1).expect("a key line").to_owned();
    for (what, text) in [
        ("kamajid's log", &kamajid_log),
        ("the provider's log", &log),
    ] {
        for (secret, name) in [
            ("PRIVATE KEY", "a PEM private key"),
            (TOKEN, "the API token"),
            (client_key.as_str(), "the admin client key"),
            (key_body.as_str(), "the apiserver's key"),
        ] {
            assert!(!text.contains(secret), "{what} holds {name}");
        }
    }

    // A destroy leaves nothing, and the scrape forgets the tenant.
    let destroy = w.tf(&["destroy", "-auto-approve", "-input=false"]);
    assert!(destroy.ok(), "{}", destroy.output());
    let start = Instant::now();
    loop {
        let (_, _, text) = http_get(&url, None);
        if !text.contains("tenant=\"watched\"") {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the scrape still shows deleted tenants:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The serial number of the certificate kamajid serves on `port` now (a new connection).
fn served_serial(port: u16) -> String {
    let out = Command::new("openssl")
        .args(["s_client", "-connect", &format!("127.0.0.1:{port}")])
        .stdin(Stdio::null())
        .output()
        .expect("openssl s_client");
    let pem = String::from_utf8_lossy(&out.stdout).into_owned();
    String::from_utf8_lossy(&openssl(&["x509", "-noout", "-serial"], pem.as_bytes()))
        .trim()
        .to_owned()
}

/// Sends `token` on every call.
#[derive(Clone)]
struct WithToken(&'static str);

impl tonic::service::Interceptor for WithToken {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        req.metadata_mut().insert(
            "authorization",
            format!("Bearer {}", self.0).parse().unwrap(),
        );
        Ok(req)
    }
}

/// Writes `content` to `path` as a kubelet updates a Secret volume: whole, by a rename.
fn replace_file(path: &std::path::Path, content: &str) {
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, content).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn rotating_the_certificate_a_token_and_the_kek_needs_no_restart_and_keeps_connections() {
    use kamaji_proto::v1::datastores_client::DatastoresClient;
    const ROTATED: &str = "rotated-token-0123456789abcdef";
    let h = Harness::start_with_args(None, vec!["--log-format=json".into()]).await;
    let pid = h.kamajid_pid();
    let port: u16 = h.endpoint.rsplit(':').next().unwrap().parse().unwrap();
    let connections = |h: &Harness| {
        let (_, _, text) = http_get(&format!("{}/metrics", h.metrics), None);
        must(&text, "kamaji_grpc_server_connections_total")
    };
    // A datastore, whose admin key kamajid keeps sealed with the KEK and uses at each probe.
    let etcd = h.etcd("sealed", EtcdSecurity::default()).await;
    h.register_datastore("sealed", &etcd, 1 << 30).await;

    // One client, one connection, kept across the rotation.
    let channel = h.channel().await;
    let mut old_token = DatastoresClient::with_interceptor(channel.clone(), Bearer);
    let mut new_token = DatastoresClient::with_interceptor(channel.clone(), WithToken(ROTATED));
    old_token
        .list_datastores(v1::ListDatastoresRequest::default())
        .await
        .expect("the first token works");
    let serial_before = served_serial(port);
    let accepted_before = connections(&h);

    // Rotate the serving certificate (same CA, new key) and the token, as a Secret update does.
    let pki_dir = h.dir.path().join("pki");
    let rotated = kamaji_core::pki::issue(&h.pki.ca, "kamaji-rotated", &["localhost", "127.0.0.1"])
        .expect("issue");
    replace_file(&pki_dir.join("server.key"), &rotated.key);
    replace_file(&pki_dir.join("server.crt"), &rotated.cert);
    replace_file(
        &h.dir.path().join("tokens"),
        &format!("# rotated\n{ROTATED}\n"),
    );
    let start = Instant::now();
    let serial_after = loop {
        let s = served_serial(port);
        if s != serial_before {
            break s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "kamajid still serves {serial_before} after the rotation"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    println!(
        "serving certificate {serial_before} -> {serial_after} in {:?}",
        start.elapsed()
    );
    let accepted_probes = connections(&h);

    // Over the connection opened before: the new token works, the old one is refused.
    let start = Instant::now();
    while new_token
        .list_datastores(v1::ListDatastoresRequest::default())
        .await
        .is_err()
    {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the rotated token is never accepted"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let e = old_token
        .list_datastores(v1::ListDatastoresRequest::default())
        .await
        .expect_err("the old token is refused");
    assert_eq!(e.code(), tonic::Code::Unauthenticated);
    assert_eq!(
        connections(&h),
        accepted_probes,
        "the client opened a new connection: the old one was dropped"
    );
    assert!(
        accepted_probes > accepted_before,
        "openssl's probes were not counted"
    );
    assert_eq!(h.kamajid_pid(), pid, "kamajid restarted");

    // A rotation that does not load keeps what works: a key of another certificate, an empty
    // tokens file.
    let other = kamaji_core::pki::issue(&h.pki.ca, "other", &["localhost"]).expect("issue");
    replace_file(&pki_dir.join("server.key"), &other.key);
    replace_file(&h.dir.path().join("tokens"), "# nobody\n");
    tokio::time::sleep(kamajid::reload::POLL * 3).await;
    assert_eq!(served_serial(port), serial_after);
    new_token
        .list_datastores(v1::ListDatastoresRequest::default())
        .await
        .expect("the rotated token still works");

    // The KEK: the new key first, the old one after it, until kamajid has re-sealed what the
    // old one sealed; then the new one alone. A file that would lose a sealed value is refused.
    let kek_file = h.dir.path().join("kek");
    let old_kek = std::fs::read_to_string(&kek_file).unwrap();
    let new_kek = kamaji_core::kek::Kek::generate_encoded();
    let read_log = || std::fs::read_to_string(h.dir.path().join("kamajid.log")).unwrap();
    let wait_log = |what: &str, times: usize| {
        let start = Instant::now();
        while read_log().matches(what).count() < times {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "no {what:?} (x{times}) in the log:\n{}",
                read_log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    replace_file(&kek_file, &format!("{}\n{}\n", new_kek, old_kek.trim()));
    wait_log("key-encryption keys reloaded", 1);
    wait_log("re-sealed with the first key-encryption key", 1);
    let mut state = h.state_etcd().await;
    let record = state
        .get("/kamajid/v1/datastores/sealed", None)
        .await
        .unwrap()
        .kvs()[0]
        .value_str()
        .unwrap()
        .to_owned();
    let record: serde_json::Value = serde_json::from_str(&record).unwrap();
    let sealed = record["client_key_sealed"].as_str().unwrap();
    let aad = "/kamajid/v1/datastores/sealed";
    let only = |k: &str| kamaji_core::kek::Kek::from_encoded(k).unwrap();
    assert_eq!(only(&new_kek).open(aad, sealed).unwrap(), h.pki.root.key);
    assert!(
        only(&old_kek).open(aad, sealed).is_err(),
        "still sealed with the old key"
    );
    replace_file(&kek_file, &new_kek);
    wait_log("key-encryption keys reloaded", 2);
    replace_file(&kek_file, &kamaji_core::kek::Kek::generate_encoded());
    wait_log("is not taken", 1);
    assert!(
        read_log().contains("cannot open 2 sealed value(s)"),
        "{}",
        read_log()
    );
    // The datastore is still probed with its admin key: Ready.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let status = new_token
        .get_datastore(v1::GetDatastoreRequest {
            name: "sealed".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .status
        .unwrap();
    assert_eq!(status.phase(), v1::DatastorePhase::Ready, "{status:?}");
    assert_eq!(h.kamajid_pid(), pid, "kamajid restarted");

    // The log is JSON, line by line, and says what was reloaded and what was refused.
    let log = read_log();
    let events: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let said = |m: &str| {
        events.iter().any(|e| {
            e["fields"]["message"]
                .as_str()
                .is_some_and(|s| s.starts_with(m))
        })
    };
    for m in [
        "serving certificate reloaded",
        "tokens reloaded",
        "the serving certificate changed but does not load",
        "the tokens file changed but does not load",
    ] {
        assert!(said(m), "no {m:?} in the log:\n{log}");
    }
    assert!(
        !log.contains(ROTATED) && !log.contains(TOKEN),
        "a token in the log"
    );
    assert!(
        !log.contains(&new_kek) && !log.contains(old_kek.trim()),
        "a key-encryption key in the log"
    );
}
