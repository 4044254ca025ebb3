//! Volume commands.

use super::Ctx;
use crate::cli::VolumeCommand;
use crate::errors::{CliError, CliResult};
use crate::format;
use std::collections::BTreeMap;

/// `key=value` flags (labels, driver options) as a map; a key is required.
pub(super) fn kv_list(items: &[String]) -> CliResult<BTreeMap<String, String>> {
    items
        .iter()
        .map(|i| {
            let (k, v) = i.split_once('=').unwrap_or((i, ""));
            if k.is_empty() {
                Err(CliError::Usage(format!("invalid key=value: {i}")))
            } else {
                Ok((k.to_string(), v.to_string()))
            }
        })
        .collect()
}

pub fn volume(ctx: &Ctx, cmd: VolumeCommand) -> CliResult<i32> {
    let engine = ctx.engine()?;
    let vols = &engine.volumes;
    match cmd {
        VolumeCommand::Create {
            name,
            labels,
            opts,
            driver,
        } => {
            if driver != "local" {
                return Err(CliError::Usage(format!(
                    "volume driver {driver:?} is not supported"
                )));
            }
            let name = name.unwrap_or_else(engine::ids::new_id);
            let (v, _) = vols.create(&name, kv_list(&labels)?, kv_list(&opts)?, false)?;
            println!("{}", v.name);
            Ok(0)
        }
        VolumeCommand::Ls { quiet } => {
            let list = vols.list()?;
            if quiet {
                for v in list {
                    println!("{}", v.name);
                }
            } else {
                let rows: Vec<Vec<String>> =
                    list.into_iter().map(|v| vec![v.driver, v.name]).collect();
                format::print_table(&["DRIVER", "VOLUME NAME"], &rows);
            }
            Ok(0)
        }
        VolumeCommand::Inspect { names } => {
            let mut out = Vec::new();
            let mut code = 0;
            for n in names {
                match vols.get(&n) {
                    Ok(v) => out.push(serde_json::to_value(v).unwrap_or_default()),
                    Err(e) => {
                        eprintln!("pelagos: error: {e}");
                        code = 1;
                    }
                }
            }
            format::print_inspect(&out, None)?;
            Ok(code)
        }
        VolumeCommand::Rm { force, names } => {
            let mut code = 0;
            for n in names {
                let users = engine.volume_users(&n)?;
                match vols.remove(&n, &users) {
                    Ok(()) => println!("{n}"),
                    Err(engine::Error::NoSuchVolume(_)) if force => {}
                    Err(e) => {
                        eprintln!("pelagos: error: {e}");
                        code = 1;
                    }
                }
            }
            Ok(code)
        }
        VolumeCommand::Prune { all, force: _ } => {
            println!("Deleted Volumes:");
            for v in vols.list()? {
                if (all || v.anonymous)
                    && engine.volume_users(&v.name)?.is_empty()
                    && vols.remove(&v.name, &[]).is_ok()
                {
                    println!("{}", v.name);
                }
            }
            Ok(0)
        }
    }
}
