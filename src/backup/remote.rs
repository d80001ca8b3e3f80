//! Destinations off the machine: a directory (a mounted disk), an SFTP host, an
//! S3-compatible bucket. Each holds `<base>/<stack>/<archive>` and the archive's
//! `<name>.json` summary (so that a fresh machine can check the archive's sha256), and
//! each makes a new file visible whole or not at all.
//!
//! - `/path` or `file:///path`: a temp file, fsync, rename.
//! - `sftp://[user@]host[:port]/path`: the system's OpenSSH client, `sftp -b -` in batch
//!   mode (as restic uses the system's ssh): `~/.ssh/config`, `known_hosts` and the agent
//!   are the user's, no password prompt (BatchMode). A temp name, then `rename`, which
//!   OpenSSH does with its atomic posix-rename extension. `FRUN_SSH_CONFIG` names an
//!   ssh_config file to use instead of the user's (`ssh -F`).
//! - `s3://bucket/prefix[?endpoint=URL&region=R]` (endpoint and region also from
//!   `AWS_ENDPOINT_URL`, `AWS_REGION`): requests signed with SigV4 by `rusty-s3` (a small
//!   crate that signs and parses, nothing else) and sent by the `reqwest` client frun
//!   already has for registries (rustls with ring). Credentials from `AWS_ACCESS_KEY_ID`
//!   / `AWS_SECRET_ACCESS_KEY` (`AWS_SESSION_TOKEN`), else the `AWS_PROFILE` (default
//!   `default`) section of `AWS_SHARED_CREDENTIALS_FILE` or `~/.aws/credentials`; never
//!   printed. Archives above 32 MiB go up in 16 MiB parts (multipart); every request is
//!   retried three times with a growing pause. An object appears whole when its PUT or
//!   its multipart completion succeeds.
//!
//! `object_store` was the other candidate: it brings its own HTTP stack and cloud
//! clients for a job that is six request kinds here.

use anyhow::{bail, Context};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// Parts of a multipart upload, and the size above which one is used.
const PART: usize = 16 << 20;
const MULTIPART_ABOVE: u64 = 32 << 20;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Destination {
    Dir(PathBuf),
    Sftp {
        /// `[user@]host`
        target: String,
        port: Option<u16>,
        path: String,
    },
    S3 {
        bucket: String,
        prefix: String,
        endpoint: Option<String>,
        region: Option<String>,
    },
}

impl std::fmt::Display for Destination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Destination::Dir(p) => write!(f, "{}", p.display()),
            Destination::Sftp { target, port, path } => match port {
                Some(p) => write!(f, "sftp://{target}:{p}{path}"),
                None => write!(f, "sftp://{target}{path}"),
            },
            Destination::S3 { bucket, prefix, .. } => {
                write!(f, "s3://{bucket}")?;
                if !prefix.is_empty() {
                    write!(f, "/{prefix}")?;
                }
                Ok(())
            }
        }
    }
}

impl std::str::FromStr for Destination {
    type Err = String;

    fn from_str(s: &str) -> Result<Destination, String> {
        if let Some(p) = s.strip_prefix("file://") {
            return Destination::from_str(p);
        }
        if s.starts_with('/') {
            return Ok(Destination::Dir(PathBuf::from(s)));
        }
        let url = url::Url::parse(s).map_err(|e| {
            format!("{s:?}: not a destination ({e}); use /path, sftp://[user@]host[:port]/path or s3://bucket/prefix")
        })?;
        match url.scheme() {
            "sftp" => {
                let host = url
                    .host_str()
                    .filter(|h| !h.is_empty())
                    .ok_or_else(|| format!("{s:?}: no host"))?;
                if url.password().is_some() {
                    return Err(format!(
                        "{s:?}: no password in the URL: use ssh keys (the agent, ~/.ssh)"
                    ));
                }
                let target = if url.username().is_empty() {
                    host.to_string()
                } else {
                    format!("{}@{host}", url.username())
                };
                let path = url.path().to_string();
                if path.is_empty() || path == "/" {
                    return Err(format!("{s:?}: give a directory: sftp://host/path"));
                }
                Ok(Destination::Sftp {
                    target,
                    port: url.port(),
                    path,
                })
            }
            "s3" => {
                let bucket = url
                    .host_str()
                    .filter(|h| !h.is_empty())
                    .ok_or_else(|| format!("{s:?}: no bucket"))?;
                let mut endpoint = None;
                let mut region = None;
                for (k, v) in url.query_pairs() {
                    match &*k {
                        "endpoint" => endpoint = Some(v.into_owned()),
                        "region" => region = Some(v.into_owned()),
                        other => {
                            return Err(format!(
                                "{s:?}: unknown parameter {other:?} (endpoint, region)"
                            ))
                        }
                    }
                }
                Ok(Destination::S3 {
                    bucket: bucket.to_string(),
                    prefix: url.path().trim_matches('/').to_string(),
                    endpoint,
                    region,
                })
            }
            other => Err(format!(
                "{s:?}: unknown destination kind {other:?}; use /path, sftp:// or s3://"
            )),
        }
    }
}

