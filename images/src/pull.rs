//! Pulling an image: resolve the reference to a manifest (choosing a platform out of an
//! index), fetch and verify the config, then fetch every layer (a few at once), unpacking
//! while the bytes arrive, and record the image.
//!
//! A layer travels through one pipeline on a blocking thread:
//! network chunks -> (sha256 + ingest file) -> decompressor -> (sha256 + size cap) -> tar
//! unpack into `layers/tmp/`. Nothing becomes visible until both digests match: then the
//! layer directory and the blob are renamed into place. A dropped connection is resumed
//! with an HTTP range request, so the pipeline just sees more bytes; a crash leaves the
//! ingest file, which the next pull replays and resumes from.

use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference, RegistryOperation};
use oci_spec::image::{ImageConfiguration, ImageIndex, ImageManifest};
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::mpsc;

use crate::digest::{Digest, DigestError, HashingReader};
use crate::platform::Platform;
use crate::reference::ImageRef;
use crate::registry::{RegistryConfig, RegistryError};
use crate::store::{ImageRecord, LayerRecord, Store, StoreError};
use crate::unpack::{self, UnpackError};

const MANIFEST_TYPES: &[&str] = &[
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
];
/// Manifests and configs larger than this are refused (containerd uses the same cap).
const MAX_JSON_BLOB: u64 = 4 << 20;

