//! `top` and `stats`, from the container's cgroup and /proc.

use super::containers::lookup;
use crate::blocking::blocking;
use crate::error::{ApiError, ApiResult};
use crate::params::{Params, flag_or};
use crate::state::AppState;
use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, Response};
use engine::cgroups::CgroupStats;
use engine::cgroups_glue::ContainerCgroup;
use engine::store::Container;
use serde_json::{Value, json};

fn top_rows(c: &Container) -> Result<Vec<Vec<String>>, ApiError> {
    Ok(engine::top::processes(c)?
        .into_iter()
        .map(|p| {
            vec![
                p.user,
                p.pid.to_string(),
                p.ppid.to_string(),
                "0".into(),
                "-".into(),
                "?".into(),
                p.time,
                p.cmd,
            ]
        })
        .collect())
}

pub async fn top(State(d): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let c = lookup(&d, &id).await?;
    if !c.state.is_running() {
        return Err(ApiError::conflict(format!(
            "Container {} is not running",
            c.record.id
        )));
    }
    let rows = blocking(move || top_rows(&c)).await?;
    Ok(Json(json!({
        "Titles": ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"],
        "Processes": rows,
    })))
}

/// Host CPU time in nanoseconds (Docker's `system_cpu_usage`), from /proc/stat.
fn system_cpu_ns() -> u64 {
    let text = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let ticks: u64 = text
        .lines()
        .next()
        .map(|l| {
            l.split_whitespace()
                .skip(1)
                .take(7)
                .filter_map(|v| v.parse::<u64>().ok())
                .sum()
        })
        .unwrap_or(0);
    ticks * (1_000_000_000 / engine::top::clock_ticks())
}

