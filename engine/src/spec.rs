//! The one translation from a Docker-level container (record + resolved user, caps,
//! seccomp) to an OCI runtime spec. Pure: no I/O, so it is golden-tested.

use crate::model::{ContainerRecord, MountPoint};
use crate::runtime::user::ResolvedUser;
use serde_json::{Value, json};
use std::path::Path;

pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Docker's masked paths (moby `oci.DefaultSpec`, Docker 28).
pub const MASKED_PATHS: &[&str] = &[
    "/proc/asound",
    "/proc/acpi",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

pub const READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// Everything the translation needs besides the record; resolved by the caller.
pub struct SpecInputs<'a> {
    pub record: &'a ContainerRecord,
    /// Where the container's root is mounted (its own mount namespace).
    pub rootfs: &'a Path,
    pub hosts: &'a Path,
    pub hostname_file: &'a Path,
    pub resolv_conf: &'a Path,
    pub user: &'a ResolvedUser,
    /// Effective capability names (`CAP_...`).
    pub caps: &'a [String],
    pub seccomp: Option<&'a oci_spec::runtime::LinuxSeccomp>,
}

/// The argv Docker runs: Entrypoint then Cmd.
pub fn command_line(record: &ContainerRecord) -> Vec<String> {
    let c = &record.config;
    c.entrypoint.iter().chain(c.cmd.iter()).cloned().collect()
}

/// The process environment: the configured env plus Docker's implicit PATH, HOSTNAME,
/// HOME and TERM (each only if not set explicitly).
pub fn process_env(record: &ContainerRecord, home: &str) -> Vec<String> {
    let c = &record.config;
    let has = |k: &str| c.env.iter().any(|e| e.split('=').next() == Some(k));
    let mut env = Vec::new();
    if !has("PATH") {
        env.push(format!("PATH={DEFAULT_PATH}"));
    }
    if !has("HOSTNAME") {
        env.push(format!("HOSTNAME={}", c.hostname));
    }
    env.extend(c.env.iter().cloned());
    if c.tty && !has("TERM") {
        env.push("TERM=xterm".into());
    }
    if !has("HOME") {
        env.push(format!("HOME={home}"));
    }
    env
}

fn is_host_network(record: &ContainerRecord) -> bool {
    record.host_config.network_mode == "host"
}

fn default_mounts(record: &ContainerRecord, inp: &SpecInputs<'_>) -> Vec<Value> {
    let hc = &record.host_config;
    let sys_opts: Vec<&str> = if hc.privileged {
        vec!["nosuid", "noexec", "nodev"]
    } else {
        vec!["nosuid", "noexec", "nodev", "ro"]
    };
    let shm_size = if hc.shm_size > 0 {
        hc.shm_size
    } else {
        64 << 20
    };
    let mut m = vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc",
               "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
               "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts",
               "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]}),
        json!({"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": sys_opts}),
        json!({"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
               "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]}),
        json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
               "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
               "options": ["nosuid", "noexec", "nodev", "mode=1777", format!("size={shm_size}")]}),
    ];
    let (resolv, hostname, hosts) = if is_host_network(record) {
        (
            Path::new("/etc/resolv.conf"),
            inp.hostname_file,
            Path::new("/etc/hosts"),
        )
    } else {
        (inp.resolv_conf, inp.hostname_file, inp.hosts)
    };
    for (dest, src) in [
        ("/etc/resolv.conf", resolv),
        ("/etc/hostname", hostname),
        ("/etc/hosts", hosts),
    ] {
        if !hc.mounts.iter().any(|u| u.target == dest) {
            m.push(json!({"destination": dest, "type": "bind", "source": src,
                          "options": ["rbind", "rprivate"]}));
        }
    }
    m
}

fn user_mount(mp: &MountPoint) -> Value {
    match mp.kind.as_str() {
        "tmpfs" => {
            let mut opts: Vec<String> = vec!["nosuid".into(), "nodev".into(), "noexec".into()];
            opts.extend(
                mp.mode
                    .split(',')
                    .filter(|o| !o.is_empty())
                    .map(str::to_string),
            );
            if !mp.rw {
                opts.push("ro".into());
            }
            json!({"destination": mp.destination, "type": "tmpfs", "source": "tmpfs",
                   "options": opts})
        }
        _ => {
            let mut opts = vec!["rbind".to_string()];
            opts.push(if mp.rw { "rw" } else { "ro" }.into());
            let prop = if mp.propagation.is_empty() {
                "rprivate"
            } else {
                mp.propagation.as_str()
            };
            opts.push(prop.into());
            json!({"destination": mp.destination, "type": "bind", "source": mp.source,
                   "options": opts})
        }
    }
}

