//! Bridge networking and published ports. Everything here runs inside the network
//! namespace that `scripts/test.sh` makes for the test run (the "host" of these tests),
//! plus an "outside" namespace a test makes and removes itself.

use crate::common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

fn http_get(addr: &str, path: &str) -> std::io::Result<String> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n")?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

fn www(f: &Frun, text: &str) -> PathBuf {
    let dir = f.dir.path().join("www");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("index.html"), text).unwrap();
    dir
}

/// `frun run -d --name NAME` of busybox httpd on port 80 serving `www` (read-only at
/// /www), with `-p PUBLISH` if given.
fn httpd(f: &Frun, image: &str, name: &str, www: &Path, publish: Option<&str>) {
    let volume = format!("{}:/www:ro", www.display());
    let mut args = vec!["run", "-d", "--name", name, "-v", &volume];
    if let Some(p) = publish {
        args.extend(["-p", p]);
    }
    args.extend([image, "httpd", "-f", "-p", "80", "-h", "/www"]);
    f.ok(&args);
}

fn stdout_of(cmd: &str, args: &[&str]) -> String {
    String::from_utf8(Command::new(cmd).args(args).output().unwrap().stdout).unwrap()
}

fn links() -> String {
    stdout_of("ip", &["-o", "link"])
}

fn nft_tables() -> String {
    stdout_of("nft", &["list", "tables"])
}

#[test]
fn published_port_reaches_the_container_and_everything_goes_at_rm() {
    let Some(reg) = registry() else { return };
    let f = Frun::new();
    let table = format!("table ip frun_{}", f.bridge);
    let dir = www(&f, "hello through the forwarder\n");
    let port = free_port();
    let image = format!("{reg}/test/busybox");
    httpd(
        &f,
        &image,
        "web",
        &dir,
        Some(&format!("127.0.0.1:{port}:80")),
    );
    let body =
        eventually(|| http_get(&format!("127.0.0.1:{port}"), "/").map_err(|e| e.to_string()));
    assert!(body.contains("hello through the forwarder"), "{body}");
    // A second container cannot take the port; the error names it and its owner.
    let err = f.fails(&[
        "run",
        "--rm",
        "-p",
        &format!("127.0.0.1:{port}:80"),
        &image,
        "true",
    ]);
    assert!(
        err.contains(&format!("port {port} is already in use")) && err.contains("frun"),
        "{err}"
    );
    assert!(links().contains(&format!("{}:", f.bridge)));
    assert!(nft_tables().contains(&table));
    f.ok(&["rm", "-f", "web"]);
    // Clean-up: no veth, no bridge, no table, no lease, no namespace file.
    let l = links();
    assert!(!l.contains(&format!("{}:", f.bridge)), "{l}");
    assert!(!nft_tables().contains(&table));
    let leases = std::fs::read_to_string(f.root().join("network/leases.json")).unwrap();
    assert!(!leases.contains("\"ip\""), "{leases}");
    let netns = f.dir.path().join("run/netns");
    assert!(std::fs::read_dir(&netns).map(|d| d.count()).unwrap_or(0) == 0);
    assert!(
        http_get(&format!("127.0.0.1:{port}"), "/").is_err(),
        "the port is closed"
    );
}

#[test]
fn containers_reach_each_other_by_name() {
    let Some(reg) = registry() else { return };
    let f = Frun::new();
    let dir = www(&f, "from app\n");
    let image = format!("{reg}/test/busybox");
    httpd(&f, &image, "app", &dir, None);
    // The first container learns of the second one too (its /etc/hosts is kept current).
    f.ok(&["run", "-d", "--name", "proxy", &image, "sleep", "60"]);
    let out = eventually(|| {
        let o = f.run(&["exec", "proxy", "wget", "-q", "-O", "-", "http://app/"]);
        if o.status.success() {
            Ok(String::from_utf8_lossy(&o.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&o.stderr).into_owned())
        }
    });
    assert_eq!(out, "from app\n");
    let hosts = f.ok(&["exec", "app", "cat", "/etc/hosts"]);
    assert!(hosts.contains("\tproxy"), "{hosts}");
    f.ok(&["rm", "-f", "app", "proxy"]);
    assert!(!links().contains(&format!("{}:", f.bridge)));
}

