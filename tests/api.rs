//! The Docker Engine API daemon driven by the real docker CLI (/usr/local/bin/docker):
//! each test starts `pelagos daemon` on a private socket with the harness's private roots
//! and points `DOCKER_HOST` at it. Raw HTTP checks pin status codes, headers and JSON
//! shapes against the dockerd samples in the reference material.

mod common;
use common::{Out, Pelagos, poll_until, wait_output};
use serde_json::Value;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const DOCKER: &str = "/usr/local/bin/docker";

struct Daemon {
    p: Pelagos,
    sock: PathBuf,
    child: Option<Child>,
}

impl Daemon {
    /// A daemon on the harness's roots, or None when the tests must be skipped.
    fn start() -> Option<Daemon> {
        if !std::path::Path::new(DOCKER).exists() {
            println!("skipped: no docker CLI at {DOCKER}");
            return None;
        }
        let p = Pelagos::new()?;
        let sock = p.dir.path().join("docker.sock");
        let mut d = Daemon {
            p,
            sock,
            child: None,
        };
        d.spawn();
        Some(d)
    }

    fn spawn(&mut self) {
        let ready = self.p.dir.path().join("ready");
        let _ = std::fs::remove_file(&ready);
        // A private daemon.json: unknown keys must be ignored.
        let config = self.p.dir.path().join("daemon.json");
        std::fs::write(
            &config,
            r#"{"log-level":"warn","insecure-registries":[],"ip-forward":false}"#,
        )
        .unwrap();
        let child = self
            .p
            .cmd(&[
                "daemon",
                "-H",
                &format!("unix://{}", self.sock.display()),
                "--config-file",
                config.to_str().unwrap(),
                "--ready-file",
                ready.to_str().unwrap(),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn daemon");
        self.child = Some(child);
        assert!(
            poll_until(Duration::from_secs(10), || ready.exists()),
            "daemon did not come up"
        );
    }

    /// SIGTERM, as a service manager stops it.
    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: signalling our own child.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let _ = c.wait();
        }
    }

    fn docker_env(&self, c: &mut Command) {
        c.env("DOCKER_HOST", format!("unix://{}", self.sock.display()))
            .env("DOCKER_CONFIG", self.p.dir.path().join("docker-config"))
            .env_remove("DOCKER_CONTEXT")
            .env_remove("DOCKER_API_VERSION");
    }

    fn docker_cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(DOCKER);
        c.args(args);
        self.docker_env(&mut c);
        c
    }

    fn docker_input(&self, args: &[&str], input: Option<&[u8]>) -> Out {
        let o = common::run_command(self.docker_cmd(args), input, Duration::from_secs(60), args);
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

    fn docker(&self, args: &[&str]) -> Out {
        self.docker_input(args, None)
    }

    /// Runs docker and asserts success; returns stdout.
    fn ok(&self, args: &[&str]) -> String {
        let o = self.docker(args);
        assert_eq!(
            o.code,
            0,
            "`docker {}` failed:\nstdout: {}\nstderr: {}",
            args.join(" "),
            o.stdout,
            o.stderr
        );
        o.stdout
    }

    /// One raw HTTP/1.1 request; returns (status, lowercased headers, body).
    fn http(&self, method: &str, path: &str, body: &[u8]) -> (u16, Vec<(String, String)>, Vec<u8>) {
        let mut s = UnixStream::connect(&self.sock).expect("connect daemon");
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: api.moby.localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        s.write_all(head.as_bytes()).unwrap();
        let _ = s.write_all(body);
        let mut raw = Vec::new();
        let _ = s.read_to_end(&mut raw);
        let split = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("response head");
        let head = String::from_utf8_lossy(&raw[..split]).into_owned();
        let mut lines = head.lines();
        let status: u16 = lines
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|c| c.parse().ok())
            .expect("status line");
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        let mut body = raw[split + 4..].to_vec();
        if headers
            .iter()
            .any(|(k, v)| k == "transfer-encoding" && v == "chunked")
        {
            body = dechunk(&body);
        }
        (status, headers, body)
    }

    fn json(&self, method: &str, path: &str, body: &str) -> (u16, Value) {
        let (st, _, b) = self.http(method, path, body.as_bytes());
        (st, serde_json::from_slice(&b).unwrap_or(Value::Null))
    }

    fn pings(&self) -> bool {
        self.http("GET", "/_ping", b"").0 == 200
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop();
    }
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(i) = b.windows(2).position(|w| w == b"\r\n") {
        let n = usize::from_str_radix(String::from_utf8_lossy(&b[..i]).trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        let start = i + 2;
        out.extend_from_slice(&b[start..(start + n).min(b.len())]);
        b = &b[(start + n + 2).min(b.len())..];
    }
    out
}

fn header<'a>(h: &'a [(String, String)], k: &str) -> Option<&'a str> {
    h.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str())
}

/// The top-level keys of a JSON object, sorted.
fn keys(v: &Value) -> Vec<String> {
    let mut k: Vec<String> = v
        .as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default();
    k.sort();
    k
}

