//! Small host tools the suites share: certificates that expired, plain HTTP GETs, openssl,
//! private files, and the processes a test left under a directory.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::*;

/// A certificate for `cn`, signed by `ca`, that expired yesterday.
pub fn expired(ca: &Pem, cn: &str) -> Pem {
    use rcgen::{CertificateParams, DnType, Issuer, KeyPair};
    let issuer = Issuer::from_ca_cert_pem(&ca.cert, KeyPair::from_pem(&ca.key).expect("ca key"))
        .expect("issuer");
    let key = KeyPair::generate().expect("key");
    let mut p = CertificateParams::new(Vec::<String>::new()).expect("params");
    p.distinguished_name.push(DnType::CommonName, cn);
    let now = time::OffsetDateTime::now_utc();
    p.not_before = now - time::Duration::days(30);
    p.not_after = now - time::Duration::days(1);
    Pem {
        cert: p.signed_by(&key, &issuer).expect("sign").pem(),
        key: key.serialize_pem(),
    }
}

/// `GET url` over plain HTTP/1.1 with `accept` as its Accept header: the status, the content
/// type and the body.
pub fn http_get(url: &str, accept: Option<&str>) -> (u16, String, String) {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://").expect("an http:// URL");
    let (host, path) = rest
        .split_once('/')
        .map_or((rest, "/".to_owned()), |(h, p)| (h, format!("/{p}")));
    let mut s = std::net::TcpStream::connect(host).expect("connecting");
    s.set_read_timeout(Some(Duration::from_secs(30))).ok();
    let accept = accept
        .map(|a| format!("Accept: {a}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\n{accept}Connection: close\r\n\r\n"
    )
    .expect("request");
    let mut raw = String::new();
    s.read_to_string(&mut raw).expect("response");
    let (head, body) = raw.split_once("\r\n\r\n").expect("a response head");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("a status");
    let ty = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-type")
                .then(|| v.trim().to_owned())
        })
        .unwrap_or_default();
    (status, ty, body.to_owned())
}

/// Runs `openssl ARGS` with `input` on stdin and returns what it prints: an independent reading
/// of certificates and keys.
pub fn openssl(args: &[&str], input: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut child = Command::new("openssl")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("openssl is installed by scripts/install-deps.sh");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input)
        .expect("writing to openssl");
    let out = child.wait_with_output().expect("openssl");
    assert!(out.status.success(), "openssl {args:?} failed");
    out.stdout
}

/// Writes `content` to `path` with mode 0600 (kubeconfigs, keys).
pub fn write_private(path: &Path, content: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, content).expect("writing a private file");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).expect("chmod 0600");
}

/// `(file, pid)` of every PID file of the process runtime's tenant directories under `dir`.
pub fn pids_under(dir: &Path) -> Vec<(PathBuf, u32)> {
    let mut out = Vec::new();
    for t in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        for f in std::fs::read_dir(t.path()).into_iter().flatten().flatten() {
            if f.path().extension().is_some_and(|x| x == "pid") {
                if let Some(pid) = std::fs::read_to_string(f.path())
                    .ok()
                    .and_then(|s| s.trim().parse().ok())
                {
                    out.push((f.path(), pid));
                }
            }
        }
    }
    out.sort();
    out
}

/// Kills whatever the tenants' PID files under its directory name when dropped, even when a
/// test fails: the process runtime's tenant processes outlive kamajid by design.
pub struct Reaper(pub PathBuf);

impl Drop for Reaper {
    fn drop(&mut self) {
        for (_, pid) in pids_under(&self.0) {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        }
    }
}
