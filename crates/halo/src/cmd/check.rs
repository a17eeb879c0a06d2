//! `halo check`: validate the configuration, and unless `--config-only`, this host.
use std::path::Path;

pub fn check(config_dir: &Path, config_only: bool, node: Option<&str>) -> anyhow::Result<i32> {
    let (model, warnings, name) = match crate::run::load(config_dir, node) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("{e:#}");
            return Ok(1);
        }
    };
    for w in &warnings {
        eprintln!("warning: {w}");
    }
    let mut problems = Vec::new();
    if !config_only {
        if let Err(e) = model.check_local_node(&name) {
            problems.push(e);
        }
        for spec in &model.ha_cf.media {
            match &spec {
                halo_config::Medium::Serial { device, .. } => {
                    if !device.exists() {
                        problems.push(format!("{}: {} does not exist", spec.describe(), device.display()));
                    }
                }
                _ => {
                    let iface = spec.link_name();
                    if nix::net::if_::if_nametoindex(iface.as_str()).is_err() {
                        problems
                            .push(format!("{}: no interface named {iface} on this host", spec.describe()));
                    }
                }
            }
        }
    }
    let hc = &model.ha_cf;
    let active = model.authkeys.keys.iter().find(|k| k.index == model.authkeys.active);
    println!(
        "{}: {} node(s) [{}], {} medium/media, keepalive {} ms, deadtime {} ms, warntime {} ms, initdead {} ms, auth {} {}",
        config_dir.join("ha.cf").display(),
        hc.nodes.len(),
        hc.nodes.join(" "),
        hc.media.len(),
        hc.keepalive_ms,
        hc.deadtime_ms,
        hc.warntime_ms,
        hc.initdead_ms,
        model.authkeys.active,
        active.map(|k| format!("{:?}", k.method).to_lowercase()).unwrap_or_default()
    );
    if let Some(h) = &model.haresources {
        println!("{}: {} resource group(s)", config_dir.join("haresources").display(), h.groups.len());
    }
    if problems.is_empty() {
        println!("configuration OK{}", if config_only { " (files only; host not checked)" } else { "" });
        Ok(0)
    } else {
        for p in &problems {
            eprintln!("error: {p}");
        }
        Ok(1)
    }
}
