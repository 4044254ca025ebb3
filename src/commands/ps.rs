//! `ps`: list containers with Docker's columns, filters and --format.

use super::Ctx;
use crate::cli::PsArgs;
use crate::errors::{CliError, CliResult};
use crate::format;
use engine::store::Container;
use serde_json::json;

/// `--filter key=value` flags, grouped by key as the API receives them.
struct Filters(std::collections::BTreeMap<String, Vec<String>>);

impl Filters {
    fn parse(raw: &[String]) -> CliResult<Self> {
        let mut v: std::collections::BTreeMap<String, Vec<String>> = Default::default();
        for f in raw {
            let (k, val) = f.split_once('=').ok_or_else(|| {
                CliError::Usage(format!("bad format of filter (expected name=value): {f}"))
            })?;
            match k {
                "label" | "name" | "status" | "id" | "exited" | "ancestor" => {}
                other => return Err(CliError::Usage(format!("invalid filter '{other}'"))),
            }
            v.entry(k.to_string()).or_default().push(val.to_string());
        }
        Ok(Filters(v))
    }

    fn matches(&self, c: &Container) -> bool {
        engine::inspect::passes_filters(c, &self.0)
    }
}

pub fn ps(ctx: &Ctx, a: PsArgs) -> CliResult<i32> {
    let engine = ctx.engine()?;
    let filters = Filters::parse(&a.filters)?;
    let mut list: Vec<Container> = engine
        .containers
        .list()?
        .into_iter()
        .filter(|c| a.all || a.last.is_some() || a.latest || c.state.is_running())
        .filter(|c| filters.matches(c))
        .collect();
    if let Some(n) = a.last {
        list.truncate(n);
    }
    if a.latest {
        list.truncate(1);
    }
    if a.quiet {
        for c in &list {
            println!(
                "{}",
                if a.no_trunc {
                    &c.record.id
                } else {
                    &c.record.id[..12]
                }
            );
        }
        return Ok(0);
    }
    let now = chrono::Utc::now();
    let rows: Vec<serde_json::Value> = list
        .iter()
        .map(|c| {
            let cmd = engine::spec::command_line(&c.record).join(" ");
            let cmd = if a.no_trunc || cmd.chars().count() <= 20 {
                cmd
            } else {
                format!("{}…", cmd.chars().take(19).collect::<String>())
            };
            json!({
                "ID": if a.no_trunc { c.record.id.clone() } else { c.record.id[..12].to_string() },
                "Image": if c.record.config.image.is_empty() { "<rootfs>".to_string() } else { c.record.config.image.clone() },
                "Command": format!("\"{cmd}\""),
                "CreatedAt": c.record.created,
                "RunningFor": chrono::DateTime::parse_from_rfc3339(&c.record.created)
                    .map(|t| format!("{} ago", engine::inspect::human_duration(now.signed_duration_since(t.with_timezone(&chrono::Utc)))))
                    .unwrap_or_default(),
                "Status": engine::inspect::status_text(c, now),
                "State": c.state.status.as_str(),
                "Ports": "",
                "Names": c.record.name,
                "Labels": c.record.config.labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(","),
            })
        })
        .collect();
    if let Some(f) = &a.format {
        for r in &rows {
            println!("{}", format::render(f, r)?);
        }
        return Ok(0);
    }
    format::print_rows(
        &[
            ("CONTAINER ID", "ID"),
            ("IMAGE", "Image"),
            ("COMMAND", "Command"),
            ("CREATED", "RunningFor"),
            ("STATUS", "Status"),
            ("PORTS", "Ports"),
            ("NAMES", "Names"),
        ],
        &rows,
    );
    Ok(0)
}