/// Docker's `--ulimit` names to OCI rlimit types.
fn rlimit_type(name: &str) -> Option<&'static str> {
    Some(match name {
        "core" => "RLIMIT_CORE",
        "cpu" => "RLIMIT_CPU",
        "data" => "RLIMIT_DATA",
        "fsize" => "RLIMIT_FSIZE",
        "locks" => "RLIMIT_LOCKS",
        "memlock" => "RLIMIT_MEMLOCK",
        "msgqueue" => "RLIMIT_MSGQUEUE",
        "nice" => "RLIMIT_NICE",
        "nofile" => "RLIMIT_NOFILE",
        "nproc" => "RLIMIT_NPROC",
        "rss" => "RLIMIT_RSS",
        "rtprio" => "RLIMIT_RTPRIO",
        "rttime" => "RLIMIT_RTTIME",
        "sigpending" => "RLIMIT_SIGPENDING",
        "stack" => "RLIMIT_STACK",
        "as" => "RLIMIT_AS",
        _ => return None,
    })
}

pub fn is_valid_ulimit(name: &str) -> bool {
    rlimit_type(name).is_some()
}

/// Docker's device cgroup: deny everything, then allow mknod of any node (CAP_MKNOD is in
/// the default set; opening what was made is still refused) and the standard nodes. This is
/// what keeps a container from reading the host's disks. Privileged containers get all.
fn device_rules(privileged: bool) -> Value {
    if privileged {
        return json!([{"allow": true, "access": "rwm"}]);
    }
    let c = |major: i64, minor: Option<i64>, access: &str| {
        let mut v = json!({"allow": true, "type": "c", "major": major, "access": access});
        if let Some(m) = minor {
            v["minor"] = json!(m);
        }
        v
    };
    json!([
        {"allow": false, "access": "rwm"},
        {"allow": true, "type": "c", "access": "m"},
        {"allow": true, "type": "b", "access": "m"},
        c(1, Some(3), "rwm"),  // null
        c(1, Some(8), "rwm"),  // random
        c(1, Some(7), "rwm"),  // full
        c(5, Some(0), "rwm"),  // tty
        c(1, Some(5), "rwm"),  // zero
        c(1, Some(9), "rwm"),  // urandom
        c(136, None, "rwm"),   // pts
        c(5, Some(2), "rwm"),  // ptmx
        c(10, Some(200), "rwm"), // tun
    ])
}

fn resources(record: &ContainerRecord) -> Value {
    let hc = &record.host_config;
    let mut r = serde_json::Map::new();
    let mut mem = serde_json::Map::new();
    if hc.memory > 0 {
        mem.insert("limit".into(), json!(hc.memory));
        // Docker: no --memory-swap means swap equal to the memory limit (total 2x).
        let swap = match hc.memory_swap {
            0 => hc.memory * 2,
            s => s,
        };
        mem.insert("swap".into(), json!(swap));
    }
    if hc.memory_reservation > 0 {
        mem.insert("reservation".into(), json!(hc.memory_reservation));
    }
    if !mem.is_empty() {
        r.insert("memory".into(), Value::Object(mem));
    }
    let mut cpu = serde_json::Map::new();
    if hc.nano_cpus > 0 {
        let period: i64 = 100_000;
        cpu.insert("period".into(), json!(period));
        cpu.insert("quota".into(), json!(hc.nano_cpus * period / 1_000_000_000));
    } else {
        if hc.cpu_period > 0 {
            cpu.insert("period".into(), json!(hc.cpu_period));
        }
        if hc.cpu_quota > 0 {
            cpu.insert("quota".into(), json!(hc.cpu_quota));
        }
    }
    if hc.cpu_shares > 0 {
        cpu.insert("shares".into(), json!(hc.cpu_shares));
    }
    if !hc.cpuset_cpus.is_empty() {
        cpu.insert("cpus".into(), json!(hc.cpuset_cpus));
    }
    if !hc.cpuset_mems.is_empty() {
        cpu.insert("mems".into(), json!(hc.cpuset_mems));
    }
    if !cpu.is_empty() {
        r.insert("cpu".into(), Value::Object(cpu));
    }
    if let Some(p) = hc.pids_limit.filter(|p| *p != 0) {
        r.insert("pids".into(), json!({"limit": p}));
    }
    if hc.blkio_weight > 0 {
        r.insert("blockIO".into(), json!({"weight": hc.blkio_weight}));
    }
    r.insert("devices".into(), device_rules(hc.privileged));
    Value::Object(r)
}

