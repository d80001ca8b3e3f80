//! A stack role's logs outlive its generations: `frun logs app` reads on across the
//! containers that `up` replaced (the last few are kept after their containers go, also
//! after `down`), and `frun gc` sweeps only what is beyond that or has no owner.

use crate::common::*;
use serde_json::Value;

fn write_stack(f: &Frun, reg: &str, gen: u32) -> std::path::PathBuf {
    write_stack_file(
        f,
        &format!(
            r#"name = "rl"

[app]
image = "{reg}/test/busybox"
command = ["sh", "-c", "echo generation $GEN; exec sleep 600"]
env = {{ GEN = "{gen}" }}
stop_grace = "1s"
"#
        ),
    )
}

fn generations_logged(f: &Frun, key: &str) -> Vec<String> {
    f.ok(&["logs", key])
        .lines()
        .filter(|l| l.starts_with("generation "))
        .map(String::from)
        .collect()
}

#[test]
fn a_roles_logs_survive_its_generations_and_gc_keeps_only_the_last_few() {
    let Some(reg) = registry() else { return };
    let f = Frun::new().checked();
    // 1. Five generations of the app, each replacing the one before.
    for gen in 1..=5 {
        let file = write_stack(&f, &reg, gen);
        f.ok(&["up", "-f", file.to_str().unwrap()]);
        wait_for(30, &format!("generation {gen} logged"), || {
            generations_logged(&f, "app")
                .contains(&format!("generation {gen}"))
                .then_some(())
        });
        if gen == 2 {
            // The first replacement: both generations, oldest first.
            assert_eq!(
                generations_logged(&f, "app"),
                ["generation 1", "generation 2"]
            );
        }
    }
    // 2. Three gone generations are kept beside the running one.
    assert_eq!(
        generations_logged(&f, "app"),
        [
            "generation 2",
            "generation 3",
            "generation 4",
            "generation 5"
        ]
    );
    // 3. After `down` the role's last three stay, under the group's name.
    let file = write_stack(&f, &reg, 5);
    f.ok(&["down", "-f", file.to_str().unwrap()]);
    assert_eq!(
        generations_logged(&f, "rl-app"),
        ["generation 3", "generation 4", "generation 5"]
    );
    // 4. gc keeps them; a directory without an owner or a meta (a crash) goes.
    let orphan = f.root().join("logs/rl-app/0123456789abcdef");
    std::fs::create_dir_all(&orphan).unwrap();
    std::fs::write(orphan.join("container.log"), "x\n").unwrap();
    let gc: Value = serde_json::from_str(&f.ok(&["gc", "--format", "json"])).unwrap();
    assert_eq!(gc["log_dirs"], 1, "{gc}");
    assert!(!orphan.exists());
    assert_eq!(
        generations_logged(&f, "rl-app"),
        ["generation 3", "generation 4", "generation 5"]
    );
    let gc: Value = serde_json::from_str(&f.ok(&["gc", "--format", "json"])).unwrap();
    assert_eq!(gc["log_dirs"], 0, "{gc}");
}
