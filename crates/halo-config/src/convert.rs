//! Prints a [`Model`] as halo.toml or as the legacy files (`halo config convert`). Both
//! printers write what the model holds, so reading the output back gives the same model; what
//! the target cannot say is returned as notes (and written as comments where it helps).

use std::fmt::Write;

use crate::ha_cf::{OPTION_DIRECTIVES, WHOLE_LINE_DIRECTIVES};
use crate::halo_toml::{CLUSTER_KEYS, HEARTBEAT_KEYS, LOG_KEYS};
use crate::model::{AutoFailback, HaCf, Medium, Model, PingKind};

/// The legacy files of one model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegacyFiles {
    pub ha_cf: String,
    pub authkeys: String,
    pub haresources: Option<String>,
    /// (file name relative to the configuration directory, text) of the director.
    pub ldirectord: Option<(String, String)>,
}

/// A TOML string literal.
fn q(s: &str) -> String {
    ::toml::Value::String(s.to_string()).to_string()
}

fn q_list<S: AsRef<str>>(items: &[S]) -> String {
    let parts: Vec<String> = items.iter().map(|s| q(s.as_ref())).collect();
    format!("[{}]", parts.join(", "))
}

/// A value as written in ha.cf, typed for TOML so that it lowers to the same word.
fn typed(v: &str) -> String {
    if v == "true" || v == "false" {
        return v.to_string();
    }
    if !v.is_empty()
        && v.len() < 18
        && v.bytes().all(|b| b.is_ascii_digit())
        && !(v.len() > 1 && v.starts_with('0'))
    {
        return v.to_string();
    }
    q(v)
}

fn written(cfg: &HaCf, directive: &str) -> bool {
    cfg.line_of(directive).is_some()
}

fn auto_failback_word(a: AutoFailback) -> &'static str {
    match a {
        AutoFailback::On => "on",
        AutoFailback::Off => "off",
        AutoFailback::Legacy => "legacy",
    }
}

/// The value an option directive was given, as ha.cf would say it.
fn option_value(cfg: &HaCf, directive: &str) -> Option<String> {
    match directive {
        "crm" | "pacemaker" => cfg.crm.clone(),
        "use_apphbd" => cfg.use_apphbd.map(|b| b.to_string()),
        _ => cfg.parameter(directive).map(str::to_string),
    }
}

