//! The registry client and `pull` against hostile and failing registries: small HTTP
//! servers on 127.0.0.1 written here (a real peer over TCP; the test run's network
//! namespace has only loopback) that send huge, endless, slow or escape-laden answers.

use frun_images::client::{ClientError, Limits, RegistryClient};
use frun_images::{error_chain, Digest, ImageRef, PullOptions, RegistryConfig, Store};
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// What the server saw and sent.
#[derive(Default)]
struct Seen {
    requests: AtomicU64,
    sent: AtomicU64,
    /// Request heads, for checks on what was sent where.
    heads: std::sync::Mutex<Vec<String>>,
}

/// Serves every connection with `answer(request head, stream)`, on its own thread.
fn serve(
    answer: impl Fn(&str, &mut Counting) -> std::io::Result<()> + Send + Sync + 'static,
) -> (String, Arc<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let seen = Arc::new(Seen::default());
    let answer = Arc::new(answer);
    let s = seen.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { continue };
            let (seen, answer) = (s.clone(), answer.clone());
            std::thread::spawn(move || {
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                loop {
                    let mut head = String::new();
                    loop {
                        let mut line = String::new();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        if line == "\r\n" {
                            break;
                        }
                        head.push_str(&line);
                    }
                    seen.requests.fetch_add(1, Ordering::SeqCst);
                    seen.heads.lock().unwrap().push(head.clone());
                    let mut out = Counting {
                        stream: conn.try_clone().unwrap(),
                        seen: seen.clone(),
                    };
                    if answer(&head, &mut out).is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, seen)
}

struct Counting {
    stream: TcpStream,
    seen: Arc<Seen>,
}

impl Write for Counting {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.stream.write(buf)?;
        self.seen.sent.fetch_add(n as u64, Ordering::SeqCst);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.stream.flush()
    }
}

/// `/v2/` answers 200; everything else goes to `rest`.
fn registry(
    rest: impl Fn(&str, &mut Counting) -> std::io::Result<()> + Send + Sync + 'static,
) -> (String, Arc<Seen>) {
    serve(move |head, out| {
        if head.starts_with("GET /v2/ ") {
            out.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
        } else {
            rest(head, out)
        }
    })
}

fn limits() -> Limits {
    Limits {
        deadline: Duration::from_secs(2),
        window: Duration::from_secs(1),
        min_bytes: 4096,
    }
}

fn client(addr: &str, creds: Option<(&str, &str)>) -> RegistryClient {
    let _ = rustls::crypto::ring::default_provider().install_default();
    RegistryClient::new(
        &RegistryConfig::default(),
        addr,
        "test/x",
        creds.map(|(u, p)| (u.to_string(), p.to_string())),
        limits(),
    )
    .unwrap()
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

const MANIFEST: &[&str] = &["application/vnd.oci.image.manifest.v1+json"];

#[test]
fn a_huge_manifest_is_refused_before_it_is_read_whole() {
    // 1000 MB announced, and sent for as long as the client reads.
    let (addr, seen) = registry(|_, out| {
        out.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 1000000000\r\n\r\n")?;
        let block = vec![b' '; 64 << 10];
        loop {
            out.write_all(&block)?;
        }
    });
    let err = rt()
        .block_on(client(&addr, None).manifest("latest", MANIFEST, 4 << 20))
        .unwrap_err();
    assert!(
        matches!(err, ClientError::TooLarge { limit, .. } if limit == 4 << 20),
        "{err}"
    );
    let sent = seen.sent.load(Ordering::SeqCst);
    assert!(sent < 64 << 20, "the server got to send {sent} bytes");
}

#[test]
fn an_endless_chunked_manifest_stops_at_the_cap() {
    let (addr, seen) = registry(|_, out| {
        out.write_all(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")?;
        let chunk = format!("{:x}\r\n{}\r\n", 32 << 10, "{".repeat(32 << 10));
        loop {
            out.write_all(chunk.as_bytes())?;
        }
    });
    let err = rt()
        .block_on(client(&addr, None).manifest("latest", MANIFEST, 1 << 20))
        .unwrap_err();
    assert!(matches!(err, ClientError::TooLarge { .. }), "{err}");
    let sent = seen.sent.load(Ordering::SeqCst);
    assert!(sent < 64 << 20, "the server got to send {sent} bytes");
}

#[test]
fn a_manifest_sent_a_byte_at_a_time_ends_at_the_deadline() {
    let (addr, _seen) = registry(|_, out| {
        out.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n")?;
        loop {
            out.write_all(b" ")?;
            std::thread::sleep(Duration::from_millis(300));
        }
    });
    let err = rt()
        .block_on(client(&addr, None).manifest("latest", MANIFEST, 4 << 20))
        .unwrap_err();
    assert!(matches!(err, ClientError::Deadline { .. }), "{err}");
    assert!(err.is_retryable());
    assert!(err.to_string().contains(&addr), "names the URL: {err}");
}

#[test]
fn a_blob_below_the_minimum_throughput_fails() {
    let (addr, _seen) = registry(|_, out| {
        out.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 1000000\r\n\r\n")?;
        loop {
            out.write_all(b"x")?;
            std::thread::sleep(Duration::from_millis(200));
        }
    });
    let err = rt()
        .block_on(async {
            let c = client(&addr, None);
            let mut s = match c.blob(&Digest::of(b"x"), 0).await? {
                frun_images::client::BlobResponse::Full(s) => s,
                frun_images::client::BlobResponse::Partial(s) => s,
            };
            while s.next().await?.is_some() {}
            Ok::<(), ClientError>(())
        })
        .unwrap_err();
    assert!(matches!(err, ClientError::TooSlow { .. }), "{err}");
}

/// A 404 whose 20 MB body carries terminal escapes that would set the title, colour the
/// output and forge a success line.
const FORGED: &str = "\x1b]0;pwned\x07\x1b[32m\nfrun: pulled OK\r\n";

#[test]
fn an_error_body_is_read_only_in_part_and_shown_escaped_once() {
    let (addr, seen) = registry(|_, out| {
        out.write_all(b"HTTP/1.1 404 Not Found\r\ncontent-length: 20000000\r\n\r\n")?;
        let mut body = FORGED.repeat(20_000_000 / FORGED.len()).into_bytes();
        body.resize(20_000_000, b' ');
        out.write_all(&body)
    });
    let err = rt()
        .block_on(client(&addr, None).manifest("latest", MANIFEST, 4 << 20))
        .unwrap_err();
    let text = error_chain(&err);
    assert!(matches!(err, ClientError::Status { .. }), "{text}");
    assert!(!text.chars().any(|c| c.is_control()), "{text:?}");
    assert!(text.contains("\\u{1b}]0;pwned"), "{text}");
    assert!(
        text.len() < 600,
        "a short excerpt, not the body: {} bytes",
        text.len()
    );
    assert_eq!(text.matches("404").count(), 1, "{text}");
    assert!(!err.is_retryable(), "a 404 is not fetched again");
    assert_eq!(seen.requests.load(Ordering::SeqCst), 1);
    let sent = seen.sent.load(Ordering::SeqCst);
    assert!(
        sent < 20_000_000,
        "the body was not read whole ({sent} bytes sent)"
    );
}

#[test]
fn a_refused_connection_says_so_once() {
    // A port nobody listens on: bind one, note it, close it.
    let addr = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string();
    let err = rt()
        .block_on(client(&addr, None).authenticate())
        .unwrap_err();
    let text = error_chain(&err);
    assert!(text.contains(&format!("GET http://{addr}/v2/")), "{text}");
    assert_eq!(
        text.to_ascii_lowercase()
            .matches("connection refused")
            .count(),
        1,
        "{text}"
    );
    assert!(err.is_retryable());
}

#[test]
fn credentials_never_go_to_a_plain_http_realm_on_another_host() {
    let (addr, seen) = serve(|_, out| {
        let body = "{}";
        write!(
            out,
            "HTTP/1.1 401 Unauthorized\r\nwww-authenticate: Bearer realm=\"http://credentials.example/token\",service=\"x\"\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )
    });
    let err = rt()
        .block_on(client(&addr, Some(("me", "secret"))).authenticate())
        .unwrap_err();
    assert!(
        matches!(&err, ClientError::Realm { realm, .. } if realm.contains("credentials.example")),
        "{err}"
    );
    let heads = seen.heads.lock().unwrap().join("");
    assert!(
        !heads.to_ascii_lowercase().contains("authorization"),
        "{heads}"
    );
}

#[test]
fn a_token_realm_on_the_registry_host_gets_the_credentials() {
    // Registry and token service on one server: /token answers with a token, which must
    // then come back on the manifest request.
    let (addr, seen) = serve(|head, out| {
        let lower = head.to_ascii_lowercase();
        if head.starts_with("GET /token") {
            assert!(lower.contains("authorization: basic"), "{head}");
            let body = r#"{"token":"t0k"}"#;
            return write!(
                out,
                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            );
        }
        if lower.contains("authorization: bearer t0k") {
            let body = "{}";
            return write!(
                out,
                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            );
        }
        let port = head
            .lines()
            .find_map(|l| l.strip_prefix("host: "))
            .unwrap_or("")
            .trim()
            .to_string();
        write!(
            out,
            "HTTP/1.1 401 Unauthorized\r\nwww-authenticate: Bearer realm=\"http://{port}/token\",service=\"x\"\r\ncontent-length: 0\r\n\r\n"
        )
    });
    let (body, _) = rt()
        .block_on(async {
            let c = client(&addr, Some(("me", "secret")));
            c.authenticate().await?;
            c.manifest("latest", MANIFEST, 1 << 20).await
        })
        .unwrap();
    assert_eq!(body, b"{}");
    let heads = seen.heads.lock().unwrap().join("");
    assert!(
        heads.contains("scope=repository%3Atest%2Fx%3Apull"),
        "{heads}"
    );
}

/// A whole pull against a registry that answers every manifest request with a 500 and
/// an escape-laden body: the error names the reference and the URL, shows the excerpt
/// once, escaped, and the store is usable by `gc` meanwhile.
#[test]
fn a_failing_registry_error_is_shown_once_and_escaped() {
    let (addr, seen) = registry(|_, out| {
        let body = format!("{FORGED}{}", "x".repeat(1 << 20));
        write!(
            out,
            "HTTP/1.1 500 Internal Server Error\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )
    });
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path()).unwrap());
    let image: ImageRef = format!("{addr}/test/x:1").parse().unwrap();
    let opts = PullOptions {
        retry_window: Duration::from_secs(2),
        limits: limits(),
        ..PullOptions::default()
    };
    let err = rt()
        .block_on(frun_images::pull(
            store.clone(),
            &image,
            &opts,
            Arc::new(frun_images::NoProgress),
        ))
        .unwrap_err();
    let text = error_chain(&err);
    // One chain: the reference, the retries, the request, the answer, each once.
    assert!(
        text.starts_with(&format!("pulling {image}: gave up after ")),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            ": GET http://{addr}/v2/test/x/manifests/1: the registry answered 500"
        )),
        "{text}"
    );
    assert_eq!(text.matches("500").count(), 1, "{text}");
    assert_eq!(text.matches("pwned").count(), 1, "{text}");
    assert!(!text.chars().any(|c| c.is_control()), "{text:?}");
    assert!(
        seen.requests.load(Ordering::SeqCst) >= 3,
        "a 500 is retried"
    );
    assert!(store.images().unwrap().is_empty());
}

/// `gc` runs while a pull waits on a registry that does not answer: the pull holds no
/// store lock across the network.
#[test]
fn gc_does_not_wait_for_a_pull_stuck_on_the_network() {
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let release_rx = std::sync::Mutex::new(release_rx);
    let (addr, seen) = registry(move |_, out| {
        // Hold the manifest request until the test says so.
        let _ = release_rx.lock().unwrap().recv();
        out.write_all(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n")
    });
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path()).unwrap());
    let image: ImageRef = format!("{addr}/test/x:1").parse().unwrap();
    let opts = PullOptions {
        limits: Limits {
            deadline: Duration::from_secs(600),
            ..limits()
        },
        ..PullOptions::default()
    };
    let s = store.clone();
    let puller = std::thread::spawn(move || {
        rt().block_on(frun_images::pull(
            s,
            &image,
            &opts,
            Arc::new(frun_images::NoProgress),
        ))
    });
    while seen.requests.load(Ordering::SeqCst) < 2 {
        std::thread::sleep(Duration::from_millis(20));
    }
    // The pull is now waiting for its manifest; gc must finish regardless.
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let s = store.clone();
    std::thread::spawn(move || done_tx.send(s.gc(&Default::default()).map(|_| ())));
    let gc = done_rx.recv_timeout(Duration::from_secs(60));
    release_tx.send(()).unwrap();
    assert!(matches!(gc, Ok(Ok(()))), "gc blocked behind the pull");
    assert!(puller.join().unwrap().is_err());
}

