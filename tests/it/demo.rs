//! The README's first command, end to end: `scripts/demo.sh` builds the family images,
//! serves them from a registry in a network namespace of the demo's own, `frun up`s
//! examples/family/frun.toml there, and leaves the stack serving on 127.0.0.1:PORT of the
//! namespace it was started from (here: the test run's own); `scripts/demo.sh down` removes
//! all of it. The demo gets this test's state root, run root, cgroup parent, port and a
//! namespace name of its own, so it runs beside the other tests.

use crate::common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `GET path` over HTTP/1.0: (status code, body).
fn get(port: u16, path: &str) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(15)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: demo\r\n\r\n")?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    let code = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    Ok((code, body.to_string()))
}

/// The demo's settings for this test; `down` on drop, so a failed test leaves nothing.
struct Demo {
    f: Frun,
    port: u16,
    netns: String,
}

impl Demo {
    fn new() -> Demo {
        let f = Frun::new();
        let tag = f
            .cgroup_parent
            .trim_start_matches("/frun-test-")
            .to_string();
        Demo {
            port: free_port(),
            netns: format!("frun-demo-{tag}"),
            f,
        }
    }

    fn run_root(&self) -> PathBuf {
        self.f.dir.path().join("run")
    }

    fn script(&self, args: &[&str]) -> Output {
        let mut c = Command::new(repo().join("scripts/demo.sh"));
        c.args(args)
            .env("FRUN_ROOT", self.f.root())
            .env("FRUN_RUN_ROOT", self.run_root())
            .env("FRUN_CGROUP_PARENT", &self.f.cgroup_parent)
            .env("FRUN_DEMO_PORT", self.port.to_string())
            .env("FRUN_DEMO_NETNS", &self.netns)
            .env("FRUN_BIN", env!("CARGO_BIN_EXE_frun"))
            .env_remove("FRUN_REGISTRY_MIRROR")
            .stdin(Stdio::null());
        c.output().expect("run scripts/demo.sh")
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.script(args);
        assert!(
            out.status.success(),
            "scripts/demo.sh {args:?} failed ({}):\nstdout:\n{}\nstderr:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn netns_path(&self) -> PathBuf {
        Path::new("/run/netns").join(&self.netns)
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        if self.netns_path().exists() || self.run_root().join("demo").exists() {
            let out = self.script(&["down"]);
            if !out.status.success() {
                eprintln!(
                    "scripts/demo.sh down (cleanup) failed:\n{}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
    }
}

fn visits(port: u16) -> u64 {
    let (code, body) = get(port, "/visit").expect("GET /visit");
    assert_eq!(code, 200, "GET /visit: {body}");
    body.trim()
        .parse()
        .unwrap_or_else(|_| panic!("GET /visit answered {body:?}, not a count"))
}

#[test]
fn demo_serves_the_family_stack_and_down_removes_everything() {
    // Root, and the test run's own network namespace (scripts/test.sh's registries prove
    // it): the demo's forwarder listens on this namespace's 127.0.0.1.
    if registry().is_none() {
        return;
    }
    let d = Demo::new();

    // 1. The demo: up, checked, left running; it says where and what to try.
    let out = d.ok(&[]);
    let url = format!("http://127.0.0.1:{}/", d.port);
    assert!(out.contains(&url), "the demo does not print {url}:\n{out}");
    for next in ["frun status", "frun swap family/app:v2", "demo.sh down"] {
        assert!(
            out.contains(next),
            "the demo does not suggest `{next}`:\n{out}"
        );
    }
    assert!(d.netns_path().exists(), "no network namespace {}", d.netns);

    // 2. It keeps serving after the script returned: the app's page through nginx, and a
    //    visit counter that goes up by one per request.
    let (code, page) = eventually_for(30, "the demo's page", || {
        get(d.port, "/").map_err(|e| e.to_string())
    });
    assert_eq!(code, 200, "GET /: {page}");
    assert!(page.contains("family app v1"), "GET / answered {page}");
    let a = visits(d.port);
    let b = visits(d.port);
    assert_eq!(b, a + 1, "/visit counted {a}, then {b}");

    // 3. `scripts/demo.sh frun ...` reaches the stack.
    let status = d.ok(&["frun", "status"]);
    for role in ["proxy", "app"] {
        assert!(status.contains(role), "frun status lacks {role}:\n{status}");
    }

    // 4. down: no namespace, no port, no state, no cgroups, nothing of it running.
    d.ok(&["down"]);
    assert!(
        !d.netns_path().exists(),
        "network namespace {} left",
        d.netns
    );
    assert!(
        TcpStream::connect(("127.0.0.1", d.port)).is_err(),
        "127.0.0.1:{} still accepts connections",
        d.port
    );
    assert!(
        !d.f.root().exists(),
        "state root {} left",
        d.f.root().display()
    );
    assert!(
        !d.run_root().exists(),
        "run root {} left",
        d.run_root().display()
    );
    assert!(
        d.f.cgroup_dirs().is_empty(),
        "cgroups left: {:?}",
        d.f.cgroup_dirs()
    );
}