/// The JSON body of a recorded dockerd response (20.10, API 1.41), kept with the tests so
/// the contract checks run on every clone (tests/fixtures/docker-api/).
fn sample(name: &str) -> Option<Value> {
    let path = format!(
        "{}/tests/fixtures/docker-api/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    let raw = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let body = raw
        .split_once("\r\n\r\n")
        .or_else(|| raw.split_once("\n\n"))
        .map(|(_, b)| b)
        .unwrap_or_else(|| panic!("{path}: no body"));
    Some(serde_json::from_str(body.trim()).unwrap_or_else(|e| panic!("{path}: {e}")))
}

/// Every key of `reference` is present in `ours` (we may add keys, never drop Docker's).
fn assert_has_keys(ours: &Value, reference: &Value, what: &str, allow_missing: &[&str]) {
    for k in keys(reference) {
        if allow_missing.contains(&k.as_str()) {
            continue;
        }
        assert!(
            ours.get(&k).is_some(),
            "{what}: key {k:?} missing from {ours}"
        );
    }
}

#[test]
fn version_info_ping_and_version_routing() {
    let Some(d) = Daemon::start() else { return };
    let v = d.ok(&[
        "version",
        "--format",
        "{{.Server.APIVersion}} {{.Server.MinAPIVersion}}",
    ]);
    assert_eq!(v.trim(), "1.47 1.24");
    let info = d.ok(&["info", "--format", "{{json .}}"]);
    let info: Value = serde_json::from_str(&info).unwrap();
    assert_eq!(info["Swarm"]["LocalNodeState"], "inactive");
    assert_eq!(info["Images"], 1);
    assert_eq!(info["Containers"], 0);
    assert!(info["NCPU"].as_u64().unwrap() >= 1);
    assert!(info["MemTotal"].as_u64().unwrap() > 0);
    assert!(!info["KernelVersion"].as_str().unwrap().is_empty());
    // What the host's cgroups enforce (memory and pids on every machine we run on), the
    // network drivers, and the clients following events, all measured.
    assert_eq!(info["MemoryLimit"], true);
    assert_eq!(info["PidsLimit"], true);
    assert!(
        info["Plugins"]["Network"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!("bridge"))
    );
    assert_eq!(info["NEventsListener"], 0);
    let mut follower = d
        .docker_cmd(&["events"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let listeners = || d.json("GET", "/info", "").1["NEventsListener"].as_u64();
    assert!(poll_until(Duration::from_secs(5), || listeners() == Some(1)));
    let _ = follower.kill();
    let _ = follower.wait();
    // The daemon notices the closed connection when it next writes (events) or reads.
    d.ok(&["volume", "create", "nudge"]);
    d.ok(&["volume", "rm", "nudge"]);
    assert!(poll_until(Duration::from_secs(5), || listeners() == Some(0)));

    // HEAD and GET ping, headers on every response.
    let (st, h, body) = d.http("HEAD", "/_ping", b"");
    assert_eq!(st, 200);
    assert!(body.is_empty());
    for k in ["api-version", "docker-experimental", "ostype", "server"] {
        assert!(header(&h, k).is_some(), "HEAD /_ping lacks {k}: {h:?}");
    }
    assert_eq!(header(&h, "api-version"), Some("1.47"));
    let (st, _, body) = d.http("GET", "/v1.24/_ping", b"");
    assert_eq!((st, body.as_slice()), (200, b"OK".as_slice()));
    // Too new is served as ours; too old is Docker's 400 in plain text.
    let (st, v) = d.json("GET", "/v1.99/version", "");
    assert_eq!(st, 200);
    assert_eq!(v["ApiVersion"], "1.47");
    let (st, h, body) = d.http("GET", "/v1.11/version", b"");
    assert_eq!(st, 400);
    assert!(
        header(&h, "content-type")
            .unwrap()
            .starts_with("text/plain")
    );
    assert!(String::from_utf8_lossy(&body).contains("client version 1.11 is too old"));
    // Unknown routes: 404 with a JSON message, and the headers.
    let (st, h, body) = d.http("GET", "/v1.47/nope/nothing", b"");
    assert_eq!(st, 404);
    assert_eq!(header(&h, "api-version"), Some("1.47"));
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["message"], "page not found");
    // Contract: Docker's keys are all there.
    if let Some(s) = sample("version.txt") {
        let (_, ours) = d.json("GET", "/version", "");
        assert_has_keys(&ours, &s, "version", &[]);
    }
    if let Some(s) = sample("info.txt") {
        let (_, ours) = d.json("GET", "/info", "");
        assert_has_keys(
            &ours,
            &s,
            "info",
            &[
                "KernelMemory",
                "KernelMemoryTCP",
                "BridgeNfIptables",
                "BridgeNfIp6tables",
            ],
        );
    }
}

#[test]
fn run_rm_output_and_exit_codes() {
    let Some(d) = Daemon::start() else { return };
    let o = d.docker(&["run", "--rm", "busybox", "echo", "hi"]);
    assert_eq!((o.code, o.stdout.as_str()), (0, "hi\n"), "{}", o.stderr);
    let o = d.docker(&[
        "run",
        "--rm",
        "busybox",
        "sh",
        "-c",
        "echo out; echo err >&2; exit 3",
    ]);
    assert_eq!(o.code, 3, "{}", o.stderr);
    assert_eq!(o.stdout, "out\n");
    assert_eq!(o.stderr, "err\n");
    // --rm containers are gone once run returns.
    assert_eq!(d.ok(&["ps", "-aq"]).trim(), "");
    // A missing command: Docker's 127.
    let o = d.docker(&["run", "--rm", "busybox", "no-such-command"]);
    assert_eq!(o.code, 127, "{}", o.stderr);
    // A missing image without a registry: a clear error, exit 125.
    let o = d.docker(&["run", "--rm", "127.0.0.1:1/nosuch:latest", "true"]);
    assert_eq!(o.code, 125, "{}", o.stderr);
    // Shared state: the CLI sees what the API made, and the other way round.
    let id = d.ok(&["create", "--name", "via-api", "busybox", "true"]);
    assert!(
        d.p.ok(&["ps", "-a", "--no-trunc", "-q"])
            .contains(id.trim())
    );
    d.p.ok(&["create", "--name", "via-cli", "busybox", "true"]);
    assert!(
        d.ok(&["ps", "-a", "--format", "{{.Names}}"])
            .contains("via-cli")
    );
    assert!(d.pings());
}

#[test]
fn detached_logs_follow_stop_and_restart_daemon() {
    let Some(mut d) = Daemon::start() else { return };
    let id = d
        .ok(&[
            "run", "-d", "--name", "ticker", "busybox", "sh", "-c",
            "trap 'echo bye; exit 0' TERM; i=0; while true; do echo line$i; i=$((i+1)); sleep 0.1; done",
        ])
        .trim()
        .to_string();
    assert_eq!(id.len(), 64);
    assert!(poll_until(Duration::from_secs(5), || d
        .ok(&["logs", "ticker"])
        .contains("line3")));
    let logs = d
        .docker_cmd(&["logs", "-f", "ticker"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    // The daemon stops; the container keeps running (its monitor owns it) and the next
    // daemon finds it.
    d.stop();
    // Our nftables table lost while the daemon was down (e.g. `nft flush ruleset`): the
    // next daemon rebuilds it from the stored networks.
    let table = nft_tables_of_root(&d.p);
    assert_eq!(table.len(), 1, "{table:?}");
    assert!(
        Command::new("nft")
            .args(["delete", "table", "ip", &table[0]])
            .status()
            .unwrap()
            .success()
    );
    d.spawn();
    assert!(
        poll_until(Duration::from_secs(5), || nft_tables_of_root(&d.p) == table),
        "table not rebuilt"
    );
    assert_eq!(
        d.ok(&["inspect", "-f", "{{.State.Running}}", "ticker"])
            .trim(),
        "true"
    );
    d.ok(&["stop", "ticker"]);
    let out = wait_output(logs, Duration::from_secs(30), &["logs", "-f"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("line0") && text.contains("line3"), "{text}");
    assert!(d.ok(&["logs", "--tail", "1", "ticker"]).contains("bye"));
    assert_eq!(
        d.ok(&[
            "inspect",
            "-f",
            "{{.State.Status}} {{.State.ExitCode}}",
            "ticker"
        ])
        .trim(),
        "exited 0"
    );
    // Stop of a stopped container is a no-op success for the CLI (304).
    d.ok(&["stop", "ticker"]);
    let (st, _, _) = d.http("POST", &format!("/containers/{id}/stop"), b"");
    assert_eq!(st, 304);
    let (st, _, _) = d.http("POST", &format!("/containers/{id}/start"), b"");
    assert_eq!(st, 204);
    let (st, _, _) = d.http("POST", &format!("/containers/{id}/start"), b"");
    assert_eq!(st, 304);
    // Removing a running container without force: 409.
    let o = d.docker(&["rm", "ticker"]);
    assert_eq!(o.code, 1);
    assert!(
        o.stderr.contains("cannot remove a running container"),
        "{}",
        o.stderr
    );
    d.ok(&["rm", "-f", "ticker"]);
}

/// Runs `docker ARGS` under a pty, types `echo $((40+2))` and `exit 7`; returns the
/// transcript and exit code.
fn under_pty(d: &Daemon, args: &[&str]) -> (String, i32) {
    let script = r##"
import os, pty, sys, time, select
pid, fd = pty.fork()
if pid == 0:
    os.execvp(sys.argv[1], sys.argv[1:])
out = b""
def rd(t):
    global out
    end = time.time() + t
    while time.time() < end:
        r, _, _ = select.select([fd], [], [], 0.05)
        if r:
            try:
                d = os.read(fd, 4096)
            except OSError:
                return
            if not d:
                return
            out += d
rd(1.5)
os.write(fd, b"echo $((40+2))\n")
rd(1.5)
os.write(fd, b"exit 7\n")
rd(3.0)
_, st = os.waitpid(pid, 0)
sys.stdout.write(out.decode("utf-8", "replace"))
sys.exit(os.waitstatus_to_exitcode(st))
"##;
    let path = d.p.dir.path().join("ptyrun.py");
    std::fs::write(&path, script).unwrap();
    let mut cmd = Command::new("python3");
    cmd.arg(&path).arg(DOCKER).args(args);
    d.docker_env(&mut cmd);
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3");
    let o = wait_output(child, Duration::from_secs(60), args);
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        o.status.code().unwrap_or(-1),
    )
}

#[test]
fn interactive_run_and_exec_under_a_pty() {
    let Some(d) = Daemon::start() else { return };
    let (out, code) = under_pty(&d, &["run", "-it", "--rm", "busybox", "sh"]);
    assert!(out.contains("42"), "{out:?}");
    assert_eq!(code, 7, "{out:?}");
    d.ok(&["run", "-d", "--name", "box", "busybox", "sleep", "60"]);
    let (out, code) = under_pty(&d, &["exec", "-it", "box", "sh"]);
    assert!(out.contains("42"), "{out:?}");
    assert_eq!(code, 7, "{out:?}");
    d.ok(&["rm", "-f", "box"]);
}

#[test]
fn exec_stdin_exit_codes_and_inspect() {
    let Some(d) = Daemon::start() else { return };
    d.ok(&["run", "-d", "--name", "box", "busybox", "sleep", "60"]);
    let o = d.docker_input(
        &["exec", "-i", "box", "sh", "-c", "cat; echo done >&2"],
        Some(b"from stdin\n"),
    );
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert_eq!(o.stdout, "from stdin\n");
    assert_eq!(o.stderr, "done\n");
    let o = d.docker(&["exec", "box", "sh", "-c", "exit 5"]);
    assert_eq!(o.code, 5);
    // Default signal dispositions and mask, as with Docker (`yes | head` must end by
    // SIGPIPE, not loop on EPIPE).
    assert_eq!(
        d.ok(&[
            "exec",
            "box",
            "grep",
            "-E",
            "^Sig(Ign|Blk)",
            "/proc/self/status"
        ]),
        "SigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\n"
    );
    let o = d.docker(&["exec", "box", "no-such-binary"]);
    assert_eq!(o.code, 127, "{} {}", o.stdout, o.stderr);
    d.ok(&["exec", "-d", "box", "touch", "/tmp/detached"]);
    assert!(poll_until(Duration::from_secs(5), || d
        .docker(&["exec", "box", "test", "-f", "/tmp/detached"])
        .code
        == 0));
    // A detached exec's exit code shows in its inspect once it ends.
    let (_, v) = d.json(
        "POST",
        "/containers/box/exec",
        r#"{"Cmd":["sh","-c","sleep 0.2; exit 3"]}"#,
    );
    let exec = v["Id"].as_str().unwrap().to_string();
    let (st, _) = d.json("POST", &format!("/exec/{exec}/start"), r#"{"Detach":true}"#);
    assert_eq!(st, 200);
    assert!(poll_until(Duration::from_secs(5), || {
        let v = d.json("GET", &format!("/exec/{exec}/json"), "").1;
        v["Running"] == false && v["ExitCode"] == 3
    }));
    // Exec inspect shape and ExitCode, straight from the API.
    let (st, v) = d.json(
        "POST",
        "/containers/box/exec",
        r#"{"Cmd":["sh","-c","exit 3"],"AttachStdout":true,"AttachStderr":true}"#,
    );
    assert_eq!(st, 201, "{v}");
    let exec = v["Id"].as_str().unwrap().to_string();
    let (st, _, _) = d.http(
        "POST",
        &format!("/exec/{exec}/start"),
        br#"{"Detach":false,"Tty":false}"#,
    );
    assert_eq!(st, 200);
    let (st, v) = d.json("GET", &format!("/exec/{exec}/json"), "");
    assert_eq!(st, 200);
    assert_eq!(v["ExitCode"], 3);
    assert_eq!(v["Running"], false);
    if let Some(s) = sample("exec_inspect.txt") {
        assert_has_keys(&v, &s, "exec inspect", &[]);
    }
    let (st, v) = d.json("GET", "/exec/nope/json", "");
    assert_eq!(st, 404, "{v}");
    // Exec in a stopped container: 409.
    d.ok(&["kill", "box"]);
    d.ok(&["wait", "box"]);
    let (st, _) = d.json("POST", "/containers/box/exec", r#"{"Cmd":["true"]}"#);
    assert_eq!(st, 409);
}

#[test]
fn cp_both_ways_and_before_start() {
    let Some(d) = Daemon::start() else { return };
    let dir = d.p.dir.path();
    std::fs::write(dir.join("f.txt"), "content\n").unwrap();
    std::fs::create_dir_all(dir.join("tree/sub")).unwrap();
    std::fs::write(dir.join("tree/sub/y"), "y\n").unwrap();
    std::os::unix::fs::symlink("sub/y", dir.join("tree/link")).unwrap();
    // Before start: goes into the writable layer.
    d.ok(&[
        "create",
        "--name",
        "c1",
        "busybox",
        "sh",
        "-c",
        "cat /f.txt /tmp/tree/sub/y",
    ]);
    d.ok(&["cp", dir.join("f.txt").to_str().unwrap(), "c1:/"]);
    d.ok(&["cp", dir.join("tree").to_str().unwrap(), "c1:/tmp/"]);
    let o = d.docker(&["start", "-a", "c1"]);
    assert_eq!(o.stdout, "content\ny\n", "{}", o.stderr);
    // From a stopped container and from a running one.
    d.ok(&["cp", "c1:/tmp/tree", dir.join("back").to_str().unwrap()]);
    assert_eq!(
        std::fs::read_to_string(dir.join("back/sub/y")).unwrap(),
        "y\n"
    );
    // `/dir/.` copies the directory's contents, into an existing directory or a new one
    // (names with dots and a symlink included: the CLI rebases entries on the `.`).
    d.ok(&[
        "cp",
        dir.join("f.txt").to_str().unwrap(),
        "c1:/tmp/tree/sub/a.b.txt",
    ]);
    std::fs::create_dir_all(dir.join("existing")).unwrap();
    for dest in ["existing", "fresh"] {
        d.ok(&["cp", "c1:/tmp/tree/.", dir.join(dest).to_str().unwrap()]);
        assert_eq!(
            std::fs::read_to_string(dir.join(dest).join("sub/a.b.txt")).unwrap(),
            "content\n",
            "{dest}"
        );
        assert!(!dir.join(dest).join("tree").exists(), "{dest}");
        assert_eq!(
            std::fs::read_link(dir.join(dest).join("link")).unwrap(),
            std::path::Path::new("sub/y")
        );
    }
    d.ok(&[
        "run",
        "-d",
        "--name",
        "c2",
        "busybox",
        "sh",
        "-c",
        "echo inside > /tmp/in; sleep 60",
    ]);
    assert!(poll_until(Duration::from_secs(5), || d
        .docker(&["exec", "c2", "test", "-f", "/tmp/in"])
        .code
        == 0));
    d.ok(&["cp", "c2:/tmp/in", dir.join("in.txt").to_str().unwrap()]);
    assert_eq!(
        std::fs::read_to_string(dir.join("in.txt")).unwrap(),
        "inside\n"
    );
    d.ok(&["cp", dir.join("f.txt").to_str().unwrap(), "c2:/tmp/f.txt"]);
    assert_eq!(d.ok(&["exec", "c2", "cat", "/tmp/f.txt"]), "content\n");
    // Missing paths: 404 with the stat header absent; the CLI says so.
    let (st, h, _) = d.http("HEAD", "/containers/c2/archive?path=/nope", b"");
    assert_eq!(st, 404);
    assert!(header(&h, "x-docker-container-path-stat").is_none());
    let (st, h, _) = d.http("HEAD", "/containers/c2/archive?path=/tmp", b"");
    assert_eq!(st, 200);
    assert!(header(&h, "x-docker-container-path-stat").is_some());
    // A hostile tar (`..` climbing out) is refused and writes nothing outside.
    let mut tarball = Vec::new();
    {
        let mut b = tar::Builder::new(&mut tarball);
        let mut hdr = tar::Header::new_gnu();
        let data = b"pwned";
        hdr.set_size(data.len() as u64);
        hdr.set_mode(0o644);
        hdr.set_entry_type(tar::EntryType::Regular);
        // set_path refuses "..": write the name bytes directly.
        let name = b"../../../../../../../../tmp/pelagos-api-escape";
        hdr.as_old_mut().name[..name.len()].copy_from_slice(name);
        hdr.set_cksum();
        b.append(&hdr, &data[..]).unwrap();
        b.finish().unwrap();
    }
    let _ = std::fs::remove_file("/tmp/pelagos-api-escape");
    let (st, _, _) = d.http("PUT", "/containers/c2/archive?path=/tmp", &tarball);
    assert_eq!(st, 400);
    assert!(!std::path::Path::new("/tmp/pelagos-api-escape").exists());
    assert!(d.pings());
}

#[test]
fn ps_filters_inspect_and_lifecycle() {
    let Some(d) = Daemon::start() else { return };
    d.ok(&[
        "run", "-d", "--name", "a1", "-l", "app=one", "busybox", "sleep", "60",
    ]);
    d.ok(&[
        "run", "-d", "--name", "a2", "-l", "app=two", "busybox", "sleep", "60",
    ]);
    assert_eq!(
        d.docker(&["run", "--name", "ex", "busybox", "sh", "-c", "exit 4"])
            .code,
        4
    );
    let names = |args: &[&str]| {
        let mut v: Vec<String> = d.ok(args).lines().map(str::to_string).collect();
        v.sort();
        v
    };
    assert_eq!(names(&["ps", "--format", "{{.Names}}"]), ["a1", "a2"]);
    assert_eq!(
        names(&["ps", "-a", "--format", "{{.Names}}"]),
        ["a1", "a2", "ex"]
    );
    assert_eq!(
        names(&["ps", "--filter", "label=app=one", "--format", "{{.Names}}"]),
        ["a1"]
    );
    assert_eq!(
        names(&[
            "ps",
            "-a",
            "--filter",
            "status=exited",
            "--format",
            "{{.Names}}"
        ]),
        ["ex"]
    );
    assert_eq!(
        names(&["ps", "-a", "--filter", "exited=4", "--format", "{{.Names}}"]),
        ["ex"]
    );
    assert_eq!(
        names(&["ps", "--filter", "name=a2", "--format", "{{.Names}}"]),
        ["a2"]
    );
    assert_eq!(
        names(&["ps", "-a", "--filter", "ancestor=busybox", "-q"]).len(),
        3
    );
    // The list filter in docker-py's list encoding.
    let (st, v) = d.json(
        "GET",
        "/containers/json?filters=%7B%22label%22%3A%5B%22app%3Dtwo%22%5D%7D",
        "",
    );
    assert_eq!(st, 200);
    assert_eq!(v.as_array().unwrap().len(), 1);
    if let Some(s) = sample("containers_list.txt") {
        assert_has_keys(&v[0], &s[0], "containers/json", &[]);
    }
    // inspect
    let v: Value = serde_json::from_str(&d.ok(&["inspect", "a1"])).unwrap();
    assert_eq!(v[0]["Name"], "/a1");
    assert_eq!(v[0]["Config"]["Labels"]["app"], "one");
    assert_eq!(v[0]["State"]["Running"], true);
    for k in [
        "Id",
        "Created",
        "Path",
        "Args",
        "State",
        "Image",
        "HostConfig",
        "Mounts",
        "Config",
        "NetworkSettings",
    ] {
        assert!(v[0].get(k).is_some(), "inspect lacks {k}");
    }
    if let Some(s) = sample("container_inspect_health_ports.txt") {
        let (_, ours) = d.json("GET", "/containers/a1/json", "");
        assert_has_keys(&ours, &s, "container inspect", &[]);
        // The sample's container has a healthcheck and published ports; a1 has neither.
        for part in ["State", "Config", "NetworkSettings"] {
            assert_has_keys(
                &ours[part],
                &s[part],
                part,
                &["Health", "Healthcheck", "ExposedPorts"],
            );
        }
    }
    if let Some(s) = sample("top.txt") {
        let (_, ours) = d.json("GET", "/containers/a1/top", "");
        assert_has_keys(&ours, &s, "top", &[]);
    }
    if let Some(s) = sample("stats_nostream.txt") {
        let (_, ours) = d.json("GET", "/containers/a1/stats?stream=false", "");
        assert_has_keys(&ours, &s, "stats", &[]);
        assert!(
            ours["networks"]["eth0"]["rx_bytes"].is_u64(),
            "stats networks: {}",
            ours["networks"]
        );
    }
    // wait, kill, restart, rename, pause, top, stats
    assert_eq!(d.ok(&["wait", "ex"]).trim(), "4");
    d.ok(&["pause", "a1"]);
    assert!(
        d.ok(&["ps", "--filter", "name=a1", "--format", "{{.Status}}"])
            .contains("Paused")
    );
    d.ok(&["unpause", "a1"]);
    let top = d.ok(&["top", "a1"]);
    assert!(top.contains("sleep 60"), "{top}");
    let stats = d.ok(&[
        "stats",
        "--no-stream",
        "--format",
        "{{.Name}} {{.PIDs}}",
        "a1",
    ]);
    assert_eq!(stats.trim(), "a1 1");
    d.ok(&["rename", "a1", "renamed"]);
    assert_eq!(
        d.ok(&["inspect", "-f", "{{.Name}}", "renamed"]).trim(),
        "/renamed"
    );
    let o = d.docker(&["rename", "renamed", "a2"]);
    assert_eq!(o.code, 1, "rename onto a used name must fail");
    let before = d.ok(&["inspect", "-f", "{{.State.StartedAt}}", "renamed"]);
    d.ok(&["restart", "-t", "0", "renamed"]);
    let after = d.ok(&[
        "inspect",
        "-f",
        "{{.State.StartedAt}} {{.State.Running}}",
        "renamed",
    ]);
    assert_ne!(before.trim(), after.trim());
    assert!(after.trim().ends_with("true"));
    d.ok(&["kill", "renamed"]);
    assert_eq!(d.ok(&["wait", "renamed"]).trim(), "137");
    let o = d.docker(&["kill", "renamed"]);
    assert_eq!(o.code, 1);
    assert!(o.stderr.contains("is not running"), "{}", o.stderr);
    d.ok(&["rm", "-f", "renamed", "a2", "ex"]);
    assert_eq!(d.ok(&["ps", "-aq"]).trim(), "");
}

/// `docker events` from `since` (unix seconds) up to a second from now, with `args`.
fn replay(d: &Daemon, since: &str, args: &[&str]) -> String {
    let until = (chrono::Utc::now().timestamp() + 1).to_string();
    let mut all = vec!["events", "--since", since, "--until", &until];
    all.extend_from_slice(args);
    d.ok(&all)
}

#[test]
fn events_stream_and_replay() {
    let Some(d) = Daemon::start() else { return };
    let since = chrono::Utc::now().timestamp().to_string();
    let ev = d
        .docker_cmd(&[
            "events",
            "--format",
            "{{json .}}",
            "--filter",
            "event=start",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    d.ok(&[
        "run",
        "--rm",
        "-l",
        "devcontainer.local_folder=/x",
        "busybox",
        "true",
    ]);
    std::thread::sleep(Duration::from_millis(300));
    // SAFETY: signalling our own child.
    unsafe { libc::kill(ev.id() as i32, libc::SIGTERM) };
    let out = wait_output(ev, Duration::from_secs(10), &["events"]);
    let line = String::from_utf8_lossy(&out.stdout).into_owned();
    let v: Value = serde_json::from_str(line.lines().next().expect("a start event")).unwrap();
    assert_eq!(v["status"], "start");
    assert_eq!(v["Type"], "container");
    assert_eq!(v["Actor"]["Attributes"]["devcontainer.local_folder"], "/x");
    assert_eq!(v["Actor"]["Attributes"]["image"], "busybox");
    assert!(v["timeNano"].as_i64().unwrap() > 0);
    // A bounded replay: create, start, die, destroy (the harness's image load, made by
    // the CLI in the same second, is an image event).
    let o = replay(
        &d,
        &since,
        &["--filter", "type=container", "--format", "{{.Action}}"],
    );
    let actions: Vec<&str> = o.lines().collect();
    assert_eq!(actions, ["create", "start", "die", "destroy"], "{o}");
}

/// What the `pelagos` CLI does shows in `docker events` as it happens (the journal the
/// daemon tails), in order, with Docker's attributes; and what the CLI did while no daemon
/// ran is there for a `--since` replay after it starts.
#[test]
fn cli_actions_show_in_docker_events() {
    let Some(mut d) = Daemon::start() else { return };
    let since = chrono::Utc::now().timestamp().to_string();
    let ev = d
        .docker_cmd(&[
            "events",
            "--format",
            r#"{{.Type}} {{.Action}} {{index .Actor.Attributes "name"}} {{index .Actor.Attributes "exitCode"}}{{index .Actor.Attributes "signal"}}"#,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    d.p.ok(&[
        "run", "-d", "--name", "evc", "-l", "k=v", "busybox", "sleep", "60",
    ]);
    d.p.ok(&["kill", "evc"]);
    d.p.ok(&["start", "evc"]);
    d.p.ok(&["rename", "evc", "evd"]);
    d.p.ok(&["rm", "-f", "evd"]);
    d.p.ok(&["network", "create", "evnet"]);
    d.p.ok(&["network", "rm", "evnet"]);
    d.p.ok(&["volume", "create", "evvol"]);
    d.p.ok(&["volume", "rm", "evvol"]);
    d.p.ok(&["tag", "busybox", "evimg:1"]);
    d.p.ok(&["rmi", "evimg:1"]);
    // The container event a label filter selects (the CLI's own attributes).
    let labelled = replay(
        &d,
        &since,
        &[
            "--filter",
            "label=k=v",
            "--filter",
            "event=create",
            "--format",
            "{{.Actor.Attributes.image}} {{.Actor.Attributes.name}}",
        ],
    );
    assert_eq!(labelled.trim(), "busybox evc");
    std::thread::sleep(Duration::from_millis(300));
    // SAFETY: signalling our own child.
    unsafe { libc::kill(ev.id() as i32, libc::SIGTERM) };
    let out = wait_output(ev, Duration::from_secs(10), &["events"]);
    let live = String::from_utf8_lossy(&out.stdout).into_owned();
    let live: Vec<&str> = live.lines().map(str::trim_end).collect();
    let expected = [
        "container create evc",
        "container start evc",
        "container kill evc 9",
        "container die evc 137",
        "container start evc",
        "container rename evd",
        "container kill evd 9",
        "container die evd 137",
        "container destroy evd",
        "network create evnet",
        "network destroy evnet",
        "volume create",
        "volume destroy",
        "image tag evimg:1",
        "image untag",
    ];
    assert_eq!(live, expected, "live stream");

    // Done while no daemon runs, replayed once one does.
    d.stop();
    let before = chrono::Utc::now().timestamp().to_string();
    d.p.ok(&["run", "--rm", "--name", "offline", "busybox", "true"]);
    d.spawn();
    let offline = replay(
        &d,
        &before,
        &["--format", "{{.Action}} {{.Actor.Attributes.name}}"],
    );
    let offline: Vec<&str> = offline.lines().collect();
    assert_eq!(
        offline,
        [
            "create offline",
            "start offline",
            "die offline",
            "destroy offline"
        ]
    );
}

/// Restart policies through the daemon: each policy restart is a `die` then a `start`
/// in `docker events`; at daemon start `always` containers come back even after a
/// `docker stop`, `unless-stopped` ones stay stopped.
#[test]
fn restart_policies_through_the_daemon_and_at_its_start() {
    let Some(mut d) = Daemon::start() else { return };
    let since = chrono::Utc::now().timestamp().to_string();
    d.ok(&[
        "run",
        "-d",
        "--name",
        "once",
        "--restart",
        "on-failure:1",
        "busybox",
        "sh",
        "-c",
        "exit 4",
    ]);
    assert!(poll_until(Duration::from_secs(5), || {
        d.ok(&[
            "inspect",
            "-f",
            "{{.State.Status}} {{.RestartCount}}",
            "once",
        ])
        .trim()
            == "exited 1"
    }));
    let actions = replay(
        &d,
        &since,
        &[
            "--filter",
            "container=once",
            "--format",
            "{{.Action}} {{index .Actor.Attributes \"exitCode\"}}",
        ],
    );
    let actions: Vec<&str> = actions.lines().map(str::trim_end).collect();
    assert_eq!(actions, ["create", "start", "die 4", "start", "die 4"]);

    for (name, policy) in [("always-up", "always"), ("left-down", "unless-stopped")] {
        d.ok(&[
            "run",
            "-d",
            "--name",
            name,
            "--restart",
            policy,
            "busybox",
            "sleep",
            "1000",
        ]);
        d.ok(&["stop", "-t", "0", name]);
    }
    assert_eq!(
        (status(&d, "always-up"), status(&d, "left-down")),
        ("exited".into(), "exited".into())
    );
    d.stop();
    d.spawn();
    assert!(
        poll_until(Duration::from_secs(5), || status(&d, "always-up")
            == "running"),
        "{}",
        status(&d, "always-up")
    );
    assert_eq!(status(&d, "left-down"), "exited");
    assert_eq!(
        status(&d, "once"),
        "exited",
        "on-failure without retries left stays down"
    );
    d.ok(&["rm", "-f", "always-up", "left-down", "once"]);
}

fn status(d: &Daemon, name: &str) -> String {
    d.ok(&["inspect", "-f", "{{.State.Status}}", name])
        .trim()
        .to_string()
}

/// The shape of the devcontainer CLI's scripts/updateUID.Dockerfile (abridged).
const UPDATE_UID_DOCKERFILE: &str = r#"# syntax=docker/dockerfile:1
# check=skip=InvalidDefaultArgInFrom
ARG BASE_IMAGE
FROM ${BASE_IMAGE}

USER root

ARG REMOTE_USER
ARG NEW_UID
ARG NEW_GID
SHELL ["/bin/sh", "-c"]
RUN eval $(sed -n "s/${REMOTE_USER}:[^:]*:\([^:]*\):\([^:]*\):[^:]*:\([^:]*\).*/OLD_UID=\1;OLD_GID=\2;HOME_FOLDER=\3/p" /etc/passwd); \
	eval $(sed -n "s/\([^:]*\):[^:]*:${NEW_UID}:.*/EXISTING_USER=\1/p" /etc/passwd); \
	if [ -z "$OLD_UID" ]; then \
		echo "Remote user not found in /etc/passwd ($REMOTE_USER)."; \
	elif [ -n "$EXISTING_USER" ]; then \
		echo "User with UID exists ($EXISTING_USER=$NEW_UID)."; \
	else \
		echo "Updating UID $OLD_UID to $NEW_UID in $HOME_FOLDER."; \
		sed -i -e "s/\(${REMOTE_USER}:[^:]*:\)[^:]*:[^:]*/\1${NEW_UID}:${NEW_GID}/" /etc/passwd; \
	fi;

ARG IMAGE_USER
USER $IMAGE_USER
"#;

/// `docker build` (the legacy builder path: no buildx) through the daemon: ARG before
/// FROM, multi-stage with COPY --from, --chown, .dockerignore, a RUN that deletes a lower
/// file (a whiteout in the layer), build args, labels, -q, --target, a Dockerfile from
/// outside the context and from stdin; a failing RUN gives its exit code and leaves no
/// container, build directory or layer behind.
#[test]
fn build_with_the_classic_builder() {
    let Some(d) = Daemon::start() else { return };
    let ctx = d.p.dir.path().join("ctx");
    std::fs::create_dir_all(ctx.join("dir")).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        r#"ARG BASE=busybox
FROM $BASE AS base
ENV GREETING="hello world"
WORKDIR /app
COPY --chown=1:2 hello.txt ./
COPY dir/ /opt/dir/
RUN echo "$GREETING" > greeting && rm /bin/vi
ARG VERSION=1
RUN echo "version $VERSION" > version
FROM base AS final
COPY --from=base /app/greeting /copied
LABEL org.test=yes
EXPOSE 8080
CMD ["sh", "-c", "cat /copied /app/version /app/hello.txt; ls /opt/dir; test -e /bin/vi || echo no-vi; stat -c %u:%g /app/hello.txt"]
"#,
    )
    .unwrap();
    std::fs::write(ctx.join(".dockerignore"), "dir/*.log\n").unwrap();
    std::fs::write(ctx.join("hello.txt"), "hi\n").unwrap();
    std::fs::write(ctx.join("dir/x"), "x\n").unwrap();
    std::fs::write(ctx.join("dir/skip.log"), "no\n").unwrap();
    let ctx_s = ctx.to_str().unwrap();
    let out = d.ok(&[
        "build",
        "-t",
        "built:1",
        "--build-arg",
        "VERSION=7",
        "--label",
        "from=cli",
        ctx_s,
    ]);
    assert!(out.contains("Step 1/14 : ARG BASE=busybox"), "{out}");
    assert!(out.contains(" ---> Running in "), "{out}");
    assert!(out.contains("Successfully tagged built:1"), "{out}");
    assert_eq!(
        d.ok(&["run", "--rm", "built:1"]),
        "hello world\nversion 7\nhi\nx\nno-vi\n1:2\n"
    );
    assert_eq!(
        d.ok(&[
            "image",
            "inspect",
            "-f",
            r#"{{index .Config.Labels "org.test"}} {{index .Config.Labels "from"}} {{.Config.ExposedPorts}} {{.Config.WorkingDir}} {{len .RootFS.Layers}}"#,
            "built:1",
        ])
        .trim(),
        "yes cli map[8080/tcp:{}] /app 6"
    );

    // -q prints the ID only; --target stops at that stage.
    let id = d.ok(&["build", "-q", "--target", "base", ctx_s]);
    let id = id.trim();
    assert!(id.starts_with("sha256:") && id.len() == 71, "{id:?}");
    assert_eq!(d.ok(&["run", "--rm", id, "cat", "version"]), "version 1\n");

    // A Dockerfile from stdin, with no context.
    let o = d.docker_input(
        &["build", "-t", "fromstdin", "-"],
        Some(b"FROM busybox\nCMD [\"echo\", \"from stdin\"]\n"),
    );
    assert_eq!(o.code, 0, "{} {}", o.stdout, o.stderr);
    assert_eq!(d.ok(&["run", "--rm", "fromstdin"]), "from stdin\n");

    // Word rules: global ARGs built from earlier ones, a value with spaces stays one
    // value, quotes with an apostrophe, a symlink source keeps its own name.
    let ctx2 = d.p.dir.path().join("ctx2");
    std::fs::create_dir_all(&ctx2).unwrap();
    std::fs::write(ctx2.join("real.txt"), "r\n").unwrap();
    std::os::unix::fs::symlink("real.txt", ctx2.join("link")).unwrap();
    std::fs::write(
        ctx2.join("Dockerfile"),
        "ARG V=1.2\nARG TAG=v${V}\nFROM busybox\nARG TAG\nARG O=\"--a=1 --b\"\nENV OPTS=$O\nLABEL desc=\"Bob's image\" ver=$TAG\nCOPY link /dst/\nCMD [\"sh\", \"-c\", \"echo \\\"$OPTS\\\"; ls /dst; cat /dst/link\"]\n",
    )
    .unwrap();
    d.ok(&["build", "-t", "words", ctx2.to_str().unwrap()]);
    assert_eq!(d.ok(&["run", "--rm", "words"]), "--a=1 --b\nlink\nr\n");
    assert_eq!(
        d.ok(&[
            "image",
            "inspect",
            "-f",
            r#"{{index .Config.Labels "desc"}}|{{index .Config.Labels "ver"}}"#,
            "words"
        ])
        .trim(),
        "Bob's image|v1.2"
    );

    // The devcontainer CLI's updateUID.Dockerfile pattern (directives, ARG before
    // FROM ${BASE_IMAGE}, SHELL, a tab-indented multi-line RUN using build args, USER $ARG).
    let uid_dir = d.p.dir.path().join("uid");
    std::fs::create_dir_all(&uid_dir).unwrap();
    std::fs::write(uid_dir.join("updateUID.Dockerfile"), UPDATE_UID_DOCKERFILE).unwrap();
    let o = d.ok(&[
        "build",
        "-f",
        uid_dir.join("updateUID.Dockerfile").to_str().unwrap(),
        "-t",
        "vsc-uid",
        "--build-arg",
        "BASE_IMAGE=busybox",
        "--build-arg",
        "REMOTE_USER=nobody",
        "--build-arg",
        "NEW_UID=4242",
        "--build-arg",
        "NEW_GID=4343",
        "--build-arg",
        "IMAGE_USER=nobody",
        uid_dir.to_str().unwrap(),
    ]);
    assert!(
        o.contains("Updating UID 65534 to 4242 in /nonexistent."),
        "{o}"
    );
    assert_eq!(d.ok(&["run", "--rm", "vsc-uid", "id", "-u"]), "4242\n");

    // Failures: a RUN's exit code, a parse error; nothing left behind.
    let images_before = d.ok(&["images", "-aq"]);
    let layers = |d: &Daemon| {
        std::fs::read_dir(d.p.data.join("image/layers"))
            .unwrap()
            .count()
    };
    let layers_before = layers(&d);
    let outside = d.p.dir.path().join("fail.Dockerfile");
    std::fs::write(
        &outside,
        "FROM busybox\nRUN echo before; touch /new; exit 3\n",
    )
    .unwrap();
    let o = d.docker(&["build", "-f", outside.to_str().unwrap(), ctx_s]);
    assert_eq!(o.code, 3, "{} {}", o.stdout, o.stderr);
    assert!(o.stdout.contains("before"), "{}", o.stdout);
    assert!(
        format!("{}{}", o.stdout, o.stderr).contains(
            "The command '/bin/sh -c echo before; touch /new; exit 3' returned a non-zero code: 3"
        ),
        "{} {}",
        o.stdout,
        o.stderr
    );
    std::fs::write(&outside, "FROM busybox\nFOO bar\n").unwrap();
    let o = d.docker(&["build", "-f", outside.to_str().unwrap(), ctx_s]);
    assert_eq!(o.code, 1);
    assert!(
        o.stderr.contains("unknown instruction: FOO"),
        "{}",
        o.stderr
    );
    assert_eq!(d.ok(&["ps", "-aq"]), "");
    assert_eq!(d.ok(&["images", "-aq"]), images_before);
    assert_eq!(layers(&d), layers_before);
    let leftovers = std::fs::read_dir(d.p.data.join("build"))
        .map(|r| r.count())
        .unwrap_or(0);
    assert_eq!(leftovers, 0);

    // `docker commit`: the writable layer (a deletion included) on the container's image,
    // with --change and the message; an untagged commit lists as <none>.
    d.ok(&[
        "run",
        "-d",
        "--name",
        "tocommit",
        "busybox",
        "sh",
        "-c",
        "echo data > /f; rm /bin/vi; exec sleep 100",
    ]);
    assert!(poll_until(Duration::from_secs(5), || d
        .docker(&["exec", "tocommit", "cat", "/f"])
        .stdout
        == "data\n"));
    let id = d.ok(&[
        "commit",
        "-m",
        "msg",
        "-c",
        r#"CMD ["cat", "/f"]"#,
        "tocommit",
        "committed:1",
    ]);
    assert!(id.trim().starts_with("sha256:"), "{id}");
    assert_eq!(d.ok(&["run", "--rm", "committed:1"]), "data\n");
    assert_eq!(
        d.docker(&["run", "--rm", "committed:1", "ls", "/bin/vi"])
            .code,
        1
    );
    assert_eq!(
        d.ok(&["image", "inspect", "-f", "{{.Comment}}", "committed:1"])
            .trim(),
        "msg"
    );
    let o = d.docker(&["commit", "-c", "RUN x", "tocommit"]);
    assert!(
        o.stderr.contains("run is not a valid change command"),
        "{}",
        o.stderr
    );
    d.ok(&["commit", "tocommit"]);
    assert!(d.ok(&["images"]).contains("<none>"));
    d.ok(&["rm", "-f", "tocommit"]);
}

#[test]
fn volumes_prunes_and_system_df() {
    let Some(d) = Daemon::start() else { return };
    d.ok(&["volume", "create", "--label", "k=v", "data"]);
    if let Some(s) = sample("volume_create.txt") {
        let (st, ours) = d.json("POST", "/volumes/create", r#"{"Name":"shape"}"#);
        assert_eq!(st, 201);
        assert_has_keys(&ours, &s, "volume create", &[]);
        d.ok(&["volume", "rm", "shape"]);
    }
    d.ok(&[
        "run",
        "--rm",
        "-v",
        "data:/data",
        "busybox",
        "sh",
        "-c",
        "echo hi > /data/x",
    ]);
    assert_eq!(
        d.ok(&[
            "run",
            "--rm",
            "-v",
            "data:/data",
            "busybox",
            "cat",
            "/data/x"
        ]),
        "hi\n"
    );
    assert_eq!(d.ok(&["volume", "ls", "-q"]).trim(), "data");
    assert_eq!(
        d.ok(&["volume", "ls", "-q", "--filter", "label=k=v"])
            .trim(),
        "data"
    );
    let v: Value = serde_json::from_str(&d.ok(&["volume", "inspect", "data"])).unwrap();
    assert_eq!(v[0]["Driver"], "local");
    assert!(chrono::DateTime::parse_from_rfc3339(v[0]["CreatedAt"].as_str().unwrap()).is_ok());
    let o = d.docker(&["volume", "inspect", "nope"]);
    assert_eq!(o.code, 1);
    d.ok(&[
        "create",
        "--name",
        "user",
        "-v",
        "data:/data",
        "busybox",
        "true",
    ]);
    let o = d.docker(&["volume", "rm", "data"]);
    assert_eq!(o.code, 1, "a volume in use is not removed");
    assert!(d.ok(&["system", "df"]).contains("Local Volumes"));
    let user = d.p.full_id("user");
    let o = d.ok(&["container", "prune", "-f"]);
    assert!(o.contains(&user), "{o}");
    assert_eq!(d.ok(&["ps", "-aq"]).trim(), "");
    d.ok(&["volume", "prune", "-af"]);
    assert_eq!(d.ok(&["volume", "ls", "-q"]).trim(), "");
    d.ok(&["image", "prune", "-f"]);
    assert!(
        d.ok(&["images", "-q"]).trim().len() >= 12,
        "busybox is not dangling"
    );
}

#[test]
fn images_load_tag_rmi_inspect_and_pull() {
    let Some(d) = Daemon::start() else { return };
    let oci = d.p.fixtures.join("busybox-oci.tar");
    if oci.exists() {
        let o = d.ok(&["load", "-i", oci.to_str().unwrap()]);
        assert!(o.contains("Loaded image"), "{o}");
    }
    d.ok(&["tag", "busybox", "example.com/team/bb:v1"]);
    assert!(
        d.ok(&["images", "--format", "{{.Repository}}:{{.Tag}}"])
            .contains("example.com/team/bb:v1")
    );
    // Names with a registry host and slashes.
    let v: Value =
        serde_json::from_str(&d.ok(&["image", "inspect", "example.com/team/bb:v1"])).unwrap();
    assert!(
        v[0].get("ContainerConfig").is_some(),
        "docker-compose v1 needs ContainerConfig"
    );
    assert!(v[0]["Id"].as_str().unwrap().starts_with("sha256:"));
    if let Some(s) = sample("image_inspect.txt") {
        let s = if s.is_array() { s[0].clone() } else { s };
        assert_has_keys(
            &v[0],
            &s,
            "image inspect",
            &["VirtualSize", "Container", "DockerVersion"],
        );
    }
    let o = d.ok(&["rmi", "example.com/team/bb:v1"]);
    assert!(o.contains("Untagged: example.com/team/bb:v1"), "{o}");
    let o = d.docker(&["rmi", "nosuch:latest"]);
    assert_eq!(o.code, 1);
    assert!(o.stderr.contains("No such image"), "{}", o.stderr);
    // A garbage archive: a clear error, nothing stored.
    let junk = d.p.dir.path().join("junk.tar");
    std::fs::write(&junk, b"this is not a tar").unwrap();
    let before = d.ok(&["images", "-q"]);
    let o = d.docker(&["load", "-i", junk.to_str().unwrap()]);
    assert_eq!(o.code, 1);
    assert_eq!(d.ok(&["images", "-q"]), before);
    // save, then load into a fresh store through another daemon.
    let saved = d.p.dir.path().join("saved.tar");
    d.ok(&["save", "-o", saved.to_str().unwrap(), "busybox"]);
    let Some(d2) = Daemon::start() else { return };
    d2.ok(&["rmi", "busybox"]);
    let o = d2.ok(&["load", "-i", saved.to_str().unwrap()]);
    assert!(o.contains("Loaded image: busybox:latest"), "{o}");
    assert_eq!(
        d2.ok(&["run", "--rm", "busybox", "echo", "reloaded"]),
        "reloaded\n"
    );
    let o = d.docker(&["save", "-o", saved.to_str().unwrap(), "nosuch"]);
    assert_eq!(o.code, 1);
    // Pull from the local registry (pushed with skopeo, as the pull tests do).
    let Some(reg) = std::env::var("PELAGOS_TEST_REGISTRY")
        .ok()
        .filter(|r| !r.is_empty())
    else {
        println!("skipped pull: PELAGOS_TEST_REGISTRY is not set");
        return;
    };
    let name = format!("{reg}/api-test/busybox:pulled");
    let st = Command::new("skopeo")
        .args(["copy", "--dest-tls-verify=false"])
        .arg(format!(
            "docker-archive:{}",
            d.p.fixtures.join("busybox.tar").display()
        ))
        .arg(format!("docker://{name}"))
        .output()
        .expect("skopeo");
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    let o = d.ok(&["pull", &name]);
    assert!(o.contains("Digest: sha256:"), "{o}");
    assert_eq!(d.ok(&["run", "--rm", &name, "echo", "pulled"]), "pulled\n");
    // Push through the API, then pull it back in the other daemon. (An image that was
    // loaded and then pulled again cannot be pushed: registry-crate bug, reported; so
    // push one that was only loaded.)
    let cfg = d.p.fixtures.join("config.tar");
    d.ok(&["load", "-i", cfg.to_str().unwrap()]);
    let pushed = format!("{reg}/api-test/pushed:v1");
    d.ok(&["tag", "pelagos-test/config", &pushed]);
    let o = d.ok(&["push", &pushed]);
    assert!(o.contains("digest: sha256:"), "{o}");
    let o = d2.ok(&["pull", &pushed]);
    assert!(o.contains("Downloaded newer image"), "{o}");
    let o = d.docker(&["pull", &format!("{reg}/api-test/nosuch:latest")]);
    assert_eq!(o.code, 1);
    assert!(o.stderr.contains("not found"), "{}", o.stderr);
}

#[test]
fn bad_input_gets_docker_status_codes_and_creates_nothing() {
    let Some(d) = Daemon::start() else { return };
    let create = |body: &str| d.json("POST", "/containers/create", body);
    // Malformed JSON, wrong types, missing image, unknown image, bad names.
    let (st, v) = create("{not json");
    assert_eq!(st, 400, "{v}");
    assert!(v["message"].is_string());
    let (st, _) = create(r#"{"Image":"busybox","Cmd":"should-be-a-list","Tty":"yes"}"#);
    assert_eq!(st, 400);
    let (st, _) = create(r#"{"Cmd":["true"]}"#);
    assert_eq!(st, 400);
    // Options the engine cannot honour are refused by name, not dropped; values that ask
    // for what it does anyway pass.
    for (flag, what) in [
        (&["--pid", "host"][..], "PidMode host"),
        (&["--ipc", "host"][..], "IpcMode host"),
        (&["--uts", "host"][..], "UTSMode host"),
        (&["--device", "/dev/null"][..], "Devices"),
        (&["--volumes-from", "other"][..], "VolumesFrom"),
    ] {
        let mut args = vec!["create"];
        args.extend_from_slice(flag);
        args.extend_from_slice(&["busybox", "true"]);
        let o = d.docker(&args);
        assert!(
            o.code != 0 && o.stderr.contains(what),
            "{what}: {}",
            o.stderr
        );
    }
    let o = d.docker(&[
        "run", "--rm", "--ipc", "private", "--userns", "host", "busybox", "true",
    ]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert_eq!(d.ok(&["ps", "-aq"]).trim(), "", "nothing was created");
    let (st, v) = create(r#"{"Image":"nosuch:latest","Cmd":["true"]}"#);
    assert_eq!(st, 404);
    assert_eq!(v["message"], "No such image: nosuch:latest");
    let (st, _) = d.json(
        "POST",
        "/containers/create?name=bad%2Fname",
        r#"{"Image":"busybox","Cmd":["true"]}"#,
    );
    assert_eq!(st, 400);
    // Unknown fields and query keys are ignored.
    let (st, v) = d.json(
        "POST",
        "/containers/create?name=ok1&platform=&Cmd=x",
        r#"{"Image":"busybox","Cmd":["true"],"OutputCapacity":null,"GwPriority":1,"HostConfig":{"DNSNames":["x"]}}"#,
    );
    assert_eq!(st, 201, "{v}");
    let (st, v) = d.json(
        "POST",
        "/containers/create?name=ok1",
        r#"{"Image":"busybox","Cmd":["true"]}"#,
    );
    assert_eq!(st, 409, "{v}");
    // A huge body is refused without being buffered whole.
    let huge = format!(r#"{{"Image":"busybox","Cmd":["{}"]}}"#, "x".repeat(8 << 20));
    let (st, _, _) = d.http("POST", "/containers/create", huge.as_bytes());
    assert!(st == 400 || st == 413, "huge body: {st}");
    // Unknown IDs everywhere: 404 with Docker's message.
    let (st, v) = d.json("GET", "/containers/nope/json", "");
    assert_eq!(
        (st, v["message"].as_str()),
        (404, Some("No such container: nope"))
    );
    for (m, p) in [
        ("POST", "/containers/nope/start"),
        ("POST", "/containers/nope/stop"),
        ("POST", "/containers/nope/kill"),
        ("POST", "/containers/nope/wait"),
        ("DELETE", "/containers/nope"),
        ("GET", "/containers/nope/logs?stdout=1"),
        ("GET", "/images/nope/json"),
        ("GET", "/volumes/nope"),
        ("POST", "/exec/nope/start"),
    ] {
        let (st, _) = d.json(m, p, "");
        assert_eq!(st, 404, "{m} {p}");
    }
    // Not a swarm manager; no plugins; no BuildKit session yet.
    let (st, v) = d.json("GET", "/swarm", "");
    assert_eq!(st, 503);
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("not a swarm manager")
    );
    assert_eq!(d.json("POST", "/swarm/leave", "").0, 503);
    assert_eq!(d.json("GET", "/plugins/foo/json", "").0, 404);
    assert_eq!(d.json("POST", "/session", "").0, 404);
    // Bad parameters.
    assert_eq!(d.json("GET", "/containers/json?filters=%7Bbad", "").0, 400);
    assert_eq!(d.json("GET", "/containers/json?limit=abc", "").0, 400);
    assert_eq!(
        d.json("POST", "/containers/ok1/wait?condition=sometimes", "")
            .0,
        400
    );
    // Only ok1 was created, and the daemon still serves.
    assert_eq!(d.ok(&["ps", "-a", "--format", "{{.Names}}"]).trim(), "ok1");
    assert!(d.pings());
}

#[test]
fn networks_aliases_ports_connect_and_errors() {
    let Some(d) = Daemon::start() else { return };
    let id = d.ok(&["network", "create", "--label", "t=1", "front"]);
    let id = id.trim();
    let o = d.docker(&["network", "create", "front"]);
    assert_eq!(o.code, 1);
    assert!(
        o.stderr.contains("network with name front already exists"),
        "{o:?}"
    );
    let (status, _, _) = d.http(
        "POST",
        "/v1.47/networks/create",
        br#"{"Name":"front","CheckDuplicate":true}"#,
    );
    assert_eq!(status, 409);
    let ls = d.ok(&["network", "ls", "--format", "{{.Name}} {{.Driver}}"]);
    for want in ["bridge bridge", "front bridge", "host host", "none null"] {
        assert!(ls.lines().any(|l| l == want), "{want} in {ls}");
    }
    let custom = d.ok(&["network", "ls", "-q", "--filter", "type=custom"]);
    assert_eq!(custom.trim(), &id[..12]);

    // A server on `front` with an alias and a port published on loopback.
    d.ok(&[
        "run",
        "-d",
        "--name",
        "web",
        "--network",
        "front",
        "--network-alias",
        "www",
        "-p",
        "127.0.0.1::8080",
        "busybox",
        "sh",
        "-c",
        "echo hello > /tmp/i; exec httpd -f -p 8080 -h /tmp",
    ]);
    let port = d.ok(&["port", "web", "8080"]);
    let hostport = port.trim().rsplit(':').next().unwrap().to_string();
    assert!(port.starts_with("127.0.0.1:"), "{port}");
    let ps = d.ok(&["ps", "--format", "{{.Ports}}", "--filter", "network=front"]);
    assert_eq!(ps.trim(), format!("127.0.0.1:{hostport}->8080/tcp"));
    let body = poll_http_get(&format!("127.0.0.1:{hostport}"), "/i");
    assert_eq!(body.as_deref(), Some("hello\n"));
    // By name and by alias from another container on the network.
    let o = d.ok(&[
        "run",
        "--rm",
        "--network",
        "front",
        "busybox",
        "sh",
        "-c",
        "wget -qO- http://www:8080/i && wget -qO- http://web:8080/i",
    ]);
    assert_eq!(o, "hello\nhello\n");
    // Not from the default bridge (isolation): the name does not resolve there. (No
    // `wget -T`: Debian's busybox-static wget crashes with it, which passed for a failure.)
    let o = d.docker(&[
        "run",
        "--rm",
        "busybox",
        "wget",
        "-qO-",
        "http://www:8080/i",
    ]);
    assert_eq!(o.code, 1, "{o:?}");
    assert!(o.stderr.contains("bad address"), "{o:?}");
    // Two networks in one create (the CLI sends both EndpointsConfig entries at once),
    // each with its own alias, each resolvable from its own network.
    d.ok(&["network", "create", "side"]);
    d.ok(&[
        "run",
        "-d",
        "--name",
        "multi",
        "--network",
        "name=front,alias=fa",
        "--network",
        "name=side,alias=sa",
        "busybox",
        "sh",
        "-c",
        "echo m > /tmp/i; exec httpd -f -p 8080 -h /tmp",
    ]);
    let nets = d.ok(&[
        "inspect",
        "-f",
        "{{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{end}}",
        "multi",
    ]);
    assert_eq!(nets.trim(), "front side");
    // (Polled: httpd may still be starting.)
    for (net, alias) in [("front", "fa"), ("side", "sa")] {
        let url = format!("http://{alias}:8080/i");
        let fetch = || {
            d.docker(&[
                "run",
                "--rm",
                "--network",
                net,
                "busybox",
                "wget",
                "-qO-",
                &url,
            ])
        };
        assert!(
            poll_until(Duration::from_secs(10), || fetch().stdout == "m\n"),
            "{net}: {:?}",
            fetch()
        );
    }
    d.ok(&["rm", "-f", "multi"]);
    d.ok(&["network", "rm", "side"]);

    // Inspect shapes against dockerd's.
    let (status, _, body) = d.http("GET", "/v1.47/networks/front", b"");
    assert_eq!(status, 200);
    let net: Value = serde_json::from_slice(&body).unwrap();
    if let Some(reference) = sample("network_inspect_bridge.txt") {
        assert_has_keys(&net, &reference, "network inspect", &[]);
    }
    assert_eq!(net["Labels"]["t"], "1");
    let containers = net["Containers"].as_object().unwrap();
    assert_eq!(containers.len(), 1);
    let ep = containers.values().next().unwrap();
    assert_eq!(ep["Name"], "web");
    let ins: Value = serde_json::from_str(&d.ok(&["inspect", "web"])).unwrap();
    let ports = &ins[0]["NetworkSettings"]["Ports"]["8080/tcp"][0];
    assert_eq!(ports["HostIp"], "127.0.0.1");
    assert_eq!(ports["HostPort"], hostport.as_str());
    let front = &ins[0]["NetworkSettings"]["Networks"]["front"];
    assert_eq!(front["NetworkID"], id);
    assert!(
        front["Aliases"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a == "www")
    );

    // Connect and disconnect while running.
    d.ok(&["network", "create", "back"]);
    d.ok(&["network", "connect", "--alias", "bb", "back", "web"]);
    let o = d.ok(&[
        "run",
        "--rm",
        "--network",
        "back",
        "busybox",
        "wget",
        "-qO-",
        "http://bb:8080/i",
    ]);
    assert_eq!(o, "hello\n");
    let o = d.docker(&["network", "connect", "back", "web"]);
    assert!(o.stderr.contains("already exists in network back"), "{o:?}");
    d.ok(&["network", "disconnect", "back", "web"]);
    let nets = d.ok(&[
        "inspect",
        "-f",
        "{{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{end}}",
        "web",
    ]);
    assert_eq!(nets.trim(), "front");

    // Docker's refusals: 403 for pre-defined and in-use networks, 404 unknown.
    let (status, _, body) = d.http("DELETE", "/v1.47/networks/bridge", b"");
    assert_eq!(status, 403, "{}", String::from_utf8_lossy(&body));
    let (status, _, body) = d.http("DELETE", "/v1.47/networks/front", b"");
    assert_eq!(status, 403, "{}", String::from_utf8_lossy(&body));
    assert!(String::from_utf8_lossy(&body).contains("has active endpoints"));
    let (status, _, _) = d.http("GET", "/v1.47/networks/nosuch", b"");
    assert_eq!(status, 404);
    let (status, _, _) = d.http(
        "POST",
        "/v1.47/networks/create",
        br#"{"Name":"bad","IPAM":{"Config":[{"Subnet":"10.1.0.0/33"}]}}"#,
    );
    assert_eq!(status, 400);

    // Prune removes unused networks only; rm of the rest.
    d.ok(&["rm", "-f", "web"]);
    let pruned = d.ok(&["network", "prune", "-f"]);
    assert!(
        pruned.contains("back") && pruned.contains("front"),
        "{pruned}"
    );
    let left = d.ok(&["network", "ls", "-q", "--filter", "type=custom"]);
    assert!(left.trim().is_empty(), "{left}");
}

/// This harness's nftables table (named after its default bridge, `pl<tag>` ->
/// `pelagos_<tag>`), if it exists.
fn nft_tables_of_root(p: &Pelagos) -> Vec<String> {
    let tag = format!("pelagos:{}", p.data.display());
    let bridges: Vec<String> = std::fs::read_dir("/sys/class/net")
        .unwrap()
        .flatten()
        .filter(|e| {
            std::fs::read_to_string(e.path().join("ifalias")).is_ok_and(|a| a.trim() == tag)
        })
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("pl"))
        .collect();
    let listed = Command::new("nft")
        .args(["list", "tables"])
        .output()
        .unwrap();
    let listed = String::from_utf8_lossy(&listed.stdout).into_owned();
    bridges
        .iter()
        .map(|b| format!("pelagos_{}", &b[2..]))
        .filter(|t| listed.lines().any(|l| l == format!("table ip {t}")))
        .collect()
}

/// GET http://addr/path with a few retries while a server comes up; the body or None.
fn poll_http_get(addr: &str, path: &str) -> Option<String> {
    let mut out = None;
    poll_until(Duration::from_secs(5), || {
        let Ok(mut s) = std::net::TcpStream::connect(addr) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
        let req = format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n");
        if s.write_all(req.as_bytes()).is_err() {
            return false;
        }
        let mut buf = String::new();
        let _ = s.read_to_string(&mut buf);
        match buf.split_once("\r\n\r\n") {
            Some((head, body)) if head.contains(" 200 ") => {
                out = Some(body.to_string());
                true
            }
            _ => false,
        }
    });
    out
}

/// Concurrent full lifecycles through the API: every `true` exits 0 (a monitor that
/// finished between a state read and its liveness check once read as a crash, 255), and
/// nothing is left.
#[test]
fn concurrent_lifecycles_all_exit_zero() {
    let Some(d) = Daemon::start() else { return };
    let failures = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..15 {
                    let (st, v) = d.json(
                        "POST",
                        "/v1.47/containers/create",
                        r#"{"Image":"busybox","Cmd":["true"]}"#,
                    );
                    assert_eq!(st, 201, "{v}");
                    let id = v["Id"].as_str().unwrap().to_string();
                    let (st, _, b) = d.http("POST", &format!("/v1.47/containers/{id}/start"), b"");
                    assert_eq!(st, 204, "{}", String::from_utf8_lossy(&b));
                    let (_, w) = d.json("POST", &format!("/v1.47/containers/{id}/wait"), "");
                    if w["StatusCode"] != 0 {
                        failures.lock().unwrap().push(format!("{id}: {w}"));
                    }
                    let (st, _, _) = d.http("DELETE", &format!("/v1.47/containers/{id}"), b"");
                    assert_eq!(st, 204);
                }
            });
        }
    });
    let f = failures.into_inner().unwrap();
    assert!(f.is_empty(), "{f:#?}");
    assert_eq!(d.ok(&["ps", "-aq"]).trim(), "");
}

/// `docker diff` and `docker export` on a running and on a stopped container; the export
/// mount is gone afterwards.
#[test]
fn diff_and_export() {
    let Some(d) = Daemon::start() else { return };
    d.ok(&[
        "run", "-d", "--name", "dx", "busybox", "sh", "-c",
        "echo x > /tmp/new; rm /bin/ls; mkdir -p /var/a; echo y >> /etc/passwd; touch /tmp/ready; sleep 60",
    ]);
    assert!(poll_until(Duration::from_secs(10), || d
        .docker(&["exec", "dx", "test", "-f", "/tmp/ready"])
        .code
        == 0));
    let want = "C /bin\nD /bin/ls\nC /etc\nC /etc/passwd\nC /tmp\nA /tmp/new\nA /tmp/ready\nC /var\nA /var/a\n";
    assert_eq!(d.ok(&["diff", "dx"]), want);
    let (st, v) = d.json("GET", "/v1.47/containers/dx/changes", "");
    assert_eq!(st, 200);
    assert_eq!(
        v[1],
        serde_json::json!({"Path": "/bin/ls", "Kind": 2}),
        "{v}"
    );
    let list = |d: &Daemon| {
        let out = d.docker_cmd(&["export", "dx"]).output().unwrap();
        assert!(out.status.success());
        let mut names: Vec<String> = tar::Archive::new(&out.stdout[..])
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    for stopped in [false, true] {
        if stopped {
            d.ok(&["stop", "-t", "0", "dx"]);
            assert_eq!(d.ok(&["diff", "dx"]), want);
        }
        let names = list(&d);
        assert!(names.iter().any(|n| n == "bin/busybox"), "{names:?}");
        assert!(names.iter().any(|n| n == "tmp/new"), "{names:?}");
        assert!(!names.iter().any(|n| n == "bin/ls"), "{names:?}");
        // The runtime's mounts are not exported: /proc is the image's empty directory.
        assert!(
            !names.iter().any(|n| n.starts_with("proc/") && n.len() > 5),
            "{names:?}"
        );
    }
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains("/export-"), "export view left mounted");
    d.ok(&["rm", "-f", "dx"]);
}

/// The value of a cgroup control file for process `pid` (v1 hierarchy of `controller`,
/// else the v2 file `v2_file`).
fn cgroup_value(pid: &str, controller: &str, v1_file: &str, v2_file: &str) -> String {
    let own = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    for l in own.lines() {
        let mut f = l.splitn(3, ':');
        let (_, ctrls, path) = (f.next(), f.next().unwrap_or(""), f.next().unwrap_or(""));
        if ctrls.split(',').any(|c| c == controller) {
            let p = format!("/sys/fs/cgroup/{controller}{path}/{v1_file}");
            if let Ok(v) = std::fs::read_to_string(&p) {
                return v.trim().to_string();
            }
        }
    }
    let path = own
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .unwrap_or("");
    std::fs::read_to_string(format!("/sys/fs/cgroup{path}/{v2_file}"))
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// `docker update` changes the live cgroup and what inspect shows; bad values are 400.
#[test]
fn update_resources_of_a_running_container() {
    let Some(d) = Daemon::start() else { return };
    d.ok(&[
        "run", "-d", "--name", "up", "-m", "32m", "busybox", "sleep", "60",
    ]);
    let pid = d
        .ok(&["inspect", "-f", "{{.State.Pid}}", "up"])
        .trim()
        .to_string();
    let mem = || cgroup_value(&pid, "memory", "memory.limit_in_bytes", "memory.max");
    let pids = || cgroup_value(&pid, "pids", "pids.max", "pids.max");
    assert_eq!(mem(), (32u64 << 20).to_string());
    d.ok(&[
        "update",
        "-m",
        "64m",
        "--memory-swap",
        "128m",
        "--pids-limit",
        "50",
        "--restart",
        "on-failure:3",
        "up",
    ]);
    assert_eq!(mem(), (64u64 << 20).to_string());
    assert_eq!(pids(), "50");
    assert_eq!(
        d.ok(&[
            "inspect",
            "-f",
            "{{.HostConfig.Memory}} {{.HostConfig.PidsLimit}} {{.HostConfig.RestartPolicy.Name}}",
            "up"
        ])
        .trim(),
        format!("{} 50 on-failure", 64u64 << 20)
    );
    let o = d.docker(&["update", "-m", "1m", "up"]);
    assert_ne!(o.code, 0);
    assert!(
        o.stderr.contains("Minimum memory limit allowed is 6MB"),
        "{o:?}"
    );
    let (st, _) = d.json("POST", "/v1.47/containers/nosuch/update", "{}");
    assert_eq!(st, 404);
    let (st, _) = d.json(
        "POST",
        "/v1.47/containers/up/update",
        r#"{"Memory":"lots"}"#,
    );
    assert_eq!(st, 400);
    // A crash (SIGKILL from outside, not a user stop) restarts it under the policy set by
    // `update`, with the limits `update` set.
    // SAFETY: signalling the container's init, a process this test's daemon started.
    unsafe { libc::kill(pid.parse::<i32>().unwrap(), libc::SIGKILL) };
    let inspect = |f: &str| d.ok(&["inspect", "-f", f, "up"]).trim().to_string();
    assert!(
        poll_until(Duration::from_secs(5), || inspect(
            "{{.RestartCount}} {{.State.Status}}"
        ) == "1 running"),
        "{}",
        inspect("{{.RestartCount}} {{.State.Status}}")
    );
    let new_pid = inspect("{{.State.Pid}}");
    assert_ne!(new_pid, pid);
    assert_eq!(
        cgroup_value(&new_pid, "memory", "memory.limit_in_bytes", "memory.max"),
        (64u64 << 20).to_string()
    );
    assert_eq!(cgroup_value(&new_pid, "pids", "pids.max", "pids.max"), "50");
    d.ok(&["rm", "-f", "up"]);
}

/// Healthchecks run by the container's own runner: starting, unhealthy after the retries,
/// healthy once the probe passes; `ps` status and the `health` filter follow; a probe
/// past its timeout is a failure with Docker's message; the runner ends with the container.
#[test]
fn healthchecks_flip_between_unhealthy_and_healthy() {
    let Some(d) = Daemon::start() else { return };
    let since = (chrono::Utc::now().timestamp() - 1).to_string();
    d.ok(&[
        "run",
        "-d",
        "--name",
        "hc",
        "--health-cmd",
        "echo probe-out; test -f /tmp/ok",
        "--health-interval",
        "200ms",
        "--health-retries",
        "2",
        "--health-timeout",
        "2s",
        "busybox",
        "sleep",
        "60",
    ]);
    let status = |d: &Daemon| {
        d.ok(&["inspect", "-f", "{{.State.Health.Status}}", "hc"])
            .trim()
            .to_string()
    };
    assert!(poll_until(Duration::from_secs(10), || status(&d) == "unhealthy"));
    assert!(
        d.ok(&["ps", "--format", "{{.Status}}", "--filter", "name=hc"])
            .contains("(unhealthy)")
    );
    assert_eq!(
        d.ok(&["ps", "-q", "--filter", "health=unhealthy"])
            .lines()
            .count(),
        1
    );
    d.ok(&["exec", "hc", "touch", "/tmp/ok"]);
    assert!(poll_until(Duration::from_secs(10), || status(&d) == "healthy"));
    let h: Value =
        serde_json::from_str(&d.ok(&["inspect", "-f", "{{json .State.Health}}", "hc"])).unwrap();
    assert_eq!(h["FailingStreak"], 0, "{h}");
    let log = h["Log"].as_array().unwrap();
    assert!(!log.is_empty() && log.len() <= 5, "{h}");
    let last = log.last().unwrap();
    assert_eq!(last["ExitCode"], 0, "{h}");
    assert_eq!(last["Output"], "probe-out\n", "{h}");
    assert_eq!(
        d.ok(&["ps", "-q", "--filter", "health=healthy"])
            .lines()
            .count(),
        1
    );
    assert_eq!(
        d.ok(&["ps", "-q", "--filter", "health=unhealthy"])
            .lines()
            .count(),
        0
    );
    // Each change of status is an event, in order.
    let events = replay(
        &d,
        &since,
        &["--filter", "container=hc", "--format", "{{.Action}}"],
    );
    let health: Vec<&str> = events
        .lines()
        .filter(|l| l.starts_with("health_status"))
        .collect();
    assert_eq!(
        health,
        ["health_status: unhealthy", "health_status: healthy"],
        "{events}"
    );
    // A probe that outlives its timeout.
    d.ok(&[
        "run",
        "-d",
        "--name",
        "slow",
        "--health-cmd",
        "sleep 5",
        "--health-interval",
        "200ms",
        "--health-timeout",
        "300ms",
        "--health-retries",
        "1",
        "busybox",
        "sleep",
        "60",
    ]);
    let slow = |d: &Daemon| d.ok(&["inspect", "-f", "{{json .State.Health}}", "slow"]);
    assert!(poll_until(Duration::from_secs(10), || slow(&d).contains("unhealthy")));
    let h: Value = serde_json::from_str(&slow(&d)).unwrap();
    assert_eq!(h["Log"][0]["ExitCode"], -1, "{h}");
    assert!(
        h["Log"][0]["Output"]
            .as_str()
            .unwrap()
            .contains("exceeded timeout"),
        "{h}"
    );
    // No health for a container without one; the runners end with their containers.
    d.ok(&["run", "-d", "--name", "plain", "busybox", "sleep", "60"]);
    assert_eq!(
        d.ok(&["ps", "-q", "--filter", "health=none"])
            .lines()
            .count(),
        1
    );
    d.ok(&["rm", "-f", "hc", "slow", "plain"]);
    let runners = || {
        common::all_pids()
            .into_iter()
            .filter(|p| {
                common::proc_strings(*p, "cmdline")
                    .iter()
                    .any(|a| a == "__health")
                    && common::proc_strings(*p, "cmdline")
                        .iter()
                        .any(|a| a == &d.p.data.display().to_string())
            })
            .count()
    };
    assert!(poll_until(Duration::from_secs(5), || runners() == 0));
}

/// A client that hangs up while a large response is still being written costs the daemon
/// an EPIPE, not its life (the CLI process restores SIGPIPE's default; the daemon must not
/// die of it, as it did when `docker build` stopped reading at its error line).
#[test]
fn a_client_hanging_up_mid_response_leaves_the_daemon_serving() {
    let Some(d) = Daemon::start() else { return };
    for _ in 0..5 {
        let mut s = UnixStream::connect(&d.sock).unwrap();
        s.write_all(b"GET /v1.47/images/get?names=busybox HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let mut head = [0u8; 64];
        let n = s.read(&mut head).unwrap();
        assert!(head[..n].starts_with(b"HTTP/1.1 200"));
        drop(s);
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(d.pings(), "the daemon died");
    let mut d = d;
    assert!(
        d.child
            .as_mut()
            .is_some_and(|c| c.try_wait().unwrap().is_none()),
        "the daemon exited"
    );
}

/// The parent PID of a process, from /proc.
fn ppid_of(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The field after the command name in parentheses, which may itself hold spaces.
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Whether a process has exited (gone, or a zombie nobody reaped yet).
fn gone(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit_once(')')
                .is_some_and(|(_, r)| r.trim_start().starts_with('Z'))
        })
        .unwrap_or(true)
}

/// The daemon's monitor spawner: its child running `__spawner`.
fn spawner_of(daemon: i32) -> Option<i32> {
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: i32 = e.file_name().to_str()?.parse().ok()?;
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        (ppid_of(pid) == Some(daemon) && cmdline.windows(9).any(|w| w == b"__spawner"))
            .then_some(pid)
    })
}

#[test]
fn monitors_come_from_a_spawner_that_is_replaced_and_ends_with_the_daemon() {
    let Some(mut d) = Daemon::start() else { return };
    let daemon = d.child.as_ref().map(|c| c.id() as i32).unwrap();
    let mut spawner = None;
    assert!(
        poll_until(Duration::from_secs(10), || {
            spawner = spawner_of(daemon);
            spawner.is_some()
        }),
        "the daemon has no monitor spawner"
    );
    let spawner = spawner.unwrap();
    // A container's monitor is a child of the spawner, not an exec'd process.
    d.ok(&["run", "-d", "--name", "kept", "busybox", "sleep", "600"]);
    let init: i32 = d
        .ok(&["inspect", "-f", "{{.State.Pid}}", "kept"])
        .trim()
        .parse()
        .unwrap();
    let monitor = ppid_of(init).unwrap();
    assert_eq!(ppid_of(monitor), Some(spawner), "monitor {monitor}");
    let comm = std::fs::read_to_string(format!("/proc/{monitor}/cmdline")).unwrap();
    assert!(comm.contains("__spawner"), "monitor cmdline {comm:?}");
    let name = std::fs::read_to_string(format!("/proc/{monitor}/comm")).unwrap();
    assert_eq!(name.trim_end(), "pelagos-monitor");
    // `docker exec` helpers come from it too, and their exit codes still come through.
    let exec = d
        .docker_cmd(&["exec", "kept", "sh", "-c", "sleep 2; exit 5"])
        .spawn()
        .unwrap();
    let mut helper = None;
    assert!(
        poll_until(Duration::from_secs(10), || {
            helper = std::fs::read_dir("/proc").unwrap().flatten().find_map(|e| {
                let pid: i32 = e.file_name().to_str()?.parse().ok()?;
                let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
                (comm.trim_end() == "pelagos-exec" && ppid_of(pid) == Some(spawner)).then_some(pid)
            });
            helper.is_some()
        }),
        "no exec helper forked by the spawner"
    );
    let status = exec.wait_with_output().unwrap().status;
    assert_eq!(status.code(), Some(5));
    // A killed spawner takes no container with it, and the next start gets a new one.
    // SAFETY: signalling a process of this test's daemon.
    unsafe { libc::kill(spawner, libc::SIGKILL) };
    assert!(poll_until(Duration::from_secs(5), || gone(spawner)));
    assert_eq!(
        d.ok(&["run", "--rm", "busybox", "echo", "again"]).trim(),
        "again"
    );
    let second = spawner_of(daemon).expect("a new spawner");
    assert_ne!(second, spawner);
    assert_eq!(
        d.ok(&["inspect", "-f", "{{.State.Status}}", "kept"]).trim(),
        "running"
    );
    d.ok(&["rm", "-f", "kept"]);
    // The spawner ends with the daemon.
    d.stop();
    assert!(
        poll_until(Duration::from_secs(5), || gone(second)),
        "the spawner outlived the daemon"
    );
}

/// The network namespaces held by the daemon's parked `netns-pool` threads.
fn pooled_netns(daemon: i32) -> Vec<String> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{daemon}/task")) else {
        return vec![];
    };
    tasks
        .flatten()
        .filter(|t| {
            std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.trim() == "netns-pool")
        })
        .filter_map(|t| std::fs::read_link(t.path().join("ns/net")).ok())
        .map(|l| l.display().to_string())
        .collect()
}

#[test]
fn container_network_namespaces_come_from_the_daemons_pool() {
    let Some(d) = Daemon::start() else { return };
    let daemon = d.child.as_ref().map(|c| c.id() as i32).unwrap();
    let host = std::fs::read_link("/proc/self/ns/net").unwrap();
    let mut ready = vec![];
    assert!(
        poll_until(Duration::from_secs(10), || {
            ready = pooled_netns(daemon);
            ready.len() == 2
        }),
        "the daemon keeps two namespaces ready: {ready:?}"
    );
    assert!(
        ready.iter().all(|n| *n != host.display().to_string()),
        "a ready namespace is the host's: {ready:?}"
    );
    d.ok(&["run", "-d", "--name", "pooled", "busybox", "sleep", "600"]);
    let pid = d.ok(&["inspect", "-f", "{{.State.Pid}}", "pooled"]);
    let ns = std::fs::read_link(format!("/proc/{}/ns/net", pid.trim()))
        .unwrap()
        .display()
        .to_string();
    assert!(ready.contains(&ns), "{ns} is not one of {ready:?}");
    // The namespace is wired like any other, and the pool is topped up again.
    let addr = d.ok(&["exec", "pooled", "ip", "-4", "addr", "show", "eth0"]);
    assert!(addr.contains("inet "), "{addr}");
    assert!(poll_until(Duration::from_secs(10), || {
        let now = pooled_netns(daemon);
        now.len() == 2 && !now.contains(&ns)
    }));
    d.ok(&["rm", "-f", "pooled"]);
}

/// The options of a container's root mount, from its init's mountinfo.
fn root_mount_options(d: &Daemon, name: &str) -> String {
    let pid = d.ok(&["inspect", "-f", "{{.State.Pid}}", name]);
    let info = std::fs::read_to_string(format!("/proc/{}/mountinfo", pid.trim())).unwrap();
    info.lines()
        .find(|l| l.split(' ').nth(4) == Some("/"))
        .unwrap_or_default()
        .to_string()
}

#[test]
fn rm_containers_are_volatile_and_survive_a_restart() {
    let Some(d) = Daemon::start() else { return };
    d.ok(&["run", "-d", "--name", "kept", "busybox", "sleep", "600"]);
    let opts = root_mount_options(&d, "kept");
    assert!(!opts.contains("volatile"), "{opts}");
    d.ok(&[
        "run",
        "-d",
        "--rm",
        "--name",
        "gone",
        "busybox",
        "sh",
        "-c",
        "echo run >> /runs; exec sleep 600",
    ]);
    // Its layer is thrown away at exit: no syncs, like podman's --rm.
    let opts = root_mount_options(&d, "gone");
    assert!(opts.contains("volatile"), "{opts}");
    // Docker starts an --rm container again on restart, writable layer and all.
    d.ok(&["restart", "-t", "1", "gone"]);
    assert_eq!(
        d.ok(&["inspect", "-f", "{{.State.Status}}", "gone"]).trim(),
        "running"
    );
    assert!(poll_until(Duration::from_secs(5), || {
        d.docker(&["exec", "gone", "cat", "/runs"]).stdout == "run\nrun\n"
    }));
    // A stop is its end.
    d.ok(&["stop", "-t", "1", "gone"]);
    assert!(poll_until(Duration::from_secs(5), || d
        .docker(&["inspect", "gone"])
        .code
        != 0));
    d.ok(&["rm", "-f", "kept"]);
}

/// Directories of removed containers not deleted yet.
fn being_removed(d: &Daemon) -> Vec<String> {
    std::fs::read_dir(d.p.data.join("containers"))
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(".removing-"))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn removed_containers_files_are_deleted_even_when_the_daemon_stops_at_once() {
    let Some(mut d) = Daemon::start() else { return };
    let ids: Vec<String> = (0..5)
        .map(|i| {
            d.ok(&["create", "--name", &format!("del{i}"), "busybox", "true"])
                .trim()
                .to_string()
        })
        .collect();
    d.ok(&["rm", "del0"]);
    assert!(!d.p.container_dirs().contains(&ids[0]));
    assert!(
        poll_until(Duration::from_secs(5), || being_removed(&d).is_empty()),
        "{:?}",
        being_removed(&d)
    );
    // What is still queued when the daemon gets SIGTERM is deleted before it exits.
    d.ok(&["rm", "del1", "del2", "del3", "del4"]);
    d.stop();
    assert!(being_removed(&d).is_empty(), "{:?}", being_removed(&d));
    assert!(
        d.p.container_dirs().is_empty(),
        "{:?}",
        d.p.container_dirs()
    );
}

#[test]
fn a_stopping_daemon_leaves_a_newer_socket_on_its_path_alone() {
    let Some(mut d) = Daemon::start() else { return };
    // A daemon started on the same path while this one was stopping: its socket replaced
    // ours, and must outlive our exit.
    std::fs::remove_file(&d.sock).unwrap();
    let newer = std::os::unix::net::UnixListener::bind(&d.sock).unwrap();
    d.stop();
    assert!(
        d.sock.exists(),
        "the stopping daemon removed a socket it did not own"
    );
    drop(newer);
    // Its own socket a daemon does remove.
    std::fs::remove_file(&d.sock).unwrap();
    d.spawn();
    assert!(d.pings());
    d.stop();
    assert!(!d.sock.exists());
}

#[test]
fn socket_permissions() {
    let Some(d) = Daemon::start() else { return };
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&d.sock).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o660);
}

/// Sends one request without `Upgrade` and returns (head, everything after it until the
/// daemon closes the connection). Once the head has arrived, `after_head` runs.
fn raw_hijack(d: &Daemon, path: &str, body: &[u8], after_head: impl FnOnce()) -> (String, Vec<u8>) {
    let mut s = UnixStream::connect(&d.sock).expect("connect daemon");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: api.moby.localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    let split = loop {
        if let Some(p) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break p;
        }
        let n = s.read(&mut buf).expect("read head");
        assert!(
            n > 0,
            "closed before the head: {:?}",
            String::from_utf8_lossy(&raw)
        );
        raw.extend_from_slice(&buf[..n]);
    };
    after_head();
    s.read_to_end(&mut raw).expect("read stream until close");
    (
        String::from_utf8_lossy(&raw[..split]).into_owned(),
        raw[split + 4..].to_vec(),
    )
}

