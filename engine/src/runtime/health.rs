//! Healthchecks: a small single-threaded `pelagos __health` process per container, started
//! by the monitor when the container has a healthcheck and killed with it (PDEATHSIG).
//!
//! It sleeps for the interval (a timer, not a poll of anything), runs the probe through
//! the same `pelagos __exec` helper as `docker exec` (so the probe has the container's
//! namespaces, cgroup, capabilities and seccomp filter), and records Docker's health state
//! in `health.json` next to the container's state (tmp + rename). Inspect, `ps` and the
//! `health` filter read it; daemonless containers get healthchecks too.

use super::exec::ExecOptions;
use super::exec_helper::{EXEC_HELPER_ARG, ExecHelperRequest};
use crate::paths::{ContainerPaths, Roots};
use serde::{Deserialize, Serialize};
use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::time::{Duration, Instant};

pub const HEALTH_ARG: &str = "__health";
const MAX_LOG: usize = 5;
const MAX_OUTPUT: usize = 4096;

/// Docker's `State.Health`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct Health {
    pub status: String,
    pub failing_streak: i64,
    pub log: Vec<HealthLog>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct HealthLog {
    pub start: String,
    pub end: String,
    pub exit_code: i64,
    pub output: String,
}

/// A container's healthcheck with Docker's defaults filled in.
#[derive(Debug, Clone, PartialEq)]
pub struct HealthConfig {
    pub cmd: Vec<String>,
    pub interval: Duration,
    pub timeout: Duration,
    pub retries: i64,
    pub start_period: Duration,
    pub start_interval: Duration,
}

fn ns(v: &serde_json::Value, key: &str, default: Duration) -> Duration {
    match v.get(key).and_then(|x| x.as_i64()) {
        Some(n) if n > 0 => Duration::from_nanos(n as u64),
        _ => default,
    }
}

/// The healthcheck of a record's config (`Test`, `Interval`... in nanoseconds), or None
/// when there is none or it is `["NONE"]`.
pub fn config(v: Option<&serde_json::Value>) -> Option<HealthConfig> {
    let v = v?;
    let test: Vec<String> = v
        .get("Test")
        .and_then(|t| serde_json::from_value(t.clone()).ok())
        .unwrap_or_default();
    let cmd = match test.split_first() {
        Some((kind, rest)) if kind == "CMD" && !rest.is_empty() => rest.to_vec(),
        Some((kind, rest)) if kind == "CMD-SHELL" && !rest.is_empty() => {
            vec!["/bin/sh".into(), "-c".into(), rest.join(" ")]
        }
        _ => return None,
    };
    Some(HealthConfig {
        cmd,
        interval: ns(v, "Interval", Duration::from_secs(30)),
        timeout: ns(v, "Timeout", Duration::from_secs(30)),
        retries: v
            .get("Retries")
            .and_then(|r| r.as_i64())
            .filter(|r| *r > 0)
            .unwrap_or(3),
        start_period: ns(v, "StartPeriod", Duration::ZERO),
        start_interval: ns(v, "StartInterval", Duration::from_secs(5)),
    })
}

pub fn health_file(paths: &ContainerPaths) -> PathBuf {
    paths.dir.join("health.json")
}

/// The recorded health, or "starting" before the first probe.
pub fn read(paths: &ContainerPaths) -> Health {
    std::fs::read(health_file(paths))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_else(|| Health {
            status: "starting".into(),
            ..Default::default()
        })
}

/// Docker's rules for one probe result: success resets the streak and makes it healthy;
/// a failure during the start period does not count; `retries` failures in a row make it
/// unhealthy.
pub fn record(h: &mut Health, entry: HealthLog, retries: i64, in_start_period: bool) {
    let ok = entry.exit_code == 0;
    h.log.push(entry);
    if h.log.len() > MAX_LOG {
        let extra = h.log.len() - MAX_LOG;
        h.log.drain(..extra);
    }
    if ok {
        h.failing_streak = 0;
        h.status = "healthy".into();
    } else if !(in_start_period && h.status == "starting") {
        h.failing_streak += 1;
        if h.failing_streak >= retries {
            h.status = "unhealthy".into();
        }
    }
}

