//! Small helpers: errno names, capability names, /proc parsing, a field collector.

use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::io;

/// Symbolic name of an errno value ("EPERM"); unknown values become "E<n>".
pub fn errno_name(e: i32) -> String {
    const NAMES: &[(i32, &str)] = &[
        (libc::EPERM, "EPERM"),
        (libc::ENOENT, "ENOENT"),
        (libc::ESRCH, "ESRCH"),
        (libc::EINTR, "EINTR"),
        (libc::EIO, "EIO"),
        (libc::ENXIO, "ENXIO"),
        (libc::E2BIG, "E2BIG"),
        (libc::ENOEXEC, "ENOEXEC"),
        (libc::EBADF, "EBADF"),
        (libc::ECHILD, "ECHILD"),
        (libc::EAGAIN, "EAGAIN"),
        (libc::ENOMEM, "ENOMEM"),
        (libc::EACCES, "EACCES"),
        (libc::EFAULT, "EFAULT"),
        (libc::ENOTBLK, "ENOTBLK"),
        (libc::EBUSY, "EBUSY"),
        (libc::EEXIST, "EEXIST"),
        (libc::EXDEV, "EXDEV"),
        (libc::ENODEV, "ENODEV"),
        (libc::ENOTDIR, "ENOTDIR"),
        (libc::EISDIR, "EISDIR"),
        (libc::EINVAL, "EINVAL"),
        (libc::ENFILE, "ENFILE"),
        (libc::EMFILE, "EMFILE"),
        (libc::ENOTTY, "ENOTTY"),
        (libc::ETXTBSY, "ETXTBSY"),
        (libc::EFBIG, "EFBIG"),
        (libc::ENOSPC, "ENOSPC"),
        (libc::ESPIPE, "ESPIPE"),
        (libc::EROFS, "EROFS"),
        (libc::EMLINK, "EMLINK"),
        (libc::EPIPE, "EPIPE"),
        (libc::EDOM, "EDOM"),
        (libc::ERANGE, "ERANGE"),
        (libc::EDEADLK, "EDEADLK"),
        (libc::ENAMETOOLONG, "ENAMETOOLONG"),
        (libc::ENOLCK, "ENOLCK"),
        (libc::ENOSYS, "ENOSYS"),
        (libc::ENOTEMPTY, "ENOTEMPTY"),
        (libc::ELOOP, "ELOOP"),
        (libc::ENOMSG, "ENOMSG"),
        (libc::ENODATA, "ENODATA"),
        (libc::EOVERFLOW, "EOVERFLOW"),
        (libc::EUSERS, "EUSERS"),
        (libc::ENOTSOCK, "ENOTSOCK"),
        (libc::EPROTONOSUPPORT, "EPROTONOSUPPORT"),
        (libc::ESOCKTNOSUPPORT, "ESOCKTNOSUPPORT"),
        (libc::EOPNOTSUPP, "EOPNOTSUPP"),
        (libc::EAFNOSUPPORT, "EAFNOSUPPORT"),
        (libc::EADDRINUSE, "EADDRINUSE"),
        (libc::EADDRNOTAVAIL, "EADDRNOTAVAIL"),
        (libc::ENETUNREACH, "ENETUNREACH"),
        (libc::ECONNREFUSED, "ECONNREFUSED"),
        (libc::ENOTCONN, "ENOTCONN"),
        (libc::ETIMEDOUT, "ETIMEDOUT"),
        (libc::ESTALE, "ESTALE"),
        (libc::EDQUOT, "EDQUOT"),
        (libc::ENOMEDIUM, "ENOMEDIUM"),
        (libc::ECANCELED, "ECANCELED"),
        (libc::ENOKEY, "ENOKEY"),
        (libc::EKEYEXPIRED, "EKEYEXPIRED"),
        (libc::EKEYREVOKED, "EKEYREVOKED"),
        (libc::EKEYREJECTED, "EKEYREJECTED"),
    ];
    NAMES
        .iter()
        .find(|(n, _)| *n == e)
        .map(|(_, s)| s.to_string())
        .unwrap_or_else(|| format!("E{e}"))
}

/// errno name of an io::Error when it carries one, its text otherwise.
pub fn io_err(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(n) => errno_name(n),
        None => e.to_string(),
    }
}

/// errno name of the last failed libc call.
pub fn last_errno_name() -> String {
    io_err(&io::Error::last_os_error())
}

/// "ok" for 0, the errno name otherwise (result of a probe that returns 0 or an errno).
pub fn ok_or_errno(code: i32) -> String {
    if code == 0 {
        "ok".to_string()
    } else {
        errno_name(code)
    }
}

/// Capability names by bit number (capability.h, up to CAP_CHECKPOINT_RESTORE = 40).
pub const CAP_NAMES: [&str; 41] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// Names of the bits set in a capability mask; unknown bits become "cap_<n>".
pub fn cap_names(mask: u64) -> Vec<String> {
    (0..64)
        .filter(|b| mask & (1u64 << b) != 0)
        .map(|b| match CAP_NAMES.get(b as usize) {
            Some(n) => n.to_string(),
            None => format!("cap_{b}"),
        })
        .collect()
}

