//! Health checks: one probe (an HTTP GET answered 2xx/3xx, or a TCP connect) of a
//! container's address on the bridge, and the state a run of probes leads to.
//!
//! The state is an explicit enum, changed only by [`Health::record`], which says when
//! it changed so that the caller logs each transition once. The probe is plain std
//! networking with timeouts: no client library, and nothing that can hang the
//! supervisor's loop past the check's timeout.

use serde::{Deserialize, Serialize};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::model::{HealthCheck, Probe};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// In the start period, no probe passed yet.
    Starting,
    Healthy,
    Unhealthy,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Status::Starting => "starting",
            Status::Healthy => "healthy",
            Status::Unhealthy => "unhealthy",
        })
    }
}

/// What the supervisor knows of one container's health (`health.json`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Health {
    pub status: Status,
    /// Failed probes in a row.
    pub failing_streak: u32,
    /// The last probe's failure, if it failed.
    pub last_error: Option<String>,
    pub checked_at: Option<String>,
}

impl Health {
    pub fn new() -> Health {
        Health {
            status: Status::Starting,
            failing_streak: 0,
            last_error: None,
            checked_at: None,
        }
    }

    /// Takes one probe's result; returns the old status when it changed.
    pub fn record(
        &mut self,
        check: &HealthCheck,
        result: Result<(), String>,
        since_start: Duration,
    ) -> Option<Status> {
        let old = self.status;
        self.checked_at = Some(crate::containers::now());
        match result {
            Ok(()) => {
                self.failing_streak = 0;
                self.last_error = None;
                self.status = Status::Healthy;
            }
            Err(e) => {
                self.last_error = Some(e);
                // Failures in the start period do not count (Docker's rule), unless
                // the container was healthy already.
                if since_start >= check.start_period || old == Status::Healthy {
                    self.failing_streak += 1;
                    if self.failing_streak >= check.retries {
                        self.status = Status::Unhealthy;
                    }
                }
            }
        }
        (old != self.status).then_some(old)
    }
}

/// One probe of `ip`.
pub fn probe(ip: std::net::IpAddr, check: &HealthCheck) -> Result<(), String> {
    let addr = SocketAddr::new(ip, check.port);
    let deadline = Instant::now() + check.timeout;
    let mut s = TcpStream::connect_timeout(&addr, check.timeout)
        .map_err(|e| format!("connecting to {addr}: {e}"))?;
    let path = match &check.probe {
        Probe::Tcp => return Ok(()),
        Probe::Http(p) => p,
    };
    let left = || {
        deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
            .ok_or_else(|| format!("GET {path} on {addr}: timed out after {:?}", check.timeout))
    };
    s.set_write_timeout(Some(left()?))
        .map_err(|e| e.to_string())?;
    // One write of the whole request: one segment, not one per formatted piece.
    let request = format!(
        "GET {path} HTTP/1.0\r\nHost: {addr}\r\nUser-Agent: frun-health\r\nConnection: close\r\n\r\n"
    );
    s.write_all(request.as_bytes())
        .map_err(|e| format!("GET {path} on {addr}: {e}"))?;
    let mut head = [0u8; 64];
    let mut n = 0;
    while n < 12 {
        s.set_read_timeout(Some(left()?))
            .map_err(|e| e.to_string())?;
        match s.read(&mut head[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) => return Err(format!("GET {path} on {addr}: {e}")),
        }
    }
    let line = String::from_utf8_lossy(&head[..n]);
    let code: Option<u16> = line
        .strip_prefix("HTTP/1.")
        .and_then(|r| r.get(2..5))
        .and_then(|c| c.parse().ok());
    match code {
        Some(c) if (200..400).contains(&c) => Ok(()),
        Some(c) => Err(format!("GET {path} on {addr}: status {c}")),
        None => Err(format!("GET {path} on {addr}: not an HTTP answer")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(probe: Probe, port: u16) -> HealthCheck {
        HealthCheck {
            probe,
            port,
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(2),
            retries: 2,
            start_period: Duration::from_secs(5),
            start_interval: None,
        }
    }

    fn serve_once(answer: &'static str) -> u16 {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            // The whole request first (it may come in more than one segment): an answer
            // and close before it all arrived would break the probe's write instead.
            let mut got = Vec::new();
            let mut buf = [0u8; 512];
            while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                }
            }
            let _ = s.write_all(answer.as_bytes());
        });
        port
    }

    #[test]
    fn http_probes_read_the_status() {
        let ip = "127.0.0.1".parse().unwrap();
        let port = serve_once("HTTP/1.0 200 OK\r\n\r\nhi");
        assert_eq!(probe(ip, &check(Probe::Http("/".into()), port)), Ok(()));
        let port = serve_once("HTTP/1.1 500 Internal Server Error\r\n\r\n");
        let e = probe(ip, &check(Probe::Http("/x".into()), port)).unwrap_err();
        assert!(e.contains("status 500"), "{e}");
        let port = serve_once("");
        assert!(probe(ip, &check(Probe::Http("/".into()), port)).is_err());
        let port = serve_once("");
        assert_eq!(probe(ip, &check(Probe::Tcp, port)), Ok(()));
    }

    #[test]
    fn failures_count_after_the_start_period_and_turn_unhealthy_after_retries() {
        let c = check(Probe::Tcp, 1);
        let mut h = Health::new();
        assert_eq!(h.record(&c, Err("no".into()), Duration::from_secs(1)), None);
        assert_eq!(h.status, Status::Starting);
        assert_eq!(
            h.record(&c, Ok(()), Duration::from_secs(2)),
            Some(Status::Starting)
        );
        assert_eq!(h.status, Status::Healthy);
        assert_eq!(h.record(&c, Err("no".into()), Duration::from_secs(3)), None);
        assert_eq!(
            h.record(&c, Err("no".into()), Duration::from_secs(4)),
            Some(Status::Healthy)
        );
        assert_eq!(h.status, Status::Unhealthy);
    }
}