/// Starts the runner for a just-started container (called by its monitor).
pub fn spawn_runner(roots: &Roots, id: &str) -> std::io::Result<()> {
    std::process::Command::new(super::spawn::monitor_exe())
        .arg(HEALTH_ARG)
        .arg(&roots.data)
        .arg(&roots.run)
        .arg(id)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map(|_| ())
}

/// Entry point of `pelagos __health DATA RUN ID`. Never returns.
pub fn main(args: &[String]) -> ! {
    // Dies with the monitor that started it (the container's supervisor).
    // SAFETY: prctl with constant arguments.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
    if nix::unistd::getppid().as_raw() == 1 {
        std::process::exit(0);
    }
    if let [data, run, id] = args {
        run_loop(&Roots::new(data, run), id);
    }
    std::process::exit(0)
}

fn run_loop(roots: &Roots, id: &str) {
    let paths = ContainerPaths::new(roots, id);
    let Ok(c) = crate::store::ContainerStore::open(roots).and_then(|s| s.load(id)) else {
        return;
    };
    let Some(cfg) = config(c.record.config.healthcheck.as_ref()) else {
        return;
    };
    let started = Instant::now();
    let mut h = Health {
        status: "starting".into(),
        ..Default::default()
    };
    let _ = write(&paths, &h);
    loop {
        let in_start = started.elapsed() < cfg.start_period;
        std::thread::sleep(if in_start && h.status == "starting" {
            cfg.start_interval.min(cfg.interval)
        } else {
            cfg.interval
        });
        // Reloaded each round: the state says whether to go on, the record names the
        // container in events (a rename shows).
        let Ok(cur) = crate::store::ContainerStore::open(roots).and_then(|s| s.load(id)) else {
            return;
        };
        if !cur.state.is_running() {
            return;
        }
        let entry = probe(roots, id, &cfg);
        let before = h.status.clone();
        record(
            &mut h,
            entry,
            cfg.retries,
            started.elapsed() < cfg.start_period,
        );
        let _ = write(&paths, &h);
        if h.status != before {
            crate::events::Journal::new(roots).container(
                &format!("health_status: {}", h.status),
                &cur.record,
                &[],
            );
        }
    }
}

fn write(paths: &ContainerPaths, h: &Health) -> crate::error::Result<()> {
    let b = serde_json::to_vec(h).map_err(|e| crate::error::Error::Internal(e.to_string()))?;
    crate::fsutil::write_atomic(&health_file(paths), &b)
}

