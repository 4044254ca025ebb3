//! Docker's classic builder (`POST /build` without BuildKit, `docker build` with no
//! buildx): a Dockerfile run step by step. RUN runs in a real container (the engine's
//! create/start, output relayed); COPY and ADD write into a writable overlay of the
//! current layers; each leaves its writable layer as the next step's top layer. Only the
//! finished image reaches the image store (layers as tars, then `create_image`), so a
//! failed build leaves nothing behind but what it cleans up.

pub mod context;
pub mod dockerfile;
pub mod layer;

use crate::error::{Error, Result};
use crate::lifecycle::{CreateOptions, Engine, ImageDefaults, ImageInfo};
use crate::model::{ContainerConfig, HostConfig};
use crate::runtime::AttachStreams;
use context::{Attrs, Ignore};
use dockerfile::{Args, Dockerfile, Instruction};
use registry::{History, ImageConfig, ImageRecord, ImageStore, Reference};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// What `docker build` asks for.
#[derive(Debug, Clone, Default)]
pub struct BuildOptions {
    /// The unpacked build context.
    pub context: PathBuf,
    /// The Dockerfile's path inside the context.
    pub dockerfile: String,
    /// The Dockerfile itself, when the caller read it (the CLI's `-f` outside the context).
    pub dockerfile_text: Option<String>,
    pub tags: Vec<Reference>,
    pub build_args: BTreeMap<String, String>,
    pub target: Option<String>,
    pub labels: BTreeMap<String, String>,
    /// `--pull`: fetch base images even when present.
    pub pull: bool,
    /// `-q`: only the image ID is printed.
    pub quiet: bool,
    /// RUN containers' network (`--network`); empty for the default bridge.
    pub network_mode: String,
}

/// Fetches an image that is not in the store (the caller's pull, with its credentials).
pub type Fetch<'a> = dyn Fn(&str) -> Result<()> + 'a;

/// Runs the build; `out` receives the classic builder's output text and answers false
/// once nobody reads it any more, which cancels the build. Returns the image.
pub fn build(
    engine: &Engine,
    images: &ImageStore,
    opts: &BuildOptions,
    fetch: &Fetch<'_>,
    out: &mut dyn FnMut(&str) -> bool,
) -> Result<ImageRecord> {
    let name = if opts.dockerfile.is_empty() {
        "Dockerfile"
    } else {
        opts.dockerfile.as_str()
    };
    let text = match &opts.dockerfile_text {
        Some(t) => t.clone(),
        None => context::read_small_file(&opts.context, name, 16 << 20)?
            .ok_or_else(|| Error::invalid(format!("Cannot locate specified Dockerfile: {name}")))?,
    };
    let df = dockerfile::parse(&text)?;
    let work = WorkDir::new(engine)?;
    let mut b = Builder {
        engine,
        images,
        opts,
        fetch,
        out,
        work: &work,
        ignore: Ignore::load(&opts.context)?,
        stages: Vec::new(),
        step: 0,
        steps: df.step_count(),
        cancelled: false,
        used_args: Default::default(),
    };
    let state = b.run(&df)?;
    b.commit(state)
}

/// The build's scratch space under the data root (same filesystem as containers, so
/// their writable layers are moved here, not copied); removed with everything in it.
struct WorkDir {
    dir: PathBuf,
}

impl WorkDir {
    fn new(engine: &Engine) -> Result<WorkDir> {
        let parent = engine.roots.data.join("build");
        sweep_dead(&parent);
        let dir = parent.join(scratch_name("w"));
        std::fs::create_dir_all(&dir).map_err(|e| Error::path(&dir, e))?;
        Ok(WorkDir { dir })
    }

    fn fresh(&self, prefix: &str) -> Result<PathBuf> {
        let p = self
            .dir
            .join(format!("{prefix}-{}", &crate::ids::new_id()[..12]));
        std::fs::create_dir_all(&p).map_err(|e| Error::path(&p, e))?;
        Ok(p)
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = crate::fsutil::remove_dir_all_if_exists(&self.dir);
    }
}

/// A name for build scratch space under `<data>/build`: `<prefix><pid>-<random>`, so
/// what a killed build left behind can be told from a running build's.
pub fn scratch_name(prefix: &str) -> String {
    format!(
        "{prefix}{}-{}",
        std::process::id(),
        &crate::ids::new_id()[..12]
    )
}

/// Removes the scratch space of builds whose process is gone (a killed daemon or CLI):
/// their overlay mounts first, then the directories.
pub fn sweep_dead(parent: &Path) {
    let Ok(rd) = std::fs::read_dir(parent) else {
        return;
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let digits: String = name
            .trim_start_matches(|c: char| c.is_ascii_alphabetic())
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        let Ok(pid) = digits.parse::<i32>() else {
            continue;
        };
        // SAFETY: kill with signal 0 only checks for the process.
        let alive = pid > 0
            && (unsafe { libc::kill(pid, 0) } == 0
                || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM));
        if alive {
            continue;
        }
        let dir = e.path();
        for m in mounts_under(&dir) {
            let _ = nix::mount::umount2(&m, nix::mount::MntFlags::MNT_DETACH);
        }
        let _ = crate::fsutil::remove_dir_all_if_exists(&dir);
        let _ = std::fs::remove_file(&dir);
    }
}

