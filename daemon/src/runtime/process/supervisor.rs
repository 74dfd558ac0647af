//! Keeps a tenant's component processes running: starts them in their own process group (they
//! outlive kamajid), adopts the ones a previous kamajid left running (PID files checked against
//! `/proc/<pid>/cmdline`), restarts what exits with exponential backoff (1 s doubling to 60 s),
//! and replaces a process whose command changed without holding up the others.

use std::collections::HashMap;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::{write_private, ALL_COMPONENTS, KONNECTIVITY_SERVER};

const BACKOFF_MAX: Duration = Duration::from_secs(60);
/// A process up this long has its failure count forgotten.
const STABLE_AFTER: Duration = Duration::from_secs(120);
/// A process that exits within this long of its start failed at start...
const QUICK_EXIT: Duration = Duration::from_secs(15);
/// ...and one that did that this many times in a row will not start as configured: waiting
/// longer only waits out the apply's timeout.
const STALLED_AFTER: u32 = 3;
const STOP_GRACE: Duration = Duration::from_secs(10);

/// What runs, as persisted next to the PID file (`<component>.cmd`) so a restarted kamajid can
/// adopt or restart it without the tenant's record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Command {
    pub bin: PathBuf,
    pub args: Vec<String>,
    /// Hex SHA-256 of what the process reads only at start besides its flags (configuration
    /// files, client certificates): a change restarts it like a change of flags.
    #[serde(default)]
    pub fingerprint: String,
    /// Environment set over kamajid's own (the Go runtime settings).
    #[serde(default)]
    pub env: Vec<(String, String)>,
}

/// The next backoff after `failures` consecutive failures.
pub fn backoff(failures: u32) -> Duration {
    let secs = 1u64 << failures.saturating_sub(1).min(6);
    Duration::from_secs(secs).min(BACKOFF_MAX)
}

struct Proc {
    cmd: Command,
    log: PathBuf,
    pid_file: PathBuf,
    child: Option<tokio::process::Child>,
    pid: Option<u32>,
    failures: u32,
    started: Instant,
    next_start: Instant,
    last_exit: Option<String>,
    /// Exits within [`QUICK_EXIT`] of a start, in a row.
    quick_exits: u32,
    /// Its previous process is being stopped to be replaced: not the restart loop's business.
    replacing: bool,
}

/// Keeps the desired processes running.
#[derive(Default)]
pub struct Supervisor {
    procs: Mutex<HashMap<(String, &'static str), Proc>>,
}

fn pid_alive(pid: u32, bin: &Path) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .unwrap_or("X");
    if state == "Z" || state == "X" {
        return false;
    }
    // PIDs are reused: only a process running our binary counts.
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .ok()
        .and_then(|c| {
            c.split(|b| *b == 0)
                .next()
                .map(|a0| Path::new(std::str::from_utf8(a0).unwrap_or_default()) == bin)
        })
        .unwrap_or(false)
}

fn signal(pid: u32, sig: i32) {
    if let Ok(pid) = i32::try_from(pid) {
        // SAFETY: kill(2) with a positive PID only sends a signal; no memory is touched.
        unsafe {
            libc::kill(pid, sig);
        }
    }
}

