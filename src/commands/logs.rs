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
    if !args.follow {
        reader::print(&dirs, &opts, &mut sink)?;
        return Ok(ExitCode::SUCCESS);
    }
    // 4. -f: the older generations and the newest as one history (`--tail N` is the
    //    last N of all of it), then the newest followed. When it ends and a newer one
    //    is there (a swap or `up` starts the new one before the old one stops), that
    //    one from its start, and so on: one stream across swaps, until the role's
    //    container ends with none after it (`down`).
    let (mut dir, mut id) = gens
        .last()
        .map(|(d, m)| (d.clone(), m.id.clone()))
        .expect("not empty");
    let mut before = opts.clone();
    if let Some(n) = opts.tail {
        before.tail = Some(n.saturating_sub(reader::count(&dir, &opts)?));
    }
    reader::print(&dirs[..dirs.len() - 1], &before, &mut sink)?;
    let mut opts = opts;
    loop {
        reader::follow(&dir, &opts, &mut sink, || running(&id))?;
        opts.tail = None;
        let gens = crate::logs::generations(&g.root, &group);
        let Some(pos) = gens.iter().position(|(_, m)| m.id == id) else {
            break;
        };
        let Some(((newest, meta), between)) = gens[pos + 1..].split_last() else {
            break;
        };
        let between: Vec<_> = between.iter().map(|(d, _)| d.clone()).collect();
        reader::print(&between, &opts, &mut sink)?;
        (dir, id) = (newest.clone(), meta.id.clone());
    }
    Ok(ExitCode::SUCCESS)
}