/// Mount points at or below `dir`, deepest first.
fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut out: Vec<PathBuf> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(p.replace("\\040", " ")))
        .filter(|p| p.starts_with(dir))
        .collect();
    out.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    out
}

/// A writable overlay of some layers, mounted in the build's scratch space and
/// unmounted when dropped.
struct Overlay {
    merged: PathBuf,
    upper: PathBuf,
}

impl Overlay {
    fn mount(work: &WorkDir, lowers_bottom_up: &[PathBuf]) -> Result<Overlay> {
        let base = work.fresh("ovl")?;
        let (upper, wdir, merged) = (base.join("upper"), base.join("work"), base.join("merged"));
        for d in [&upper, &wdir, &merged] {
            std::fs::create_dir_all(d).map_err(|e| Error::path(d, e))?;
        }
        let mut lowers: Vec<PathBuf> = lowers_bottom_up.iter().rev().cloned().collect();
        if lowers.is_empty() {
            // FROM scratch: overlayfs wants a lower layer.
            let empty = base.join("empty");
            std::fs::create_dir_all(&empty).map_err(|e| Error::path(&empty, e))?;
            lowers.push(empty);
        }
        // Scratch layers: nothing to sync, ever (the result is committed as a tar).
        crate::runtime::rootfs::mount_overlay(&lowers, &upper, &wdir, &merged, true)?;
        Ok(Overlay { merged, upper })
    }
}

impl Drop for Overlay {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.merged, nix::mount::MntFlags::MNT_DETACH);
    }
}

/// Where a stage stands: its base image and the layers this build added on top.
#[derive(Clone)]
struct State {
    parent: Option<ImageRecord>,
    base_dirs: Vec<PathBuf>,
    /// Writable layers made by this build, bottom to top.
    new_layers: Vec<PathBuf>,
    config: ImageConfig,
    reference: String,
    /// Whether this stage set CMD (an ENTRYPOINT then keeps it).
    cmd_set: bool,
    args: BTreeMap<String, String>,
}

impl State {
    fn lowers(&self) -> Vec<PathBuf> {
        self.base_dirs
            .iter()
            .chain(self.new_layers.iter())
            .cloned()
            .collect()
    }

    fn env_map(&self) -> BTreeMap<String, String> {
        self.config
            .config
            .env
            .iter()
            .filter_map(|e| e.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// What `$VAR` expands to: build args, then ENV over them (ENV wins, as in Docker).
    fn vars(&self) -> BTreeMap<String, String> {
        let mut v = self.args.clone();
        v.extend(self.env_map());
        v
    }

    fn set_env(&mut self, k: &str, v: &str) {
        let env = &mut self.config.config.env;
        let entry = format!("{k}={v}");
        match env
            .iter_mut()
            .find(|e| e.split_once('=').is_some_and(|(ek, _)| ek == k))
        {
            Some(e) => *e = entry,
            None => env.push(entry),
        }
    }

    fn shell(&self) -> Vec<String> {
        self.config
            .config
            .shell
            .clone()
            .unwrap_or_else(|| vec!["/bin/sh".into(), "-c".into()])
    }

    fn history(&mut self, created_by: String, empty_layer: bool) {
        self.config.history.push(History {
            created: Some(crate::state::now_rfc3339()),
            created_by: Some(created_by),
            comment: None,
            empty_layer,
        });
    }
}

struct Builder<'a> {
    engine: &'a Engine,
    images: &'a ImageStore,
    opts: &'a BuildOptions,
    fetch: &'a Fetch<'a>,
    out: &'a mut dyn FnMut(&str) -> bool,
    /// The reader of the output went away: stop at the next occasion.
    cancelled: bool,
    work: &'a WorkDir,
    ignore: Ignore,
    /// Finished stages: name (if any) and where each ended.
    stages: Vec<(Option<String>, State)>,
    step: usize,
    steps: usize,
    used_args: std::collections::BTreeSet<String>,
}

impl Builder<'_> {
    fn say(&mut self, s: &str) {
        if !self.opts.quiet && !(self.out)(s) {
            self.cancelled = true;
        }
    }

    fn check_cancelled(&self) -> Result<()> {
        if self.cancelled {
            return Err(Error::BuildFailed {
                message: "the build was cancelled: its client went away".into(),
                code: 1,
            });
        }
        Ok(())
    }

    fn announce(&mut self, ins: &Instruction) {
        self.step += 1;
        let line = format!("Step {}/{} : {}\n", self.step, self.steps, ins.original);
        self.say(&line);
    }

