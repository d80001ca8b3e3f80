//! The PROXY protocol end to end: with `proxy_protocol = true` on the proxy role's port,
//! frun's forwarder prefixes each connection with a PROXY v1 line, nginx (the default
//! template: `listen 80 proxy_protocol`) takes the client's address from it, and the app
//! records that address; without it, the app sees an address of frun's forwarder.
//! The client binds 127.0.0.7 (any loopback address works in the test's namespace) so
//! its address differs from every address frun or the containers use.

use crate::common::*;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// GET `path` from 127.0.0.7 to `port`: the body of a 2xx answer.
fn get_from_127_0_0_7(port: u16, path: &str) -> Result<String, String> {
    use rustix::net::{AddressFamily, SocketType};
    let sock = rustix::net::socket(AddressFamily::INET, SocketType::STREAM, None)
        .map_err(|e| e.to_string())?;
    let from: SocketAddr = "127.0.0.7:0".parse().unwrap();
    rustix::net::bind(&sock, &from).map_err(|e| format!("bind {from}: {e}"))?;
    let to: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    rustix::net::connect(&sock, &to).map_err(|e| format!("{to}: {e}"))?;
    let mut s = TcpStream::from(sock);
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").map_err(|e| e.to_string())?;
    let mut out = String::new();
    s.read_to_string(&mut out).map_err(|e| e.to_string())?;
    if !out.starts_with("HTTP/1.") || !out[9..].starts_with('2') {
        return Err(format!("not a 2xx answer: {out}"));
    }
    Ok(out.split("\r\n\r\n").nth(1).unwrap_or_default().to_string())
}

/// The clients the family app recorded, from its database on the stack's volume.
fn recorded_clients(f: &Frun) -> Vec<String> {
    let db = f
        .dir
        .path()
        .join("root/volumes/db/_data/production.sqlite3");
    let out = std::process::Command::new("sqlite3")
        .arg(&db)
        .arg("SELECT client FROM visits ORDER BY id")
        .output()
        .expect("sqlite3 (scripts/packages/test.txt)");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// The family stack with frun's default proxy template (no `template` key), and
/// `proxy_protocol` as given.
fn stack(f: &Frun, reg: &str, proxy_protocol: bool) -> (String, u16) {
    let (file, port) = crate::up::family_stack(f, reg, "v1", "");
    let text = std::fs::read_to_string(&file).unwrap().replace(
        "template = \"proxy.conf.tmpl\"",
        &format!("proxy_protocol = {proxy_protocol}"),
    );
    assert!(text.contains("proxy_protocol = "), "{text}");
    std::fs::write(&file, text).unwrap();
    (file.to_str().unwrap().to_string(), port)
}

fn visit(port: u16) {
    let start = Instant::now();
    loop {
        match get_from_127_0_0_7(port, "/cgi-bin/visit") {
            Ok(_) => return,
            Err(e) if start.elapsed() > Duration::from_secs(30) => panic!("gave up: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

#[test]
fn the_real_client_address_reaches_the_app_only_through_the_proxy_protocol() {
    let Some(reg) = registry() else { return };
    let f = Frun::new();

    let (file, port) = stack(&f, &reg, true);
    f.ok(&["up", "-f", &file]);
    visit(port);
    assert_eq!(recorded_clients(&f), ["127.0.0.7"]);
    f.ok(&["down", "-f", &file]);

    // The peer: the same stack without it. nginx sees frun's forwarder, not the client.
    let (file, port) = stack(&f, &reg, false);
    f.ok(&["up", "-f", &file]);
    visit(port);
    let clients = recorded_clients(&f);
    assert_eq!(clients.len(), 2, "{clients:?}");
    assert!(
        !clients[1].is_empty() && !clients[1].contains("127.0.0.7"),
        "{clients:?}"
    );
    f.ok(&["down", "--volumes", "-f", &file]);
}
