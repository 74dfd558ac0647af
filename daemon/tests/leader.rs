//! Leadership against a real etcd: one leader at a time, and hand-over when it stops.

use std::time::Duration;

use kamaji_testkit::devenv::{DevPki, EtcdProcess, EtcdSecurity};
use kamajid::etcd::{connect, EtcdTls};
use tokio::sync::watch;

async fn wait_for(rx: &mut watch::Receiver<bool>, want: bool, secs: u64) -> bool {
    tokio::time::timeout(Duration::from_secs(secs), rx.wait_for(|v| *v == want))
        .await
        .is_ok()
}

#[tokio::test]
async fn one_replica_leads_and_another_takes_over_when_it_stops() {
    kamajid::server::install_crypto();
    let dir = tempfile::tempdir().unwrap();
    let pki = DevPki::generate().unwrap();
    let etcd = EtcdProcess::start(dir.path(), "state", &pki, EtcdSecurity::default())
        .await
        .unwrap();
    let tls = EtcdTls {
        ca_pem: Some(pki.ca.cert.clone()),
        identity: Some((pki.root.cert.clone(), pki.root.key.clone())),
    };
    let client = connect(
        std::slice::from_ref(&etcd.endpoint),
        &tls,
        Duration::from_secs(5),
    )
    .await
    .unwrap();

    let (a_tx, mut a_rx) = watch::channel(false);
    let (b_tx, mut b_rx) = watch::channel(false);
    let (stop_a, stop_a_rx) = watch::channel(false);
    let (stop_b, stop_b_rx) = watch::channel(false);
    let a = tokio::spawn(kamajid::leader::run(
        client.clone(),
        "a".into(),
        2,
        a_tx,
        stop_a_rx,
    ));
    assert!(wait_for(&mut a_rx, true, 10).await, "a never led");
    let b = tokio::spawn(kamajid::leader::run(
        client.clone(),
        "b".into(),
        2,
        b_tx,
        stop_b_rx,
    ));
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(!*b_rx.borrow(), "two leaders at once");
    assert!(*a_rx.borrow(), "a lost leadership while alive");

    stop_a.send(true).unwrap();
    a.await.unwrap();
    assert!(
        wait_for(&mut b_rx, true, 10).await,
        "b did not take over after a stopped"
    );
    stop_b.send(true).unwrap();
    b.await.unwrap();
}
