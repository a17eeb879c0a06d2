//! `halo lvs`: what the running director has, as `ipvsadm -L -n` prints it (`--stats`,
//! `--rate`, `--exact`, `-c`), or with `--health` the health of every real server; and
//! `halo lvs realserver start|stop|status`, the LVS-DR real-server set-up of seed 002's
//! `lvsdr` script (the VIP on `lo`, `arp_ignore=1`, `arp_announce=2`).
use anyhow::{bail, Context};
use halo_config::ldirectord_cf::{Forward, VirtualAddr};
use halo_host::vip::realserver;
use std::net::IpAddr;
use std::path::Path;

/// Which view of the director's table.
#[derive(Debug, Clone, Copy, Default)]
pub struct View {
    pub stats: bool,
    pub rate: bool,
    pub exact: bool,
    pub conn: bool,
    pub health: bool,
}

pub fn lvs(socket: &Path, view: View) -> anyhow::Result<i32> {
    let v = crate::control::request(socket, "lvs")?;
    if view.health {
        print!("{}", render_health(&v));
        return Ok(0);
    }
    let key = match (view.conn, view.stats, view.rate, view.exact) {
        (true, ..) => "conn",
        (_, true, _, true) => "stats_exact",
        (_, true, _, false) => "stats",
        (_, _, true, _) => "rate",
        _ => "list",
    };
    let Some(text) = v.get(key).and_then(|t| t.as_str()) else {
        bail!("the daemon's answer has no {key} view: {v}");
    };
    print!("{text}");
    // The listing is the table as last applied; say on stderr (stdout stays ipvsadm's format)
    // when a director's applies fail, so that the kernel's table lags what it decided.
    for w in lagging(&v) {
        eprintln!("halo lvs: {w}");
    }
    Ok(0)
}

/// One line per director whose data plane's table lags its decisions because applies fail.
fn lagging(v: &serde_json::Value) -> Vec<String> {
    let directors = v.get("directors").and_then(|d| d.as_array()).cloned().unwrap_or_default();
    directors
        .iter()
        .filter_map(|d| {
            let config = d.get("config").and_then(|c| c.as_str()).unwrap_or("?");
            lag_of(d).map(|w| format!("director {config}: {w}"))
        })
        .collect()
}

/// Why a director's table may lag what it decided: its last apply failed.
fn lag_of(d: &serde_json::Value) -> Option<String> {
    let err = d.get("apply_error").and_then(|e| e.as_str())?;
    let pending = d.get("table_pending").and_then(|p| p.as_bool()) == Some(true);
    Some(format!(
        "the last apply failed ({err}); {}",
        if pending {
            "the table listed is the one last applied, behind what the director decided"
        } else {
            "the table listed is still what the director decided"
        }
    ))
}

/// One line per real server: `VIP:PORT -> RIP:PORT weight W (in table: W|no) health`.
pub fn render_health(v: &serde_json::Value) -> String {
    let s = |v: &serde_json::Value, k: &str| v.get(k).and_then(|x| x.as_str()).unwrap_or("").to_string();
    let mut out = String::new();
    let directors = v.get("directors").and_then(|d| d.as_array()).cloned().unwrap_or_default();
    if directors.is_empty() {
        out.push_str("no director runs here\n");
    }
    for d in &directors {
        let plane = match s(d, "dataplane").as_str() {
            "ipvs" => "IPVS".to_string(),
            _ => format!("table ip {}", s(d, "table")),
        };
        out.push_str(&format!(
            "director {} (group {}, {plane}){}\n",
            s(d, "config"),
            s(d, "group"),
            if d.get("running").and_then(|r| r.as_bool()) == Some(true) { "" } else { " NOT RUNNING" }
        ));
        if let Some(w) = lag_of(d) {
            out.push_str(&format!("  {w}\n"));
        }
        for svc in d.get("services").and_then(|x| x.as_array()).into_iter().flatten() {
            let fb = if svc.get("fallback_active").and_then(|f| f.as_bool()) == Some(true) {
                format!(", fallback {} in use", s(svc, "fallback"))
            } else {
                String::new()
            };
            out.push_str(&format!("  {} {} {}{fb}\n", s(svc, "id"), s(svc, "scheduler"), s(svc, "forward")));
            for r in svc.get("reals").and_then(|x| x.as_array()).into_iter().flatten() {
                let in_table = match r.get("in_table").and_then(|w| w.as_u64()) {
                    Some(w) => format!("weight {w}"),
                    None => "not in table".to_string(),
                };
                out.push_str(&format!(
                    "    -> {:<22} {:<14} {:<8} {}{}\n",
                    s(r, "addr"),
                    in_table,
                    s(r, "check"),
                    s(r, "health"),
                    r.get("last_check")
                        .and_then(|c| c.as_str())
                        .map(|c| format!(": {c}"))
                        .unwrap_or_default()
                ));
            }
        }
    }
    out
}