#[test]
fn attach_and_exec_start_without_upgrade_stream_raw_until_close() {
    let Some(d) = Daemon::start() else { return };
    let mux = [
        &[1u8, 0, 0, 0, 0, 0, 0, 4][..],
        b"out\n",
        &[2u8, 0, 0, 0, 0, 0, 0, 4][..],
        b"err\n",
    ]
    .concat();
    let check_head = |head: &str| {
        let lower = head.to_ascii_lowercase();
        assert!(
            lower.starts_with("http/1.") && lower.contains(" 200 ok"),
            "{head}"
        );
        assert!(
            lower.contains("content-type: application/vnd.docker.multiplexed-stream"),
            "{head}"
        );
        // Close-delimited, as Docker's hijack: neither chunked nor a length.
        assert!(!lower.contains("transfer-encoding"), "{head}");
        assert!(!lower.contains("content-length"), "{head}");
    };
    // Attach opened before start (as dockerode does for `run`), then the container starts.
    d.ok(&[
        "create",
        "--name",
        "rawatt",
        "busybox",
        "sh",
        "-c",
        "echo out; sleep 0.2; echo err >&2",
    ]);
    let (head, body) = raw_hijack(
        &d,
        "/containers/rawatt/attach?stream=1&stdout=1&stderr=1",
        b"",
        || {
            d.ok(&["start", "rawatt"]);
        },
    );
    check_head(&head);
    assert_eq!(body, mux, "{}", String::from_utf8_lossy(&body));
    // Exec start without Upgrade (dockerode's exec.start).
    d.ok(&["run", "-d", "--name", "rawexec", "busybox", "sleep", "60"]);
    let (st, v) = d.json(
        "POST",
        "/containers/rawexec/exec",
        r#"{"Cmd":["sh","-c","echo out; sleep 0.2; echo err >&2"],"AttachStdout":true,"AttachStderr":true}"#,
    );
    assert_eq!(st, 201, "{v}");
    let exec = v["Id"].as_str().unwrap().to_string();
    let (head, body) = raw_hijack(
        &d,
        &format!("/exec/{exec}/start"),
        br#"{"Detach":false,"Tty":false}"#,
        || {},
    );
    check_head(&head);
    assert_eq!(body, mux, "{}", String::from_utf8_lossy(&body));
    d.ok(&["rm", "-f", "rawatt", "rawexec"]);
    assert!(d.pings());
}

