//! `frun swap`, `frun rollback`, `frun history`, end to end: the family stack (nginx in
//! front of the app, images from the test registry) in the test run's network namespace,
//! swapped under a steady load of keep-alive HTTP clients on the published port.

use crate::common::*;
use serde_json::Value;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A stack under test, with its images from registry `reg` and a port of this test's:
/// the family stack of `examples/family` (nginx in front of the app, [`Stack::family`])
/// or the family app alone publishing its own port (no proxy, [`Stack::solo`], see
/// swap_ports.rs). One type, so that the tests that both kinds share are written once.
pub(crate) struct Stack {
    pub(crate) file: PathBuf,
    port: u16,
    reg: String,
}

impl Stack {
    pub(crate) fn family(f: &Frun, reg: &str) -> Stack {
        let dir = f.dir.path().join("family");
        std::fs::create_dir_all(&dir).unwrap();
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/family");
        std::fs::copy(repo.join("proxy.conf.tmpl"), dir.join("proxy.conf.tmpl")).unwrap();
        let port = free_port();
        let text = std::fs::read_to_string(repo.join("frun.toml"))
            .unwrap()
            .replace(
                "\"nginx:stable\"",
                &format!("\"{reg}/library/nginx:stable\""),
            )
            .replace("\"family/app:v1\"", &format!("\"{reg}/family/app:v1\""))
            .replace("127.0.0.1:8080:80", &format!("127.0.0.1:{port}:80"))
            .replace("interval = \"2s\"", "interval = \"200ms\"")
            .replace("start_period = \"10s\"", "start_period = \"3s\"")
            .replace("stop_grace = \"5s\"", "stop_grace = \"2s\"");
        std::fs::write(dir.join("frun.toml"), text).unwrap();
        Stack {
            file: dir.join("frun.toml"),
            port,
            reg: reg.to_string(),
        }
    }

    /// The family app alone (no proxy), publishing its port 8080 on a port of this test's.
    pub(crate) fn solo(f: &Frun, reg: &str) -> Stack {
        let dir = f.dir.path().join("solo");
        std::fs::create_dir_all(&dir).unwrap();
        let port = free_port();
        let text = format!(
            r#"name = "solo"

[app]
image = "{reg}/family/app:v1"
port = 8080
ports = ["127.0.0.1:{port}:8080"]
memory = "64m"
pids = 128
restart = "always"
stop_grace = "2s"

[app.health]
http = "/"
interval = "200ms"
timeout = "1s"
retries = 3
start_period = "3s"
"#
        );
        std::fs::write(dir.join("frun.toml"), text).unwrap();
        Stack {
            file: dir.join("frun.toml"),
            port,
            reg: reg.to_string(),
        }
    }

    pub(crate) fn file(&self) -> &str {
        self.file.to_str().unwrap()
    }

    /// The stack's name (its directory's, as the stack file says).
    fn name(&self) -> &str {
        self.file
            .parent()
            .unwrap()
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
    }

    pub(crate) fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub(crate) fn image(&self, tag: &str) -> String {
        format!("{}/family/app:{tag}", self.reg)
    }

    /// `GET /version` on a fresh connection.
    pub(crate) fn version(&self) -> Result<String, String> {
        http_get(&self.addr(), "/version")
    }

    pub(crate) fn up(&self, f: &Frun) {
        f.ok(&["up", "-f", self.file()]);
        eventually(|| self.version().and_then(|v| ok_if(v == "v1\n", v)));
    }

    /// The running app containers of the stack.
    pub(crate) fn apps(&self, f: &Frun) -> Vec<Value> {
        let st: Vec<Value> =
            serde_json::from_str(&f.ok(&["status", "-f", self.file(), "--format", "json"]))
                .unwrap();
        st.into_iter().filter(|r| r["role"] == "app").collect()
    }

    pub(crate) fn history(&self, f: &Frun) -> Vec<Value> {
        serde_json::from_str(&f.ok(&["history", "-f", self.file(), "--format", "json"])).unwrap()
    }

    /// `frun ARGS` (`swap IMAGE`, `rollback`) of this stack, its JSON answer.
    pub(crate) fn swap(&self, f: &Frun, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.extend([
            "-f",
            self.file(),
            "--drain-timeout",
            "10s",
            "--format",
            "json",
        ]);
        serde_json::from_str(&f.ok(&all)).unwrap()
    }