/// halo.toml text for a model, and notes about what it does not carry over.
pub fn to_toml(model: &Model) -> (String, Vec<String>) {
    let cfg = &model.ha_cf;
    let mut notes = Vec::new();
    let mut out = String::new();
    let _ = writeln!(out, "# halo.toml: halo's configuration (halo config convert; see examples/halo.toml/)");
    // A top-level key: it must come before the first table.
    if !cfg.notify.is_empty() {
        let cmds: Vec<&str> = cfg.notify.iter().map(|n| n.command.as_str()).collect();
        let _ = writeln!(out, "notify = {}", q_list(&cmds));
    }
    if let Some(l) = &cfg.lvs_sync {
        let _ = writeln!(out, "lvs_sync_daemon = {}", q(&l.to_line()));
    }
    out.push_str("\n[cluster]\n");
    for (key, directive) in CLUSTER_KEYS {
        if *directive == "node" {
            let _ = writeln!(out, "nodes = {}", q_list(&cfg.nodes));
            continue;
        }
        if *directive == "auto_failback" && !written(cfg, "auto_failback") && written(cfg, "nice_failback") {
            let w = auto_failback_word(cfg.auto_failback);
            notes.push(format!("nice_failback is obsolete: written as auto_failback = \"{w}\""));
            let _ = writeln!(out, "auto_failback = {}", q(w));
            continue;
        }
        if written(cfg, directive) {
            if let Some(v) = option_value(cfg, directive) {
                let _ = writeln!(out, "{key} = {}", typed(&v));
            }
        }
    }
    if let Some(p) = cfg.latched_ports.bcast.filter(|p| *p != cfg.udpport) {
        notes.push(format!("bcast links used udpport {p} (set after them, udpport {} did not reach them): halo.toml gives every link the one udpport", cfg.udpport));
    }
    if let Some(p) = cfg.latched_ports.ucast.filter(|p| *p != cfg.udpport) {
        notes.push(format!("ucast links used udpport {p} (set after them, udpport {} did not reach them): halo.toml gives every link the one udpport", cfg.udpport));
    }

    for m in &cfg.media {
        out.push_str("\n[[link]]\n");
        let _ = writeln!(out, "type = {}", q(m.kind()));
        match m {
            Medium::Bcast { iface } => {
                let _ = writeln!(out, "iface = {}", q(iface));
            }
            Medium::Ucast { iface, peer } | Medium::Ucast6 { iface, peer } => {
                let _ = writeln!(out, "iface = {}\npeer = {}", q(iface), q(peer));
            }
            Medium::Mcast { iface, group, port, ttl, looped } => {
                let _ = writeln!(
                    out,
                    "iface = {}\ngroup = {}\nport = {port}\nttl = {ttl}\nloop = {}",
                    q(iface),
                    q(&group.to_string()),
                    u8::from(*looped)
                );
            }
            Medium::Mcast6 { iface, group, port, hops } => {
                let _ = writeln!(
                    out,
                    "iface = {}\ngroup = {}\nport = {port}\nhops = {hops}",
                    q(iface),
                    q(&group.to_string())
                );
            }
            Medium::Serial { device, baud } => {
                if *baud != cfg.baud {
                    notes.push(format!("serial {} ran at {baud} baud (baud {} was set after it): halo.toml gives every serial link the one baud", device.display(), cfg.baud));
                }
                let _ = writeln!(out, "device = {}", q(&device.display().to_string()));
            }
        }
    }
    for p in &cfg.ping_nodes {
        out.push_str("\n[[ping]]\n");
        match p.kind {
            PingKind::Ping => {
                let _ =
                    writeln!(out, "address = {}", q(p.addrs.first().map(String::as_str).unwrap_or(&p.name)));
            }
            PingKind::Ping6 => {
                let _ =
                    writeln!(out, "address6 = {}", q(p.addrs.first().map(String::as_str).unwrap_or(&p.name)));
            }
            PingKind::Group => {
                let _ = writeln!(out, "group = {}\naddresses = {}", q(&p.name), q_list(&p.addrs));
            }
        }
    }
    for r in &cfg.respawn {
        let _ = writeln!(out, "\n[[respawn]]\nuser = {}\ncommand = {}", q(&r.user), q(&r.command));
    }

    let logs: Vec<&&str> = LOG_KEYS.iter().filter(|k| written(cfg, k)).collect();
    if !logs.is_empty() {
        out.push_str("\n[log]\n");
        for k in logs {
            if let Some(v) = option_value(cfg, k) {
                let _ = writeln!(out, "{k} = {}", typed(&v));
            }
        }
    }

    let mut hb = String::new();
    for k in HEARTBEAT_KEYS {
        let directive = *k;
        if !written(cfg, directive) {
            continue;
        }
        notes.push(format!(
            "ha.cf: '{directive}' is kept in [heartbeat]; halo accepts it but does not act on it"
        ));
        match directive {
            "env" => {
                let pairs: Vec<String> = cfg.env.iter().map(|(n, v)| format!("{n}={v}")).collect();
                let _ = writeln!(hb, "env = {}", q_list(&pairs));
            }
            "stonith" => {
                if let Some(s) = &cfg.stonith {
                    let _ = writeln!(hb, "stonith = {}", q(s));
                }
            }
            "stonith_host" => {
                let _ = writeln!(hb, "stonith_host = {}", q_list(&cfg.stonith_host));
            }
            "apiauth" => {
                let _ = writeln!(hb, "apiauth = {}", q_list(&cfg.apiauth));
            }
            "failfast" => {
                let lines: Vec<String> =
                    cfg.failfast.iter().map(|r| format!("{} {}", r.user, r.command)).collect();
                let _ = writeln!(hb, "failfast = {}", q_list(&lines));
            }
            _ => {
                if let Some(v) = option_value(cfg, directive) {
                    let _ = writeln!(hb, "{directive} = {}", typed(&v));
                }
            }
        }
    }
    if !hb.is_empty() {
        out.push_str("\n# Heartbeat directives halo accepts without acting on them (kept for the record)\n[heartbeat]\n");
        out.push_str(&hb);
    }

    out.push_str("\n[auth]\n");
    let _ = writeln!(out, "active = {}", model.authkeys.active);
    out.push_str("keys = [\n");
    for k in &model.authkeys.keys {
        match &k.key {
            Some(key) => {
                let _ = writeln!(
                    out,
                    "  {{ index = {}, method = {}, key = {} }},",
                    k.index,
                    q(k.method.as_str()),
                    q(key)
                );
            }
            None => {
                let _ = writeln!(out, "  {{ index = {}, method = {} }},", k.index, q(k.method.as_str()));
            }
        }
    }
    out.push_str("]\n");
    notes.push(
        "halo.toml holds the [auth] keys: make it readable by root only (chmod 600), as authkeys".to_string(),
    );

    if let Some(h) = &model.haresources {
        for g in &h.groups {
            out.push_str("\n[[group]]\n");
            let p = model.placement.groups.iter().find(|p| p.key == g.key());
            if let Some(p) = p.filter(|p| p.name != p.key) {
                let _ = writeln!(out, "name = {}", q(&p.name));
            }
            let nodes = model.preferred_nodes(g.key());
            let raws: Vec<&str> = g.resources.iter().map(|r| r.raw.as_str()).collect();
            let _ = writeln!(out, "nodes = {}\nresources = {}", q_list(&nodes), q_list(&raws));
        }
    }
    for c in &model.placement.clones {
        let raws: Vec<&str> = c.resources.iter().map(|r| r.raw.as_str()).collect();
        let _ = writeln!(out, "\n[[clone]]\nname = {}\nresources = {}", q(&c.name), q_list(&raws));
        if !c.nodes.is_empty() {
            let _ = writeln!(out, "nodes = {}", q_list(&c.nodes));
        }
    }
    for o in &model.placement.order {
        let _ = writeln!(out, "\n[[order]]\nfirst = {}\nthen = {}", q(&o.first), q(&o.then));
    }
    for c in &model.placement.colocation {
        let _ = writeln!(out, "\n[[colocation]]\ngroup = {}\nwith = {}", q(&c.group), q(&c.with));
        if c.apart {
            out.push_str("apart = true\n");
        }
    }
    if let Some(d) = &model.director {
        match &d.file {
            Some(f) => {
                let _ = writeln!(out, "\n[director]\nfile = {}", q(&f.display().to_string()));
            }
            None => out.push_str(&ldirectord_to_toml(&d.text)),
        }
    }
    (out, notes)
}

