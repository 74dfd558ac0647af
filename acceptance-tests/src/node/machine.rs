//! The machine a node runs on: the one node slot (a machine-wide lock), cleaning up what a
//! killed node left (processes, mounts, iptables chains, the bridge), and reading pods' memory
//! from their cgroups.

use std::path::Path;
use std::process::Command;

use super::*;

/// The machine's one node slot, taken and cleaned of what an earlier node left: [`NODE_DIR`]
/// is empty and ours. What else belongs to the node (its admin cluster) lives under it too, so
/// that a test killed before it could clean up is cleaned up by the next one.
pub struct Claim {
    pub(super) lock: std::fs::File,
}

/// Takes the node slot (waiting for another node to stop) and cleans up after the last one.
pub fn claim() -> Claim {
    let lock = lock();
    let dir = Path::new(NODE_DIR);
    cleanup(dir);
    std::fs::create_dir_all(dir).expect("node directory");
    Claim { lock }
}

/// Takes the machine-wide node lock, waiting for another node (another test binary, or a
/// `make demo-cluster`) to stop.
fn lock() -> std::fs::File {
    use std::os::unix::io::AsRawFd;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(LOCK)
        .expect("the node lock file");
    let start = Instant::now();
    let mut said = false;
    // SAFETY: flock on a file descriptor this function owns.
    while unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        if !said {
            let holder = std::fs::read_to_string(LOCK).unwrap_or_default();
            eprintln!(
                "node: waiting for the admin node this machine already runs ({}) to stop",
                holder.trim()
            );
            said = true;
        }
        assert!(
            start.elapsed() < Duration::from_secs(40 * 60),
            "another admin node kept {LOCK} for 40 minutes (make demo-stop stops the demo's)"
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    let _ = f.set_len(0);
    let _ = writeln!(
        f,
        "pid {} ({})",
        std::process::id(),
        std::env::args().next().unwrap_or_default()
    );
    f
}

/// Removes what a node in `dir` leaves on the machine: its containers and their shims,
/// containerd, its mounts, the pods' network namespaces, kube-proxy's rules, the bridge.
pub fn cleanup(dir: &Path) {
    let socket = dir.join("containerd/containerd.sock");
    let sock = socket.display().to_string();
    // Processes of this node: the kubelet and kube-proxy, the containers (in the kubelet's
    // cgroups), their shims and containerd (by the socket they name).
    for pid in processes() {
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        let ours = cmdline.contains(&sock)
            || cmdline.contains(&format!("{}/", dir.display()))
            || in_kubepods(pid);
        if ours && pid != std::process::id() {
            // SAFETY: sending a signal to a process id.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        }
    }
    std::thread::sleep(Duration::from_millis(300));
    // kube-proxy's chains and rules.
    let proxy = k8s::program(&k8s::newest(), "kube-proxy");
    if proxy.exists() {
        let _ = Command::new(proxy)
            .arg("--cleanup")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
    // Mounts under the directory (secret volumes, rootfs overlays, shm), deepest first.
    let prefix = format!("{}/", dir.display());
    let mut mounts: Vec<String> = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(str::to_owned))
        .filter(|m| m.starts_with(&prefix) || m.starts_with("/run/netns/cni-"))
        .collect();
    mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
    for m in mounts {
        if let Ok(c) = std::ffi::CString::new(m.as_str()) {
            // SAFETY: unmounting a path string this function owns.
            unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
        }
        if m.starts_with("/run/netns/cni-") {
            let _ = std::fs::remove_file(&m);
        }
    }
    // The bridge plugin's masquerade rules, one chain per pod it set up: pods killed rather
    // than torn down through CNI leave them, and they would pile up run after run.
    let _ = Command::new("bash")
        .arg("-c")
        .arg(format!(
            r#"iptables -t nat -S POSTROUTING | grep -F 'name: \"{CNI_NETWORK}\"' | sed 's/^-A/-D/' \
                 | while read -r rule; do eval iptables -t nat "$rule"; done
               iptables -t nat -S | sed -n 's/^-N \(CNI-[0-9a-f]\{{24\}}\)$/\1/p' \
                 | while read -r c; do iptables -t nat -F "$c"; iptables -t nat -X "$c"; done"#
        ))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    let _ = Command::new("ip")
        .args(["link", "delete", BRIDGE])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    let _ = std::fs::remove_dir_all(dir);
}

/// The memory a pod's containers use that the kernel cannot simply drop (the working set the
/// kubelet reports: usage less inactive file pages), from its cgroup; None if it has none here.
pub fn pod_working_set(pod_uid: &str) -> Option<u64> {
    let v1 = Path::new("/sys/fs/cgroup/memory/kubepods");
    let v2 = Path::new("/sys/fs/cgroup/kubepods");
    for (root, usage, inactive) in [
        (v1, "memory.usage_in_bytes", "total_inactive_file"),
        (v2, "memory.current", "inactive_file"),
    ] {
        for qos in ["", "burstable", "besteffort"] {
            let dir = root.join(qos).join(format!("pod{pod_uid}"));
            let Ok(used) = std::fs::read_to_string(dir.join(usage)) else {
                continue;
            };
            let used: u64 = used.trim().parse().ok()?;
            let stat = std::fs::read_to_string(dir.join("memory.stat")).unwrap_or_default();
            let inactive: u64 = stat
                .lines()
                .find_map(|l| l.strip_prefix(inactive)?.trim().parse().ok())
                .unwrap_or(0);
            return Some(used.saturating_sub(inactive));
        }
    }
    None
}

pub(super) fn processes() -> Vec<u32> {
    std::fs::read_dir("/proc")
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Whether `pid` runs in a cgroup the kubelet made for pods.
pub(super) fn in_kubepods(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .map(|c| c.lines().any(|l| l.contains(":/kubepods")))
        .unwrap_or(false)
}

pub(super) fn set_sysctl(path: &str, value: &str) {
    let p = Path::new("/proc/sys").join(path);
    if !std::fs::read_to_string(&p).is_ok_and(|v| v.trim() == value) {
        std::fs::write(&p, value).unwrap_or_else(|e| panic!("sysctl {path}={value}: {e}"));
    }
}
