//! `kamaji-demo-cluster`: the production shape on this machine, for `make demo-cluster`. An admin
//! cluster with a real node (containerd, kubelet, kube-proxy, CoreDNS; images built here), two
//! etcd datastores on the host's address, and kamajid installed into the cluster by its Helm
//! chart (two replicas, the bundled state etcd) and reached through a NodePort, until
//! interrupted; then everything is stopped and the node cleaned up. `LoadBalancer` Services get
//! addresses from 198.51.100.0/24, as a cloud would hand them out; kube-proxy routes them.
//!
//! Writes into its directory (`--dir`, default `.demo-cluster`) what `scripts/demo.sh` reads:
//! `pki/` (the CA of kamajid's serving certificate and of the datastores, their root client
//! certificate), `token`, `env`, `quickstart.tfvars.json`, `admin.kubeconfig`, then `ready`.

use std::path::PathBuf;

use acceptance_tests::admin_cluster::{AdminCluster, LoadBalancers};
use acceptance_tests::chart::{Installed, NAMESPACE};
use acceptance_tests::node::host_ip;
use acceptance_tests::{DevPki, EtcdProcess, EtcdSecurity};

/// kamajid's NodePort on the host.
const NODE_PORT: u16 = 31443;

fn say(what: &str) {
    eprintln!("demo-cluster: {what}");
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let mut dir = PathBuf::from(".demo-cluster");
    while let Some(a) = args.next() {
        match a.as_str() {
            "--dir" => dir = PathBuf::from(args.next().expect("--dir DIR")),
            other => {
                eprintln!("usage: kamaji-demo-cluster [--dir DIR] (unknown {other})");
                std::process::exit(2);
            }
        }
    }
    std::fs::create_dir_all(&dir).expect("the demo directory");
    let dir = dir.canonicalize().expect("the demo directory");
    let _ = std::fs::remove_file(dir.join("ready"));
    kamajid::server::install_crypto();

    say("starting the admin cluster and its node (images are built on first use: minutes)");
    let admin = AdminCluster::with_node().await;
    // The quickstart's tenants ask for LoadBalancer Services: addresses from 198.51.100.0/24,
    // which kube-proxy on this host routes to their pods (no cloud here to hand them out).
    let lbs = LoadBalancers::start(&admin);
    let kubectl = admin.kubectl();
    std::fs::copy(&kubectl.kubeconfig, dir.join("admin.kubeconfig")).expect("admin kubeconfig");

    let host = host_ip();
    let pki = DevPki::generate_for(&[&host.to_string()]).expect("the demo PKI");
    let pki_dir = dir.join("pki");
    pki.write(&pki_dir).expect("the demo PKI");
    let etcd_dir = dir.join("etcd");
    let _ = std::fs::remove_dir_all(&etcd_dir);
    let mut datastores = Vec::new();
    for i in 1..=2 {
        datastores.push(
            EtcdProcess::start_on(
                &etcd_dir,
                &format!("etcd-{i}"),
                &pki,
                EtcdSecurity::default(),
                host,
            )
            .await
            .expect("a datastore etcd"),
        );
    }

    // kamajid serves with a certificate of the demo CA (valid for the host's address), so one
    // CA file verifies kamajid and the datastores, as examples/quickstart expects.
    say("installing kamajid with its Helm chart");
    kubectl.run(&["create", "namespace", NAMESPACE]);
    let tls = format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: kamajid-demo-tls\n  namespace: {NAMESPACE}\ntype: kubernetes.io/tls\nstringData:\n  tls.crt: {:?}\n  tls.key: {:?}\n  ca.crt: {:?}\n",
        pki.server.cert, pki.server.key, pki.ca.cert
    );
    kubectl.apply(&tls);
    let kamajid = Installed::install(
        &admin,
        NODE_PORT,
        &["tls.existingSecret=kamajid-demo-tls".into()],
    );
    kamajid.await_ready_pods(2, 180).await;

    let token = dir.join("token");
    acceptance_tests::write_private(&token, &kamajid.token);
    let tfvars = serde_json::json!({
        "kamaji_endpoint": kamajid.endpoint,
        "pki_dir": pki_dir,
        "datastore_endpoints": datastores.iter().map(|d| d.endpoint.clone()).collect::<Vec<_>>(),
    });
    std::fs::write(dir.join("quickstart.tfvars.json"), format!("{tfvars:#}\n")).expect("tfvars");
    std::fs::write(
        dir.join("env"),
        format!(
            "export KAMAJI_ENDPOINT={}\nexport KAMAJI_TOKEN_FILE={}\nexport KAMAJI_CA_CERTIFICATE_FILE={}\nexport ADMIN_KUBECONFIG={}\n",
            kamajid.endpoint,
            token.display(),
            pki_dir.join("ca.crt").display(),
            dir.join("admin.kubeconfig").display(),
        ),
    )
    .expect("env");
    std::fs::write(dir.join("ready"), "").expect("ready");
    say(&format!(
        "ready: kamajid at {}; admin cluster: kubectl --kubeconfig {}",
        kamajid.endpoint,
        dir.join("admin.kubeconfig").display()
    ));
    kamajid::server::wait_for_signal().await;
    say("stopping");
    let _ = std::fs::remove_file(dir.join("ready"));
    drop(lbs);
    drop(admin);
    drop(datastores);
}