    /// `kill -9` of frun at each phase of a swap, then `frun up`: the stack serves
    /// whatever the kill left, and after the `up` the version the phase calls for
    /// (finished from `draining` on, undone before), with exactly one app generation,
    /// the history saying how, and no swap journal left.
    pub(crate) fn swap_killed_at_each_phase_is_finished_or_undone(&self, f: &Frun) {
        self.up(f);
        f.ok(&["pull", "-q", &self.image("v2")]);
        let mut serving = "v1";
        for phase in [
            "pulled",
            "starting",
            "ready",
            "switching",
            "draining",
            "stopping",
            "recorded",
        ] {
            let next = if serving == "v1" { "v2" } else { "v1" };
            let out = f
                .command(&["swap", &self.image(next), "-f", self.file()])
                .env("FRUN_TEST_STOP_AT", phase)
                .output()
                .unwrap();
            use std::os::unix::process::ExitStatusExt;
            assert_eq!(out.status.signal(), Some(9), "killed at {phase}: {out:?}");
            // Whatever the kill left serves.
            let v = self
                .version()
                .unwrap_or_else(|e| panic!("after a kill at {phase}: {e}"));
            assert!(v == "v1\n" || v == "v2\n", "{v}");

            let out = f.run(&["up", "-f", self.file()]);
            assert!(out.status.success(), "{out:?}");
            let finished = !matches!(phase, "pulled" | "starting" | "ready" | "switching");
            if finished {
                serving = next;
            }
            assert_eq!(
                self.version().unwrap(),
                format!("{serving}\n"),
                "after a kill at {phase}"
            );
            assert_eq!(self.apps(f).len(), 1, "after a kill at {phase}");
            let last = self.history(f).last().unwrap().clone();
            let want = match phase {
                "recorded" => "deployed",
                _ if finished => "finished",
                _ => "undone",
            };
            assert_eq!(last["outcome"], want, "after a kill at {phase}: {last}");
            if want != "deployed" {
                assert!(last["message"].as_str().unwrap().contains(phase), "{last}");
            }
            let journal = f.root().join(format!("stacks/{}/swap.json", self.name()));
            assert!(!journal.exists(), "{journal:?} after a kill at {phase}");
        }
        f.ok(&["down", "--volumes", "-f", self.file()]);
    }
}

/// Every answer of the load is v1 or v2, and a request sent after a swap returned (the
/// drain is over) and before the next one began (`starts`, `ends`: when each swap
/// began, and when it returned with the version it deployed) is answered by the new
/// app only.
pub(crate) fn assert_answers_follow_the_swaps(
    samples: &[Sample],
    starts: &[Instant],
    ends: &[(Instant, String)],
) {
    for s in samples {
        let body = s.result.as_ref().unwrap();
        assert!(body == "v1\n" || body == "v2\n", "{body:?}");
    }
    for (i, (end, body)) in ends.iter().enumerate() {
        let next = starts.get(i + 1).copied();
        let after: Vec<&Sample> = samples
            .iter()
            .filter(|s| s.sent > *end && next.is_none_or(|n| s.sent < n))
            .collect();
        assert!(!after.is_empty(), "no request after swap {i}");
        for s in after {
            assert_eq!(s.result.as_ref().unwrap(), body, "after swap {i}");
        }
    }
}

pub(crate) fn ok_if(cond: bool, v: String) -> Result<String, String> {
    if cond {
        Ok(v)
    } else {
        Err(format!("got {v:?}"))
    }
}

/// One answer of the load: when the request was sent, and the body or the failure.
#[derive(Debug, Clone)]
pub(crate) struct Sample {
    pub(crate) sent: Instant,
    pub(crate) result: Result<String, String>,
}

/// A bounded load: `clients` threads sending `GET /version` one after the other until
/// stopped, each on one HTTP/1.1 keep-alive connection (a new one only after the server
/// closed it between two answers) or, with `keep_alive` false, on a new connection per
/// request (`Connection: close`). Every request is recorded; none is retried.
pub(crate) struct Load {
    stop: Arc<AtomicBool>,
    samples: Arc<Mutex<Vec<Sample>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Load {
    pub(crate) fn start(addr: String, clients: usize, keep_alive: bool) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let samples = Arc::new(Mutex::new(Vec::new()));
        let threads = (0..clients)
            .map(|_| {
                let (stop, samples, addr) = (stop.clone(), samples.clone(), addr.clone());
                std::thread::spawn(move || {
                    let mut conn: Option<TcpStream> = None;
                    while !stop.load(Ordering::SeqCst) {
                        let sent = Instant::now();
                        let (result, keep) = request(&addr, &mut conn, keep_alive);
                        if !keep || !keep_alive {
                            conn = None;
                        }
                        samples.lock().unwrap().push(Sample { sent, result });
                        std::thread::sleep(Duration::from_millis(2));
                    }
                })
            })
            .collect();
        Load {
            stop,
            samples,
            threads,
        }
    }

