//! Shared harness for the root integration tests: each test gets a `Pelagos` with private
//! data and run roots in a fresh `pelagos-test-*` temp dir, with the fixture images loaded.
//! Tests skip (print "skipped: ..." and return) unless run as root with PELAGOS_FIXTURES set.
//!
//! The roots are passed through PELAGOS_DATA_ROOT / PELAGOS_RUN_ROOT (not flags) so that a
//! container monitor, which inherits the environment, can be attributed to a test run by the
//! leak checks in zz_leaks.rs.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_pelagos");

/// Default limit for one CLI invocation; a hung command fails the test instead of the suite.
pub const CMD_TIMEOUT: Duration = Duration::from_secs(90);

/// The fixture directory, or None (after printing why) when these tests cannot run here.
pub fn fixtures() -> Option<PathBuf> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        println!("skipped: integration tests need root");
        return None;
    }
    match std::env::var_os("PELAGOS_FIXTURES") {
        Some(d) if !d.is_empty() => Some(PathBuf::from(d)),
        _ => {
            println!("skipped: PELAGOS_FIXTURES is not set (run `make test-root`)");
            None
        }
    }
}

/// Environment variable carrying [`run_token`] into every CLI process (and so into every
/// container monitor, which inherits the CLI's environment).
pub const RUN_TOKEN_VAR: &str = "PELAGOS_TEST_RUN";

/// Identifies one `cargo test` run: the parent process (cargo, shared by every test binary
/// of the run) and its start time. Temp dirs are named `pelagos-test-<token>-*` and the CLI
/// gets `PELAGOS_TEST_RUN=<token>`, so zz_leaks.rs can tell this run's leftovers from those
/// of another run going on at the same time on a shared machine.
pub fn run_token() -> String {
    let ppid = std::os::unix::process::parent_id();
    format!("{ppid}.{}", process_start_time(ppid as i32).unwrap_or(0))
}

/// Field 22 of /proc/PID/stat: start time in clock ticks after boot.
pub fn process_start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(") ")?.1.split(' ').nth(19)?.parse().ok()
}

/// NUL-separated `/proc/PID/<file>` (cmdline, environ) as strings.
pub fn proc_strings(pid: i32, file: &str) -> Vec<String> {
    std::fs::read(format!("/proc/{pid}/{file}"))
        .unwrap_or_default()
        .split(|b| *b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect()
}

/// Parent PID and state letter from /proc/PID/stat.
pub fn proc_ppid_state(pid: i32) -> Option<(i32, char)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let mut f = stat.rsplit_once(") ")?.1.split(' ');
    let state = f.next()?.chars().next()?;
    Some((f.next()?.parse().ok()?, state))
}