/// An "outside" host: a network namespace of this test, wired to the test run's
/// namespace by a veth pair, with a web server; removed on drop.
struct Outside {
    file: PathBuf,
    server: Option<std::process::Child>,
    host_if: String,
}

impl Outside {
    fn new(dir: &Path) -> Outside {
        let file = dir.join("outside-ns");
        std::fs::File::create(&file).unwrap();
        let ok = |c: &mut Command| assert!(c.status().unwrap().success(), "{c:?}");
        ok(Command::new("unshare")
            .arg(format!("--net={}", file.display()))
            .arg("true"));
        let o = Outside {
            file,
            server: None,
            host_if: "frunto0".into(),
        };
        let ns = format!("--net={}", o.file.display());
        ok(Command::new("ip").args([
            "link", "add", &o.host_if, "type", "veth", "peer", "name", "frunto1",
        ]));
        ok(Command::new("ip").args([
            "link",
            "set",
            "frunto1",
            "netns",
            &o.file.display().to_string(),
        ]));
        ok(Command::new("ip").args(["addr", "add", "192.0.2.1/24", "dev", &o.host_if]));
        ok(Command::new("ip").args(["link", "set", &o.host_if, "up"]));
        for args in [
            vec!["ip", "addr", "add", "192.0.2.2/24", "dev", "frunto1"],
            vec!["ip", "link", "set", "frunto1", "up"],
            vec!["ip", "link", "set", "lo", "up"],
        ] {
            ok(Command::new("nsenter").arg(&ns).args(&args));
        }
        o
    }

    fn serve(&mut self, dir: &Path) {
        let ns = format!("--net={}", self.file.display());
        self.server = Some(
            Command::new("nsenter")
                .arg(&ns)
                .args(["busybox", "httpd", "-f", "-v", "-p", "192.0.2.2:8000", "-h"])
                .arg(dir)
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap(),
        );
    }
}

impl Drop for Outside {
    fn drop(&mut self) {
        if let Some(mut s) = self.server.take() {
            let _ = s.kill();
            let _ = s.wait();
        }
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_if])
            .status();
        let _ = nix::mount::umount2(&self.file, nix::mount::MntFlags::MNT_DETACH);
        let _ = std::fs::remove_file(&self.file);
    }
}

#[test]
fn egress_goes_out_through_nat() {
    let Some(reg) = registry() else { return };
    let f = Frun::new();
    let dir = www(&f, "outside world\n");
    let mut outside = Outside::new(f.dir.path());
    outside.serve(&dir);
    let image = format!("{reg}/test/busybox");
    let out = eventually(|| {
        let o = f.run(&[
            "run",
            "--rm",
            &image,
            "wget",
            "-q",
            "-O",
            "-",
            "http://192.0.2.2:8000/",
        ]);
        if o.status.success() {
            Ok(String::from_utf8_lossy(&o.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&o.stderr).into_owned())
        }
    });
    assert_eq!(out, "outside world\n");
    // The outside saw the host's address, not the container's: that is the NAT.
    let mut server = outside.server.take().unwrap();
    let _ = server.kill();
    let mut log = String::new();
    server
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut log)
        .unwrap();
    let _ = server.wait();
    assert!(log.contains("192.0.2.1"), "{log}");
    assert!(!log.contains("10.89."), "{log}");
    let table = format!("table ip frun_{}", f.bridge);
    assert!(
        !nft_tables().contains(&table),
        "the table went with the last container"
    );
}

#[test]
fn network_none_has_only_loopback_and_refuses_ports() {
    let Some(reg) = registry() else { return };
    let f = Frun::new();
    let image = format!("{reg}/test/busybox");
    let out = f.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        &image,
        "cat",
        "/proc/net/dev",
    ]);
    let ifaces: Vec<&str> = out
        .lines()
        .skip(2)
        .map(|l| l.split(':').next().unwrap().trim())
        .collect();
    assert_eq!(ifaces, vec!["lo"]);
    let err = f.fails(&[
        "run",
        "--rm",
        "--network",
        "none",
        "-p",
        "8080:80",
        &image,
        "true",
    ]);
    assert!(err.contains("-p needs --network bridge"), "{err}");
    let err = f.fails(&["run", "--rm", "-p", "8080", &image, "true"]);
    assert!(err.contains("\"8080\""), "{err}");
}