/// ldirectord.cf text as `[director]` tables: global directives as keys, each virtual
/// service as a `[[director.virtual]]`, repeated directives (real=) as arrays.
pub fn ldirectord_to_toml(text: &str) -> String {
    type Section = Vec<(String, Vec<String>)>;
    let mut global: Section = Vec::new();
    let mut virtuals: Vec<Section> = Vec::new();
    let add = |sec: &mut Section, k: &str, v: &str| match sec.iter_mut().find(|(n, _)| n == k) {
        Some((_, vals)) => vals.push(v.to_string()),
        None => sec.push((k.to_string(), vec![v.to_string()])),
    };
    for raw in text.lines() {
        let line = raw.split('#').next().unwrap_or("");
        let Some((k, v)) = line.split_once('=') else { continue };
        let (k, v) = (k.trim(), v.trim());
        if k == "virtual" || k == "virtual6" {
            virtuals.push(vec![(k.to_string(), vec![v.to_string()])]);
        } else if raw.starts_with([' ', '\t']) && !virtuals.is_empty() {
            if let Some(cur) = virtuals.last_mut() {
                add(cur, k, v);
            }
        } else {
            add(&mut global, k, v);
        }
    }
    let render = |out: &mut String, sec: &Section| {
        for (k, vals) in sec {
            if vals.len() == 1 && k != "real" && k != "real6" {
                let _ = writeln!(out, "{k} = {}", typed(&vals[0]));
            } else {
                let _ = writeln!(out, "{k} = {}", q_list(vals));
            }
        }
    };
    let mut out = String::from("\n[director]\n");
    render(&mut out, &global);
    for v in &virtuals {
        out.push_str("\n[[director.virtual]]\n");
        render(&mut out, v);
    }
    out
}