/// A file in a destination's directory of a stack.
#[derive(Clone, Debug)]
pub struct RemoteFile {
    pub name: String,
    pub size: u64,
}

impl Destination {
    /// Copies the local file `local` to `<stack>/<file>`.
    pub fn put(&self, stack: &str, local: &Path, file: &str) -> anyhow::Result<()> {
        // On a terminal, a bar for an archive (not for its small summary): bytes sent,
        // or a spinner where OpenSSH's sftp does the sending.
        let size = std::fs::metadata(local).map_or(0, |m| m.len());
        let step = match self {
            _ if super::name_of(file).is_none() => crate::progress::Step::default(),
            Destination::Sftp { .. } => {
                crate::progress::Step::spinner(&format!("upload to {self}"))
            }
            _ => crate::progress::Step::bytes(&format!("upload to {self}"), size),
        };
        let r = self.put_with(stack, local, file, &step);
        match &r {
            Ok(()) => step.done("sent"),
            Err(_) => step.abandon(),
        }
        r
    }

    fn put_with(
        &self,
        stack: &str,
        local: &Path,
        file: &str,
        step: &crate::progress::Step,
    ) -> anyhow::Result<()> {
        match self {
            Destination::Dir(base) => {
                let dir = base.join(stack);
                std::fs::create_dir_all(&dir)
                    .with_context(|| format!("creating {}", dir.display()))?;
                let tmp = dir.join(format!(".{file}.tmp-{}", std::process::id()));
                let r = (|| -> anyhow::Result<()> {
                    let mut from = crate::progress::StepReader {
                        inner: std::fs::File::open(local)?,
                        step: step.clone(),
                    };
                    let mut to = std::fs::File::create_new(&tmp)?;
                    std::io::copy(&mut from, &mut to)?;
                    to.sync_all()?;
                    drop(to);
                    std::fs::rename(&tmp, dir.join(file))?;
                    frun_images::fsutil::sync_dir(&dir)?;
                    Ok(())
                })();
                if r.is_err() {
                    crate::cleanup::remove_file(&tmp);
                }
                r.with_context(|| format!("copying to {}", dir.join(file).display()))
            }
            Destination::Sftp { path, .. } => {
                let dir = format!("{}/{stack}", path.trim_end_matches('/'));
                let tmp = format!("{dir}/.{file}.tmp");
                let script = format!(
                    "-mkdir {}\n-mkdir {}\nput {} {}\nrename {} {}\n",
                    q(path),
                    q(&dir),
                    q(&local.to_string_lossy()),
                    q(&tmp),
                    q(&tmp),
                    q(&format!("{dir}/{file}"))
                );
                self.sftp(&script).map(|_| ())
            }
            Destination::S3 { .. } => self.s3(|s3| s3.put(&self.key(stack, file), local, step)),
        }
    }

    /// Copies `<stack>/<file>` to the new local file `local`.
    pub fn get(&self, stack: &str, file: &str, local: &Path) -> anyhow::Result<()> {
        // On a terminal, a bar for an archive (its summary is small): bytes received,
        // or a spinner where OpenSSH's sftp does the receiving.
        let archive = super::name_of(file).is_some();
        let step = match self {
            _ if !archive => crate::progress::Step::default(),
            Destination::Sftp { .. } => {
                crate::progress::Step::spinner(&format!("download from {self}"))
            }
            _ => crate::progress::Step::bytes(&format!("download from {self}"), 0),
        };
        let r = self.get_with(stack, file, local, &step);
        match &r {
            Ok(()) => step.done("received"),
            Err(_) => step.abandon(),
        }
        r
    }

