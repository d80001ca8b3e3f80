//! A role's `registry_auth`: the credentials for its image's registry, given by
//! reference, never inline, so that a stack file can be shared, committed and printed.
//!
//! - `file:PATH`: a Docker `config.json` (what `frun login` writes; with
//!   `DOCKER_CONFIG=/etc/frun frun login REGISTRY` it is `/etc/frun/config.json`), a
//!   relative path being relative to the stack file; as podman's `--authfile`.
//! - `env:NAME`: a variable of `frun up`'s environment holding `USER:PASSWORD`; as
//!   podman's `--creds`.
//!
//! The reference is checked when the stack file is read; the file or variable is read
//! only when an image must be pulled, and its errors too carry the line and column of
//! the reference (after a reboot the supervisor's `frun up` finds the images in the
//! store and needs neither). No message ever shows a secret: errors name the reference, the
//! registry, the variable; the model keeps the reference only, so `status` and
//! `inspect` have nothing to show.

use anyhow::bail;
use std::path::{Path, PathBuf};

use frun_images::{Auth, ImageRef, RegistryConfig};

/// Where a role's credentials are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuthRef {
    File(PathBuf),
    Env(String),
}

impl std::fmt::Display for AuthRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AuthRef::File(p) => write!(f, "file:{}", p.display()),
            AuthRef::Env(n) => write!(f, "env:{n}"),
        }
    }
}

/// A role's `registry_auth`, with where the stack file gives it (`frun.toml:14:17`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegistryAuth {
    pub source: AuthRef,
    pub at: String,
}

impl RegistryAuth {
    /// Reads a reference; `base` is the stack file's directory.
    pub fn parse(text: &str, base: &Path, at: String) -> Result<RegistryAuth, String> {
        let source = if let Some(path) = text.strip_prefix("file:") {
            if path.is_empty() {
                return Err("file: needs a path (file:/etc/frun/config.json)".into());
            }
            AuthRef::File(base.join(path))
        } else if let Some(name) = text.strip_prefix("env:") {
            let ok = name
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !ok {
                return Err(format!("env:{name}: not a variable name"));
            }
            AuthRef::Env(name.to_string())
        } else {
            return Err(format!(
                "{text:?}: expected file:PATH (a Docker config.json, as `frun login` writes it) or env:NAME (a variable holding USER:PASSWORD)"
            ));
        };
        Ok(RegistryAuth { source, at })
    }

    /// The credentials for pulling `image`, read now. An unset variable, a value that is
    /// not `USER:PASSWORD`, a file without credentials for the image's registry: an
    /// error naming the reference and where it is given, never a secret.
    pub fn resolve(&self, image: &ImageRef, cfg: &RegistryConfig) -> anyhow::Result<Auth> {
        let fail =
            |why: String| anyhow::anyhow!("{}: registry_auth {}: {why}", self.at, self.source);
        match &self.source {
            AuthRef::Env(name) => {
                let Some(value) = std::env::var_os(name) else {
                    bail!(fail(format!(
                        "{name} is not set (it holds USER:PASSWORD for {})",
                        cfg.endpoint(image)
                    )));
                };
                let value = value
                    .into_string()
                    .map_err(|_| fail(format!("the value of {name} is not UTF-8")))?;
                match value.split_once(':') {
                    Some((user, password)) if !user.is_empty() => Ok(Auth::Creds {
                        user: user.to_string(),
                        password: password.to_string(),
                    }),
                    _ => bail!(fail(format!(
                        "the value of {name} is not USER:PASSWORD (it is not shown)"
                    ))),
                }
            }
            AuthRef::File(path) => {
                let auth = Auth::File(path.clone());
                let with = RegistryConfig {
                    auth: Some(auth.clone()),
                    ..cfg.clone()
                };
                if !path.is_file() {
                    bail!(fail("no such file".into()));
                }
                match with.credentials_for(image) {
                    Ok(Some(_)) => Ok(auth),
                    Ok(None) => bail!(fail(format!(
                        "it has no credentials for {} (add them with: DOCKER_CONFIG={} frun login {})",
                        cfg.endpoint(image),
                        path.parent().unwrap_or(Path::new(".")).display(),
                        cfg.endpoint(image)
                    ))),
                    Err(e) => bail!(fail(e.to_string())),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_parse_and_bad_ones_are_named() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("auth.json"), "{}").unwrap();
        let at = || "frun.toml:3:1".to_string();
        let f = RegistryAuth::parse("file:auth.json", dir.path(), at()).unwrap();
        assert_eq!(f.source, AuthRef::File(dir.path().join("auth.json")));
        let e = RegistryAuth::parse("env:REG_CREDS", dir.path(), at()).unwrap();
        assert_eq!(e.source, AuthRef::Env("REG_CREDS".into()));
        for bad in ["vault:x", "file:", "env:", "env:1A", "env:A-B"] {
            assert!(
                RegistryAuth::parse(bad, dir.path(), at()).is_err(),
                "{bad} accepted"
            );
        }
    }

    #[test]
    fn an_env_value_that_is_not_user_password_is_refused_unseen() {
        let a = RegistryAuth {
            source: AuthRef::Env("FRUN_AUTH_UNIT_TEST_VALUE".into()),
            at: "frun.toml:3:1".into(),
        };
        let image: ImageRef = "127.0.0.1:5002/x".parse().unwrap();
        let cfg = RegistryConfig::default();
        let err = format!("{:#}", a.resolve(&image, &cfg).unwrap_err());
        assert!(
            err.contains("frun.toml:3:1") && err.contains("is not set"),
            "{err}"
        );
        std::env::set_var("FRUN_AUTH_UNIT_TEST_VALUE", "no-colon-s3cret");
        let err = format!("{:#}", a.resolve(&image, &cfg).unwrap_err());
        assert!(
            !err.contains("s3cret") && err.contains("USER:PASSWORD"),
            "{err}"
        );
        std::env::set_var("FRUN_AUTH_UNIT_TEST_VALUE", "frun:s3cret");
        assert!(matches!(
            a.resolve(&image, &cfg).unwrap(),
            Auth::Creds { user, .. } if user == "frun"
        ));
    }
}
