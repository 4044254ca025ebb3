//! Image commands over the local store.

use super::Ctx;
use crate::cli::{ImagesArgs, InspectArgs, LoadArgs, LoginArgs, PullArgs, RmiArgs};
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
    let quiet = a.quiet;
    let mut manifest = String::new();
    let mut fetched = 0usize;
    let mut on_event = |ev: registry::PullEvent| match ev {
        registry::PullEvent::Resolved { manifest: m } => manifest = m,
        registry::PullEvent::LayerExists { digest } if !quiet => {
            println!("{}: Already exists", short(&digest))
        }
        registry::PullEvent::LayerDownloaded { digest, .. } => {
            fetched += 1;
            if !quiet {
                println!("{}: Pull complete", short(&digest));
            }
        }
        _ => {}
    };
    let loaded = rt.block_on(store.pull(&reference.to_string(), &[], &mut on_event))?;
    if !quiet {
        println!("Digest: {manifest}");
        let tag = loaded
            .tags
            .first()
            .map(|t| t.familiar())
            .unwrap_or_default();
        if fetched > 0 {
            println!("Status: Downloaded newer image for {tag}");
        } else {
            println!("Status: Image is up to date for {tag}");
        }
    }
    println!("{reference}");
    Ok(0)
}

fn runtime() -> CliResult<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Other(anyhow::anyhow!("runtime: {e}")))
}

pub fn login(a: LoginArgs) -> CliResult<i32> {
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
        &[],
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

fn short(digest: &str) -> &str {
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    &hex[..hex.len().min(12)]
}

fn human_size(b: u64) -> String {
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
    if let Some(f) = &a.format {
        for r in &rows {
            println!("{}", format::render(f, r)?);
        }
        return Ok(0);
    }
    format::print_rows(
        &[
            ("REPOSITORY", "Repository"),
            ("TAG", "Tag"),
            ("IMAGE ID", "ID"),
            ("CREATED", "CreatedSince"),
            ("SIZE", "Size"),
        ],
        &rows,
    );
    Ok(0)
}

pub fn tag(ctx: &Ctx, source: &str, target: &str) -> CliResult<i32> {
    ctx.images()?.tag(source, target)?;
    Ok(0)
}

pub fn rmi(ctx: &Ctx, a: RmiArgs) -> CliResult<i32> {
    let store = ctx.images()?;
    let engine = ctx.engine()?;
    let containers = engine.containers.list()?;
    let user_of = |image_id: &str| -> Option<ImageUser> {
        containers
            .iter()
            .find(|c| c.record.image == image_id)
            .map(|c| ImageUser {
                container_id: c.record.id.clone(),
                running: c.state.is_running(),
            })
    };
    let mut code = 0;
    for img in &a.images {
        match store.remove_with_users(img, a.force, &user_of) {
            Ok(removed) => {
                for r in removed {
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
