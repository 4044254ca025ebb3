//! `HEAD|GET|PUT /containers/{id}/archive?path=`: `docker cp`. Paths resolve inside the
//! container like `/` (symlinks cannot climb out); uploads are unpacked by the registry
//! crate's confined layer unpacker, so a hostile tar cannot write outside the container.
//! A running container is reached through /proc/PID/root (its own mounts included); a
//! stopped one through its writable layer over the image layers, so PUT works before
//! start.

use super::containers::lookup;
use crate::blocking::blocking;
use crate::error::{ApiError, ApiResult};
use crate::params::Params;
use crate::state::AppState;
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderValue, Response, StatusCode};
use axum::response::IntoResponse;
use base64::Engine as _;
use engine::runtime::mounts::secure_join;
use engine::store::Container;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::PathBuf;

/// The filesystem roots a path is looked up in, topmost first.
fn roots(d: &AppState, c: &Container) -> Vec<PathBuf> {
    if c.state.is_running() && c.state.pid > 0 {
        return vec![PathBuf::from(format!("/proc/{}/root", c.state.pid))];
    }
    let mut v = vec![d.engine.paths(&c.record.id).upper()];
    v.extend(c.record.layers.iter().rev().map(PathBuf::from));
    v
}

fn not_found(c: &Container, path: &str) -> ApiError {
    ApiError::not_found(format!(
        "Could not find the file {path} in container {}",
        c.record.name
    ))
}

fn locate(d: &AppState, c: &Container, path: &str) -> ApiResult<PathBuf> {
    for root in roots(d, c) {
        let p = secure_join(&root, std::path::Path::new(path))?;
        if std::fs::symlink_metadata(&p).is_ok() {
            return Ok(p);
        }
    }
    Err(not_found(c, path))
}

/// Go's os.FileMode bits, which the CLI decodes.
fn go_mode(md: &std::fs::Metadata) -> u32 {
    let ft = md.file_type();
    let mut m = md.permissions().mode() & 0o777;
    use std::os::unix::fs::FileTypeExt;
    if ft.is_dir() {
        m |= 1 << 31;
    }
    if ft.is_symlink() {
        m |= 1 << 27;
    }
    if ft.is_fifo() {
        m |= 1 << 25;
    }
    if ft.is_socket() {
        m |= 1 << 24;
    }
    if ft.is_block_device() {
        m |= 1 << 26;
    }
    if ft.is_char_device() {
        m |= (1 << 26) | (1 << 21);
    }
    let raw = md.mode();
    if raw & 0o4000 != 0 {
        m |= 1 << 23;
    }
    if raw & 0o2000 != 0 {
        m |= 1 << 22;
    }
    if raw & 0o1000 != 0 {
        m |= 1 << 20;
    }
    m
}

fn stat_header(host: &std::path::Path, path: &str) -> ApiResult<HeaderValue> {
    let md =
        std::fs::symlink_metadata(host).map_err(|e| ApiError::not_found(format!("{path}: {e}")))?;
    let link = if md.file_type().is_symlink() {
        std::fs::read_link(host)
            .map(|l| l.display().to_string())
            .unwrap_or_default()
    } else {
        String::new()
    };
    let name = base_name(path);
    let mtime = chrono::DateTime::from_timestamp(md.mtime(), md.mtime_nsec() as u32)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
    let v = serde_json::json!({
        "name": name, "size": md.len(), "mode": go_mode(&md), "mtime": mtime, "linkTarget": link,
    });
    let b64 = base64::engine::general_purpose::STANDARD.encode(v.to_string());
    HeaderValue::from_str(&b64).map_err(|e| ApiError::internal(e.to_string()))
}

/// The last element of a container path as Go's `filepath.Base` gives it, which is what
/// Docker names the archive's top entry: `/dir/` is `dir`, but `/dir/.` is `.` (Rust's
/// `file_name` says `dir`), and `docker cp ctr:/dir/. out` relies on that to copy the
/// directory's contents rather than the directory.
fn base_name(path: &str) -> String {
    let trimmed = path.trim_end_matches('/');
    if trimmed.is_empty() {
        return "/".into();
    }
    trimmed.rsplit('/').next().unwrap_or(trimmed).to_string()
}