/// `--proxy-protocol`: the container reads the PROXY line naming the real client first.
#[test]
fn proxy_protocol_tells_the_container_who_connected() {
    let Some(reg) = registry() else { return };
    let f = Frun::new();
    let port = free_port();
    let image = format!("{reg}/test/busybox");
    // nc -l prints what it received and answers with the date; one connection.
    f.ok(&[
        "run",
        "-d",
        "--name",
        "echo",
        "-p",
        &format!("127.0.0.1:{port}:7000"),
        "--proxy-protocol",
        &image,
        "sh",
        "-c",
        "nc -l -p 7000 > /tmp/got; cat /tmp/got; sleep 1",
    ]);
    // Until nc listens, the forwarder resets the connection (the write alone may still
    // succeed, into the socket's buffer): read to the end to tell a delivered payload
    // (nc closes after it) from a reset one.
    eventually(|| {
        let mut s = TcpStream::connect(format!("127.0.0.1:{port}")).map_err(|e| e.to_string())?;
        s.write_all(b"payload\n").map_err(|e| e.to_string())?;
        s.shutdown(std::net::Shutdown::Write)
            .map_err(|e| e.to_string())?;
        s.read_to_end(&mut Vec::new()).map_err(|e| e.to_string())?;
        Ok(())
    });
    let logs = eventually(|| {
        let l = f.ok(&["logs", "echo"]);
        if l.contains("payload") {
            Ok(l)
        } else {
            Err(l)
        }
    });
    assert!(
        logs.starts_with("PROXY TCP4 127.0.0.1 127.0.0.1 "),
        "{logs}"
    );
    assert!(logs.contains(&format!(" {port}\r\npayload")), "{logs}");
    f.ok(&["rm", "-f", "echo"]);
}

/// The lines frun itself wrote into a container's log (`frun logs` shows them on stderr).
fn frun_lines(f: &Frun, name: &str) -> Vec<String> {
    let out = f.run(&["logs", name]);
    assert!(out.status.success(), "frun logs {name} failed");
    String::from_utf8(out.stderr)
        .unwrap()
        .lines()
        .filter(|l| l.starts_with("frun: "))
        .map(String::from)
        .collect()
}

/// A published port whose container port has no server: each client's connection is
/// reset (not accepted and left empty), and the user reads why in `frun logs`: once for
/// a burst of clients, not once per client. At the stop, the held-back ones are counted.
#[test]
fn a_refusing_target_is_told_in_the_logs_without_flooding_them() {
    let Some(reg) = registry() else { return };
    let f = Frun::new();
    let dir = www(&f, "on port 80 only\n");
    let port = free_port();
    let image = format!("{reg}/test/busybox");
    // The server listens on 80; the port published is 81.
    httpd(
        &f,
        &image,
        "wrongport",
        &dir,
        Some(&format!("127.0.0.1:{port}:81")),
    );
    let addr = format!("127.0.0.1:{port}");
    for _ in 0..20 {
        let e = http_get(&addr, "/").expect_err("no answer through a refusing target");
        assert!(
            matches!(
                e.kind(),
                std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe
            ),
            "{e}"
        );
    }
    // Each client's reset came after the forwarder had logged (or counted) its failure.
    let lines = frun_lines(&f, "wrongport");
    let want = format!("frun: port {addr}: ");
    assert!(
        !lines.is_empty() && lines.len() <= 2,
        "one message for a burst of 20, or two if the burst spanned the 10 s interval: {lines:?}"
    );
    for l in &lines {
        assert!(
            l.starts_with(&want)
                && l.contains(
                    ":81 refused the connection: nothing listens on tcp port 81 in the container"
                ),
            "{lines:?}"
        );
    }
    // At the stop the ones held back are counted, and the closed port is named.
    f.ok(&["stop", "-t", "1", "wrongport"]);
    let lines = frun_lines(&f, "wrongport");
    // A message stands for itself and the N it says were "(and N more like it ...)".
    let told: u32 = lines
        .iter()
        .filter(|l| l.contains("refused the connection"))
        .map(|l| match l.split("(and ").nth(1) {
            Some(rest) => 1 + rest.split(' ').next().unwrap().parse::<u32>().unwrap(),
            None => 1,
        })
        .sum();
    assert_eq!(
        told, 20,
        "every refused connection is told or counted: {lines:?}"
    );
    assert!(
        lines
            .last()
            .unwrap()
            .starts_with("frun: the container exited")
            && lines.last().unwrap().ends_with(&format!(
                "its published ports are closed (127.0.0.1:{port}:81/tcp)"
            )),
        "{lines:?}"
    );
    f.ok(&["rm", "wrongport"]);
}

