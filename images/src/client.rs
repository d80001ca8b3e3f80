//! The registry protocol (OCI distribution: the `/v2/` ping, the `WWW-Authenticate`
//! token dance, manifests, ranged blob requests) over reqwest, with the limits a hostile
//! or failing registry needs:
//!
//! - every small document (ping, token, manifest, config) is streamed with a byte cap and
//!   must arrive whole within a deadline: a 1000 MB manifest, an endless chunked body or a
//!   registry sending a byte every few seconds all end with an error naming the URL;
//! - a blob must keep a minimum throughput (so many bytes per window), not merely send a
//!   byte before each read timeout;
//! - an error body is never read whole: a few kB of it give a short, escaped excerpt;
//! - credentials go only to the registry itself or to the token service it names when that
//!   service is reached as safely as the registry (no plain HTTP realm for an HTTPS
//!   registry, no plain HTTP realm on another host unless it is itself allowed plain HTTP),
//!   and the verbose log says which host receives them;
//! - a host without CA certificates (no `ca-certificates` package) still pulls over plain
//!   HTTP: the missing root store is an error only when an HTTPS URL is requested.

use base64::Engine as _;
use bytes::Bytes;
use reqwest::{header, StatusCode};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::digest::Digest;
use crate::registry::{parse_challenge, RegistryConfig};
use crate::text::{escape_controls, excerpt};

/// How much of an error body is read, and how much of it is shown.
const ERROR_BODY_READ: u64 = 4 << 10;
const ERROR_EXCERPT_CHARS: usize = 200;
/// Token responses are small JSON documents.
const MAX_TOKEN_RESPONSE: u64 = 1 << 20;

/// Time and throughput limits of registry requests.
#[derive(Clone, Debug)]
pub struct Limits {
    /// A small document (ping, token, manifest, config) arrives whole within this.
    pub deadline: Duration,
    /// A blob delivers at least `min_bytes` in every `window` (and its response
    /// headers arrive within `deadline`).
    pub window: Duration,
    pub min_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            deadline: Duration::from_secs(60),
            window: Duration::from_secs(30),
            min_bytes: 32 << 10,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("GET {url}")]
    Send {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("reading {url}")]
    Read {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("GET {url}: the registry answered {status}{excerpt}")]
    Status {
        url: String,
        status: StatusCode,
        /// `: <escaped excerpt of the body>` or empty.
        excerpt: String,
    },
    #[error("GET {url}: the response is larger than {limit} bytes")]
    TooLarge { url: String, limit: u64 },
    #[error("GET {url}: no complete answer within {} s", secs.as_secs())]
    Deadline { url: String, secs: Duration },
    #[error("GET {url}: fewer than {min_bytes} bytes arrived in {} s", window.as_secs())]
    TooSlow {
        url: String,
        min_bytes: u64,
        window: Duration,
    },
    #[error("the connection closed at byte {at} of blob {digest} ({size} bytes)")]
    Truncated { digest: Digest, at: u64, size: u64 },
    #[error("the registry {registry} names the token service {realm}: refused, {reason}")]
    Realm {
        registry: String,
        realm: String,
        reason: &'static str,
    },
    #[error("the token service {realm} answered without a token")]
    NoToken { realm: String },
    #[error("gave up after {attempts} attempts in {} s", elapsed.as_secs())]
    GaveUp {
        attempts: u32,
        elapsed: Duration,
        #[source]
        last: Box<ClientError>,
    },
    #[error("cannot set up an HTTP client")]
    Setup(#[source] reqwest::Error),
    #[error("GET {url}: no CA certificates found on this host (install ca-certificates)")]
    NoCaRoots { url: String },
}

impl ClientError {
    /// Worth another attempt: the network or the registry may recover.
    pub fn is_retryable(&self) -> bool {
        match self {
            ClientError::Send { .. }
            | ClientError::Read { .. }
            | ClientError::Deadline { .. }
            | ClientError::Truncated { .. }
            | ClientError::TooSlow { .. } => true,
            ClientError::Status { status, .. } => {
                status.is_server_error() || *status == StatusCode::TOO_MANY_REQUESTS
            }
            _ => false,
        }
    }
}

