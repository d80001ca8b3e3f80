//! Resolving a reference: the manifest (choosing a platform out of an index) and the
//! config, both small JSON documents fetched into memory, capped and verified.

use super::{Ctx, PullError};
use oci_spec::image::ImageIndex;

use crate::client::ClientError;
use crate::digest::Digest;
use crate::platform::Platform;
use crate::store::StoreError;
use crate::text::escape_controls;

pub(super) const MANIFEST_TYPES: &[&str] = &[
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
];
/// Manifests and configs larger than this are refused (containerd uses the same cap).
pub(super) const MAX_JSON_BLOB: u64 = 4 << 20;

/// An invalid manifest or config; `reason` may quote the document, so it is escaped.
pub(super) fn bad_manifest(reference: &str, digest: &Digest, reason: String) -> PullError {
    PullError::BadManifest {
        reference: reference.to_string(),
        digest: digest.to_string(),
        reason: escape_controls(&reason).into_owned(),
    }
}

pub(super) fn parse_json<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
    reference: &str,
    digest: &Digest,
) -> Result<T, PullError> {
    serde_json::from_slice(bytes).map_err(|e| bad_manifest(reference, digest, e.to_string()))
}

impl Ctx {
    /// Fetches a manifest by tag or digest (capped, within the deadline, retried) and
    /// checks it against the digest it was asked by, or else the one the registry claims.
    pub(super) async fn manifest(
        &self,
        tag_or_digest: &str,
        asked: Option<&Digest>,
    ) -> Result<(Vec<u8>, Digest), PullError> {
        let (bytes, claimed) = self
            .retrying(|| {
                self.client
                    .manifest(tag_or_digest, MANIFEST_TYPES, MAX_JSON_BLOB)
            })
            .await
            .map_err(|e| self.registry_err(e))?;
        let actual = Digest::of(&bytes);
        let expected = match asked {
            Some(d) => Some(d.clone()),
            None => claimed.and_then(|c| c.parse::<Digest>().ok()),
        };
        if let Some(expected) = expected {
            if expected != actual {
                return Err(PullError::DigestMismatch { expected, actual });
            }
        }
        Ok((bytes, actual))
    }

    /// Picks this platform's manifest out of an index.
    pub(super) fn choose(&self, index: &ImageIndex) -> Result<Digest, PullError> {
        choose_platform(index, &self.opts.platform, &self.reference)
    }

    /// Fetches a config-sized blob into memory, verified, and capped. A local copy is
    /// used when it verifies; a corrupt one is removed (and replaced once this pull
    /// records the image).
    pub(super) async fn small_blob(
        &self,
        digest: &Digest,
        size: u64,
    ) -> Result<Vec<u8>, PullError> {
        if size > MAX_JSON_BLOB {
            return Err(bad_manifest(
                &self.reference,
                digest,
                format!("config is {size} bytes, more than {MAX_JSON_BLOB}"),
            ));
        }
        match self.store.read_blob(digest) {
            Ok(data) => return Ok(data),
            Err(StoreError::Corrupt { actual, .. }) => {
                tracing::warn!(
                    blob = %digest,
                    %actual,
                    "the local copy is corrupt; fetching it again"
                );
                self.store.remove_blob(digest)?;
            }
            Err(_) => {}
        }
        let data = self
            .retrying(|| self.client.small_blob(digest, size))
            .await
            .map_err(|e| self.registry_err(e))?;
        let actual = Digest::of(&data);
        if &actual != digest {
            return Err(PullError::DigestMismatch {
                expected: digest.clone(),
                actual,
            });
        }
        Ok(data)
    }

    pub(super) fn registry_err(&self, source: ClientError) -> PullError {
        PullError::Registry {
            reference: self.reference.clone(),
            source,
        }
    }
}

/// Picks `want`'s manifest out of an index: an exact variant match first, else the
/// first of the right os/architecture when the variant differs; attestations never.
pub(super) fn choose_platform(
    index: &ImageIndex,
    want: &Platform,
    reference: &str,
) -> Result<Digest, PullError> {
    let mut available = Vec::new();
    let mut fallback = None;
    for m in index.manifests() {
        let Some(p) = m.platform() else { continue };
        let os = p.os().to_string();
        let arch = p.architecture().to_string();
        let variant = p.variant().clone();
        // Attestation manifests (BuildKit) carry platform unknown/unknown.
        if os == "unknown" {
            continue;
        }
        let shown = Platform {
            os: os.clone(),
            architecture: arch.clone(),
            variant: variant.clone(),
        };
        available.push(shown.to_string());
        if want.matches(&os, &arch, variant.as_deref()) {
            let exact = want.variant == variant;
            let d: Digest = m.digest().to_string().parse()?;
            if exact || want.variant.is_none() {
                return Ok(d);
            }
            fallback.get_or_insert(d);
        }
    }
    fallback.ok_or_else(|| PullError::NoPlatform {
        reference: reference.to_string(),
        wanted: want.clone(),
        available: if available.is_empty() {
            "no platforms listed".into()
        } else {
            available.join(", ")
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index(entries: &[(&str, &str, Option<&str>, u8)]) -> ImageIndex {
        let manifests: Vec<serde_json::Value> = entries
            .iter()
            .map(|(os, arch, variant, n)| {
                let mut p = serde_json::json!({"os": os, "architecture": arch});
                if let Some(v) = variant {
                    p["variant"] = serde_json::json!(v);
                }
                serde_json::json!({
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": Digest::of(&[*n]).to_string(),
                    "size": 1,
                    "platform": p,
                })
            })
            .collect();
        serde_json::from_value(serde_json::json!({"schemaVersion": 2, "manifests": manifests}))
            .unwrap()
    }

    fn want(s: &str) -> Platform {
        s.parse().unwrap()
    }

    #[test]
    fn platform_choice_prefers_the_exact_variant_and_skips_attestations() {
        let idx = index(&[
            ("unknown", "unknown", None, 0),
            ("linux", "arm", Some("v6"), 1),
            ("linux", "arm", Some("v7"), 2),
            ("linux", "amd64", None, 3),
            ("linux", "arm64", Some("v8"), 4),
        ]);
        let pick = |p: &str| choose_platform(&idx, &want(p), "r").unwrap();
        assert_eq!(pick("linux/amd64"), Digest::of(&[3]));
        assert_eq!(pick("linux/arm/v7"), Digest::of(&[2]));
        assert_eq!(
            pick("linux/arm"),
            Digest::of(&[1]),
            "no variant: the first arm"
        );
        // An arm64 image that omits `v8` still runs on arm64/v8.
        let idx2 = index(&[("linux", "arm64", None, 7)]);
        assert_eq!(
            choose_platform(&idx2, &want("linux/arm64/v8"), "r").unwrap(),
            Digest::of(&[7])
        );
    }

    #[test]
    fn platform_choice_names_what_there_is() {
        let idx = index(&[("unknown", "unknown", None, 0), ("linux", "s390x", None, 1)]);
        let err = choose_platform(&idx, &want("linux/amd64"), "reg/x:1")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("reg/x:1") && err.contains("linux/amd64") && err.contains("linux/s390x"),
            "{err}"
        );
        assert!(
            !err.contains("unknown"),
            "attestations are not platforms: {err}"
        );
        let err = choose_platform(&index(&[]), &want("linux/amd64"), "r")
            .unwrap_err()
            .to_string();
        assert!(err.contains("no platforms listed"), "{err}");
    }
}