    fn run(&mut self, df: &Dockerfile) -> Result<State> {
        // Global ARGs: defaults, overridden by --build-arg; visible to FROM lines.
        let mut global = BTreeMap::new();
        for ins in &df.global_args {
            self.announce(ins);
            // Each may use the ones before it (`ARG V=3` then `ARG BASE=img:${V}`).
            for (k, v) in self.declare_args(ins, &global.clone())? {
                global.insert(k, v);
            }
        }
        let target = self.opts.target.as_deref().map(str::to_ascii_lowercase);
        if let Some(t) = &target
            && !df.stages.iter().any(|s| s.name.as_deref() == Some(t))
        {
            return Err(Error::invalid(format!(
                "failed to reach build target {t} in Dockerfile"
            )));
        }
        let mut last = None;
        for stage in &df.stages {
            self.announce(&stage.from);
            let mut st = self.from(&stage.from, &global)?;
            for ins in &stage.instructions {
                self.announce(ins);
                self.check_cancelled()?;
                self.dispatch(&mut st, ins, &global)?;
            }
            self.stages.push((stage.name.clone(), st.clone()));
            last = Some(st);
            if target.is_some() && stage.name == target {
                break;
            }
        }
        let unused: Vec<&String> = self
            .opts
            .build_args
            .keys()
            .filter(|k| !self.used_args.contains(*k))
            .collect();
        if !unused.is_empty() {
            let names: Vec<&str> = unused.iter().map(|s| s.as_str()).collect();
            let w = format!(
                "[Warning] One or more build-args [{}] were not consumed\n",
                names.join(" ")
            );
            self.say(&w);
        }
        last.ok_or_else(|| Error::invalid("the Dockerfile has no stage"))
    }

    /// `ARG a[=default] ...`: the values this declaration gives, --build-arg first.
    fn declare_args(
        &mut self,
        ins: &Instruction,
        vars: &BTreeMap<String, String>,
    ) -> Result<Vec<(String, String)>> {
        let Args::Text(t) = &ins.args else {
            return Err(Error::invalid("ARG requires at least one argument"));
        };
        let mut out = Vec::new();
        for w in dockerfile::lex(t, Some(vars)) {
            let (k, default) = match w.split_once('=') {
                Some((k, v)) => (k.to_string(), Some(v.to_string())),
                None => (w.clone(), None),
            };
            if k.is_empty() {
                return Err(Error::invalid("ARG names can not be blank"));
            }
            let v = match self.opts.build_args.get(&k) {
                Some(v) => {
                    self.used_args.insert(k.clone());
                    Some(v.clone())
                }
                None => default.or_else(|| vars.get(&k).cloned()),
            };
            if let Some(v) = v {
                out.push((k, v));
            }
        }
        Ok(out)
    }

    fn from(&mut self, ins: &Instruction, global: &BTreeMap<String, String>) -> Result<State> {
        let words = match &ins.args {
            Args::Text(t) => dockerfile::lex(t, Some(global)),
            Args::Json(v) => v.clone(),
        };
        let base = words.first().cloned().unwrap_or_default();
        let lower = base.to_ascii_lowercase();
        if let Some((_, st)) = self
            .stages
            .iter()
            .rev()
            .find(|(n, _)| n.as_deref() == Some(lower.as_str()))
            .or_else(|| base.parse::<usize>().ok().and_then(|i| self.stages.get(i)))
        {
            let mut st = st.clone();
            st.args.clear();
            st.cmd_set = false;
            return Ok(st);
        }
        if base.is_empty() {
            return Err(Error::invalid("base name (${...}) should not be blank"));
        }
        let mut config = ImageConfig {
            architecture: host_arch().into(),
            os: "linux".into(),
            ..Default::default()
        };
        if base == "scratch" {
            self.say(" ---> scratch\n");
            return Ok(State {
                parent: None,
                base_dirs: Vec::new(),
                new_layers: Vec::new(),
                config,
                reference: String::new(),
                cmd_set: false,
                args: BTreeMap::new(),
            });
        }
        let present = self.images.resolve(&base).ok();
        let rec = match present {
            Some(r) if !self.opts.pull => r,
            _ => {
                self.say(&format!("Pulling {base}\n"));
                (self.fetch)(&base)?;
                self.images.resolve(&base)?
            }
        };
        let base_cfg = self.images.config(&rec)?;
        config.config = base_cfg.config;
        // The base's ONBUILD triggers run right after FROM (below) and are not inherited.
        let triggers = config.config.on_build.take().unwrap_or_default();
        config.history = base_cfg.history;
        config.architecture = base_cfg.architecture;
        config.os = base_cfg.os;
        config.variant = base_cfg.variant;
        let dirs = self.images.layer_dirs(&rec)?;
        let short = format!(" ---> {}\n", &rec.id.hex()[..12]);
        self.say(&short);
        let mut st = State {
            parent: Some(rec),
            base_dirs: dirs,
            new_layers: Vec::new(),
            config,
            reference: base,
            cmd_set: false,
            args: BTreeMap::new(),
        };
        if !triggers.is_empty() {
            let n = triggers.len();
            self.say(&format!(
                "# Executing {n} build trigger{}\n",
                if n == 1 { "" } else { "s" }
            ));
            let df = dockerfile::parse(&format!("FROM scratch\n{}", triggers.join("\n")))?;
            for ins in df.stages.iter().flat_map(|s| &s.instructions) {
                if matches!(ins.keyword.as_str(), "ONBUILD" | "FROM" | "MAINTAINER") {
                    return Err(Error::invalid(format!(
                        "{} isn't allowed as an ONBUILD trigger",
                        ins.keyword
                    )));
                }
                self.dispatch(&mut st, ins, global)?;
            }
        }
        Ok(st)
    }