/// "Key:\tvalue" lines of /proc/self/status.
pub fn parse_status(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

/// Undo the octal escapes (\040 = space, \011, \012, \134) of /proc/*/mountinfo fields.
pub fn unescape_octal(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') as u32 * 64
                + (b[i + 2] - b'0') as u32 * 8
                + (b[i + 3] - b'0') as u32;
            out.push(v as u8);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// One line of /proc/self/mountinfo:
/// `id parent major:minor root mount_point options [optional...] - fstype source super_options`
pub fn parse_mountinfo_line(line: &str) -> Option<Value> {
    let (pre, post) = line.split_once(" - ")?;
    let pre: Vec<&str> = pre.split(' ').collect();
    let post: Vec<&str> = post.split(' ').collect();
    if pre.len() < 6 || post.len() < 3 {
        return None;
    }
    let mut m = Map::new();
    m.insert("mount_point".into(), unescape_octal(pre[4]).into());
    m.insert("fstype".into(), post[0].into());
    m.insert("source".into(), unescape_octal(post[1]).into());
    m.insert("options".into(), pre[5].into());
    m.insert("super_options".into(), post[2..].join(" ").into());
    m.insert("root".into(), unescape_octal(pre[3]).into());
    m.insert("id".into(), pre[0].parse::<u64>().ok().into());
    m.insert("parent".into(), pre[1].parse::<u64>().ok().into());
    m.insert("dev".into(), pre[2].into());
    m.insert("propagation".into(), pre[6..].join(" ").into());
    Some(Value::Object(m))
}

/// Major and minor numbers of a dev_t (glibc's encoding).
pub fn major_minor(dev: u64) -> (u64, u64) {
    let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
    let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
    (major, minor)
}

/// Collects report fields; a field that can't be read becomes null plus an entry in "errors".
pub struct Fields {
    pub obj: Map<String, Value>,
    prefix: String,
    pub errors: Map<String, Value>,
}

impl Fields {
    pub fn new(prefix: &str) -> Self {
        Fields {
            obj: Map::new(),
            prefix: prefix.to_string(),
            errors: Map::new(),
        }
    }

    pub fn set(&mut self, key: &str, r: Result<Value, String>) {
        match r {
            Ok(v) => {
                self.obj.insert(key.to_string(), v);
            }
            Err(e) => {
                self.obj.insert(key.to_string(), Value::Null);
                self.error(key, e);
            }
        }
    }

    pub fn error(&mut self, key: &str, e: String) {
        self.errors
            .insert(format!("{}{}", self.prefix, key), e.into());
    }

    /// Nested object: its errors are moved up into ours.
    pub fn set_sub(&mut self, key: &str, sub: Fields) {
        self.obj.insert(key.to_string(), Value::Object(sub.obj));
        self.errors.extend(sub.errors);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_names() {
        assert_eq!(errno_name(libc::EROFS), "EROFS");
        assert_eq!(errno_name(libc::EPERM), "EPERM");
        assert_eq!(errno_name(4000), "E4000");
        assert_eq!(ok_or_errno(0), "ok");
    }

    #[test]
    fn caps() {
        assert_eq!(cap_names(0), Vec::<String>::new());
        assert_eq!(cap_names(0x1), vec!["CAP_CHOWN"]);
        assert_eq!(
            cap_names(1 << 21 | 1 << 40),
            vec!["CAP_SYS_ADMIN", "CAP_CHECKPOINT_RESTORE"]
        );
        assert_eq!(cap_names(1 << 41), vec!["cap_41"]);
        // default docker set
        assert_eq!(cap_names(0xa80425fb).len(), 14);
    }

    #[test]
    fn octal() {
        assert_eq!(unescape_octal(r"/a\040b"), "/a b");
        assert_eq!(unescape_octal(r"/a\134"), "/a\\");
        assert_eq!(unescape_octal(r"x\04"), r"x\04");
    }

    #[test]
    fn mountinfo() {
        let l =
            "36 35 98:0 /mnt1 /mnt\\0402 rw,noatime master:1 - ext3 /dev/root rw,errors=continue";
        let v = parse_mountinfo_line(l).unwrap();
        assert_eq!(v["mount_point"], "/mnt 2");
        assert_eq!(v["fstype"], "ext3");
        assert_eq!(v["source"], "/dev/root");
        assert_eq!(v["options"], "rw,noatime");
        assert_eq!(v["super_options"], "rw,errors=continue");
        assert_eq!(v["root"], "/mnt1");
        assert_eq!(v["propagation"], "master:1");
        assert!(parse_mountinfo_line("garbage").is_none());
    }

    #[test]
    fn devnums() {
        assert_eq!(major_minor(libc::makedev(1, 3)), (1, 3));
        assert_eq!(major_minor(libc::makedev(259, 70000)), (259, 70000));
    }

    #[test]
    fn status() {
        let s = parse_status("Name:\tx\nCapEff:\t000001ffffffffff\nNoNewPrivs:\t1\n");
        assert_eq!(s["CapEff"], "000001ffffffffff");
        assert_eq!(s["NoNewPrivs"], "1");
    }
}
