//! Giving back the memory that only a start needed, for the processes of frun that live
//! on: the holders (one per container) and the supervisor.
//!
//! On a 512 MB box every megabyte of frun's own counts (issue 11: at most 8 MB PSS for
//! all of frun's processes with the stack up). Measured with the demo stack up, a
//! holder had 5.4–6.6 MB of frun's code mapped, but referenced only 340–540 KB of it
//! while it served (`/proc/PID/clear_refs`, then `Referenced:` in smaps after traffic):
//! the rest is start-up code (argument parsing, the image store, the runtime's spawn,
//! serde of the records) that the page faults of the start mapped, 64 KB around each
//! (the kernel's fault-around), and that stays mapped for the life of the process. The
//! same holds for the heap: most of it was freed after the start but stays with the
//! process.
//!
//! [`release_startup_memory`] unmaps the clean, read-only mappings of frun's own file
//! (`madvise(MADV_DONTNEED)`: the pages stay in the page cache, shared and reclaimable,
//! and fault back in when the code runs again) and gives the heap's free memory back
//! (`malloc_trim`). A mapping is dropped only when it holds no anonymous page: a mapping
//! that was ever written (the relocated `.data.rel.ro` of a PIE binary) keeps its pages,
//! since dropping them would lose the relocations.

use std::path::{Path, PathBuf};

/// One mapping of `/proc/self/smaps` that can be dropped and faulted back in.
#[derive(Debug, PartialEq)]
struct Clean {
    start: usize,
    end: usize,
}

