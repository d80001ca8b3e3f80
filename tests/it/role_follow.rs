//! `frun logs -f ROLE` is one stream across the role's generations: it goes on with the
//! container that `up` or `swap` started beside the one it followed, and ends when the
//! role's container ends with none after it (`down`). `--tail N` is the last N of all
//! the generations. A role's `[app.log]` rotates its log as `--log-opt` would.

use crate::common::*;
use crate::logs::wait_for;
use std::process::Stdio;

const LINES: usize = 400;

fn write_stack(f: &Frun, reg: &str, gen: u32) -> std::path::PathBuf {
    write_stack_file(
        f,
        &format!(
            r#"name = "rf"

[app]
image = "{reg}/test/busybox"
command = ["sh", "-c", "i=0; while [ $i -lt {LINES} ]; do echo gen$GEN line $i; i=$((i+1)); done; exec sleep 600"]
env = {{ GEN = "{gen}" }}
stop_grace = "1s"

[app.log]
max-size = "4k"
max-file = 2
compress = true
"#
        ),
    )
}

/// The `genN line K` numbers K of generation `gen` in `text`, in order.
fn lines_of(text: &str, gen: u32) -> Vec<usize> {
    text.lines()
        .filter_map(|l| l.strip_prefix(&format!("gen{gen} line ")))
        .map(|n| n.parse().unwrap())
        .collect()
}

#[test]
fn a_roles_log_follower_goes_on_across_generations_and_its_log_rotates_as_asked() {
    let Some(reg) = registry() else { return };
    let f = Frun::new().checked();
    // 1. Generation 1 writes its lines: [app.log] rotated them at 4k, kept 2 files,
    //    the older gzipped; what is kept ends with the last line, nothing missing.
    let file = write_stack(&f, &reg, 1);
    f.ok(&["up", "-f", file.to_str().unwrap()]);
    wait_for(30, "generation 1's last line", || {
        (lines_of(&f.ok(&["logs", "app"]), 1).last() == Some(&(LINES - 1))).then_some(())
    });
    let group = f.root().join("logs/rf-app");
    let gen_dir = std::fs::read_dir(&group)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let mut files: Vec<String> = std::fs::read_dir(&gen_dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("container.log"))
        .collect();
    files.sort();
    assert_eq!(files, ["container.log", "container.log.1.gz"]);
    let kept = lines_of(&f.ok(&["logs", "app"]), 1);
    assert!(
        kept.len() < LINES,
        "the oldest rotated away: {}",
        kept.len()
    );
    let first = kept[0];
    assert_eq!(kept, (first..LINES).collect::<Vec<_>>());

    // 2. A follower with --tail 3 sees generation 1's last three lines ...
    let out = f.dir.path().join("followed.txt");
    let follower = f
        .command(&["logs", "-f", "--tail", "3", "app"])
        .stdout(Stdio::from(std::fs::File::create(&out).unwrap()))
        .spawn()
        .unwrap();
    let mut follower = Reaped(follower);
    let followed = || std::fs::read_to_string(&out).unwrap();
    wait_for(30, "the last three lines", || {
        (lines_of(&followed(), 1).len() == 3).then_some(())
    });
    // ... then, once `up` replaced the container, generation 2's.
    let file = write_stack(&f, &reg, 2);
    f.ok(&["up", "-f", file.to_str().unwrap()]);
    wait_for(60, "generation 2 followed", || {
        (lines_of(&followed(), 2).last() == Some(&(LINES - 1))).then_some(())
    });
    assert!(
        follower.0.try_wait().unwrap().is_none(),
        "still following: {}",
        followed()
    );
    let got = followed();
    assert_eq!(
        lines_of(&got, 1),
        [LINES - 3, LINES - 2, LINES - 1],
        "{got}"
    );
    let two = lines_of(&got, 2);
    assert_eq!(two, (two[0]..LINES).collect::<Vec<_>>(), "{got}");
    assert!(
        got.find("gen1 line").unwrap() < got.find("gen2 line").unwrap(),
        "{got}"
    );

    // 3. A swap (to the same image: a new generation, still GEN=2): followed on too.
    let out = f.run(&[
        "swap",
        "--force",
        "--drain-timeout",
        "1s",
        "-f",
        file.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "swap: {}", text(&out.stderr));
    wait_for(60, "the swapped-in generation followed", || {
        let lasts = lines_of(&followed(), 2)
            .iter()
            .filter(|n| **n == LINES - 1)
            .count();
        (lasts == 2).then_some(())
    });
    assert!(follower.0.try_wait().unwrap().is_none(), "{}", followed());

    // 4. `down`: the role's container ends with none after it, and so does the follower.
    f.ok(&["down", "-f", file.to_str().unwrap()]);
    let status = wait_for(30, "the follower to end", || follower.0.try_wait().unwrap());
    assert!(status.success());
}