/// The legacy files for a model, and notes about what they cannot say.
pub fn to_legacy(model: &Model) -> (LegacyFiles, Vec<String>) {
    let cfg = &model.ha_cf;
    let mut notes = Vec::new();
    let mut ha = String::from("# ha.cf written by halo config convert\n");
    let mut done = std::collections::HashSet::new();
    // Options first, in the order they were written (udpport and baud before the media,
    // which latch them).
    let mut order: Vec<&(String, usize)> = cfg.directive_lines.iter().collect();
    order.sort_by_key(|(d, l)| (!matches!(d.as_str(), "udpport" | "baud"), *l));
    for (directive, _) in order {
        let d = directive.as_str();
        if !OPTION_DIRECTIVES.contains(&d) || !done.insert(d) {
            continue;
        }
        match d {
            "node" => {
                let _ = writeln!(ha, "node {}", cfg.nodes.join(" "));
            }
            "env" => {
                for (n, v) in &cfg.env {
                    let _ = writeln!(ha, "env {n}={v}");
                }
            }
            "nice_failback" => {
                let _ = writeln!(ha, "auto_failback {}", auto_failback_word(cfg.auto_failback));
            }
            _ => {
                if let Some(v) = option_value(cfg, d) {
                    let _ = writeln!(ha, "{d} {v}");
                }
            }
        }
    }
    if !written(cfg, "node") && !cfg.nodes.is_empty() {
        let _ = writeln!(ha, "node {}", cfg.nodes.join(" "));
    }
    for m in &cfg.media {
        let line = match m {
            Medium::Mcast { iface, group, port, ttl, looped } => {
                format!("mcast {iface} {group} {port} {ttl} {}", u8::from(*looped))
            }
            Medium::Mcast6 { iface, group, port, hops } => format!("mcast6 {iface} {group} {port} {hops} 0"),
            other => other.describe(),
        };
        let _ = writeln!(ha, "{line}");
    }
    for p in &cfg.ping_nodes {
        let _ = match p.kind {
            PingKind::Ping => writeln!(ha, "ping {}", p.addrs.join(" ")),
            PingKind::Ping6 => writeln!(ha, "ping6 {}", p.addrs.join(" ")),
            PingKind::Group => writeln!(ha, "ping_group {} {}", p.name, p.addrs.join(" ")),
        };
    }
    for d in WHOLE_LINE_DIRECTIVES {
        match *d {
            "stonith" => {
                if let Some(s) = &cfg.stonith {
                    let _ = writeln!(ha, "stonith {s}");
                }
            }
            "stonith_host" => cfg.stonith_host.iter().for_each(|s| {
                let _ = writeln!(ha, "stonith_host {s}");
            }),
            "apiauth" => cfg.apiauth.iter().for_each(|s| {
                let _ = writeln!(ha, "apiauth {s}");
            }),
            "respawn" => cfg.respawn.iter().for_each(|r| {
                let _ = writeln!(ha, "respawn {} {}", r.user, r.command);
            }),
            _ => cfg.failfast.iter().for_each(|r| {
                let _ = writeln!(ha, "failfast {} {}", r.user, r.command);
            }),
        }
    }

    // halo's own directive: a Heartbeat node refuses it (the parser warns when it is read).
    for n in &cfg.notify {
        let _ = writeln!(ha, "notify {}", n.command);
    }
    if !cfg.notify.is_empty() {
        notes.push(
            "ha.cf: 'notify' is a halo extension: Heartbeat 3.0.6 refuses an ha.cf that uses it".into(),
        );
    }
    if let Some(l) = &cfg.lvs_sync {
        let _ = writeln!(ha, "lvs_sync_daemon {}", l.to_line());
        notes.push(
            "ha.cf: 'lvs_sync_daemon' is a halo extension: Heartbeat 3.0.6 refuses an ha.cf that uses it"
                .into(),
        );
    }

    let mut keys = format!("auth {}\n", model.authkeys.active);
    for k in &model.authkeys.keys {
        match &k.key {
            Some(key) => {
                if key.contains(char::is_whitespace) {
                    notes.push(format!(
                        "authkeys: key {} contains whitespace, which authkeys cannot hold",
                        k.index
                    ));
                }
                let _ = writeln!(keys, "{} {} {key}", k.index, k.method.as_str());
            }
            None => {
                let _ = writeln!(keys, "{} {}", k.index, k.method.as_str());
            }
        }
    }

    let haresources = model.haresources.as_ref().map(|h| {
        let mut out = String::new();
        for g in &h.groups {
            let raws: Vec<&str> = g.resources.iter().map(|r| r.raw.as_str()).collect();
            if let Some(p) = model.placement.groups.iter().find(|p| p.key == g.key()) {
                if p.nodes.len() > 1 {
                    let _ = writeln!(
                        out,
                        "# halo.toml: preferred nodes {} (haresources keeps the first)",
                        p.nodes.join(", ")
                    );
                    notes.push(format!(
                        "haresources: group '{}' prefers {}; haresources keeps only {}",
                        p.name,
                        p.nodes.join(", "),
                        p.nodes[0]
                    ));
                }
                if p.name != p.key {
                    notes.push(format!(
                        "haresources: group '{}' is named by its key '{}' there",
                        p.name, p.key
                    ));
                }
            }
            let _ = writeln!(out, "{} {}", g.node, raws.join(" "));
        }
        out
    });
    for c in &model.placement.clones {
        let raws: Vec<&str> = c.resources.iter().map(|r| r.raw.as_str()).collect();
        notes.push(format!(
            "haresources cannot say clone '{}' ({} on {}): not written",
            c.name,
            raws.join(" "),
            if c.nodes.is_empty() { "every node".to_string() } else { c.nodes.join(", ") }
        ));
    }
    for o in &model.placement.order {
        notes.push(format!("haresources cannot say order '{}' before '{}': not written", o.first, o.then));
    }
    for c in &model.placement.colocation {
        let how = if c.apart { "apart from" } else { "with" };
        notes
            .push(format!("haresources cannot say colocation '{}' {how} '{}': not written", c.group, c.with));
    }
    let ldirectord = model.director.as_ref().map(|d| {
        let name =
            d.file.as_ref().map(|f| f.display().to_string()).unwrap_or_else(|| "ldirectord.cf".to_string());
        (name, d.text.clone())
    });
    (LegacyFiles { ha_cf: ha, authkeys: keys, haresources, ldirectord }, notes)
}

