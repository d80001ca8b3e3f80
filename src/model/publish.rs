//! `-p [IP:]HOST:CONTAINER[/tcp|udp]`: a published port as the user writes it and as
//! the container's record keeps it; part of the container model, which `run`'s flags
//! and a stack's roles both fill.

/// One `-p [IP:]HOST:CONTAINER[/tcp|udp]`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Publish {
    pub host_ip: std::net::IpAddr,
    pub host_port: u16,
    pub container_port: u16,
    pub udp: bool,
    #[serde(default)]
    pub proxy_protocol: bool,
}

impl std::str::FromStr for Publish {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> anyhow::Result<Publish> {
        let bad = || {
            anyhow::anyhow!("invalid port mapping {s:?}: expected [IP:]HOST:CONTAINER[/tcp|udp]")
        };
        let (spec, proto) = match s.rsplit_once('/') {
            Some((a, "tcp")) => (a, false),
            Some((a, "udp")) => (a, true),
            Some(_) => return Err(bad()),
            None => (s, false),
        };
        let (ip, host, container) = match spec.rsplitn(3, ':').collect::<Vec<_>>().as_slice() {
            [c, h] => ("0.0.0.0", *h, *c),
            [c, h, ip] => (*ip, *h, *c),
            _ => return Err(bad()),
        };
        let ip = ip.trim_start_matches('[').trim_end_matches(']');
        let port = |p: &str| p.parse::<u16>().ok().filter(|p| *p != 0).ok_or_else(bad);
        Ok(Publish {
            host_ip: ip.parse().map_err(|_| bad())?,
            host_port: port(host)?,
            container_port: port(container)?,
            udp: proto,
            proxy_protocol: false,
        })
    }
}

impl std::fmt::Display for Publish {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ip = match self.host_ip {
            std::net::IpAddr::V6(v6) => format!("[{v6}]"),
            v4 => v4.to_string(),
        };
        write!(
            f,
            "{ip}:{}:{}/{}",
            self.host_port,
            self.container_port,
            if self.udp { "udp" } else { "tcp" }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_specs_parse() {
        let p: Publish = "8080:80".parse().unwrap();
        assert_eq!(p.to_string(), "0.0.0.0:8080:80/tcp");
        let p: Publish = "127.0.0.1:5353:53/udp".parse().unwrap();
        assert!(p.udp && p.host_port == 5353 && p.container_port == 53);
        let p: Publish = "[::1]:8443:443".parse().unwrap();
        assert_eq!(p.to_string(), "[::1]:8443:443/tcp");
        for bad in [
            "80",
            "x:80",
            "8080:80/sctp",
            "0:80",
            "70000:80",
            "1.2.3:80:80",
        ] {
            let e = bad.parse::<Publish>().unwrap_err().to_string();
            assert!(e.contains(bad), "{e}");
        }
    }
}
