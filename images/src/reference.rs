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

    /// The reference oci-client should fetch: same repository, registry replaced by the
    /// endpoint.
    pub(crate) fn fetch_reference(&self, endpoint: &str) -> Reference {
        match (self.tag(), self.inner.digest()) {
            (_, Some(d)) => Reference::with_digest(
                endpoint.to_string(),
                self.repository().to_string(),
                d.to_string(),
            ),
            (Some(t), None) => Reference::with_tag(
                endpoint.to_string(),
                self.repository().to_string(),
                t.to_string(),
            ),
            (None, None) => Reference::with_tag(
                endpoint.to_string(),
                self.repository().to_string(),
                "latest".to_string(),
            ),
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

impl FromStr for ImageRef {
    type Err = ReferenceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = |reason: String| ReferenceError::Invalid {
            reference: s.to_string(),
            reason,
        };
        if s.is_empty() {
            return Err(invalid("empty reference".into()));
        }
        let inner: Reference = s.parse().map_err(|e| invalid(format!("{e}")))?;
        if inner.repository().bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(invalid("repository name must be lowercase".into()));
        }
        if let Some(d) = inner.digest() {
            d.parse::<Digest>().map_err(|e| invalid(e.to_string()))?;
        }
        // Docker Hub's "latest" is implied when neither tag nor digest is given.
        let inner = if inner.tag().is_none() && inner.digest().is_none() {
            Reference::with_tag(
                inner.registry().to_string(),
                inner.repository().to_string(),
                "latest".to_string(),
            )
        } else {
            inner
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
        for bad in ["", "UPPER/case", "alpine@sha256:zz", "a b", "alpine:"] {
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
