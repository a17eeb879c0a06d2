//! Heartbeat's `cl_status` (spec §5.1, tools/cl_status.c): the same subcommands, the same
//! machine output, `-m` human output and exit codes, answered from halo's status JSON, so
//! monitoring scripts written for Heartbeat keep working. Options are parsed as GNU getopt
//! does for cl_status (permuted, clustered, `-p NAME` or `-pNAME`).
use serde_json::{json, Value};
use std::path::Path;

pub const OK: i32 = 0;
pub const NORMAL_FAIL: i32 = 1;
pub const PARAMETER_ERROR: i32 = 11;
pub const UNKNOWN_ERROR: i32 = 13;

/// What `cl_status hbparameter -p hbversion` answers: Heartbeat's version first (scripts
/// compare it), then who really answers.
pub fn hbversion() -> String {
    format!("3.0.6 (halo {})", env!("CARGO_PKG_VERSION"))
}

/// The daemon's answer to `parameter NAME`: ha.cf's recorded value as Heartbeat keeps it
/// (`keepalive` as written, derived defaults as `<n>ms`), `hbversion`; `node` is never
/// recorded.
pub fn parameter_json(ha_cf: &halo_config::HaCf, name: &str) -> Value {
    let value = match name {
        "hbversion" => Some(hbversion()),
        "node" | "" => None,
        _ => ha_cf.parameter(name).map(str::to_string),
    };
    match value {
        Some(v) => json!({ "parameter": name, "value": v }),
        None => json!({ "error": format!("parameter {name} is not set") }),
    }
}

const HELP: &str = "Usage: cl_status <sub-command> [<options>] [<parameters>]

Sub-commands:
clientstatus <node-name> <client-id> [<timeout>]
\tShow the status of heartbeat clients.
hblinkstatus <node-name> <link-name>
\tShow the status of a heartbeat link
hbstatus
\tIndicate if heartbeat is running on the local system.
\tOptions:
\t\t-v\tverbose: also add \"listnodes -v\" output
listnodes [<option>]
\tList the nodes in the cluster.
\tOptions:
\t\t-p\tlist only 'ping' type nodes
\t\t-n\tlist only 'normal' type nodes
\t\t-v\tverbose: also list type and status,
\t\t\tthen add \"listhblinks -v\" output
listhblinks <node-name>
\tList the network interfaces used as hearbeat links.
\tOptions:
\t\t-v\tverbose: list link status as well
nodestatus <node-name>
\tList the node status.
nodeweight <node-name>
\tList the node weight.
nodesite <node-name>
\tList the node site.
nodetype <node-name>
\tList the nodes of a given type.
rscstatus
\tShow the status of cluster resources.
hbparameter -p <parameter-name>
\tRetrieve the value of a cluster parameter.
\tAs for the valid parameter names, please refer to the man page.
";

/// Subcommands and their getopt strings (cl_status.c `cmds[]`).
const CMDS: &[(&str, &str)] = &[
    ("hbstatus", "mv"),
    ("listnodes", "mpnv"),
    ("nodestatus", "m"),
    ("nodeweight", "m"),
    ("nodesite", "m"),
    ("nodetype", "m"),
    ("listhblinks", "mv"),
    ("hblinkstatus", "m"),
    ("clientstatus", "m"),
    ("rscstatus", "m"),
    ("hbparameter", "mp:"),
];

/// Where cl_status gets its answers: the daemon, or a fixture in tests.
pub trait Source {
    /// A control command's JSON answer; `Err` when no daemon answers or it refuses.
    fn ask(&mut self, cmd: &str) -> Result<Value, String>;
    /// The daemon runs but does not let us in (Heartbeat: "refuses my connection").
    fn refused(&self) -> bool {
        false
    }
}

struct Daemon<'a> {
    socket: &'a Path,
}

impl Source for Daemon<'_> {
    fn ask(&mut self, cmd: &str) -> Result<Value, String> {
        crate::control::request(self.socket, cmd).map_err(|e| format!("{e:#}"))
    }

    fn refused(&self) -> bool {
        matches!(std::os::unix::net::UnixStream::connect(self.socket),
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied)
    }
}

/// `halo cl_status ARGS...` / `cl_status ARGS...`: prints and returns the exit code.
pub fn main(socket: &Path, args: &[String]) -> i32 {
    let (code, out, err) = run(&mut Daemon { socket }, args);
    print!("{out}");
    eprint!("{err}");
    code
}