/// One repository at one registry endpoint.
pub struct RegistryClient {
    http: reqwest::Client,
    /// The host's CA root store was empty: HTTPS requests are refused before sending.
    no_ca_roots: bool,
    config: RegistryConfig,
    endpoint: String,
    base: String,
    repository: String,
    credentials: Option<(String, String)>,
    /// The `Authorization` header value once authenticated.
    authorization: Mutex<Option<String>>,
    /// Authenticated from the registry's challenge as an earlier pull kept it (see
    /// [`RegistryConfig::challenges`]), not from a ping of this pull: a 401 then means
    /// the challenge changed, and the request is made again after a ping.
    from_kept: std::sync::atomic::AtomicBool,
    limits: Limits,
}

/// A response body being streamed.
pub struct Body {
    response: reqwest::Response,
    url: String,
}

/// A blob response: the whole blob, or the part from the requested offset.
pub enum BlobResponse {
    Full(BlobStream),
    Partial(BlobStream),
}

/// A blob body under the minimum-throughput rule.
pub struct BlobStream {
    body: Body,
    window: Duration,
    min_bytes: u64,
    window_start: Instant,
    window_bytes: u64,
}

impl RegistryClient {
    pub fn new(
        config: &RegistryConfig,
        endpoint: &str,
        repository: &str,
        credentials: Option<(String, String)>,
        limits: Limits,
    ) -> Result<RegistryClient, ClientError> {
        let (http, roots) = http_client(&limits)?;
        Ok(RegistryClient {
            http,
            no_ca_roots: roots == CaRoots::Missing,
            config: config.clone(),
            endpoint: endpoint.to_string(),
            base: format!("{}://{}", config.scheme(endpoint), endpoint),
            repository: repository.to_string(),
            credentials,
            authorization: Mutex::new(None),
            from_kept: std::sync::atomic::AtomicBool::new(false),
            limits,
        })
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    fn url(&self, kind: &str, name: &str) -> String {
        format!("{}/v2/{}/{kind}/{name}", self.base, self.repository)
    }

    /// Follows the registry's challenge: Basic credentials are then sent with each
    /// request, a Bearer challenge is answered with a token from the realm it names.
    /// The challenge is the one an earlier pull kept when there is one (one round trip
    /// fewer: it names the token service, which changes seldom), else a ping of `/v2/`.
    pub async fn authenticate(&self) -> Result<(), ClientError> {
        use std::sync::atomic::Ordering;
        if let Some(kept) = self.kept_challenge() {
            match self.answer(kept.as_deref()).await {
                Ok(()) => {
                    self.from_kept.store(true, Ordering::Relaxed);
                    return Ok(());
                }
                Err(e) => {
                    tracing::debug!(registry = %self.endpoint, error = %e, "the kept challenge failed: pinging");
                }
            }
        }
        self.authenticate_by_ping().await
    }

    /// Pings `/v2/`, follows its challenge, and keeps it for the next pull.
    async fn authenticate_by_ping(&self) -> Result<(), ClientError> {
        self.from_kept
            .store(false, std::sync::atomic::Ordering::Relaxed);
        *self.authorization.lock().expect("auth lock") = None;
        let challenge = self.ping().await?;
        self.answer(challenge.as_deref()).await?;
        self.keep_challenge(challenge.as_deref());
        Ok(())
    }

    /// Where this registry's challenge is kept: `DIR/<endpoint>.json`.
    fn challenge_path(&self) -> Option<std::path::PathBuf> {
        let dir = self.config.challenges.as_ref()?;
        let name: String = self
            .endpoint
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        Some(dir.join(format!("{name}.json")))
    }

    /// The challenge an earlier pull kept for this endpoint: `Some(None)` for a registry
    /// that asked for none.
    fn kept_challenge(&self) -> Option<Option<String>> {
        #[derive(serde::Deserialize)]
        struct Kept {
            endpoint: String,
            challenge: Option<String>,
        }
        let data = std::fs::read(self.challenge_path()?).ok()?;
        let kept: Kept = serde_json::from_slice(&data).ok()?;
        (kept.endpoint == self.endpoint).then_some(kept.challenge)
    }

    /// Keeps the challenge that worked (a cache: written whole by rename, not synced).
    fn keep_challenge(&self, challenge: Option<&str>) {
        let Some(path) = self.challenge_path() else {
            return;
        };
        if self
            .kept_challenge()
            .is_some_and(|k| k.as_deref() == challenge)
        {
            return;
        }
        let data = serde_json::json!({ "endpoint": self.endpoint, "challenge": challenge });
        let r = path
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| crate::fsutil::write_replace(&path, data.to_string().as_bytes()));
        if let Err(e) = r {
            tracing::debug!(path = %path.display(), error = %e, "keeping the registry's challenge");
        }
    }