/// Appends `dir`'s tree with names starting `./`, as Docker writes a `/dir/.` archive
/// (tar's own path setters drop a leading `./`; the CLI's rebasing needs it).
fn append_dot_tree<W: std::io::Write>(
    b: &mut tar::Builder<W>,
    dir: &std::path::Path,
    rel: &[u8],
) -> std::io::Result<()> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let md = std::fs::symlink_metadata(dir)?;
    let mut h = tar::Header::new_gnu();
    h.set_metadata_in_mode(&md, tar::HeaderMode::Complete);
    append_named(b, &mut h, &[rel, b"/"].concat(), &mut std::io::empty())?;
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let path = e.path();
        // Names as bytes: a name that is not UTF-8 travels unchanged.
        let name = [rel, b"/", e.file_name().as_encoded_bytes()].concat();
        let md = std::fs::symlink_metadata(&path)?;
        if md.is_dir() {
            append_dot_tree(b, &path, &name)?;
            continue;
        }
        // Sockets have no tar type (the CLI refuses the entry); Docker leaves them out.
        if md.file_type().is_socket() {
            continue;
        }
        let mut h = tar::Header::new_gnu();
        h.set_metadata_in_mode(&md, tar::HeaderMode::Complete);
        if md.file_type().is_symlink() {
            let target = std::fs::read_link(&path)?;
            let target = target.as_os_str().as_encoded_bytes();
            h.set_size(0);
            put_field(
                b,
                tar::EntryType::GNULongLink,
                &mut h.as_old_mut().linkname,
                target,
            )?;
            append_named(b, &mut h, &name, &mut std::io::empty())?;
            continue;
        }
        if md.is_file() {
            append_named(b, &mut h, &name, &mut std::fs::File::open(&path)?)?;
        } else {
            // Devices and FIFOs: the header alone, with a device's numbers.
            h.set_size(0);
            if md.file_type().is_char_device() || md.file_type().is_block_device() {
                let rdev = md.rdev();
                h.set_device_major(libc::major(rdev))?;
                h.set_device_minor(libc::minor(rdev))?;
            }
            append_named(b, &mut h, &name, &mut std::io::empty())?;
        }
    }
    Ok(())
}

/// A GNU long-name (or long-link) entry carrying `bytes` for the header that follows.
fn append_long<W: std::io::Write>(
    b: &mut tar::Builder<W>,
    kind: tar::EntryType,
    bytes: &[u8],
) -> std::io::Result<()> {
    let mut l = tar::Header::new_gnu();
    l.as_old_mut().name[..13].copy_from_slice(b"././@LongLink");
    l.set_mode(0o644);
    l.set_entry_type(kind);
    l.set_size(bytes.len() as u64 + 1);
    l.set_cksum();
    b.append(&l, std::io::Read::chain(bytes, &[0u8][..]))
}

/// Appends an entry under exactly `name` (a GNU long name when it does not fit).
fn append_named<W: std::io::Write>(
    b: &mut tar::Builder<W>,
    h: &mut tar::Header,
    name: &[u8],
    data: &mut dyn std::io::Read,
) -> std::io::Result<()> {
    put_field(
        b,
        tar::EntryType::GNULongName,
        &mut h.as_old_mut().name,
        name,
    )?;
    h.set_cksum();
    b.append(h, data)
}

/// Puts `bytes` in a fixed-size header field, after a GNU long entry of `kind` carrying
/// them whole when they do not fit.
fn put_field<W: std::io::Write>(
    b: &mut tar::Builder<W>,
    kind: tar::EntryType,
    field: &mut [u8],
    bytes: &[u8],
) -> std::io::Result<()> {
    if bytes.len() > field.len() {
        append_long(b, kind, bytes)?;
    }
    field.fill(0);
    let n = bytes.len().min(field.len());
    field[..n].copy_from_slice(&bytes[..n]);
    Ok(())
}

fn path_param(q: &Params) -> ApiResult<String> {
    q.get("path")
        .cloned()
        .filter(|p| !p.is_empty())
        .ok_or_else(|| ApiError::bad_request("path is required"))
}