#[test]
fn attach_with_logs_replays_before_live_output() {
    let Some(d) = Daemon::start() else { return };
    let frame = |s: u8, b: &[u8]| [&[s, 0, 0, 0][..], &(b.len() as u32).to_be_bytes(), b].concat();
    d.ok(&[
        "run",
        "--name",
        "logged",
        "busybox",
        "sh",
        "-c",
        "echo one; sleep 0.2; echo two >&2",
    ]);
    // logs=1&stream=0: the stored log, then the connection closes.
    let (head, body) = raw_hijack(
        &d,
        "/containers/logged/attach?logs=1&stream=0&stdout=1&stderr=1",
        b"",
        || {},
    );
    assert!(head.contains(" 200 "), "{head}");
    assert_eq!(
        body,
        [frame(1, b"one\n"), frame(2, b"two\n")].concat(),
        "{}",
        String::from_utf8_lossy(&body)
    );
    // logs=1&stream=1 on the exited container: the replay (stdout only, as asked), then
    // the live output of the next start, then close when it exits.
    let (_, body) = raw_hijack(
        &d,
        "/containers/logged/attach?logs=1&stream=1&stdout=1",
        b"",
        || {
            d.ok(&["start", "logged"]);
        },
    );
    assert_eq!(
        body,
        [frame(1, b"one\n"), frame(1, b"one\n")].concat(),
        "{}",
        String::from_utf8_lossy(&body)
    );
    // `docker start -a` of the stopped container shows its output.
    let o = d.docker(&["start", "-a", "logged"]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert_eq!(o.stdout, "one\n");
    assert_eq!(o.stderr, "two\n");
    d.ok(&["rm", "logged"]);
    assert!(d.pings());
}

#[test]
fn registry_auth_header_login_push_and_pull() {
    let Some(d) = Daemon::start() else { return };
    let Some(reg) = std::env::var("PELAGOS_TEST_REGISTRY")
        .ok()
        .filter(|r| !r.is_empty())
    else {
        println!("skipped: PELAGOS_TEST_REGISTRY is not set");
        return;
    };
    // integration/registry.sh: the htpasswd instance listens on the next port.
    let (host, port) = reg.rsplit_once(':').expect("host:port");
    let auth = format!("{host}:{}", port.parse::<u16>().expect("port") + 1);
    let cfg = d.p.fixtures.join("config.tar");
    d.ok(&["load", "-i", cfg.to_str().unwrap()]);
    let image = format!("{auth}/apiproto/authed:v1");
    d.ok(&["tag", "pelagos-test/config", &image]);
    // Not logged in: the registry refuses, in-band after the 200.
    let o = d.docker(&["push", &image]);
    assert_ne!(o.code, 0, "{}", o.stdout);
    assert!(o.stderr.contains("authentication required"), "{}", o.stderr);
    // A wrong password is refused by `POST /auth` (checked against the registry).
    let o = d.docker_input(
        &["login", "-u", "pelagos", "--password-stdin", &auth],
        Some(b"wrong\n"),
    );
    assert_ne!(o.code, 0, "{}", o.stdout);
    assert!(
        o.stderr.to_ascii_lowercase().contains("unauthorized"),
        "{}",
        o.stderr
    );
    // As Docker answers it: 401.
    let (st, v) = d.json(
        "POST",
        "/auth",
        &format!(r#"{{"username":"pelagos","password":"wrong","serveraddress":"{auth}"}}"#),
    );
    assert_eq!(st, 401, "{v}");
    // The CLI stores the login in its own config (not the daemon's) and sends it as
    // X-Registry-Auth on push and pull.
    let o = d.docker_input(
        &["login", "-u", "pelagos", "--password-stdin", &auth],
        Some(b"pelagos-secret\n"),
    );
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(o.stdout.contains("Login Succeeded"), "{}", o.stdout);
    let o = d.ok(&["push", &image]);
    assert!(o.contains("digest: sha256:"), "{o}");
    d.ok(&["rmi", &image]);
    let o = d.ok(&["pull", &image]);
    assert!(o.contains("Downloaded newer image"), "{o}");
    d.ok(&["rmi", &image]);
    // The header straight from the API with a wrong password: the registry refuses before
    // any progress, so (as dockerd) a status code and a JSON message, and no image.
    use base64::Engine as _;
    let bad = base64::engine::general_purpose::URL_SAFE.encode(format!(
        r#"{{"username":"pelagos","password":"wrong","serveraddress":"{auth}"}}"#
    ));
    let mut s = UnixStream::connect(&d.sock).expect("connect daemon");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "POST /images/create?fromImage={auth}/apiproto/authed&tag=v1 HTTP/1.1\r\nHost: x\r\nX-Registry-Auth: {bad}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    let _ = s.read_to_string(&mut raw);
    assert!(!raw.starts_with("HTTP/1.1 2"), "{raw}");
    let body = raw.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    let v: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    assert!(
        v["message"]
            .as_str()
            .is_some_and(|m| m.contains("authentication required")),
        "{raw}"
    );
    let o = d.docker(&["image", "inspect", &image]);
    assert_ne!(o.code, 0);
    d.ok(&["rmi", "pelagos-test/config"]);
    assert!(d.pings());
}

/// A tar built from raw entries, hostile ones included (`tar::Header::set_path` refuses
/// `..`, so names are written into the header directly). `link` makes a symlink.
fn raw_tar(entries: &[(&str, Option<&str>, &[u8])]) -> Vec<u8> {
    let mut tarball = Vec::new();
    {
        let mut b = tar::Builder::new(&mut tarball);
        for (name, link, data) in entries {
            let mut hdr = tar::Header::new_gnu();
            hdr.set_mode(0o755);
            match link {
                Some(target) => {
                    hdr.set_entry_type(tar::EntryType::Symlink);
                    hdr.set_size(0);
                    hdr.as_old_mut().linkname[..target.len()].copy_from_slice(target.as_bytes());
                }
                None => {
                    hdr.set_entry_type(tar::EntryType::Regular);
                    hdr.set_size(data.len() as u64);
                }
            }
            hdr.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
            hdr.set_cksum();
            let body: &[u8] = if link.is_some() { &[] } else { data };
            b.append(&hdr, body).unwrap();
        }
        b.finish().unwrap();
    }
    tarball
}

#[test]
fn hostile_bodies_and_tars_write_nothing_outside() {
    let Some(d) = Daemon::start() else { return };
    // Wrong types in HostConfig and an invalid name: 400 with Docker's message.
    let (st, v) = d.json(
        "POST",
        "/containers/create",
        r#"{"Image":"busybox","Cmd":["true"],"HostConfig":{"Memory":"abc"}}"#,
    );
    assert_eq!(st, 400, "{v}");
    let (st, v) = d.json(
        "POST",
        "/containers/create?name=-x",
        r#"{"Image":"busybox","Cmd":["true"]}"#,
    );
    assert_eq!(
        (st, v["message"].as_str()),
        (
            400,
            Some("Invalid container name (-x), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
        )
    );
    // An absolute symlink, then a file through it: must land inside the container, if
    // anywhere. The host directory exists so that an escape would succeed.
    let host_dir = std::path::Path::new("/tmp/pelagos-apiproto-hostile");
    let _ = std::fs::remove_dir_all(host_dir);
    std::fs::create_dir_all(host_dir).unwrap();
    d.ok(&["create", "--name", "hostile", "busybox", "true"]);
    let t = raw_tar(&[
        ("evil", Some("/tmp/pelagos-apiproto-hostile"), b""),
        ("evil/pwned", None, b"pwned"),
    ]);
    let (st, _, _) = d.http("PUT", "/containers/hostile/archive?path=/", &t);
    assert!(st == 200 || st == 400, "archive put: {st}");
    let t = raw_tar(&[
        (
            "up",
            Some("../../../../../../tmp/pelagos-apiproto-hostile"),
            b"",
        ),
        ("up/pwned2", None, b"x"),
    ]);
    let (st, _, _) = d.http("PUT", "/containers/hostile/archive?path=/", &t);
    assert!(st == 200 || st == 400, "archive put: {st}");
    // Image load with a `..` entry and with a symlink escape: refused, nothing written.
    let images_before = d.ok(&["images", "-q", "--no-trunc"]);
    for t in [
        raw_tar(&[(
            "../../../../../../tmp/pelagos-apiproto-hostile/load",
            None,
            b"x",
        )]),
        raw_tar(&[
            ("evil", Some("/tmp/pelagos-apiproto-hostile"), b""),
            ("evil/load2", None, b"x"),
            ("manifest.json", None, b"[]"),
        ]),
    ] {
        let (st, _, body) = d.http("POST", "/images/load?quiet=1", &t);
        let text = String::from_utf8_lossy(&body);
        assert!(
            st >= 400 || text.contains("error"),
            "hostile load accepted: {st} {text}"
        );
    }
    assert_eq!(d.ok(&["images", "-q", "--no-trunc"]), images_before);
    let left: Vec<_> = std::fs::read_dir(host_dir).unwrap().flatten().collect();
    assert!(left.is_empty(), "written outside: {left:?}");
    std::fs::remove_dir_all(host_dir).unwrap();
    d.ok(&["rm", "hostile"]);
    assert!(d.pings());
}

#[test]
fn filters_and_prunes_follow_docker_semantics() {
    let Some(d) = Daemon::start() else { return };
    let since = chrono::Utc::now().timestamp().to_string();
    let names = |args: &[&str]| {
        let mut v: Vec<String> = d.ok(args).lines().map(str::to_string).collect();
        v.sort();
        v
    };
    // Two compose-like projects: every `label` term must hold, as compose relies on.
    for (name, project) in [("p1", "a"), ("p2", "b")] {
        d.ok(&[
            "run",
            "-d",
            "--name",
            name,
            "-l",
            &format!("project={project}"),
            "-l",
            "oneoff=False",
            "busybox",
            "sleep",
            "60",
        ]);
    }
    let f = [
        "--filter",
        "label=project=a",
        "--filter",
        "label=oneoff=False",
    ];
    let mut ps = vec!["ps", "-a", "--format", "{{.Names}}"];
    ps.extend_from_slice(&f);
    assert_eq!(names(&ps), ["p1"]);
    let mut ev = vec![
        "--filter",
        "event=start",
        "--format",
        "{{.Actor.Attributes.name}}",
    ];
    ev.extend_from_slice(&f);
    assert_eq!(replay(&d, &since, &ev).trim(), "p1");
    // `until` alone replays everything buffered up to it.
    let until = (chrono::Utc::now().timestamp() + 1).to_string();
    let started = names(&[
        "events",
        "--until",
        &until,
        "--filter",
        "event=start",
        "--format",
        "{{.Actor.Attributes.name}}",
    ]);
    assert_eq!(started, ["p1", "p2"]);
    // Names are regular expressions, with or without Docker's leading slash.
    assert_eq!(
        names(&["ps", "--filter", "name=^/p1$", "--format", "{{.Names}}"]),
        ["p1"]
    );
    assert_eq!(
        names(&["ps", "--filter", "name=^p", "--format", "{{.Names}}"]),
        ["p1", "p2"]
    );
    // A limit lists stopped containers too; before/since name containers.
    d.ok(&["create", "--name", "s1", "-l", "keep=1", "busybox", "true"]);
    assert_eq!(names(&["ps", "-n", "1", "--format", "{{.Names}}"]), ["s1"]);
    assert_eq!(names(&["ps", "-l", "--format", "{{.Names}}"]), ["s1"]);
    assert_eq!(
        names(&["ps", "-a", "--filter", "since=p1", "--format", "{{.Names}}"]),
        ["p2", "s1"]
    );
    assert_eq!(
        names(&[
            "ps",
            "-a",
            "--filter",
            "before=p2",
            "--format",
            "{{.Names}}"
        ]),
        ["p1"]
    );
    assert_eq!(d.docker(&["ps", "--filter", "since=nothing-here"]).code, 1);

    // Container prune: an unknown key is refused, `until` and `label!` spare what they
    // exclude.
    d.ok(&["create", "--name", "s2", "busybox", "true"]);
    let o = d.docker(&["container", "prune", "-f", "--filter", "foo=bar"]);
    assert!(
        o.code != 0 && o.stderr.contains("invalid filter 'foo'"),
        "{}",
        o.stderr
    );
    d.ok(&["container", "prune", "-f", "--filter", "until=1h"]);
    assert_eq!(names(&["ps", "-a", "-q", "--filter", "name=^s"]).len(), 2);
    d.ok(&["container", "prune", "-f", "--filter", "label!=keep"]);
    assert_eq!(
        names(&["ps", "-a", "--filter", "name=^s", "--format", "{{.Names}}"]),
        ["s1"]
    );
    d.ok(&["rm", "-f", "p1", "p2", "s1"]);

    // Images: labels are listed and filtered; a label-filtered prune (Ryuk's) removes
    // only what carries the label.
    d.ok(&["create", "--name", "base", "busybox", "true"]);
    d.ok(&["commit", "-c", "LABEL sess=1", "base", "labeled:1"]);
    d.ok(&["rm", "base"]);
    let labeled = d.ok(&["images", "-q", "--filter", "label=sess=1"]);
    assert_eq!(labeled.lines().count(), 1, "{labeled}");
    assert_eq!(d.ok(&["images", "-q", "labeled:1"]), labeled);
    assert_eq!(
        d.ok(&["image", "inspect", "-f", "{{.Id}}", "labeled:1"])
            .trim()
            .len(),
        71
    );
    let v = d
        .json(
            "GET",
            "/images/json?filters=%7B%22label%22%3A%5B%22sess%3D1%22%5D%7D",
            "",
        )
        .1;
    assert_eq!(v[0]["Labels"]["sess"], "1");
    assert_eq!(
        d.ok(&["images", "-q", "--filter", "label=sess=2"]).trim(),
        ""
    );
    // system df: the labels too, and the layer labeled:1 shares with busybox counted once.
    let df = d.json("GET", "/system/df", "").1;
    let imgs = df["Images"].as_array().unwrap();
    assert!(imgs.iter().any(|i| i["Labels"]["sess"] == "1"), "{df}");
    let sizes: u64 = imgs.iter().map(|i| i["Size"].as_u64().unwrap()).sum();
    assert!(df["LayersSize"].as_u64().unwrap() < sizes, "{df}");
    assert_eq!(
        d.ok(&[
            "images",
            "-q",
            "--filter",
            "since=busybox",
            "--filter",
            "label=sess"
        ]),
        labeled
    );
    // until=0 is the Unix epoch (nothing is older), not "now".
    assert_eq!(d.ok(&["images", "-q", "--filter", "until=0"]).trim(), "");
    d.ok(&[
        "image",
        "prune",
        "-af",
        "--filter",
        "until=1h",
        "--filter",
        "label=sess=1",
    ]);
    assert_eq!(
        d.ok(&["images", "-q", "labeled:1"]),
        labeled,
        "until=1h kept it"
    );
    d.ok(&["image", "prune", "-af", "--filter", "label=sess=1"]);
    assert_eq!(d.ok(&["images", "-q", "labeled"]).trim(), "");
    assert!(
        !d.ok(&["images", "-q", "busybox"]).trim().is_empty(),
        "busybox stays"
    );

    // Networks and volumes.
    d.ok(&["network", "create", "--label", "grp=a", "n1"]);
    d.ok(&["network", "create", "n2"]);
    d.ok(&["network", "prune", "-f", "--filter", "label=grp=a"]);
    let nets = names(&[
        "network",
        "ls",
        "--filter",
        "type=custom",
        "--format",
        "{{.Name}}",
    ]);
    assert_eq!(nets, ["n2"]);
    d.ok(&["network", "rm", "n2"]);
    d.ok(&["volume", "create", "--label", "keep", "v1"]);
    d.ok(&["volume", "create", "v2"]);
    d.ok(&["volume", "prune", "-af", "--filter", "label!=keep"]);
    assert_eq!(names(&["volume", "ls", "-q"]), ["v1"]);
    let o = d.docker(&["volume", "prune", "-af", "--filter", "until=1h"]);
    assert!(
        o.code != 0 && o.stderr.contains("invalid filter 'until'"),
        "{}",
        o.stderr
    );
    d.ok(&["volume", "rm", "v1"]);
}

#[test]
fn create_translates_the_run_flags_and_they_take_effect() {
    let Some(d) = Daemon::start() else { return };
    d.ok(&[
        "run",
        "-d",
        "--name",
        "rich",
        "--mount",
        "type=volume,source=mv,target=/mv",
        "--mount",
        "type=tmpfs,target=/tm,tmpfs-size=1048576",
        "--tmpfs",
        "/t2:size=2m",
        "--cap-add",
        "NET_ADMIN",
        "--cap-drop",
        "MKNOD",
        "--init",
        "--dns",
        "10.9.9.9",
        "--dns-search",
        "example.test",
        "--add-host",
        "h1:10.1.2.3",
        "-w",
        "/work",
        "--entrypoint",
        "/bin/sh",
        "--stop-signal",
        "SIGUSR1",
        "--stop-timeout",
        "7",
        "--security-opt",
        "no-new-privileges",
        "-P",
        "--expose",
        "9000",
        "-p",
        "127.0.0.1::80",
        "--restart",
        "on-failure:3",
        "--memory",
        "64m",
        "--cpus",
        "0.5",
        "--pids-limit",
        "50",
        "-u",
        "1000:1000",
        "-e",
        "A=1",
        "-l",
        "k=v",
        "--hostname",
        "hh",
        "--read-only",
        "--shm-size",
        "8m",
        "--ulimit",
        "nofile=1234:2345",
        "--sysctl",
        "net.ipv4.ip_unprivileged_port_start=0",
        "busybox",
        "-c",
        "sleep 60",
    ]);
    let v: Value = serde_json::from_str(&d.ok(&["inspect", "rich"])).unwrap();
    let (h, c) = (&v[0]["HostConfig"], &v[0]["Config"]);
    assert_eq!(h["Tmpfs"]["/t2"], "size=2m");
    assert_eq!(h["CapAdd"], serde_json::json!(["CAP_NET_ADMIN"]));
    assert_eq!(h["CapDrop"], serde_json::json!(["CAP_MKNOD"]));
    assert_eq!(h["Init"], true);
    assert_eq!(h["Dns"], serde_json::json!(["10.9.9.9"]));
    assert_eq!(h["DnsSearch"], serde_json::json!(["example.test"]));
    assert_eq!(h["ExtraHosts"], serde_json::json!(["h1:10.1.2.3"]));
    assert_eq!(h["SecurityOpt"], serde_json::json!(["no-new-privileges"]));
    assert_eq!(h["PublishAllPorts"], true);
    assert_eq!(h["PortBindings"]["80/tcp"][0]["HostIp"], "127.0.0.1");
    assert_eq!(h["RestartPolicy"]["Name"], "on-failure");
    assert_eq!(h["RestartPolicy"]["MaximumRetryCount"], 3);
    assert_eq!(h["Memory"], 64 << 20);
    assert_eq!(h["NanoCpus"], 500_000_000);
    assert_eq!(h["PidsLimit"], 50);
    assert_eq!(h["ReadonlyRootfs"], true);
    assert_eq!(h["ShmSize"], 8 << 20);
    assert_eq!(h["Ulimits"][0]["Name"], "nofile");
    assert_eq!(h["Sysctls"]["net.ipv4.ip_unprivileged_port_start"], "0");
    assert_eq!(c["WorkingDir"], "/work");
    assert_eq!(c["Entrypoint"], serde_json::json!(["/bin/sh"]));
    assert_eq!(c["StopSignal"], "SIGUSR1");
    assert_eq!(c["StopTimeout"], 7);
    assert_eq!(c["User"], "1000:1000");
    assert_eq!(c["Hostname"], "hh");
    assert_eq!(c["Labels"]["k"], "v");
    assert!(
        c["Env"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!("A=1"))
    );
    assert!(c["ExposedPorts"].get("9000/tcp").is_some());
    let mounts: Vec<String> = v[0]["Mounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            format!(
                "{}:{}",
                m["Type"].as_str().unwrap(),
                m["Destination"].as_str().unwrap()
            )
        })
        .collect();
    assert!(mounts.contains(&"volume:/mv".to_string()), "{mounts:?}");
    // And inside the running container.
    let sh = |script: &str| d.ok(&["exec", "rich", "sh", "-c", script]);
    assert_eq!(sh("pwd; id -u; hostname").trim(), "/work\n1000\nhh");
    assert!(sh("cat /etc/hosts").contains("10.1.2.3\th1"));
    let resolv = sh("cat /etc/resolv.conf");
    assert!(
        resolv.contains("nameserver 10.9.9.9") && resolv.contains("example.test"),
        "{resolv}"
    );
    assert_eq!(sh("ulimit -n; ulimit -Hn").trim(), "1234\n2345");
    assert_eq!(
        sh("grep NoNewPrivs /proc/self/status")
            .split_whitespace()
            .nth(1),
        Some("1")
    );
    let m = sh("cat /proc/mounts");
    let fstype = |dest: &str| {
        m.lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .find(|f| f.get(1) == Some(&dest))
            .and_then(|f| f.get(2).map(|t| t.to_string()))
    };
    for dest in ["/t2", "/tm", "/dev/shm"] {
        assert_eq!(fstype(dest).as_deref(), Some("tmpfs"), "{dest}: {m}");
    }
    // The volume is a bind of its directory on the data root: neither tmpfs nor overlay.
    let mv = fstype("/mv").expect("/mv is mounted");
    assert!(mv != "tmpfs" && mv != "overlay", "{mv}");
    assert!(
        m.lines()
            .any(|l| l.split_whitespace().nth(1) == Some("/") && l.contains(" overlay ro,")),
        "{m}"
    );
    assert_eq!(
        sh("cat /proc/sys/net/ipv4/ip_unprivileged_port_start").trim(),
        "0"
    );
    // The init is PID 1, the command its child.
    assert_ne!(sh("cat /proc/1/comm").trim(), "sleep");
    d.ok(&["rm", "-f", "rich"]);
    d.ok(&["volume", "rm", "mv"]);
}