#[derive(Debug, thiserror::Error)]
pub enum PullError {
    #[error("pulling {reference}: {source}")]
    Registry {
        reference: String,
        #[source]
        source: oci_client::errors::OciDistributionError,
    },
    #[error("pulling {reference}: the registry's manifest {digest} is invalid: {reason}")]
    BadManifest {
        reference: String,
        digest: String,
        reason: String,
    },
    #[error("{reference} has no image for platform {wanted} (it has: {available})")]
    NoPlatform {
        reference: String,
        wanted: Platform,
        available: String,
    },
    #[error(
        "blob {expected} failed verification: the registry sent content that hashes to {actual}"
    )]
    DigestMismatch { expected: Digest, actual: Digest },
    #[error("blob {digest} is {actual} bytes, but the manifest says {expected}")]
    SizeMismatch {
        digest: Digest,
        expected: u64,
        actual: u64,
    },
    #[error("layer {digest} failed verification: it unpacks to {actual}, but the image config says its diff_id is {expected}")]
    DiffIdMismatch {
        digest: Digest,
        expected: Digest,
        actual: Digest,
    },
    #[error("layer {digest} has media type {media_type:?}, which frun cannot unpack")]
    MediaType { digest: Digest, media_type: String },
    #[error("layer {digest}: {source}")]
    Unpack {
        digest: Digest,
        #[source]
        source: UnpackError,
    },
    #[error("downloading {digest} failed after {attempts} attempts: {reason}")]
    Download {
        digest: Digest,
        attempts: u32,
        reason: String,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Credentials(#[from] RegistryError),
    #[error("digest in reference: {0}")]
    Digest(#[from] DigestError),
}

/// How to pull.
#[derive(Clone, Debug)]
pub struct PullOptions {
    pub platform: Platform,
    /// True when the user named the platform: then a single-platform image of another
    /// platform is refused too (an index never yields the wrong one).
    pub platform_explicit: bool,
    pub registry: RegistryConfig,
    /// Layers fetched at once.
    pub concurrency: usize,
    /// Cap on one layer's uncompressed size (decompression bombs).
    pub max_layer_size: u64,
    /// Attempts per blob after the first, on network errors.
    pub retries: u32,
}

impl Default for PullOptions {
    fn default() -> Self {
        PullOptions {
            platform: Platform::host(),
            platform_explicit: false,
            registry: RegistryConfig::default(),
            concurrency: 3,
            max_layer_size: 8 << 30,
            retries: 5,
        }
    }
}

/// What happened to one layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayerOutcome {
    /// Already in the store.
    Exists,
    /// Downloaded, verified and unpacked.
    Pulled,
}

/// Receives progress; the CLI draws bars from it, tests and scripts ignore it.
pub trait Progress: Send + Sync {
    fn resolved(&self, _reference: &str, _manifest: &Digest, _platform: &Platform) {}
    fn layer_start(&self, _digest: &Digest, _size: u64) {}
    /// Compressed bytes of the layer processed so far (including resumed bytes).
    fn layer_progress(&self, _digest: &Digest, _done: u64) {}
    fn layer_retry(&self, _digest: &Digest, _attempt: u32, _error: &str) {}
    fn layer_done(&self, _digest: &Digest, _outcome: LayerOutcome) {}
}

/// Progress for nobody.
pub struct NoProgress;
impl Progress for NoProgress {}

struct Ctx {
    store: Arc<Store>,
    client: Client,
    fetch_ref: Reference,
    reference: String,
    opts: PullOptions,
    progress: Arc<dyn Progress>,
}

/// Pulls `image` into `store` and records it. Returns the record.
pub async fn pull(
    store: Arc<Store>,
    image: &ImageRef,
    opts: &PullOptions,
    progress: Arc<dyn Progress>,
) -> Result<ImageRecord, PullError> {
    let endpoint = opts.registry.endpoint(image);
    let auth = opts.registry.auth_for(image)?;
    let ctx = Ctx {
        store,
        client: opts.registry.client(&endpoint),
        fetch_ref: image.fetch_reference(&endpoint),
        reference: image.to_string(),
        opts: opts.clone(),
        progress,
    };
    let reg = |source| PullError::Registry {
        reference: ctx.reference.clone(),
        source,
    };

    // 1. Authenticate: the registry's challenge tells whether and where to get a token.
    ctx.client
        .auth(&ctx.fetch_ref, &auth, RegistryOperation::Pull)
        .await
        .map_err(reg)?;
    // The store lock keeps `gc` from removing what this pull writes before it is recorded.
    let store = ctx.store.clone();
    let _shared = tokio::task::spawn_blocking(move || store.lock_shared())
        .await
        .expect("lock task")?;

    // 2. Resolve the reference to one image manifest, choosing the platform in an index.
    let (top_bytes, top_digest) = ctx.manifest(&ctx.fetch_ref).await?;
    let top: serde_json::Value = parse_json(&top_bytes, &ctx.reference, &top_digest)?;
    let (manifest_bytes, manifest_digest, index_digest) = if top.get("manifests").is_some() {
        let index: ImageIndex = parse_json(&top_bytes, &ctx.reference, &top_digest)?;
        let chosen = ctx.choose(&index)?;
        let by_digest = ctx.fetch_ref.clone_with_digest(chosen.to_string());
        let (bytes, digest) = ctx.manifest(&by_digest).await?;
        if digest != chosen {
            return Err(PullError::DigestMismatch {
                expected: chosen,
                actual: digest,
            });
        }
        ctx.store.write_blob(&top_digest, &top_bytes)?;
        (bytes, digest, Some(top_digest))
    } else {
        (top_bytes, top_digest, None)
    };
    if serde_json::from_slice::<serde_json::Value>(&manifest_bytes)
        .ok()
        .and_then(|v| v.get("schemaVersion").and_then(|s| s.as_i64()))
        == Some(1)
    {
        return Err(bad_manifest(
            &ctx.reference,
            &manifest_digest,
            "Docker schema 1 manifests are not supported (deprecated since 2017)".into(),
        ));
    }
    let manifest: ImageManifest = parse_json(&manifest_bytes, &ctx.reference, &manifest_digest)?;

    // 3. The config: verified, then checked against the platform and the layer list.
    let config_digest: Digest = manifest
        .config()
        .digest()
        .to_string()
        .parse()
        .map_err(|e: DigestError| bad_manifest(&ctx.reference, &manifest_digest, e.to_string()))?;
    let config_bytes = ctx
        .small_blob(&config_digest, manifest.config().size())
        .await?;
    let config: ImageConfiguration = serde_json::from_slice(&config_bytes).map_err(|e| {
        bad_manifest(
            &ctx.reference,
            &manifest_digest,
            format!("config {config_digest}: {e}"),
        )
    })?;
    let platform = Platform {
        os: config.os().to_string(),
        architecture: config.architecture().to_string(),
        variant: config.variant().clone(),
    };
    if ctx.opts.platform_explicit
        && !ctx.opts.platform.matches(
            &platform.os,
            &platform.architecture,
            platform.variant.as_deref(),
        )
    {
        return Err(PullError::NoPlatform {
            reference: ctx.reference.clone(),
            wanted: ctx.opts.platform.clone(),
            available: platform.to_string(),
        });
    }
    let diff_ids = config.rootfs().diff_ids();
    if diff_ids.len() != manifest.layers().len() {
        return Err(bad_manifest(
            &ctx.reference,
            &manifest_digest,
            format!(
                "{} layers, but its config {config_digest} lists {} diff_ids",
                manifest.layers().len(),
                diff_ids.len()
            ),
        ));
    }
    let mut layers = Vec::new();
    for (desc, diff_id) in manifest.layers().iter().zip(diff_ids) {
        let bad = |e: DigestError| bad_manifest(&ctx.reference, &manifest_digest, e.to_string());
        layers.push(LayerRecord {
            digest: desc.digest().to_string().parse().map_err(bad)?,
            diff_id: diff_id.parse().map_err(bad)?,
            media_type: desc.media_type().to_string(),
            size: desc.size(),
        });
    }
    ctx.progress
        .resolved(&ctx.reference, &manifest_digest, &platform);

    // 4. Layers, a few at once; the first failure stops the pull.
    let ctx = Arc::new(ctx);
    let results: Vec<Result<(), PullError>> = futures_util::stream::iter(layers.clone())
        .map(|layer| {
            let ctx = ctx.clone();
            async move { ctx.layer(&layer).await }
        })
        .buffer_unordered(ctx.opts.concurrency.max(1))
        .collect()
        .await;
    for r in results {
        r?;
    }

    // 5. Record the image: manifests last, so a listed image always has its content.
    ctx.store.write_blob(&config_digest, &config_bytes)?;
    ctx.store.write_blob(&manifest_digest, &manifest_bytes)?;
    let size = manifest_bytes.len() as u64
        + config_bytes.len() as u64
        + layers.iter().map(|l| l.size).sum::<u64>();
    let record = ImageRecord {
        reference: ctx.reference.clone(),
        manifest_digest,
        index_digest,
        config_digest,
        platform,
        layers,
        size,
        pulled_at: SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
    };
    ctx.store.put_image(record.clone())?;
    Ok(record)
}

fn bad_manifest(reference: &str, digest: &Digest, reason: String) -> PullError {
    PullError::BadManifest {
        reference: reference.to_string(),
        digest: digest.to_string(),
        reason,
    }
}

fn parse_json<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
    reference: &str,
    digest: &Digest,
) -> Result<T, PullError> {
    serde_json::from_slice(bytes).map_err(|e| bad_manifest(reference, digest, e.to_string()))
}

