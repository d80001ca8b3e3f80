//! `frun up` / `down` / `status` and the supervisor, end to end: a stack file, the real
//! binary, the test run's network namespace. The app is busybox httpd with a CGI
//! script that counts visits in a file of the stack's data volume (the family images
//! replace it when they are in the test registries).

use crate::common::*;
use serde_json::Value;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A stack directory: the app's web root with a CGI script that appends a line to
/// `/var/db/visits` (the data volume) and answers the count.
struct Stack {
    dir: PathBuf,
    port: u16,
}

impl Stack {
    fn new(f: &Frun, reg: &str, extra_app: &str) -> Stack {
        let dir = f.dir.path().join("stack");
        let www = dir.join("www/cgi-bin");
        std::fs::create_dir_all(&www).unwrap();
        std::fs::write(dir.join("www/index.html"), "hello from the stack\n").unwrap();
        let script = www.join("visit");
        std::fs::write(
            &script,
            "#!/bin/sh\necho visit >> /var/db/visits\necho \"visit number $(wc -l < /var/db/visits)\" >&2\nprintf 'Content-Type: text/plain\\r\\n\\r\\n'\nwc -l < /var/db/visits\n",
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let port = free_port();
        let s = Stack { dir, port };
        s.write(reg, extra_app);
        s
    }

    fn write(&self, reg: &str, extra_app: &str) {
        std::fs::write(
            self.file(),
            format!(
                r#"name = "fam"

[app]
image = "{reg}/test/busybox"
port = 8080
command = ["httpd", "-f", "-v", "-p", "8080", "-h", "/www"]
ports = ["127.0.0.1:{port}:8080"]
stop_grace = "1s"
{extra_app}
[app.health]
http = "/"
interval = "200ms"

[data]
volumes = ["famdb:/var/db", "{www}:/www:ro"]
"#,
                port = self.port,
                www = self.dir.join("www").display()
            ),
        )
        .unwrap();
    }

    fn file(&self) -> PathBuf {
        self.dir.join("frun.toml")
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn visit(&self) -> u32 {
        eventually_for(20, "the stack", || http_get(&self.addr(), "/cgi-bin/visit"))
            .trim()
            .parse()
            .unwrap()
    }
}

/// `frun logs NAME`, both streams (busybox httpd logs on stderr).
fn logs(f: &Frun, name: &str) -> String {
    let out = f.run(&["logs", name]);
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

fn status(f: &Frun, s: &Stack) -> Vec<Value> {
    let out = f.ok(&[
        "status",
        "-f",
        s.file().to_str().unwrap(),
        "--format",
        "json",
    ]);
    serde_json::from_str(&out).unwrap()
}

fn up(f: &Frun, s: &Stack) -> String {
    f.ok(&["up", "-f", s.file().to_str().unwrap()])
}

fn app(f: &Frun, s: &Stack) -> Value {
    let st = status(f, s);
    let apps: Vec<&Value> = st.iter().filter(|r| r["role"] == "app").collect();
    assert_eq!(apps.len(), 1, "{st:?}");
    apps[0].clone()
}

fn container_pid(f: &Frun, name: &str) -> i32 {
    let ps: Vec<Value> = serde_json::from_str(&f.ok(&["ps", "--format", "json"])).unwrap();
    ps.iter()
        .find(|c| c["name"] == name)
        .and_then(|c| c["pid"].as_i64())
        .unwrap_or_else(|| panic!("{name} not running: {ps:?}")) as i32
}

fn supervisor_pid(f: &Frun) -> i32 {
    let sock = f.dir.path().join("run/supervise.sock");
    let mut s = std::os::unix::net::UnixStream::connect(&sock).unwrap();
    writeln!(s, "ping").unwrap();
    let mut a = String::new();
    s.read_to_string(&mut a).unwrap();
    a.trim().strip_prefix("pong ").unwrap().parse().unwrap()
}

#[test]
fn up_serves_keeps_data_across_down_and_restarts_nothing_when_run_twice() {
    let Some(reg) = registry() else { return };
    let f = Frun::new();
    let s = Stack::new(&f, &reg, "");
    let out = up(&f, &s);
    assert!(
        out.contains("fam-app.1") && out.contains("created"),
        "{out}"
    );
    assert_eq!(http_get(&s.addr(), "/").unwrap(), "hello from the stack\n");
    assert_eq!(s.visit(), 1);
    assert_eq!(s.visit(), 2);
    let a = app(&f, &s);
    assert_eq!(a["name"], "fam-app.1");
    assert!(
        a["image_digest"].as_str().unwrap().starts_with("sha256:"),
        "{a}"
    );
    assert!(a["address"].as_str().unwrap().starts_with("10.89."), "{a}");
    assert_eq!(a["ports"][0], format!("127.0.0.1:{}:8080/tcp", s.port));
    let pid = container_pid(&f, "fam-app.1");

    // Twice: nothing restarts.
    let out = up(&f, &s);
    assert!(
        out.contains("unchanged") && !out.contains("created"),
        "{out}"
    );
    assert_eq!(container_pid(&f, "fam-app.1"), pid);
    // The role name finds the container.
    assert!(logs(&f, "app").contains("response:200"));

    // A changed role is recreated (a new generation).
    s.write(&reg, "env = { CHANGED = \"1\" }\n");
    let out = up(&f, &s);
    assert!(
        out.contains("fam-app.2") && out.contains("created"),
        "{out}"
    );
    assert_eq!(app(&f, &s)["name"], "fam-app.2");
    assert_eq!(s.visit(), 3, "the data volume is the same");

    // down keeps the volume; up brings the data back.
    f.ok(&["down", "-f", s.file().to_str().unwrap()]);
    assert!(status(&f, &s).is_empty());
    assert!(http_get(&s.addr(), "/").is_err());
    up(&f, &s);
    assert_eq!(s.visit(), 4);
    f.ok(&["down", "--volumes", "-f", s.file().to_str().unwrap()]);
    assert!(!f.root().join("volumes/famdb").exists());
    assert!(f.ok(&["ps", "-a", "--format", "json"]).trim() == "[]");
}

#[test]
fn killed_app_restarts_and_killed_supervisor_loses_nothing() {
    let Some(reg) = registry() else { return };
    let f = Frun::new();
    let s = Stack::new(&f, &reg, "");
    up(&f, &s);
    assert_eq!(s.visit(), 1);

    // kill -9 of the app: its restart policy (always, a stack's default) starts it again.
    let pid = container_pid(&f, "fam-app.1");
    kill9(pid);
    let restarted = eventually_for(20, "the stack", || {
        let a = app(&f, &s);
        if a["restarts"].as_u64() >= Some(1) && a["status"] == "running" {
            Ok(a)
        } else {
            Err(format!("{a}"))
        }
    });
    assert_eq!(restarted["name"], "fam-app.1");
    assert_eq!(s.visit(), 2);

    // kill -9 of the supervisor: the app keeps answering and logging.
    let sup = supervisor_pid(&f);
    let answered = |f: &Frun| logs(f, "fam-app.1").matches("visit number").count();
    let before = answered(&f);
    kill9(sup);
    eventually_for(5, "the stack", || {
        if alive(sup) {
            Err("alive".to_string())
        } else {
            Ok(())
        }
    });
    assert_eq!(s.visit(), 3);
    eventually_for(10, "the stack", || {
        let n = answered(&f);
        if n > before {
            Ok(())
        } else {
            Err(format!(
                "{n} answers logged, {before} before:\n{}\nhealth: {:?}\nsupervisor:\n{}",
                logs(&f, "fam-app.1"),
                files_below(&f.root().join("containers"))
                    .iter()
                    .filter(|p| p.ends_with("health.json"))
                    .map(
                        |p| std::fs::read_to_string(f.root().join("containers").join(p))
                            .unwrap_or_default()
                    )
                    .collect::<Vec<_>>(),
                std::fs::read_to_string(f.dir.path().join("run/supervise.log")).unwrap_or_default()
            ))
        }
    });
    // The next `up` starts a new supervisor, which adopts the app without restarting it.
    let pid = container_pid(&f, "fam-app.1");
    up(&f, &s);
    assert_ne!(supervisor_pid(&f), sup);
    assert_eq!(container_pid(&f, "fam-app.1"), pid);
    eventually_for(20, "the stack", || {
        let a = app(&f, &s);
        if a["health"] == "healthy" {
            Ok(())
        } else {
            Err(format!("{a}"))
        }
    });
    f.ok(&["down", "-f", s.file().to_str().unwrap()]);
}

#[test]
fn after_a_simulated_reboot_up_brings_the_stack_back_under_the_same_names() {
    let Some(reg) = registry() else { return };
    let f = Frun::new();
    let s = Stack::new(&f, &reg, "");
    up(&f, &s);
    assert_eq!(s.visit(), 1);
    // Everything frun started dies, as with the machine.
    for _ in 0..3 {
        for pid in f.cgroup_pids() {
            let _ = rustix::process::kill_process(
                rustix::process::Pid::from_raw(pid).unwrap(),
                rustix::process::Signal::KILL,
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    eventually_for(10, "the stack", || {
        if f.cgroup_pids().is_empty() {
            Ok(())
        } else {
            Err(format!("{:?}", f.cgroup_pids()))
        }
    });
    assert!(http_get(&s.addr(), "/").is_err());
    up(&f, &s);
    assert_eq!(app(&f, &s)["status"], "running");
    assert_eq!(s.visit(), 2, "the data survived");
    let names: Vec<Value> = status(&f, &s).iter().map(|r| r["name"].clone()).collect();
    assert_eq!(names, vec![Value::from("fam-app.1")]);
    f.ok(&["down", "-f", s.file().to_str().unwrap()]);
}

#[test]
fn a_bad_stack_file_is_told_with_line_and_column_and_nothing_starts() {
    let Some(reg) = registry() else { return };
    let f = Frun::new();
    let s = Stack::new(&f, &reg, "");
    let text = std::fs::read_to_string(s.file()).unwrap();
    std::fs::write(
        s.file(),
        text.replace("[app.health]\nhttp", "[app.health]\nhelth"),
    )
    .unwrap();
    let err = f.fails(&["up", "-f", s.file().to_str().unwrap()]);
    let line = text.lines().position(|l| l == "http = \"/\"").unwrap() + 1;
    assert!(
        err.contains(&format!("frun.toml:{line}:1: unknown field `helth`")),
        "{err}"
    );
    assert!(
        !f.root().join("containers").exists()
            || f.ok(&["ps", "-a", "--format", "json"]).trim() == "[]"
    );
    assert!(!f.dir.path().join("run/supervise.sock").exists());
}

#[test]
fn a_missing_image_is_named_and_nothing_is_half_started() {
    let Some(reg) = registry() else { return };
    let f = Frun::new();
    let s = Stack::new(&f, &reg, "");
    up(&f, &s);
    let text = std::fs::read_to_string(s.file()).unwrap();
    std::fs::write(s.file(), text.replace("test/busybox", "test/no-such-image")).unwrap();
    let err = f.fails(&["up", "-f", s.file().to_str().unwrap()]);
    assert!(err.contains("test/no-such-image"), "{err}");
    // The previous stack serves on.
    let st = status(&f, &s);
    assert_eq!(st.len(), 1, "{st:?}");
    assert_eq!(st[0]["name"], "fam-app.1");
    assert_eq!(s.visit(), 1);
    std::fs::write(s.file(), text).unwrap();
    f.ok(&["down", "-f", s.file().to_str().unwrap()]);
}

#[test]
fn a_health_check_that_never_passes_shows_the_log_and_leaves_the_old_app() {
    let Some(reg) = registry() else { return };
    let f = Frun::new();
    let s = Stack::new(&f, &reg, "");
    up(&f, &s);
    let text = std::fs::read_to_string(s.file()).unwrap();
    // A new version that says something and never listens on its port.
    let broken = text
        .replace(
            r#"command = ["httpd", "-f", "-v", "-p", "8080", "-h", "/www"]"#,
            r#"command = ["sh", "-c", "echo starting the broken one; sleep 600"]"#,
        )
        .replace(
            "interval = \"200ms\"",
            "interval = \"200ms\"\nstart_period = \"1s\"\nretries = 2",
        );
    // (No published port of its own for the new generation to wait for.)
    let broken = broken.replace(&format!("ports = [\"127.0.0.1:{}:8080\"]\n", s.port), "");
    let served = text.replace(&format!("ports = [\"127.0.0.1:{}:8080\"]\n", s.port), "");
    std::fs::write(s.file(), &served).unwrap();
    up(&f, &s);
    std::fs::write(s.file(), &broken).unwrap();
    let err = f.fails(&["up", "-f", s.file().to_str().unwrap()]);
    assert!(err.contains("did not become ready"), "{err}");
    assert!(err.contains("starting the broken one"), "{err}");
    let st = status(&f, &s);
    assert_eq!(st.len(), 1, "{st:?}");
    assert_eq!(st[0]["status"], "running");
    std::fs::write(s.file(), &served).unwrap();
    f.ok(&["down", "-f", s.file().to_str().unwrap()]);
}

/// The family stack of `examples/family` (nginx in front of the sqlite app), with its
/// images from the test registry and a port of this test's.
pub(crate) fn family_stack(f: &Frun, reg: &str, version: &str, template: &str) -> (PathBuf, u16) {
    let dir = f.dir.path().join("family");
    std::fs::create_dir_all(&dir).unwrap();
    let port = free_port();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/family");
    std::fs::write(dir.join("proxy.conf.tmpl"), template).unwrap();
    let text = std::fs::read_to_string(repo.join("frun.toml"))
        .unwrap()
        .replace(
            "\"nginx:stable\"",
            &format!("\"{reg}/library/nginx:stable\""),
        )
        .replace(
            "\"family/app:v1\"",
            &format!("\"{reg}/family/app:{version}\""),
        )
        .replace("127.0.0.1:8080:80", &format!("127.0.0.1:{port}:80"))
        .replace("interval = \"2s\"", "interval = \"300ms\"");
    std::fs::write(dir.join("frun.toml"), text).unwrap();
    (dir.join("frun.toml"), port)
}

fn family_template() -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/family/proxy.conf.tmpl"),
    )
    .unwrap()
}

#[test]
fn the_family_stack_serves_through_nginx_writes_its_database_and_swaps_the_app_only() {
    let Some(reg) = registry() else { return };
    let f = Frun::new();
    let (file, port) = family_stack(&f, &reg, "v1", &family_template());
    let file = file.to_str().unwrap().to_string();
    let addr = format!("127.0.0.1:{port}");
    let out = f.ok(&["up", "-f", &file]);
    assert!(
        out.contains("family-proxy") && out.contains("family-app.1"),
        "{out}"
    );
    let page = eventually_for(20, "the stack", || http_get(&addr, "/"));
    assert!(page.contains("v1"), "{page}");
    // Through nginx into sqlite, as uid 1000, in the volume made from the image's /var/db.
    assert_eq!(
        eventually_for(20, "the stack", || http_get(&addr, "/visit")).trim(),
        "1"
    );
    assert_eq!(http_get(&addr, "/visit").unwrap().trim(), "2");
    let st: Vec<Value> =
        serde_json::from_str(&f.ok(&["status", "-f", &file, "--format", "json"])).unwrap();
    let roles: Vec<&str> = st.iter().map(|r| r["role"].as_str().unwrap()).collect();
    assert_eq!(roles.len(), 2, "{st:?}");
    assert!(roles.contains(&"proxy") && roles.contains(&"app"), "{st:?}");
    let proxy_pid = container_pid(&f, "family-proxy");

    // A new app version: only the app is replaced; the proxy is repointed (its link to
    // the app's socket moved, no reload), keeps its pid.
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, text.replace("family/app:v1", "family/app:v2")).unwrap();
    let out = f.ok(&["up", "-f", &file]);
    assert!(
        out.contains("family-app.2") && out.contains("repointed"),
        "{out}"
    );
    assert_eq!(container_pid(&f, "family-proxy"), proxy_pid);
    let page = eventually_for(20, "the stack", || http_get(&addr, "/"));
    assert!(page.contains("v2"), "{page}");
    assert_eq!(
        http_get(&addr, "/visit").unwrap().trim(),
        "3",
        "the data stayed"
    );

    // A config nginx rejects: nginx's message, and the stack serves on as it was.
    std::fs::write(
        file.replace("frun.toml", "proxy.conf.tmpl"),
        "server { listen 80; no_such_directive on; location / { proxy_pass http://{{upstream}}; } }\n",
    )
    .unwrap();
    std::fs::write(
        &file,
        std::fs::read_to_string(&file)
            .unwrap()
            .replace("APP_ENV = \"production\"", "APP_ENV = \"staging\""),
    )
    .unwrap();
    let err = f.fails(&["up", "-f", &file]);
    assert!(
        err.contains("unknown directive") && err.contains("no_such_directive"),
        "{err}"
    );
    let page = eventually_for(20, "the stack", || http_get(&addr, "/"));
    assert!(page.contains("v2"), "{page}");
    let st: Vec<Value> =
        serde_json::from_str(&f.ok(&["status", "-f", &file, "--format", "json"])).unwrap();
    let names: Vec<&str> = st.iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert!(
        names.contains(&"family-app.2") && names.len() == 2,
        "{names:?}"
    );
    assert_eq!(http_get(&addr, "/visit").unwrap().trim(), "4");
    f.ok(&["down", "--volumes", "-f", &file]);
    assert!(f.ok(&["ps", "-a", "--format", "json"]).trim() == "[]");
}

#[test]
fn a_port_already_taken_is_named_with_its_owner_and_nothing_starts() {
    let Some(reg) = registry() else { return };
    let f = Frun::new();
    let s = Stack::new(&f, &reg, "");
    let taken = std::net::TcpListener::bind(s.addr()).unwrap();
    let err = f.fails(&["up", "-f", s.file().to_str().unwrap()]);
    assert!(
        err.contains(&format!("port {} is already in use", s.port)) && err.contains("pid"),
        "{err}"
    );
    assert_eq!(f.ok(&["ps", "-a", "--format", "json"]).trim(), "[]");
    drop(taken);
    up(&f, &s);
    assert_eq!(s.visit(), 1);
    f.ok(&["down", "-f", s.file().to_str().unwrap()]);
}