/// Runs one cl_status command line against `src`: (exit code, stdout, stderr).
pub fn run(src: &mut dyn Source, args: &[String]) -> (i32, String, String) {
    let mut out = String::new();
    let mut err = String::new();
    let code = dispatch(src, args, &mut out, &mut err);
    (code, out, err)
}

fn log_err(err: &mut String, msg: &str) {
    err.push_str(&format!("cl_status: ERROR: {msg}\n"));
}

struct Opts {
    flags: Vec<char>,
    param: Option<String>,
    operands: Vec<String>,
}

impl Opts {
    fn has(&self, c: char) -> bool {
        self.flags.contains(&c)
    }
}

/// GNU getopt over the words after the subcommand; `Err(c)` names an unknown option
/// (`lenient`: reported, then skipped).
fn getopt(words: &[String], optstr: &str, lenient: bool, err: &mut String) -> Result<Opts, char> {
    let mut o = Opts { flags: Vec::new(), param: None, operands: Vec::new() };
    let mut i = 0;
    let mut only_operands = false;
    while i < words.len() {
        let w = &words[i];
        i += 1;
        if only_operands || !w.starts_with('-') || w.len() == 1 {
            o.operands.push(w.clone());
            continue;
        }
        if w == "--" {
            only_operands = true;
            continue;
        }
        let chars: Vec<char> = w[1..].chars().collect();
        let mut j = 0;
        while j < chars.len() {
            let c = chars[j];
            j += 1;
            match optstr.find(c) {
                Some(k) if optstr[k + 1..].starts_with(':') => {
                    let rest: String = chars[j..].iter().collect();
                    if !rest.is_empty() {
                        o.param = Some(rest);
                    } else if i < words.len() {
                        o.param = Some(words[i].clone());
                        i += 1;
                    } else {
                        err.push_str(&format!("cl_status: option requires an argument -- '{c}'\n"));
                        return Err(c);
                    }
                    j = chars.len();
                }
                Some(_) => o.flags.push(c),
                None => {
                    err.push_str(&format!("cl_status: invalid option -- '{c}'\n"));
                    if !lenient {
                        return Err(c);
                    }
                }
            }
        }
    }
    Ok(o)
}

fn nodes(st: &Value) -> Vec<&Value> {
    st.get("nodes").and_then(|n| n.as_array()).into_iter().flatten().collect()
}

fn node<'v>(st: &'v Value, name: &str) -> Option<&'v Value> {
    // Heartbeat looks node names up case-insensitively.
    nodes(st).into_iter().find(|n| str_of(n, "name").eq_ignore_ascii_case(name))
}

fn str_of<'v>(v: &'v Value, k: &str) -> &'v str {
    v.get(k).and_then(|x| x.as_str()).unwrap_or("")
}

fn links(n: &Value) -> Vec<(&str, &str)> {
    n.get("links")
        .and_then(|l| l.as_array())
        .into_iter()
        .flatten()
        .map(|l| (str_of(l, "name"), str_of(l, "state")))
        .collect()
}