/// How a layer's bytes are compressed.
enum Compression {
    Gzip,
    Zstd,
    None,
}

fn compression(layer: &LayerRecord) -> Result<Compression, PullError> {
    let mt = layer.media_type.as_str();
    let known_prefix = mt.starts_with("application/vnd.oci.image.layer.")
        || mt.starts_with("application/vnd.docker.image.rootfs.");
    if known_prefix && mt.ends_with("gzip") {
        Ok(Compression::Gzip)
    } else if known_prefix && mt.ends_with("zstd") {
        Ok(Compression::Zstd)
    } else if known_prefix && mt.ends_with(".tar") {
        Ok(Compression::None)
    } else {
        Err(PullError::MediaType {
            digest: layer.digest.clone(),
            media_type: mt.to_string(),
        })
    }
}

fn is_retryable(e: &oci_client::errors::OciDistributionError) -> bool {
    use oci_client::errors::OciDistributionError as E;
    match e {
        E::RequestError(_) | E::IoError(_) => true,
        E::ServerError { code, .. } => *code >= 500 || *code == 429,
        _ => false,
    }
}

impl Ctx {
    /// Fetches a manifest and checks it against the digest it was asked by, or that
    /// the registry claims.
    async fn manifest(&self, r: &Reference) -> Result<(Vec<u8>, Digest), PullError> {
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
    fn choose(&self, index: &ImageIndex) -> Result<Digest, PullError> {
        let want = &self.opts.platform;
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
            reference: self.reference.clone(),
            wanted: want.clone(),
            available: if available.is_empty() {
                "no platforms listed".into()
            } else {
                available.join(", ")
            },
        })
    }

    /// Fetches a config-sized blob into memory, verified, and capped.
    async fn small_blob(&self, digest: &Digest, size: u64) -> Result<Vec<u8>, PullError> {
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

    /// Runs `op` again, with backoff, while it fails with a network error, up to the
    /// configured number of retries.
    async fn retrying<T, Fut>(
        &self,
        op: impl Fn() -> Fut,
    ) -> Result<T, oci_client::errors::OciDistributionError>
    where
        Fut: std::future::Future<Output = Result<T, oci_client::errors::OciDistributionError>>,
    {
        let mut attempt = 0;
        loop {
            match op().await {
                Err(e) if is_retryable(&e) && attempt < self.opts.retries => {
                    attempt += 1;
                    tokio::time::sleep(backoff(attempt)).await;
                }
                other => return other,
            }
        }
    }

    fn registry_err(&self, source: oci_client::errors::OciDistributionError) -> PullError {
        PullError::Registry {
            reference: self.reference.clone(),
            source,
        }
    }

    /// Brings one layer into the store (blob and unpacked directory).
    async fn layer(self: &Arc<Self>, layer: &LayerRecord) -> Result<(), PullError> {
        let store = &self.store;
        if store.has_layer(&layer.diff_id) && store.has_blob(&layer.digest) {
            self.progress
                .layer_done(&layer.digest, LayerOutcome::Exists);
            return Ok(());
        }
        let compression = compression(layer)?;
        // Another pull of the same layer finishes first; this one then finds it done.
        let (s, l) = (store.clone(), layer.clone());
        let locks = tokio::task::spawn_blocking(move || {
            // An uncompressed layer's digest is its diff_id: one lock, not two (a second
            // flock of the same file would wait for the first forever).
            let blob = s.lock_digest(&l.digest)?;
            let layer = if l.diff_id != l.digest {
                Some(s.lock_digest(&l.diff_id)?)
            } else {
                None
            };
            Ok::<_, StoreError>((blob, layer))
        })
        .await
        .expect("lock task")?;
        let need_unpack = !store.has_layer(&layer.diff_id);
        let need_blob = !store.has_blob(&layer.digest);
        if !need_unpack && !need_blob {
            self.progress
                .layer_done(&layer.digest, LayerOutcome::Exists);
            return Ok(());
        }
        self.progress.layer_start(&layer.digest, layer.size);

        // The source of compressed bytes: the local blob, or what an interrupted pull
        // left in the ingest file followed by the network from there on.
        let (ingest, resume_from) = if need_blob {
            let path = store.ingest_path(&layer.digest);
            let f = OpenOptions::new()
                .create(true)
                .truncate(false)
                .read(true)
                .append(true)
                .mode(0o600)
                .open(&path)
                .map_err(|source| StoreError::Io {
                    op: "open",
                    path: path.clone(),
                    source,
                })?;
            let len = f.metadata().map(|m| m.len()).unwrap_or(0);
            // A partial file longer than the blob is garbage: start over.
            let len = if len > layer.size {
                f.set_len(0).ok();
                0
            } else {
                len
            };
            (Some(f), len)
        } else {
            (None, 0)
        };
        let (tx, rx) = mpsc::channel::<io::Result<Bytes>>(16);
        let download = async {
            if need_blob && resume_from < layer.size {
                self.download(layer, resume_from, tx).await
            } else {
                drop(tx);
                Ok(())
            }
        };
        let pipeline = {
            let ctx = self.clone();
            let layer = layer.clone();
            tokio::task::spawn_blocking(move || {
                let _locks = locks;
                ctx.process(&layer, compression, ingest, resume_from, rx, need_unpack)
            })
        };
        let (downloaded, processed) = tokio::join!(download, pipeline);
        let processed = processed.expect("layer pipeline panicked");
        // A download failure explains a pipeline failure, not the other way round.
        downloaded?;
        processed?;
        self.progress
            .layer_done(&layer.digest, LayerOutcome::Pulled);
        Ok(())
    }

    /// Streams the blob from `offset` into `tx`, resuming with range requests after
    /// network errors. Stops quietly when the pipeline hangs up.
    async fn download(
        &self,
        layer: &LayerRecord,
        mut offset: u64,
        tx: mpsc::Sender<io::Result<Bytes>>,
    ) -> Result<(), PullError> {
        let digest = layer.digest.to_string();
        let mut attempt = 0u32;
        let mut last_error = String::new();
        loop {
            if attempt > self.opts.retries {
                let err = PullError::Download {
                    digest: layer.digest.clone(),
                    attempts: attempt,
                    reason: last_error,
                };
                let _ = tx.send(Err(io::Error::other("download failed"))).await;
                return Err(err);
            }
            if attempt > 0 {
                self.progress
                    .layer_retry(&layer.digest, attempt, &last_error);
                tokio::time::sleep(backoff(attempt)).await;
            }
            attempt += 1;
            let response = if offset == 0 {
                self.client
                    .pull_blob_stream(&self.fetch_ref, digest.as_str())
                    .await
                    .map(|s| (s, 0u64))
            } else {
                self.client
                    .pull_blob_stream_partial(&self.fetch_ref, digest.as_str(), offset, None)
                    .await
                    .map(|r| match r {
                        oci_client::client::BlobResponse::Partial(s) => (s, 0),
                        // The registry ignored the range: skip what we already have.
                        oci_client::client::BlobResponse::Full(s) => (s, offset),
                    })
            };
            let (mut stream, mut skip) = match response {
                Ok(s) => s,
                Err(e) if is_retryable(&e) => {
                    last_error = format!("{e:#}");
                    continue;
                }
                Err(e) => {
                    let reason = format!("{e}");
                    let _ = tx.send(Err(io::Error::other("download failed"))).await;
                    return Err(PullError::Download {
                        digest: layer.digest.clone(),
                        attempts: attempt,
                        reason,
                    });
                }
            };
            loop {
                match stream.next().await {
                    Some(Ok(mut chunk)) => {
                        if skip > 0 {
                            let n = skip.min(chunk.len() as u64);
                            skip -= n;
                            chunk = chunk.slice(n as usize..);
                            if chunk.is_empty() {
                                continue;
                            }
                        }
                        offset += chunk.len() as u64;
                        if offset > layer.size {
                            let _ = tx.send(Err(io::Error::other("blob too large"))).await;
                            return Err(PullError::SizeMismatch {
                                digest: layer.digest.clone(),
                                expected: layer.size,
                                actual: offset,
                            });
                        }
                        if tx.send(Ok(chunk)).await.is_err() {
                            return Ok(());
                        }
                    }
                    // oci-client's own check at the end of a full response: our pipeline
                    // hashes too and reports the mismatch with both digests.
                    Some(Err(e))
                        if e.get_ref()
                            .is_some_and(|i| i.is::<oci_client::errors::DigestError>()) =>
                    {
                        return Ok(());
                    }
                    Some(Err(e)) => {
                        last_error = format!("{e:#}");
                        break;
                    }
                    None => {
                        if offset >= layer.size {
                            return Ok(());
                        }
                        last_error =
                            format!("connection closed at byte {offset} of {}", layer.size);
                        break;
                    }
                }
            }
        }
    }

    /// The blocking half: hash, keep, decompress, hash again, unpack; then verify and
    /// commit, or throw everything of this attempt away.
    fn process(
        &self,
        layer: &LayerRecord,
        compression: Compression,
        ingest: Option<File>,
        resume_from: u64,
        rx: mpsc::Receiver<io::Result<Bytes>>,
        need_unpack: bool,
    ) -> Result<(), PullError> {
        let store = &self.store;
        let source: Box<dyn Read> = match &ingest {
            Some(f) => {
                let mut existing = f.try_clone().map_err(|e| self.ingest_err(layer, e))?;
                existing.rewind().map_err(|e| self.ingest_err(layer, e))?;
                Box::new(existing.take(resume_from).chain(ChannelReader::new(rx)))
            }
            None => {
                drop(rx);
                let path = store.blob_path(&layer.digest);
                Box::new(File::open(&path).map_err(|source| StoreError::Io {
                    op: "open",
                    path,
                    source,
                })?)
            }
        };
        let mut tee = Tee {
            // The download enforces the declared size; a local blob was verified.
            inner: HashingReader::new(source, u64::MAX),
            sink: ingest
                .as_ref()
                .map(|f| f.try_clone())
                .transpose()
                .map_err(|e| self.ingest_err(layer, e))?,
            write_from: resume_from,
            progress: self.progress.clone(),
            digest: layer.digest.clone(),
            last_report: 0,
        };
        let tmp = if need_unpack {
            Some(store.begin_layer(&layer.diff_id)?)
        } else {
            None
        };
        let result = self.run_pipeline(layer, compression, &mut tee, tmp.as_ref());
        let result = result.and_then(|diff_id| {
            let (digest, n) = tee.inner.finish().map_err(|e| self.read_err(layer, e))?;
            if digest != layer.digest {
                return Err(PullError::DigestMismatch {
                    expected: layer.digest.clone(),
                    actual: digest,
                });
            }
            if n != layer.size {
                return Err(PullError::SizeMismatch {
                    digest: layer.digest.clone(),
                    expected: layer.size,
                    actual: n,
                });
            }
            if diff_id != layer.diff_id {
                return Err(PullError::DiffIdMismatch {
                    digest: layer.digest.clone(),
                    expected: layer.diff_id.clone(),
                    actual: diff_id,
                });
            }
            Ok(())
        });
        match result {
            Ok(()) => {
                if let Some(tmp) = &tmp {
                    store.commit_layer(tmp, &layer.diff_id)?;
                }
                if let Some(f) = &ingest {
                    store.commit_ingest(&layer.digest, f)?;
                }
                Ok(())
            }
            Err(e) => {
                if let Some(tmp) = &tmp {
                    store.abort_layer(tmp);
                }
                // A corrupt blob is not worth resuming; a cut connection is.
                if matches!(
                    e,
                    PullError::DigestMismatch { .. }
                        | PullError::SizeMismatch { .. }
                        | PullError::DiffIdMismatch { .. }
                        | PullError::Unpack { .. }
                ) {
                    let _ = std::fs::remove_file(store.ingest_path(&layer.digest));
                }
                Err(e)
            }
        }
    }

    /// Decompresses and unpacks; returns the diff_id. On an unpack error, reads the rest
    /// of the blob so that a corrupt download is reported as the digest mismatch it is.
    fn run_pipeline(
        &self,
        layer: &LayerRecord,
        compression: Compression,
        tee: &mut Tee,
        tmp: Option<&PathBuf>,
    ) -> Result<Digest, PullError> {
        let limit = self.opts.max_layer_size;
        let res = (|| {
            let decompressed: Box<dyn Read + '_> = match compression {
                Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(&mut *tee)),
                Compression::Zstd => Box::new(
                    ruzstd::decoding::StreamingDecoder::new(&mut *tee)
                        .map_err(|e| UnpackError::Read(io::Error::other(e.to_string())))?,
                ),
                Compression::None => Box::new(&mut *tee),
            };
            let mut diff = HashingReader::new(decompressed, limit);
            if let Some(tmp) = tmp {
                unpack::unpack(&mut diff, tmp)?;
            }
            let (diff_id, _) = diff.finish().map_err(UnpackError::read)?;
            Ok::<Digest, UnpackError>(diff_id)
        })();
        match res {
            Ok(d) => Ok(d),
            Err(source) => {
                if let Err(e) = io::copy(&mut *tee, &mut io::sink()) {
                    return Err(self.read_err(layer, e));
                }
                let actual =
                    std::mem::replace(&mut tee.inner, HashingReader::new(Box::new(io::empty()), 0))
                        .finish()
                        .map(|(d, _)| d);
                match actual {
                    Ok(actual) if actual != layer.digest => Err(PullError::DigestMismatch {
                        expected: layer.digest.clone(),
                        actual,
                    }),
                    _ => Err(PullError::Unpack {
                        digest: layer.digest.clone(),
                        source,
                    }),
                }
            }
        }
    }

    fn ingest_err(&self, layer: &LayerRecord, source: io::Error) -> PullError {
        PullError::Store(StoreError::Io {
            op: "write",
            path: self.store.ingest_path(&layer.digest),
            source,
        })
    }

    /// A read error of the compressed stream: the download failed (and says why).
    fn read_err(&self, layer: &LayerRecord, e: io::Error) -> PullError {
        PullError::Download {
            digest: layer.digest.clone(),
            attempts: self.opts.retries + 1,
            reason: e.to_string(),
        }
    }
}