    fn dispatch(
        &mut self,
        st: &mut State,
        ins: &Instruction,
        global: &BTreeMap<String, String>,
    ) -> Result<()> {
        match ins.keyword.as_str() {
            "ARG" => {
                // A stage sees a global ARG only when it declares it again.
                let mut scope = global.clone();
                scope.extend(st.vars());
                for (k, v) in self.declare_args(ins, &scope)? {
                    st.args.insert(k, v);
                }
            }
            "RUN" => self.run_step(st, ins)?,
            "COPY" | "ADD" => self.copy_step(st, ins)?,
            _ => {
                if !apply_config(st, ins)? {
                    return Err(Error::invalid(format!(
                        "unknown instruction: {}",
                        ins.keyword
                    )));
                }
            }
        }
        Ok(())
    }

    fn run_step(&mut self, st: &mut State, ins: &Instruction) -> Result<()> {
        if let Some(f) = ins.flags.keys().next() {
            return Err(Error::invalid(format!(
                "the --{f} option requires BuildKit; the classic builder does not support it"
            )));
        }
        let argv = match &ins.args {
            Args::Json(v) => v.clone(),
            Args::Text(t) => {
                let mut s = st.shell();
                s.push(t.clone());
                s
            }
        };
        // Build args are in RUN's environment (not in the image), ENV over them.
        let mut env = st.config.config.env.clone();
        for (k, v) in &st.args {
            if !env
                .iter()
                .any(|e| e.split_once('=').is_some_and(|(ek, _)| ek == k))
            {
                env.push(format!("{k}={v}"));
            }
        }
        let rc = &st.config.config;
        let opts = CreateOptions {
            name: None,
            image: Some(ImageInfo {
                id: st
                    .parent
                    .as_ref()
                    .map(|p| p.id.to_string())
                    .unwrap_or_default(),
                reference: st.reference.clone(),
                layers: st.lowers(),
                defaults: ImageDefaults::default(),
            }),
            config: ContainerConfig {
                cmd: argv.clone(),
                env,
                working_dir: rc.working_dir.clone().unwrap_or_default(),
                user: rc.user.clone().unwrap_or_default(),
                image: st.reference.clone(),
                ..Default::default()
            },
            entrypoint: Some(Vec::new()),
            host_config: HostConfig {
                network_mode: self.opts.network_mode.clone(),
                ..Default::default()
            },
            networks: BTreeMap::new(),
        };
        let rec = self.engine.create(opts)?;
        let id = rec.id.clone();
        self.say(&format!(" ---> Running in {}\n", &id[..12]));
        let result = self.run_attached(&id);
        // The writable layer becomes this step's layer; the container goes either way.
        let layer = self.work.dir.join(format!("layer-{}", &id[..12]));
        let moved = match &result {
            Ok(0) => std::fs::rename(self.engine.paths(&id).upper(), &layer)
                .map_err(|e| Error::path(&layer, e)),
            _ => Ok(()),
        };
        let _ = self.engine.remove(&id, true, true);
        self.say(&format!("Removing intermediate container {}\n", &id[..12]));
        let code = result?;
        if code != 0 {
            let shown = match &ins.args {
                Args::Json(v) => serde_json::to_string(v).unwrap_or_default(),
                Args::Text(t) => format!("{} {t}", st.shell().join(" ")),
            };
            return Err(Error::BuildFailed {
                message: format!("The command '{shown}' returned a non-zero code: {code}"),
                code,
            });
        }
        moved?;
        st.new_layers.push(layer);
        let by = match &ins.args {
            Args::Json(v) => serde_json::to_string(v).unwrap_or_default(),
            Args::Text(t) => format!("{} {t}", st.shell().join(" ")),
        };
        st.history(by, false);
        Ok(())
    }

    /// Starts the container with its output relayed to the build output; its exit code.
    fn run_attached(&mut self, id: &str) -> Result<i32> {
        use crate::runtime::attach::{FrameKind, read_frame};
        let (ours, theirs) = crate::runtime::sync::channel()?;
        let streams = AttachStreams {
            stdin: false,
            stdout: true,
            stderr: true,
        };
        self.engine.start(id, Some((theirs, streams)))?;
        let mut s = std::os::unix::net::UnixStream::from(ours);
        loop {
            match read_frame(&mut s).map_err(|e| Error::io("RUN output", e))? {
                Some((FrameKind::Stdout | FrameKind::Stderr, p)) => {
                    let text = String::from_utf8_lossy(&p).into_owned();
                    let was = self.cancelled;
                    self.say(&text);
                    if self.cancelled && !was {
                        // Nobody is reading: end the step now (its exit ends the loop).
                        let _ = self.engine.kill(id, Some("SIGKILL"));
                    }
                }
                Some((FrameKind::Exit, p)) if p.len() == 4 => {
                    self.check_cancelled()?;
                    return Ok(i32::from_be_bytes([p[0], p[1], p[2], p[3]]));
                }
                Some(_) => {}
                None => return Ok(self.engine.wait(id).unwrap_or(255)),
            }
        }
    }