/// A registry that cuts every blob response after 1500 bytes: each request makes
/// progress, so the download goes on past the retry window (which is for an outage, not
/// for the whole download) and completes with range requests.
#[test]
fn a_download_cut_again_and_again_completes_while_it_makes_progress() {
    let mut b = tar::Builder::new(Vec::new());
    let data: Vec<u8> = (0..6000u32).map(|i| (i % 251) as u8).collect();
    let mut h = tar::Header::new_gnu();
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    b.append_data(&mut h, "data.bin", &data[..]).unwrap();
    let layer = b.into_inner().unwrap();
    let layer_digest = Digest::of(&layer);
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [layer_digest.to_string()]},
        "config": {}
    }))
    .unwrap();
    let config_digest = Digest::of(&config);
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": config_digest.to_string(), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": layer_digest.to_string(), "size": layer.len()}]
    }))
    .unwrap();
    let (layer_path, config_path) = (
        format!("/blobs/{layer_digest}"),
        format!("/blobs/{config_digest}"),
    );
    let (addr, seen) = registry(move |head, out| {
        let path = head
            .split_whitespace()
            .nth(1)
            .unwrap_or_default()
            .to_string();
        let whole = |out: &mut Counting, body: &[u8]| {
            write!(
                out,
                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n",
                body.len()
            )?;
            out.write_all(body)
        };
        if path.ends_with("/manifests/1") {
            return whole(out, &manifest);
        }
        if path.ends_with(&config_path) {
            return whole(out, &config);
        }
        if !path.ends_with(&layer_path) {
            return out.write_all(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n");
        }
        let from: usize = head
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("range: bytes=")
                    .map(str::to_string)
            })
            .and_then(|r| r.trim().trim_end_matches('-').parse().ok())
            .unwrap_or(0);
        let rest = &layer[from..];
        let status = if from > 0 {
            "206 Partial Content"
        } else {
            "200 OK"
        };
        write!(
            out,
            "HTTP/1.1 {status}\r\ncontent-length: {}\r\n\r\n",
            rest.len()
        )?;
        out.write_all(&rest[..rest.len().min(1500)])?;
        // Cut: end this connection.
        Err(std::io::Error::other("cut"))
    });
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path()).unwrap());
    let image: ImageRef = format!("{addr}/test/x:1").parse().unwrap();
    let opts = PullOptions {
        retry_window: Duration::from_millis(600),
        limits: limits(),
        platform: "linux/amd64".parse().unwrap(),
        ..PullOptions::default()
    };
    let rec = rt()
        .block_on(frun_images::pull(
            store.clone(),
            &image,
            &opts,
            Arc::new(frun_images::NoProgress),
        ))
        .unwrap_or_else(|e| panic!("{}", error_chain(&e)));
    assert!(
        seen.requests.load(Ordering::SeqCst) >= 4 + 3,
        "cut at least 4 times"
    );
    let unpacked = store.layer_path(&rec.layers[0].diff_id).join("data.bin");
    assert_eq!(std::fs::read(unpacked).unwrap(), data);
}

