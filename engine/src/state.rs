//! A container's runtime state, persisted atomically by whoever owns the transition: the
//! CLI/daemon for create and removal, the container's monitor for running and exited.

use crate::error::Result;
use crate::fsutil::{read_json, write_json_atomic};
use serde::{Deserialize, Serialize};
use std::path::Path;

pub const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    #[default]
    Created,
    Running,
    Paused,
    Restarting,
    Removing,
    Exited,
    Dead,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Restarting => "restarting",
            Status::Removing => "removing",
            Status::Exited => "exited",
            Status::Dead => "dead",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ContainerState {
    pub status: Status,
    pub pid: i32,
    pub exit_code: i32,
    pub error: String,
    pub started_at: String,
    pub finished_at: String,
    #[serde(rename = "OOMKilled")]
    pub oom_killed: bool,
    /// Host PID of the container's monitor, and its start time in clock ticks since boot,
    /// so a recycled PID is never mistaken for our monitor.
    pub monitor_pid: i32,
    pub monitor_start_time: u64,
    /// The boot this state was written in; a different boot means nothing is running.
    pub boot_id: String,
    /// Absolute cgroup directories created for this container (one per v1 hierarchy, or one
    /// on v2), so removal touches exactly what we made.
    pub cgroup: Option<crate::cgroups::CgroupPaths>,
    pub restart_count: u32,
}

impl Default for ContainerState {
    fn default() -> Self {
        ContainerState {
            status: Status::Created,
            pid: 0,
            exit_code: 0,
            error: String::new(),
            started_at: ZERO_TIME.into(),
            finished_at: ZERO_TIME.into(),
            oom_killed: false,
            monitor_pid: 0,
            monitor_start_time: 0,
            boot_id: String::new(),
            cgroup: None,
            restart_count: 0,
        }
    }
}

impl ContainerState {
    pub fn load(path: &Path) -> Result<Self> {
        read_json(path)
    }

    pub fn save(&self, path: &Path) -> Result<()> {
        write_json_atomic(path, self)
    }

    /// Loads the state as it really is (see [`Self::reconciled`]). A monitor records the
    /// exit before it dies, so when the record says "running" and its monitor is gone, the
    /// file is read once more: the monitor may have finished between our read and the
    /// liveness check (a fast container under load), and then its own record is the truth,
    /// not the 255 a crashed monitor gets.
    pub fn load_reconciled(path: &Path) -> Result<Self> {
        let first = Self::load(path)?;
        if !first.claims_a_dead_monitor() {
            return Ok(first);
        }
        Ok(Self::load(path)?.reconciled())
    }

    fn claims_a_dead_monitor(&self) -> bool {
        matches!(
            self.status,
            Status::Running | Status::Paused | Status::Restarting
        ) && !monitor_alive(self.monitor_pid, self.monitor_start_time, &self.boot_id)
    }

    /// The state as it really is: a "running" record whose monitor is gone (crash, reboot)
    /// reads as exited, like Docker after a host reboot.
    pub fn reconciled(mut self) -> Self {
        if matches!(
            self.status,
            Status::Running | Status::Paused | Status::Restarting
        ) && !monitor_alive(self.monitor_pid, self.monitor_start_time, &self.boot_id)
        {
            self.status = Status::Exited;
            if self.exit_code == 0 {
                self.exit_code = 255;
            }
            self.pid = 0;
            if self.finished_at == ZERO_TIME {
                self.finished_at = now_rfc3339();
            }
        }
        self
    }

    pub fn is_running(&self) -> bool {
        matches!(
            self.status,
            Status::Running | Status::Paused | Status::Restarting
        )
    }
}

pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

pub fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// Field 22 of /proc/PID/stat: the process start time in clock ticks after boot.
pub fn process_start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces and parentheses; skip past its last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    // A zombie (state Z) or dead (X) process is gone for our purposes, even though its
    // /proc entry lingers until its parent reaps it.
    if rest.starts_with('Z') || rest.starts_with('X') {
        return None;
    }
    rest.split(' ').nth(19)?.parse().ok()
}

pub fn monitor_alive(pid: i32, start_time: u64, boot: &str) -> bool {
    if pid <= 0 || boot != boot_id() {
        return false;
    }
    process_start_time(pid) == Some(start_time)
}