    fn get_with(
        &self,
        stack: &str,
        file: &str,
        local: &Path,
        step: &crate::progress::Step,
    ) -> anyhow::Result<()> {
        match self {
            Destination::Dir(base) => {
                let remote = base.join(stack).join(file);
                (|| -> std::io::Result<()> {
                    let from = std::fs::File::open(&remote)?;
                    step.set_length(from.metadata()?.len());
                    let mut from = crate::progress::StepReader {
                        inner: from,
                        step: step.clone(),
                    };
                    let mut to = std::fs::File::create_new(local)?;
                    std::io::copy(&mut from, &mut to)?;
                    Ok(())
                })()
                .with_context(|| format!("copying {}", remote.display()))?;
                Ok(())
            }
            Destination::Sftp { path, .. } => {
                let remote = format!("{}/{stack}/{file}", path.trim_end_matches('/'));
                self.sftp(&format!(
                    "get {} {}\n",
                    q(&remote),
                    q(&local.to_string_lossy())
                ))
                .map(|_| ())
            }
            Destination::S3 { .. } => self.s3(|s3| s3.get(&self.key(stack, file), local, step)),
        }
    }

    /// The files of `<stack>/` (none if it does not exist).
    pub fn list(&self, stack: &str) -> anyhow::Result<Vec<RemoteFile>> {
        let mut out = match self {
            Destination::Dir(base) => {
                let dir = base.join(stack);
                match std::fs::read_dir(&dir) {
                    Ok(entries) => entries
                        .flatten()
                        .filter_map(|e| {
                            Some(RemoteFile {
                                name: e.file_name().to_str()?.to_string(),
                                size: e.metadata().ok()?.len(),
                            })
                        })
                        .collect(),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
                    Err(e) => return Err(e).with_context(|| format!("reading {}", dir.display())),
                }
            }
            Destination::Sftp { path, .. } => {
                let dir = format!("{}/{stack}", path.trim_end_matches('/'));
                // `-ls`: a missing directory lists nothing rather than failing the batch.
                let out = self.sftp(&format!("-ls -ln {}\n", q(&dir)))?;
                parse_ls(&out)
            }
            Destination::S3 { .. } => {
                let prefix = self.key(stack, "");
                self.s3(|s3| s3.list(&prefix))?
            }
        };
        out.retain(|f| !f.name.starts_with('.'));
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Removes `<stack>/<file>` (a missing one is not an error).
    pub fn delete(&self, stack: &str, file: &str) -> anyhow::Result<()> {
        match self {
            Destination::Dir(base) => match std::fs::remove_file(base.join(stack).join(file)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
                _ => Ok(()),
            },
            Destination::Sftp { path, .. } => {
                let remote = format!("{}/{stack}/{file}", path.trim_end_matches('/'));
                self.sftp(&format!("-rm {}\n", q(&remote))).map(|_| ())
            }
            Destination::S3 { .. } => self.s3(|s3| s3.delete(&self.key(stack, file))),
        }
    }

    fn key(&self, stack: &str, file: &str) -> String {
        match self {
            Destination::S3 { prefix, .. } if !prefix.is_empty() => {
                format!("{prefix}/{stack}/{file}")
            }
            _ => format!("{stack}/{file}"),
        }
    }

    /// Runs an sftp batch; its standard output, or its error output in the error.
    fn sftp(&self, script: &str) -> anyhow::Result<String> {
        let Destination::Sftp { target, port, .. } = self else {
            unreachable!("sftp of a destination of another kind")
        };
        let mut cmd = Command::new("sftp");
        cmd.args(["-q", "-b", "-", "-o", "BatchMode=yes"]);
        if let Some(cfg) = std::env::var_os("FRUN_SSH_CONFIG").filter(|c| !c.is_empty()) {
            cmd.arg("-F").arg(cfg);
        }
        if let Some(p) = port {
            cmd.arg("-P").arg(p.to_string());
        }
        cmd.arg("--").arg(target);
        let out = crate::tool::run_with_input(&mut cmd, script.as_bytes())
            .context("running sftp (Debian: apt-get install openssh-client)")?;
        if !out.status.success() {
            bail!(
                "sftp to {self} failed ({}): {}",
                out.status,
                crate::containers::sanitize(String::from_utf8_lossy(&out.stderr).trim())
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn s3<T>(&self, f: impl FnOnce(&S3) -> anyhow::Result<T>) -> anyhow::Result<T> {
        let Destination::S3 {
            bucket,
            endpoint,
            region,
            ..
        } = self
        else {
            unreachable!("s3 of a destination of another kind")
        };
        // Everything of the client (its timers, its connections' drops) happens inside a
        // runtime of its own.
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()?;
        let _in_rt = rt.enter();
        let s3 = S3::new(
            bucket,
            endpoint.as_deref(),
            region.as_deref(),
            rt.handle().clone(),
        )?;
        let r = f(&s3).with_context(|| format!("{self}"));
        drop(s3);
        r
    }
}

/// A path quoted for an sftp batch line.
fn q(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// Names and sizes from `ls -ln` lines (`-rw-r--r-- 1 0 0 1234 Dec 2 03:00 /dir/file`).
fn parse_ls(out: &str) -> Vec<RemoteFile> {
    out.lines()
        .filter(|l| l.starts_with('-'))
        .filter_map(|l| {
            let fields: Vec<&str> = l.split_whitespace().collect();
            let size = fields.get(4)?.parse().ok()?;
            let path = fields.get(8..)?.join(" ");
            let name = path.rsplit('/').next()?.to_string();
            Some(RemoteFile { name, size })
        })
        .collect()
}

/// One S3 bucket, its credentials, and a client.
struct S3 {
    bucket: rusty_s3::Bucket,
    creds: rusty_s3::Credentials,
    rt: tokio::runtime::Handle,
    http: reqwest::Client,
}

/// How long a signed request stays valid.
const SIGNED_FOR: Duration = Duration::from_secs(3600);

impl S3 {
    fn new(
        bucket: &str,
        endpoint: Option<&str>,
        region: Option<&str>,
        rt: tokio::runtime::Handle,
    ) -> anyhow::Result<S3> {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        let region = region
            .map(String::from)
            .or_else(|| env("AWS_REGION"))
            .or_else(|| env("AWS_DEFAULT_REGION"))
            .unwrap_or_else(|| "us-east-1".into());
        let (endpoint, style) = match endpoint
            .map(String::from)
            .or_else(|| env("AWS_ENDPOINT_URL"))
        {
            // A given endpoint (MinIO, Garage, R2, a test server): path-style URLs.
            Some(e) => (e, rusty_s3::UrlStyle::Path),
            None => (
                format!("https://s3.{region}.amazonaws.com"),
                rusty_s3::UrlStyle::VirtualHost,
            ),
        };
        let url: url::Url = endpoint
            .parse()
            .with_context(|| format!("S3 endpoint {endpoint:?}"))?;
        let bucket = rusty_s3::Bucket::new(url, style, bucket.to_string(), region)
            .map_err(|e| anyhow::anyhow!("S3 bucket {bucket:?} at {endpoint}: {e}"))?;
        let creds = s3_credentials()?;
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(Duration::from_secs(60))
            .build()?;
        Ok(S3 {
            bucket,
            creds,
            rt,
            http,
        })
    }

    /// Sends a request (method, signed URL, body) with up to three retries of
    /// what may pass another time (a connection error, a 5xx, a 429).
    fn send(
        &self,
        method: reqwest::Method,
        url: url::Url,
        body: Option<&Vec<u8>>,
        what: &str,
    ) -> anyhow::Result<reqwest::Response> {
        let mut pause = Duration::from_millis(200);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut req = self.http.request(method.clone(), url.clone());
            if let Some(b) = body {
                req = req.body(b.clone());
            }
            let r = self.rt.block_on(req.send());
            let retry = match &r {
                Ok(resp) if resp.status().is_success() => return Ok(r?),
                Ok(resp) => resp.status().is_server_error() || resp.status().as_u16() == 429,
                Err(_) => true,
            };
            if !retry || attempt > 3 {
                match r {
                    Ok(resp) => {
                        let status = resp.status();
                        let text = self.rt.block_on(resp.text()).unwrap_or_default();
                        let code = text
                            .split("<Code>")
                            .nth(1)
                            .and_then(|t| t.split('<').next())
                            .unwrap_or("");
                        bail!("{what}: {status} {code}")
                    }
                    Err(e) => bail!("{what}: {e}"),
                }
            }
            tracing::debug!(what, attempt, "S3 request retried");
            std::thread::sleep(pause);
            pause *= 3;
        }
    }

    fn put(&self, key: &str, local: &Path, step: &crate::progress::Step) -> anyhow::Result<()> {
        use rusty_s3::S3Action;
        let size = std::fs::metadata(local)?.len();
        if size <= MULTIPART_ABOVE {
            let data = std::fs::read(local)?;
            let url = self
                .bucket
                .put_object(Some(&self.creds), key)
                .sign(SIGNED_FOR);
            self.send(
                reqwest::Method::PUT,
                url,
                Some(&data),
                &format!("PUT {key}"),
            )?;
            step.inc(size);
            return Ok(());
        }
        // Multipart: create, parts, complete (or abort, so no parts are left to pay for).
        let url = self
            .bucket
            .create_multipart_upload(Some(&self.creds), key)
            .sign(SIGNED_FOR);
        let resp = self.send(
            reqwest::Method::POST,
            url,
            None,
            &format!("starting the upload of {key}"),
        )?;
        let text = self.rt.block_on(resp.text())?;
        let created = rusty_s3::actions::CreateMultipartUpload::parse_response(&text)
            .map_err(|e| anyhow::anyhow!("starting the upload of {key}: {e}"))?;
        let id = created.upload_id().to_string();
        let parts = (|| -> anyhow::Result<Vec<String>> {
            let mut f = std::fs::File::open(local)?;
            let mut etags = Vec::new();
            let mut buf = vec![0u8; PART];
            for n in 1u16.. {
                let mut filled = 0;
                while filled < PART {
                    let r = f.read(&mut buf[filled..])?;
                    if r == 0 {
                        break;
                    }
                    filled += r;
                }
                if filled == 0 {
                    break;
                }
                let body = buf[..filled].to_vec();
                let url = self
                    .bucket
                    .upload_part(Some(&self.creds), key, n, &id)
                    .sign(SIGNED_FOR);
                let resp = self.send(
                    reqwest::Method::PUT,
                    url,
                    Some(&body),
                    &format!("part {n} of {key}"),
                )?;
                let etag = resp
                    .headers()
                    .get("etag")
                    .and_then(|v| v.to_str().ok())
                    .context("a part's answer has no ETag")?
                    .to_string();
                etags.push(etag);
                step.inc(filled as u64);
                if filled < PART {
                    break;
                }
            }
            Ok(etags)
        })();
        let etags = match parts {
            Ok(e) => e,
            Err(e) => {
                let url = self
                    .bucket
                    .abort_multipart_upload(Some(&self.creds), key, &id)
                    .sign(SIGNED_FOR);
                crate::cleanup::logged(
                    "aborting the multipart upload",
                    self.send(reqwest::Method::DELETE, url, None, "abort"),
                );
                return Err(e);
            }
        };
        let complete = self.bucket.complete_multipart_upload(
            Some(&self.creds),
            key,
            &id,
            etags.iter().map(String::as_str),
        );
        let url = complete.sign(SIGNED_FOR);
        let body = complete.body().into_bytes();
        self.send(
            reqwest::Method::POST,
            url,
            Some(&body),
            &format!("completing the upload of {key}"),
        )?;
        Ok(())
    }

    fn get(&self, key: &str, local: &Path, step: &crate::progress::Step) -> anyhow::Result<()> {
        use rusty_s3::S3Action;
        let url = self
            .bucket
            .get_object(Some(&self.creds), key)
            .sign(SIGNED_FOR);
        let mut resp = self.send(reqwest::Method::GET, url, None, &format!("GET {key}"))?;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(local)
            .with_context(|| format!("creating {}", local.display()))?;
        if let Some(n) = resp.content_length() {
            step.set_length(n);
        }
        while let Some(chunk) = self.rt.block_on(resp.chunk())? {
            f.write_all(&chunk)?;
            step.inc(chunk.len() as u64);
        }
        f.sync_all()?;
        Ok(())
    }

    fn list(&self, prefix: &str) -> anyhow::Result<Vec<RemoteFile>> {
        use rusty_s3::S3Action;
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut action = self.bucket.list_objects_v2(Some(&self.creds));
            action.with_prefix(prefix);
            if let Some(t) = &token {
                action.with_continuation_token(t.clone());
            }
            let url = action.sign(SIGNED_FOR);
            let resp = self.send(
                reqwest::Method::GET,
                url,
                None,
                &format!("listing {prefix}"),
            )?;
            let text = self.rt.block_on(resp.text())?;
            let list = rusty_s3::actions::ListObjectsV2::parse_response(&text)
                .map_err(|e| anyhow::anyhow!("listing {prefix}: {e}"))?;
            for c in list.contents {
                if let Some(name) = c.key.strip_prefix(prefix) {
                    if !name.contains('/') {
                        out.push(RemoteFile {
                            name: name.to_string(),
                            size: c.size.unwrap_or(0),
                        });
                    }
                }
            }
            match list.next_continuation_token {
                Some(t) => token = Some(t),
                None => return Ok(out),
            }
        }
    }

    fn delete(&self, key: &str) -> anyhow::Result<()> {
        use rusty_s3::S3Action;
        let url = self
            .bucket
            .delete_object(Some(&self.creds), key)
            .sign(SIGNED_FOR);
        self.send(reqwest::Method::DELETE, url, None, &format!("DELETE {key}"))?;
        Ok(())
    }
}

/// S3 credentials: the environment, else the shared credentials file.
fn s3_credentials() -> anyhow::Result<rusty_s3::Credentials> {
    if let Some(c) = rusty_s3::Credentials::from_env() {
        return Ok(c);
    }
    let file = std::env::var_os("AWS_SHARED_CREDENTIALS_FILE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".aws/credentials")));
    let profile = std::env::var("AWS_PROFILE").unwrap_or_else(|_| "default".into());
    if let Some(file) = file {
        if let Ok(text) = std::fs::read_to_string(&file) {
            let mut section = String::new();
            let (mut key, mut secret, mut token) = (None, None, None);
            for line in text.lines() {
                let line = line.trim();
                if let Some(s) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                    section = s.trim().to_string();
                } else if section == profile {
                    if let Some((k, v)) = line.split_once('=') {
                        let v = Some(v.trim().to_string());
                        match k.trim() {
                            "aws_access_key_id" => key = v,
                            "aws_secret_access_key" => secret = v,
                            "aws_session_token" => token = v,
                            _ => {}
                        }
                    }
                }
            }
            if let (Some(k), Some(s)) = (key, secret) {
                return Ok(match token {
                    Some(t) => rusty_s3::Credentials::new_with_token(k, s, t),
                    None => rusty_s3::Credentials::new(k, s),
                });
            }
            bail!(
                "no aws_access_key_id and aws_secret_access_key in section [{profile}] of {}",
                file.display()
            );
        }
    }
    bail!("no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or write them in ~/.aws/credentials (AWS_SHARED_CREDENTIALS_FILE)")
}

/// The sort key of a backup name: its stamp, then its `-N` suffix as a number (so that
/// `-10` comes after `-9`).
pub fn name_order(name: &str) -> (String, u64) {
    // <stack>-YYYYMMDD-HHMMSS[-N]
    let parts: Vec<&str> = name.rsplitn(4, '-').collect();
    match parts.as_slice() {
        [n, time, date, _]
            if n.chars().all(|c| c.is_ascii_digit()) && time.len() == 6 && date.len() == 8 =>
        {
            (format!("{date}{time}"), n.parse().unwrap_or(0))
        }
        [time, date, ..] => (format!("{date}{time}"), 0),
        _ => (name.to_string(), 0),
    }
}

/// The backups in a destination: (name, archive file), oldest first.
pub fn backups_in(d: &Destination, stack: &str) -> anyhow::Result<Vec<(String, RemoteFile)>> {
    let mut out: Vec<(String, RemoteFile)> = d
        .list(stack)?
        .into_iter()
        .filter_map(|f| super::name_of(&f.name).map(|n| (n.to_string(), f.clone())))
        .collect();
    out.sort_by_key(|(n, _)| name_order(n));
    Ok(out)
}

/// Brings backup `name` (or the newest, for `latest`) of `stack` from `d` into this
/// machine's backups (archive and summary, each temp + rename), unless it is here
/// already, and returns its summary.
pub fn fetch(
    root: &Path,
    stack: &str,
    d: &Destination,
    name: &str,
) -> anyhow::Result<super::Summary> {
    let all = backups_in(d, stack)?;
    let chosen = if name == "latest" {
        all.last()
    } else {
        all.iter().find(|(n, _)| n == name)
    };
    let Some((name, file)) = chosen else {
        bail!(
            "no backup {name:?} of stack {stack} in {d} (it has: {})",
            if all.is_empty() {
                "none".to_string()
            } else {
                all.iter()
                    .map(|(n, _)| n.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        );
    };
    let dir = super::stack_dir(root, stack);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let bring = |remote: &str| -> anyhow::Result<()> {
        let local = dir.join(remote);
        if local.exists() {
            return Ok(());
        }
        let tmp = dir.join(format!(".{remote}.fetch-{}", std::process::id()));
        crate::cleanup::remove_file(&tmp);
        let r = d.get(stack, remote, &tmp).and_then(|()| {
            std::fs::File::open(&tmp)?.sync_all()?;
            std::fs::rename(&tmp, &local)?;
            frun_images::fsutil::sync_dir(&dir)?;
            Ok(())
        });
        if r.is_err() {
            crate::cleanup::remove_file(&tmp);
        }
        r.with_context(|| format!("fetching {remote} from {d}"))
    };
    let summary_file = format!("{name}.json");
    if d.list(stack)?.iter().any(|f| f.name == summary_file) {
        bring(&summary_file)?;
        // A summary that does not parse, or names another stack, is not kept.
        let p = dir.join(&summary_file);
        let ok = std::fs::read(&p)
            .ok()
            .and_then(|b| serde_json::from_slice::<super::Summary>(&b).ok())
            .is_some_and(|s| s.stack == stack && s.name == *name && s.file == file.name);
        if !ok {
            crate::cleanup::remove_file(&p);
        }
    }
    bring(&file.name)?;
    let mut s = super::find(root, stack, name)?;
    if !s.destinations.contains(&d.to_string()) {
        s.destinations.push(d.to_string());
        if std::fs::metadata(super::Summary::path(root, stack, name)).is_ok() {
            s.save(root)?;
        }
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations_parse_and_print() {
        let d: Destination = "sftp://backup@host.example:2222/srv/frun".parse().unwrap();
        assert_eq!(
            d,
            Destination::Sftp {
                target: "backup@host.example".into(),
                port: Some(2222),
                path: "/srv/frun".into()
            }
        );
        assert_eq!(d.to_string(), "sftp://backup@host.example:2222/srv/frun");
        let d: Destination = "s3://bucket/some/prefix?endpoint=http://127.0.0.1:9000&region=eu-1"
            .parse()
            .unwrap();
        assert_eq!(
            d,
            Destination::S3 {
                bucket: "bucket".into(),
                prefix: "some/prefix".into(),
                endpoint: Some("http://127.0.0.1:9000".into()),
                region: Some("eu-1".into())
            }
        );
        assert_eq!(d.to_string(), "s3://bucket/some/prefix");
        assert_eq!(
            "/mnt/disk".parse::<Destination>().unwrap(),
            Destination::Dir("/mnt/disk".into())
        );
        assert!("ftp://x/y".parse::<Destination>().is_err());
        assert!("sftp://u:pw@h/x".parse::<Destination>().is_err());
        assert!("sftp://h".parse::<Destination>().is_err());
        assert!("relative/dir".parse::<Destination>().is_err());
    }

    #[test]
    fn names_sort_by_stamp_then_number() {
        let mut v = vec![
            "s-20261202-030000-10",
            "s-20261202-030000-2",
            "s-20261202-030000",
            "s-20261201-235959",
        ];
        v.sort_by_key(|n| name_order(n));
        assert_eq!(
            v,
            [
                "s-20261201-235959",
                "s-20261202-030000",
                "s-20261202-030000-2",
                "s-20261202-030000-10"
            ]
        );
    }

    #[test]
    fn sftp_listings_parse() {
        let out = "-rw-r--r--    1 0        0         1234 Dec  2 03:00 /b/fam/fam-1.tar.zst\ndrwxr-xr-x    2 0        0         4096 Dec  2 03:00 /b/fam/sub\n-rw-------    1 0        0            7 Dec  2 03:00 /b/fam/a b.json\n";
        let l = parse_ls(out);
        assert_eq!(l.len(), 2);
        assert_eq!((l[0].name.as_str(), l[0].size), ("fam-1.tar.zst", 1234));
        assert_eq!(l[1].name, "a b.json");
    }
}
