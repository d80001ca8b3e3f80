//! The unpack pipeline of one layer, on a blocking thread:
//! network chunks -> (sha256 + ingest file) -> decompressor -> (sha256 + size cap) -> tar
//! unpack into `layers/tmp/`. Nothing becomes visible until both digests match: then the
//! layer directory and the blob are renamed into place.

use super::{Ctx, LayerOutcome, Progress, PullError};
use bytes::Bytes;
use std::fs::File;
use std::io::{self, Read, Seek, Write};
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::mpsc;

use super::resume::ChannelReader;
use crate::digest::{Digest, HashingReader};
use crate::store::{LayerRecord, StoreError};
use crate::unpack::{self, UnpackError};

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

impl Ctx {
    /// Brings one layer into the store (blob and unpacked directory). A local blob that
    /// turns out corrupt is removed and fetched again from the registry.
    pub(super) async fn layer(self: &Arc<Self>, layer: &LayerRecord) -> Result<(), PullError> {
        match self.layer_once(layer).await {
            Err(e @ PullError::LocalCorrupt { .. }) => {
                tracing::warn!(error = %e, "fetching the blob again from the registry");
                self.layer_once(layer).await
            }
            other => other,
        }
    }

    async fn layer_once(self: &Arc<Self>, layer: &LayerRecord) -> Result<(), PullError> {
        let store = &self.store;
        // A reused blob is verified: first its size, then (when its layer is unpacked
        // already, so nothing else reads it in this pull) its hash. A bad one is the
        // local copy's fault: removed, named, and fetched again by `layer`.
        if let Some(len) = store
            .blob_len(&layer.digest)
            .filter(|len| *len != layer.size)
        {
            return Err(
                self.local_corrupt(layer, format!("it is {len} bytes, not {}", layer.size))?
            );
        }
        if store.has_layer(&layer.diff_id) && store.has_blob(&layer.digest) {
            let (s, d) = (store.clone(), layer.digest.clone());
            let verified = tokio::task::spawn_blocking(move || s.verify_blob(&d))
                .await
                .expect("verify task");
            match verified {
                Ok(()) => {
                    self.progress
                        .layer_done(&layer.digest, LayerOutcome::Exists);
                    return Ok(());
                }
                Err(StoreError::Corrupt { actual, .. }) => {
                    return Err(self.local_corrupt(layer, format!("it hashes to {actual}"))?)
                }
                // Gone meanwhile (a gc): fetched below like any missing blob.
                Err(StoreError::MissingBlob(_)) => {}
                Err(e) => return Err(e.into()),
            }
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
            let (f, len) = store.open_ingest(&layer.digest, layer.size)?;
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
            sink_error: None,
        };
        let tmp = if need_unpack {
            Some(store.begin_layer(&layer.diff_id)?)
        } else {
            None
        };
        let result = self.run_pipeline(layer, compression, &mut tee, tmp.as_ref());
        // The ingest file could not be written (a full disk): say so, naming it.
        let result = match tee.sink_error.take() {
            Some(source) => Err(PullError::Store(StoreError::Io {
                op: "write",
                path: store.ingest_path(&layer.digest),
                source,
            })),
            None => result,
        };
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
        // A local blob that fails verification is this store's fault, not the registry's.
        let result = match (result, &ingest) {
            (Err(PullError::DigestMismatch { actual, .. }), None) => {
                Err(self.local_corrupt(layer, format!("it hashes to {actual}"))?)
            }
            (Err(PullError::SizeMismatch { actual, .. }), None) => {
                Err(self.local_corrupt(layer, format!("it is {actual} bytes"))?)
            }
            (other, _) => other,
        };
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
                    // A bad download must not be resumed: a failure to remove it is told.
                    let ingest = store.ingest_path(&layer.digest);
                    if let Err(e) = std::fs::remove_file(&ingest) {
                        if e.kind() != std::io::ErrorKind::NotFound {
                            tracing::warn!("clean-up: removing {}: {e}", ingest.display());
                        }
                    }
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
                unpack::unpack(&mut diff, tmp, limit)?;
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
                        dir: tmp
                            .cloned()
                            .unwrap_or_else(|| self.store.layer_path(&layer.diff_id)),
                        source,
                    }),
                }
            }
        }
    }

    /// Removes the corrupt local blob of `layer`; the error that says so.
    fn local_corrupt(&self, layer: &LayerRecord, found: String) -> Result<PullError, PullError> {
        self.store.remove_blob(&layer.digest)?;
        Ok(PullError::LocalCorrupt {
            digest: layer.digest.clone(),
            path: self.store.blob_path(&layer.digest),
            found,
        })
    }

    fn ingest_err(&self, layer: &LayerRecord, source: io::Error) -> PullError {
        PullError::Store(StoreError::Io {
            op: "write",
            path: self.store.ingest_path(&layer.digest),
            source,
        })
    }

    /// A read error of the compressed stream (the download failed, and says why).
    fn read_err(&self, layer: &LayerRecord, source: io::Error) -> PullError {
        PullError::Read {
            digest: layer.digest.clone(),
            source,
        }
    }
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
    /// Why writing the ingest file failed, if it did (the read then fails too).
    sink_error: Option<io::Error>,
}

