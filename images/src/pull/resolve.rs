//! Resolving a reference: the manifest (choosing a platform out of an index) and the
//! config, both small JSON documents fetched into memory, capped and verified.

use super::{Ctx, PullError};
use futures_util::TryStreamExt;
use oci_client::secrets::RegistryAuth;
use oci_client::Reference;
use oci_spec::image::ImageIndex;

use crate::digest::Digest;
use crate::platform::Platform;

pub(super) const MANIFEST_TYPES: &[&str] = &[
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
];
/// Manifests and configs larger than this are refused (containerd uses the same cap).
pub(super) const MAX_JSON_BLOB: u64 = 4 << 20;

pub(super) fn bad_manifest(reference: &str, digest: &Digest, reason: String) -> PullError {
    PullError::BadManifest {
        reference: reference.to_string(),
        digest: digest.to_string(),
        reason,
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
    /// Fetches a manifest and checks it against the digest it was asked by, or that
    /// the registry claims.
    pub(super) async fn manifest(&self, r: &Reference) -> Result<(Vec<u8>, Digest), PullError> {
        let fetched = self
            .retrying(|| {
                self.client
                    .pull_manifest_raw(r, &RegistryAuth::Anonymous, MANIFEST_TYPES)
            })
            .await;
        let (bytes, claimed) = match fetched {
            Ok(ok) => ok,
            Err(oci_client::errors::OciDistributionError::DigestError(e)) => {
                return Err(bad_manifest(
                    &self.reference,
                    &Digest::of(b""),
                    e.to_string(),
                ))
            }
            Err(e) => return Err(self.registry_err(e)),
        };
        if bytes.len() as u64 > MAX_JSON_BLOB {
            return Err(bad_manifest(
                &self.reference,
                &Digest::of(&bytes),
                format!("larger than {MAX_JSON_BLOB} bytes"),
            ));
        }
        let actual = Digest::of(&bytes);
        let expected = match r.digest() {
            Some(d) => Some(d.parse::<Digest>()?),
            None => claimed.parse::<Digest>().ok(),
        };
        if let Some(expected) = expected {
            if expected != actual {
                return Err(PullError::DigestMismatch { expected, actual });
            }
        }
        Ok((bytes.to_vec(), actual))
    }

    /// Picks this platform's manifest out of an index.
    pub(super) fn choose(&self, index: &ImageIndex) -> Result<Digest, PullError> {
        choose_platform(index, &self.opts.platform, &self.reference)
    }

    /// Fetches a config-sized blob into memory, verified, and capped.
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
        if let Ok(data) = self.store.read_blob(digest) {
            return Ok(data);
        }
        let digest_str = digest.to_string();
        let data = self
            .retrying(|| async {
                let mut stream = self
                    .client
                    .pull_blob_stream(&self.fetch_ref, digest_str.as_str())
                    .await?;
                let mut out = Vec::new();
                while let Some(chunk) = stream.try_next().await? {
                    out.extend_from_slice(&chunk);
                    if out.len() as u64 > size {
                        break;
                    }
                }
                Ok(out)
            })
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

    pub(super) fn registry_err(
        &self,
        source: oci_client::errors::OciDistributionError,
    ) -> PullError {
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