#[cfg(test)]
mod notify_tests {
    use crate::convert::{to_legacy, to_toml};
    use crate::ha_cf::parse_ha_cf;
    use crate::halo_toml::parse_halo_toml;
    use crate::model::{AuthKey, AuthKeys, AuthMethodName, Model, Notify, Placement};
    use std::path::{Path, PathBuf};

    const HA_CF: &str =
        "node a b\nbcast eth0\nnotify /usr/local/bin/hook --tag ha\nnotify /bin/logger halo\n";

    /// A model around `cfg` (one sha1 key, nothing else): for the tests of ha.cf extensions.
    pub(super) fn model(cfg: crate::model::HaCf) -> Model {
        Model {
            dir: PathBuf::from("/etc/ha.d"),
            ha_cf: cfg,
            authkeys: AuthKeys {
                active: 1,
                keys: vec![AuthKey { index: 1, method: AuthMethodName::Sha1, key: Some("k".into()) }],
            },
            haresources: None,
            nodeinfo: None,
            placement: Placement::default(),
            director: None,
        }
    }

    #[test]
    fn ha_cf_notify_lines_are_kept_in_order_with_a_halo_extension_warning() {
        let (cfg, w) = parse_ha_cf(Path::new("ha.cf"), HA_CF).expect("valid");
        assert_eq!(
            cfg.notify,
            vec![
                Notify { command: "/usr/local/bin/hook --tag ha".into(), line: 3 },
                Notify { command: "/bin/logger halo".into(), line: 4 },
            ]
        );
        let ext: Vec<_> = w.iter().filter(|d| d.message.contains("'notify' is a halo extension")).collect();
        assert_eq!(ext.len(), 1, "one warning for the directive, not one per line: {w:?}");
        assert_eq!(ext[0].line, 3);
    }

