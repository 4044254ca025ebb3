//! Image commands over the local store.

use super::Ctx;
use crate::cli::{
    HistoryArgs, ImagePruneArgs, ImagesArgs, InspectArgs, LoadArgs, LoginArgs, PullArgs, PushArgs,
    RmiArgs, SaveArgs,
};
use crate::errors::{CliError, CliResult};
use crate::format;
use registry::ImageUser;
use serde_json::json;

pub fn load(ctx: &Ctx, a: LoadArgs) -> CliResult<i32> {
    let store = ctx.images()?;
    let loaded = match &a.input {
        Some(p) => {
            let f = std::fs::File::open(p)
                .map_err(|e| CliError::Other(anyhow::anyhow!("open {}: {e}", p.display())))?;
            store.load_archive(std::io::BufReader::new(f))?
        }
        None => store.load_archive(std::io::stdin().lock())?,
    };
    for t in loaded.iter().flat_map(|img| &img.tags) {
        ctx.journal().simple("image", "load", &t.familiar(), &[]);
    }
    if !a.quiet {
        for img in &loaded {
            if img.tags.is_empty() {
                println!("Loaded image ID: {}", img.id);
            }
            for t in &img.tags {
                println!("Loaded image: {}", t.familiar());
            }
        }
    }
    Ok(0)
}

pub fn pull(ctx: &Ctx, a: PullArgs) -> CliResult<i32> {
    let store = ctx.images()?;
    let reference = registry::Reference::parse(&a.image)?;
    let opts = registry::PullOptions {
        platform: a
            .platform
            .as_deref()
            .map(registry::Platform::parse)
            .transpose()?,
        settings: ctx.registry_settings()?,
    };
    if !a.image.contains(':') && !a.image.contains('@') && !a.quiet {
        println!("Using default tag: latest");
    }
    if !a.quiet {
        println!(
            "{}: Pulling from {}",
            reference.tag().unwrap_or("latest"),
            reference.path()
        );
    }
    let rt = runtime()?;
    let mut progress = crate::progress::PullProgress::new(a.quiet);
    let mut on_event = |ev: registry::PullEvent| progress.event(ev);
    let pulled = rt.block_on(store.pull(&reference.to_string(), &opts, &mut on_event))?;
    let fam = reference.familiar();
    ctx.journal()
        .simple("image", "pull", &fam, &[("name", fam.clone())]);
    if !a.quiet {
        println!("Digest: {}", pulled.digest);
        let name = reference.familiar();
        if pulled.up_to_date {
            println!("Status: Image is up to date for {name}");
        } else {
            println!("Status: Downloaded newer image for {name}");
        }
    }
    println!("{reference}");
    Ok(0)
}

pub fn push(ctx: &Ctx, a: PushArgs) -> CliResult<i32> {
    let store = ctx.images()?;
    let reference = registry::Reference::parse(&a.image)?;
    let settings = ctx.registry_settings()?;
    if !a.quiet {
        println!("The push refers to repository [{}]", reference.name());
    }
    let quiet = a.quiet;
    let mut on_event = |ev: registry::PushEvent| {
        if quiet {
            return;
        }
        match ev {
            registry::PushEvent::Preparing { digest } => {
                println!("{}: Preparing", short(&digest))
            }
            registry::PushEvent::LayerExists { digest } => {
                println!("{}: Layer already exists", short(&digest))
            }
            registry::PushEvent::Mounted { digest, from } => {
                println!("{}: Mounted from {from}", short(&digest))
            }
            registry::PushEvent::Pushed { digest, .. } => println!("{}: Pushed", short(&digest)),
        }
    };
    let pushed =
        runtime()?.block_on(store.push(&reference.to_string(), &settings, &mut on_event))?;
    let fam = reference.familiar();
    ctx.journal()
        .simple("image", "push", &fam, &[("name", fam.clone())]);
    if quiet {
        println!("{reference}");
    } else {
        println!(
            "{}: digest: {} size: {}",
            pushed.tag, pushed.digest, pushed.size
        );
    }
    Ok(0)
}