fn cpu_json(s: Option<&CgroupStats>, system: u64, ncpu: usize) -> Value {
    match s {
        None => {
            json!({"cpu_usage": {"total_usage": 0, "usage_in_kernelmode": 0, "usage_in_usermode": 0},
                       "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0}})
        }
        Some(s) => {
            let mut usage = json!({
                "total_usage": s.cpu.usage_total_ns,
                "usage_in_kernelmode": s.cpu.usage_system_ns,
                "usage_in_usermode": s.cpu.usage_user_ns,
            });
            if !s.cpu.per_cpu_ns.is_empty() {
                usage["percpu_usage"] = json!(s.cpu.per_cpu_ns);
            }
            json!({
                "cpu_usage": usage,
                "system_cpu_usage": system,
                "online_cpus": ncpu,
                "throttling_data": {"periods": s.cpu.nr_periods, "throttled_periods": s.cpu.nr_throttled,
                                    "throttled_time": s.cpu.throttled_time_ns},
            })
        }
    }
}

/// Docker's `networks`: each interface of the container's network namespace but `lo`,
/// from the kernel's counters as its init sees them. None without a namespace of its own
/// (host mode shares the host's, and Docker leaves the key out there too).
fn networks_json(c: &Container) -> Option<Value> {
    if !c.state.is_running() || c.record.host_config.network_mode == "host" {
        return None;
    }
    let dev = std::fs::read_to_string(format!("/proc/{}/net/dev", c.state.pid)).ok()?;
    let mut out = serde_json::Map::new();
    // Two header lines, then `name: rx bytes packets errs drop fifo frame compressed
    // multicast tx bytes packets errs drop ...`.
    for line in dev.lines().skip(2) {
        let Some((name, counters)) = line.split_once(':') else {
            continue;
        };
        let name = name.trim();
        let n: Vec<u64> = counters
            .split_whitespace()
            .filter_map(|v| v.parse().ok())
            .collect();
        if name == "lo" || n.len() < 12 {
            continue;
        }
        out.insert(
            name.to_string(),
            json!({
                "rx_bytes": n[0], "rx_packets": n[1], "rx_errors": n[2], "rx_dropped": n[3],
                "tx_bytes": n[8], "tx_packets": n[9], "tx_errors": n[10], "tx_dropped": n[11],
            }),
        );
    }
    (!out.is_empty()).then_some(Value::Object(out))
}

fn sample(c: &Container) -> (Option<CgroupStats>, u64) {
    let s = ContainerCgroup::from_state(&c.state)
        .ok()
        .and_then(|cg| cg.stats().ok());
    (s, system_cpu_ns())
}

fn stats_json(
    c: &Container,
    pre: &(Option<CgroupStats>, u64),
    pre_read: &str,
    cur: &(Option<CgroupStats>, u64),
) -> Value {
    let ncpu = std::thread::available_parallelism().map_or(1, |n| n.get());
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
    let mem = cur.0.as_ref().map(|s| {
        let limit = s
            .memory
            .limit
            .filter(|l| *l < u64::MAX / 2)
            .unwrap_or_else(mem_total);
        json!({
            "usage": s.memory.usage,
            "max_usage": s.memory.max_usage,
            "stats": s.memory.stat,
            "failcnt": s.memory.failcnt,
            "limit": limit,
        })
    });
    let mut v = json!({
        "read": now,
        "preread": pre_read,
        "pids_stats": cur.0.as_ref().map_or(json!({}), |s| json!({"current": s.pids.current, "limit": s.pids.limit})),
        "blkio_stats": {"io_service_bytes_recursive": cur.0.as_ref().map(|s| s.blkio.devices.iter().flat_map(|d| [
            json!({"major": d.major, "minor": d.minor, "op": "read", "value": d.read_bytes}),
            json!({"major": d.major, "minor": d.minor, "op": "write", "value": d.write_bytes}),
        ]).collect::<Vec<_>>())},
        "num_procs": 0,
        "storage_stats": {},
        "cpu_stats": cpu_json(cur.0.as_ref(), cur.1, ncpu),
        "precpu_stats": cpu_json(pre.0.as_ref(), pre.1, ncpu),
        "memory_stats": mem.unwrap_or_else(|| json!({})),
        "name": format!("/{}", c.record.name),
        "id": c.record.id,
    });
    if cur.0.is_some()
        && let Some(n) = networks_json(c)
    {
        v["networks"] = n;
    }
    v
}

fn mem_total() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| {
                    l.split_whitespace()
                        .nth(1)
                        .and_then(|n| n.parse::<u64>().ok())
                })
        })
        .map_or(0, |kb| kb * 1024)
}

/// `stream=1` (default): one object per second; `stream=0`: one object, with
/// `precpu_stats` from a first sample taken just before (what the CLI's CPU % needs).
pub async fn stats(
    State(d): State<AppState>,
    Path(id): Path<String>,
    q: Params,
) -> ApiResult<Response<Body>> {
    let c = lookup(&d, &id).await?;
    let stream = flag_or(&q, "stream", true);
    let one_shot = crate::params::flag(&q, "one-shot");
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(2);
    tokio::spawn(async move {
        let line = |v: Value| {
            let mut b = serde_json::to_vec(&v).unwrap_or_default();
            b.push(b'\n');
            b
        };
        let running = c.state.is_running();
        let mut pre_read = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
        if !stream {
            let pre = if running { sample(&c) } else { (None, 0) };
            if !one_shot && running {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            let cur = if running { sample(&c) } else { (None, 0) };
            let _ = tx
                .send(Ok(line(stats_json(&c, &pre, &pre_read, &cur))))
                .await;
            return;
        }
        // The first object goes out at once, with empty `precpu_stats` and a zero
        // `preread` as Docker's does; then one a second.
        let mut pre = (None, 0);
        pre_read = "0001-01-01T00:00:00Z".into();
        loop {
            let cur = sample(&c);
            if tx
                .send(Ok(line(stats_json(&c, &pre, &pre_read, &cur))))
                .await
                .is_err()
                || cur.0.is_none()
            {
                return;
            }
            pre = cur;
            pre_read = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        }
    });
    Ok(crate::stream::streamed(
        rx,
        HeaderValue::from_static("application/json"),
    ))
}
