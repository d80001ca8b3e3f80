//! `frun swap`, `frun rollback` and `frun up` of a stack with no proxy whose app
//! publishes its own port: the new app's holder takes the listening socket over from the
//! old one's (a hand-off over the holders' control sockets), so that under a steady load
//! of new connections and of keep-alive clients no request fails, and a kill of frun at
//! any phase leaves the port serving.

use crate::common::*;
use crate::swap::{assert_answers_follow_the_swaps, ok_if, Load, Sample, Stack};
use serde_json::Value;
use std::time::{Duration, Instant};

/// Both loads at once: clients on a new connection per request, and keep-alive ones.
struct Loads(Load, Load);

impl Loads {
    fn start(addr: String) -> Loads {
        Loads(
            Load::start(addr.clone(), 2, false),
            Load::start(addr, 2, true),
        )
    }

    fn finish(self) -> Vec<Sample> {
        let mut all = self.0.finish();
        all.extend(self.1.finish());
        all
    }
}

fn assert_none_failed(samples: &[Sample]) {
    let failed: Vec<&Sample> = samples.iter().filter(|s| s.result.is_err()).collect();
    assert!(
        failed.is_empty(),
        "{} of {} requests failed: {:?}",
        failed.len(),
        samples.len(),
        failed.iter().take(10).collect::<Vec<_>>()
    );
}

/// Six swaps v1 <-> v2 under load: no request fails, and once a swap has returned only
/// the new app answers; one app generation is left.
#[test]
fn swaps_of_a_published_port_under_load_fail_no_request() {
    let Some(reg) = registry() else { return };
    let f = Frun::new();
    let solo = Stack::solo(&f, &reg);
    solo.up(&f);
    f.ok(&["pull", "-q", &solo.image("v2")]);

    let load = Loads::start(solo.addr());
    std::thread::sleep(Duration::from_millis(300));
    let (mut starts, mut ends) = (Vec::new(), Vec::new());
    for i in 0..6 {
        let tag = if i % 2 == 0 { "v2" } else { "v1" };
        starts.push(Instant::now());
        let r = solo.swap(&f, &["swap", &solo.image(tag)]);
        assert_eq!(r["outcome"], "deployed", "{r}");
        ends.push((Instant::now(), format!("{tag}\n")));
        std::thread::sleep(Duration::from_millis(300));
    }
    let samples = load.finish();
    assert_none_failed(&samples);
    assert!(samples.len() > 100, "too little load: {}", samples.len());
    assert_answers_follow_the_swaps(&samples, &starts, &ends);
    assert_eq!(solo.apps(&f).len(), 1);
    let h = solo.history(&f);
    assert_eq!(h.len(), 7, "{h:?}");
    for e in &h[1..] {
        eprintln!("swap steps (ms): {}", e["steps"]);
    }
    eprintln!("requests: {}", samples.len());
    let switch = h[1]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s["step"] == "switch");
    assert!(switch, "{}", h[1]);
    f.ok(&["down", "-f", solo.file()]);
}

/// A new image that never becomes healthy: the swap fails, the old app serves on
/// throughout and alone. Then a swap, a rollback and an `up` to a changed image, all
/// under load with no failed request.
#[test]
fn a_failed_swap_leaves_the_port_serving_and_rollback_and_up_hand_over_too() {
    let Some(reg) = registry() else { return };
    let f = Frun::new();
    let solo = Stack::solo(&f, &reg);
    solo.up(&f);
    f.ok(&["pull", "-q", &solo.image("v2")]);
    let load = Loads::start(solo.addr());

    // 1. Never healthy.
    let err = f.fails(&["swap", &solo.image("broken"), "-f", solo.file()]);
    assert!(err.contains("did not become ready"), "{err}");
    assert_eq!(solo.version().unwrap(), "v1\n");
    let apps = solo.apps(&f);
    assert_eq!(apps.len(), 1, "{apps:?}");
    assert_eq!(apps[0]["name"], "solo-app.1");
    assert_eq!(solo.history(&f).last().unwrap()["outcome"], "failed");

    // 2. An old holder that answers on no hand-off socket (as one of an older frun):
    //    refused, nothing started, the port serves on.
    let ps: Vec<Value> = serde_json::from_str(&f.ok(&["ps", "--format", "json"])).unwrap();
    let id = ps[0]["id"].as_str().unwrap().to_string();
    let sock = f.dir.path().join(format!("run/ports/{id}.sock"));
    let aside = sock.with_extension("aside");
    std::fs::rename(&sock, &aside).unwrap();
    let err = f.fails(&["swap", &solo.image("v2"), "-f", solo.file()]);
    assert!(
        err.contains("solo-app.1") && err.contains("no hand-off socket"),
        "{err}"
    );
    assert_eq!(solo.apps(&f).len(), 1);
    assert_eq!(solo.version().unwrap(), "v1\n");
    std::fs::rename(&aside, &sock).unwrap();

    // 3. A swap and a rollback.
    let r = solo.swap(&f, &["swap", &solo.image("v2")]);
    assert_eq!(r["outcome"], "deployed", "{r}");
    assert_eq!(solo.version().unwrap(), "v2\n");
    let r = solo.swap(&f, &["rollback"]);
    assert_eq!(r["outcome"], "deployed", "{r}");
    assert_eq!(solo.version().unwrap(), "v1\n");

    // 4. `up` of a stack file that names another image: handed over too.
    let text = std::fs::read_to_string(&solo.file).unwrap();
    std::fs::write(&solo.file, text.replace("family/app:v1", "family/app:v2")).unwrap();
    let out = f.ok(&["up", "-f", solo.file()]);
    assert!(out.contains("created"), "{out}");
    assert_eq!(solo.version().unwrap(), "v2\n");
    assert_eq!(solo.apps(&f).len(), 1);

    let samples = load.finish();
    assert_none_failed(&samples);
    assert!(samples.len() > 50, "too little load: {}", samples.len());
    f.ok(&["down", "-f", solo.file()]);
}