impl Read for Tee {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let before = self.inner.count();
        let n = self.inner.read(buf)?;
        let after = before + n as u64;
        if let Some(sink) = &mut self.sink {
            if after > self.write_from {
                let start = self.write_from.saturating_sub(before) as usize;
                if let Err(e) = sink.write_all(&buf[start..n]) {
                    let kind = e.kind();
                    self.sink_error = Some(e);
                    return Err(io::Error::new(kind, "cannot write the ingest file"));
                }
            }
        }
        if after - self.last_report >= 256 << 10 || n == 0 {
            self.last_report = after;
            self.progress.layer_progress(&self.digest, after);
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(media_type: &str) -> LayerRecord {
        LayerRecord {
            digest: Digest::of(b"l"),
            diff_id: Digest::of(b"d"),
            media_type: media_type.into(),
            size: 1,
        }
    }

    #[test]
    fn compression_comes_from_the_media_type() {
        let c = |mt: &str| compression(&layer(mt));
        for mt in [
            "application/vnd.oci.image.layer.v1.tar+gzip",
            "application/vnd.docker.image.rootfs.diff.tar.gzip",
            "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
        ] {
            assert!(matches!(c(mt), Ok(Compression::Gzip)), "{mt}");
        }
        assert!(matches!(
            c("application/vnd.oci.image.layer.v1.tar+zstd"),
            Ok(Compression::Zstd)
        ));
        assert!(matches!(
            c("application/vnd.oci.image.layer.v1.tar"),
            Ok(Compression::None)
        ));
        for mt in [
            "application/vnd.oci.image.layer.v1.tar+bzip2",
            "application/octet-stream+gzip",
            "application/vnd.cncf.helm.chart.content.v1.tar+gzip",
            "",
        ] {
            let err = c(mt).err().unwrap_or_else(|| panic!("{mt} accepted"));
            assert!(err.to_string().contains(&format!("{mt:?}")), "{err}");
        }
    }

    #[test]
    fn resume_writes_only_the_bytes_past_the_ingest_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::Store::open(dir.path()).unwrap();
        let blob = b"0123456789abcdef";
        let d = Digest::of(blob);
        // An interrupted download left the first 6 bytes.
        std::fs::write(store.ingest_path(&d), &blob[..6]).unwrap();
        let (file, have) = store.open_ingest(&d, blob.len() as u64).unwrap();
        assert_eq!(have, 6);
        // The pipeline reads the file's bytes again, then the network's from there on.
        let (tx, rx) = mpsc::channel(4);
        tx.try_send(Ok(Bytes::from_static(&blob[6..10]))).unwrap();
        tx.try_send(Ok(Bytes::from_static(&blob[10..]))).unwrap();
        drop(tx);
        let mut existing = file.try_clone().unwrap();
        existing.rewind().unwrap();
        let source: Box<dyn Read> = Box::new(existing.take(have).chain(ChannelReader::new(rx)));
        let mut tee = Tee {
            inner: HashingReader::new(source, u64::MAX),
            sink: Some(file.try_clone().unwrap()),
            write_from: have,
            progress: Arc::new(super::super::NoProgress),
            digest: d.clone(),
            last_report: 0,
            sink_error: None,
        };
        let mut all = Vec::new();
        tee.read_to_end(&mut all).unwrap();
        assert_eq!(all, blob, "the pipeline sees the whole blob once");
        assert_eq!(tee.inner.finish().unwrap(), (d.clone(), blob.len() as u64));
        assert_eq!(std::fs::read(store.ingest_path(&d)).unwrap(), blob);
    }

    #[test]
    fn an_ingest_file_longer_than_the_blob_starts_over() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::Store::open(dir.path()).unwrap();
        let d = Digest::of(b"abc");
        std::fs::write(store.ingest_path(&d), b"abcdef").unwrap();
        let (file, have) = store.open_ingest(&d, 3).unwrap();
        assert_eq!(have, 0);
        assert_eq!(file.metadata().unwrap().len(), 0);
    }

    #[test]
    fn a_failed_download_is_never_the_end_of_the_blob() {
        let (tx, rx) = mpsc::channel(2);
        tx.try_send(Ok(Bytes::from_static(b"ab"))).unwrap();
        tx.try_send(Err(io::Error::other("cut"))).unwrap();
        drop(tx);
        let mut r = ChannelReader::new(rx);
        let mut buf = [0u8; 8];
        assert_eq!(r.read(&mut buf).unwrap(), 2);
        assert!(r.read(&mut buf).is_err());
        assert!(
            r.read(&mut buf).is_err(),
            "still failed after the channel closed"
        );
    }
}
