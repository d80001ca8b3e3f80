//! Sizes and counts that users give frun (`--memory`, `--memory-swap`, `--pids-limit`,
//! `--cpus`, `--max-layer-size`, `stop -t`, and the same keys in stack files), parsed
//! and range-checked in one place.
//!
//! A value out of range is refused with its flag named, never wrapped or clamped: the
//! kernel reads a memory limit of 2^64-1 as "no limit" and one of 2^63 as a negative
//! number, so a typo must not silently become "unlimited". Docker's meanings are kept
//! where Docker has the flag: `--memory-swap` is memory plus swap, twice `--memory` by
//! default, `-1` for unlimited swap; `--pids-limit` 0 or -1 is no limit.

use anyhow::{bail, Context};

/// The largest size frun takes: 1 EiB, beyond any machine's memory or disk, and small
/// enough that twice it (the default memory+swap) stays within the kernel's signed
/// 64-bit counters.
pub const MAX_SIZE: u64 = 1 << 60;

/// The kernel's largest pids limit (`PID_MAX_LIMIT`, 2^22).
pub const MAX_PIDS: i64 = 1 << 22;

/// The smallest memory limit (as Docker's).
pub const MIN_MEMORY: u64 = 6 << 20;

/// The longest `stop -t` grace period, in seconds (Docker's is a 32-bit int).
pub const MAX_STOP_TIMEOUT: u64 = i32::MAX as u64;

/// Parses a size in bytes, `512`, `64k`, `64m`, `8g`, `1t` (binary units, an optional
/// trailing `b`), at most [`MAX_SIZE`]. `what` names the flag in errors.
pub fn parse_size(what: &str, s: &str) -> anyhow::Result<u64> {
    let t = s.trim().to_ascii_lowercase();
    let t = t.strip_suffix('b').unwrap_or(&t);
    let (num, mult) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 1u64 << 10),
        Some('m') => (&t[..t.len() - 1], 1 << 20),
        Some('g') => (&t[..t.len() - 1], 1 << 30),
        Some('t') => (&t[..t.len() - 1], 1 << 40),
        _ => (t, 1),
    };
    let bad = || format!("{what} {s:?}: expected a number of bytes with an optional k, m, g or t");
    if num.is_empty() || !num.bytes().all(|b| b.is_ascii_digit()) {
        bail!(bad());
    }
    // Digits only: a parse error is an overflow of u64, out of range all the same.
    let n = num.parse::<u64>().ok().and_then(|n| n.checked_mul(mult));
    match n {
        Some(n) if n <= MAX_SIZE => Ok(n),
        _ => bail!("{what} {s:?} is out of range: at most 1 EiB ({MAX_SIZE} bytes)"),
    }
}

/// Swap as `--memory-swap` gives it: the limit of memory plus swap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Swap {
    /// `-1`: swap is not limited.
    Unlimited,
    /// Memory plus swap, in bytes (equal to the memory limit: no swap at all).
    Total(u64),
}

/// A memory limit and its swap: `--memory` and `--memory-swap` (or a stack role's
/// `memory` and `memory_swap`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Memory {
    pub limit: u64,
    /// `None`: Docker's default, memory plus swap twice the limit.
    pub swap: Option<Swap>,
}

