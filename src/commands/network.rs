//! `network ...` and `port`.

use super::Ctx;
use crate::cli::{NetworkCommand, NetworkCreateArgs};
use crate::errors::{CliError, CliResult};
use crate::format;

fn networks(ctx: &Ctx) -> CliResult<network::Networks> {
    Ok(network::Networks::open(
        &ctx.roots.data,
        &ctx.roots.run,
        &ctx.net_settings()?,
    )?)
}

pub fn network(ctx: &Ctx, cmd: NetworkCommand) -> CliResult<i32> {
    match cmd {
        NetworkCommand::Create(a) => create(ctx, a),
        NetworkCommand::Ls { quiet, no_trunc } => {
            let list = networks(ctx)?.list()?;
            let id = |n: &network::Network| {
                if no_trunc {
                    n.id.clone()
                } else {
                    n.short_id().to_string()
                }
            };
            if quiet {
                for n in &list {
                    println!("{}", id(n));
                }
            } else {
                let rows: Vec<Vec<String>> = list
                    .iter()
                    .map(|n| vec![id(n), n.name.clone(), n.driver.clone(), n.scope.clone()])
                    .collect();
                format::print_table(&["NETWORK ID", "NAME", "DRIVER", "SCOPE"], &rows);
            }
            Ok(0)
        }
        NetworkCommand::Inspect {
            format,
            networks: names,
        } => {
            let nets = networks(ctx)?;
            let mut out = Vec::new();
            let mut code = 0;
            for n in names {
                match nets.inspect(&n) {
                    Ok(v) => out.push(serde_json::to_value(v).unwrap_or_default()),
                    Err(e) => {
                        eprintln!("pelagos: error: {e}");
                        code = 1;
                    }
                }
            }
            format::print_inspect(&out, format.as_deref())?;
            Ok(code)
        }
        NetworkCommand::Rm {
            force,
            networks: names,
        } => {
            let engine = ctx.engine()?;
            let mut code = 0;
            for n in names {
                match engine.network_remove(&n) {
                    Ok(_) => println!("{n}"),
                    Err(engine::Error::Network(network::Error::NoSuchNetwork(_))) if force => {}
                    Err(e) => {
                        eprintln!("pelagos: error: {e}");
                        code = 1;
                    }
                }
            }
            Ok(code)
        }
        NetworkCommand::Prune { .. } => {
            let removed = ctx.engine()?.network_prune(&|_| true)?;
            if !removed.is_empty() {
                println!("Deleted Networks:");
                for n in removed {
                    println!("{n}");
                }
            }
            Ok(0)
        }
        NetworkCommand::Connect {
            aliases,
            ip,
            network: net,
            container,
        } => {
            let cfg = network::EndpointConfig {
                aliases,
                ipam_config: ip.map(|ip| network::EndpointIpamConfig { ipv4_address: ip }),
                ..Default::default()
            };
            ctx.engine()?.network_connect(&net, &container, cfg)?;
            Ok(0)
        }
        NetworkCommand::Disconnect {
            network: net,
            container,
            ..
        } => {
            ctx.engine()?.network_disconnect(&net, &container)?;
            Ok(0)
        }
        NetworkCommand::DestroyAll => {
            networks(ctx)?.destroy_all()?;
            Ok(0)
        }
    }
}

fn create(ctx: &Ctx, a: NetworkCreateArgs) -> CliResult<i32> {
    let n = ctx.engine()?.network_create(network::CreateRequest {
        name: a.name,
        driver: a.driver,
        subnet: a.subnet,
        gateway: a.gateway,
        ip_range: a.ip_range,
        internal: a.internal,
        attachable: a.attachable,
        labels: super::volumes::kv_list(&a.labels)?,
        options: super::volumes::kv_list(&a.opts)?,
    })?;
    println!("{}", n.id);
    Ok(0)
}

/// `port CONTAINER [PRIVATE_PORT[/PROTO]]`, Docker's output lines.
pub fn port(ctx: &Ctx, container: &str, filter: Option<&str>) -> CliResult<i32> {
    let engine = ctx.engine()?;
    let c = engine.containers.lookup(container)?;
    let sb = networks(ctx)?.sandbox(&c.record.id)?;
    let ports = sb.map(|s| s.ports).unwrap_or_default();
    let want = filter.map(|f| {
        let (p, proto) = f.split_once('/').unwrap_or((f, "tcp"));
        (p.to_string(), proto.to_string())
    });
    let mut found = false;
    for p in &ports {
        if let Some((wp, wproto)) = &want
            && (p.container_port.to_string() != *wp || p.proto != *wproto)
        {
            continue;
        }
        found = true;
        let ip = if p.host_ip.is_empty() {
            "0.0.0.0"
        } else {
            p.host_ip.as_str()
        };
        if want.is_some() {
            println!("{ip}:{}", p.host_port);
        } else {
            println!("{}/{} -> {ip}:{}", p.container_port, p.proto, p.host_port);
        }
    }
    if let Some(f) = filter
        && !found
    {
        return Err(CliError::Engine(engine::Error::invalid(format!(
            "No public port '{f}' published for {}",
            c.record.name
        ))));
    }
    Ok(0)
}