/// Every PID visible in /proc.
pub fn all_pids() -> Vec<i32> {
    std::fs::read_dir("/proc")
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

pub struct Pelagos {
    pub dir: tempfile::TempDir,
    pub data: PathBuf,
    pub run_root: PathBuf,
    pub fixtures: PathBuf,
}

/// Output of one CLI invocation, decoded.
#[derive(Debug)]
pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    fn from_output(o: Output) -> Out {
        use std::os::unix::process::ExitStatusExt;
        Out {
            code: o
                .status
                .code()
                .unwrap_or_else(|| 128 + o.status.signal().unwrap_or(0)),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

/// Settings every test daemon.json carries: leave the host's global net.ipv4.ip_forward
/// alone (the tests' bridges forward through their own per-interface flag), and resolve
/// through loopback only: containers' resolv.conf and the embedded DNS servers' upstream
/// are 127.0.0.1, so a lookup of a name nobody owns never leaves the machine.
pub const TEST_DAEMON_JSON: &str = r#"{"ip-forward": false, "dns": ["127.0.0.1"]}"#;

impl Pelagos {
    /// A harness with busybox loaded, or None when the tests must be skipped.
    pub fn new() -> Option<Pelagos> {
        Self::with_images(&["busybox.tar"])
    }

    /// busybox and pelagos-test/config loaded.
    pub fn with_config() -> Option<Pelagos> {
        Self::with_images(&["busybox.tar", "config.tar"])
    }

    pub fn with_images(archives: &[&str]) -> Option<Pelagos> {
        let fixtures = fixtures()?;
        let dir = tempfile::Builder::new()
            .prefix(&format!("pelagos-test-{}-", run_token()))
            .tempdir()
            .expect("create temp dir");
        let p = Pelagos {
            data: dir.path().join("data"),
            run_root: dir.path().join("run"),
            dir,
            fixtures,
        };
        // Each harness's data root gets its own default bridge and nft table (names derive
        // from the root). Leave the host's global net.ipv4.ip_forward alone: our bridges
        // forward through their own per-interface flag, which is all the tests need.
        std::fs::create_dir_all(&p.data).expect("create data root");
        std::fs::write(p.config_file(), TEST_DAEMON_JSON).expect("write daemon.json");
        for a in archives {
            let path = p.fixtures.join(a);
            assert!(
                path.exists(),
                "fixture {} missing: run integration/fixtures/build-images.sh",
                path.display()
            );
            p.ok(&["load", "-i", path.to_str().unwrap()]);
        }
        Some(p)
    }

    /// This harness's daemon.json (every command gets it through PELAGOS_CONFIG).
    pub fn config_file(&self) -> PathBuf {
        self.dir.path().join("daemon.json")
    }

    /// The CLI with this harness's roots.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.args(args)
            .env("PELAGOS_DATA_ROOT", &self.data)
            .env("PELAGOS_RUN_ROOT", &self.run_root)
            .env("PELAGOS_CONFIG", self.config_file())
            .env(RUN_TOKEN_VAR, run_token())
            .env_remove("PELAGOS_LOG")
            .env("RUST_BACKTRACE", "1");
        c
    }

    /// Runs the CLI to completion (stdin from /dev/null).
    pub fn run(&self, args: &[&str]) -> Output {
        self.run_input(args, None)
    }

    /// Runs the CLI, feeding `input` on stdin when given. Panics after CMD_TIMEOUT.
    pub fn run_input(&self, args: &[&str], input: Option<&[u8]>) -> Output {
        run_command(self.cmd(args), input, CMD_TIMEOUT, args)
    }

    pub fn out(&self, args: &[&str]) -> Out {
        Out::from_output(self.run(args))
    }

    /// Runs and asserts exit 0; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let o = self.out(args);
        assert_eq!(
            o.code,
            0,
            "`pelagos {}` failed:\nstdout: {}\nstderr: {}",
            args.join(" "),
            o.stdout,
            o.stderr
        );
        o.stdout
    }

    /// Runs and asserts the exit code and that stderr contains `msg`; returns stderr.
    pub fn fails(&self, args: &[&str], code: i32, msg: &str) -> String {
        let o = self.out(args);
        assert_eq!(
            o.code,
            code,
            "`pelagos {}`: unexpected exit code\nstdout: {}\nstderr: {}",
            args.join(" "),
            o.stdout,
            o.stderr
        );
        assert!(
            o.stderr.contains(msg),
            "`pelagos {}`: stderr lacks {msg:?}:\n{}",
            args.join(" "),
            o.stderr
        );
        assert!(
            !o.stderr.contains("panicked"),
            "`pelagos {}` panicked:\n{}",
            args.join(" "),
            o.stderr
        );
        o.stderr
    }

    /// Exit code and stdout of a foreground `run --rm busybox ...`.
    pub fn sh(&self, script: &str) -> Out {
        self.out(&["run", "--rm", "busybox", "sh", "-c", script])
    }

    /// Starts a detached busybox container running `script`; returns its full ID.
    pub fn detached(&self, extra: &[&str], script: &str) -> String {
        let mut args = vec!["run", "-d"];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["busybox", "sh", "-c", script]);
        let id = self.ok(&args).trim().to_string();
        assert_eq!(id.len(), 64, "run -d printed {id:?}");
        id
    }

    /// Spawns the CLI in the background with piped stdout/stderr.
    pub fn spawn(&self, args: &[&str]) -> Child {
        self.cmd(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn pelagos")
    }

    /// `inspect -f FORMAT TARGET`, trimmed; panics on failure.
    pub fn inspect(&self, target: &str, format: &str) -> String {
        self.ok(&["inspect", "-f", format, target])
            .trim()
            .to_string()
    }

    pub fn full_id(&self, target: &str) -> String {
        self.inspect(target, "{{.Id}}")
    }

    pub fn status(&self, target: &str) -> String {
        self.inspect(target, "{{.State.Status}}")
    }

    /// The container's persisted state (`$DATA_ROOT/containers/<id>/state.json`).
    pub fn state(&self, id: &str) -> serde_json::Value {
        let p = self.data.join("containers").join(id).join("state.json");
        let raw = std::fs::read(&p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()));
        serde_json::from_slice(&raw).expect("state.json is JSON")
    }

    /// Container directories present under the data root.
    pub fn container_dirs(&self) -> Vec<String> {
        let dir = self.data.join("containers");
        let Ok(rd) = std::fs::read_dir(&dir) else {
            return Vec::new();
        };
        rd.filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.len() == 64 && n.bytes().all(|b| b.is_ascii_hexdigit()))
            .collect()
    }

    /// `ps -a -q --no-trunc` as a list.
    pub fn all_ids(&self) -> Vec<String> {
        self.ok(&["ps", "-a", "-q", "--no-trunc"])
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// Runs `pelagos logs ARGS` and reads its stdout as a stream, returning (line count,
    /// last line, exit code) without buffering the whole output.
    pub fn count_log_lines(&self, args: &[&str]) -> (u64, String, i32) {
        let mut child = self
            .cmd(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn logs");
        let mut r = BufReader::with_capacity(1 << 20, child.stdout.take().unwrap());
        let mut count = 0u64;
        let mut last = Vec::new();
        let mut cur = Vec::new();
        loop {
            let buf = r.fill_buf().expect("read logs");
            if buf.is_empty() {
                break;
            }
            let n = buf.len();
            let mut start = 0;
            for i in memchr_all(buf) {
                cur.extend_from_slice(&buf[start..i]);
                count += 1;
                std::mem::swap(&mut last, &mut cur);
                cur.clear();
                start = i + 1;
            }
            cur.extend_from_slice(&buf[start..n]);
            r.consume(n);
        }
        let code = child.wait().expect("wait logs").code().unwrap_or(-1);
        (count, String::from_utf8_lossy(&last).into_owned(), code)
    }
}

fn memchr_all(buf: &[u8]) -> impl Iterator<Item = usize> + '_ {
    buf.iter()
        .enumerate()
        .filter(|(_, b)| **b == b'\n')
        .map(|(i, _)| i)
}

