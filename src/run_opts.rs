//! Translating `run`/`create` flags into the engine's CreateOptions (Docker's semantics).

use crate::cli::RunArgs;
use crate::errors::{CliError, CliResult};
use engine::model::{
    BindOptions, ContainerConfig, HostConfig, LogConfig, MountSpec, RestartPolicy, TmpfsOptions,
    Ulimit, VolumeOptions,
};
use engine::units::parse_size;
use engine::{CreateOptions, ImageInfo};
use std::collections::BTreeMap;
use std::path::Path;

fn usage(msg: impl Into<String>) -> CliError {
    CliError::Usage(msg.into())
}

fn key_value(s: &str, what: &str) -> CliResult<(String, String)> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .filter(|(k, _)| !k.is_empty())
        .ok_or_else(|| usage(format!("invalid argument {s:?} for \"{what}\" flag")))
}

/// `--env-file`: KEY=VALUE lines; `#` comments; a bare KEY takes the caller's value.
pub fn read_env_file(path: &Path) -> CliResult<Vec<String>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| usage(format!("open {}: {e}", path.display())))?;
    Ok(text
        .lines()
        .map(str::trim_start)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| match l.split_once('=') {
            Some(_) => Some(l.to_string()),
            None => std::env::var(l).ok().map(|v| format!("{l}={v}")),
        })
        .collect())
}

/// `-e KEY` (no `=`) takes the value from the caller's environment, or is dropped.
pub fn expand_env(env: &[String]) -> Vec<String> {
    env.iter()
        .filter_map(|e| {
            if e.contains('=') {
                Some(e.clone())
            } else {
                std::env::var(e).ok().map(|v| format!("{e}={v}"))
            }
        })
        .collect()
}

fn parse_ulimit(s: &str) -> CliResult<Ulimit> {
    let (name, vals) = key_value(s, "--ulimit")?;
    let parse = |v: &str| -> CliResult<i64> {
        if v == "-1" || v == "unlimited" {
            return Ok(-1);
        }
        v.parse::<i64>()
            .map_err(|_| usage(format!("invalid ulimit argument: {s}")))
    };
    let (soft, hard) = match vals.split_once(':') {
        Some((a, b)) => (parse(a)?, parse(b)?),
        None => {
            let v = parse(&vals)?;
            (v, v)
        }
    };
    Ok(Ulimit { name, soft, hard })
}

/// `--mount type=...,source=...,target=...,readonly,...`
pub fn parse_mount(s: &str) -> CliResult<MountSpec> {
    let mut m = MountSpec {
        kind: "volume".into(),
        ..Default::default()
    };
    let mut bind = BindOptions::default();
    let mut vol = VolumeOptions::default();
    let mut tmpfs = TmpfsOptions::default();
    for field in s.split(',').filter(|f| !f.is_empty()) {
        let (k, v) = match field.split_once('=') {
            Some((k, v)) => (k.trim().to_ascii_lowercase(), v.trim().to_string()),
            None => (field.trim().to_ascii_lowercase(), "true".to_string()),
        };
        let truthy = || matches!(v.as_str(), "true" | "1" | "yes");
        match k.as_str() {
            "type" => m.kind = v,
            "source" | "src" => m.source = v,
            "target" | "destination" | "dst" => m.target = v,
            "readonly" | "ro" => m.read_only = truthy(),
            "bind-propagation" => bind.propagation = v,
            "bind-create-mountpoint" => bind.create_mountpoint = truthy(),
            "volume-nocopy" => vol.no_copy = truthy(),
            "volume-label" => {
                let (lk, lv) = key_value(&v, "--mount volume-label")?;
                vol.labels.insert(lk, lv);
            }
            "tmpfs-size" => {
                tmpfs.size_bytes = parse_size(&v).map_err(|e| usage(e.to_string()))? as i64
            }
            "tmpfs-mode" => {
                tmpfs.mode = u32::from_str_radix(&v, 8)
                    .map_err(|_| usage(format!("invalid tmpfs-mode: {v}")))?
            }
            "consistency" | "bind-nonrecursive" | "volume-driver" | "volume-opt" => {}
            other => return Err(usage(format!("unexpected key '{other}' in '{s}'"))),
        }
    }
    if m.target.is_empty() {
        return Err(usage("invalid argument for --mount: target is required"));
    }
    match m.kind.as_str() {
        "bind" => m.bind_options = Some(bind),
        "volume" => m.volume_options = Some(vol),
        "tmpfs" => m.tmpfs_options = Some(tmpfs),
        other => return Err(usage(format!("invalid mount type: {other:?}"))),
    }
    Ok(m)
}

