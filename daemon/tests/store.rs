//! The record store against a real etcd: listing a fleet's worth of records, more than one
//! gRPC response can carry.

use std::time::Duration;

use kamajid::devenv::{DevPki, EtcdProcess, EtcdSecurity};
use kamajid::etcd::{connect, EtcdTls};
use kamajid::store::Store;

#[derive(serde::Serialize, serde::Deserialize)]
struct Big {
    n: usize,
    pad: String,
}

#[tokio::test]
async fn lists_every_record_past_the_response_size_cap_in_key_order() {
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
    let store = Store::new(
        connect(
            std::slice::from_ref(&etcd.endpoint),
            &tls,
            Duration::from_secs(5),
        )
        .await
        .unwrap(),
    );
    // 450 records of 24 KiB: about 10.5 MiB, well past gRPC's 4 MiB response cap.
    let pad = "x".repeat(24 * 1024);
    let writes = (0..450).map(|n| {
        let store = store.clone();
        let pad = pad.clone();
        async move {
            store
                .create(&format!("/t/r/{n:04}"), &Big { n, pad }, vec![])
                .await
                .unwrap()
        }
    });
    futures::future::join_all(writes).await;
    store
        .create(
            "/t/rx",
            &Big {
                n: 9999,
                pad: String::new(),
            },
            vec![],
        )
        .await
        .unwrap();

    let all: Vec<kamajid::store::Versioned<Big>> = store.list("/t/r/").await.unwrap();
    let ns: Vec<usize> = all.iter().map(|v| v.value.n).collect();
    assert_eq!(
        ns,
        (0..450).collect::<Vec<_>>(),
        "every record once, in key order, nothing outside the prefix"
    );
    let names = store.list_names("/t/r/").await.unwrap();
    assert_eq!(names.len(), 450);
    assert_eq!((names[0].as_str(), names[449].as_str()), ("0000", "0449"));
    assert_eq!(store.count("/t/r/").await.unwrap(), 450);
}