    fn copy_step(&mut self, st: &mut State, ins: &Instruction) -> Result<()> {
        let add = ins.keyword == "ADD";
        for f in ins.flags.keys() {
            if !matches!(f.as_str(), "from" | "chown" | "chmod") || (add && f == "from") {
                return Err(Error::invalid(format!(
                    "the --{f} option is not supported by {} in the classic builder",
                    ins.keyword
                )));
            }
        }
        let vars = st.vars();
        let mut parts = match &ins.args {
            Args::Json(v) => v.iter().map(|w| dockerfile::expand(w, &vars)).collect(),
            Args::Text(t) => dockerfile::lex(t, Some(&vars)),
        };
        if parts.len() < 2 {
            return Err(Error::invalid(format!(
                "{} requires at least two arguments, but only one was provided. Destination could not be determined.",
                ins.keyword
            )));
        }
        let dest_raw = parts.pop().unwrap_or_default();
        let workdir = st.config.config.working_dir.clone().unwrap_or_default();
        let dest = if dest_raw.starts_with('/') {
            dest_raw.clone()
        } else {
            format!("{}/{dest_raw}", workdir.trim_end_matches('/'))
        };
        let dest_is_dir = dest_raw.ends_with('/') || dest_raw == "." || parts.len() > 1;

        // Where sources come from: the context, or another stage's or image's files.
        let from_root: Option<Overlay> = match ins.flags.get("from") {
            Some(f) => {
                let f = dockerfile::expand(f, &vars);
                let lowers = match self
                    .stages
                    .iter()
                    .find(|(n, _)| n.as_deref() == Some(f.to_ascii_lowercase().as_str()))
                    .or_else(|| f.parse::<usize>().ok().and_then(|i| self.stages.get(i)))
                {
                    Some((_, s)) => s.lowers(),
                    None => {
                        if self.images.resolve(&f).is_err() {
                            (self.fetch)(&f)?;
                        }
                        let r = self.images.resolve(&f)?;
                        self.images.layer_dirs(&r)?
                    }
                };
                Some(Overlay::mount(self.work, &lowers)?)
            }
            None => None,
        };
        let mut srcs: Vec<(PathBuf, String)> = Vec::new();
        for p in &parts {
            if add && (p.starts_with("http://") || p.starts_with("https://")) {
                return Err(Error::BuildFailed {
                    message: format!("ADD from a URL ({p}) is not supported by this builder"),
                    code: 1,
                });
            }
            match &from_root {
                // Another stage's or image's files: paths and patterns alike, resolved
                // inside its root, no .dockerignore.
                Some(o) => srcs.extend(context::sources(&o.merged, p, &Ignore::default())?),
                None => srcs.extend(context::sources(&self.opts.context, p, &self.ignore)?),
            }
        }
        let target = Overlay::mount(self.work, &st.lowers())?;
        let root = target.merged.clone();
        let attrs = self.attrs(ins, &root, &vars)?;
        let into_dir = dest_is_dir
            || srcs.len() > 1
            || crate::runtime::mounts::secure_join(&root, Path::new(&dest))
                .ok()
                .and_then(|p| std::fs::metadata(p).ok())
                .is_some_and(|m| m.is_dir());
        if into_dir {
            context::make_dirs(&root, &dest, attrs)?;
        }
        for (src, rel) in &srcs {
            let md = std::fs::symlink_metadata(src).map_err(|e| Error::path(src, e))?;
            // Named as the Dockerfile names it: a symlink source is followed for its
            // content but keeps its own name.
            let named = if rel.is_empty() {
                src.as_path()
            } else {
                Path::new(rel.as_str())
            };
            let base = named
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            if add && md.is_file() && is_archive(src) {
                context::make_dirs(&root, &dest, attrs)?;
                let dir = crate::runtime::mounts::secure_join(&root, Path::new(&dest))?;
                extract(src, &dir)?;
                continue;
            }
            let to = if md.is_dir() || !into_dir {
                dest.clone()
            } else {
                format!("{}/{base}", dest.trim_end_matches('/'))
            };
            let ignore = from_root.is_none().then_some(&self.ignore);
            context::copy(src, rel, &root, &to, attrs, ignore)?;
        }
        let upper = target.upper.clone();
        drop(target);
        drop(from_root);
        st.new_layers.push(upper);
        let what = if parts.len() == 1 { "file" } else { "multi" };
        st.history(
            format!(
                "/bin/sh -c #(nop) {} {what}:{} in {dest}",
                ins.keyword,
                parts.join(",")
            ),
            false,
        );
        Ok(())
    }

    /// `--chown` (names looked up in the image's own passwd and group files) and
    /// `--chmod` (octal).
    fn attrs(
        &self,
        ins: &Instruction,
        root: &Path,
        vars: &BTreeMap<String, String>,
    ) -> Result<Attrs> {
        let mut a = Attrs::default();
        if let Some(c) = ins.flags.get("chown") {
            let c = dockerfile::expand(c, vars);
            // The image's files, resolved inside its root (never the host's).
            let read = |f: &str| context::read_small_file(root, f, 16 << 20).ok().flatten();
            let r = crate::runtime::user::resolve(
                &c,
                &[],
                read("etc/passwd").as_deref(),
                read("etc/group").as_deref(),
            )
            .map_err(|e| {
                Error::invalid(format!(
                    "unable to convert uid/gid chown string to host mapping: {e}"
                ))
            })?;
            a.uid = r.uid;
            a.gid = r.gid;
        }
        if let Some(m) = ins.flags.get("chmod") {
            a.mode = Some(
                u32::from_str_radix(m, 8)
                    .ok()
                    .filter(|m| *m <= 0o7777)
                    .ok_or_else(|| Error::invalid(format!("invalid chmod parameter: {m}")))?,
            );
        }
        Ok(a)
    }

