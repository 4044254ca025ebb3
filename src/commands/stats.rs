//! `top` and `stats`: processes and resource usage read from the container's cgroup.

use super::Ctx;
use crate::cli::StatsArgs;
use crate::errors::CliResult;
use crate::format;
use engine::cgroups_glue::ContainerCgroup;

pub fn top(ctx: &Ctx, what: &str) -> CliResult<i32> {
    let engine = ctx.engine()?;
    let c = engine.containers.lookup(what)?;
    if !c.state.is_running() {
        return Err(
            engine::Error::Conflict(format!("Container {} is not running", c.record.id)).into(),
        );
    }
    let rows: Vec<Vec<String>> = engine::top::processes(&c)?
        .into_iter()
        .map(|p| vec![p.user, p.pid.to_string(), p.ppid.to_string(), p.time, p.cmd])
        .collect();
    format::print_table(&["UID", "PID", "PPID", "TIME", "CMD"], &rows);
    Ok(0)
}

fn human_bytes(b: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut i = 0;
    while v >= 1024.0 && i + 1 < units.len() {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{b}B")
    } else {
        format!("{v:.2}{}", units[i])
    }
}

pub fn stats(ctx: &Ctx, a: StatsArgs) -> CliResult<i32> {
    let engine = ctx.engine()?;
    let list = if a.containers.is_empty() {
        engine
            .containers
            .list()?
            .into_iter()
            .filter(|c| a.all || c.state.is_running())
            .collect()
    } else {
        a.containers
            .iter()
            .map(|t| engine.containers.lookup(t))
            .collect::<engine::Result<Vec<_>>>()?
    };
    // One sample per container, two readings 100 ms apart for the CPU percentage.
    let first: Vec<Option<engine::cgroups::CgroupStats>> = list
        .iter()
        .map(|c| {
            ContainerCgroup::from_state(&c.state)
                .ok()
                .and_then(|cg| cg.stats().ok())
        })
        .collect();
    let t0 = std::time::Instant::now();
    std::thread::sleep(std::time::Duration::from_millis(100));
    let mut rows = Vec::new();
    for (c, s0) in list.iter().zip(first) {
        let s1 = ContainerCgroup::from_state(&c.state)
            .ok()
            .and_then(|cg| cg.stats().ok());
        let (cpu, mem, pids) = match (s0, s1) {
            (Some(a0), Some(a1)) => {
                let dt = t0.elapsed().as_nanos() as f64;
                let used = a1.cpu.usage_total_ns.saturating_sub(a0.cpu.usage_total_ns) as f64;
                let mem_used = a1.memory.usage_without_cache();
                let limit = a1.memory.limit.unwrap_or(0);
                (
                    format!("{:.2}%", used / dt * 100.0),
                    format!(
                        "{} / {}",
                        human_bytes(mem_used),
                        if limit == 0 || limit >= u64::MAX / 2 {
                            "unlimited".into()
                        } else {
                            human_bytes(limit)
                        }
                    ),
                    a1.pids.current.to_string(),
                )
            }
            _ => ("--".into(), "-- / --".into(), "--".into()),
        };
        rows.push(vec![
            c.record.id[..12].to_string(),
            c.record.name.clone(),
            cpu,
            mem,
            pids,
        ]);
    }
    format::print_table(
        &["CONTAINER ID", "NAME", "CPU %", "MEM USAGE / LIMIT", "PIDS"],
        &rows,
    );
    Ok(0)
}
