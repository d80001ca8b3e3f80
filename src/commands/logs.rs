//! `frun logs`: a container's log (its rotated files too), or every kept generation of
//! a log group (a stack role's), through `crate::logs::reader`.

use anyhow::bail;
use std::process::ExitCode;

use crate::cli::{Global, LogsArgs};
use crate::containers::{Container, Containers, Status};
use crate::logs::reader::{self, ReadOptions, Sink};

pub fn logs(g: &Global, args: LogsArgs) -> anyhow::Result<ExitCode> {
    // 1. Flags, before anything is read.
    let now = chrono::Utc::now();
    let opts = ReadOptions {
        tail: match args.tail.as_str() {
            "all" | "-1" => None,
            n => Some(n.parse::<usize>().map_err(|_| {
                anyhow::anyhow!("--tail {n:?}: expected a number of lines or \"all\"")
            })?),
        },
        since: args
            .since
            .as_deref()
            .map(|s| reader::parse_time(s, now))
            .transpose()?,
        until: args
            .until
            .as_deref()
            .map(|s| reader::parse_time(s, now))
            .transpose()?,
    };
    let (mut out, mut err) = (std::io::stdout().lock(), std::io::stderr().lock());
    let mut sink = Sink {
        out: &mut out,
        err: &mut err,
        timestamps: args.timestamps,
    };
    let containers = Containers::open(&g.root)?;
    // Still writing: running, or exited with its holder still copying the last of
    // the pipes (it records the exit only after that).
    let running = |id: &str| {
        containers.find(id).and_then(|c| c.state()).is_ok_and(|s| {
            s.status == Status::Running || (s.finished_at.is_none() && Container::holder_alive(&s))
        })
    };

    // 2. A container: its own log. Found by a stack role's name (`app`) rather than its
    //    own name or id, it stands for its role: every kept generation is shown.
    let by_role = |c: &crate::containers::Container| {
        c.record.log.group.is_some()
            && args.container != c.record.name
            && !c.record.id.starts_with(&args.container)
    };
    let found = containers.find(&args.container).ok();
    let group = found
        .as_ref()
        .filter(|c| by_role(c))
        .map(|c| c.log_group().to_string());
    if let (Some(c), None) = (found, &group) {
        let dir = c.log_dir();
        if args.follow {
            reader::follow(&dir, &opts, &mut sink, || running(&c.record.id))?;
        } else {
            reader::print(&[dir], &opts, &mut sink)?;
        }
        return Ok(ExitCode::SUCCESS);
    }

    // 3. A log group: its generations, oldest first; -f follows the newest. (A group is
    //    a name: nothing like `../x` reaches past ROOT/logs.)
    let group = group.unwrap_or_else(|| args.container.clone());
    let gens = match crate::containers::valid_name(&group) {
        true => crate::logs::generations(&g.root, &group),
        false => Vec::new(),
    };
    if gens.is_empty() {
        bail!("no such container or log group: {}", args.container);
    }
    let dirs: Vec<_> = gens.iter().map(|(d, _)| d.clone()).collect();
    if args.follow {
        let (last, meta) = gens.last().expect("not empty");
        reader::print(&dirs[..dirs.len() - 1], &opts, &mut sink)?;
        reader::follow(last, &opts, &mut sink, || running(&meta.id))?;
    } else {
        reader::print(&dirs, &opts, &mut sink)?;
    }
    Ok(ExitCode::SUCCESS)
}