pub fn save(ctx: &Ctx, a: SaveArgs) -> CliResult<i32> {
    use std::io::IsTerminal;
    let store = ctx.images()?;
    match &a.output {
        Some(path) => {
            // Written next to the target and renamed, so a failed save never leaves a
            // truncated archive under the requested name.
            let dir = path
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(std::path::Path::new("."));
            let tmp = tempfile_in(dir)?;
            let res = std::fs::File::create(&tmp)
                .map_err(|e| CliError::Other(anyhow::anyhow!("create {}: {e}", tmp.display())))
                .and_then(|f| Ok(store.save(&a.images, std::io::BufWriter::new(f))?));
            if let Err(e) = res {
                let _ = std::fs::remove_file(&tmp);
                return Err(e);
            }
            std::fs::rename(&tmp, path).map_err(|e| {
                let _ = std::fs::remove_file(&tmp);
                CliError::Other(anyhow::anyhow!("rename to {}: {e}", path.display()))
            })?;
        }
        None => {
            if std::io::stdout().is_terminal() {
                return Err(CliError::Usage(
                    "cowardly refusing to save to a terminal. Use the -o flag or redirect".into(),
                ));
            }
            store.save(&a.images, std::io::BufWriter::new(std::io::stdout().lock()))?;
        }
    }
    Ok(0)
}

fn tempfile_in(dir: &std::path::Path) -> CliResult<std::path::PathBuf> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    Ok(dir.join(format!(
        ".pelagos-save-{}-{nanos:x}.tmp",
        std::process::id()
    )))
}

pub fn history(ctx: &Ctx, a: HistoryArgs) -> CliResult<i32> {
    let store = ctx.images()?;
    let rec = store.resolve(&a.image)?;
    let now = chrono::Utc::now();
    let rows: Vec<serde_json::Value> = store
        .history(&rec)?
        .into_iter()
        .map(|h| {
            let id = match &h.id {
                Some(d) if a.no_trunc => d.to_string(),
                Some(d) => d.short().to_string(),
                None => "<missing>".into(),
            };
            let created_at = h.created.clone().unwrap_or_default();
            let since = chrono::DateTime::parse_from_rfc3339(&created_at)
                .map(|t| {
                    format!(
                        "{} ago",
                        engine::inspect::human_duration(
                            now.signed_duration_since(t.with_timezone(&chrono::Utc))
                        )
                    )
                })
                .unwrap_or_else(|_| "N/A".into());
            let mut by = h.created_by.replace(['\n', '\t'], " ");
            if !a.no_trunc && by.chars().count() > 45 {
                by = by.chars().take(44).collect::<String>() + "…";
            }
            let size = if a.human {
                human_size(h.size)
            } else {
                h.size.to_string()
            };
            json!({"ID": id, "CreatedSince": since, "CreatedAt": created_at,
                   "CreatedBy": by, "Size": size, "Comment": h.comment})
        })
        .collect();
    if a.quiet {
        for r in &rows {
            println!("{}", r["ID"].as_str().unwrap_or(""));
        }
        return Ok(0);
    }
    format::print_listing(
        a.format.as_deref(),
        &[
            ("IMAGE", "ID"),
            ("CREATED", "CreatedSince"),
            ("CREATED BY", "CreatedBy"),
            ("SIZE", "Size"),
            ("COMMENT", "Comment"),
        ],
        &rows,
    )?;
    Ok(0)
}

pub fn prune(ctx: &Ctx, a: ImagePruneArgs) -> CliResult<i32> {
    if !a.filters.is_empty() {
        return Err(CliError::Usage(
            "image prune --filter is not supported yet".into(),
        ));
    }
    let store = ctx.images()?;
    let user_of = image_users(ctx)?;
    let pruned = store.prune(a.all, &user_of, &|_| true)?;
    if !pruned.removed.is_empty() {
        println!("Deleted Images:");
        for r in &pruned.removed {
            removed_event(ctx, r);
            match r {
                registry::Removed::Untagged(t) => println!("untagged: {}", t.familiar()),
                registry::Removed::Deleted(d) => println!("deleted: {d}"),
            }
        }
        println!();
    }
    println!("Total reclaimed space: {}", human_size(pruned.reclaimed));
    Ok(0)
}

fn runtime() -> CliResult<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Other(anyhow::anyhow!("runtime: {e}")))
}

pub fn login(ctx: &Ctx, a: LoginArgs) -> CliResult<i32> {
    let user = a
        .username
        .clone()
        .ok_or_else(|| CliError::Usage("login needs --username".into()))?;
    let password = match (&a.password, a.password_stdin) {
        (Some(p), false) => p.clone(),
        (None, true) => {
            let mut s = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)
                .map_err(|e| CliError::Other(anyhow::anyhow!("stdin: {e}")))?;
            s.trim_end_matches(['\n', '\r']).to_string()
        }
        _ => {
            return Err(CliError::Usage(
                "give exactly one of --password or --password-stdin".into(),
            ));
        }
    };
    runtime()?.block_on(registry::store::check_login(
        &a.server,
        &user,
        &password,
        &ctx.registry_settings()?,
    ))?;
    registry::auth::store_login(&a.server, &user, &password)?;
    println!("Login Succeeded");
    Ok(0)
}