/// Runs the probe command in the container with a deadline; output (stdout and stderr
/// together) is kept up to 4 KiB, as Docker does.
fn probe(roots: &Roots, id: &str, cfg: &HealthConfig) -> HealthLog {
    let start = crate::state::now_rfc3339();
    let fail = |code: i64, msg: String| HealthLog {
        start: start.clone(),
        end: crate::state::now_rfc3339(),
        exit_code: code,
        output: msg,
    };
    let req = ExecHelperRequest {
        roots: roots.clone(),
        container: id.to_string(),
        opts: ExecOptions {
            cmd: cfg.cmd.clone(),
            ..Default::default()
        },
    };
    let Ok(json) = serde_json::to_string(&req) else {
        return fail(-1, "cannot encode the probe".into());
    };
    let Ok((ours, theirs)) = super::sync::channel() else {
        return fail(-1, "socketpair".into());
    };
    let Ok((rd, wr)) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC) else {
        return fail(-1, "pipe".into());
    };
    let wr2 = match wr.try_clone() {
        Ok(w) => w,
        Err(e) => return fail(-1, e.to_string()),
    };
    let theirs_raw = theirs.as_raw_fd();
    let mut cmd = std::process::Command::new(super::spawn::monitor_exe());
    cmd.arg(EXEC_HELPER_ARG)
        .arg(json)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::from(wr))
        .stderr(std::process::Stdio::from(wr2));
    use std::os::unix::process::CommandExt;
    // SAFETY: the hook only runs dup2/fcntl between fork and exec.
    unsafe {
        cmd.pre_exec(super::sync::fd_at_hook(
            theirs_raw,
            super::exec_helper::CONTROL_FD,
        ));
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return fail(-1, format!("start the probe: {e}")),
    };
    drop(cmd);
    drop(theirs);
    let deadline = Instant::now() + cfg.timeout;
    let (output, timed_out) = read_until(rd, deadline);
    if timed_out {
        // The probe's process in the container, then the helper.
        if let Ok(Some((super::sync::SyncMsg::Started { pid }, _))) =
            super::sync::recv(std::os::fd::AsFd::as_fd(&ours))
            && pid > 0
        {
            // SAFETY: plain kill(2) of the probe we started.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        let _ = child.kill();
        let _ = child.wait();
        return fail(
            -1,
            format!("Health check exceeded timeout ({})", humantime(cfg.timeout)),
        );
    }
    let code = child
        .wait()
        .ok()
        .and_then(|s| s.code())
        .map_or(-1, i64::from);
    HealthLog {
        start,
        end: crate::state::now_rfc3339(),
        exit_code: code,
        output,
    }
}

fn humantime(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// Reads the pipe until EOF or the deadline; (output, timed out).
fn read_until(rd: OwnedFd, deadline: Instant) -> (String, bool) {
    let mut f = std::fs::File::from(rd);
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return (String::from_utf8_lossy(&out).into_owned(), true);
        }
        let mut pfd = libc::pollfd {
            fd: f.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = left.as_millis().min(i32::MAX as u128) as i32;
        // SAFETY: one valid pollfd.
        let rc = unsafe { libc::poll(&mut pfd, 1, ms.max(1)) };
        if rc == 0 {
            continue;
        }
        match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if out.len() < MAX_OUTPUT {
                    let take = n.min(MAX_OUTPUT - out.len());
                    out.extend_from_slice(&buf[..take]);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    (String::from_utf8_lossy(&out).into_owned(), false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(code: i64) -> HealthLog {
        HealthLog {
            exit_code: code,
            ..Default::default()
        }
    }

    #[test]
    fn docker_rules() {
        let mut h = Health {
            status: "starting".into(),
            ..Default::default()
        };
        // Start period: failures do not count.
        record(&mut h, entry(1), 2, true);
        assert_eq!((h.status.as_str(), h.failing_streak), ("starting", 0));
        record(&mut h, entry(1), 2, false);
        assert_eq!((h.status.as_str(), h.failing_streak), ("starting", 1));
        record(&mut h, entry(1), 2, false);
        assert_eq!(h.status, "unhealthy");
        record(&mut h, entry(0), 2, false);
        assert_eq!((h.status.as_str(), h.failing_streak), ("healthy", 0));
        for _ in 0..10 {
            record(&mut h, entry(0), 2, false);
        }
        assert_eq!(h.log.len(), 5);
    }

    #[test]
    fn config_forms() {
        let c = config(Some(
            &serde_json::json!({"Test": ["CMD-SHELL", "test -f /ok"], "Interval": 500_000_000}),
        ))
        .unwrap();
        assert_eq!(c.cmd, ["/bin/sh", "-c", "test -f /ok"]);
        assert_eq!(c.interval, Duration::from_millis(500));
        assert_eq!((c.timeout, c.retries), (Duration::from_secs(30), 3));
        assert!(config(Some(&serde_json::json!({"Test": ["NONE"]}))).is_none());
        assert!(config(None).is_none());
        let c = config(Some(&serde_json::json!({"Test": ["CMD", "true"]}))).unwrap();
        assert_eq!(c.cmd, ["true"]);
    }
}