fn backoff(attempt: u32) -> Duration {
    Duration::from_millis((100u64 << attempt.min(6)).min(5_000))
}

/// Hashes the compressed stream (through its `HashingReader`), appends the bytes past
/// `write_from` to the ingest file, and reports progress.
struct Tee {
    inner: HashingReader<Box<dyn Read>>,
    sink: Option<File>,
    write_from: u64,
    progress: Arc<dyn Progress>,
    digest: Digest,
    last_report: u64,
}

impl Read for Tee {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let before = self.inner.count();
        let n = self.inner.read(buf)?;
        let after = before + n as u64;
        if let Some(sink) = &mut self.sink {
            if after > self.write_from {
                let start = self.write_from.saturating_sub(before) as usize;
                sink.write_all(&buf[start..n])?;
            }
        }
        if after - self.last_report >= 256 << 10 || n == 0 {
            self.last_report = after;
            self.progress.layer_progress(&self.digest, after);
        }
        Ok(n)
    }
}

/// The blocking end of the download channel.
struct ChannelReader {
    rx: mpsc::Receiver<io::Result<Bytes>>,
    current: Bytes,
    /// Once the download has failed, every read fails: a closed channel after an error
    /// must not look like the end of the blob.
    failed: bool,
}

impl ChannelReader {
    fn new(rx: mpsc::Receiver<io::Result<Bytes>>) -> Self {
        ChannelReader {
            rx,
            current: Bytes::new(),
            failed: false,
        }
    }
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            if self.failed {
                return Err(io::Error::other("download failed"));
            }
            match self.rx.blocking_recv() {
                Some(Ok(b)) => self.current = b,
                Some(Err(e)) => {
                    self.failed = true;
                    return Err(e);
                }
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        self.current = self.current.slice(n..);
        Ok(n)
    }
}