pub fn logout(server: &str) -> CliResult<i32> {
    if registry::auth::remove_login(server)? {
        println!("Removing login credentials for {server}");
    } else {
        println!("Not logged in to {server}");
    }
    Ok(0)
}

pub(crate) fn short(digest: &str) -> &str {
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    &hex[..hex.len().min(12)]
}

pub(crate) fn human_size(b: u64) -> String {
    // Docker uses decimal units here.
    let units = ["B", "kB", "MB", "GB", "TB"];
    let mut v = b as f64;
    let mut i = 0;
    while v >= 1000.0 && i + 1 < units.len() {
        v /= 1000.0;
        i += 1;
    }
    if i == 0 {
        format!("{b}B")
    } else {
        format!("{v:.3}")
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_string()
            + units[i]
    }
}

pub fn images(ctx: &Ctx, a: ImagesArgs) -> CliResult<i32> {
    let store = ctx.images()?;
    let now = chrono::Utc::now();
    let mut rows = Vec::new();
    for rec in store.list()? {
        let id_full = rec.id.to_string();
        let id = if a.no_trunc {
            id_full.clone()
        } else {
            rec.id.short().to_string()
        };
        let created = rec
            .created
            .map(|t| {
                format!(
                    "{} ago",
                    engine::inspect::human_duration(now.signed_duration_since(t))
                )
            })
            .unwrap_or_else(|| "N/A".into());
        let tags: Vec<(String, String)> = if rec.repo_tags.is_empty() {
            vec![("<none>".into(), "<none>".into())]
        } else {
            rec.repo_tags
                .iter()
                .map(|t| (t.familiar_name(), t.tag().unwrap_or("<none>").to_string()))
                .collect()
        };
        for (repo, tag) in tags {
            if let Some(want) = &a.reference {
                let full = format!("{repo}:{tag}");
                if &repo != want && &full != want {
                    continue;
                }
            }
            rows.push(json!({
                "Repository": repo, "Tag": tag, "ID": id, "CreatedSince": created,
                "CreatedAt": rec.created_raw.clone().unwrap_or_default(),
                "Size": human_size(rec.size),
            }));
        }
    }
    if a.quiet {
        let mut seen = std::collections::BTreeSet::new();
        for r in &rows {
            let id = r["ID"].as_str().unwrap_or("");
            if seen.insert(id.to_string()) {
                println!("{id}");
            }
        }
        return Ok(0);
    }
    format::print_listing(
        a.format.as_deref(),
        &[
            ("REPOSITORY", "Repository"),
            ("TAG", "Tag"),
            ("IMAGE ID", "ID"),
            ("CREATED", "CreatedSince"),
            ("SIZE", "Size"),
        ],
        &rows,
    )?;
    Ok(0)
}

pub fn tag(ctx: &Ctx, source: &str, target: &str) -> CliResult<i32> {
    let t = ctx.images()?.tag(source, target)?;
    ctx.journal()
        .simple("image", "tag", source, &[("name", t.familiar())]);
    Ok(0)
}

/// Which container (if any) uses an image ID, for rmi's and prune's conflict rules.
fn image_users(ctx: &Ctx) -> CliResult<impl Fn(&str) -> Option<ImageUser>> {
    let containers = ctx.engine()?.containers.list()?;
    Ok(move |image_id: &str| {
        containers
            .iter()
            .find(|c| c.record.image == image_id)
            .map(|c| ImageUser {
                container_id: c.record.id.clone(),
                running: c.state.is_running(),
            })
    })
}

/// Docker's `untag` / `delete` image events.
fn removed_event(ctx: &Ctx, r: &registry::Removed) {
    match r {
        registry::Removed::Untagged(t) => {
            ctx.journal().simple("image", "untag", &t.familiar(), &[])
        }
        registry::Removed::Deleted(id) => {
            ctx.journal()
                .simple("image", "delete", &id.to_string(), &[])
        }
    }
}

pub fn rmi(ctx: &Ctx, a: RmiArgs) -> CliResult<i32> {
    let store = ctx.images()?;
    let user_of = image_users(ctx)?;
    let mut code = 0;
    for img in &a.images {
        match store.remove_with_users(img, a.force, &user_of) {
            Ok(removed) => {
                for r in removed {
                    removed_event(ctx, &r);
                    println!("{r}");
                }
            }
            Err(e) => {
                eprintln!("pelagos: error: {e}");
                code = 1;
            }
        }
    }
    Ok(code)
}