    pub(crate) fn finish(self) -> Vec<Sample> {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads {
            t.join().unwrap();
        }
        let s = self.samples.lock().unwrap().clone();
        s
    }
}

/// One request on `conn` (connected first if there is none); the result and whether the
/// connection may be used again.
fn request(
    addr: &str,
    conn: &mut Option<TcpStream>,
    keep_alive: bool,
) -> (Result<String, String>, bool) {
    if conn.is_none() {
        match TcpStream::connect(addr) {
            Ok(s) => {
                s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                *conn = Some(s);
            }
            Err(e) => return (Err(format!("connect: {e}")), false),
        }
    }
    let s = conn.as_mut().unwrap();
    let req: &[u8] = if keep_alive {
        b"GET /version HTTP/1.1\r\nHost: t\r\n\r\n"
    } else {
        b"GET /version HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    };
    if let Err(e) = s.write_all(req) {
        return (Err(format!("write: {e}")), false);
    }
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
        match s.read(&mut chunk) {
            Ok(0) => return (Err(format!("closed after {} bytes", buf.len())), false),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            // A signal to the test process (a read with a timeout is not restarted):
            // not the server's doing.
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return (Err(format!("read: {e}")), false),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    while buf.len() < head_end + len {
        match s.read(&mut chunk) {
            Ok(0) => return (Err("closed in the body".into()), false),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return (Err(format!("read body: {e}")), false),
        }
    }
    let keep = !head.contains("connection: close");
    if !head.starts_with("http/1.1 200") {
        return (
            Err(format!("status: {}", head.lines().next().unwrap_or(""))),
            keep,
        );
    }
    (
        Ok(String::from_utf8_lossy(&buf[head_end..head_end + len]).into_owned()),
        keep,
    )
}

/// Ten swaps v1 <-> v2 under the load of `clients` (see [`Load`]): no request fails,
/// every body is v1 or v2, and once a swap has returned only the new one answers.
fn ten_swaps_under_load(keep_alive: bool) {
    let Some(reg) = registry() else { return };
    let f = Frun::new();
    let fam = Stack::family(&f, &reg);
    fam.up(&f);
    // Both images in the store first: the swaps time start, health, switch, drain, stop.
    f.ok(&["pull", "-q", &fam.image("v2")]);

    let load = Load::start(fam.addr(), 4, keep_alive);
    std::thread::sleep(Duration::from_millis(500));
    let (mut starts, mut ends) = (Vec::new(), Vec::new());
    for i in 0..10 {
        let tag = if i % 2 == 0 { "v2" } else { "v1" };
        starts.push(Instant::now());
        let r = fam.swap(&f, &["swap", &fam.image(tag)]);
        assert_eq!(r["outcome"], "deployed", "{r}");
        ends.push((Instant::now(), format!("{tag}\n")));
        std::thread::sleep(Duration::from_millis(300));
    }
    let samples = load.finish();

    let failed: Vec<&Sample> = samples.iter().filter(|s| s.result.is_err()).collect();
    if !failed.is_empty() {
        let out = f.run(&["logs", "family-proxy"]);
        let text = String::from_utf8_lossy(&out.stderr).into_owned()
            + &String::from_utf8_lossy(&out.stdout);
        let errs: Vec<&str> = text
            .lines()
            .filter(|l| l.contains("error") || l.contains(" 502 "))
            .take(8)
            .collect();
        eprintln!("PROXY LOG ERRORS: {errs:#?}");
        let out = f.run(&["logs", "family-app"]);
        let text = String::from_utf8_lossy(&out.stderr).into_owned()
            + &String::from_utf8_lossy(&out.stdout);
        let errs: Vec<&str> = text
            .lines()
            .filter(|l| l.contains("frun"))
            .take(8)
            .collect();
        eprintln!("APP LOG: {errs:#?}");
        let h = fam.history(&f);
        for e in &h {
            eprintln!("{} {}", e["container"], e["steps"]);
        }
        for s in failed.iter().take(3) {
            let i = starts.iter().rposition(|t| *t < s.sent);
            eprintln!(
                "failed during swap {i:?}: {:?} after its start, swap ended {:?} after its start",
                i.map(|i| s.sent - starts[i]),
                i.map(|i| ends[i].0 - starts[i])
            );
        }
    }
    assert!(
        failed.is_empty(),
        "{} of {} requests failed: {:?}",
        failed.len(),
        samples.len(),
        failed.iter().take(10).collect::<Vec<_>>()
    );
    assert!(samples.len() > 200, "too little load: {}", samples.len());
    assert_answers_follow_the_swaps(&samples, &starts, &ends);

    // One app generation, the history has all of it, and its step times.
    assert_eq!(fam.apps(&f).len(), 1);
    let h = fam.history(&f);
    assert_eq!(h.len(), 11, "{h:?}");
    assert_eq!(h[0]["how"], "up");
    for e in &h[1..] {
        assert_eq!(e["outcome"], "deployed", "{e}");
        let steps: Vec<&str> = e["steps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["step"].as_str().unwrap())
            .collect();
        assert_eq!(
            steps,
            ["pull", "memory", "start", "health", "switch", "drain", "stop"]
        );
    }
    f.ok(&["down", "--volumes", "-f", fam.file()]);
}

#[test]
fn ten_swaps_under_load_of_new_connections_fail_no_request() {
    ten_swaps_under_load(false);
}

/// The clients keep their connections to nginx: a swap does not reload nginx (it
/// renames the app's socket link), so none of them is closed under a request.
#[test]
fn ten_swaps_under_load_of_keep_alive_clients_fail_no_request() {
    ten_swaps_under_load(true);
}

/// What a failed swap must leave: the old app serving v1, one app container, nothing
/// else of the new one, a failed entry in the history.
fn assert_untouched(f: &Frun, fam: &Stack, name: &str) {
    assert_eq!(fam.version().unwrap(), "v1\n");
    let apps = fam.apps(f);
    assert_eq!(apps.len(), 1, "{apps:?}");
    assert_eq!(apps[0]["name"], name);
    let all: Vec<Value> = serde_json::from_str(&f.ok(&["ps", "-a", "--format", "json"])).unwrap();
    assert_eq!(all.len(), 2, "only the proxy and the old app: {all:?}");
    assert_eq!(fam.history(f).last().unwrap()["outcome"], "failed");
}

#[test]
fn failed_swaps_leave_the_old_app_serving_and_nothing_new() {
    let Some(reg) = registry() else { return };
    let f = Frun::new();
    let fam = Stack::family(&f, &reg);
    fam.up(&f);
    let load = Load::start(fam.addr(), 2, true);

    // 1. Never healthy: its log lines are shown.
    let err = f.fails(&["swap", &fam.image("broken"), "-f", fam.file()]);
    assert!(err.contains("did not become ready"), "{err}");
    assert!(err.contains("  | "), "the new container's log lines: {err}");
    assert_untouched(&f, &fam, "family-app.1");

    // 2. An image that does not exist.
    let err = f.fails(&["swap", &fam.image("nope"), "-f", fam.file()]);
    assert!(err.contains("nope"), "{err}");
    assert_eq!(fam.apps(&f).len(), 1);
    assert_eq!(fam.version().unwrap(), "v1\n");

    // 3. A configuration nginx rejects: nginx's words, the old conf back.
    let tmpl = fam.file.with_file_name("proxy.conf.tmpl");
    let good = std::fs::read_to_string(&tmpl).unwrap();
    std::fs::write(
        &tmpl,
        "server { listen 80; no_such_directive on; location / { proxy_pass http://{{upstream}}; } }\n",
    )
    .unwrap();
    let out = f.run(&[
        "swap",
        &fam.image("v2"),
        "-f",
        fam.file(),
        "--format",
        "json",
    ]);
    assert!(!out.status.success());
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["outcome"], "failed", "{r}");
    assert!(
        r["error"].as_str().unwrap().contains("no_such_directive"),
        "{r}"
    );
    std::fs::write(&tmpl, good).unwrap();
    assert_untouched(&f, &fam, "family-app.1");

    // 4. The same digest again: nothing to do.
    let out = f.ok(&["swap", &fam.image("v1"), "-f", fam.file()]);
    assert!(out.contains("unchanged"), "{out}");

    let samples = load.finish();
    let failed: Vec<&Sample> = samples.iter().filter(|s| s.result.is_err()).collect();
    assert!(failed.is_empty(), "{failed:?}");
    assert!(samples.iter().all(|s| s.result.as_deref() == Ok("v1\n")));
    f.ok(&["down", "--volumes", "-f", fam.file()]);
}

#[test]
fn rollback_returns_to_the_previous_digest_without_the_registry() {
    let Some(reg) = registry() else { return };
    // The registry behind a proxy of the test's: killed, the registry is gone for frun.
    let proxy = Proxy::start(&reg);
    let f = Frun::new();
    let fam = Stack::family(&f, &proxy.addr);
    fam.up(&f);
    let r = fam.swap(&f, &["swap", &fam.image("v2")]);
    assert_eq!(r["outcome"], "deployed");
    assert_eq!(fam.version().unwrap(), "v2\n");
    let v1 = fam.history(&f)[0]["digest"].as_str().unwrap().to_string();

    proxy.kill();
    let out = f.ok(&["rollback", "-f", fam.file(), "--format", "json"]);
    let r: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(r["outcome"], "deployed", "{r}");
    assert_eq!(r["digest"], v1.as_str());
    assert_eq!(fam.version().unwrap(), "v1\n");
    let h = fam.history(&f);
    assert_eq!(h.last().unwrap()["how"], "rollback");
    assert_eq!(h.last().unwrap()["digest"], v1.as_str());
    // The deployed image stays across `up` (the stack file still names v1's tag, and
    // the history says what runs): nothing is replaced.
    let out = f.ok(&["up", "-f", fam.file()]);
    assert!(
        out.contains("unchanged") && !out.contains("created"),
        "{out}"
    );
    // A second rollback goes forward again, still without the registry.
    f.ok(&["rollback", "-f", fam.file()]);
    assert_eq!(fam.version().unwrap(), "v2\n");
    let text = f.ok(&["history", "-f", fam.file()]);
    assert!(
        text.contains("rollback") && text.contains("deployed"),
        "{text}"
    );
    // One `swap` event per swap and rollback, with its outcome and digests.
    let events = std::fs::read_to_string(f.root().join("events/events.jsonl")).unwrap();
    let swaps: Vec<Value> = events
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|e| e["kind"] == "swap")
        .collect();
    assert_eq!(swaps.len(), 3, "{swaps:?}");
    assert_eq!(swaps[1]["attrs"]["how"], "rollback");
    assert_eq!(swaps[1]["attrs"]["outcome"], "deployed");
    assert_eq!(swaps[1]["attrs"]["digest"], v1.as_str());
    assert_eq!(swaps[1]["stack"], "family");
    // Its duration as every event gives one: seconds, a decimal number.
    let secs = swaps[1]["attrs"]["duration_seconds"]
        .as_str()
        .unwrap_or_default();
    assert!(secs.parse::<f64>().is_ok_and(|s| s > 0.0), "{}", swaps[1]);
    assert!(
        swaps[1]["attrs"].get("duration_ms").is_none(),
        "{}",
        swaps[1]
    );
    f.ok(&["down", "--volumes", "-f", fam.file()]);
}

#[test]
fn a_swap_killed_at_each_phase_is_finished_or_undone_by_the_next_up() {
    let Some(reg) = registry() else { return };
    let f = Frun::new();
    Stack::family(&f, &reg).swap_killed_at_each_phase_is_finished_or_undone(&f);
}

#[test]
fn with_before_swap_a_swap_first_backs_up_the_data_of_the_old_app() {
    let Some(reg) = registry() else { return };
    let f = Frun::new();
    let fam = Stack::family(&f, &reg);
    let text = std::fs::read_to_string(&fam.file).unwrap();
    std::fs::write(&fam.file, text + "\n[backup]\nbefore_swap = true\n").unwrap();
    fam.up(&f);
    // One visit: the database on the data volume holds one row.
    eventually(|| http_get(&fam.addr(), "/visit"));
    let r = fam.swap(&f, &["swap", &fam.image("v2")]);
    assert_eq!(r["outcome"], "deployed", "{r}");
    let steps: Vec<&str> = r["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["step"].as_str().unwrap())
        .collect();
    let at = |name: &str| steps.iter().position(|s| *s == name);
    assert!(
        at("backup").is_some() && at("backup") < at("start"),
        "the backup comes before the new app starts: {steps:?}"
    );
    let list: Vec<Value> =
        serde_json::from_str(&f.ok(&["backups", "-f", fam.file(), "--format", "json"])).unwrap();
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["reason"], "before-swap", "{list:?}");
    f.ok(&["down", "--volumes", "-f", fam.file()]);
}
