//! The record store against a real etcd: listing a fleet's worth of records, more than one
//! gRPC response can carry, and a record that does not decode reported, never defaulted.

use std::time::Duration;

use kamaji_core::ids::TenantName;
use kamaji_core::lifecycle::ports::{RecordError, Records};
use kamaji_core::tenant::{TenantRecord, WireSpec};
use kamaji_testkit::devenv::{DevPki, EtcdProcess, EtcdSecurity};
use kamajid::etcd::{connect, EtcdTls};
use kamajid::store::{Store, StoreError};

async fn store() -> (tempfile::TempDir, EtcdProcess, Store) {
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
    (dir, etcd, Store::new(client))
}

#[tokio::test]
async fn lists_every_record_past_the_response_size_cap_in_key_order() {
    let (_dir, _etcd, store) = store().await;
    // 450 records of 24 KiB: about 10.5 MiB, well past gRPC's 4 MiB response cap.
    let pad = "x".repeat(24 * 1024);
    let writes = (0..450).map(|n| {
        let store = store.clone();
        let mut rec = TenantRecord::new(
            TenantName::parse(&format!("t{n:04}")).unwrap(),
            WireSpec(pad.clone()),
            1,
            1,
        );
        rec.generation = n;
        async move { store.create_tenant_record(&rec).await.unwrap() }
    });
    futures::future::join_all(writes).await;
    let all = store.tenant_records().await.unwrap();
    let ns: Vec<i64> = all.iter().map(|r| r.generation).collect();
    assert_eq!(
        ns,
        (0..450).collect::<Vec<_>>(),
        "every record once, in key order"
    );
}

#[tokio::test]
async fn a_record_that_does_not_decode_is_an_error_naming_it() {
    let (_dir, _etcd, store) = store().await;
    let name = TenantName::parse("broken").unwrap();
    store
        .client()
        .put("/kamajid/v1/tenants/broken", "{\"name\": 7}", None)
        .await
        .unwrap();
    match store.tenant_record(&name).await {
        Err(StoreError::Corrupt { key, .. }) => assert_eq!(key, "/kamajid/v1/tenants/broken"),
        other => panic!("{other:?}"),
    }
    // Its spec too: a record that decodes but carries a spec that does not.
    let rec = TenantRecord::new(
        TenantName::parse("odd").unwrap(),
        WireSpec("%%%".into()),
        1,
        1,
    );
    store.create_tenant_record(&rec).await.unwrap();
    assert!(matches!(store.spec(&rec), Err(RecordError::Corrupt { .. })));
}