    /// `GET /v2/`: the registry's challenge (`WWW-Authenticate`), or none when it lets
    /// anyone in.
    async fn ping(&self) -> Result<Option<String>, ClientError> {
        let url = format!("{}/v2/", self.base);
        self.within_deadline(&url, async {
            let res = self.send_once(&url, &[], None, false).await?;
            if res.status().is_success() {
                return Ok(None);
            }
            if res.status() != StatusCode::UNAUTHORIZED {
                return Err(status_error(&url, res).await);
            }
            Ok(Some(
                res.headers()
                    .get(header::WWW_AUTHENTICATE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_string(),
            ))
        })
        .await
    }

    /// Answers `challenge` (none: nothing to do).
    async fn answer(&self, challenge: Option<&str>) -> Result<(), ClientError> {
        let Some(challenge) = challenge else {
            return Ok(());
        };
        let scheme = challenge
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase();
        if scheme == "basic" {
            if let Some((user, password)) = &self.credentials {
                tracing::info!(
                    registry = %self.endpoint,
                    to = %self.endpoint,
                    "sending credentials (basic) to the registry itself"
                );
                let token =
                    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
                *self.authorization.lock().expect("auth lock") = Some(format!("Basic {token}"));
            }
            return Ok(());
        }
        if scheme != "bearer" {
            // Unknown scheme: go on anonymously; requests will say what the registry wants.
            return Ok(());
        }
        let params = parse_challenge(challenge);
        let realm = params.get("realm").cloned().unwrap_or_default();
        let realm_url = check_realm(&self.config, &self.endpoint, &realm)?;
        let mut query: Vec<(&str, String)> = Vec::new();
        if let Some(service) = params.get("service") {
            query.push(("service", service.clone()));
        }
        query.push(("scope", format!("repository:{}:pull", self.repository)));
        let token = self
            .within_deadline(&realm, async {
                self.check_ca_roots(realm_url.as_str())?;
                let mut req = self.http.get(realm_url.clone()).query(&query);
                match &self.credentials {
                    Some((user, password)) => {
                        tracing::info!(
                            registry = %self.endpoint,
                            to = %format!(
                                "{}:{}",
                                realm_url.host_str().unwrap_or_default(),
                                realm_url.port_or_known_default().unwrap_or_default()
                            ),
                            realm = %escape_controls(&realm),
                            "sending credentials to the registry's token service"
                        );
                        req = req.basic_auth(user, Some(password));
                    }
                    None => tracing::debug!(realm = %escape_controls(&realm), "anonymous token"),
                }
                let res = req.send().await.map_err(|e| ClientError::Send {
                    url: realm.clone(),
                    source: e.without_url(),
                })?;
                if !res.status().is_success() {
                    return Err(status_error(&realm, res).await);
                }
                let body = read_capped(
                    Body {
                        response: res,
                        url: realm.clone(),
                    },
                    MAX_TOKEN_RESPONSE,
                )
                .await?;
                let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                v.get("token")
                    .or_else(|| v.get("access_token"))
                    .and_then(|t| t.as_str())
                    .filter(|t| !t.is_empty())
                    .map(str::to_string)
                    .ok_or_else(|| ClientError::NoToken {
                        realm: escape_controls(&realm).into_owned(),
                    })
            })
            .await?;
        *self.authorization.lock().expect("auth lock") = Some(format!("Bearer {token}"));
        Ok(())
    }

    /// [`Self::send_once`]; a 401 to a request authenticated from a kept challenge is
    /// answered by authenticating again with a ping, and the request made once more.
    async fn send(
        &self,
        url: &str,
        accept: &[&str],
        range_from: Option<u64>,
        auth: bool,
    ) -> Result<reqwest::Response, ClientError> {
        use std::sync::atomic::Ordering;
        let res = self.send_once(url, accept, range_from, auth).await?;
        if auth
            && res.status() == StatusCode::UNAUTHORIZED
            && self.from_kept.swap(false, Ordering::Relaxed)
        {
            tracing::debug!(registry = %self.endpoint, "401 with the kept challenge: pinging");
            self.authenticate_by_ping().await?;
            return self.send_once(url, accept, range_from, auth).await;
        }
        Ok(res)
    }

    async fn send_once(
        &self,
        url: &str,
        accept: &[&str],
        range_from: Option<u64>,
        auth: bool,
    ) -> Result<reqwest::Response, ClientError> {
        self.check_ca_roots(url)?;
        let mut req = self.http.get(url);
        if !accept.is_empty() {
            req = req.header(header::ACCEPT, accept.join(", "));
        }
        if let Some(from) = range_from {
            req = req.header(header::RANGE, format!("bytes={from}-"));
        }
        if auth {
            if let Some(a) = self.authorization.lock().expect("auth lock").clone() {
                req = req.header(header::AUTHORIZATION, a);
            }
        }
        req.send().await.map_err(|e| ClientError::Send {
            url: url.to_string(),
            source: e.without_url(),
        })
    }

    /// Refuses an HTTPS URL when the host has no CA certificates to verify it with.
    fn check_ca_roots(&self, url: &str) -> Result<(), ClientError> {
        if self.no_ca_roots && url.starts_with("https:") {
            return Err(ClientError::NoCaRoots {
                url: url.to_string(),
            });
        }
        Ok(())
    }

    async fn within_deadline<T>(
        &self,
        url: &str,
        fut: impl std::future::Future<Output = Result<T, ClientError>>,
    ) -> Result<T, ClientError> {
        tokio::time::timeout(self.limits.deadline, fut)
            .await
            .unwrap_or_else(|_| {
                Err(ClientError::Deadline {
                    url: url.to_string(),
                    secs: self.limits.deadline,
                })
            })
    }

    /// A manifest by tag or digest, at most `cap` bytes, whole within the deadline.
    /// Returns the bytes and the digest the registry claims for them, if it says.
    pub async fn manifest(
        &self,
        reference: &str,
        accept: &[&str],
        cap: u64,
    ) -> Result<(Vec<u8>, Option<String>), ClientError> {
        let url = self.url("manifests", reference);
        self.within_deadline(&url, async {
            let res = self.send(&url, accept, None, true).await?;
            if !res.status().is_success() {
                return Err(status_error(&url, res).await);
            }
            let claimed = res
                .headers()
                .get("docker-content-digest")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let body = read_capped(
                Body {
                    response: res,
                    url: url.clone(),
                },
                cap,
            )
            .await?;
            Ok((body, claimed))
        })
        .await
    }

    /// A small blob (a config), at most `cap` bytes, whole within the deadline.
    pub async fn small_blob(&self, digest: &Digest, cap: u64) -> Result<Vec<u8>, ClientError> {
        let url = self.url("blobs", &digest.to_string());
        self.within_deadline(&url, async {
            let res = self.send(&url, &[], None, true).await?;
            if !res.status().is_success() {
                return Err(status_error(&url, res).await);
            }
            read_capped(
                Body {
                    response: res,
                    url: url.clone(),
                },
                cap,
            )
            .await
        })
        .await
    }

    /// A blob from `offset` on (a range request when `offset > 0`; the registry may
    /// answer with the whole blob anyway).
    pub async fn blob(&self, digest: &Digest, offset: u64) -> Result<BlobResponse, ClientError> {
        let url = self.url("blobs", &digest.to_string());
        let res = self
            .within_deadline(&url, async {
                let res = self
                    .send(&url, &[], (offset > 0).then_some(offset), true)
                    .await?;
                if !res.status().is_success() {
                    return Err(status_error(&url, res).await);
                }
                Ok(res)
            })
            .await?;
        let partial = res.status() == StatusCode::PARTIAL_CONTENT;
        let stream = BlobStream {
            body: Body { response: res, url },
            window: self.limits.window,
            min_bytes: self.limits.min_bytes,
            window_start: Instant::now(),
            window_bytes: 0,
        };
        Ok(if partial {
            BlobResponse::Partial(stream)
        } else {
            BlobResponse::Full(stream)
        })
    }
}

impl Body {
    async fn chunk(&mut self) -> Result<Option<Bytes>, ClientError> {
        self.response.chunk().await.map_err(|e| ClientError::Read {
            url: self.url.clone(),
            source: e.without_url(),
        })
    }
}

impl BlobStream {
    /// The next chunk; an error once a window passes with fewer than `min_bytes`.
    pub async fn next(&mut self) -> Result<Option<Bytes>, ClientError> {
        loop {
            let window_end = self.window_start + self.window;
            match tokio::time::timeout_at(window_end.into(), self.body.chunk()).await {
                Ok(Ok(Some(chunk))) => {
                    self.window_bytes += chunk.len() as u64;
                    if Instant::now() >= window_end {
                        self.end_window()?;
                    }
                    return Ok(Some(chunk));
                }
                Ok(other) => return other,
                Err(_) => self.end_window()?,
            }
        }
    }

