//! Image references, parsed the Docker way, and the registry endpoint each one is
//! fetched from.
//!
//! `alpine` is `docker.io/library/alpine:latest`; Docker Hub's API lives at
//! `registry-1.docker.io`. A mirror (Docker's `registry-mirrors`) replaces that endpoint
//! for Docker Hub references only.

use oci_spec::distribution::Reference;
use std::fmt;
use std::str::FromStr;

use crate::digest::Digest;

/// The registry that serves Docker Hub's API.
pub const DOCKER_HUB_ENDPOINT: &str = "registry-1.docker.io";

#[derive(Debug, thiserror::Error)]
pub enum ReferenceError {
    #[error("invalid image reference {reference:?}: {reason}")]
    Invalid { reference: String, reason: String },
}

/// A normalized image reference: registry, repository, and a tag and/or digest.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ImageRef {
    inner: Reference,
}

impl ImageRef {
    pub fn registry(&self) -> &str {
        self.inner.registry()
    }

    pub fn repository(&self) -> &str {
        self.inner.repository()
    }

    pub fn tag(&self) -> Option<&str> {
        self.inner.tag()
    }

    pub fn digest(&self) -> Option<Digest> {
        self.inner.digest().and_then(|d| d.parse().ok())
    }

    /// True for Docker Hub references (`docker.io/...`).
    pub fn is_docker_hub(&self) -> bool {
        self.registry() == "docker.io"
    }

    /// The host (and port) to talk to: Docker Hub's API endpoint, or the mirror
    /// configured for it, or the reference's own registry.
    pub fn endpoint(&self, docker_hub_mirror: Option<&str>) -> String {
        if self.is_docker_hub() {
            docker_hub_mirror.unwrap_or(DOCKER_HUB_ENDPOINT).to_string()
        } else {
            self.registry().to_string()
        }
    }

    /// The same repository at another digest (used to fetch a platform's manifest out of
    /// an index).
    pub fn with_digest(&self, digest: &Digest) -> ImageRef {
        ImageRef {
            inner: Reference::with_digest(
                self.registry().to_string(),
                self.repository().to_string(),
                digest.to_string(),
            ),
        }
    }