impl Memory {
    /// Reads `--memory` and `--memory-swap` the Docker way; `None` when neither is given.
    /// `flags` names the two in errors (`("--memory", "--memory-swap")`, or a stack
    /// file's keys).
    pub fn parse(
        memory: Option<&str>,
        memory_swap: Option<&str>,
        flags: (&str, &str),
    ) -> anyhow::Result<Option<Memory>> {
        let (mflag, sflag) = flags;
        let Some(m) = memory else {
            if memory_swap.is_some_and(|s| s.trim() != "0") {
                bail!("{sflag} needs {mflag} too: it limits memory plus swap");
            }
            return Ok(None);
        };
        let limit = parse_size(mflag, m)?;
        if limit < MIN_MEMORY {
            bail!("{mflag} {m:?} is too small: at least 6m");
        }
        let swap = match memory_swap.map(str::trim) {
            // Docker reads 0 as "not given".
            None | Some("0") => None,
            Some("-1") => Some(Swap::Unlimited),
            Some(s) => {
                let total = parse_size(sflag, s)?;
                if total < limit {
                    bail!(
                        "{sflag} {s:?} is smaller than {mflag} {m:?}: it is the limit of memory \
                         plus swap (equal to {mflag} for no swap, -1 for unlimited swap)"
                    );
                }
                Some(Swap::Total(total))
            }
        };
        Ok(Some(Memory { limit, swap }))
    }

    /// The runtime spec's `memory.swap`: memory plus swap in bytes, -1 for unlimited.
    pub fn oci_swap(&self) -> i64 {
        match self.swap {
            Some(Swap::Unlimited) => -1,
            Some(Swap::Total(t)) => t as i64,
            // Both at most MAX_SIZE (2^60): twice fits in an i64.
            None => 2 * self.limit as i64,
        }
    }
}

/// Parses `--pids-limit`: 1 to [`MAX_PIDS`], or 0 / -1 for no limit (`None`).
pub fn parse_pids_limit(what: &str, s: &str) -> anyhow::Result<Option<i64>> {
    let n: i64 = s
        .trim()
        .parse()
        .ok()
        .filter(|n| (-1..=MAX_PIDS).contains(n))
        .with_context(|| {
            format!("{what} {s:?} is out of range: 1 to {MAX_PIDS}, or 0 or -1 for no limit")
        })?;
    Ok((n > 0).then_some(n))
}

/// Parses `--cpus`: 0.01 up to `host_cpus` (as Docker, which refuses more CPUs than the
/// host has).
pub fn parse_cpus(what: &str, s: &str, host_cpus: usize) -> anyhow::Result<f64> {
    let c: f64 = s
        .trim()
        .parse()
        .ok()
        .filter(|c: &f64| c.is_finite())
        .with_context(|| format!("{what} {s:?}: expected a number of CPUs such as 0.5"))?;
    if !(0.01..=host_cpus as f64).contains(&c) {
        bail!("{what} {s:?} is out of range: 0.01 to {host_cpus}.00, as there are only {host_cpus} CPUs available");
    }
    Ok(c)
}

/// The host's online CPUs (what `--cpus` may ask for at most).
pub fn host_cpus() -> usize {
    // SAFETY: sysconf only reads a system value.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    usize::try_from(n).ok().filter(|n| *n > 0).unwrap_or(1)
}