/// For a process that lives on and whose threads are few and mostly idle (a holder, the
/// supervisor): one malloc arena for all its threads. glibc gives each thread that
/// allocates an arena of its own (up to 8 per core), each with pages of its own that
/// stay; contention is no concern here. Call before threads start.
pub fn one_arena() {
    // SAFETY: mallopt only sets an allocator parameter; called before this process
    // starts threads.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

/// What was given back, in KiB of resident memory before and after.
#[derive(Debug, Clone, Copy)]
pub struct Released {
    pub code_kb: u64,
    pub mappings: usize,
    /// The main thread's stack given back (the start ran deeper than a wait does).
    pub stack_kb: u64,
}

/// The range of the first mapping named `name` in a maps or smaps text.
fn maps_line(maps: &str, name: &str) -> Option<(usize, usize)> {
    let line = maps
        .lines()
        .find(|l| l.split_whitespace().nth(5) == Some(name))?;
    let (a, b) = line.split_whitespace().next()?.split_once('-')?;
    Some((
        usize::from_str_radix(a, 16).ok()?,
        usize::from_str_radix(b, 16).ok()?,
    ))
}

/// Gives back the main thread's stack pages more than 16 KiB below the caller's frame:
/// nothing lives there (the stack grows down; the start's deep calls returned), and a
/// page touched again comes back zeroed. Only on the main thread (whose stack is the
/// `[stack]` mapping); returns the KiB of the range.
fn release_stack_below_here((start, end): (usize, usize)) -> u64 {
    let here = 0u8;
    let sp = std::ptr::addr_of!(here) as usize;
    if !(start..end).contains(&sp) {
        return 0; // not the main thread
    }
    let top = (sp.saturating_sub(16 * 1024)) & !4095;
    if top <= start {
        return 0;
    }
    // SAFETY: [start, top) is part of this thread's own stack mapping and lies more
    // than 16 KiB below the frame running now (madvise's own frame below it is a few
    // hundred bytes): no live frame, no red zone, no signal
    // frame in progress is there (a signal taken later pushes its frame just below the
    // stack pointer and faults in a zeroed page if it needs one).
    let r = unsafe { libc::madvise(start as *mut libc::c_void, top - start, libc::MADV_DONTNEED) };
    if r == 0 {
        ((top - start) / 1024) as u64
    } else {
        0
    }
}

/// Drops the resident pages of frun's own code and read-only data that nothing runs
/// right now, and trims the heap. Safe to call at any time, from any thread: the code
/// that runs faults back in.
pub fn release_startup_memory() -> std::io::Result<Released> {
    let exe = std::fs::read_link("/proc/self/exe")?;
    let smaps = std::fs::read_to_string("/proc/self/smaps")?;
    let (clean, code_kb) = clean_mappings(&smaps, &exe);
    let mut out = Released {
        code_kb,
        mappings: 0,
        stack_kb: 0,
    };
    for m in &clean {
        // SAFETY: the range is a whole mapping of this process, of frun's own file,
        // read-only and without one private (anonymous) page (checked in smaps just
        // now; a read-only file mapping cannot get one later without an mprotect,
        // which frun never does): MADV_DONTNEED only unmaps page-cache pages, which
        // the next access maps again with the same content.
        let r = unsafe {
            libc::madvise(
                m.start as *mut libc::c_void,
                m.end - m.start,
                libc::MADV_DONTNEED,
            )
        };
        if r == 0 {
            out.mappings += 1;
        }
    }
    if let Some(stack) = maps_line(&smaps, "[stack]") {
        out.stack_kb = release_stack_below_here(stack);
    }
    // SAFETY: malloc_trim only returns free heap memory to the kernel.
    unsafe {
        libc::malloc_trim(0);
    }
    Ok(out)
}

/// The mappings of `exe` in an smaps text that are read-only and hold no private page,
/// and the KiB of them resident.
fn clean_mappings(smaps: &str, exe: &Path) -> (Vec<Clean>, u64) {
    let mut out = Vec::new();
    let mut kb = 0;
    // The mapping being read: its range, whether it qualifies so far, its Rss.
    let mut cur: Option<(Clean, bool, u64)> = None;
    let mut finish = |cur: Option<(Clean, bool, u64)>, out: &mut Vec<Clean>| {
        if let Some((m, true, rss)) = cur {
            kb += rss;
            out.push(m);
        }
    };
    for line in smaps.lines() {
        let mut f = line.split_whitespace();
        let first = f.next().unwrap_or("");
        if let Some((a, b)) = first.split_once('-').filter(|_| !first.ends_with(':')) {
            finish(cur.take(), &mut out);
            let (Ok(start), Ok(end)) = (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16))
            else {
                continue;
            };
            let perms = f.next().unwrap_or("");
            let path: PathBuf = f.nth(3).map(PathBuf::from).unwrap_or_default();
            let ok =
                path == exe && perms.starts_with('r') && perms.as_bytes().get(1) == Some(&b'-');
            cur = Some((Clean { start, end }, ok, 0));
            continue;
        }
        let Some((_, ok, rss)) = cur.as_mut() else {
            continue;
        };
        let value = f.next().and_then(|v| v.parse::<u64>().ok());
        match (first, value) {
            ("Rss:", Some(v)) => *rss = v,
            // A page written since the file was mapped (a relocation) is anonymous, as
            // is one swapped out. (Private_Dirty counts the page cache's dirty pages of
            // a file written just before, e.g. a binary fresh from the linker: those
            // are the file's and come back.)
            ("Anonymous:" | "Swap:", Some(v)) if v > 0 => *ok = false,
            _ => {}
        }
    }
    finish(cur.take(), &mut out);
    (out, kb)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMAPS: &str = "\
5600000000-5600400000 r--p 00000000 fd:01 123 /usr/bin/frun
Rss:                1544 kB
Anonymous:             0 kB
Private_Dirty:         0 kB
5600400000-5601000000 r-xp 00400000 fd:01 123 /usr/bin/frun
Rss:                6620 kB
Anonymous:             0 kB
Private_Dirty:         0 kB
5601000000-5601100000 r--p 00ef4000 fd:01 123 /usr/bin/frun
Rss:                 636 kB
Anonymous:           632 kB
Private_Dirty:       632 kB
5601100000-5601102000 rw-p 00f92000 fd:01 123 /usr/bin/frun
Rss:                   8 kB
Anonymous:             8 kB
7f0000000000-7f0000100000 r-xp 00000000 fd:01 456 /usr/lib/x86_64-linux-gnu/libc.so.6
Rss:                 932 kB
Anonymous:             0 kB
7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0 [stack]
Rss:                  88 kB
Anonymous:            88 kB
";

    /// Only frun's own read-only mappings without a private page: never the relocated
    /// data (it was written), never what is writable, never another file's.
    #[test]
    fn only_clean_read_only_mappings_of_frun_itself() {
        let (clean, kb) = clean_mappings(SMAPS, Path::new("/usr/bin/frun"));
        assert_eq!(
            clean,
            vec![
                Clean {
                    start: 0x5600000000,
                    end: 0x5600400000
                },
                Clean {
                    start: 0x5600400000,
                    end: 0x5601000000
                },
            ]
        );
        assert_eq!(kb, 1544 + 6620);
        let (clean, _) = clean_mappings(SMAPS, Path::new("/usr/bin/other"));
        assert!(clean.is_empty());
    }

    #[test]
    fn the_stack_mapping_is_found_by_name() {
        assert_eq!(
            maps_line(SMAPS, "[stack]"),
            Some((0x7ffd00000000, 0x7ffd00021000))
        );
        assert_eq!(maps_line(SMAPS, "[heap]"), None);
        // A test runs on a thread of its own, never on the main thread's stack.
        assert_eq!(release_stack_below_here((0x1000, 0x2000)), 0);
    }

    /// In this very process: the code's resident pages go, and the code still runs
    /// (it faults back in).
    #[test]
    fn the_running_code_survives_and_its_resident_pages_go() {
        let exe = std::fs::read_link("/proc/self/exe").unwrap();
        let resident = || {
            let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
            clean_mappings(&smaps, &exe).1
        };
        let before = resident();
        let r = release_startup_memory().unwrap();
        assert!(r.mappings >= 1, "{r:?}");
        let after = resident();
        assert!(
            after < before,
            "resident code of the test binary: {before} KiB before, {after} KiB after"
        );
        // Still works: formatting, parsing, the allocator.
        let v: Vec<String> = (0..1000).map(|i| format!("{i}")).collect();
        assert_eq!(v[999].parse::<u32>().unwrap(), 999);
    }
}
