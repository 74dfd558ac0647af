//! The Datastores API against real, secured etcd processes: what an operator sees when
//! registering, inspecting, updating and removing datastores.

mod support;

use std::time::Duration;

use kamaji_core::pki::{issue, new_ca};
use kamaji_proto::errors::field_errors;
use kamaji_proto::v1::{self, DatastorePhase};
use kamaji_testkit::devenv::{free_port, EtcdSecurity};
use support::{create, names, Env};
use tonic::Code;

fn field_of(status: &tonic::Status) -> String {
    field_errors(status)
        .first()
        .map(|f| f.field.clone())
        .unwrap_or_default()
}

#[tokio::test]
async fn calls_without_an_accepted_token_are_refused() {
    let env = Env::start().await;
    let mut anonymous = env.client_with(None).await;
    let err = anonymous
        .list_datastores(v1::ListDatastoresRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    let mut wrong = env.client_with(Some("not-the-token-0123456789")).await;
    let err = wrong
        .list_datastores(v1::ListDatastoresRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    assert!(!err.message().contains("not-the-token"));
    assert!(names(&mut env.client().await).await.is_empty());
    env.shutdown().await;
}

#[tokio::test]
async fn a_secured_etcd_registers_ready_and_its_keys_never_leave_kamajid() {
    let env = Env::start().await;
    let etcd = env.datastore("etcd-a", EtcdSecurity::default()).await;
    let mut c = env.client().await;
    let ds = create(&mut c, "etcd-a", env.spec(&etcd)).await.unwrap();
    let status = ds.status.clone().unwrap();
    assert_eq!(
        status.phase,
        DatastorePhase::Ready as i32,
        "{}",
        status.message
    );
    assert!(
        status.etcd_version.starts_with("3."),
        "{}",
        status.etcd_version
    );
    assert!(status.db_size_bytes > 0);
    assert_eq!(status.members.len(), 1);
    let spec = ds.spec.unwrap();
    assert!(
        spec.client_key.is_empty() && spec.client_ca_key.is_empty(),
        "keys must never be returned"
    );
    assert_eq!(
        ds.client_key_sha256,
        kamaji_proto::validate::pem_fingerprint(&env.pki.root.key)
    );

    // The record in the state etcd holds the keys sealed, not in clear.
    let mut raw = env.state_client().await;
    let rec = raw
        .get("/kamajid/v1/datastores/etcd-a", None)
        .await
        .unwrap();
    let text = String::from_utf8_lossy(rec.kvs()[0].value()).into_owned();
    assert!(
        !text.contains("PRIVATE KEY"),
        "a private key is stored in clear"
    );
    assert!(text.contains("kek1:"));

    let got = c
        .get_datastore(v1::GetDatastoreRequest {
            name: "etcd-a".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.name, "etcd-a");
    assert_eq!(got.status.unwrap().tenant_count, 0);
    let again = create(&mut c, "etcd-a", env.spec(&etcd)).await.unwrap_err();
    assert_eq!(
        (again.code(), field_of(&again)),
        (Code::AlreadyExists, "name".to_string())
    );
    env.shutdown().await;
}

#[tokio::test]
async fn unsafe_or_unreachable_datastores_are_refused_with_the_reason_and_nothing_is_stored() {
    let env = Env::start().await;
    let no_cert_auth = env
        .datastore(
            "no-cert-auth",
            EtcdSecurity {
                client_cert_auth: false,
                auth: false,
                ..Default::default()
            },
        )
        .await;
    let no_auth = env
        .datastore(
            "no-auth",
            EtcdSecurity {
                client_cert_auth: true,
                auth: false,
                ..Default::default()
            },
        )
        .await;
    let good = env.datastore("good", EtcdSecurity::default()).await;
    let mut c = env.client().await;

    let other_ca = new_ca("some other CA").unwrap();
    let stranger = issue(&other_ca, "root", &[]).unwrap();
    let alice = issue(&env.pki.ca, "alice", &[]).unwrap();

    let mut cases: Vec<(&str, v1::DatastoreSpec, &str, &str)> = Vec::new();
    cases.push((
        "client-cert-auth-off",
        env.spec(&no_cert_auth),
        "endpoints",
        "--client-cert-auth",
    ));
    cases.push((
        "auth-off",
        env.spec(&no_auth),
        "endpoints",
        "authentication disabled",
    ));
    let mut s = env.spec(&good);
    s.ca_certificate = other_ca.cert.clone();
    cases.push((
        "untrusted-server",
        s,
        "ca_certificate",
        "not trusted by ca_certificate",
    ));
    let mut s = env.spec(&good);
    s.client_certificate = stranger.cert.clone();
    s.client_key = stranger.key.clone();
    cases.push((
        "foreign-client-cert",
        s,
        "client_certificate",
        "refused the client certificate",
    ));
    let mut s = env.spec(&good);
    s.client_certificate = alice.cert.clone();
    s.client_key = alice.key.clone();
    cases.push(("not-root", s, "client_certificate", "not an etcd root user"));
    let mut s = env.spec(&good);
    s.endpoints = vec![format!("https://127.0.0.1:{}", free_port())];
    cases.push(("unreachable", s, "endpoints", "cannot reach etcd"));
    // A client CA etcd does not trust would sign tenant certificates etcd refuses.
    let mut s = env.spec(&good);
    s.client_ca_certificate = other_ca.cert.clone();
    s.client_ca_key = other_ca.key.clone();
    cases.push((
        "untrusted-client-ca",
        s,
        "client_ca_certificate",
        "etcd does not trust client_ca_certificate",
    ));

    for (name, spec, field, needle) in cases {
        let err = create(&mut c, name, spec).await.unwrap_err();
        assert_eq!(err.code(), Code::FailedPrecondition, "{name}: {err:?}");
        assert_eq!(field_of(&err), field, "{name}: {}", err.message());
        assert!(
            err.message().contains(needle),
            "{name}: {:?} lacks {needle:?}",
            err.message()
        );
        assert!(
            !err.message().contains("PRIVATE KEY"),
            "{name}: a key leaked into the error"
        );
    }
    assert!(
        names(&mut c).await.is_empty(),
        "a refused datastore was stored"
    );
    // The good one still registers.
    create(&mut c, "good", env.spec(&good)).await.unwrap();
    // The same etcd again, by another name for the same host: its quota would count twice.
    let mut again = env.spec(&good);
    again.endpoints = vec![good.endpoint.replace("127.0.0.1", "localhost")];
    let err = create(&mut c, "good-again", again).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert_eq!(field_of(&err), "endpoints", "{}", err.message());
    assert!(
        err.message().contains("datastore \"good\" already is"),
        "{}",
        err.message()
    );
    assert_eq!(names(&mut c).await, ["good"]);
    env.shutdown().await;
}

#[tokio::test]
async fn updates_reprobe_new_connections_and_the_client_ca_cannot_change_in_place() {
    let env = Env::start().await;
    let etcd = env.datastore("etcd-u", EtcdSecurity::default()).await;
    let mut c = env.client().await;
    create(&mut c, "etcd-u", env.spec(&etcd)).await.unwrap();
    let update = |spec| v1::UpdateDatastoreRequest {
        name: "etcd-u".into(),
        spec: Some(spec),
    };

    let mut s = env.spec(&etcd);
    s.quota_bytes = 4 << 30;
    s.labels.insert("zone".into(), "b".into());
    s.schedulable = false;
    s.max_tenants = Some(50);
    let ds = c
        .update_datastore(update(s.clone()))
        .await
        .unwrap()
        .into_inner();
    let got = ds.spec.unwrap();
    assert_eq!(
        (got.quota_bytes, got.schedulable, got.max_tenants),
        (4 << 30, false, Some(50))
    );
    assert_eq!(got.labels.get("zone").map(String::as_str), Some("b"));

    let mut dead = s.clone();
    dead.endpoints = vec![format!("https://127.0.0.1:{}", free_port())];
    let err = c.update_datastore(update(dead)).await.unwrap_err();
    assert_eq!(
        (err.code(), field_of(&err)),
        (Code::FailedPrecondition, "endpoints".into())
    );
    let stored = c
        .get_datastore(v1::GetDatastoreRequest {
            name: "etcd-u".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        stored.spec.unwrap().endpoints,
        vec![etcd.endpoint.clone()],
        "a refused update was stored"
    );

    let other = new_ca("another client CA").unwrap();
    let mut ca = s.clone();
    ca.client_ca_certificate = other.cert;
    ca.client_ca_key = other.key;
    let err = c.update_datastore(update(ca)).await.unwrap_err();
    assert_eq!(
        (err.code(), field_of(&err)),
        (Code::InvalidArgument, "client_ca_certificate".into())
    );

    let err = c
        .update_datastore(v1::UpdateDatastoreRequest {
            name: "missing".into(),
            spec: Some(s),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    env.shutdown().await;
}

#[tokio::test]
async fn delete_is_refused_while_tenants_are_placed_and_names_them() {
    let env = Env::start().await;
    let etcd = env.datastore("etcd-d", EtcdSecurity::default()).await;
    let mut c = env.client().await;
    create(&mut c, "etcd-d", env.spec(&etcd)).await.unwrap();
    // A placement as the tenant reconciler writes it; one on a datastore whose name shares the
    // prefix must not count.
    let mut raw = env.state_client().await;
    raw.put("/kamajid/v1/placements/etcd-d/team-a", "{}", None)
        .await
        .unwrap();
    raw.put("/kamajid/v1/placements/etcd-dd/team-b", "{}", None)
        .await
        .unwrap();

    let got = c
        .get_datastore(v1::GetDatastoreRequest {
            name: "etcd-d".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.status.unwrap().tenant_count, 1);
    let err = c
        .delete_datastore(v1::DeleteDatastoreRequest {
            name: "etcd-d".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(
        err.message().contains("team-a") && !err.message().contains("team-b"),
        "{}",
        err.message()
    );

    raw.delete("/kamajid/v1/placements/etcd-d/team-a", None)
        .await
        .unwrap();
    c.delete_datastore(v1::DeleteDatastoreRequest {
        name: "etcd-d".into(),
    })
    .await
    .unwrap();
    let err = c
        .get_datastore(v1::GetDatastoreRequest {
            name: "etcd-d".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let status = raw
        .get("/kamajid/v1/status/datastores/etcd-d", None)
        .await
        .unwrap();
    assert!(
        status.kvs().is_empty(),
        "the status record outlived its datastore"
    );
    env.shutdown().await;
}

#[tokio::test]
async fn the_health_loop_marks_a_stopped_datastore_unreachable_and_recovers_nothing_else() {
    let env = Env::start().await;
    let mut etcd = env.datastore("etcd-h", EtcdSecurity::default()).await;
    let keep = env.datastore("etcd-k", EtcdSecurity::default()).await;
    let mut c = env.client().await;
    create(&mut c, "etcd-h", env.spec(&etcd)).await.unwrap();
    create(&mut c, "etcd-k", env.spec(&keep)).await.unwrap();
    etcd.stop().await;
    let phase = |c: &mut support::Client, name: &'static str| {
        let mut c = c.clone();
        async move {
            let s = c
                .get_datastore(v1::GetDatastoreRequest { name: name.into() })
                .await
                .unwrap()
                .into_inner()
                .status
                .unwrap();
            (s.phase, s.message)
        }
    };
    let mut last = (0, String::new());
    for _ in 0..60 {
        last = phase(&mut c, "etcd-h").await;
        if last.0 == DatastorePhase::Unreachable as i32 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(
        last.0,
        DatastorePhase::Unreachable as i32,
        "still {:?}",
        last
    );
    assert!(last.1.contains("cannot reach etcd"), "{}", last.1);
    assert_eq!(
        phase(&mut c, "etcd-k").await.0,
        DatastorePhase::Ready as i32
    );
    env.shutdown().await;
}

#[tokio::test]
async fn concurrent_creates_of_one_name_store_exactly_one_record() {
    let env = Env::start().await;
    let etcd = env.datastore("etcd-c", EtcdSecurity::default()).await;
    let c = env.client().await;
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let mut c = c.clone();
            let spec = env.spec(&etcd);
            tokio::spawn(async move { create(&mut c, "etcd-c", spec).await })
        })
        .collect();
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => ok += 1,
            Err(e) => assert_eq!(e.code(), Code::AlreadyExists, "{e:?}"),
        }
    }
    assert_eq!(ok, 1);
    assert_eq!(names(&mut c.clone()).await, vec!["etcd-c".to_string()]);
    env.shutdown().await;
}