/// Once the container has exited its published port is closed: a client is refused at
/// once (as with nothing published there), rather than accepted and dropped; `frun
/// logs` says the port closed with the container.
#[test]
fn the_port_closes_when_the_container_exits() {
    let Some(reg) = registry() else { return };
    let f = Frun::new();
    let dir = www(&f, "still here\n");
    let port = free_port();
    let image = format!("{reg}/test/busybox");
    httpd(
        &f,
        &image,
        "short",
        &dir,
        Some(&format!("127.0.0.1:{port}:80")),
    );
    let addr = format!("127.0.0.1:{port}");
    let body = eventually(|| http_get(&addr, "/").map_err(|e| e.to_string()));
    assert!(body.contains("still here"), "{body}");
    // A client connected while the container goes: its connection ends with it.
    let mut open = TcpStream::connect(&addr).unwrap();
    open.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    // busybox httpd as pid 1 ignores SIGTERM: the stop kills it after 1 s.
    f.ok(&["stop", "-t", "1", "short"]);
    let mut buf = [0u8; 16];
    let r = open.read(&mut buf);
    assert!(matches!(r, Ok(0) | Err(_)), "{r:?}");
    // `stop` returns once the container's exit is recorded, and the ports closed before.
    let e = TcpStream::connect(&addr).expect_err("the port is closed");
    assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused, "{e}");
    // The log ends with the exit. The held connection may be handed to the forwarder only
    // as the container goes (its accept is deferred until data or a timeout), and then its
    // refused connect is said before the exit: nothing else may be there.
    let mut lines = frun_lines(&f, "short");
    assert_eq!(
        lines.pop(),
        Some(format!(
            "frun: the container exited (code 137): its published ports are closed (127.0.0.1:{port}:80/tcp)"
        )),
        "{lines:?}"
    );
    assert!(
        lines.iter().all(|l| l.contains("refused the connection")),
        "{lines:?}"
    );
    f.ok(&["rm", "short"]);
}

/// UDP: a datagram to a published port whose container port has no socket comes back
/// from the container as "port unreachable"; `frun logs` says so.
#[test]
fn udp_to_a_port_nobody_listens_on_is_told_in_the_logs() {
    let Some(reg) = registry() else { return };
    let f = Frun::new();
    let port = free_port();
    let image = format!("{reg}/test/busybox");
    f.ok(&[
        "run",
        "-d",
        "--name",
        "noudp",
        "-p",
        &format!("127.0.0.1:{port}:5353/udp"),
        &image,
        "sleep",
        "600",
    ]);
    let client = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let lines = eventually(|| {
        client
            .send_to(b"anyone?", format!("127.0.0.1:{port}"))
            .map_err(|e| e.to_string())?;
        let lines = frun_lines(&f, "noudp");
        if lines.is_empty() {
            Err("nothing told yet".to_string())
        } else {
            Ok(lines)
        }
    });
    assert!(
        lines[0].starts_with(&format!("frun: port 127.0.0.1:{port}/udp: "))
            && lines[0].contains(
                ":5353 refused the datagrams (port unreachable): nothing listens on udp port 5353 in the container"
            ),
        "{lines:?}"
    );
    f.ok(&["rm", "-f", "noudp"]);
}
