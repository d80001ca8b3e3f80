//! Encryption of archives with the age format (the `age` crate): to one or more X25519
//! recipients (`age1...` public keys: the machine that makes backups never holds the key
//! that opens them), or to a passphrase read from a file. An encrypted archive is the
//! zstd stream wrapped in age (`NAME.tar.zst.age`); it is recognised by age's header,
//! not by its name.
//!
//! Keys and passphrases are read from files, kept in `SecretString`s and never printed:
//! errors name the file, never its content.

use age::secrecy::SecretString;
use anyhow::{bail, Context};
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

/// What every age file begins with.
pub const MAGIC: &[u8] = b"age-encryption.org/v1\n";

/// How backups are encrypted when they are made.
#[derive(Clone, Debug, Default)]
pub struct Encrypt {
    /// `age1...` public keys.
    pub recipients: Vec<String>,
    /// A file whose first line is the passphrase.
    pub passphrase_file: Option<PathBuf>,
}

/// How encrypted backups are opened.
#[derive(Clone, Debug, Default)]
pub struct Decrypt {
    /// An age identity file (`AGE-SECRET-KEY-1...` lines).
    pub identity_file: Option<PathBuf>,
    pub passphrase_file: Option<PathBuf>,
}

impl Encrypt {
    /// The encryptor, or `None` when backups are not encrypted.
    pub fn encryptor(&self) -> anyhow::Result<Option<age::Encryptor>> {
        match (&self.passphrase_file, self.recipients.is_empty()) {
            (None, true) => Ok(None),
            (Some(_), false) => {
                bail!("give either recipients or a passphrase file for the backups' encryption, not both (age cannot mix them)")
            }
            (Some(p), true) => Ok(Some(age::Encryptor::with_user_passphrase(passphrase(p)?))),
            (None, false) => {
                let rs = self
                    .recipients
                    .iter()
                    .map(|r| parse_recipient(r).map_err(|e| anyhow::anyhow!(e)))
                    .collect::<anyhow::Result<Vec<_>>>()?;
                let e =
                    age::Encryptor::with_recipients(rs.iter().map(|r| r as &dyn age::Recipient))
                        .map_err(|e| anyhow::anyhow!("age: {e}"))?;
                Ok(Some(e))
            }
        }
    }
}

/// An `age1...` public key, checked.
pub fn parse_recipient(s: &str) -> Result<age::x25519::Recipient, String> {
    s.trim()
        .parse::<age::x25519::Recipient>()
        .map_err(|e| format!("not an age public key (age1...): {e}"))
}

/// The first line of a passphrase file (never printed).
fn passphrase(path: &Path) -> anyhow::Result<SecretString> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the passphrase file {}", path.display()))?;
    let line = text.lines().next().unwrap_or("").to_string();
    if line.is_empty() {
        bail!("the passphrase file {} is empty", path.display());
    }
    Ok(SecretString::from(line))
}

/// Whether the archive at `path` is an age file.
pub fn is_encrypted(path: &Path) -> anyhow::Result<bool> {
    let mut head = [0u8; 22];
    let mut f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut n = 0;
    while n < head.len() {
        let r = f.read(&mut head[n..])?;
        if r == 0 {
            break;
        }
        n += r;
    }
    Ok(&head[..n] == MAGIC)
}

impl Decrypt {
    /// The plaintext of the age stream `input`, refused (with why) when no key given
    /// opens it.
    pub fn open<R: Read>(&self, input: R) -> anyhow::Result<age::stream::StreamReader<R>> {
        let d =
            age::Decryptor::new(input).map_err(|e| anyhow::anyhow!("not a valid age file: {e}"))?;
        let identities: Vec<Box<dyn age::Identity>> = if d.is_scrypt() {
            let Some(p) = &self.passphrase_file else {
                bail!("the backup is encrypted with a passphrase: give --passphrase-file (or [backup] passphrase_file)");
            };
            vec![Box::new(age::scrypt::Identity::new(passphrase(p)?))]
        } else {
            let Some(p) = &self.identity_file else {
                bail!("the backup is encrypted to a public key: give --identity FILE (or [backup] identity_file) with its secret key");
            };
            let f = std::fs::File::open(p)
                .with_context(|| format!("opening the identity file {}", p.display()))?;
            age::IdentityFile::from_buffer(BufReader::new(f))
                .and_then(|f| {
                    f.into_identities()
                        .map_err(|e| std::io::Error::other(e.to_string()))
                })
                .with_context(|| {
                    format!(
                        "reading the identity file {} (AGE-SECRET-KEY-1... lines)",
                        p.display()
                    )
                })?
        };
        d.decrypt(identities.iter().map(|i| i.as_ref() as &dyn age::Identity))
            .map_err(|e| match e {
                age::DecryptError::NoMatchingKeys => {
                    anyhow::anyhow!("the backup is encrypted to another key: none of the identity file's keys opens it")
                }
                age::DecryptError::DecryptionFailed | age::DecryptError::KeyDecryptionFailed => {
                    anyhow::anyhow!("the backup does not decrypt: wrong passphrase or key, or a damaged header")
                }
                e => anyhow::anyhow!("decrypting the backup: {e}"),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use age::secrecy::ExposeSecret;
    use std::io::Write;

    #[test]
    fn a_stream_opens_with_its_key_and_not_with_another() {
        let dir = tempfile::tempdir().unwrap();
        let id = age::x25519::Identity::generate();
        let other = age::x25519::Identity::generate();
        let key = dir.path().join("key");
        std::fs::write(&key, format!("{}\n", id.to_string().expose_secret())).unwrap();
        let wrong = dir.path().join("wrong");
        std::fs::write(&wrong, format!("{}\n", other.to_string().expose_secret())).unwrap();
        let enc = Encrypt {
            recipients: vec![id.to_public().to_string()],
            passphrase_file: None,
        };
        let mut w = enc
            .encryptor()
            .unwrap()
            .unwrap()
            .wrap_output(Vec::new())
            .unwrap();
        w.write_all(b"the data").unwrap();
        let sealed = w.finish().unwrap();
        assert!(sealed.starts_with(MAGIC));
        let mut out = String::new();
        Decrypt {
            identity_file: Some(key),
            passphrase_file: None,
        }
        .open(sealed.as_slice())
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
        assert_eq!(out, "the data");
        let e = Decrypt {
            identity_file: Some(wrong),
            passphrase_file: None,
        }
        .open(sealed.as_slice())
        .err()
        .unwrap();
        assert!(e.to_string().contains("another key"), "{e}");
        let e = Decrypt::default().open(sealed.as_slice()).err().unwrap();
        assert!(e.to_string().contains("--identity"), "{e}");
        assert!(parse_recipient("age1nope").is_err());
    }
}