/// The cgroup limits of a record without the device rules: what `update` re-applies to a
/// running container (device access is fixed at start).
pub fn update_resources(
    record: &ContainerRecord,
) -> Result<oci_spec::runtime::LinuxResources, serde_json::Error> {
    let mut r = resources(record);
    if let Some(o) = r.as_object_mut() {
        o.remove("devices");
    }
    serde_json::from_value(r)
}

/// Builds the OCI runtime spec for a container.
pub fn build(inp: &SpecInputs<'_>) -> Result<oci_spec::runtime::Spec, serde_json::Error> {
    let record = inp.record;
    let c = &record.config;
    let hc = &record.host_config;
    let caps: Vec<&str> = inp.caps.iter().map(String::as_str).collect();

    let mut rlimits: Vec<Value> = vec![];
    if !hc.ulimits.iter().any(|u| u.name == "nofile") {
        // Docker (through containerd) gives containers 1048576 open files.
        rlimits.push(json!({"type": "RLIMIT_NOFILE", "hard": 1048576u64, "soft": 1048576u64}));
    }
    for u in &hc.ulimits {
        if let Some(t) = rlimit_type(&u.name) {
            rlimits.push(json!({"type": t, "hard": u.hard as u64, "soft": u.soft as u64}));
        }
    }
    let no_new_privs = hc.security_opt.iter().any(|o| {
        o == "no-new-privileges" || o == "no-new-privileges:true" || o == "no-new-privileges=true"
    });
    let cwd = if c.working_dir.is_empty() {
        "/".to_string()
    } else {
        c.working_dir.clone()
    };

    let mut mounts = default_mounts(record, inp);
    // Parents before children, as Docker sorts them, so a mount never hides a later one.
    let mut user: Vec<&MountPoint> = record.mounts.iter().collect();
    user.sort_by_key(|m| Path::new(&m.destination).components().count());
    // A user mount on a default destination (e.g. /dev/shm) replaces the default.
    mounts.retain(|d| {
        !user
            .iter()
            .any(|u| d["destination"] == json!(u.destination))
    });
    mounts.extend(user.into_iter().map(user_mount));

    let mut namespaces = vec![
        json!({"type": "pid"}),
        json!({"type": "ipc"}),
        json!({"type": "uts"}),
        json!({"type": "mount"}),
        json!({"type": "cgroup"}),
    ];
    if let Some(p) = &hc.netns_path {
        namespaces.push(json!({"type": "network", "path": p}));
    } else if !is_host_network(record) {
        namespaces.push(json!({"type": "network"}));
    }

    let mut linux = json!({
        "namespaces": namespaces,
        "resources": resources(record),
        "rootfsPropagation": "rprivate",
    });
    if !hc.privileged {
        let mut masked: Vec<String> = MASKED_PATHS.iter().map(|s| s.to_string()).collect();
        masked.extend(hc.masked_paths.iter().cloned());
        linux["maskedPaths"] = json!(masked);
        let mut ro: Vec<String> = READONLY_PATHS.iter().map(|s| s.to_string()).collect();
        ro.extend(hc.readonly_paths.iter().cloned());
        linux["readonlyPaths"] = json!(ro);
    }
    if !hc.sysctls.is_empty() {
        linux["sysctl"] = json!(hc.sysctls);
    }
    if let Some(s) = inp.seccomp {
        linux["seccomp"] = serde_json::to_value(s)?;
    }

    let mut process = json!({
        "terminal": c.tty,
        "user": {"uid": inp.user.uid, "gid": inp.user.gid},
        "args": command_line(record),
        "env": process_env(record, &inp.user.home),
        "cwd": cwd,
        "capabilities": {
            "bounding": caps, "effective": caps, "permitted": caps,
        },
        "rlimits": rlimits,
        "noNewPrivileges": no_new_privs,
    });
    if !inp.user.additional_gids.is_empty() {
        process["user"]["additionalGids"] = json!(inp.user.additional_gids);
    }
    if hc.oom_score_adj != 0 {
        process["oomScoreAdj"] = json!(hc.oom_score_adj);
    }
    let mut spec = json!({
        "ociVersion": "1.2.0",
        "process": process,
        "root": {"path": inp.rootfs, "readonly": hc.readonly_rootfs},
        "hostname": c.hostname,
        "mounts": mounts,
        "linux": linux,
    });
    if !c.domainname.is_empty() {
        spec["domainname"] = json!(c.domainname);
    }
    serde_json::from_value(spec)
}
