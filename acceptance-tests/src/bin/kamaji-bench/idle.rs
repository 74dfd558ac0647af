//! Real tenants: how long `terraform apply` takes to give a kubectl-ready cluster, and what an
//! idle one costs in memory on the host that runs its control plane and in writes on the shard
//! that keeps its state, with the components and flags kamajid ships.
//!
//! The newest built Kubernetes runs through kamajid's process runtime on one secured etcd
//! shard: one tenant applied alone, then N more in one apply. After they settle, the bench reads
//! each component's RSS (by the PID files the runtime keeps) and watches the whole shard as root
//! for a window, counting revisions and history bytes by key (tenant prefix folded away, so the
//! lines say what a component renews). The apiservers' logs are searched for requests the shard
//! refused during the window.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use acceptance_tests::k8s;
use acceptance_tests::*;
use etcd_client::WatchOptions;

use crate::proc::{cpu_seconds, kib_field, percentile, pss_and_anon_kib, rss_kib};

pub(crate) struct IdleArgs {
    pub(crate) tenants: usize,
    pub(crate) settle: Duration,
    pub(crate) window: Duration,
}

const COMPONENTS: [&str; 3] = [
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
];

fn mem_available_kib() -> u64 {
    kib_field("/proc/meminfo", "MemAvailable:")
}

/// The tenants' working directories the process runtime keeps.
fn tenant_dirs(root: &Path) -> Vec<PathBuf> {
    let Ok(dir) = std::fs::read_dir(root) else {
        return Vec::new();
    };
    let mut d: Vec<PathBuf> = dir
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("kube-apiserver.pid").exists())
        .collect();
    d.sort();
    d
}

