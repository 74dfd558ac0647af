//! A stand-in for kube-apiserver, kube-controller-manager and kube-scheduler, for testing the
//! process runtime where no Kubernetes binary can be installed. Which one it plays comes from
//! the name it is run under (tests copy it to `<bin-dir>/kube-apiserver` etc.).
//!
//! - `--version` prints `Kubernetes v<VERSION>`, VERSION being the file beside the binary.
//! - Otherwise it checks that every file its flags name exists (so a wrong layout fails as the
//!   real component would), then serves TLS on `--bind-address:--secure-port`: `/readyz`,
//!   `/healthz` and `/livez` answer `ok`; `/standin/exit` makes it exit with status 3.
//!   The apiserver uses `--tls-cert-file`/`--tls-private-key-file` and answers the Kubernetes API
//!   with the test double (so kamajid can bootstrap it); the others self-sign, as they do.

use std::collections::BTreeMap;
use std::path::PathBuf;

use acceptance_tests::kube_double::{serve_tls, KubeDouble};
use axum::routing::get;

fn main() {
    let argv: Vec<String> = std::env::args().collect();
    let exe = std::env::current_exe().expect("own path");
    let name = PathBuf::from(&argv[0])
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if argv.iter().any(|a| a == "--version") {
        let version = std::fs::read_to_string(exe.with_file_name("VERSION"))
            .unwrap_or_else(|_| "0.0.0".into());
        println!("Kubernetes v{}", version.trim());
        return;
    }
    let flags: BTreeMap<String, String> = argv[1..]
        .iter()
        .filter_map(|a| a.strip_prefix("--")?.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    for (k, v) in &flags {
        let names_file = k.ends_with("-file")
            || k.ends_with("kubeconfig")
            || k.ends_with("cafile")
            || k.ends_with("certfile")
            || k.ends_with("keyfile");
        if names_file && !std::path::Path::new(v).exists() {
            eprintln!("{name}: --{k}={v}: no such file");
            std::process::exit(1);
        }
    }
    let port: u16 = flags
        .get("secure-port")
        .and_then(|p| p.parse().ok())
        .unwrap_or(6443);
    let bind = flags
        .get("bind-address")
        .cloned()
        .unwrap_or_else(|| "0.0.0.0".into());
    let (cert, key) = if name == "kube-apiserver" {
        (
            std::fs::read_to_string(&flags["tls-cert-file"]).expect("cert"),
            std::fs::read_to_string(&flags["tls-private-key-file"]).expect("key"),
        )
    } else {
        let c = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
            .expect("self-signed");
        (c.cert.pem(), c.signing_key.serialize_pem())
    };
    let tcp = match std::net::TcpListener::bind((bind.as_str(), port)) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("{name}: listening on {bind}:{port}: {e}");
            std::process::exit(1);
        }
    };
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async move {
        let ok = || async { "ok" };
        let mut app = axum::Router::new()
            .route("/readyz", get(ok))
            .route("/healthz", get(ok))
            .route("/livez", get(ok))
            .route(
                "/standin/exit",
                get(|| async {
                    tokio::spawn(async {
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        std::process::exit(3);
                    });
                    "bye"
                }),
            );
        if name == "kube-apiserver" {
            app = app.merge(KubeDouble::default().router());
        }
        eprintln!("{name}: serving on {bind}:{port}");
        let task = serve_tls(tcp, &cert, &key, app).expect("tls");
        let _ = task.await;
    });
}
