//! Container logs: bounded memory against output without newlines, rotation with
//! nothing lost under a fast writer (plain and compressed), `-f` across rotations,
//! `--tail`/`--since`/`--until`, and where the files live.

use crate::common::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

pub fn image(reg: &str, name: &str) -> String {
    format!("{reg}/test/{name}")
}

pub fn wait_for<T>(secs: u64, what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = probe() {
            return v;
        }
        if start.elapsed() > Duration::from_secs(secs) {
            panic!("timed out after {secs} s waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `frun ps -a --format json`, the entry named `name`.
pub fn container(f: &Frun, name: &str) -> Option<Value> {
    let v: Value = serde_json::from_str(&f.ok(&["ps", "-a", "--format", "json"])).unwrap();
    v.as_array()?.iter().find(|c| c["name"] == name).cloned()
}

pub fn wait_status(f: &Frun, name: &str, status: &str) -> Value {
    wait_for(60, &format!("{name} to be {status}"), || {
        container(f, name)
            .filter(|c| c["status"] == status && (status != "exited" || !c["exit_code"].is_null()))
    })
}

/// The state file of a container (the holder's pid is there).
fn state(f: &Frun, id: &str) -> Value {
    let data = std::fs::read(f.root().join("containers").join(id).join("state.json")).unwrap();
    serde_json::from_slice(&data).unwrap()
}

/// A `/proc/PID/status` field in kB (`VmHWM`: the peak resident set).
fn status_kb(pid: i64, field: &str) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in {s}"))
}

fn log_dir(f: &Frun, name: &str, id: &str) -> PathBuf {
    f.root().join("logs").join(name).join(id)
}

fn dir_bytes(d: &Path) -> u64 {
    std::fs::read_dir(d)
        .unwrap()
        .flatten()
        .map(|e| e.metadata().unwrap().len())
        .sum()
}

#[test]
fn output_without_newlines_keeps_the_supervisor_small_and_the_log_bounded() {
    let Some(reg) = registry() else { return };
    let f = Frun::new();
    let id = f.ok(&[
        "run",
        "-d",
        "--name",
        "zero",
        "--memory",
        "64m",
        "--cpus",
        "0.5",
        "--network",
        "none",
        "--log-opt",
        "max-size=1m",
        "--log-opt",
        "max-file=2",
        &image(&reg, "checker"),
        "cat",
        "/dev/zero",
    ]);
    let id = id.trim().to_string();
    wait_status(&f, "zero", "running");
    let holder = state(&f, &id)["holder_pid"].as_i64().expect("holder pid");
    let dir = log_dir(&f, "zero", &id);
    // Many rotations' worth of NUL bytes: 64 MB of output (each 16 KiB entry is ~96 KiB
    // of JSON); the log's files are rewritten through, the supervisor reads in 16 KiB.
    let mut rotations = 0;
    let mut last_ino = 0;
    wait_for(120, "30 rotations of the log", || {
        use std::os::unix::fs::MetadataExt;
        if let Ok(m) = std::fs::metadata(dir.join("container.log.1")) {
            if m.ino() != last_ino {
                last_ino = m.ino();
                rotations += 1;
            }
        }
        (rotations >= 30).then_some(())
    });
    let hwm = status_kb(holder, "VmHWM");
    eprintln!("supervisor peak RSS after 30 rotations of `cat /dev/zero`: {hwm} kB");
    assert!(hwm < 32 * 1024, "the supervisor grew to {hwm} kB");
    // Two files of at most 1 MiB, plus one entry over the bound at most.
    let bytes = dir_bytes(&dir);
    assert!(bytes < 2 * (1 << 20) + 200 * 1024, "{bytes} bytes of logs");
    // An entry is 16 KiB of the stream, cut as Docker cuts.
    let out = f
        .command(&["logs", "--tail", "1", "zero"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(out.stdout.len(), 16384);
    assert!(out.stdout.iter().all(|b| *b == 0));
    f.ok(&["rm", "-f", "zero"]);
    assert!(
        !f.root().join("logs/zero").exists(),
        "logs go with the container"
    );
}

fn numbered(out: &[u8], n: usize, what: &str) {
    let text = String::from_utf8_lossy(out);
    let mut count = 0;
    for (i, l) in text.lines().enumerate() {
        assert_eq!(l, (i + 1).to_string(), "{what}: line {}", i + 1);
        count += 1;
    }
    assert_eq!(count, n, "{what}: every line");
}

#[test]
fn rotation_under_a_fast_writer_loses_nothing_plain_or_compressed() {
    let Some(reg) = registry() else { return };
    let f = Frun::new();
    const N: usize = 300_000;
    for (name, compress) in [("plain", "false"), ("gz", "true")] {
        let id = f.ok(&[
            "run",
            "-d",
            "--name",
            name,
            "--network",
            "none",
            "--log-opt",
            "max-size=256k",
            "--log-opt",
            "max-file=100",
            "--log-opt",
            &format!("compress={compress}"),
            &image(&reg, "checker"),
            "sh",
            "-c",
            &format!("sleep 1; seq 1 {N}"),
        ]);
        let id = id.trim().to_string();
        // A follower from the start sees every line too, across the rotations.
        let follower = f
            .command(&["logs", "-f", name])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let followed = follower.wait_with_output().unwrap();
        assert!(followed.status.success());
        numbered(&followed.stdout, N, &format!("{name}: logs -f"));
        assert_eq!(wait_status(&f, name, "exited")["exit_code"], 0);
        let out = f.command(&["logs", name]).output().unwrap();
        numbered(&out.stdout, N, &format!("{name}: logs"));
        let files: Vec<String> = std::fs::read_dir(log_dir(&f, name, &id))
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        // ~2.4 MB of entries in 256 KiB files.
        assert!(files.len() > 8, "{files:?}");
        let gz = files.iter().filter(|f| f.ends_with(".gz")).count();
        let rotated = files
            .iter()
            .filter(|f| f.starts_with("container.log."))
            .count();
        if compress == "true" {
            // All but the newest, which may still be being compressed.
            assert!(gz + 1 >= rotated, "rotated files compressed: {files:?}");
        } else {
            assert_eq!(gz, 0);
        }
        for e in std::fs::read_dir(log_dir(&f, name, &id)).unwrap().flatten() {
            assert!(e.metadata().unwrap().len() <= 256 * 1024, "{:?}", e.path());
        }
        f.ok(&["rm", name]);
    }
}

#[test]
fn tail_since_until_select_lines_and_streams_stay_apart() {
    let Some(reg) = registry() else { return };
    let f = Frun::new();
    f.ok(&[
        "run",
        "-d",
        "--name",
        "t",
        "--network",
        "none",
        &image(&reg, "checker"),
        "sh",
        "-c",
        "for i in 1 2 3 4 5; do echo out$i; echo err$i >&2; done; sleep 2; echo late",
    ]);
    wait_status(&f, "t", "exited");
    let logs = |flags: &[&str]| {
        let mut args = vec!["logs"];
        args.extend_from_slice(flags);
        args.push("t");
        let o = f.run(&args);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        (
            String::from_utf8(o.stdout).unwrap(),
            String::from_utf8(o.stderr).unwrap(),
        )
    };
    let (o, e) = logs(&[]);
    assert_eq!(o, "out1\nout2\nout3\nout4\nout5\nlate\n");
    assert_eq!(e, "err1\nerr2\nerr3\nerr4\nerr5\n");
    // Entries are in the order they were written (each stream's own order kept).
    let (o, e) = logs(&["--tail", "1"]);
    assert_eq!((o.as_str(), e.as_str()), ("late\n", ""));
    let (o, e) = logs(&["--tail", "4"]);
    assert_eq!(o.lines().count() + e.lines().count(), 4);
    // The two streams are copied by two threads: where stderr's entries fall among
    // stdout's depends on them, each stream's own order does not.
    assert!(
        o.ends_with("late\n") && (e.is_empty() || e.ends_with("err5\n")),
        "{o}{e}"
    );
    let (o, e) = logs(&["--tail", "0"]);
    assert_eq!((o.as_str(), e.as_str()), ("", ""));
    // The time of "late" from -t splits the log in two.
    let (o, _) = logs(&["-t"]);
    let late = o
        .lines()
        .last()
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .to_string();
    let (o, e) = logs(&["--since", &late]);
    assert_eq!((o.as_str(), e.as_str()), ("late\n", ""));
    let (o, e) = logs(&["--until", &late]);
    assert_eq!(o, "out1\nout2\nout3\nout4\nout5\n");
    assert_eq!(e.lines().count(), 5);
    let (o, _) = logs(&["--since", "1h"]);
    assert_eq!(o.lines().count(), 6);
    let (o, _) = logs(&["--until", "1h"]);
    assert_eq!(o, "");
    let err = f.fails(&["logs", "--since", "yesterday", "t"]);
    assert!(err.contains("\"yesterday\""), "{err}");
    let err = f.fails(&["logs", "../../etc"]);
    assert!(err.contains("no such container or log group"), "{err}");
    let err = f.fails(&["logs", "--tail", "x", "t"]);
    assert!(err.contains("--tail"), "{err}");
    let err = f.fails(&[
        "run",
        "--log-opt",
        "max-size=lots",
        &image(&reg, "checker"),
        "true",
    ]);
    assert!(err.contains("max-size=lots"), "{err}");
    f.ok(&["rm", "t"]);
}
