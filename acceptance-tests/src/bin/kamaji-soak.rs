//! `make soak`: what a shared shard keeps over time. N tenants on real control planes
//! (kamajid's process runtime, the newest built Kubernetes) share one secured etcd shard, each
//! under a steady write load (a ConfigMap rewritten with changing data several times a second, a
//! small one created and deleted every few seconds), for a set time. Every interval it prints
//! what a user of the shard would watch: its revision, its file and in-use sizes, what kamajid
//! compacted and defragmented, what the tenants keep and wrote, kamajid's and the state etcd's
//! size. Not part of `make test`: it is meant to run for half an hour or more.
//!
//! Usage: kamaji-soak [--tenants 5] [--minutes 30] [--interval-seconds 30]
//!        [--retention-seconds 300] [--write-bytes 4096] [--writes-per-second 2]

use std::time::{Duration, Instant};

use acceptance_tests::k8s;
use acceptance_tests::*;
use k8s_openapi::api::core::v1::ConfigMap;
use kamaji_proto::v1;
use kube::api::{Api, DeleteParams, PostParams};

const MIB: i64 = 1 << 20;
const USAGE: &str = "usage: kamaji-soak [--tenants 5] [--minutes 30] [--interval-seconds 30] \
[--retention-seconds 300] [--write-bytes 4096] [--writes-per-second 2]";

struct Args {
    tenants: usize,
    minutes: u64,
    interval: u64,
    retention: u64,
    write_bytes: usize,
    writes_per_second: u64,
}

fn args() -> Args {
    let mut a = Args {
        tenants: 5,
        minutes: 30,
        interval: 30,
        retention: 300,
        write_bytes: 4096,
        writes_per_second: 2,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let mut num = |name: &str| -> u64 {
            it.next()
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{name} needs a number"))
        };
        match k.as_str() {
            "--tenants" => a.tenants = num("--tenants") as usize,
            "--minutes" => a.minutes = num("--minutes"),
            "--interval-seconds" => a.interval = num("--interval-seconds"),
            "--retention-seconds" => a.retention = num("--retention-seconds"),
            "--write-bytes" => a.write_bytes = num("--write-bytes") as usize,
            "--writes-per-second" => a.writes_per_second = num("--writes-per-second").max(1),
            "--help" | "-h" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => {
                eprintln!("kamaji-soak: unknown argument {other}\n{USAGE}");
                std::process::exit(2);
            }
        }
    }
    a
}

fn rss_mib(pid: u32) -> i64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<i64>().ok())
        })
        .unwrap_or(0)
        / 1024
}

/// One tenant's load until `until`: rewrites of 20 ConfigMaps in turn with changing data, and
/// a small one created and deleted every 5 s.
async fn load(cms: Api<ConfigMap>, size: usize, per_second: u64, until: Instant) -> (u64, u64) {
    let (mut ok, mut failed) = (0u64, 0u64);
    let mut tick = tokio::time::interval(Duration::from_millis(1000 / per_second));
    let mut n = 0u64;
    while Instant::now() < until {
        tick.tick().await;
        n += 1;
        let name = format!("load-{}", n % 20);
        let data: String = std::iter::repeat_n(char::from(b'a' + (n % 26) as u8), size).collect();
        let cm: ConfigMap = serde_json::from_value(serde_json::json!({
            "metadata": {"name": name},
            "data": {"d": data},
        }))
        .unwrap();
        let r = match cms.get_opt(&name).await {
            Ok(Some(mut cur)) => {
                cur.data = cm.data;
                cms.replace(&name, &PostParams::default(), &cur)
                    .await
                    .map(|_| ())
            }
            Ok(None) => cms.create(&PostParams::default(), &cm).await.map(|_| ()),
            Err(e) => Err(e),
        };
        if r.is_ok() {
            ok += 1
        } else {
            failed += 1
        }
        if n.is_multiple_of(5 * per_second) {
            let churn: ConfigMap =
                serde_json::from_value(serde_json::json!({"metadata": {"name": "churn"}})).unwrap();
            let _ = cms.create(&PostParams::default(), &churn).await;
            let _ = cms.delete("churn", &DeleteParams::default()).await;
        }
    }
    (ok, failed)
}