impl Drop for Pelagos {
    fn drop(&mut self) {
        // Remove every container (running ones are killed) so nothing outlives the test.
        let ids = Command::new(BIN)
            .args(["ps", "-a", "-q", "--no-trunc"])
            .env("PELAGOS_DATA_ROOT", &self.data)
            .env("PELAGOS_RUN_ROOT", &self.run_root)
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        let ids: Vec<&str> = ids.lines().filter(|l| !l.is_empty()).collect();
        if !ids.is_empty() {
            let _ = Command::new(BIN)
                .args(["rm", "-f", "-v"])
                .args(&ids)
                .env("PELAGOS_DATA_ROOT", &self.data)
                .env("PELAGOS_RUN_ROOT", &self.run_root)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        // Bridges, veths and the nft table of this private root (nothing if it never
        // used the network).
        if self.data.join("networks").exists() {
            let _ = Command::new(BIN)
                .args(["network", "destroy-all"])
                .env("PELAGOS_DATA_ROOT", &self.data)
                .env("PELAGOS_RUN_ROOT", &self.run_root)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// Waits for `child` (stdout/stderr piped) with a deadline; kills it and panics on timeout.
/// Runs `c` to completion with `input` on stdin (else /dev/null); panics after `timeout`.
pub fn run_command(
    mut c: Command,
    input: Option<&[u8]>,
    timeout: Duration,
    what: &[&str],
) -> Output {
    c.stdin(if input.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = c.spawn().expect("spawn command");
    if let Some(data) = input {
        let mut stdin = child.stdin.take().unwrap();
        let data = data.to_vec();
        std::thread::spawn(move || {
            let _ = stdin.write_all(&data);
        });
    }
    wait_output(child, timeout, what)
}

pub fn wait_output(mut child: Child, timeout: Duration, what: &[&str]) -> Output {
    let pid = child.id() as i32;
    let mut so = child.stdout.take();
    let mut se = child.stderr.take();
    let out_t = std::thread::spawn(move || {
        let mut v = Vec::new();
        if let Some(s) = so.as_mut() {
            let _ = s.read_to_end(&mut v);
        }
        v
    });
    let err_t = std::thread::spawn(move || {
        let mut v = Vec::new();
        if let Some(s) = se.as_mut() {
            let _ = s.read_to_end(&mut v);
        }
        v
    });
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait());
    });
    let status = match rx.recv_timeout(timeout) {
        Ok(s) => s.expect("wait pelagos"),
        Err(_) => {
            // SAFETY: signalling our own child, which has not been reaped yet.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            panic!(
                "`pelagos {}` did not finish within {timeout:?}",
                what.join(" ")
            );
        }
    };
    Output {
        status,
        stdout: out_t.join().unwrap(),
        stderr: err_t.join().unwrap(),
    }
}

/// Polls `cond` every 10 ms until it holds or `timeout` passes; returns whether it held.
pub fn poll_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Reads lines from a child's stdout on a thread, so a test can wait for one with a deadline.
pub struct LineReader {
    rx: mpsc::Receiver<String>,
    pub seen: Vec<String>,
}

impl LineReader {
    pub fn new(r: impl Read + Send + 'static) -> Self {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(r).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        LineReader {
            rx,
            seen: Vec::new(),
        }
    }

