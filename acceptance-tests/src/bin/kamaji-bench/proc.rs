//! What the bench reads of processes and the machine: percentiles, RSS, CPU time.

pub(crate) fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// A `Name:   123 kB` field of a `/proc` text file, in KiB (0 when absent).
pub(crate) fn kib_field(path: &str, name: &str) -> u64 {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

pub(crate) fn rss_kib(pid: u32) -> u64 {
    kib_field(&format!("/proc/{pid}/status"), "VmRSS:")
}

/// A process's proportional set size (its private pages plus its share of the pages it shares,
/// such as the program text of the same binary run by every tenant) and its anonymous RSS, KiB.
pub(crate) fn pss_and_anon_kib(pid: u32) -> (u64, u64) {
    (
        kib_field(&format!("/proc/{pid}/smaps_rollup"), "Pss:"),
        kib_field(&format!("/proc/{pid}/status"), "RssAnon:"),
    )
}

/// CPU seconds (user + system) a process has used so far.
pub(crate) fn cpu_seconds(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
            let rest = s.rsplit_once(')')?.1.to_owned();
            let f: Vec<&str> = rest.split_whitespace().collect();
            let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
            Some(ticks / 100.0)
        })
        .unwrap_or(0.0)
}

/// PIDs of every process whose command is `comm`.
pub(crate) fn pids_named(comm: &str) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == comm)
        })
        .collect()
}

/// Where the CPU went between two points: kamajid, the etcd processes, this process (the
/// Kubernetes API double and the gRPC clients).
pub(crate) struct CpuSample {
    pub(crate) kamajid: f64,
    pub(crate) etcd: f64,
    pub(crate) bench: f64,
}

pub(crate) fn cpu_sample(kamajid: u32, etcds: &[u32]) -> CpuSample {
    CpuSample {
        kamajid: cpu_seconds(kamajid),
        etcd: etcds.iter().map(|p| cpu_seconds(*p)).sum(),
        bench: cpu_seconds(std::process::id()),
    }
}

pub(crate) fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .next()
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
        })
        .map(|k| format!("{:.1} GiB RAM", k as f64 / 1024.0 / 1024.0))
        .unwrap_or_default();
    format!("{cores} cores ({cpu}), {mem}")
}
