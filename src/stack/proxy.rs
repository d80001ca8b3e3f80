//! The proxy role's configuration: `conf.d/default.conf` rendered from the app
//! container's address, checked with `nginx -t` inside the proxy container, and taken
//! up with a graceful reload (SIGHUP to nginx's master, the container's pid 1).
//!
//! nginx resolves upstream names only when it starts or reloads, so the address is
//! rendered, not a name. The directory (not the file) is bind-mounted: a file replaced
//! by rename would not be seen inside the container.

use anyhow::{bail, Context};
use std::net::Ipv4Addr;
use std::path::Path;

use crate::cli::Global;
use crate::containers::Container;

/// What the template is filled with.
pub struct Upstream {
    pub addr: Ipv4Addr,
    pub port: u16,
    /// What `{{upstream}}` becomes instead of `addr:port` (the app's socket, see
    /// `stack::upstream`).
    pub via: Option<String>,
}

/// The default `server` block: Host, X-Forwarded-For and -Proto passed on; with the
/// PROXY protocol from frun's forwarder, the client's real address is what nginx
/// reports to the app.
pub fn default_template(listen: u16, proxy_protocol: bool) -> String {
    let (listen_opts, client) = if proxy_protocol {
        (" proxy_protocol", "$proxy_protocol_addr")
    } else {
        ("", "$proxy_add_x_forwarded_for")
    };
    format!(
        "# Written by frun (frun up): the app is reached through its socket (see frun's stack::upstream).\n\
         server {{\n\
         \x20   listen {listen}{listen_opts};\n\
         \x20   location / {{\n\
         \x20       proxy_pass http://{{{{upstream}}}};\n\
         \x20       proxy_set_header Host $host;\n\
         \x20       proxy_set_header X-Forwarded-For {client};\n\
         \x20       proxy_set_header X-Real-IP {real};\n\
         \x20       proxy_set_header X-Forwarded-Proto $scheme;\n\
         \x20   }}\n\
         }}\n",
        real = if proxy_protocol {
            "$proxy_protocol_addr"
        } else {
            "$remote_addr"
        },
    )
}

pub fn render(template: &str, up: &Upstream) -> String {
    template
        .replace(
            "{{upstream}}",
            &up.via
                .clone()
                .unwrap_or_else(|| format!("{}:{}", up.addr, up.port)),
        )
        .replace("{{app_addr}}", &up.addr.to_string())
        .replace("{{app_port}}", &up.port.to_string())
}

/// Writes `default.conf` into `dir` (temp + fsync + rename); returns the previous text.
pub fn write_conf(dir: &Path, text: &str) -> anyhow::Result<Option<String>> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {dir:?}"))?;
    let path = dir.join("default.conf");
    let old = std::fs::read_to_string(&path).ok();
    frun_images::fsutil::write_atomic(&path, text.as_bytes())
        .with_context(|| format!("writing {path:?}"))?;
    Ok(old)
}

/// `nginx -t` inside the running proxy container; nginx's own message on failure.
pub fn check(g: &Global, proxy: &Container) -> anyhow::Result<()> {
    let out = g
        .frun_command()?
        .args(["exec", &proxy.record.id, "nginx", "-t"])
        .stdin(std::process::Stdio::null())
        .output()
        .context("running nginx -t in the proxy")?;
    if !out.status.success() {
        let msg = String::from_utf8_lossy(&out.stderr);
        let msg: Vec<&str> = msg.lines().filter(|l| !l.trim().is_empty()).collect();
        bail!(
            "nginx rejects the configuration (nginx -t in {}):\n  {}",
            proxy.record.name,
            msg.join("\n  ")
        );
    }
    Ok(())
}

/// A graceful reload: SIGHUP to nginx's master.
pub fn reload(proxy: &Container) -> anyhow::Result<()> {
    let st = proxy.state()?;
    let pid = st
        .pid
        .filter(|_| st.status == crate::containers::Status::Running)
        .with_context(|| format!("the proxy {} is not running", proxy.record.name))?;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGHUP,
    )
    .with_context(|| {
        format!(
            "reloading the proxy {} (SIGHUP to pid {pid})",
            proxy.record.name
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_config_points_at_the_app_and_passes_the_headers() {
        let mut up = Upstream {
            addr: "10.89.0.5".parse().unwrap(),
            port: 8080,
            via: None,
        };
        let c = render(&default_template(80, false), &up);
        assert!(c.contains("listen 80;"), "{c}");
        assert!(c.contains("proxy_pass http://10.89.0.5:8080;"), "{c}");
        assert!(c.contains("proxy_set_header Host $host;"), "{c}");
        assert!(
            c.contains("X-Forwarded-For $proxy_add_x_forwarded_for;"),
            "{c}"
        );
        assert!(c.contains("X-Forwarded-Proto $scheme;"), "{c}");
        let c = render(&default_template(80, true), &up);
        assert!(c.contains("listen 80 proxy_protocol;"), "{c}");
        assert!(c.contains("X-Forwarded-For $proxy_protocol_addr;"), "{c}");
        let c = render("{{app_addr}} {{app_port}}", &up);
        assert_eq!(c, "10.89.0.5 8080");
        up.via = Some("unix:/run/frun-upstream/app.sock:".into());
        let c = render(&default_template(80, false), &up);
        assert!(
            c.contains("proxy_pass http://unix:/run/frun-upstream/app.sock:;"),
            "{c}"
        );
    }
}
