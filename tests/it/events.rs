//! `frun events`: what the holders and the supervisor record (start, die, oom, restart,
//! health_status), read back with Docker's flags (`--since`, `--until`, `--filter`,
//! `--format json`), and streamed to a reader that is already waiting.

use crate::common::*;
use crate::logs::{image, wait_status};
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::process::Stdio;

/// The stored events `--filter`s select, oldest first (`--until 0s`: up to now, then exit).
fn events(f: &Frun, filters: &[&str]) -> Vec<Value> {
    let mut args = vec![
        "events", "--since", "0", "--until", "0s", "--format", "json",
    ];
    for x in filters {
        args.extend(["--filter", x]);
    }
    f.ok(&args)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect()
}

fn kinds(evs: &[Value]) -> Vec<String> {
    evs.iter()
        .map(|e| e["kind"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn a_restarting_container_is_told_start_die_restart_in_order() {
    let Some(reg) = registry() else { return };
    let f = Frun::new().checked();
    let id = f.ok(&[
        "run",
        "-d",
        "--name",
        "flaky",
        "--restart",
        "on-failure:1",
        &image(&reg, "busybox"),
        "sh",
        "-c",
        "exit 3",
    ]);
    let id = id.trim();
    // Started, died, restarted once, died again: the policy gives up.
    let evs = wait_for(60, "two deaths", || {
        let e = events(&f, &["container=flaky"]);
        (e.iter().filter(|e| e["kind"] == "die").count() == 2).then_some(e)
    });
    assert_eq!(
        kinds(&evs),
        ["start", "die", "restart", "start", "die"],
        "{evs:#?}"
    );
    for e in &evs {
        assert_eq!(e["id"], id, "{e}");
        assert_eq!(e["container"], "flaky", "{e}");
        assert_eq!(e["type"], "container", "{e}");
        assert_eq!(e["attrs"]["image"], image(&reg, "busybox:latest"), "{e}");
    }
    assert_eq!(evs[1]["attrs"]["exitCode"], "3");
    assert_eq!(evs[1]["attrs"]["oomKilled"], "false");
    assert_eq!(evs[2]["attrs"]["restartCount"], "1");
    // Times in order; the filters by id prefix and event kind select the same.
    let times: Vec<&str> = evs.iter().map(|e| e["time"].as_str().unwrap()).collect();
    let mut sorted = times.clone();
    sorted.sort();
    assert_eq!(times, sorted);
    let dies = events(&f, &[&format!("container={}", &id[..12]), "event=die"]);
    assert_eq!(kinds(&dies), ["die", "die"]);
    assert!(events(&f, &["type=stack"]).is_empty());
    // --since a time after everything: nothing.
    wait_status(&f, "flaky", "exited");
    let late = f.ok(&["events", "--since", "0s", "--until", "0s"]);
    assert_eq!(late, "");
    // The table form is Docker's: TIME TYPE ACTION ID (attributes).
    let table = f.ok(&[
        "events",
        "--since",
        "0",
        "--until",
        "0s",
        "--filter",
        "event=restart",
    ]);
    assert!(
        table.contains(&format!(
            " container restart {id} (image={}, name=flaky, restartCount=1)",
            image(&reg, "busybox:latest")
        )),
        "{table}"
    );
    // Bad flags: named, nothing printed.
    let err = f.fails(&["events", "--filter", "colour=red", "--until", "0s"]);
    assert!(
        err.contains("colour=red") && err.contains("unknown key"),
        "{err}"
    );
    let err = f.fails(&["events", "--since", "yesterday"]);
    assert!(err.contains("\"yesterday\""), "{err}");
    f.ok(&["rm", "flaky"]);
}

#[test]
fn an_oom_kill_comes_before_the_death_it_caused() {
    let Some(reg) = registry() else { return };
    let f = Frun::new().checked();
    let out = f.run(&[
        "run",
        "-q",
        "--name",
        "hog",
        "--memory",
        "32m",
        "--memory-swap",
        "32m",
        &image(&reg, "checker"),
        "checker",
        "alloc",
        "200",
    ]);
    assert_eq!(out.status.code(), Some(137), "{}", text(&out.stderr));
    let evs = events(&f, &["container=hog"]);
    assert_eq!(kinds(&evs), ["start", "oom", "die"], "{evs:#?}");
    assert_eq!(evs[1]["attrs"]["init"], "true", "{evs:#?}");
    assert_eq!(evs[2]["attrs"]["oomKilled"], "true", "{evs:#?}");
    assert_eq!(evs[2]["attrs"]["exitCode"], "137", "{evs:#?}");
    f.ok(&["rm", "hog"]);
}

/// A reader started before anything happens sees events as they come (Docker streams
/// without `--until`), and only those its filter asks for.
#[test]
fn a_waiting_reader_sees_new_events_as_they_come() {
    let Some(reg) = registry() else { return };
    let f = Frun::new().checked();
    // Something before the reader started: not shown (no --since).
    f.ok(&[
        "run",
        "-q",
        "--name",
        "before",
        &image(&reg, "busybox"),
        "true",
    ]);
    let mut reader = f
        .command(&[
            "events",
            "--format",
            "json",
            "--filter",
            "container=live",
            "--filter",
            "container=before",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(reader.stdout.take().unwrap()).lines();
    // The reader is watching once it runs; a run right after it is not missed: the
    // reader opens the log before it looks at the past, and from `now` on it streams.
    // Give it the moment it needs to start before the first event.
    wait_for(10, "the reader to open the event log", || {
        std::fs::read_dir(format!("/proc/{}/fd", reader.id()))
            .ok()?
            .flatten()
            .any(|e| {
                std::fs::read_link(e.path())
                    .is_ok_and(|p| p.to_string_lossy().contains("anon_inode:inotify"))
            })
            .then_some(())
    });
    let out = f.run(&[
        "run",
        "-q",
        "--name",
        "live",
        &image(&reg, "busybox"),
        "sh",
        "-c",
        "exit 5",
    ]);
    assert_eq!(out.status.code(), Some(5), "{}", text(&out.stderr));
    let mut got = Vec::new();
    while got.len() < 2 {
        let l = lines.next().expect("a line").unwrap();
        got.push(serde_json::from_str::<Value>(&l).unwrap());
    }
    assert_eq!(kinds(&got), ["start", "die"], "{got:#?}");
    assert!(got.iter().all(|e| e["container"] == "live"), "{got:#?}");
    assert_eq!(got[1]["attrs"]["exitCode"], "5");
    // Still streaming: it is ended by its caller, as `docker events` is.
    assert!(reader.try_wait().unwrap().is_none());
    reader.kill().unwrap();
    reader.wait().unwrap();
    f.ok(&["rm", "before", "live"]);
}

/// The supervisor's health checks: a stack's app turning healthy is an event with its
/// stack and role.
#[test]
fn a_stack_app_turning_healthy_is_an_event_with_its_role() {
    let Some(reg) = registry() else { return };
    let f = Frun::new().checked();
    let dir = f.dir.path().join("stack");
    std::fs::create_dir_all(dir.join("www")).unwrap();
    std::fs::write(dir.join("www/index.html"), "hi\n").unwrap();
    let file = dir.join("frun.toml");
    std::fs::write(
        &file,
        format!(
            r#"name = "evs"

[app]
image = "{reg}/test/busybox"
port = 8080
command = ["httpd", "-f", "-p", "8080", "-h", "/www"]
stop_grace = "1s"

[app.health]
http = "/"
interval = "200ms"

[data]
volumes = ["{www}:/www:ro"]
"#,
            www = dir.join("www").display()
        ),
    )
    .unwrap();
    f.ok(&["up", "-f", file.to_str().unwrap()]);
    let evs = wait_for(30, "a health event", || {
        let e = events(&f, &["event=health_status", "role=app"]);
        (!e.is_empty()).then_some(e)
    });
    assert_eq!(evs[0]["attrs"]["status"], "healthy", "{evs:#?}");
    assert_eq!(evs[0]["attrs"]["was"], "starting", "{evs:#?}");
    assert_eq!(evs[0]["stack"], "evs", "{evs:#?}");
    // `ps` and `inspect` tell the same health (as Docker's STATUS "(healthy)").
    let ps: Vec<Value> = serde_json::from_str(&f.ok(&["ps", "--format", "json"])).unwrap();
    let app = ps.iter().find(|c| c["role"] == "app").expect("the app");
    assert_eq!(app["health"], "healthy", "{app}");
    let name = app["name"].as_str().unwrap();
    let v: Value = serde_json::from_str(&f.ok(&["inspect", name])).unwrap();
    assert_eq!(v[0]["health"], "healthy", "{}", v[0]);
    let table = f.ok(&["ps"]);
    assert!(table.contains("running (healthy)"), "{table}");
    // The start before it, of the same container.
    let starts = events(&f, &["event=start", "stack=evs", "role=app"]);
    assert_eq!(starts.len(), 1, "{starts:#?}");
    assert_eq!(starts[0]["id"], evs[0]["id"]);
    assert!(starts[0]["time"].as_str() < evs[0]["time"].as_str());
    f.ok(&["down", "-f", file.to_str().unwrap()]);
    let dies = events(&f, &["event=die", "stack=evs", "role=app"]);
    assert_eq!(dies.len(), 1, "{dies:#?}");
}