pub fn inspect(ctx: &Ctx, a: InspectArgs) -> CliResult<i32> {
    let store = ctx.images()?;
    let mut out = Vec::new();
    let mut code = 0;
    for t in &a.targets {
        match store.resolve(t).and_then(|r| store.inspect(&r)) {
            Ok(v) => out.push(v),
            Err(e) => {
                eprintln!("pelagos: error: {e}");
                code = 1;
            }
        }
    }
    format::print_inspect(&out, a.format.as_deref())?;
    Ok(code)
}

/// `pelagos build`: the context directory is used where it is (no tar round trip).
pub fn build(ctx: &Ctx, a: crate::cli::BuildArgs) -> CliResult<i32> {
    // KEY=VALUE items; a bare KEY takes its value from the environment (build args, as
    // docker does) or is empty (labels).
    let kv = |items: &[String], from_env: bool| {
        let mut m = std::collections::BTreeMap::new();
        for i in items {
            match i.split_once('=') {
                Some((k, v)) => {
                    m.insert(k.to_string(), v.to_string());
                }
                None if from_env => {
                    if let Ok(v) = std::env::var(i) {
                        m.insert(i.clone(), v);
                    }
                }
                None => {
                    m.insert(i.clone(), String::new());
                }
            }
        }
        m
    };
    let context = std::fs::canonicalize(&a.path)
        .map_err(|e| CliError::Usage(format!("unable to prepare context: {}: {e}", a.path)))?;
    let dockerfile_text = match &a.file {
        Some(f) if f == "-" => {
            let mut s = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)
                .map_err(|e| CliError::Other(anyhow::anyhow!("reading the Dockerfile: {e}")))?;
            Some(s)
        }
        Some(f) => Some(
            std::fs::read_to_string(f)
                .map_err(|e| CliError::Usage(format!("unable to read Dockerfile {f}: {e}")))?,
        ),
        None => None,
    };
    let tags = a
        .tags
        .iter()
        .map(|t| registry::Reference::parse(t))
        .collect::<Result<Vec<_>, _>>()?;
    let opts = engine::build::BuildOptions {
        context,
        dockerfile: "Dockerfile".into(),
        dockerfile_text,
        tags,
        build_args: kv(&a.build_args, true),
        target: a.target.clone(),
        labels: kv(&a.labels, false),
        pull: a.pull,
        quiet: a.quiet,
        network_mode: a.network.clone().unwrap_or_default(),
    };
    let engine = ctx.engine()?;
    let store = ctx.images()?;
    let settings = ctx.registry_settings()?;
    let rt = runtime()?;
    let fetch = |reference: &str| -> engine::Result<()> {
        let popts = registry::PullOptions {
            platform: None,
            settings: settings.clone(),
        };
        let mut quiet = |_: registry::PullEvent| {};
        rt.block_on(store.pull(reference, &popts, &mut quiet))
            .map(|_| ())
            .map_err(Into::into)
    };
    let mut out = |s: &str| {
        use std::io::Write;
        let mut o = std::io::stdout().lock();
        o.write_all(s.as_bytes()).and_then(|()| o.flush()).is_ok()
    };
    let rec = engine::build::build(&engine, &store, &opts, &fetch, &mut out)?;
    if a.quiet {
        println!("{}", rec.id);
    } else {
        println!("Successfully built {}", &rec.id.hex()[..12]);
        for t in &rec.repo_tags {
            println!("Successfully tagged {}", t.familiar());
        }
    }
    for t in &rec.repo_tags {
        ctx.journal().simple(
            "image",
            "tag",
            &rec.id.to_string(),
            &[("name", t.familiar())],
        );
    }
    Ok(0)
}

/// `pelagos commit CONTAINER [REPOSITORY[:TAG]]`: prints the new image ID.
pub fn commit(ctx: &Ctx, a: crate::cli::CommitArgs) -> CliResult<i32> {
    let opts = engine::build::CommitOptions {
        tag: a
            .repository
            .as_deref()
            .map(registry::Reference::parse)
            .transpose()?,
        comment: a.message.unwrap_or_default(),
        author: a.author.unwrap_or_default(),
        changes: a.changes,
        pause: a.pause,
        config: None,
    };
    let rec = engine::build::commit(&ctx.engine()?, &ctx.images()?, &a.container, &opts)?;
    println!("{}", rec.id);
    Ok(0)
}
