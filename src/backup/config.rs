//! The `[backup]` section of `frun.toml`, checked with the file's positions like the
//! rest of the stack file (`frun.toml:31:9: keep: ...`).
//!
//! ```toml
//! [backup]
//! every = "24h"            # scheduled by the supervisor (with jitter)
//! jitter = "30m"           # default: a tenth of `every`, at most 1h
//! timeout = "2h"           # a scheduled backup running longer is killed (default:
//!                          # `every`, kept between 10m and 6h)
//! keep = 7                 # retention, applied only after a successful backup
//! max_age = "30d"
//! freeze_max = "5s"        # the longest the app stays frozen
//! recipients = ["age1..."] # encrypt to these public keys (or:)
//! passphrase_file = "backup.pass"
//! identity_file = "backup.key"   # for restores of backups encrypted to a recipient
//! before_swap = true       # a backup before every `frun swap`
//! to = ["sftp://backup@host/srv/frun", "s3://bucket/prefix"]   # copies off the machine
//! ```

use serde::Deserialize;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;
use toml::Spanned;

use super::crypt::{Decrypt, Encrypt};
use crate::stack::StackError;

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct RawBackup {
    every: Option<Spanned<String>>,
    jitter: Option<Spanned<String>>,
    timeout: Option<Spanned<String>>,
    keep: Option<Spanned<i64>>,
    max_age: Option<Spanned<String>>,
    freeze_max: Option<Spanned<String>>,
    #[serde(default)]
    recipients: Vec<Spanned<String>>,
    passphrase_file: Option<Spanned<String>>,
    identity_file: Option<Spanned<String>>,
    #[serde(default)]
    before_swap: bool,
    #[serde(default)]
    to: Vec<Spanned<String>>,
}

/// The validated section (its defaults when the file has none).
#[derive(Clone, Debug)]
pub struct BackupConfig {
    pub every: Option<Duration>,
    pub jitter: Duration,
    /// How long a scheduled backup may run before the supervisor kills it.
    pub timeout: Duration,
    pub keep: Option<usize>,
    pub max_age: Option<Duration>,
    pub freeze_max: Duration,
    pub encrypt: Encrypt,
    pub decrypt: Decrypt,
    pub before_swap: bool,
    /// Where each backup is copied besides this machine.
    pub to: Vec<super::remote::Destination>,
}

impl Default for BackupConfig {
    fn default() -> Self {
        BackupConfig {
            every: None,
            jitter: Duration::ZERO,
            timeout: default_timeout(None),
            keep: None,
            max_age: None,
            freeze_max: super::create::DEFAULT_FREEZE_MAX,
            encrypt: Encrypt::default(),
            decrypt: Decrypt::default(),
            before_swap: false,
            to: Vec::new(),
        }
    }
}

/// A scheduled backup's timeout when `[backup] timeout` is not given: its `every`,
/// kept between 10 minutes and 6 hours.
pub fn default_timeout(every: Option<Duration>) -> Duration {
    every
        .unwrap_or_default()
        .clamp(Duration::from_secs(600), Duration::from_secs(6 * 3600))
}

/// `500ms`, `2s`, `1m`, `24h`, and days: `30d`.
pub fn parse_long_duration(s: &str) -> Result<Duration, String> {
    match s.trim().strip_suffix('d') {
        Some(n) => {
            let days: f64 = n
                .parse()
                .map_err(|_| format!("invalid duration {s:?}: expected e.g. 30d, 24h, 10m"))?;
            if !(0.0..=3650.0).contains(&days) {
                return Err(format!("duration {s:?} is out of range"));
            }
            Ok(Duration::from_secs_f64(days * 86400.0))
        }
        None => crate::stack::parse_duration(s),
    }
}

/// Checks `raw`; `base` is the stack file's directory (relative paths start there);
/// `err` makes an error at a place of the file.
pub fn validate(
    raw: &RawBackup,
    base: &Path,
    err: &dyn Fn(Range<usize>, String) -> StackError,
) -> Result<BackupConfig, StackError> {
    let dur = |v: &Option<Spanned<String>>, what: &str| -> Result<Option<Duration>, StackError> {
        v.as_ref()
            .map(|s| {
                parse_long_duration(s.get_ref()).map_err(|e| err(s.span(), format!("{what}: {e}")))
            })
            .transpose()
    };
    let every = dur(&raw.every, "every")?;
    if let (Some(d), Some(s)) = (every, &raw.every) {
        if d < Duration::from_secs(1) {
            return Err(err(
                s.span(),
                "every: at least 1s between scheduled backups".into(),
            ));
        }
    }
    let jitter = match dur(&raw.jitter, "jitter")? {
        Some(j) => j,
        None => every.map_or(Duration::ZERO, |e| (e / 10).min(Duration::from_secs(3600))),
    };
    let timeout = match (dur(&raw.timeout, "timeout")?, &raw.timeout) {
        (Some(t), Some(s)) if t < Duration::from_secs(1) => {
            return Err(err(
                s.span(),
                format!(
                    "timeout: {:?} is too short (a scheduled backup gets at least 1s)",
                    s.get_ref()
                ),
            ))
        }
        (Some(t), _) => t,
        (None, _) => default_timeout(every),
    };
    let keep = match &raw.keep {
        Some(k) if *k.get_ref() < 1 => {
            return Err(err(
                k.span(),
                format!("keep: {} (keep at least 1 backup)", k.get_ref()),
            ))
        }
        Some(k) => Some(*k.get_ref() as usize),
        None => None,
    };
    let freeze_max =
        dur(&raw.freeze_max, "freeze_max")?.unwrap_or(super::create::DEFAULT_FREEZE_MAX);
    let mut recipients = Vec::new();
    for r in &raw.recipients {
        super::crypt::parse_recipient(r.get_ref())
            .map_err(|e| err(r.span(), format!("recipients: {e}")))?;
        recipients.push(r.get_ref().trim().to_string());
    }
    let path = |v: &Option<Spanned<String>>| v.as_ref().map(|p| base.join(p.get_ref()));
    if let (false, Some(p)) = (recipients.is_empty(), &raw.passphrase_file) {
        return Err(err(
            p.span(),
            "passphrase_file: give either recipients or a passphrase file, not both (age cannot mix them)".into(),
        ));
    }
    let passphrase_file: Option<PathBuf> = path(&raw.passphrase_file);
    Ok(BackupConfig {
        every,
        jitter,
        timeout,
        keep,
        max_age: dur(&raw.max_age, "max_age")?,
        freeze_max,
        encrypt: Encrypt {
            recipients,
            passphrase_file: passphrase_file.clone(),
        },
        decrypt: Decrypt {
            identity_file: path(&raw.identity_file),
            passphrase_file,
        },
        before_swap: raw.before_swap,
        to: raw
            .to
            .iter()
            .map(|d| {
                d.get_ref()
                    .parse()
                    .map_err(|e| err(d.span(), format!("to: {e}")))
            })
            .collect::<Result<_, _>>()?,
    })
}
