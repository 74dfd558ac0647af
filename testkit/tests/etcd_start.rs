//! A test etcd that exits while starting is noticed (and tried again on new ports), not waited
//! on until the readiness limit.
//! Alone in its binary: it points ETCD_BIN at a program that exits.

use kamaji_testkit::devenv::{DevError, DevPki, EtcdProcess, EtcdSecurity};

#[tokio::test]
async fn an_etcd_that_exits_is_tried_again_then_reported_with_its_log() {
    std::env::set_var("ETCD_BIN", "false");
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = DevPki::generate().expect("pki");
    let err = EtcdProcess::start(dir.path(), "gone", &pki, EtcdSecurity::default())
        .await
        .err()
        .expect("an etcd that exits must not be reported ready");
    match err {
        DevError::NotReady { detail, log, .. } => {
            assert!(detail.contains("etcd exited"), "{detail}");
            assert_eq!(log, dir.path().join("gone/etcd.log"));
        }
        other => panic!("expected NotReady, got {other}"),
    }
}