fn dispatch(src: &mut dyn Source, args: &[String], out: &mut String, err: &mut String) -> i32 {
    if args.is_empty() || (args.len() == 1 && args[0] == "-h") {
        out.push_str(HELP);
        return OK;
    }
    let sub = args[0].as_str();
    let Some(&(_, optstr)) = CMDS.iter().find(|(n, _)| *n == sub) else {
        log_err(err, &format!("{sub}: invalid sub-command."));
        return PARAMETER_ERROR;
    };
    let words = &args[1..];
    // Heartbeat signs on before it looks at the options.
    let status = src.ask("status");
    if sub == "hbstatus" {
        return hbstatus(src, status.ok(), words, optstr, out, err);
    }
    let st = match status {
        Ok(st) => st,
        Err(e) => {
            log_err(err, "Cannot signon with heartbeat");
            log_err(err, &format!("REASON: {e}"));
            return NORMAL_FAIL;
        }
    };
    let o = match getopt(words, optstr, false, err) {
        Ok(o) => o,
        Err(_) => return PARAMETER_ERROR,
    };
    let human = o.has('m');
    let arg = |i: usize| o.operands.get(i).map(String::as_str);
    let not_enough = |err: &mut String, text: &str| {
        err.push_str(text);
        PARAMETER_ERROR
    };
    match sub {
        "listnodes" => listnodes(&st, o.has('n'), o.has('p'), o.has('v'), human, out),
        "nodestatus" => {
            let Some(name) = arg(0) else { return not_enough(err, "Not enough parameters.\n") };
            let Some(n) = node(&st, name) else {
                err.push_str("Error. May be due to incorrect node name\n");
                return PARAMETER_ERROR;
            };
            let state = str_of(n, "state");
            if human {
                out.push_str(&format!("The cluster node {name} is {state}\n"));
            } else {
                out.push_str(&format!("{state}\n"));
            }
            if matches!(state, "active" | "up" | "ping") {
                OK
            } else {
                NORMAL_FAIL
            }
        }
        "nodeweight" => {
            let Some(name) = arg(0) else { return not_enough(err, "Not enough parameters.\n") };
            if node(&st, name).is_none() {
                err.push_str("Error. Maybe due to incorrect node name.\n");
                return PARAMETER_ERROR;
            }
            // Heartbeat's default weight; halo has no hb_setweight.
            if human {
                out.push_str(&format!("The weight of the cluster node {name} is 100\n"));
            } else {
                out.push_str("100\n");
            }
            OK
        }
        "nodesite" => {
            let Some(name) = arg(0) else { return not_enough(err, "Not enough parameters.\n") };
            if node(&st, name).is_none() {
                err.push_str("Error. May be due to incorrect node name\n");
                return PARAMETER_ERROR;
            }
            if human {
                out.push_str(&format!("The site of the cluster node {name} is \n"));
            } else {
                out.push('\n');
            }
            OK
        }
        "nodetype" => {
            let Some(name) = arg(0) else { return not_enough(err, "No enough parameter.\n") };
            let Some(n) = node(&st, name) else {
                err.push_str("Error. May be due to incorrect node name\n");
                return PARAMETER_ERROR;
            };
            let kind = str_of(n, "type");
            if human {
                out.push_str(&format!("The node {name}'s type: {kind}\n"));
            } else {
                out.push_str(&format!("{kind}\n"));
            }
            OK
        }
        "listhblinks" => {
            let Some(name) = arg(0) else { return not_enough(err, "No enough parameter.\n") };
            match node(&st, name) {
                Some(n) => {
                    listhblinks(n, o.has('v'), human, out);
                    OK
                }
                None => {
                    log_err(err, "Cannot start heartbeat link interface walk.");
                    log_err(err, &format!("REASON: unknown node {name}"));
                    UNKNOWN_ERROR
                }
            }
        }
        "hblinkstatus" => {
            let (Some(name), Some(ifname)) = (arg(0), arg(1)) else {
                return not_enough(err, "No enough parameter.\n");
            };
            let state = node(&st, name).and_then(|n| links(n).into_iter().find(|(l, _)| *l == ifname));
            let Some((_, state)) = state else {
                log_err(err, "Cannot get heartbeat link status");
                log_err(err, &format!("REASON: no link {ifname} to node {name}"));
                return UNKNOWN_ERROR;
            };
            if human {
                out.push_str(&format!("The node {name}'s heartbeat link {ifname} is {state}\n"));
            } else {
                out.push_str(&format!("{state}\n"));
            }
            if state == "up" {
                OK
            } else {
                NORMAL_FAIL
            }
        }
        "clientstatus" => {
            let (Some(name), Some(_client)) = (arg(0), arg(1)) else {
                return not_enough(err, "No enough parameter.\n");
            };
            if node(&st, name).is_none() {
                log_err(err, &format!("Cannot get heartbeat client {}'s status", arg(1).unwrap_or("")));
                log_err(err, &format!("REASON: unknown node {name}"));
                return UNKNOWN_ERROR;
            }
            // halo has no API clients (ipfail, ccm are built in): none is ever online.
            out.push_str("offline\n");
            NORMAL_FAIL
        }
        "rscstatus" => {
            if pacemaker(src).is_some() {
                log_err(err, "Cannot get cluster resource status of a pacemaker cluster; try crm_mon");
                return NORMAL_FAIL;
            }
            let r = st.pointer("/resources/rscstatus").and_then(|r| r.as_str()).unwrap_or("none");
            if human {
                out.push_str(&format!("This node is holding {r} resources.\n"));
            } else {
                out.push_str(&format!("{r}\n"));
            }
            OK
        }
        "hbparameter" => {
            let Some(name) = o.param.as_deref() else {
                log_err(err, "parameter name required");
                return PARAMETER_ERROR;
            };
            match src.ask(&format!("parameter {name}")) {
                Ok(v) => {
                    let value = str_of(&v, "value");
                    if human {
                        out.push_str(&format!("Heartbeat parameter {name}'s value: {value}\n"));
                    } else {
                        out.push_str(&format!("{value}\n"));
                    }
                    OK
                }
                Err(e) => {
                    log_err(err, &format!("Cannot get parameter {name}'s value"));
                    log_err(err, &format!("REASON: {e}"));
                    NORMAL_FAIL
                }
            }
        }
        _ => PARAMETER_ERROR,
    }
}

