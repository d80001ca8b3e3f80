//! `frun inspect NAME...`: the full record of a container, an image or a volume as
//! JSON (an array, as `docker inspect` prints), looked up in that order.

use std::io::Write;
use std::process::ExitCode;

use crate::cli::{Global, InspectArgs};
use crate::containers::{Container, Containers, Status};

/// A container as `inspect` shows it: its record (every field, whatever the version
/// adds), its state, and what its spec says (process, mounts), its network address,
/// published ports, uptime, health and log place.
pub fn container_json(c: &Container) -> serde_json::Value {
    let st = c.state().ok();
    let spec = c.spec().ok();
    let process = spec.as_ref().and_then(|s| s.process().clone());
    let mounts: Vec<serde_json::Value> = spec
        .as_ref()
        .and_then(|s| s.mounts().clone())
        .unwrap_or_default()
        .iter()
        .filter(|m| m.typ().as_deref() == Some("bind"))
        .map(|m| {
            serde_json::json!({
                "source": m.source(),
                "destination": m.destination(),
                "options": m.options(),
            })
        })
        .collect();
    let running = st.as_ref().is_some_and(|s| s.status == Status::Running);
    let uptime = st
        .as_ref()
        .filter(|_| running)
        .and_then(|s| s.started_at.as_deref())
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map(|t| (chrono::Utc::now() - t.with_timezone(&chrono::Utc)).num_seconds());
    serde_json::json!({
        "id": c.record.id,
        "name": c.record.name,
        "image": c.record.image,
        "image_digest": c.record.image_digest,
        "restart_count": st
            .as_ref()
            .and_then(|s| serde_json::to_value(s).ok())
            .and_then(|v| v.get("restart_count").cloned())
            .unwrap_or(0.into()),
        "record": c.record,
        "state": st,
        "running": running,
        "uptime_seconds": uptime,
        // The supervisor's last verdict (none without a health check).
        "health": super::stack::describe(c)["health"],
        "command": process.as_ref().and_then(|p| p.args().clone()),
        "env": process.as_ref().and_then(|p| p.env().clone()),
        "cwd": process.as_ref().map(|p| p.cwd().clone()),
        "user": process.as_ref().map(|p| serde_json::json!({"uid": p.user().uid(), "gid": p.user().gid()})),
        "mounts": mounts,
        "address": c.record.network.as_ref().map(|n| n.ip.to_string()),
        "ports": c.record.publish.iter().map(port).collect::<Vec<_>>(),
        "log_dir": c.log_dir(),
    })
}

/// A published port as Docker's `ps` shows it: `127.0.0.1:8080->80/tcp`.
pub fn port(p: &crate::model::Publish) -> String {
    let ip = match p.host_ip {
        std::net::IpAddr::V6(v6) => format!("[{v6}]"),
        v4 => v4.to_string(),
    };
    let proto = if p.udp { "udp" } else { "tcp" };
    format!("{ip}:{}->{}/{proto}", p.host_port, p.container_port)
}

pub fn inspect(g: &Global, args: InspectArgs) -> anyhow::Result<ExitCode> {
    let containers = Containers::open(&g.root)?;
    let mut out = Vec::new();
    for name in &args.names {
        if let Ok(c) = containers.find(name) {
            out.push(container_json(&c));
            continue;
        }
        if let Ok(store) = super::images::open_store(g) {
            // By reference as pulled (`alpine` is docker.io/library/alpine:latest), or digest.
            let reference = name
                .parse::<frun_images::ImageRef>()
                .map(|r| r.to_string())
                .unwrap_or_else(|_| name.clone());
            let found = store
                .find_image(&reference)
                .or_else(|_| store.find_image(name));
            if let Ok(img) = found {
                let mut v = serde_json::to_value(&img)?;
                if let Ok(config) = store.read_blob(&img.config_digest) {
                    if let Ok(cfg) = serde_json::from_slice::<serde_json::Value>(&config) {
                        v["config"] = cfg;
                    }
                }
                out.push(v);
                continue;
            }
        }
        let users = super::volume::users(g)?;
        match crate::volumes::describe(&g.root, name, &users) {
            Ok(v) => out.push(serde_json::to_value(v)?),
            Err(_) => anyhow::bail!("no such container, image or volume: {name}"),
        }
    }
    let mut stdout = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut stdout, &out)?;
    writeln!(stdout)?;
    Ok(ExitCode::SUCCESS)
}