pub async fn stat(
    State(d): State<AppState>,
    Path(id): Path<String>,
    q: Params,
) -> ApiResult<Response<Body>> {
    let path = path_param(&q)?;
    let c = lookup(&d, &id).await?;
    let d2 = d.clone();
    let p2 = path.clone();
    let h = blocking(move || -> Result<HeaderValue, ApiError> {
        let host = locate(&d2, &c, &p2)?;
        stat_header(&host, &p2)
    })
    .await?;
    let mut r = StatusCode::OK.into_response();
    r.headers_mut().insert("X-Docker-Container-Path-Stat", h);
    Ok(r)
}

pub async fn get(
    State(d): State<AppState>,
    Path(id): Path<String>,
    q: Params,
) -> ApiResult<Response<Body>> {
    let path = path_param(&q)?;
    let c = lookup(&d, &id).await?;
    let d2 = d.clone();
    let p2 = path.clone();
    let (host, h) = blocking(move || -> Result<_, ApiError> {
        let host = locate(&d2, &c, &p2)?;
        let h = stat_header(&host, &p2)?;
        Ok((host, h))
    })
    .await?;
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    let name = base_name(&path);
    tokio::task::spawn_blocking(move || {
        let w = std::io::BufWriter::with_capacity(64 * 1024, crate::stream::ChannelWriter(tx));
        let mut b = tar::Builder::new(w);
        b.follow_symlinks(false);
        let md = std::fs::symlink_metadata(&host);
        let r = match md {
            Ok(m) if m.is_dir() && (name == "." || name == "/") => {
                append_dot_tree(&mut b, &host, b".")
            }
            Ok(m) if m.is_dir() => b.append_dir_all(&name, &host),
            Ok(_) => b.append_path_with_name(&host, &name),
            Err(e) => Err(e),
        };
        if r.is_ok() {
            let _ = b.finish();
        }
    });
    let mut r = crate::stream::streamed(rx, HeaderValue::from_static("application/x-tar"));
    r.headers_mut().insert("X-Docker-Container-Path-Stat", h);
    Ok(r)
}

pub async fn put(
    State(d): State<AppState>,
    Path(id): Path<String>,
    q: Params,
    req: Request,
) -> ApiResult<Response<Body>> {
    let path = path_param(&q)?;
    let c = lookup(&d, &id).await?;
    // The destination must exist (in any layer) and be a directory.
    let d2 = d.clone();
    let (c, dest) = {
        let p2 = path.clone();
        blocking(move || -> Result<_, ApiError> {
            let found = locate(&d2, &c, &p2)?;
            let md = std::fs::metadata(&found).map_err(|_| not_found(&c, &p2))?;
            if !md.is_dir() {
                return Err(ApiError::bad_request(format!(
                    "extraction point is not a directory: {p2}"
                )));
            }
            // Writes go to the container's own top: its root when running, else the
            // writable layer.
            let top = roots(&d2, &c).remove(0);
            let dest = secure_join(&top, std::path::Path::new(&p2))?;
            std::fs::create_dir_all(&dest)
                .map_err(|e| ApiError::internal(format!("{}: {e}", dest.display())))?;
            Ok((c, dest))
        })
        .await?
    };
    // Spooled on the data root's disk, beside image loads (the image store sweeps stale
    // `load-` files at start): the run root is often a small tmpfs, too small for a large
    // copy.
    let spool_dir = d.images.root().join("tmp");
    let _ = tokio::fs::create_dir_all(&spool_dir).await;
    let tmp = spool_dir.join(format!("load-cp-{}.tar", engine::ids::new_id()));
    let result = async {
        crate::stream::spool_body(req, &tmp).await?;
        let t = tmp.clone();
        blocking(move || -> Result<(), ApiError> {
            let file = std::fs::File::open(&t).map_err(|e| ApiError::internal(e.to_string()))?;
            registry::unpack::unpack_layer(std::io::BufReader::new(file), &dest)?;
            Ok(())
        })
        .await
    }
    .await;
    let _ = tokio::fs::remove_file(&tmp).await;
    result?;
    d.events.container("extract-to-dir", &c.record, &[]);
    Ok(StatusCode::OK.into_response())
}