    /// Waits until a line equal to `want` arrives; false on timeout or EOF.
    pub fn wait_for(&mut self, want: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(l) => {
                    let hit = l == want;
                    self.seen.push(l);
                    if hit {
                        return true;
                    }
                }
                Err(_) => return false,
            }
        }
    }

    /// Collects the remaining lines until EOF (or timeout); true if EOF was reached.
    pub fn drain(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(l) => self.seen.push(l),
                Err(mpsc::RecvTimeoutError::Disconnected) => return true,
                Err(mpsc::RecvTimeoutError::Timeout) => return false,
            }
        }
    }
}

/// Mount points of v1 cgroup hierarchies (and the cgroup2 one) from /proc/self/mountinfo:
/// (mountpoint, fs type, super options).
pub fn cgroup_mounts() -> Vec<(PathBuf, String, String)> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut v = Vec::new();
    for line in info.lines() {
        let Some((pre, post)) = line.split_once(" - ") else {
            continue;
        };
        let mp = pre.split(' ').nth(4).unwrap_or("");
        let mut f = post.split(' ');
        let fstype = f.next().unwrap_or("");
        let opts = f.nth(1).unwrap_or("");
        if fstype == "cgroup" || fstype == "cgroup2" {
            v.push((PathBuf::from(mp), fstype.to_string(), opts.to_string()));
        }
    }
    v
}

/// Every cgroup directory on this host named `id` below a `pelagos` directory (any depth,
/// any hierarchy).
pub fn cgroup_dirs_named(id: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for (mp, _, _) in cgroup_mounts() {
        find_pelagos_children(&mp, 0, &mut |p: &Path| {
            if p.file_name().is_some_and(|n| n == id) {
                found.push(p.to_path_buf());
            }
        });
    }
    found
}

/// Calls `f` for each child directory of every `pelagos` directory under `dir`.
pub fn find_pelagos_children(dir: &Path, depth: usize, f: &mut dyn FnMut(&Path)) {
    if depth > 8 {
        return;
    }
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        if !e.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let p = e.path();
        if e.file_name() == "pelagos" {
            if let Ok(kids) = std::fs::read_dir(&p) {
                for k in kids.flatten() {
                    if k.file_type().is_ok_and(|t| t.is_dir()) {
                        f(&k.path());
                    }
                }
            }
        } else {
            find_pelagos_children(&p, depth + 1, f);
        }
    }
}

/// The container's cgroup directory for `controller` (v1), or the unified one (v2), from
/// its state.json `Cgroup` field.
pub fn cgroup_dir(state: &serde_json::Value, controller: &str) -> PathBuf {
    let cg = &state["Cgroup"];
    match cg["version"].as_str() {
        Some("v2") => PathBuf::from(cg["placement"]["path"].as_str().expect("v2 path")),
        Some("v1") => {
            let h = cg["hierarchies"]
                .as_array()
                .expect("hierarchies")
                .iter()
                .find(|h| {
                    h["controllers"]
                        .as_array()
                        .is_some_and(|c| c.iter().any(|x| x == controller))
                })
                .unwrap_or_else(|| panic!("no {controller} hierarchy in {cg}"));
            PathBuf::from(h["path"].as_str().expect("v1 path"))
        }
        _ => panic!("no cgroup recorded in state: {state}"),
    }
}

/// All cgroup directories recorded in a state.json.
pub fn cgroup_paths(state: &serde_json::Value) -> Vec<PathBuf> {
    let cg = &state["Cgroup"];
    match cg["version"].as_str() {
        Some("v2") => vec![PathBuf::from(cg["placement"]["path"].as_str().unwrap())],
        Some("v1") => cg["hierarchies"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| PathBuf::from(h["path"].as_str().unwrap()))
            .collect(),
        _ => Vec::new(),
    }
}

pub fn is_cgroup_v2(state: &serde_json::Value) -> bool {
    state["Cgroup"]["version"] == "v2"
}

pub fn read_trim(p: &Path) -> String {
    std::fs::read_to_string(p)
        .unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
        .trim()
        .to_string()
}

/// Lines of `s`, trimmed of '\r', non-empty.
pub fn lines(s: &str) -> Vec<&str> {
    s.lines()
        .map(|l| l.trim_end_matches('\r'))
        .filter(|l| !l.is_empty())
        .collect()
}