    fn end_window(&mut self) -> Result<(), ClientError> {
        if self.window_bytes < self.min_bytes {
            return Err(ClientError::TooSlow {
                url: self.body.url.clone(),
                min_bytes: self.min_bytes,
                window: self.window,
            });
        }
        self.window_start = Instant::now();
        self.window_bytes = 0;
        Ok(())
    }
}

/// Reads a body of at most `cap` bytes: refused by its Content-Length before reading,
/// or as soon as more has arrived.
async fn read_capped(mut body: Body, cap: u64) -> Result<Vec<u8>, ClientError> {
    let too_large = |url: &str| ClientError::TooLarge {
        url: url.to_string(),
        limit: cap,
    };
    if body.response.content_length().is_some_and(|n| n > cap) {
        return Err(too_large(&body.url));
    }
    let mut out = Vec::new();
    while let Some(chunk) = body.chunk().await? {
        if out.len() as u64 + chunk.len() as u64 > cap {
            return Err(too_large(&body.url));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// The error for an unsuccessful response, with an excerpt of at most a few kB of its
/// body (a registry's JSON error as `CODE: message`), escaped.
async fn status_error(url: &str, res: reqwest::Response) -> ClientError {
    let status = res.status();
    let mut body = Body {
        response: res,
        url: url.to_string(),
    };
    let mut data = Vec::new();
    let read = async {
        while (data.len() as u64) < ERROR_BODY_READ {
            match body.chunk().await {
                Ok(Some(c)) => data.extend_from_slice(&c),
                _ => break,
            }
        }
    };
    // The body is a courtesy: a slow one is not waited for.
    let _ = tokio::time::timeout(Duration::from_secs(5), read).await;
    data.truncate(ERROR_BODY_READ as usize);
    let text = String::from_utf8_lossy(&data);
    let shown = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| {
            let e = v.get("errors")?.get(0)?;
            let code = e.get("code").and_then(|c| c.as_str()).unwrap_or_default();
            let msg = e
                .get("message")
                .and_then(|m| m.as_str())
                .unwrap_or_default();
            Some(format!("{code}: {msg}"))
        })
        .unwrap_or_else(|| text.into_owned());
    let shown = excerpt(&shown, ERROR_EXCERPT_CHARS);
    ClientError::Status {
        url: url.to_string(),
        status,
        excerpt: if shown.is_empty() {
            String::new()
        } else {
            format!(": {shown}")
        },
    }
}

/// Whether the host has CA root certificates (`SSL_CERT_FILE`/`SSL_CERT_DIR` or the
/// distribution's bundle, as rustls-native-certs finds them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CaRoots {
    Present,
    Missing,
}

/// The reqwest client for registries: connect timeout, no overall timeout (blobs may be
/// large; their throughput is watched instead), and the host's CA roots as the only
/// ones. Without any, HTTPS handshakes would fail, so the caller refuses HTTPS URLs
/// with a clear error.
pub(crate) fn http_client(limits: &Limits) -> Result<(reqwest::Client, CaRoots), ClientError> {
    let builder = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(15).min(limits.deadline))
        .read_timeout(limits.window)
        .user_agent(concat!("frun/", env!("CARGO_PKG_VERSION")));
    // The host's roots, read once per process (a pull makes a client per repository)
    // and handed to reqwest as they are: its own platform verifier would read and
    // parse the whole bundle again for every client.
    static ROOTS: std::sync::OnceLock<Vec<reqwest::Certificate>> = std::sync::OnceLock::new();
    let certs = ROOTS.get_or_init(host_roots);
    let roots = if certs.is_empty() {
        tracing::debug!("no CA certificates on this host: only plain-HTTP registries work");
        CaRoots::Missing
    } else {
        CaRoots::Present
    };
    let builder = builder.tls_certs_only(certs.iter().cloned());
    Ok((builder.build().map_err(ClientError::Setup)?, roots))
}

/// The host's CA certificates: `SSL_CERT_FILE`/`SSL_CERT_DIR` when set; else the
/// system's bundle file alone when there is one (Debian's and Ubuntu's
/// `/etc/ssl/certs/ca-certificates.crt`, which `update-ca-certificates` makes from the
/// same certificates as the directory beside it); else the certificate directories.
/// rustls-native-certs' own probe reads the bundle and then every file of the directory
/// (some 300 opens and parses, ~30 times the bundle's cost, for the same certificates),
/// in every pull and swap.
fn host_roots() -> Vec<reqwest::Certificate> {
    let env = |k| std::env::var_os(k).is_some_and(|v| !v.is_empty());
    let mut found = None;
    if !env("SSL_CERT_FILE") && !env("SSL_CERT_DIR") {
        if let Some(file) = openssl_probe::probe().cert_file {
            found = Some(rustls_native_certs::load_certs_from_paths(
                Some(&file),
                None,
            ))
            .filter(|r| !r.certs.is_empty());
        }
    }
    found
        .unwrap_or_else(rustls_native_certs::load_native_certs)
        .certs
        .iter()
        .filter_map(|c| reqwest::Certificate::from_der(c).ok())
        .collect()
}

/// Decides whether credentials for `registry` may go to the token service `realm`; returns
/// its URL. An HTTPS registry's realm must be HTTPS; a plain-HTTP realm (for a registry
/// that is itself plain HTTP) must be on the registry's host or on a host allowed plain
/// HTTP (loopback, `--insecure-registry`).
pub fn check_realm(
    config: &RegistryConfig,
    registry: &str,
    realm: &str,
) -> Result<reqwest::Url, ClientError> {
    let refuse = |reason| ClientError::Realm {
        registry: registry.to_string(),
        realm: escape_controls(realm).into_owned(),
        reason,
    };
    let url = reqwest::Url::parse(realm).map_err(|_| refuse("it is not a URL"))?;
    match url.scheme() {
        "https" => Ok(url),
        "http" => {
            if config.scheme(registry) == "https" {
                return Err(refuse("plain HTTP for an HTTPS registry"));
            }
            let host = url.host_str().unwrap_or_default();
            let hostport = match url.port() {
                Some(p) => format!("{host}:{p}"),
                None => host.to_string(),
            };
            let registry_host = registry
                .rsplit_once(':')
                .map_or(registry, |(h, _)| h)
                .trim_matches(['[', ']']);
            if host.trim_matches(['[', ']']) == registry_host || config.allows_http(&hostport) {
                Ok(url)
            } else {
                Err(refuse("plain HTTP to another host"))
            }
        }
        _ => Err(refuse("not an HTTP(S) URL")),
    }
}

#[cfg(test)]
mod tests {
    /// The bundle alone holds every root the full probe (bundle and directory) finds: on
    /// Debian and Ubuntu the directory is the same certificates, file by file.
    #[test]
    fn the_bundle_alone_holds_every_root_of_the_host() {
        if std::env::var_os("SSL_CERT_FILE").is_some() || std::env::var_os("SSL_CERT_DIR").is_some()
        {
            return;
        }
        let all = rustls_native_certs::load_native_certs().certs;
        let Some(file) = openssl_probe::probe().cert_file.filter(|_| !all.is_empty()) else {
            assert!(
                std::env::var_os("CI").is_none(),
                "no CA certificates on a CI host: ca-certificates is in scripts/packages/run.txt"
            );
            eprintln!("skipped: this host has no CA certificates");
            return;
        };
        let loaded = rustls_native_certs::load_certs_from_paths(Some(&file), None).certs;
        let bundle: std::collections::HashSet<&[u8]> = loaded.iter().map(|c| c.as_ref()).collect();
        let missing = all.iter().filter(|c| !bundle.contains(c.as_ref())).count();
        assert!(!bundle.is_empty());
        assert_eq!(
            missing,
            0,
            "{missing} of the host's {} roots are not in {}",
            all.len(),
            file.display()
        );
        // And what the client trusts is that bundle.
        assert_eq!(host_roots().len(), loaded.len());
    }