impl Supervisor {
    fn spawn(p: &mut Proc) -> Result<(), String> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&p.log)
            .map_err(|e| format!("opening {}: {e}", p.log.display()))?;
        let err = log
            .try_clone()
            .map_err(|e| format!("opening {}: {e}", p.log.display()))?;
        let child = tokio::process::Command::new(&p.cmd.bin)
            .args(&p.cmd.args)
            .envs(p.cmd.env.iter().map(|(k, v)| (k, v)))
            .stdin(std::process::Stdio::null())
            .stdout(log)
            .stderr(err)
            // Their own group: a Ctrl-C or crash of kamajid leaves tenants running.
            .process_group(0)
            .spawn()
            .map_err(|e| format!("starting {}: {e}", p.cmd.bin.display()))?;
        let pid = child.id();
        if let Some(pid) = pid {
            // A failed write only costs adoption after a kamajid restart: the process is
            // then restarted, not lost.
            if let Err(e) = write_private(&p.pid_file, pid.to_string().as_bytes()) {
                tracing::warn!(error = %e, "writing a PID file");
            }
        }
        p.pid = pid;
        p.child = Some(child);
        p.started = Instant::now();
        Ok(())
    }

    /// Runs `cmd` for `(tenant, component)`: leaves a matching running process alone, adopts a
    /// matching one from a previous kamajid, restarts on change.
    pub fn ensure(
        &self,
        tenant: &str,
        component: &'static str,
        cmd: Command,
        dir: &Path,
    ) -> Result<(), String> {
        let key = (tenant.to_owned(), component);
        let mut procs = self.procs.lock().map_err(|_| "supervisor poisoned")?;
        if let Some(p) = procs.get_mut(&key) {
            if p.cmd == cmd {
                return Ok(());
            }
            write_private(
                &dir.join(format!("{component}.cmd")),
                &encode_command(&cmd)?,
            )?;
            let old = (p.pid.take(), p.child.take(), p.cmd.bin.clone());
            p.cmd = cmd;
            p.failures = 0;
            p.quick_exits = 0;
            if p.replacing {
                // Another call is stopping the old process; it starts the newest command.
                return Ok(());
            }
            p.replacing = true;
            // The old process may take STOP_GRACE to end: wait without the lock, so the other
            // tenants' restarts and status reads go on meanwhile.
            drop(procs);
            if let Some(pid) = old.0 {
                stop_pid(pid, &old.2);
            }
            drop(old.1);
            let mut procs = self.procs.lock().map_err(|_| "supervisor poisoned")?;
            // Gone if the tenant was stopped meanwhile: then nothing is to start.
            return match procs.get_mut(&key) {
                Some(p) => {
                    p.replacing = false;
                    Self::spawn(p)
                }
                None => Ok(()),
            };
        }
        let pid_file = dir.join(format!("{component}.pid"));
        let cmd_file = dir.join(format!("{component}.cmd"));
        let previous: Option<Command> = std::fs::read(&cmd_file)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
        let running = std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok())
            .filter(|pid| pid_alive(*pid, &cmd.bin));
        let mut p = Proc {
            cmd: cmd.clone(),
            log: dir.join(format!("{component}.log")),
            pid_file,
            child: None,
            pid: None,
            failures: 0,
            started: Instant::now(),
            next_start: Instant::now(),
            last_exit: None,
            quick_exits: 0,
            replacing: false,
        };
        match running {
            Some(pid) if previous.as_ref() == Some(&cmd) => {
                tracing::info!(tenant, component, pid, "adopted running process");
                p.pid = Some(pid);
            }
            other => {
                if let Some(pid) = other {
                    stop_pid(pid, &cmd.bin);
                }
                write_private(&cmd_file, &encode_command(&cmd)?)?;
                Self::spawn(&mut p)?;
            }
        }
        procs.insert(key, p);
        Ok(())
    }

    /// One pass: restarts what died, once its backoff has passed.
    pub fn tick(&self) {
        let Ok(mut procs) = self.procs.lock() else {
            return;
        };
        let now = Instant::now();
        for ((tenant, component), p) in procs.iter_mut().filter(|(_, p)| !p.replacing) {
            let exited = match (&mut p.child, p.pid) {
                (Some(child), _) => match child.try_wait() {
                    Ok(Some(status)) => Some(status.to_string()),
                    Ok(None) => None,
                    Err(e) => Some(e.to_string()),
                },
                (None, Some(pid)) if !pid_alive(pid, &p.cmd.bin) => Some("exited".to_owned()),
                (None, Some(_)) => None,
                (None, None) => Some("not running".to_owned()),
            };
            match exited {
                None => {
                    if p.failures > 0 && p.started.elapsed() > STABLE_AFTER {
                        p.failures = 0;
                    }
                }
                Some(why) => {
                    if p.pid.is_some() {
                        if p.started.elapsed() < QUICK_EXIT {
                            p.quick_exits += 1;
                        } else {
                            p.quick_exits = 0;
                        }
                        p.failures += 1;
                        p.next_start = now + backoff(p.failures);
                        tracing::warn!(tenant = %tenant, component = %component, status = %why, restarts = p.failures, "component exited; restarting after backoff");
                        p.last_exit = Some(why);
                        p.child = None;
                        p.pid = None;
                    }
                    if now >= p.next_start {
                        if let Err(e) = Self::spawn(p) {
                            p.failures += 1;
                            p.next_start = now + backoff(p.failures);
                            p.last_exit = Some(e);
                        }
                    }
                }
            }
        }
    }

    /// Why a tenant's control plane will not start as configured, if a component keeps exiting
    /// right after it starts: the component, and the last error it logged.
    pub fn stalled(&self, tenant: &str) -> Option<String> {
        let procs = self.procs.lock().ok()?;
        let out: Vec<String> = ALL_COMPONENTS
            .iter()
            .filter_map(|c| {
                let p = procs.get(&(tenant.to_owned(), *c))?;
                (p.quick_exits >= STALLED_AFTER).then(|| {
                    let said = last_error(&p.log)
                        .unwrap_or_else(|| p.last_exit.clone().unwrap_or_default());
                    format!(
                        "{c} exits right after it starts ({} times in a row): {said}",
                        p.quick_exits
                    )
                })
            })
            .collect();
        (!out.is_empty()).then(|| out.join("; "))
    }

    /// Why a tenant's components are not all running, if they are not.
    pub fn problems(&self, tenant: &str) -> Option<String> {
        let procs = self.procs.lock().ok()?;
        let mut out = Vec::new();
        for c in ALL_COMPONENTS {
            match procs.get(&(tenant.to_owned(), c)) {
                // Run only when the tenant has the tunnel.
                None if c == KONNECTIVITY_SERVER => {}
                None => out.push(format!("{c} not started")),
                Some(p) if p.pid.is_none() => out.push(format!(
                    "{c} {} ({} restarts; log {})",
                    p.last_exit.as_deref().unwrap_or("not running"),
                    p.failures,
                    p.log.display()
                )),
                Some(_) => {}
            }
        }
        (!out.is_empty()).then(|| out.join("; "))
    }

    /// PIDs of a tenant's running components.
    pub fn pids(&self, tenant: &str) -> Vec<(&'static str, u32)> {
        let Ok(procs) = self.procs.lock() else {
            return Vec::new();
        };
        ALL_COMPONENTS
            .iter()
            .filter_map(|c| {
                procs
                    .get(&(tenant.to_owned(), *c))
                    .and_then(|p| p.pid.map(|pid| (*c, pid)))
            })
            .collect()
    }

    /// Ends one component of a tenant, if it runs, and forgets it (its files go too, so a
    /// restarted kamajid does not adopt it).
    pub fn stop(&self, tenant: &str, component: &'static str, dir: &Path) {
        let known = self
            .procs
            .lock()
            .ok()
            .and_then(|mut procs| procs.remove(&(tenant.to_owned(), component)));
        let from_files = std::fs::read_to_string(dir.join(format!("{component}.pid")))
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok())
            .zip(
                std::fs::read(dir.join(format!("{component}.cmd")))
                    .ok()
                    .and_then(|b| serde_json::from_slice::<Command>(&b).ok()),
            );
        if let Some(mut p) = known {
            if let Some(pid) = p.pid {
                stop_pid(pid, &p.cmd.bin);
            }
            if let Some(mut child) = p.child.take() {
                tokio::spawn(async move {
                    let _ = child.wait().await;
                });
            }
        } else if let Some((pid, cmd)) = from_files {
            stop_pid(pid, &cmd.bin);
        }
        for f in ["pid", "cmd"] {
            let _ = std::fs::remove_file(dir.join(format!("{component}.{f}")));
        }
    }

    /// Ends a tenant's processes and forgets them; also those only known from PID files.
    pub fn stop_tenant(&self, tenant: &str, dir: &Path) {
        let mut known = Vec::new();
        if let Ok(mut procs) = self.procs.lock() {
            for c in ALL_COMPONENTS {
                if let Some(mut p) = procs.remove(&(tenant.to_owned(), c)) {
                    if let Some(pid) = p.pid {
                        known.push((pid, p.cmd.bin.clone()));
                    }
                    // Reap our own child once it is gone.
                    if let Some(mut child) = p.child.take() {
                        tokio::spawn(async move {
                            let _ = child.wait().await;
                        });
                    }
                }
            }
        }
        for c in ALL_COMPONENTS {
            let pid = std::fs::read_to_string(dir.join(format!("{c}.pid")))
                .ok()
                .and_then(|s| s.trim().parse::<u32>().ok());
            let cmd: Option<Command> = std::fs::read(dir.join(format!("{c}.cmd")))
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok());
            if let (Some(pid), Some(cmd)) = (pid, cmd) {
                if !known.iter().any(|(p, _)| *p == pid) {
                    known.push((pid, cmd.bin));
                }
            }
        }
        for (pid, bin) in known {
            stop_pid(pid, &bin);
        }
    }
}