/// ha.cf `pacemaker` (or `crm`) when set to anything but a false boolean.
fn pacemaker(src: &mut dyn Source) -> Option<String> {
    let v = src.ask("parameter pacemaker").or_else(|_| src.ask("parameter crm")).ok()?;
    let value = str_of(&v, "value").to_string();
    let off = matches!(value.to_ascii_lowercase().as_str(), "false" | "off" | "no" | "n" | "0" | "f");
    (!off).then_some(value)
}

fn hbstatus(
    src: &mut dyn Source,
    st: Option<Value>,
    words: &[String],
    optstr: &str,
    out: &mut String,
    err: &mut String,
) -> i32 {
    // hbstatus ignores options it does not know (getopt still complains).
    let o = getopt(words, optstr, true, err).unwrap_or(Opts {
        flags: Vec::new(),
        param: None,
        operands: Vec::new(),
    });
    let Some(st) = st else {
        if src.refused() {
            out.push_str("Heartbeat is apparently running on this machine, but refuses my connection\n");
            return OK;
        }
        out.push_str("Heartbeat is stopped on this machine.\n");
        return NORMAL_FAIL;
    };
    if !o.has('v') {
        out.push_str("Heartbeat is running on this machine.\n");
        return OK;
    }
    let version = src.ask("parameter hbversion").map(|v| str_of(&v, "value").to_string()).ok();
    let pm = pacemaker(src);
    if o.has('m') {
        match &version {
            Some(v) => out.push_str(&format!("Heartbeat version {v}\n")),
            None => out.push_str("Heartbeat is running on this machine.\n"),
        }
        out.push_str(if pm.is_some() {
            "Resources controlled by Pacemaker.\n"
        } else {
            "Resources controlled by \"haresources\"\n"
        });
    } else {
        out.push_str(&format!("version:\t{}\n", version.as_deref().unwrap_or("unknown")));
        if let Some(pm) = &pm {
            out.push_str(&format!("managed by:\tpacemaker\t({pm})\n"));
        } else {
            out.push_str("managed by:\t\"haresources\"\n");
        }
    }
    listnodes(&st, false, false, true, o.has('m'), out)
}

fn listnodes(
    st: &Value,
    normal_only: bool,
    ping_only: bool,
    verbose: bool,
    human: bool,
    out: &mut String,
) -> i32 {
    let (normal_only, ping_only) =
        if normal_only && ping_only { (false, false) } else { (normal_only, ping_only) };
    if human {
        out.push_str("The nodes are as follow:\n");
    }
    for n in nodes(st) {
        let kind = str_of(n, "type");
        if (normal_only && kind != "normal") || (ping_only && kind != "ping") {
            continue;
        }
        let name = str_of(n, "name");
        if verbose {
            out.push_str(&format!("\n{name}\t{}\t(nodetype: {kind})\n", str_of(n, "state")));
            listhblinks(n, true, human, out);
        } else {
            out.push_str(&format!("{name}\n"));
        }
    }
    OK
}

fn listhblinks(n: &Value, verbose: bool, human: bool, out: &mut String) {
    if human {
        out.push_str("\tthis node has the following heartbeat links:\n");
    }
    for (name, state) in links(n) {
        if verbose {
            out.push_str(&format!("\t{name}\t{state}\n"));
        } else {
            out.push_str(&format!("\t{name}\n"));
        }
    }
}
