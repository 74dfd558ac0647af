//! Benches that run inside this binary: minting PKIs and placing tenants.

use super::*;

/// 3. The time to mint one tenant's full PKI, in-process (this binary is built in release).
pub(crate) fn bench_pki() {
    let client_ca = new_ca("etcd-client-ca").expect("ca");
    let spec = kamaji_core::pki::TenantPkiSpec {
        tenant_id: TenantId::parse("bench-00001").expect("an id"),
        service_cidr: "10.96.0.0/12".parse().expect("a network"),
        dns_domain: "cluster.local".into(),
        external_sans: vec!["bench.example.com".into()],
        leaf_validity: kamaji_core::pki::LEAF_VALIDITY,
    };
    for _ in 0..5 {
        kamaji_core::pki::mint(&spec, &client_ca).expect("mint");
    }
    let mut times: Vec<f64> = (0..200)
        .map(|_| {
            let t = Instant::now();
            kamaji_core::pki::mint(&spec, &client_ca).expect("mint");
            t.elapsed().as_secs_f64() * 1000.0
        })
        .collect();
    times.sort_by(f64::total_cmp);
    println!(
        "PKI: one tenant's full PKI (2 CAs, 9 certificates, SA key, 3 kubeconfigs) in p50 {:.2} ms, p99 {:.2} ms  [target <= 10 ms]",
        percentile(&times, 0.5),
        percentile(&times, 0.99)
    );
}

/// 5a. Where spread puts 1000 tenants on shards of 2, 4, 8 and 8 GiB (pure placement).
pub(crate) fn bench_balance(tenants: usize) {
    let quotas = [2, 4, 8, 8];
    let mut cands: Vec<Candidate> = quotas
        .iter()
        .enumerate()
        .map(|(i, q)| Candidate {
            name: DatastoreName::parse(&format!("shard-{}-{q}g", i + 1)).expect("a name"),
            ready: true,
            schedulable: true,
            draining: false,
            labels: BTreeMap::new(),
            quota_bytes: q * GIB,
            max_tenants: None,
            tenants: 0,
            reserved_bytes: 0,
            used_bytes: 0,
            file_bytes: 0,
        })
        .collect();
    let req = Request {
        reservation_bytes: RESERVATION_MIB * MIB,
        datastore: None,
        selector: BTreeMap::new(),
    };
    let mut refused = 0;
    for _ in 0..tenants {
        match placement::place(&req, &cands, Policy::Spread) {
            Ok(c) => {
                let name = c.name.clone();
                let c = cands.iter_mut().find(|c| c.name == name).expect("chosen");
                c.tenants += 1;
                c.reserved_bytes += req.reservation_bytes;
            }
            Err(_) => refused += 1,
        }
    }
    let total_q: i64 = cands.iter().map(|c| c.quota_bytes).sum();
    let total_r: i64 = cands.iter().map(|c| c.reserved_bytes).sum();
    let ideal = total_r as f64 / total_q as f64 * 100.0;
    println!(
        "Placement balance (spread, {tenants} tenants x {RESERVATION_MIB} MiB, {refused} refused): ideal utilisation {ideal:.1}% on every shard"
    );
    let mut worst: f64 = 0.0;
    for c in &cands {
        let u = c.reserved_bytes as f64 / c.quota_bytes as f64 * 100.0;
        worst = worst.max((u - ideal).abs());
        println!(
            "  {:<12} quota {:>2} GiB: {:>4} tenants, utilisation {:>5.1}% ({:+.2} points from ideal)",
            c.name.as_str(),
            c.quota_bytes / GIB,
            c.tenants,
            u,
            u - ideal
        );
    }
    println!("  largest deviation from ideal: {worst:.2} points");
}
