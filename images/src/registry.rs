//! Talking to registries: which endpoint, plain HTTP or TLS, which credentials.
//!
//! The protocol itself (the `/v2/` ping, the `WWW-Authenticate` bearer-token dance,
//! manifests and ranged blob requests) is `client.rs`'s. What lives here is the
//! configuration around it: Docker's rules for plain HTTP (loopback and
//! `--insecure-registry` only), Docker Hub's endpoint and mirrors, credentials from
//! `~/.docker/config.json`, and `login`'s check of a password against the registry.

use base64::Engine as _;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::client::check_realm;
use crate::fsutil::write_atomic;
use crate::reference::{is_loopback, ImageRef};
use crate::text::{error_chain, escape_controls};

/// Where Docker keeps Docker Hub's credentials in `config.json`.
pub const DOCKER_HUB_AUTH_KEY: &str = "https://index.docker.io/v1/";

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("cannot read credentials from {path:?}: {reason}")]
    Credentials { path: PathBuf, reason: String },
    #[error("cannot write credentials to {path:?}")]
    WriteCredentials {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("login to {endpoint} failed: {reason}")]
    Login { endpoint: String, reason: String },
}

/// How to reach registries.
#[derive(Clone, Debug, Default)]
pub struct RegistryConfig {
    /// Hosts (`host[:port]`) where plain HTTP is allowed besides loopback ones.
    pub insecure: Vec<String>,
    /// Serves Docker Hub references instead of `registry-1.docker.io` (Docker's
    /// `registry-mirrors`).
    pub docker_hub_mirror: Option<String>,
    /// Directory of Docker's `config.json` (`$DOCKER_CONFIG`, default `~/.docker`).
    pub docker_config_dir: Option<PathBuf>,
    /// Credentials given for these pulls instead of `config.json`'s (a stack role's
    /// `registry_auth`).
    pub auth: Option<Auth>,
    /// Where each registry's authentication challenge (the token service it names; no
    /// token, no credential) is kept between pulls, so that a pull need not ping `/v2/`
    /// first: one round trip fewer. None: every pull pings.
    pub challenges: Option<PathBuf>,
}

/// Credentials given explicitly: a Docker `config.json` of another path (as podman's
/// `--authfile`; `frun login` writes one with `DOCKER_CONFIG=DIR`), or a user and
/// password (as podman's `--creds`). Its `Debug` never shows the password.
#[derive(Clone)]
pub enum Auth {
    File(PathBuf),
    Creds { user: String, password: String },
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Auth::File(p) => f.debug_tuple("File").field(p).finish(),
            Auth::Creds { user, .. } => f
                .debug_struct("Creds")
                .field("user", user)
                .field("password", &"<hidden>")
                .finish(),
        }
    }
}

impl RegistryConfig {
    pub fn endpoint(&self, r: &ImageRef) -> String {
        r.endpoint(self.docker_hub_mirror.as_deref())
    }

    pub fn allows_http(&self, endpoint: &str) -> bool {
        is_loopback(endpoint) || self.insecure.iter().any(|h| h == endpoint)
    }