    /// The image: the target stage's layers as tars into the store, with its config.
    fn commit(&mut self, mut st: State) -> Result<ImageRecord> {
        for (k, v) in &self.opts.labels {
            st.config.config.labels.insert(k.clone(), v.clone());
        }
        st.config.created = Some(crate::state::now_rfc3339());
        let mut tars = Vec::new();
        for (i, upper) in st.new_layers.iter().enumerate() {
            let tar = self.work.dir.join(format!("layer-{i}.tar"));
            let f = std::fs::File::create(&tar).map_err(|e| Error::path(&tar, e))?;
            layer::write_layer(upper, std::io::BufWriter::new(f))?;
            tars.push(tar);
        }
        let rec = self.images.create_image(registry::NewImage {
            parent: st.parent.clone(),
            layers: tars,
            config: st.config,
            tags: self.opts.tags.clone(),
        })?;
        Ok(rec)
    }
}

/// What `docker commit` asks for.
#[derive(Debug, Clone, Default)]
pub struct CommitOptions {
    pub tag: Option<Reference>,
    pub comment: String,
    pub author: String,
    /// Dockerfile instructions applied to the config (`--change`).
    pub changes: Vec<String>,
    /// Freeze the container while its writable layer is read (Docker's default).
    pub pause: bool,
    /// The request's Config (API body): Cmd, Entrypoint, Env, Labels, WorkingDir, User
    /// replace the container's.
    pub config: Option<serde_json::Value>,
}

/// Docker's `commit`: the container's writable layer as a new layer on its image, with the
/// container's config (and the changes asked for).
pub fn commit(
    engine: &Engine,
    images: &ImageStore,
    what: &str,
    opts: &CommitOptions,
) -> Result<ImageRecord> {
    let c = engine.containers.lookup(what)?;
    if c.record.host_config.rootfs.is_some() {
        return Err(Error::invalid(
            "a container started from --rootfs has no image to commit onto",
        ));
    }
    let parent = images.resolve(&c.record.image).ok();
    let mut config = match &parent {
        Some(p) => images.config(p)?,
        None => ImageConfig {
            architecture: host_arch().into(),
            os: "linux".into(),
            ..Default::default()
        },
    };
    let cc = &c.record.config;
    let rc = &mut config.config;
    let some = |v: &Vec<String>| (!v.is_empty()).then(|| v.clone());
    let some_s = |v: &String| (!v.is_empty()).then(|| v.clone());
    rc.env = cc.env.clone();
    rc.cmd = some(&cc.cmd);
    rc.entrypoint = some(&cc.entrypoint);
    rc.working_dir = some_s(&cc.working_dir);
    rc.user = some_s(&cc.user);
    rc.labels = cc.labels.clone();
    rc.exposed_ports = cc.exposed_ports.clone();
    rc.volumes = cc.volumes.clone();
    rc.stop_signal = cc.stop_signal.clone();
    rc.healthcheck = cc
        .healthcheck
        .clone()
        .and_then(|h| serde_json::from_value(h).ok());
    if let Some(v) = &opts.config {
        let strings = |k: &str| -> Option<Vec<String>> {
            v.get(k)
                .and_then(|x| serde_json::from_value(x.clone()).ok())
        };
        if let Some(x) = strings("Cmd") {
            rc.cmd = Some(x);
        }
        if let Some(x) = strings("Entrypoint") {
            rc.entrypoint = Some(x);
        }
        if let Some(x) = strings("Env") {
            rc.env = x;
        }
        if let Some(x) = v
            .get("Labels")
            .and_then(|l| serde_json::from_value(l.clone()).ok())
        {
            rc.labels = x;
        }
        if let Some(x) = v.get("WorkingDir").and_then(|x| x.as_str()) {
            rc.working_dir = Some(x.to_string());
        }
        if let Some(x) = v.get("User").and_then(|x| x.as_str()) {
            rc.user = Some(x.to_string());
        }
    }
    let mut st = State {
        parent,
        base_dirs: Vec::new(),
        new_layers: Vec::new(),
        config,
        reference: String::new(),
        cmd_set: true,
        args: BTreeMap::new(),
    };
    let kept = st.config.history.len();
    if !opts.changes.is_empty() {
        let df = dockerfile::parse(&format!("FROM scratch\n{}", opts.changes.join("\n")))?;
        for ins in df.stages.iter().flat_map(|s| &s.instructions) {
            let allowed = matches!(
                ins.keyword.as_str(),
                "CMD"
                    | "ENTRYPOINT"
                    | "ENV"
                    | "EXPOSE"
                    | "LABEL"
                    | "ONBUILD"
                    | "USER"
                    | "VOLUME"
                    | "WORKDIR"
            );
            if !allowed || !apply_config(&mut st, ins)? {
                return Err(Error::invalid(format!(
                    "{} is not a valid change command",
                    ins.keyword.to_ascii_lowercase()
                )));
            }
        }
    }
    // One history entry for the commit, whatever the changes were.
    st.config.history.truncate(kept);
    let work = WorkDir::new(engine)?;
    let tar = work.dir.join("layer.tar");
    let freeze = opts.pause && c.state.status == crate::state::Status::Running;
    if freeze {
        engine.pause(&c.record.id)?;
    }
    let written = std::fs::File::create(&tar)
        .map_err(|e| Error::path(&tar, e))
        .and_then(|f| {
            layer::write_layer(
                &engine.paths(&c.record.id).upper(),
                std::io::BufWriter::new(f),
            )
        });
    if freeze {
        let _ = engine.unpause(&c.record.id);
    }
    written?;
    let now = crate::state::now_rfc3339();
    st.config.created = Some(now.clone());
    if !opts.author.is_empty() {
        st.config.author = Some(opts.author.clone());
    }
    st.config.comment = (!opts.comment.is_empty()).then(|| opts.comment.clone());
    let created_by: Vec<String> = cc.entrypoint.iter().chain(cc.cmd.iter()).cloned().collect();
    st.config.history.push(History {
        created: Some(now),
        created_by: Some(created_by.join(" ")),
        comment: (!opts.comment.is_empty()).then(|| opts.comment.clone()),
        empty_layer: false,
    });
    let rec = images.create_image(registry::NewImage {
        parent: st.parent.clone(),
        layers: vec![tar],
        config: st.config,
        tags: opts.tag.iter().cloned().collect(),
    })?;
    engine.containers.journal().container(
        "commit",
        &c.record,
        &[
            ("comment", opts.comment.clone()),
            ("imageID", rec.id.to_string()),
        ],
    );
    Ok(rec)
}

