//! A container address handed out again: every container, and the host, reaches the new
//! holder at once. With a random MAC per container they did not: a container that had
//! talked to the previous holder kept its neighbour entry (the old MAC, REACHABLE for up
//! to ~45 s) and its packets went nowhere, which is what a proxy meets on the third
//! generation of a swapped app (found by scripts/bench/swap.sh: nginx hung on v1 -> v2 -> v1).

use crate::common::*;
use std::time::{Duration, Instant};

fn address(f: &Frun, name: &str) -> String {
    let out = f.ok(&["exec", name, "hostname", "-i"]);
    out.split_whitespace()
        .next()
        .expect("an address")
        .to_string()
}

/// `wget` from container `from` to `http://ADDR/i`, bounded by `timeout` (busybox wget's
/// own -T crashes on Debian 12): the body, or the error.
fn fetch(f: &Frun, from: &str, addr: &str, secs: u32) -> Result<String, String> {
    let url = format!("http://{addr}/i");
    let secs = secs.to_string();
    let o = f.run(&[
        "exec", from, "timeout", &secs, "wget", "-q", "-O", "-", &url,
    ]);
    if o.status.success() {
        Ok(String::from_utf8_lossy(&o.stdout).into_owned())
    } else {
        Err(format!(
            "wget {url} from {from}: {}",
            String::from_utf8_lossy(&o.stderr)
        ))
    }
}

fn server(f: &Frun, image: &str, name: &str, text: &str) {
    f.ok(&[
        "run",
        "-d",
        "--name",
        name,
        image,
        "sh",
        "-c",
        &format!("mkdir -p /tmp/w && echo {text} > /tmp/w/i && exec httpd -f -p 80 -h /tmp/w"),
    ]);
}

#[test]
fn a_reused_address_is_reached_at_once_by_a_container_that_knew_the_old_holder() {
    let Some(reg) = registry() else { return };
    let f = Frun::new();
    let image = format!("{reg}/test/busybox");
    server(&f, &image, "old", "old");
    f.ok(&["run", "-d", "--name", "client", &image, "sleep", "300"]);
    let a = address(&f, "old");
    // The client learns the old holder's MAC.
    let start = Instant::now();
    let body = loop {
        match fetch(&f, "client", &a, 5) {
            Ok(b) => break b,
            Err(e) if start.elapsed() > Duration::from_secs(30) => panic!("{e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    };
    assert_eq!(body, "old\n");

    // The address goes to a new container (the lowest free one: the same).
    f.ok(&["rm", "-f", "old"]);
    server(&f, &image, "new", "new");
    assert_eq!(
        address(&f, "new"),
        a,
        "the allocator did not hand out {a} again"
    );

    // The new server listens (asked from inside itself) ...
    let start = Instant::now();
    while let Err(e) = fetch(&f, "new", "127.0.0.1", 5) {
        assert!(start.elapsed() < Duration::from_secs(30), "{e}");
        std::thread::sleep(Duration::from_millis(100));
    }
    // ... so the client's first request to it succeeds: with the old MAC in its neighbour
    // entry it would hang until wget's timeout.
    let body = fetch(&f, "client", &a, 5)
        .unwrap_or_else(|e| panic!("the new holder of {a} is unreachable from the client: {e}"));
    assert_eq!(body, "new\n");
    f.ok(&["rm", "-f", "new", "client"]);
}