/// TERM, up to [`STOP_GRACE`] to exit, then KILL. Only if `pid` still runs `bin`.
fn stop_pid(pid: u32, bin: &Path) {
    if !pid_alive(pid, bin) {
        return;
    }
    signal(pid, libc::SIGTERM);
    let deadline = Instant::now() + STOP_GRACE;
    while Instant::now() < deadline {
        if !pid_alive(pid, bin) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    signal(pid, libc::SIGKILL);
}

fn encode_command(cmd: &Command) -> Result<Vec<u8>, String> {
    serde_json::to_vec(cmd)
        .map_err(|e| format!("encoding the command of {}: {e}", cmd.bin.display()))
}

/// The last error a component wrote to its log: klog's `E`/`F` lines (their message, and the
/// `err` it carries), or a `Error: ...` line of its flag parsing.
pub fn last_error(log: &Path) -> Option<String> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(log).ok()?;
    let len = f.metadata().ok()?.len();
    f.seek(SeekFrom::Start(len.saturating_sub(64 * 1024)))
        .ok()?;
    let mut tail = String::new();
    f.take(64 * 1024).read_to_string(&mut tail).ok()?;
    tail.lines().rev().find_map(error_of)
}

/// The error a log line reports, if it reports one.
fn error_of(line: &str) -> Option<String> {
    let line = line.trim();
    if let Some(rest) = line.strip_prefix("Error: ") {
        return Some(rest.to_owned());
    }
    let b = line.as_bytes();
    let klog_error =
        b.len() > 5 && matches!(b[0], b'E' | b'F') && b[1..5].iter().all(u8::is_ascii_digit);
    if !klog_error {
        return None;
    }
    let msg = line.split_once("] ").map_or(line, |(_, m)| m);
    // Structured: `"command failed" err="..."`: the err is what says why.
    if let Some((_, err)) = msg.split_once(" err=\"") {
        let err = err.strip_suffix('"').unwrap_or(err);
        return Some(err.replace("\\\"", "\""));
    }
    Some(msg.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_a_minute() {
        let s: Vec<u64> = (1..=9).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(s, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
    }

    #[test]
    fn the_error_a_component_logged_is_found_in_its_words() {
        assert_eq!(
            error_of(r#"E1204 19:36:36.426733   24637 run.go:72] "command failed" err="[enable-admission-plugins plugin \"Foo\" is unknown]""#).as_deref(),
            Some(r#"[enable-admission-plugins plugin "Foo" is unknown]"#)
        );
        assert_eq!(
            error_of(r#"Error: invalid argument "abc" for "--max-requests-inflight" flag: strconv.ParseInt: parsing "abc": invalid syntax"#).as_deref(),
            Some(r#"invalid argument "abc" for "--max-requests-inflight" flag: strconv.ParseInt: parsing "abc": invalid syntax"#)
        );
        assert_eq!(
            error_of("I1204 19:36:36.425990   24637 serving.go:405] Generated"),
            None
        );
        assert_eq!(error_of("Usage:"), None);
    }
}
