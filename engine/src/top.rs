//! The processes of a running container (`top`), from its cgroup and /proc. The CLI and
//! the API only format these rows.

use crate::cgroups_glue::ContainerCgroup;
use crate::error::Result;
use crate::store::Container;

/// One process as `ps -ef` shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Process {
    /// The user name when the host knows the uid, else the uid.
    pub user: String,
    pub pid: i32,
    pub ppid: i32,
    /// CPU time (user + system), `HH:MM:SS`.
    pub time: String,
    pub cmd: String,
}

/// The container's processes, by pid; ones that exit while being read are skipped.
pub fn processes(c: &Container) -> Result<Vec<Process>> {
    let cg = ContainerCgroup::from_state(&c.state)?;
    let mut pids = cg.pids()?;
    pids.sort_unstable();
    let hz = clock_ticks();
    Ok(pids.into_iter().filter_map(|pid| read(pid, hz)).collect())
}

fn read(pid: i32, hz: u64) -> Option<Process> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which may itself hold spaces and parentheses.
    let rest = stat.rfind(')').map(|i| &stat[i + 2..]).unwrap_or("");
    let f: Vec<&str> = rest.split(' ').collect();
    let num = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    let uid = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(str::to_string))
        })
        .unwrap_or_default();
    let cmd = std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| {
            b.split(|x| *x == 0)
                .filter(|s| !s.is_empty())
                .map(|s| String::from_utf8_lossy(s).into_owned())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default();
    let secs = (num(11) + num(12)) / hz;
    Some(Process {
        user: user_name(&uid),
        pid,
        ppid: f.get(1).and_then(|v| v.parse().ok()).unwrap_or(0),
        time: format!(
            "{:02}:{:02}:{:02}",
            secs / 3600,
            (secs / 60) % 60,
            secs % 60
        ),
        cmd,
    })
}

/// Kernel clock ticks per second (for /proc times).
pub fn clock_ticks() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as u64 } else { 100 }
}

fn user_name(uid: &str) -> String {
    uid.parse::<u32>()
        .ok()
        .and_then(|u| {
            nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(u))
                .ok()
                .flatten()
        })
        .map_or_else(|| uid.to_string(), |u| u.name)
}