struct Row {
    t: u64,
    revision: i64,
    db: i64,
    in_use: i64,
    compacted: i64,
    kept: i64,
    history: i64,
    ready: usize,
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let a = args();
    println!(
        "kamaji soak: {} tenants, {} min, {} B every {} ms per tenant, retention {} s",
        a.tenants,
        a.minutes,
        a.write_bytes,
        1000 / a.writes_per_second,
        a.retention
    );
    let root = tempfile::tempdir().expect("tempdir");
    let (h, tenants_dir, _) = Harness::with_process_runtime_args(
        root.path(),
        &k8s::bin_dir(),
        0,
        vec![format!("--compaction-retention-seconds={}", a.retention)],
    )
    .await;
    let _reaper = Reaper(tenants_dir);
    let shard = h.etcd("shard", EtcdSecurity::default()).await;
    let mut ds = h.client().await;
    h.register_datastore("shard", &shard, 2 << 30).await;
    let mut tc = h.tenants().await;
    let version = k8s::newest();
    let names: Vec<String> = (0..a.tenants).map(|i| format!("soak-{i}")).collect();
    for n in &names {
        use kamaji_proto::tenant::defaults;
        tc.create_tenant_cluster(v1::CreateTenantClusterRequest {
            name: n.clone(),
            spec: Some(v1::TenantClusterSpec {
                kubernetes_version: version.clone(),
                replicas: 1,
                datastore: "shard".into(),
                network: Some(v1::Network {
                    service_cidr: defaults::SERVICE_CIDR.into(),
                    pod_cidr: defaults::POD_CIDR.into(),
                    dns_service_ip: defaults::DNS_SERVICE_IP.into(),
                    port: defaults::PORT,
                    service_type: v1::ServiceType::ClusterIp as i32,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            validate_only: false,
            planned_datastores: Vec::new(),
        })
        .await
        .expect("create a tenant");
    }
    let started = Instant::now();
    let mut clients = Vec::new();
    for n in &names {
        loop {
            let t = tc
                .get_tenant_cluster(v1::GetTenantClusterRequest { name: n.clone() })
                .await
                .expect("get")
                .into_inner();
            let st = t.status.unwrap_or_default();
            if st.phase == v1::TenantClusterPhase::Ready as i32 {
                let creds = tc
                    .get_tenant_cluster_credentials(v1::GetTenantClusterCredentialsRequest {
                        name: n.clone(),
                    })
                    .await
                    .expect("credentials")
                    .into_inner();
                let client = kamajid::tenant_client::connect(&creds.admin_kubeconfig, &st.endpoint)
                    .await
                    .expect("tenant client");
                clients.push(Api::<ConfigMap>::namespaced(client, "default"));
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(600),
                "{n} never became Ready: {st:?}"
            );
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
    println!(
        "{} tenants Ready in {:.0} s; loading them for {} min",
        a.tenants,
        started.elapsed().as_secs_f64(),
        a.minutes
    );

    let until = Instant::now() + Duration::from_secs(a.minutes * 60);
    let loads: Vec<_> = clients
        .into_iter()
        .map(|c| tokio::spawn(load(c, a.write_bytes, a.writes_per_second, until)))
        .collect();
    println!(
        "{:>6} {:>9} {:>10} {:>10} {:>10} {:>10} {:>10} {:>6} {:>8} {:>9}",
        "t(s)",
        "revision",
        "file MiB",
        "in-use MiB",
        "compacted",
        "kept MiB",
        "hist MiB",
        "ready",
        "kamajid",
        "state MiB"
    );
    let begin = Instant::now();
    let mut rows = Vec::new();
    loop {
        let d = ds
            .get_datastore(v1::GetDatastoreRequest {
                name: "shard".into(),
            })
            .await
            .expect("datastore")
            .into_inner()
            .status
            .unwrap_or_default();
        let mut kept = 0;
        let mut history = 0;
        let mut ready = 0;
        for n in &names {
            let st = tc
                .get_tenant_cluster(v1::GetTenantClusterRequest { name: n.clone() })
                .await
                .expect("get")
                .into_inner()
                .status
                .unwrap_or_default();
            kept += st.storage_used_bytes.unwrap_or(0);
            history += st.storage_history_bytes.unwrap_or(0);
            ready += usize::from(st.phase == v1::TenantClusterPhase::Ready as i32);
        }
        let state_db = h
            .state_etcd()
            .await
            .status()
            .await
            .map(|s| s.db_size())
            .unwrap_or(0);
        let row = Row {
            t: begin.elapsed().as_secs(),
            revision: h
                .shard_root(&shard.endpoint)
                .await
                .get("x", None)
                .await
                .map(|r| r.header().map_or(0, |h| h.revision()))
                .unwrap_or(0),
            db: d.db_size_bytes,
            in_use: d.db_size_in_use_bytes,
            compacted: d.compacted_revision,
            kept,
            history,
            ready,
        };
        println!(
            "{:>6} {:>9} {:>10.1} {:>10.1} {:>10} {:>10.1} {:>10.1} {:>6} {:>6}Mi {:>9.1}",
            row.t,
            row.revision,
            row.db as f64 / MIB as f64,
            row.in_use as f64 / MIB as f64,
            row.compacted,
            row.kept as f64 / MIB as f64,
            row.history as f64 / MIB as f64,
            row.ready,
            rss_mib(h.kamajid_pid()),
            state_db as f64 / MIB as f64
        );
        rows.push(row);
        if Instant::now() >= until {
            break;
        }
        tokio::time::sleep(Duration::from_secs(a.interval)).await;
    }
    let mut writes = (0, 0);
    for l in loads {
        let (ok, failed) = l.await.expect("load");
        writes.0 += ok;
        writes.1 += failed;
    }
    // The second half: after at least one retention, the shard should be flat.
    let half = &rows[rows.len() / 2..];
    let span = |f: fn(&Row) -> i64| {
        let (lo, hi) = half
            .iter()
            .map(f)
            .fold((i64::MAX, i64::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)));
        (lo as f64 / MIB as f64, hi as f64 / MIB as f64)
    };
    let compactions = {
        let mut c: Vec<i64> = rows
            .iter()
            .map(|r| r.compacted)
            .filter(|c| *c > 0)
            .collect();
        c.dedup();
        c.len()
    };
    let first = &rows[0];
    let last = &rows[rows.len() - 1];
    println!();
    println!(
        "writes: {} accepted, {} failed; revisions {} -> {} ({:.1}/s)",
        writes.0,
        writes.1,
        first.revision,
        last.revision,
        (last.revision - first.revision) as f64 / (last.t - first.t).max(1) as f64
    );
    println!(
        "second half: file {:.1}-{:.1} MiB, in use {:.1}-{:.1} MiB, kept {:.1}-{:.1} MiB; {} compactions seen; all Ready at the end: {}",
        span(|r| r.db).0,
        span(|r| r.db).1,
        span(|r| r.in_use).0,
        span(|r| r.in_use).1,
        span(|r| r.kept).0,
        span(|r| r.kept).1,
        compactions,
        last.ready == a.tenants
    );
}
