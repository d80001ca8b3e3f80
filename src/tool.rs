//! Running an outside tool with a script on its standard input (`nft -f -`, an `sftp`
//! batch) and collecting what it says: one way for every caller, because the obvious
//! way (write all the input, then read the output) hangs as soon as the tool answers
//! more than a pipe holds before it has read all of its input, and loses the tool's own
//! error when it exits early (the write fails with EPIPE first).
//!
//! Not for the container's processes (the runtime spawns those) nor for frun starting
//! itself (`Global::frun_command`).

use std::io::Write;
use std::process::{Command, Output, Stdio};

/// Runs `cmd` with `input` on its standard input; its standard output and error come
/// back whole, with its exit status (the caller judges it). A spawn error keeps its
/// kind (`NotFound`: the tool is not installed).
pub fn run_with_input(cmd: &mut Command, input: &[u8]) -> std::io::Result<Output> {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let mut stdin = child.stdin.take().expect("stdin is piped");
    std::thread::scope(|s| {
        // 1. The input, from a thread of its own while the output is read; the pipe
        //    closes after it, which is the tool's end of input.
        let writer = s.spawn(move || match stdin.write_all(input) {
            // The tool did not read it all: its exit status and error say why.
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
            r => r,
        });
        // 2. The output until the tool exits.
        let out = child.wait_with_output();
        let wrote = writer.join().expect("the input writer does not panic");
        let out = out?;
        wrote?;
        Ok(out)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `cat` answers as it reads: a megabyte through it fills both pipes long before
    /// its input ends, which a write-then-read would wait on forever.
    #[test]
    fn a_tool_that_answers_while_it_reads_gets_all_its_input_and_all_of_it_back() {
        let input = vec![b'x'; 1 << 20];
        let out = run_with_input(&mut Command::new("cat"), &input).unwrap();
        assert!(out.status.success());
        assert_eq!(out.stdout.len(), input.len());
    }

    /// A tool that exits without reading: its status and its error, not EPIPE.
    #[test]
    fn a_tool_that_reads_nothing_is_judged_by_its_status_and_error() {
        let input = vec![b'x'; 1 << 20];
        let out = run_with_input(
            Command::new("sh").args(["-c", "echo refused >&2; exit 3"]),
            &input,
        )
        .unwrap();
        assert_eq!(out.status.code(), Some(3));
        assert_eq!(String::from_utf8_lossy(&out.stderr), "refused\n");
    }

    #[test]
    fn a_missing_tool_is_told_by_the_error_kind() {
        let e = run_with_input(&mut Command::new("/nonexistent/tool"), b"").unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::NotFound);
    }
}
