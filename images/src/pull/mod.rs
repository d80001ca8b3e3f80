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
//!
//! One file per concern: `resolve` (reference -> manifest -> config), `retry` (what is
//! worth another attempt and how long to wait), `resume` (the download with ranged
//! resumes), `layer` (the unpack pipeline of one layer).

mod layer;
use resolve::{bad_manifest, parse_json};
mod resolve;
mod resume;
mod retry;

use futures_util::StreamExt;
use oci_spec::image::{ImageConfiguration, ImageIndex, ImageManifest};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::client::{ClientError, Limits, RegistryClient};
use crate::digest::{Digest, DigestError};
use crate::platform::Platform;
use crate::reference::ImageRef;
use crate::registry::{RegistryConfig, RegistryError};
use crate::store::{ImageRecord, LayerRecord, Store, StoreError};
use crate::unpack::UnpackError;

#[derive(Debug, thiserror::Error)]
pub enum PullError {
    #[error("pulling {reference}")]
    Registry {
        reference: String,
        #[source]
        source: ClientError,
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
    #[error("the local copy of blob {digest} ({path:?}) is corrupt: {found}; it was removed")]
    LocalCorrupt {
        digest: Digest,
        path: std::path::PathBuf,
        found: String,
    },
    #[error("unpacking layer {digest} into {dir:?}")]
    Unpack {
        digest: Digest,
        dir: std::path::PathBuf,
        #[source]
        source: UnpackError,
    },
    #[error("downloading {digest} failed after {attempts} attempts in {} s", elapsed.as_secs())]
    Download {
        digest: Digest,
        attempts: u32,
        elapsed: std::time::Duration,
        #[source]
        source: ClientError,
    },
    #[error("reading layer {digest}")]
    Read {
        digest: Digest,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Credentials(#[from] RegistryError),
    #[error("digest in reference")]
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
    /// How long network errors are retried (with backoff) before a request or a blob
    /// download gives up: long enough for a registry to restart.
    pub retry_window: Duration,
    /// Deadlines and minimum throughput of registry requests.
    pub limits: Limits,
}

impl Default for PullOptions {
    fn default() -> Self {
        PullOptions {
            platform: Platform::host(),
            platform_explicit: false,
            registry: RegistryConfig::default(),
            concurrency: 3,
            max_layer_size: 8 << 30,
            retry_window: Duration::from_secs(40),
            limits: Limits::default(),
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
    client: RegistryClient,
    /// The tag or digest the reference names (`latest` when it names neither).
    tag_or_digest: String,
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
    let credentials = opts.registry.credentials_for(image)?;
    let reference = image.to_string();
    let client = RegistryClient::new(
        &opts.registry,
        &endpoint,
        image.repository(),
        credentials,
        opts.limits.clone(),
    )
    .map_err(|source| PullError::Registry {
        reference: reference.clone(),
        source,
    })?;
    let ctx = Ctx {
        store,
        client,
        tag_or_digest: match (image.digest(), image.tag()) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.to_string(),
            (None, None) => "latest".to_string(),
        },
        reference,
        opts: opts.clone(),
        progress,
    };

    // 1. Authenticate: the registry's challenge tells whether and where to get a token.
    ctx.retrying(|| ctx.client.authenticate())
        .await
        .map_err(|e| ctx.registry_err(e))?;

    // 2. Resolve the reference to one image manifest, choosing the platform in an index.
    let asked = image.digest();
    let (top_bytes, top_digest) = ctx.manifest(&ctx.tag_or_digest, asked.as_ref()).await?;
    let top: serde_json::Value = parse_json(&top_bytes, &ctx.reference, &top_digest)?;
    let (manifest_bytes, manifest_digest, index) = if top.get("manifests").is_some() {
        let index: ImageIndex = parse_json(&top_bytes, &ctx.reference, &top_digest)?;
        let chosen = ctx.choose(&index)?;
        let (bytes, digest) = ctx.manifest(&chosen.to_string(), Some(&chosen)).await?;
        (bytes, digest, Some((top_digest, top_bytes)))
    } else {
        (top_bytes, top_digest, None)
    };
    let index_digest = index.as_ref().map(|(d, _)| d.clone());
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

    // 4. Pin what this pull is about to add, so that a `gc` running meanwhile keeps it
    //    (the store lock is held only while the pin is written, never across the network).
    let pinned: Vec<Digest> = [&manifest_digest, &config_digest]
        .into_iter()
        .chain(index_digest.as_ref())
        .cloned()
        .chain(
            layers
                .iter()
                .flat_map(|l| [l.digest.clone(), l.diff_id.clone()]),
        )
        .collect();
    let store = ctx.store.clone();
    let _pin = tokio::task::spawn_blocking(move || store.pin(&pinned))
        .await
        .expect("pin task")?;

    // 5. Layers, a few at once; the first failure stops the pull.
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

    // 6. Record the image: manifests last, so a listed image always has its content.
    ctx.store.write_blob(&config_digest, &config_bytes)?;
    ctx.store.write_blob(&manifest_digest, &manifest_bytes)?;
    if let Some((d, bytes)) = &index {
        ctx.store.write_blob(d, bytes)?;
    }
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