/// `kill -9` of frun at each phase of a swap, then `frun up`: the port serves all along
/// and after, with exactly one app generation left.
#[test]
fn a_swap_of_a_published_port_killed_at_each_phase_is_finished_or_undone() {
    let Some(reg) = registry() else { return };
    let f = Frun::new();
    Stack::solo(&f, &reg).swap_killed_at_each_phase_is_finished_or_undone(&f);
}

/// `kill -9` of `frun up` (to a changed image) once the new app is created, and once it
/// is ready (holding the port, paused): the old app serves on, and the next `up`
/// finishes the replacement with one app generation left.
#[test]
fn an_up_killed_while_it_hands_the_port_over_is_finished_by_the_next_up() {
    let Some(reg) = registry() else { return };
    let f = Frun::new();
    let solo = Stack::solo(&f, &reg);
    solo.up(&f);
    let text = std::fs::read_to_string(&solo.file).unwrap();
    let mut serving = "v1";
    for step in ["up.app-created", "up.app-ready"] {
        let next = if serving == "v1" { "v2" } else { "v1" };
        std::fs::write(
            &solo.file,
            text.replace("family/app:v1", &format!("family/app:{next}")),
        )
        .unwrap();
        let out = f
            .command(&["up", "-f", solo.file()])
            .env("FRUN_TEST_STOP_AT", step)
            .output()
            .unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(out.status.signal(), Some(9), "killed at {step}: {out:?}");
        assert_eq!(
            solo.version().unwrap(),
            format!("{serving}\n"),
            "the old app serves after a kill at {step}"
        );
        let out = f.ok(&["up", "-f", solo.file()]);
        serving = next;
        assert_eq!(
            solo.version().unwrap(),
            format!("{serving}\n"),
            "after a kill at {step} and an up: {out}"
        );
        assert_eq!(solo.apps(&f).len(), 1, "after a kill at {step}");
    }
    f.ok(&["down", "-f", solo.file()]);
}

fn container_pid(f: &Frun, name: &str) -> Option<i32> {
    let ps: Vec<Value> = serde_json::from_str(&f.ok(&["ps", "--format", "json"])).unwrap();
    ps.iter()
        .find(|c| c["name"] == name)
        .and_then(|c| c["pid"].as_i64())
        .map(|p| p as i32)
}

/// A swap killed once the new app accepts and the old one is paused (draining); then
/// the new app dies and its restart policy starts it again while the old holder still
/// holds the port: it takes the port over again and accepts at once (it had been
/// resumed), so the port answers before any `frun up`, and after it.
#[test]
fn a_new_app_restarted_after_the_switch_accepts_again() {
    let Some(reg) = registry() else { return };
    let f = Frun::new();
    let solo = Stack::solo(&f, &reg);
    solo.up(&f);
    f.ok(&["pull", "-q", &solo.image("v2")]);
    let out = f
        .command(&["swap", &solo.image("v2"), "-f", solo.file()])
        .env("FRUN_TEST_STOP_AT", "draining")
        .output()
        .unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(out.status.signal(), Some(9), "{out:?}");
    assert_eq!(solo.version().unwrap(), "v2\n");
    assert_eq!(solo.apps(&f).len(), 2, "the old app is left paused");

    let pid = container_pid(&f, "solo-app.2").expect("the new app runs");
    kill9(pid);
    eventually(|| match container_pid(&f, "solo-app.2") {
        Some(p) if p != pid => solo.version().and_then(|v| ok_if(v == "v2\n", v)),
        other => Err(format!("not restarted yet: {other:?}")),
    });

    f.ok(&["up", "-f", solo.file()]);
    assert_eq!(solo.version().unwrap(), "v2\n");
    assert_eq!(solo.apps(&f).len(), 1);
    f.ok(&["down", "-f", solo.file()]);
}