    pub fn scheme(&self, endpoint: &str) -> &'static str {
        if self.allows_http(endpoint) {
            "http"
        } else {
            "https"
        }
    }

    fn config_path(&self) -> Option<PathBuf> {
        self.docker_config_dir
            .clone()
            .map(|d| d.join("config.json"))
    }

    /// The credentials for `r`: the explicit ones ([`RegistryConfig::auth`]) when
    /// given, else `config.json`'s, if it has any.
    pub fn credentials_for(&self, r: &ImageRef) -> Result<Option<(String, String)>, RegistryError> {
        let path = match &self.auth {
            Some(Auth::Creds { user, password }) => {
                return Ok(Some((user.clone(), password.clone())))
            }
            Some(Auth::File(p)) => p.clone(),
            None => match self.config_path() {
                Some(p) => p,
                None => return Ok(None),
            },
        };
        let auths = read_auths(&path)?;
        let endpoint = self.endpoint(r);
        let mut keys = vec![endpoint.clone()];
        if r.is_docker_hub() {
            keys.extend(["docker.io", "index.docker.io", "registry-1.docker.io"].map(String::from));
        }
        for key in keys {
            if let Some(creds) = auths.get(&key) {
                return Ok(Some(creds.clone()));
            }
        }
        Ok(None)
    }

    /// Checks `user`/`password` against the registry at `server` (Docker Hub when
    /// `None`), then stores them in `config.json` as `docker login` does.
    pub async fn login(
        &self,
        server: Option<&str>,
        user: &str,
        password: &str,
    ) -> Result<PathBuf, RegistryError> {
        let (endpoint, key) = match server {
            None => (
                self.docker_hub_mirror
                    .clone()
                    .unwrap_or_else(|| crate::reference::DOCKER_HUB_ENDPOINT.to_string()),
                DOCKER_HUB_AUTH_KEY.to_string(),
            ),
            Some(s) => {
                let host = normalize_key(s);
                if matches!(
                    host.as_str(),
                    "docker.io" | "index.docker.io" | "registry-1.docker.io"
                ) {
                    (
                        self.docker_hub_mirror
                            .clone()
                            .unwrap_or_else(|| crate::reference::DOCKER_HUB_ENDPOINT.to_string()),
                        DOCKER_HUB_AUTH_KEY.to_string(),
                    )
                } else {
                    (host.clone(), host)
                }
            }
        };
        self.check_login(&endpoint, user, password).await?;
        let path = self
            .config_path()
            .ok_or_else(|| RegistryError::Credentials {
                path: PathBuf::from("~/.docker/config.json"),
                reason: "no home directory; set DOCKER_CONFIG".into(),
            })?;
        store_auth(&path, &key, user, password)?;
        Ok(path)
    }

    async fn check_login(
        &self,
        endpoint: &str,
        user: &str,
        password: &str,
    ) -> Result<(), RegistryError> {
        let fail = |reason: String| RegistryError::Login {
            endpoint: endpoint.to_string(),
            reason,
        };
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(15))
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| fail(error_chain(&e)))?;
        let url = format!("{}://{}/v2/", self.scheme(endpoint), endpoint);
        tracing::info!(registry = %endpoint, to = %endpoint, "sending credentials to the registry itself");
        let res = http
            .get(&url)
            .basic_auth(user, Some(password))
            .send()
            .await
            .map_err(|e| fail(error_chain(&e.without_url())))?;
        if res.status().is_success() {
            return Ok(());
        }
        let challenge = res
            .headers()
            .get(reqwest::header::WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        if res.status() != reqwest::StatusCode::UNAUTHORIZED
            || !challenge.to_ascii_lowercase().starts_with("bearer")
        {
            return Err(fail(format!("the registry answered {}", res.status())));
        }
        let params = parse_challenge(&challenge);
        let realm = params.get("realm").ok_or_else(|| {
            fail(format!(
                "bearer challenge without a realm: {}",
                escape_controls(&challenge)
            ))
        })?;
        let realm_url = check_realm(self, endpoint, realm).map_err(|e| fail(error_chain(&e)))?;
        tracing::info!(
            registry = %endpoint,
            to = %realm_url.host_str().unwrap_or_default(),
            "sending credentials to the registry's token service"
        );
        let mut req = http.get(realm_url).basic_auth(user, Some(password));
        if let Some(service) = params.get("service") {
            req = req.query(&[("service", service)]);
        }
        let res = req
            .send()
            .await
            .map_err(|e| fail(error_chain(&e.without_url())))?;
        if res.status().is_success() {
            Ok(())
        } else {
            Err(fail(format!("the token service answered {}", res.status())))
        }
    }
}

/// Parses `Bearer realm="...",service="..."` into its parameters.
pub(crate) fn parse_challenge(header: &str) -> BTreeMap<String, String> {
    let rest = header.split_once(' ').map_or("", |(_, r)| r);
    let mut out = BTreeMap::new();
    let mut s = rest;
    while !s.is_empty() {
        let Some((k, v)) = s.split_once('=') else {
            break;
        };
        let k = k.trim().trim_start_matches(',').trim().to_ascii_lowercase();
        let (value, after) = if let Some(v) = v.strip_prefix('"') {
            match v.find('"') {
                Some(end) => (&v[..end], &v[end + 1..]),
                None => (v, ""),
            }
        } else {
            match v.find(',') {
                Some(end) => (&v[..end], &v[end..]),
                None => (v, ""),
            }
        };
        out.insert(k, value.to_string());
        s = after.trim_start_matches(',').trim_start();
    }
    out
}

/// `https://index.docker.io/v1/` -> `index.docker.io`; `host:5000` stays.
fn normalize_key(key: &str) -> String {
    let k = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    k.split('/').next().unwrap_or(k).to_string()
}

/// `auths` of a Docker `config.json`: normalized host -> (user, password).
fn read_auths(path: &Path) -> Result<BTreeMap<String, (String, String)>, RegistryError> {
    let bad = |reason: String| RegistryError::Credentials {
        path: path.to_path_buf(),
        reason,
    };
    let data = match std::fs::read(path) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(e) => return Err(bad(e.to_string())),
    };
    let v: serde_json::Value = serde_json::from_slice(&data).map_err(|e| bad(e.to_string()))?;
    let mut out = BTreeMap::new();
    let Some(auths) = v.get("auths").and_then(|a| a.as_object()) else {
        return Ok(out);
    };
    for (key, entry) in auths {
        let creds = if let Some(auth) = entry.get("auth").and_then(|a| a.as_str()) {
            let raw = base64::engine::general_purpose::STANDARD
                .decode(auth.trim())
                .map_err(|e| bad(format!("auths.{key}.auth is not base64: {e}")))?;
            let text = String::from_utf8(raw)
                .map_err(|_| bad(format!("auths.{key}.auth is not UTF-8")))?;
            let (u, p) = text
                .split_once(':')
                .ok_or_else(|| bad(format!("auths.{key}.auth is not user:password")))?;
            Some((u.to_string(), p.to_string()))
        } else {
            match (
                entry.get("username").and_then(|u| u.as_str()),
                entry.get("password").and_then(|p| p.as_str()),
            ) {
                (Some(u), Some(p)) => Some((u.to_string(), p.to_string())),
                _ => None,
            }
        };
        if let Some(c) = creds {
            out.insert(normalize_key(key), c);
        }
    }
    Ok(out)
}

