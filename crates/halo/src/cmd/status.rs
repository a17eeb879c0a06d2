//! `halo status [--json]`.
use std::path::Path;

pub fn status(socket: &Path, json: bool) -> anyhow::Result<i32> {
    let v = crate::control::request(socket, "status")?;
    if json {
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(0);
    }
    print!("{}", render(&v));
    Ok(0)
}

/// An operator command (`standby all`, `takeover local`, `cleanup KEY`): prints the
/// daemon's answer.
pub fn operator(socket: &Path, cmd: &str) -> anyhow::Result<i32> {
    let v = crate::control::request(socket, cmd)?;
    println!("{}", v.get("ok").and_then(|o| o.as_str()).unwrap_or("done"));
    Ok(0)
}

/// The text view: one line per node, its links beneath, like `cl_status listnodes -v`.
pub fn render(v: &serde_json::Value) -> String {
    let s = |v: &serde_json::Value, k: &str| v.get(k).and_then(|x| x.as_str()).unwrap_or("?").to_string();
    let me = s(v, "node");
    let mut out = format!(
        "halo on {me}: {} (generation {}){}\n",
        s(v, "state"),
        v.get("generation").and_then(|g| g.as_u64()).unwrap_or(0),
        if v.get("comm_up").and_then(|c| c.as_bool()) == Some(true) { "" } else { ", joining the cluster" }
    );
    for n in v.get("nodes").and_then(|n| n.as_array()).into_iter().flatten() {
        let name = s(n, "name");
        let heard = match n.get("last_heard_ms").and_then(|h| h.as_u64()) {
            Some(_) if name == me => "local".to_string(),
            Some(ms) => format!("heard {ms} ms ago"),
            None => "never heard".to_string(),
        };
        out.push_str(&format!(
            "  {:<20} {:<7} gen {:<12} {}\n",
            name,
            s(n, "state"),
            n.get("generation").and_then(|g| g.as_u64()).unwrap_or(0),
            heard
        ));
        for l in n.get("links").and_then(|l| l.as_array()).into_iter().flatten() {
            out.push_str(&format!("      link {:<16} {}\n", s(l, "name"), s(l, "state")));
        }
    }
    if let Some(r) = v.get("resources").filter(|r| r.get("managed").and_then(|m| m.as_bool()) == Some(true)) {
        out.push_str(&format!(
            "resource groups (auto_failback {}, this node holds {}{}):\n",
            s(r, "auto_failback"),
            s(r, "rscstatus"),
            match s(r, "standby").as_str() {
                "none" => String::new(),
                sb => format!(", standby {sb}"),
            }
        ));
        for g in r.get("groups").and_then(|g| g.as_array()).into_iter().flatten() {
            let holders: Vec<&str> = g
                .get("holders")
                .and_then(|h| h.as_array())
                .into_iter()
                .flatten()
                .filter_map(|h| h.as_str())
                .collect();
            let at =
                if holders.is_empty() { "stopped".to_string() } else { format!("on {}", holders.join(", ")) };
            let failed =
                if g.get("failed").and_then(|f| f.as_bool()) == Some(true) { " FAILED here" } else { "" };
            out.push_str(&format!(
                "  {:<40} {:<24} (prefers {}, here {}){failed}\n",
                s(g, "key"),
                at,
                s(g, "node"),
                s(g, "state")
            ));
            if let Some(e) = g.get("last_error").and_then(|e| e.as_str()) {
                out.push_str(&format!("      last error: {e}\n"));
            }
        }
    }
    if let Some(d) = v.get("dropped").and_then(|d| d.as_object()) {
        let parts: Vec<String> = d
            .iter()
            .filter(|(k, _)| *k != "duplicate" && *k != "own")
            .map(|(k, c)| format!("{k}={c}"))
            .collect();
        if !parts.is_empty() {
            out.push_str(&format!("  dropped packets: {}\n", parts.join(" ")));
        }
    }
    out
}