pub fn parse_restart(s: &str) -> CliResult<RestartPolicy> {
    let (name, count) = match s.split_once(':') {
        Some((n, c)) => (
            n,
            c.parse::<i64>()
                .map_err(|_| usage(format!("invalid restart policy: {s}")))?,
        ),
        None => (s, 0),
    };
    match name {
        "no" | "always" | "unless-stopped" | "on-failure" => Ok(RestartPolicy {
            name: name.to_string(),
            maximum_retry_count: count,
        }),
        _ => Err(usage(format!("invalid restart policy: {s}"))),
    }
}

fn size_opt(v: &Option<String>) -> CliResult<i64> {
    match v {
        None => Ok(0),
        Some(s) if s == "-1" => Ok(-1),
        Some(s) => Ok(parse_size(s).map_err(|e| usage(e.to_string()))? as i64),
    }
}

pub fn image_info(store: &registry::ImageStore, reference: &str) -> CliResult<ImageInfo> {
    Ok(engine::ImageInfo::from_store(store, reference)?)
}

/// Builds the create request. `image` is resolved by the caller (None with --rootfs).
pub fn create_options(
    a: &RunArgs,
    image: Option<ImageInfo>,
    cmd: Vec<String>,
) -> CliResult<CreateOptions> {
    let mut env = Vec::new();
    for f in &a.env_file {
        env.extend(read_env_file(f)?);
    }
    env.extend(expand_env(&a.env));
    let mut labels = BTreeMap::new();
    for l in &a.labels {
        let (k, v) = l.split_once('=').unwrap_or((l, ""));
        labels.insert(k.to_string(), v.to_string());
    }
    let mut security_opt = Vec::new();
    for o in &a.security_opt {
        // Like the docker CLI, a seccomp profile file is sent as its JSON content.
        match o
            .strip_prefix("seccomp=")
            .or_else(|| o.strip_prefix("seccomp:"))
        {
            Some(v) if v != "unconfined" && !v.trim_start().starts_with('{') => {
                let json = std::fs::read_to_string(v)
                    .map_err(|e| usage(format!("opening seccomp profile ({v}) failed: {e}")))?;
                security_opt.push(format!("seccomp={json}"));
            }
            _ => security_opt.push(o.clone()),
        }
    }
    engine::security::validate_security_opts(&security_opt)?;
    let mut sysctls = BTreeMap::new();
    for s in &a.sysctls {
        let (k, v) = key_value(s, "--sysctl")?;
        sysctls.insert(k, v);
    }
    let mut tmpfs = BTreeMap::new();
    for t in &a.tmpfs {
        let (dst, opts) = t.split_once(':').unwrap_or((t, ""));
        tmpfs.insert(dst.to_string(), opts.to_string());
    }
    let mut log_config = LogConfig {
        kind: a.log_driver.clone().unwrap_or_else(|| "pelagos".into()),
        config: BTreeMap::new(),
    };
    for o in &a.log_opt {
        let (k, v) = key_value(o, "--log-opt")?;
        if k == "max-size" {
            parse_size(&v).map_err(|e| usage(e.to_string()))?;
        }
        log_config.config.insert(k, v);
    }
    let nano_cpus = match &a.cpus {
        Some(c) => {
            let f: f64 = c
                .parse()
                .map_err(|_| usage(format!("invalid argument {c:?} for \"--cpus\" flag")))?;
            (f * 1e9) as i64
        }
        None => 0,
    };
    let network_mode = a.network.clone().unwrap_or_else(|| "bridge".into());
    let mut port_bindings: BTreeMap<String, Vec<engine::model::PortBinding>> = BTreeMap::new();
    let mut exposed_ports: BTreeMap<String, serde_json::Value> = BTreeMap::new();
    for p in &a.publish {
        for m in network::ports::parse_publish(p).map_err(|e| usage(e.to_string()))? {
            let key = format!("{}/{}", m.container_port, m.proto);
            exposed_ports.insert(key.clone(), serde_json::json!({}));
            port_bindings
                .entry(key)
                .or_default()
                .push(engine::model::PortBinding {
                    host_ip: m.host_ip,
                    host_port: if m.host_port == 0 {
                        String::new()
                    } else {
                        m.host_port.to_string()
                    },
                });
        }
    }
    for e in &a.expose {
        let (port, proto) = e.split_once('/').unwrap_or((e, "tcp"));
        let (lo, hi) = port.split_once('-').unwrap_or((port, port));
        let (lo, hi): (u16, u16) = match (lo.parse(), hi.parse()) {
            (Ok(l), Ok(h)) if l <= h && l > 0 => (l, h),
            _ => return Err(usage(format!("invalid range format for --expose: {e}"))),
        };
        for p in lo..=hi {
            exposed_ports.insert(format!("{p}/{proto}"), serde_json::json!({}));
        }
    }
    let mut endpoint = network::EndpointConfig {
        aliases: a.network_alias.clone(),
        mac_address: a.mac_address.clone().unwrap_or_default(),
        ..Default::default()
    };
    if let Some(ip) = &a.ip {
        endpoint.ipam_config = Some(network::EndpointIpamConfig {
            ipv4_address: ip.clone(),
        });
    }
    let mut networks = BTreeMap::new();
    if !matches!(network_mode.as_str(), "none" | "host" | "default" | "")
        && !network_mode.starts_with("container:")
    {
        networks.insert(network_mode.clone(), endpoint);
    } else if !a.network_alias.is_empty() || a.ip.is_some() {
        return Err(usage(
            "--ip and --network-alias need a bridge or user-defined network",
        ));
    }
    let host_config = HostConfig {
        binds: a.volumes.clone(),
        log_config,
        network_mode,
        port_bindings,
        publish_all_ports: a.publish_all,
        links: a.link.clone(),
        restart_policy: match &a.restart {
            Some(r) => parse_restart(r)?,
            None => RestartPolicy {
                name: "no".into(),
                maximum_retry_count: 0,
            },
        },
        auto_remove: a.rm,
        cap_add: a.cap_add.clone(),
        cap_drop: a.cap_drop.clone(),
        dns: a.dns.clone(),
        dns_options: a.dns_option.clone(),
        dns_search: a.dns_search.clone(),
        extra_hosts: a.add_host.clone(),
        group_add: a.group_add.clone(),
        privileged: a.privileged,
        readonly_rootfs: a.read_only,
        security_opt,
        tmpfs,
        sysctls,
        shm_size: size_opt(&a.shm_size)?,
        init: a.init,
        memory: size_opt(&a.memory)?,
        memory_swap: size_opt(&a.memory_swap)?,
        memory_reservation: size_opt(&a.memory_reservation)?,
        nano_cpus,
        cpu_shares: a.cpu_shares.unwrap_or(0),
        cpu_period: a.cpu_period.unwrap_or(0),
        cpu_quota: a.cpu_quota.unwrap_or(0),
        cpuset_cpus: a.cpuset_cpus.clone().unwrap_or_default(),
        cpuset_mems: a.cpuset_mems.clone().unwrap_or_default(),
        pids_limit: a.pids_limit,
        blkio_weight: a.blkio_weight.unwrap_or(0),
        ulimits: a
            .ulimits
            .iter()
            .map(|u| parse_ulimit(u))
            .collect::<CliResult<_>>()?,
        oom_score_adj: a.oom_score_adj.unwrap_or(0),
        mounts: a
            .mounts
            .iter()
            .map(|m| parse_mount(m))
            .collect::<CliResult<_>>()?,
        rootfs: a.rootfs.as_ref().map(|p| p.display().to_string()),
        ..Default::default()
    };
    let attach = !a.detach;
    let config = ContainerConfig {
        hostname: a.hostname.clone().unwrap_or_default(),
        domainname: a.domainname.clone().unwrap_or_default(),
        user: a.user.clone().unwrap_or_default(),
        attach_stdin: attach && a.interactive,
        attach_stdout: attach,
        attach_stderr: attach,
        tty: a.tty,
        open_stdin: a.interactive,
        stdin_once: attach && a.interactive,
        env,
        cmd,
        working_dir: a.workdir.clone().unwrap_or_default(),
        labels,
        stop_signal: a.stop_signal.clone(),
        stop_timeout: a.stop_timeout,
        exposed_ports,
        mac_address: a.mac_address.clone().unwrap_or_default(),
        ..Default::default()
    };
    let entrypoint = a.entrypoint.as_ref().map(|e| {
        if e.is_empty() {
            vec![]
        } else {
            vec![e.clone()]
        }
    });
    Ok(CreateOptions {
        name: a.name.clone(),
        image,
        config,
        entrypoint,
        host_config,
        networks,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_flag() {
        let m =
            parse_mount("type=bind,source=/a,target=/b,readonly,bind-propagation=rslave").unwrap();
        assert_eq!(
            (m.kind.as_str(), m.source.as_str(), m.target.as_str()),
            ("bind", "/a", "/b")
        );
        assert!(m.read_only);
        assert_eq!(m.bind_options.unwrap().propagation, "rslave");
        let t = parse_mount("type=tmpfs,dst=/t,tmpfs-size=1m,tmpfs-mode=1770").unwrap();
        let o = t.tmpfs_options.unwrap();
        assert_eq!((o.size_bytes, o.mode), (1 << 20, 0o1770));
        assert!(parse_mount("type=bind,source=/a").is_err());
        assert!(parse_mount("type=weird,target=/a").is_err());
        assert!(parse_mount("bogus=1,target=/a").is_err());
    }

    #[test]
    fn ulimits_and_restart() {
        let u = parse_ulimit("nofile=1024:2048").unwrap();
        assert_eq!((u.name.as_str(), u.soft, u.hard), ("nofile", 1024, 2048));
        assert!(parse_ulimit("nofile").is_err());
        assert_eq!(
            parse_restart("on-failure:3").unwrap().maximum_retry_count,
            3
        );
        assert!(parse_restart("sometimes").is_err());
    }
}