    /// `registry/repository`, the name without tag or digest.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry(), self.repository())
    }
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`: one path component of a repository name.
fn valid_component(c: &str) -> bool {
    let b = c.as_bytes();
    if b.is_empty() || !b[0].is_ascii_lowercase() && !b[0].is_ascii_digit() {
        return false;
    }
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        // A separator: ".", "_", "__", or a run of "-"; it must sit between alphanumerics.
        let start = i;
        if b[i] == b'-' {
            while i < b.len() && b[i] == b'-' {
                i += 1;
            }
        } else if b[i] == b'_' && b.get(i + 1) == Some(&b'_') {
            i += 2;
        } else if b[i] == b'.' || b[i] == b'_' {
            i += 1;
        } else {
            return false;
        }
        if start == 0 || i >= b.len() || !alnum(b[i]) {
            return false;
        }
    }
    true
}

/// A registry host: DNS labels (any case), an IPv4 address, or `[ipv6]`, with an
/// optional port.
fn valid_domain(d: &str) -> bool {
    let (host, port) = if let Some(rest) = d.strip_prefix('[') {
        let Some((h, after)) = rest.split_once(']') else {
            return false;
        };
        if h.parse::<std::net::Ipv6Addr>().is_err() {
            return false;
        }
        (
            None,
            after
                .strip_prefix(':')
                .map(Some)
                .unwrap_or(if after.is_empty() { None } else { Some("x") }),
        )
    } else {
        match d.rsplit_once(':') {
            Some((h, p)) => (Some(h), Some(p)),
            None => (Some(d), None),
        }
    };
    if let Some(p) = port {
        if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
            return false;
        }
    }
    match host {
        None => true,
        Some(h) => {
            !h.is_empty()
                && h.split('.').all(|label| {
                    let l = label.as_bytes();
                    !l.is_empty()
                        && l[0].is_ascii_alphanumeric()
                        && l[l.len() - 1].is_ascii_alphanumeric()
                        && l.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
                })
        }
    }
}

impl FromStr for ImageRef {
    type Err = ReferenceError;

    /// Parses by hand rather than with oci-spec's regular expression, whose
    /// compilation costs tens of milliseconds on every command that takes an image.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = |reason: &str| ReferenceError::Invalid {
            reference: s.to_string(),
            reason: reason.to_string(),
        };
        if s.is_empty() {
            return Err(invalid("empty reference"));
        }
        let (rest, digest) = match s.split_once('@') {
            Some((r, d)) => {
                d.parse::<Digest>().map_err(|e| invalid(&e.to_string()))?;
                (r, Some(d.to_string()))
            }
            None => (s, None),
        };
        // A tag follows the last ':' unless that ':' belongs to a registry port.
        let (name, tag) = match rest.rsplit_once(':') {
            Some((n, t)) if !t.contains('/') => (n, Some(t)),
            _ => (rest, None),
        };
        if let Some(t) = tag {
            let ok = !t.is_empty()
                && t.len() <= 128
                && (t.as_bytes()[0].is_ascii_alphanumeric() || t.as_bytes()[0] == b'_')
                && t.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
            if !ok {
                return Err(invalid("invalid tag"));
            }
        }
        let (domain, path) = match name.split_once('/') {
            Some((first, rest))
                if first.contains('.')
                    || first.contains(':')
                    || first == "localhost"
                    || first.bytes().any(|b| b.is_ascii_uppercase()) =>
            {
                if !valid_domain(first) {
                    return Err(invalid("invalid registry host"));
                }
                (first.to_string(), rest.to_string())
            }
            _ => ("docker.io".to_string(), name.to_string()),
        };
        if path.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(invalid("repository name must be lowercase"));
        }
        if !path.split('/').all(valid_component) {
            return Err(invalid("invalid repository name"));
        }
        let path = if domain == "docker.io" && !path.contains('/') {
            format!("library/{path}")
        } else {
            path
        };
        if domain.len() + 1 + path.len() > 255 {
            return Err(invalid("repository name longer than 255 characters"));
        }
        let inner = match (tag, digest) {
            (Some(t), Some(d)) => Reference::with_tag_and_digest(domain, path, t.to_string(), d),
            (None, Some(d)) => Reference::with_digest(domain, path, d),
            (Some(t), None) => Reference::with_tag(domain, path, t.to_string()),
            // Docker's "latest" is implied when neither tag nor digest is given.
            (None, None) => Reference::with_tag(domain, path, "latest".to_string()),
        };
        Ok(ImageRef { inner })
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.name())?;
        if let Some(t) = self.tag() {
            write!(f, ":{t}")?;
        }
        if let Some(d) = self.inner.digest() {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

/// True when `endpoint` (`host[:port]`) names a loopback address, where plain HTTP is
/// allowed as Docker allows it.
pub fn is_loopback(endpoint: &str) -> bool {
    let host = if let Some(rest) = endpoint.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        endpoint.rsplit_once(':').map_or(endpoint, |(h, _)| h)
    };
    if host == "localhost" {
        return true;
    }
    host.parse::<std::net::IpAddr>()
        .map(|ip| ip.is_loopback())
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(s: &str) -> String {
        s.parse::<ImageRef>().unwrap().to_string()
    }

    #[test]
    fn docker_normalization() {
        assert_eq!(r("alpine"), "docker.io/library/alpine:latest");
        assert_eq!(r("nginx:1.27"), "docker.io/library/nginx:1.27");
        assert_eq!(r("user/app:tag"), "docker.io/user/app:tag");
        assert_eq!(r("host:5000/name:tag"), "host:5000/name:tag");
        assert_eq!(r("localhost/name"), "localhost/name:latest");
        assert_eq!(
            r("localhost:5000/a/b-c__d.e:v1.2_3"),
            "localhost:5000/a/b-c__d.e:v1.2_3"
        );
        assert_eq!(r("[::1]:5000/x"), "[::1]:5000/x:latest");
        assert_eq!(r("quay.io/org/app"), "quay.io/org/app:latest");
        assert_eq!(r("a---b_c"), "docker.io/library/a---b_c:latest");
        let d = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        assert_eq!(
            r(&format!("alpine@{d}")),
            format!("docker.io/library/alpine@{d}")
        );
    }

    #[test]
    fn endpoints() {
        let hub: ImageRef = "alpine".parse().unwrap();
        assert_eq!(hub.endpoint(None), "registry-1.docker.io");
        assert_eq!(hub.endpoint(Some("127.0.0.1:5002")), "127.0.0.1:5002");
        let own: ImageRef = "127.0.0.1:5000/test/busybox".parse().unwrap();
        assert_eq!(own.endpoint(Some("mirror")), "127.0.0.1:5000");
        assert_eq!(own.repository(), "test/busybox");
    }

    #[test]
    fn rejects_bad_references() {
        for bad in [
            "",
            "upper/Case",
            "alpine@sha256:zz",
            "a b",
            "alpine:",
            "a//b",
            "-a",
            "a-",
            "a..b",
            "host:port/x",
            "host:5000/x:bad tag",
            "x:-tag",
        ] {
            let e = bad.parse::<ImageRef>().unwrap_err();
            assert!(e.to_string().contains(&format!("{bad:?}")), "{e}");
        }
    }

    #[test]
    fn loopback() {
        assert!(is_loopback("127.0.0.1:5000"));
        assert!(is_loopback("localhost:5000"));
        assert!(is_loopback("[::1]:5000"));
        assert!(is_loopback("127.3.4.5"));
        assert!(!is_loopback("registry-1.docker.io"));
        assert!(!is_loopback("10.0.0.1:5000"));
    }
}