/// Applies an instruction that only changes the image config (ENV, LABEL, WORKDIR, USER,
/// CMD, ...), as a build step or a `commit --change`. False for other instructions.
fn apply_config(st: &mut State, ins: &Instruction) -> Result<bool> {
    let text = |vars: &BTreeMap<String, String>| match &ins.args {
        Args::Text(t) => dockerfile::expand(t, vars),
        Args::Json(v) => serde_json::to_string(v).unwrap_or_default(),
    };
    let raw = match &ins.args {
        Args::Text(t) => t.clone(),
        Args::Json(v) => serde_json::to_string(v).unwrap_or_default(),
    };
    let one_word = |vars: &BTreeMap<String, String>| dockerfile::lex(&raw, Some(vars)).join(" ");
    let nop = |kw: &str, rest: &str| format!("/bin/sh -c #(nop) {kw} {rest}");
    match ins.keyword.as_str() {
        "ENV" => {
            for (k, v) in dockerfile::pairs(&raw, &st.vars(), "ENV")? {
                st.set_env(&k, &v);
            }
            let rest = text(&st.vars());
            st.history(nop("ENV", &rest), true);
        }
        "LABEL" => {
            for (k, v) in dockerfile::pairs(&raw, &st.vars(), "LABEL")? {
                st.config.config.labels.insert(k, v);
            }
            st.history(nop("LABEL", &text(&st.vars())), true);
        }
        "MAINTAINER" => {
            st.config.author = Some(text(&st.vars()));
            st.history(nop("MAINTAINER", &text(&st.vars())), true);
        }
        "WORKDIR" => {
            let w = one_word(&st.vars());
            let cur = st.config.config.working_dir.clone().unwrap_or_default();
            let path = if w.starts_with('/') || cur.is_empty() {
                clean_abs(&w)
            } else {
                clean_abs(&format!("{cur}/{w}"))
            };
            st.config.config.working_dir = Some(path.clone());
            st.history(nop("WORKDIR", &path), true);
        }
        "USER" => {
            let u = one_word(&st.vars());
            st.config.config.user = Some(u.clone());
            st.history(nop("USER", &u), true);
        }
        "STOPSIGNAL" => {
            let s = one_word(&st.vars());
            crate::lifecycle::parse_signal(&s)?;
            st.config.config.stop_signal = Some(s.clone());
            st.history(nop("STOPSIGNAL", &s), true);
        }
        "EXPOSE" => {
            for p in dockerfile::lex(&raw, Some(&st.vars())) {
                let key = if p.contains('/') {
                    p.to_ascii_lowercase()
                } else {
                    format!("{p}/tcp")
                };
                let port = key.split('/').next().unwrap_or("");
                if port.split('-').any(|n| n.parse::<u16>().is_err()) {
                    return Err(Error::invalid(format!("invalid containerPort: {p}")));
                }
                st.config
                    .config
                    .exposed_ports
                    .insert(key, serde_json::json!({}));
            }
            st.history(nop("EXPOSE", &text(&st.vars())), true);
        }
        "VOLUME" => {
            let vols = match &ins.args {
                Args::Json(v) => v.clone(),
                Args::Text(t) => dockerfile::lex(t, Some(&st.vars())),
            };
            for v in vols {
                if v.trim().is_empty() {
                    return Err(Error::invalid(
                        "VOLUME specified can not be an empty string",
                    ));
                }
                st.config.config.volumes.insert(v, serde_json::json!({}));
            }
            st.history(nop("VOLUME", &text(&st.vars())), true);
        }
        "CMD" | "ENTRYPOINT" => {
            let argv = match &ins.args {
                Args::Json(v) => v.clone(),
                Args::Text(t) => {
                    let mut s = st.shell();
                    s.push(t.clone());
                    s
                }
            };
            if ins.keyword == "CMD" {
                st.config.config.cmd = Some(argv.clone());
                st.cmd_set = true;
            } else {
                st.config.config.entrypoint = Some(argv.clone());
                if !st.cmd_set {
                    st.config.config.cmd = None;
                }
            }
            let shown = serde_json::to_string(&argv).unwrap_or_default();
            st.history(nop(&ins.keyword, &shown), true);
        }
        "SHELL" => {
            let Args::Json(v) = &ins.args else {
                return Err(Error::invalid(
                    "SHELL requires the arguments to be in JSON form",
                ));
            };
            if v.is_empty() {
                return Err(Error::invalid("SHELL requires at least one argument"));
            }
            st.config.config.shell = Some(v.clone());
            st.history(
                nop("SHELL", &serde_json::to_string(v).unwrap_or_default()),
                true,
            );
        }
        "HEALTHCHECK" => {
            st.config.config.healthcheck = Some(healthcheck(ins, &st.shell())?);
            st.history(nop("HEALTHCHECK", &text(&st.vars())), true);
        }
        "ONBUILD" => {
            // Stored as written: its variables belong to the build that triggers it.
            let t = raw.clone();
            st.config
                .config
                .on_build
                .get_or_insert_with(Vec::new)
                .push(t.clone());
            st.history(nop("ONBUILD", &t), true);
        }
        _ => return Ok(false),
    }
    Ok(true)
}