/// A registry's challenge is kept between pulls: the next pull asks the token service
/// straight away, without pinging `/v2/`. When the registry's challenge changed (another
/// token service), the kept one earns a 401, and the client pings, follows the new
/// challenge and keeps it.
#[test]
fn a_kept_challenge_saves_the_ping_and_a_changed_one_is_followed() {
    // Two token services; the registry names and trusts one at a time.
    let token_service = |name: &'static str| {
        serve(move |_, out| {
            let body = format!("{{\"token\":\"{name}\"}}");
            write!(
                out,
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            )
        })
    };
    let (t1, t1_seen) = token_service("from-t1");
    let (t2, t2_seen) = token_service("from-t2");
    let current = Arc::new(std::sync::Mutex::new((t1.clone(), "from-t1")));
    let cur = current.clone();
    let (addr, seen) = serve(move |head, out| {
        let (realm, token) = cur.lock().unwrap().clone();
        let authorized = head
            .lines()
            .any(|l| l.eq_ignore_ascii_case(&format!("authorization: Bearer {token}")));
        if head.starts_with("GET /v2/ ") || !authorized {
            return write!(
                out,
                "HTTP/1.1 401 Unauthorized\r\nwww-authenticate: Bearer realm=\"http://{realm}/token\",service=\"x\"\r\ncontent-length: 0\r\n\r\n"
            );
        }
        out.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}")
    });
    let dir = tempfile::tempdir().unwrap();
    let config = RegistryConfig {
        challenges: Some(dir.path().join("challenges")),
        ..RegistryConfig::default()
    };
    let pull = || {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let c = RegistryClient::new(&config, &addr, "test/x", None, limits()).unwrap();
        rt().block_on(async {
            c.authenticate().await?;
            c.manifest("latest", &[], 1024).await
        })
    };
    let pings = || {
        seen.heads
            .lock()
            .unwrap()
            .iter()
            .filter(|h| h.starts_with("GET /v2/ "))
            .count()
    };
    let tokens = |s: &Seen| s.requests.load(Ordering::SeqCst);

    // 1. The first pull pings; the second does not: token, manifest.
    assert_eq!(pull().unwrap().0, b"{}");
    assert_eq!((pings(), tokens(&t1_seen)), (1, 1));
    assert_eq!(pull().unwrap().0, b"{}");
    assert_eq!((pings(), tokens(&t1_seen)), (1, 2));
    assert_eq!(
        seen.requests.load(Ordering::SeqCst),
        3,
        "ping, manifest, manifest"
    );

    // 2. The registry moves to another token service: the kept challenge's token is
    //    refused, the client pings once, follows the new challenge, and keeps it.
    *current.lock().unwrap() = (t2.clone(), "from-t2");
    assert_eq!(pull().unwrap().0, b"{}");
    assert_eq!((pings(), tokens(&t2_seen)), (2, 1));
    assert_eq!(pull().unwrap().0, b"{}");
    assert_eq!(
        (pings(), tokens(&t2_seen)),
        (2, 2),
        "the new challenge is kept"
    );

    // 3. A kept challenge naming a token service that is gone: pinged, as without one.
    let kept = std::fs::read_dir(dir.path().join("challenges"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let text = std::fs::read_to_string(&kept).unwrap();
    assert!(text.contains(&t2), "{text}");
    std::fs::write(&kept, text.replace(&t2, "127.0.0.1:9")).unwrap();
    assert_eq!(pull().unwrap().0, b"{}");
    assert_eq!((pings(), tokens(&t2_seen)), (3, 3));
}
