//! Heartbeat's `ResourceManager` (spec §4.3) for the scripts that call it: `listkeys NODE`,
//! `allkeys`, `ourkeys`, `otherkeys` read haresources as ResourceManager's `ipres` pipeline
//! normalises it (`node r1 r2 ` with the node lower-cased, matched by an egrep-style
//! case-insensitive regex); `status RESOURCE` asks the resource's script (or halo's
//! built-in IPaddr) whether it runs here and exits 0 (owned) or 3, printing nothing, as
//! `we_own_resource` does. Taking and giving groups is the daemon's job.
use halo_config::ResourceGroup;
use std::path::Path;

pub const USAGE: &str =
    "usage: ResourceManager listkeys machine | takegroup key | givegroup key|status resource";

/// `halo resourcemanager ARGS...` / `ResourceManager ARGS...`: prints and returns the exit
/// code.
pub fn main(config_dir: &Path, args: &[String]) -> i32 {
    let (code, out, err) = run(config_dir, args);
    print!("{out}");
    eprint!("{err}");
    code
}

/// (exit code, stdout, stderr).
pub fn run(config_dir: &Path, args: &[String]) -> (i32, String, String) {
    let arg = |i: usize| args.get(i).map(String::as_str);
    let groups = || load(config_dir);
    let lines = |pat: &str, invert: bool| -> Result<Vec<String>, String> {
        let re = regex::RegexBuilder::new(&format!("^(?:{pat}) "))
            .case_insensitive(true)
            .build()
            .map_err(|e| format!("grep: invalid pattern {pat:?}: {e}\n"))?;
        Ok(groups()?.iter().map(normalised).filter(|l| re.is_match(l) != invert).collect())
    };
    let result = match arg(0) {
        Some("listkeys") => lines(arg(1).unwrap_or(""), false).map(|l| keys(&l)),
        Some("allkeys") => lines(".*", false).map(|l| keys(&l)),
        Some(which @ ("ourkeys" | "otherkeys")) => {
            lines(&regex::escape(&curhost(config_dir)), which == "otherkeys").map(|l| rest(&l))
        }
        Some("status") => return (status(config_dir, arg(1).unwrap_or("")), String::new(), String::new()),
        Some(op @ ("takegroup" | "givegroup" | "statgroup" | "verifyallidle")) => {
            return (
                1,
                String::new(),
                format!(
                    "ResourceManager: {op}: halo's daemon places groups; use halo takeover / halo standby\n"
                ),
            )
        }
        _ => return (1, String::new(), format!("{USAGE}\n\n")),
    };
    match result {
        Ok(out) => (0, out, String::new()),
        Err(e) => (1, String::new(), e),
    }
}

fn load(config_dir: &Path) -> Result<Vec<ResourceGroup>, String> {
    let file = config_dir.join("haresources");
    let text = match std::fs::read_to_string(&file) {
        Ok(t) => t,
        // ResourceManager lists nothing when there is no haresources.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(format!("ResourceManager: reading {}: {e}\n", file.display())),
    };
    halo_config::parse_haresources(&file, &text)
        .map(|h| h.groups)
        .map_err(|e| format!("ResourceManager: {e}\n"))
}

/// A group as `ipres` prints it: `node r1 r2 ` (one blank after each word).
fn normalised(g: &ResourceGroup) -> String {
    let mut l = format!("{} ", g.node);
    for r in &g.resources {
        l.push_str(&r.raw);
        l.push(' ');
    }
    l
}

/// `cut -d' ' -f2`.
fn keys(lines: &[String]) -> String {
    lines.iter().map(|l| format!("{}\n", l.split(' ').nth(1).unwrap_or(""))).collect()
}

/// `cut -d' ' -f2-`.
fn rest(lines: &[String]) -> String {
    lines.iter().map(|l| format!("{}\n", l.split_once(' ').map_or("", |(_, r)| r))).collect()
}

/// `$HA_CURHOST`, else ha.d/nodeinfo, else `uname -n`, lower-cased.
fn curhost(config_dir: &Path) -> String {
    if let Ok(h) = std::env::var("HA_CURHOST") {
        return h.to_ascii_lowercase();
    }
    if let Ok(n) = std::fs::read_to_string(config_dir.join("nodeinfo")) {
        if let Some(n) = n.split_whitespace().next() {
            return n.to_ascii_lowercase();
        }
    }
    nix::sys::utsname::uname()
        .map(|u| u.nodename().to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default()
}

/// `we_own_resource`: 0 if RESOURCE runs here, else 3.
fn status(config_dir: &Path, resource: &str) -> i32 {
    if resource.is_empty() {
        return 3;
    }
    let spec = halo_config::ResourceSpec::parse(resource);
    let group = ResourceGroup { node: curhost(config_dir), line: 0, resources: vec![spec] };
    let env = halo_host::group::GroupEnv {
        config_dir: config_dir.to_path_buf(),
        env: vec![
            ("HA_CURHOST".into(), curhost(config_dir)),
            ("HA_DIR".into(), config_dir.display().to_string()),
            ("HA_FUNCS".into(), config_dir.join("shellfuncs").display().to_string()),
            ("HA_RSCTMP".into(), "/run/resource-agents".into()),
        ],
        announce_count: 0,
        ..Default::default()
    };
    let exec = halo_host::group::GroupExecutor::new(env);
    let mut log = |_: halo_host::Level, _: String| {};
    match exec.probe_group(&group, &mut log).first() {
        Some(halo_host::group::ProbeResult::Running) => 0,
        _ => 3,
    }
}