    use super::*;

    #[test]
    fn credentials_go_only_to_a_realm_as_safe_as_the_registry() {
        let cfg = RegistryConfig {
            insecure: vec!["reg.lan:5000".into()],
            ..Default::default()
        };
        let ok = |reg: &str, realm: &str| check_realm(&cfg, reg, realm).is_ok();
        assert!(ok("ghcr.io", "https://ghcr.io/token"));
        assert!(ok("registry-1.docker.io", "https://auth.docker.io/token"));
        assert!(
            !ok("ghcr.io", "http://ghcr.io/token"),
            "plain HTTP realm for HTTPS"
        );
        assert!(!ok("ghcr.io", "ftp://ghcr.io/token"));
        assert!(!ok("ghcr.io", "not a url"));
        // A plain-HTTP registry: its own host, or a host allowed plain HTTP.
        assert!(ok("reg.lan:5000", "http://reg.lan:5001/token"));
        assert!(ok("127.0.0.1:5000", "http://127.0.0.1:6000/token"));
        assert!(!ok("reg.lan:5000", "http://evil.example/token"));
        assert!(!ok("127.0.0.1:5000", "http://10.0.0.8/token"));
        let err = check_realm(&cfg, "ghcr.io", "http://ghcr.io/\x1b[2J")
            .unwrap_err()
            .to_string();
        assert!(err.contains("ghcr.io") && !err.contains('\x1b'), "{err}");
    }
}
