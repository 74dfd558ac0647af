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

/// The value at `key` and its mod revision.
async fn raw(store: &Store, key: &str) -> Option<(Vec<u8>, i64)> {
    let resp = store.client().get(key, None).await.unwrap();
    resp.kvs()
        .first()
        .map(|kv| (kv.value().to_vec(), kv.mod_revision()))
}

#[tokio::test]
async fn the_sealed_pki_is_kept_apart_and_written_only_when_it_changes() {
    use kamaji_core::tenant::StoredPki;
    let (_dir, _etcd, store) = store().await;
    let name = TenantName::parse("split").unwrap();
    let (tkey, pkey) = ("/kamajid/v1/tenants/split", "/kamajid/v1/pki/split");
    let sealed = format!("kek1:{}", "s".repeat(20 * 1024));
    // A record as the last landed version wrote it: the sealed PKI inline.
    let mut old = TenantRecord::new(name.clone(), WireSpec::default(), 1, 1);
    old.pki = Some(StoredPki {
        sealed: sealed.clone(),
        ca_certificate: "CA".into(),
        certificates_expire_at: 9,
        stored_as: None,
    });
    store
        .client()
        .put(tkey, serde_json::to_vec(&old).unwrap(), None)
        .await
        .unwrap();
    let v = store.tenant_record(&name).await.unwrap().unwrap();
    assert_eq!(v.value.pki.as_ref().unwrap().sealed, sealed, "inline reads");
    let listed = store.tenant_records().await.unwrap();
    assert_eq!(listed[0].pki.as_ref().unwrap().sealed, sealed);

    // Its next write splits it: a small record naming the sealed PKI under its own key.
    let mut rec = v.value;
    rec.phase = kamaji_core::tenant::Phase::Ready;
    store.update_tenant_record(&rec, v.revision).await.unwrap();
    let (record, _) = raw(&store, tkey).await.unwrap();
    assert!(record.len() < 2048, "record of {} bytes", record.len());
    let (at_key, pki_rev) = raw(&store, pkey).await.unwrap();
    assert_eq!(at_key, sealed.as_bytes());

    // Read one: whole. Listed: without the sealed set, with the public parts.
    let v = store.tenant_record(&name).await.unwrap().unwrap();
    assert_eq!(v.value.pki.as_ref().unwrap().sealed, sealed);
    assert_eq!(v.value.phase, kamaji_core::tenant::Phase::Ready);
    let listed = store.tenant_records().await.unwrap();
    let lp = listed[0].pki.as_ref().unwrap();
    assert!(lp.sealed.is_empty() && !lp.sealed_read());
    assert_eq!(
        (lp.ca_certificate.as_str(), lp.certificates_expire_at),
        ("CA", 9)
    );
    let all = store.tenant_records_sealed().await.unwrap();
    assert_eq!(all[0].pki.as_ref().unwrap().sealed, sealed);

    // Status writes leave the sealed PKI alone, also from a listed record.
    let mut rec = v.value;
    rec.set_condition("Ready", true, "", "", 2);
    store.update_tenant_record(&rec, v.revision).await.unwrap();
    let v = store.tenant_record(&name).await.unwrap().unwrap();
    let mut listed = store.tenant_records().await.unwrap().remove(0);
    listed.generation += 1;
    store
        .update_tenant_record(&listed, v.revision)
        .await
        .unwrap();
    assert_eq!(raw(&store, pkey).await.unwrap().1, pki_rev, "not rewritten");
    let v = store.tenant_record(&name).await.unwrap().unwrap();
    assert_eq!(v.value.pki.as_ref().unwrap().sealed, sealed);

    // Re-sealed (a KEK rotation): rewritten, and read back as the new one.
    let mut rec = v.value;
    rec.pki.as_mut().unwrap().sealed = format!("kek2:{}", "t".repeat(100));
    store.update_tenant_record(&rec, v.revision).await.unwrap();
    let (at_key, rev) = raw(&store, pkey).await.unwrap();
    assert!(rev > pki_rev);
    assert!(at_key.starts_with(b"kek2:"));
    let v = store.tenant_record(&name).await.unwrap().unwrap();
    assert!(v.value.pki.as_ref().unwrap().sealed.starts_with("kek2:"));

    // A sealed PKI that is not the one the record names is an error, never "no PKI".
    store.client().put(pkey, "kek1:other", None).await.unwrap();
    match store.tenant_record(&name).await {
        Err(StoreError::Corrupt { key, .. }) => assert_eq!(key, pkey),
        other => panic!("{other:?}"),
    }
    store.client().delete(pkey, None).await.unwrap();
    assert!(matches!(
        store.tenant_record(&name).await,
        Err(StoreError::Corrupt { .. })
    ));
    assert!(store.tenant_records_sealed().await.is_err());

    // Released: both keys go.
    store
        .client()
        .put(pkey, rec.pki.as_ref().unwrap().sealed.clone(), None)
        .await
        .unwrap();
    let v = store.tenant_record(&name).await.unwrap().unwrap();
    Records::release(&store, &v.value, v.revision)
        .await
        .unwrap();
    assert!(raw(&store, tkey).await.is_none());
    assert!(raw(&store, pkey).await.is_none());
}

#[tokio::test]
async fn a_list_after_a_list_shows_every_change_made_in_between() {
    let (_dir, _etcd, store) = store().await;
    let names: Vec<TenantName> = (0..100)
        .map(|n| TenantName::parse(&format!("t{n:03}")).unwrap())
        .collect();
    for n in &names {
        store
            .create_tenant_record(&TenantRecord::new(n.clone(), WireSpec::default(), 1, 1))
            .await
            .unwrap();
    }
    let generations = |all: &[TenantRecord]| -> Vec<(String, i64)> {
        all.iter()
            .map(|r| (r.name.to_string(), r.generation))
            .collect()
    };
    assert_eq!(store.tenant_records().await.unwrap().len(), 100);
    // A few changed, one gone, one new; then many changed (read in pages, not one by one).
    for (changed, count) in [(3, 3), (90, 90)] {
        for n in &names[..changed] {
            let v = store.tenant_record(n).await.unwrap().unwrap();
            let mut rec = v.value;
            rec.generation += count;
            store.update_tenant_record(&rec, v.revision).await.unwrap();
        }
        let all = store.tenant_records().await.unwrap();
        let want: Vec<(String, i64)> = names
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let g = 1 + if i < 3 { 3 } else { 0 } + if count == 90 && i < 90 { 90 } else { 0 };
                (n.to_string(), g)
            })
            .collect();
        assert_eq!(generations(&all), want, "after {changed} changed");
    }
    let gone = store.tenant_record(&names[50]).await.unwrap().unwrap();
    Records::release(&store, &gone.value, gone.revision)
        .await
        .unwrap();
    let fresh = TenantName::parse("zz").unwrap();
    store
        .create_tenant_record(&TenantRecord::new(fresh, WireSpec::default(), 1, 1))
        .await
        .unwrap();
    let all = store.tenant_records().await.unwrap();
    assert_eq!(all.len(), 100);
    assert!(all.iter().all(|r| r.name.as_str() != "t050"));
    assert_eq!(all.last().unwrap().name.as_str(), "zz");
}
