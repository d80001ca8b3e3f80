//! `frun events`: the event log (`crate::events`), filtered, past and streaming.

use std::io::Write;
use std::process::ExitCode;

use crate::cli::{EventsArgs, Format, Global};
use crate::events::{self, Filter, Query};
use crate::logs::reader::parse_time;

pub fn events(g: &Global, args: EventsArgs) -> anyhow::Result<ExitCode> {
    // 1. Flags, before anything is read.
    let now = chrono::Utc::now();
    let q = Query {
        since: args
            .since
            .as_deref()
            .map(|s| parse_time(s, now))
            .transpose()?,
        until: args
            .until
            .as_deref()
            .map(|s| parse_time(s, now))
            .transpose()?,
        filter: Filter::parse(&args.filter)?,
    };
    // 2. Each event as one line, flushed at once (a reader waits on it).
    let mut out = std::io::stdout().lock();
    events::watch(&g.root, &q, |ev| {
        match args.format {
            Format::Json => {
                serde_json::to_writer(&mut out, ev)?;
                out.write_all(b"\n")?;
            }
            Format::Table => writeln!(out, "{}", ev.line())?,
        }
        out.flush()
    })?;
    Ok(ExitCode::SUCCESS)
}
