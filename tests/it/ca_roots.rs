//! A host without CA certificates (Debian minbase without `ca-certificates`): plain-HTTP
//! pulls work, and only an HTTPS registry is refused, with an error naming the cause.
//! `SSL_CERT_DIR`/`SSL_CERT_FILE` pointing at an empty directory and an empty file make
//! rustls-native-certs (which frun reads the host's roots with) find no roots, as on such a host.

use crate::common::*;

/// A Frun whose child processes find no CA certificates.
fn frun_without_roots() -> Frun {
    let f = Frun::new();
    let certs = f.dir.path().join("no-certs");
    std::fs::create_dir(&certs).unwrap();
    std::fs::write(certs.join("bundle.pem"), "").unwrap();
    let dir = certs.to_str().unwrap().to_string();
    let file = certs.join("bundle.pem").to_str().unwrap().to_string();
    f.env("SSL_CERT_DIR", &dir).env("SSL_CERT_FILE", &file)
}

#[test]
fn plain_http_pull_works_without_ca_certificates() {
    let Some(reg) = registry() else { return };
    let f = frun_without_roots();
    let reference = format!("{reg}/test/busybox:latest");
    f.ok(&["pull", "-q", &reference]);
    assert_eq!(f.images()[0]["reference"], reference.as_str());
}

#[test]
fn https_registry_without_ca_certificates_is_a_clear_error() {
    // Root and the test run's environment, as for every pull; the registry is unused.
    let Some(_) = registry() else { return };
    let f = frun_without_roots();
    // Not loopback, so HTTPS; refused before any connection is made.
    let err = f.fails(&["pull", "registry.invalid/test/busybox"]);
    assert!(
        err.contains("no CA certificates found on this host (install ca-certificates)"),
        "{err}"
    );
    assert!(err.contains("https://registry.invalid/v2/"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}