/// Parses `stop -t` seconds: 0 to [`MAX_STOP_TIMEOUT`].
pub fn parse_stop_timeout(what: &str, s: &str) -> anyhow::Result<u64> {
    s.trim()
        .parse::<u64>()
        .ok()
        .filter(|n| *n <= MAX_STOP_TIMEOUT)
        .with_context(|| format!("{what} {s:?} is out of range: 0 to {MAX_STOP_TIMEOUT} seconds"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_units() {
        assert_eq!(parse_size("--x", "512").unwrap(), 512);
        assert_eq!(parse_size("--x", "64m").unwrap(), 64 << 20);
        assert_eq!(parse_size("--x", "8G").unwrap(), 8 << 30);
        assert_eq!(parse_size("--x", "1kb").unwrap(), 1024);
        assert_eq!(parse_size("--x", "2t").unwrap(), 2 << 40);
        assert_eq!(parse_size("--x", "1073741824g").unwrap(), MAX_SIZE);
        for bad in ["lots", "", "m", "-1", "1.5g", "+5", " 5 k"] {
            let e = parse_size("--x", bad).unwrap_err().to_string();
            assert!(e.starts_with("--x "), "{bad}: {e}");
        }
    }

    /// `--memory 18446744073709551615` was "no limit"; `9223372036854775808` came out
    /// negative in the message.
    #[test]
    fn sizes_beyond_one_exbibyte_are_refused_not_wrapped() {
        for big in [
            "18446744073709551615",
            "18446744073709551616",
            "9223372036854775808",
            "9223372036854775807",
            "1152921504606846977",
            "17179869184g",
            "99999999999999999999999t",
        ] {
            let e = parse_size("--memory", big).unwrap_err().to_string();
            assert!(e.contains("out of range"), "{big}: {e}");
            assert!(e.contains("--memory"), "{big}: {e}");
            assert!(!e.contains(" -") && !e.contains("\"-"), "negative: {e}");
        }
    }

    #[test]
    fn memory_swap_follows_docker() {
        let p =
            |m: Option<&str>, s: Option<&str>| Memory::parse(m, s, ("--memory", "--memory-swap"));
        // Only --memory: memory plus swap is twice the limit.
        let m = p(Some("32m"), None).unwrap().unwrap();
        assert_eq!((m.limit, m.swap, m.oci_swap()), (32 << 20, None, 64 << 20));
        // Equal: no swap.
        let m = p(Some("32m"), Some("32m")).unwrap().unwrap();
        assert_eq!(m.oci_swap(), 32 << 20);
        // -1: unlimited swap.
        let m = p(Some("32m"), Some("-1")).unwrap().unwrap();
        assert_eq!((m.swap, m.oci_swap()), (Some(Swap::Unlimited), -1));
        // 0: as if not given.
        assert_eq!(p(Some("32m"), Some("0")).unwrap().unwrap().swap, None);
        let m = p(Some("32m"), Some("1g")).unwrap().unwrap();
        assert_eq!(m.oci_swap(), 1 << 30);
        assert_eq!(p(None, None).unwrap(), None);
        for (m, s, want) in [
            (Some("32m"), Some("16m"), "smaller than --memory"),
            (None, Some("64m"), "needs --memory"),
            (Some("1m"), None, "at least 6m"),
            (Some("32m"), Some("-2"), "--memory-swap \"-2\""),
            (Some("32m"), Some("18446744073709551615"), "out of range"),
        ] {
            let e = p(m, s).unwrap_err().to_string();
            assert!(e.contains(want), "{m:?} {s:?}: {e}");
        }
        // The largest limit still doubles within an i64.
        let m = p(Some("1073741824g"), None).unwrap().unwrap();
        assert_eq!(m.oci_swap(), 1 << 61);
    }

    #[test]
    fn counts_are_range_checked() {
        assert_eq!(parse_pids_limit("--pids-limit", "50").unwrap(), Some(50));
        assert_eq!(parse_pids_limit("--pids-limit", "0").unwrap(), None);
        assert_eq!(parse_pids_limit("--pids-limit", "-1").unwrap(), None);
        assert_eq!(
            parse_pids_limit("--pids-limit", "4194304").unwrap(),
            Some(4194304)
        );
        for bad in ["4194305", "-2", "9223372036854775808", "x"] {
            let e = parse_pids_limit("--pids-limit", bad)
                .unwrap_err()
                .to_string();
            assert!(e.contains("out of range"), "{bad}: {e}");
        }
        assert_eq!(parse_cpus("--cpus", "0.5", 2).unwrap(), 0.5);
        assert_eq!(parse_cpus("--cpus", "2", 2).unwrap(), 2.0);
        for bad in ["0", "0.001", "3", "nan", "inf", "-1", "1e400"] {
            assert!(parse_cpus("--cpus", bad, 2).is_err(), "{bad}");
        }
        assert_eq!(parse_stop_timeout("-t", "10").unwrap(), 10);
        for bad in ["18446744073709551615", "-1", "2147483648"] {
            let e = parse_stop_timeout("-t", bad).unwrap_err().to_string();
            assert!(e.contains("out of range"), "{bad}: {e}");
        }
    }
}