fn pid_of(dir: &Path, component: &str) -> Option<u32> {
    std::fs::read_to_string(dir.join(format!("{component}.pid")))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// A shard key with the tenant's prefix and per-instance names folded, so that the same
/// write of every tenant lands on one line.
fn fold(key: &[u8]) -> String {
    let k = String::from_utf8_lossy(key);
    let rest = match k.strip_prefix('/').and_then(|r| r.split_once('/')) {
        Some((_, rest)) => format!("/{rest}"),
        None => return k.into_owned(),
    };
    // Events are named after their object and a hash: one line per namespace and object kind
    // of name (`coredns-<hash>-<hash>.<hash>` reads `coredns`).
    if let Some(ev) = rest.strip_prefix("/events/") {
        let (ns, name) = ev.split_once('/').unwrap_or((ev, ""));
        let object = name.split(['.', '-']).next().unwrap_or_default();
        return format!("/events/{ns}/{object}*");
    }
    rest.split('/')
        .map(|s| {
            if s.starts_with("apiserver-") {
                "apiserver-*".to_owned()
            } else if s.parse::<std::net::IpAddr>().is_ok() {
                "<ip>".to_owned()
            } else {
                s.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// Lines of a log file, counted from `from` bytes on, that mention a refusal by etcd.
fn refusals_since(log: &Path, from: u64) -> usize {
    let Ok(all) = std::fs::read(log) else {
        return 0;
    };
    let tail = all.get(from as usize..).unwrap_or_default();
    String::from_utf8_lossy(tail)
        .lines()
        .filter(|l| l.contains("permission denied") || l.contains("PermissionDenied"))
        .count()
}

fn tenant_hcl(label: &str, version: &str, batch: Option<usize>) -> String {
    let (each, name) = match batch {
        Some(n) => (
            format!("  for_each = toset([for i in range({n}) : format(\"{label}-%02d\", i)])\n"),
            "each.key".to_owned(),
        ),
        None => (String::new(), format!("\"{label}\"")),
    };
    format!(
        "resource \"kamaji_tenant_cluster\" \"{label}\" {{\n{each}  name               = {name}\n  kubernetes_version = \"{version}\"\n  datastore          = kamaji_datastore.a.name\n}}\n"
    )
}

/// Seconds from Terraform's `Creation complete after 1m5s` lines, one per resource created.
fn creation_times(out: &str) -> Vec<f64> {
    let mut t: Vec<f64> = out
        .lines()
        .filter_map(|l| l.split("Creation complete after ").nth(1))
        .filter_map(|rest| rest.split_whitespace().next())
        .filter_map(|d| {
            let (m, s) = match d.split_once('m') {
                Some((m, s)) => (m.parse::<f64>().ok()?, s),
                None => (0.0, d),
            };
            Some(m * 60.0 + s.trim_end_matches('s').parse::<f64>().unwrap_or(0.0))
        })
        .collect();
    t.sort_by(f64::total_cmp);
    t
}

/// `raw_txn_per_s`: the write capacity measured of a one-member shard and, if it formed, of a
/// three-member one.
pub(crate) async fn bench_idle(a: &IdleArgs, raw_txn_per_s: Option<(f64, Option<f64>)>) {
    let before = mem_available_kib();
    let root = tempfile::tempdir().expect("tempdir");
    let (h, tenants_dir, _) =
        Harness::with_process_runtime_args(root.path(), &k8s::bin_dir(), 0, Vec::new()).await;
    let _reaper = Reaper(tenants_dir.clone());
    let shard = h.etcd("idle-shard", EtcdSecurity::default()).await;
    let ds = DatastoreHcl::new("a", "idle-shard", &shard.endpoint);
    let version = k8s::newest();
    let w = h.workdir("bench-idle");

    // One tenant: `terraform apply` returns once it is Ready; kubectl then answers at once.
    let solo = format!(
        "{PROVIDER_HCL}\n{}\n{}",
        ds.render(),
        tenant_hcl("solo", &version, None)
    );
    w.write(&solo);
    let t = Instant::now();
    let r = w.tf(&["apply", "-auto-approve", "-input=false"]);
    assert!(r.ok(), "one tenant:\n{}", r.output());
    let kubeconfig = w.resource("kamaji_tenant_cluster.solo")["values"]["admin_kubeconfig"]
        .as_str()
        .expect("admin_kubeconfig")
        .to_owned();
    let k = k8s::Kubectl::new(&w.dir.join("solo.kubeconfig"), &kubeconfig);
    let answered = k.run(&["get", "--raw", "/readyz"]);
    let solo_s = t.elapsed().as_secs_f64();
    assert!(answered.ok, "kubectl: {}", answered.stderr);

    // Many in one apply, with Terraform's default parallelism (10).
    w.write(&format!(
        "{solo}{}",
        tenant_hcl("batch", &version, Some(a.tenants))
    ));
    let t = Instant::now();
    let r = w.tf(&["apply", "-auto-approve", "-input=false"]);
    assert!(r.ok(), "{} tenants:\n{}", a.tenants, r.output());
    let batch_s = t.elapsed().as_secs_f64();
    let each = creation_times(&r.output());
    println!(
        "Time to Ready on real binaries (Kubernetes {version}, process runtime): terraform apply of one tenant to kubectl answering {solo_s:.1} s  [target <= 5 s]; {} tenants in one apply {batch_s:.1} s  [target <= 60 s], each p50 {:.0} s, p99 {:.0} s (Terraform's whole seconds)",
        a.tenants,
        percentile(&each, 0.5),
        percentile(&each, 0.99),
    );
    let tenants = a.tenants + 1;
    let started_cpu: f64 = tenant_dirs(&tenants_dir)
        .iter()
        .flat_map(|d| COMPONENTS.map(|c| pid_of(d, c).map(cpu_seconds).unwrap_or(0.0)))
        .sum();
    println!(
        "  CPU to start one tenant's components: {:.1} s (all {tenants} tenants' CPU so far, averaged)",
        started_cpu / tenants as f64
    );
    tokio::time::sleep(a.settle).await;

    let dirs = tenant_dirs(&tenants_dir);
    assert_eq!(dirs.len(), tenants, "tenant directories");
    let logs: Vec<(PathBuf, u64)> = dirs
        .iter()
        .map(|d| {
            let l = d.join("kube-apiserver.log");
            let len = std::fs::metadata(&l).map(|m| m.len()).unwrap_or(0);
            (l, len)
        })
        .collect();

    // The shard's writes over the window, by folded key.
    let cpu = |dirs: &[PathBuf]| -> f64 {
        dirs.iter()
            .flat_map(|d| COMPONENTS.map(|c| pid_of(d, c).map(cpu_seconds).unwrap_or(0.0)))
            .sum()
    };
    let cpu0 = cpu(&dirs);
    let mut root_client = h.shard_root(&shard.endpoint).await;
    let first = root_client
        .get("x", None)
        .await
        .expect("shard revision")
        .header()
        .map_or(0, |h| h.revision());
    let opts = WatchOptions::new()
        .with_range(vec![0])
        .with_start_revision(first + 1);
    let mut stream = root_client
        .watch(vec![0], Some(opts))
        .await
        .expect("watch the shard");
    let mut by_key: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    let mut last = first;
    let until = tokio::time::Instant::now() + a.window;
    while let Ok(Ok(Some(resp))) = tokio::time::timeout_at(until, stream.message()).await {
        for ev in resp.events() {
            let Some(kv) = ev.kv() else { continue };
            last = last.max(kv.mod_revision());
            let e = by_key.entry(fold(kv.key())).or_default();
            e.0 += 1;
            e.1 += (kv.key().len() + kv.value().len()) as u64;
        }
    }
    let secs = a.window.as_secs_f64();
    let millicores = (cpu(&dirs) - cpu0) / secs / tenants as f64 * 1000.0;
    // RSS counts the program text every tenant's copy of a component shares; PSS divides it
    // among them, which is what each tenant adds to a host.
    let mut mem: BTreeMap<&str, [Vec<f64>; 3]> = BTreeMap::new();
    for d in &dirs {
        for c in COMPONENTS {
            let pid = pid_of(d, c);
            let rss = pid.map(rss_kib).unwrap_or(0);
            let (pss, anon) = pid.map(pss_and_anon_kib).unwrap_or_default();
            let m = mem.entry(c).or_default();
            for (i, v) in [pss, rss, anon].into_iter().enumerate() {
                m[i].push(v as f64 / 1024.0);
            }
        }
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    let sum = |i: usize| -> f64 { COMPONENTS.iter().map(|c| mean(&mem[c][i])).sum() };
    let total = sum(0);
    println!(
        "Idle real tenants ({tenants}, settled {} s, measured over {} s):",
        a.settle.as_secs(),
        a.window.as_secs()
    );
    println!(
        "  memory per idle tenant: {total:.0} MiB PSS ({}); RSS {:.0} MiB, of it anonymous {:.0} MiB  [target <= 220 MiB]",
        COMPONENTS
            .iter()
            .map(|c| format!("{} {:.0}", c.trim_start_matches("kube-"), mean(&mem[c][0])))
            .collect::<Vec<_>>()
            .join(", "),
        sum(1),
        sum(2),
    );
    println!("  CPU per idle tenant: {millicores:.0} millicores (all three components)");
    let avail = before as f64 / 1024.0;
    println!(
        "  {:.1} idle tenants per GiB; this machine ({:.1} GiB available before the run) holds ~{:.0}",
        1024.0 / total,
        avail / 1024.0,
        avail / total
    );
    let revisions = (last - first).max(0) as f64;
    let bytes: u64 = by_key.values().map(|(_, b)| b).sum();
    let per_tenant = revisions / secs / tenants as f64;
    println!(
        "  shard writes per idle tenant: {per_tenant:.2} revisions/s, {:.0} B/s of history  [target <= 0.3 revisions/s]",
        bytes as f64 / secs / tenants as f64
    );
    let mut lines: Vec<(&String, &(u64, u64))> = by_key.iter().collect();
    lines.sort_by_key(|(_, (n, _))| std::cmp::Reverse(*n));
    for (k, (n, b)) in lines.iter().take(8) {
        println!(
            "    {:>6.1}/min per tenant {:>6.0} B/s  {k}",
            *n as f64 * 60.0 / secs / tenants as f64,
            *b as f64 / secs / tenants as f64
        );
    }
    let refused: usize = logs.iter().map(|(l, from)| refusals_since(l, *from)).sum();
    println!(
        "  requests the shard refused during the window: {refused} ({:.2}/s per tenant)  [target 0]",
        refused as f64 / secs / tenants as f64
    );
    if let Some((raw, three)) = raw_txn_per_s {
        println!(
            "  idle tenants a shard carries at 30% of the write capacity measured here ({raw:.0} txn/s, one member): {:.0}",
            raw * 0.3 / per_tenant.max(1e-9)
        );
        if let Some(three) = three {
            println!(
                "  idle tenants a three-member shard carries at 30% of its write capacity ({three:.0} txn/s: the one-member figure scaled by the three-to-one ratio above): {:.0}",
                three * 0.3 / per_tenant.max(1e-9)
            );
        }
    }
}