/// Adds or replaces `key` in `config.json`, keeping everything else in the file.
fn store_auth(path: &Path, key: &str, user: &str, password: &str) -> Result<(), RegistryError> {
    let bad = |reason: String| RegistryError::Credentials {
        path: path.to_path_buf(),
        reason,
    };
    let mut v: serde_json::Value = match std::fs::read(path) {
        Ok(d) => serde_json::from_slice(&d).map_err(|e| bad(e.to_string()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => serde_json::json!({}),
        Err(e) => return Err(bad(e.to_string())),
    };
    let obj = v
        .as_object_mut()
        .ok_or_else(|| bad("not a JSON object".into()))?;
    let auths = obj
        .entry("auths")
        .or_insert_with(|| serde_json::json!({}))
        .as_object_mut()
        .ok_or_else(|| bad("auths is not an object".into()))?;
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    auths.insert(key.to_string(), serde_json::json!({ "auth": token }));
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|source| RegistryError::WriteCredentials {
            path: path.to_path_buf(),
            source,
        })?;
    }
    let data = serde_json::to_vec_pretty(&v).expect("json serializes");
    write_atomic(path, &data).map_err(|source| RegistryError::WriteCredentials {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenge_parsing() {
        let p = parse_challenge(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull""#,
        );
        assert_eq!(p["realm"], "https://auth.docker.io/token");
        assert_eq!(p["service"], "registry.docker.io");
        assert_eq!(p["scope"], "repository:library/alpine:pull");
    }

    #[test]
    fn credentials_round_trip_and_hub_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(&path, r#"{"credsStore":"x","auths":{}}"#).unwrap();
        store_auth(&path, DOCKER_HUB_AUTH_KEY, "me", "pw:with:colons").unwrap();
        store_auth(&path, "127.0.0.1:5001", "frun", "secret").unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("credsStore"), "other settings kept: {text}");
        let cfg = RegistryConfig {
            docker_config_dir: Some(dir.path().to_path_buf()),
            ..Default::default()
        };
        let hub: ImageRef = "alpine".parse().unwrap();
        assert_eq!(
            cfg.credentials_for(&hub).unwrap(),
            Some(("me".into(), "pw:with:colons".into()))
        );
        let own: ImageRef = "127.0.0.1:5001/x".parse().unwrap();
        assert!(cfg.credentials_for(&own).unwrap().is_some());
        let none: ImageRef = "127.0.0.1:5000/x".parse().unwrap();
        assert_eq!(cfg.credentials_for(&none).unwrap(), None);
    }

    #[test]
    fn explicit_credentials_come_first_and_never_show_in_debug() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("registry.json");
        store_auth(&file, "127.0.0.1:5002", "frun", "s3cret-file").unwrap();
        let own: ImageRef = "127.0.0.1:5002/x".parse().unwrap();
        let other: ImageRef = "127.0.0.1:5000/x".parse().unwrap();
        let cfg = RegistryConfig {
            auth: Some(Auth::File(file)),
            ..Default::default()
        };
        assert_eq!(
            cfg.credentials_for(&own).unwrap(),
            Some(("frun".into(), "s3cret-file".into()))
        );
        assert_eq!(cfg.credentials_for(&other).unwrap(), None);
        let cfg = RegistryConfig {
            auth: Some(Auth::Creds {
                user: "frun".into(),
                password: "s3cret-env".into(),
            }),
            ..Default::default()
        };
        assert_eq!(
            cfg.credentials_for(&own).unwrap(),
            Some(("frun".into(), "s3cret-env".into()))
        );
        let shown = format!("{cfg:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
    }

    #[test]
    fn bad_config_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("config.json"),
            r#"{"auths":{"h":{"auth":"!!"}}}"#,
        )
        .unwrap();
        let cfg = RegistryConfig {
            docker_config_dir: Some(dir.path().to_path_buf()),
            ..Default::default()
        };
        let err = cfg
            .credentials_for(&"h/x".parse().unwrap())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("config.json") && err.contains("auths.h.auth"),
            "{err}"
        );
    }

    #[test]
    fn http_only_for_loopback_and_named_hosts() {
        let cfg = RegistryConfig {
            insecure: vec!["reg.lan:5000".into()],
            ..Default::default()
        };
        assert_eq!(cfg.scheme("127.0.0.1:5000"), "http");
        assert_eq!(cfg.scheme("reg.lan:5000"), "http");
        assert_eq!(cfg.scheme("reg.lan"), "https");
        assert_eq!(cfg.scheme("registry-1.docker.io"), "https");
    }
}