/// `start`, `stop` or `status` of the real-server set-up.
pub fn realserver(
    action: &str,
    vips: &[IpAddr],
    interface: Option<&str>,
    config_dir: &Path,
    state_dir: &Path,
) -> anyhow::Result<i32> {
    let (vips, iface) = if vips.is_empty() {
        let found = vips_from_config(config_dir)?;
        if found.is_empty() {
            // As lvsdr: nothing to do is not an error.
            eprintln!(
                "Warning: could not determine a VIP to handle from {}/haresources and ldirectord.cf",
                config_dir.display()
            );
            return Ok(0);
        }
        let iface = interface.map(str::to_string).or_else(|| found.iter().find_map(|(_, i)| i.clone()));
        (found.into_iter().map(|(a, _)| a).collect::<Vec<_>>(), iface)
    } else {
        (vips.to_vec(), interface.map(str::to_string))
    };
    let state_file = state_dir.join("lvs-realserver");
    let list = vips.iter().map(ToString::to_string).collect::<Vec<_>>().join(" ");
    match action {
        "start" => {
            std::fs::create_dir_all(state_dir)
                .with_context(|| format!("creating {}", state_dir.display()))?;
            realserver::start(&vips, iface.as_deref(), &state_file)?;
            println!("Starting lvsdr: {list} on lo, arp_ignore=1 arp_announce=2");
            Ok(0)
        }
        "stop" => {
            realserver::stop(&vips, iface.as_deref(), &state_file)?;
            println!("Stopping lvsdr: {list} off lo, ARP settings restored");
            Ok(0)
        }
        "status" => {
            let st = realserver::status(&vips, iface.as_deref(), &state_file)?;
            let problems = st.problems();
            if problems.is_empty() {
                println!("lvsdr is running ({list})");
                Ok(0)
            } else {
                println!("lvsdr is not running");
                for p in problems {
                    println!("  {p}");
                }
                // LSB: program is not running.
                Ok(3)
            }
        }
        other => bail!("unknown action {other:?}: expected start, stop or status"),
    }
}

/// The VIPs of a director configuration, as `lvsdr` finds them: the addresses of the
/// IPaddr/IPaddr2 words of the haresources groups that run `ldirectord` (with their
/// interface when the word names one), and the IP virtual services of direct-routing
/// (`gate`) services in ldirectord.cf.
pub fn vips_from_config(config_dir: &Path) -> anyhow::Result<Vec<(IpAddr, Option<String>)>> {
    let mut out: Vec<(IpAddr, Option<String>)> = Vec::new();
    let mut push = |a: IpAddr, i: Option<String>| {
        if let Some(e) = out.iter_mut().find(|(x, _)| *x == a) {
            if e.1.is_none() {
                e.1 = i;
            }
        } else {
            out.push((a, i));
        }
    };
    let mut cfs = Vec::new();
    let hr = config_dir.join("haresources");
    if hr.exists() {
        let text = std::fs::read_to_string(&hr).with_context(|| format!("reading {}", hr.display()))?;
        let h = halo_config::parse_haresources(&hr, &text)
            .map_err(|e| anyhow::anyhow!("{}: {e}", hr.display()))?;
        for g in &h.groups {
            let Some(ld) =
                g.resources.iter().find(|r| r.agent == "ldirectord" || r.agent == "heartbeat:ldirectord")
            else {
                continue;
            };
            cfs.push(ld.args.first().cloned().unwrap_or_else(|| crate::director::DEFAULT_CF.to_string()));
            for r in &g.resources {
                if !matches!(r.agent.as_str(), "IPaddr" | "IPaddr2") {
                    continue;
                }
                if let Some(Ok(spec)) = r.args.first().map(|a| halo_host::vip::parse_ip_spec(a)) {
                    push(spec.addr, spec.iface.clone());
                }
            }
        }
    }
    if cfs.is_empty() {
        cfs.push(crate::director::DEFAULT_CF.to_string());
    }
    for cf in cfs {
        let p =
            if Path::new(&cf).is_absolute() { Path::new(&cf).to_path_buf() } else { config_dir.join(&cf) };
        let Ok(text) = std::fs::read_to_string(&p) else { continue };
        let (ld, _) = halo_config::parse_ldirectord_cf(&p, &text)
            .map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?;
        for v in &ld.virtuals {
            let VirtualAddr::Ip { ip, .. } = v.addr else { continue };
            if v.reals.iter().all(|r| r.forward == Forward::Gate) {
                push(ip, None);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_director_whose_applies_fail_is_named_with_the_error() {
        let v = json!({"directors": [
            {"config": "/etc/ha.d/ldirectord.cf", "group": "g", "dataplane": "nftables", "table": "halo_lb",
             "running": true, "services": [], "apply_error": "nft: Error: simulated", "table_pending": true},
            {"config": "/etc/ha.d/other.cf", "group": "g", "dataplane": "nftables", "table": "halo_lb_o",
             "running": true, "services": [], "apply_error": null, "table_pending": false},
        ]});
        let lag = lagging(&v);
        assert_eq!(lag.len(), 1, "{lag:?}");
        assert!(
            lag[0].starts_with(
                "director /etc/ha.d/ldirectord.cf: the last apply failed (nft: Error: simulated)"
            ) && lag[0].contains("behind what the director decided"),
            "{lag:?}"
        );
        let health = render_health(&v);
        assert!(health.contains("\n  the last apply failed (nft: Error: simulated)"), "{health}");
        assert_eq!(health.matches("the last apply failed").count(), 1, "{health}");
    }
}
