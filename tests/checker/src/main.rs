//! checker: a static probe that runs inside frun's test containers and reports, from the
//! inside, what the container looks like. Every command prints one JSON object (alloc also
//! prints one line of progress per MiB before it).
//!
//! ```text
//! checker [report [ARGS...]]   the report (ARGS only show up in "argv")
//! checker exit N               exit with status N
//! checker sleep SECS           sleep (fractions allowed)
//! checker write-exe [SECS]     CVE-2019-5736 probe (default 10 s): {"opened_for_write": [...], "errors": {...}}
//! checker fork-bomb [MAX]      fork until fork fails (at most MAX children, default 2000)
//! checker alloc MB [HOLD_SECS] allocate and touch MB MiB
//! checker fds                  {"fds": [{"fd": 0, "target": "/dev/null"}, ...]}
//! ```
//!
//! Build it from its own directory so that .cargo/config.toml (crt-static) applies:
//! `cd tests/checker && cargo build --release`.

#[cfg(all(target_os = "linux", not(target_feature = "crt-static")))]
compile_error!(
    "checker must be linked statically: build it from tests/checker (cd tests/checker && cargo build --release) \
     so that tests/checker/.cargo/config.toml applies; cargo does not read it with --manifest-path from elsewhere"
);

mod cmds;
mod probes;
mod report;
mod util;

use serde_json::Value;
use std::io::Write;
use std::process::exit;

const USAGE: &str = "usage: checker [report] | exit N | sleep SECS | write-exe [SECS] | fork-bomb [MAX] | alloc MB [HOLD_SECS] | fds";

fn usage() -> ! {
    eprintln!("{USAGE}");
    exit(2)
}

fn num<T: std::str::FromStr>(arg: Option<&String>) -> T {
    match arg.map(|a| a.parse::<T>()) {
        Some(Ok(v)) => v,
        _ => usage(),
    }
}

fn num_or<T: std::str::FromStr>(arg: Option<&String>, default: T) -> T {
    match arg {
        None => default,
        Some(_) => num(arg),
    }
}

fn print(v: &Value) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{v}");
    let _ = out.flush();
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let cmd = args.first().map(String::as_str).unwrap_or("report");
    let a1 = args.get(1);
    let a2 = args.get(2);
    match cmd {
        "report" => print(&report::report()),
        "exit" => exit(num(a1)),
        "sleep" => std::thread::sleep(std::time::Duration::from_secs_f64(num::<f64>(a1).max(0.0))),
        "write-exe" => print(&cmds::write_exe(num_or(a1, 10.0f64).max(0.0))),
        "fork-bomb" => print(&cmds::fork_bomb(num_or(a1, 2000u64))),
        "alloc" => print(&cmds::alloc(num(a1), num_or(a2, 0.0f64).max(0.0))),
        "fds" => match report::fds() {
            Ok(v) => print(&serde_json::json!({ "fds": v })),
            Err(e) => {
                print(&serde_json::json!({ "fds": null, "errors": { "fds": e } }));
                exit(1)
            }
        },
        "-h" | "--help" | "help" => println!("{USAGE}"),
        _ => usage(),
    }
}
