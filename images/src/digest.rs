//! Content digests (`sha256:<hex>`) and a hashing reader.
//!
//! Only sha256 is accepted: it is what every registry and image builder writes, and a
//! digest that cannot be checked must never be trusted.

use sha2::{Digest as _, Sha256};
use std::fmt;
use std::io::{self, Read};
use std::str::FromStr;

/// A validated `sha256:<64 lowercase hex>` digest.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    hex: String,
}

#[derive(Debug, thiserror::Error)]
pub enum DigestError {
    #[error("digest {0:?} is not of the form sha256:<64 hex digits>")]
    Malformed(String),
    #[error("digest {0:?} uses an unsupported algorithm (only sha256 is supported)")]
    Algorithm(String),
}

impl Digest {
    /// The digest of `data`.
    pub fn of(data: &[u8]) -> Digest {
        Digest {
            hex: hex::encode(Sha256::digest(data)),
        }
    }

    /// The 64 hex digits, without the algorithm prefix.
    pub fn hex(&self) -> &str {
        &self.hex
    }

    fn from_hasher(hasher: Sha256) -> Digest {
        Digest {
            hex: hex::encode(hasher.finalize()),
        }
    }
}

impl FromStr for Digest {
    type Err = DigestError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let Some((alg, hex)) = s.split_once(':') else {
            return Err(DigestError::Malformed(s.to_string()));
        };
        if alg != "sha256" {
            return Err(DigestError::Algorithm(s.to_string()));
        }
        let ok = hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if !ok {
            return Err(DigestError::Malformed(s.to_string()));
        }
        Ok(Digest {
            hex: hex.to_string(),
        })
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex)
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Hashes and counts everything read through it; fails once more than `limit` bytes
/// have passed (the decompression-bomb cap).
pub struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    count: u64,
    limit: u64,
}

impl<R: Read> HashingReader<R> {
    pub fn new(inner: R, limit: u64) -> Self {
        HashingReader {
            inner,
            hasher: Sha256::new(),
            count: 0,
            limit,
        }
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    /// Reads the rest of the stream (tar archives end before their padding does), then
    /// returns the digest and the byte count of everything that passed.
    pub fn finish(mut self) -> io::Result<(Digest, u64)> {
        io::copy(&mut self, &mut io::sink())?;
        Ok((Digest::from_hasher(self.hasher), self.count))
    }
}

/// The error a [`HashingReader`] returns when its limit is passed.
#[derive(Debug, thiserror::Error)]
#[error("more than {limit} bytes")]
pub struct LimitExceeded {
    pub limit: u64,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        if self.count > self.limit {
            return Err(io::Error::other(LimitExceeded { limit: self.limit }));
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_sha256() {
        let d: Digest = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
            .parse()
            .unwrap();
        assert_eq!(d, Digest::of(b""));
        assert_eq!(d.to_string().len(), 71);
    }

    #[test]
    fn rejects_bad_digests() {
        for bad in [
            "sha256:abc",
            "sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "sha256:../../../../etc/passwd/e3b0c44298fc1c149afbf4c8996fb92427ae41e",
        ] {
            assert!(bad.parse::<Digest>().is_err(), "{bad}");
        }
        assert!(matches!(
            "sha512:00".parse::<Digest>(),
            Err(DigestError::Algorithm(_))
        ));
    }

    #[test]
    fn hashing_reader_counts_and_caps() {
        let mut r = HashingReader::new(&b"hello world"[..], 5);
        let mut buf = [0u8; 64];
        let err = r.read(&mut buf).unwrap_err();
        assert!(err.get_ref().unwrap().is::<LimitExceeded>());
        let r = HashingReader::new(&b"hello"[..], 5);
        let (d, n) = r.finish().unwrap();
        assert_eq!(n, 5);
        assert_eq!(d, Digest::of(b"hello"));
    }
}