    #[test]
    fn a_notify_without_a_full_path_is_refused_with_its_line() {
        let e = parse_ha_cf(Path::new("ha.cf"), "node a b\nbcast eth0\nnotify hook.sh\n").unwrap_err();
        let text = e.to_string();
        assert!(text.contains("ha.cf:3:") && text.contains("must be a full path"), "{text}");
        let e = parse_ha_cf(Path::new("ha.cf"), "node a b\nbcast eth0\nnotify\n").unwrap_err();
        assert!(e.to_string().contains("ha.cf:3:"), "{e}");
    }

    #[test]
    fn notify_converts_both_ways() {
        let (cfg, _) = parse_ha_cf(Path::new("ha.cf"), HA_CF).expect("valid");
        let m = model(cfg);
        let (toml, _) = to_toml(&m);
        assert!(toml.contains(r#"notify = ["/usr/local/bin/hook --tag ha", "/bin/logger halo"]"#), "{toml}");
        let (parsed, errors, warnings) = parse_halo_toml(Path::new("halo.toml"), &toml);
        assert!(errors.is_empty(), "{errors:?}");
        assert!(!warnings.iter().any(|w| w.message.contains("halo extension")), "{warnings:?}");
        let back = parsed.expect("parsed").ha_cf;
        let cmds: Vec<&str> = back.notify.iter().map(|n| n.command.as_str()).collect();
        assert_eq!(cmds, ["/usr/local/bin/hook --tag ha", "/bin/logger halo"]);
        // Lines point into halo.toml (the notify key is on line 2).
        assert!(back.notify.iter().all(|n| n.line == 2), "{:?}", back.notify);

        let (legacy, notes) = to_legacy(&model(back));
        assert!(legacy.ha_cf.contains("notify /usr/local/bin/hook --tag ha\nnotify /bin/logger halo\n"));
        assert!(notes.iter().any(|n| n.contains("halo extension")), "{notes:?}");
    }

    #[test]
    fn halo_toml_notify_must_be_strings() {
        let text =
            "notify = [1]\n[cluster]\nnodes = [\"a\", \"b\"]\n[[link]]\ntype = \"bcast\"\niface = \"eth0\"\n";
        let (_, errors, _) = parse_halo_toml(Path::new("halo.toml"), text);
        assert!(
            errors.iter().any(|e| e.line == 1 && e.message.contains("notify: expected a string")),
            "{errors:?}"
        );
        let text = "notify = [\"relative/hook\"]\n[cluster]\nnodes = [\"a\", \"b\"]\n[[link]]\ntype = \"bcast\"\niface = \"eth0\"\n";
        let (_, errors, _) = parse_halo_toml(Path::new("halo.toml"), text);
        assert!(errors.iter().any(|e| e.line == 1 && e.message.contains("full path")), "{errors:?}");
    }
}

#[cfg(test)]
mod lvs_sync_tests {
    use super::notify_tests::model;
    use crate::convert::{to_legacy, to_toml};
    use crate::ha_cf::parse_ha_cf;
    use crate::halo_toml::parse_halo_toml;
    use std::path::Path;

    #[test]
    fn lvs_sync_daemon_converts_both_ways() {
        let ha = "node a b\nbcast eth0\nlvs_sync_daemon eth1 id 4 interval 0.5\n";
        let (cfg, _) = parse_ha_cf(Path::new("ha.cf"), ha).expect("valid");
        let (toml, _) = to_toml(&model(cfg.clone()));
        assert!(toml.contains("lvs_sync_daemon = \"eth1 id 4 interval 0.5\""), "{toml}");
        let (parsed, errors, warnings) = parse_halo_toml(Path::new("halo.toml"), &toml);
        assert!(errors.is_empty(), "{errors:?}");
        assert!(!warnings.iter().any(|w| w.message.contains("halo extension")), "{warnings:?}");
        let back = parsed.expect("parsed").ha_cf;
        assert_eq!(back.lvs_sync.as_ref().map(|l| l.to_line()), cfg.lvs_sync.as_ref().map(|l| l.to_line()));
        let (legacy, notes) = to_legacy(&model(back));
        assert!(legacy.ha_cf.contains("lvs_sync_daemon eth1 id 4 interval 0.5\n"), "{}", legacy.ha_cf);
        assert!(notes.iter().any(|n| n.contains("'lvs_sync_daemon' is a halo extension")), "{notes:?}");
    }
}