fn healthcheck(ins: &Instruction, shell: &[String]) -> Result<registry::Healthcheck> {
    let mut h = registry::Healthcheck::default();
    let rest = match &ins.args {
        Args::Text(t) => t.trim().to_string(),
        Args::Json(_) => return Err(Error::invalid("HEALTHCHECK requires CMD or NONE")),
    };
    let (kind, cmd) = rest
        .split_once(char::is_whitespace)
        .unwrap_or((rest.as_str(), ""));
    match kind.to_ascii_uppercase().as_str() {
        "NONE" => {
            h.test = vec!["NONE".into()];
            return Ok(h);
        }
        "CMD" => {
            let cmd = cmd.trim();
            h.test = match serde_json::from_str::<Vec<String>>(cmd) {
                Ok(v) if cmd.starts_with('[') => {
                    std::iter::once("CMD".to_string()).chain(v).collect()
                }
                _ => {
                    let _ = shell;
                    vec!["CMD-SHELL".into(), cmd.to_string()]
                }
            };
        }
        _ => return Err(Error::invalid("HEALTHCHECK requires CMD or NONE")),
    }
    let dur = |k: &str| -> Result<Option<i64>> {
        ins.flags
            .get(k)
            .map(|v| {
                crate::units::parse_duration_ns(v)
                    .ok_or_else(|| Error::invalid(format!("invalid --{k} duration: {v}")))
            })
            .transpose()
    };
    h.interval = dur("interval")?;
    h.timeout = dur("timeout")?;
    h.start_period = dur("start-period")?;
    h.start_interval = dur("start-interval")?;
    h.retries = ins
        .flags
        .get("retries")
        .map(|r| {
            r.parse::<i64>()
                .map_err(|_| Error::invalid(format!("invalid --retries: {r}")))
        })
        .transpose()?;
    Ok(h)
}

fn clean_abs(p: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    format!("/{}", parts.join("/"))
}

/// Docker's name for the host architecture.
pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "arm" => "arm",
        "s390x" => "s390x",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

/// A tar, plain or gzip'd, that ADD unpacks instead of copying.
fn is_archive(p: &Path) -> bool {
    use std::io::Read;
    let mut head = [0u8; 512];
    let Ok(mut f) = std::fs::File::open(p) else {
        return false;
    };
    let n = f.read(&mut head).unwrap_or(0);
    (n >= 2 && head[..2] == [0x1f, 0x8b]) || (n >= 262 && &head[257..262] == b"ustar")
}

/// Unpacks an ADD archive into `dir` with the confined layer unpacker.
fn extract(src: &Path, dir: &Path) -> Result<()> {
    let f = std::fs::File::open(src).map_err(|e| Error::path(src, e))?;
    registry::unpack::unpack_tar_or_gzip(f, dir)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sweep_removes_only_what_dead_builds_left() {
        let d = tempfile::tempdir().unwrap();
        let dead = d.path().join("w4194305-abc");
        let live = d.path().join(scratch_name("w"));
        let spool = d.path().join("ctx4194305-abc.tar");
        std::fs::create_dir_all(dead.join("layer-1")).unwrap();
        std::fs::create_dir_all(&live).unwrap();
        std::fs::write(&spool, b"x").unwrap();
        sweep_dead(d.path());
        assert!(!dead.exists() && !spool.exists());
        assert!(live.exists());
    }

    #[test]
    fn workdir_paths() {
        assert_eq!(clean_abs("/a/./b/../c/"), "/a/c");
        assert_eq!(clean_abs("rel"), "/rel");
    }
}
