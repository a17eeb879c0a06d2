use clap::{CommandFactory, Parser, Subcommand};
use std::path::PathBuf;

/// `halo --version`: the release and the Heartbeat protocol it speaks on the wire.
const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (Heartbeat 3.0.6 wire protocol)");

/// halo: high availability for Linux (Heartbeat 3 compatible).
#[derive(Parser)]
#[command(name = "halo", version = VERSION, about, long_about = None)]
struct Cli {
    /// Control socket of the daemon.
    #[arg(long, global = true, default_value = halo::DEFAULT_SOCKET)]
    socket: PathBuf,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the daemon in the foreground.
    Run {
        /// Directory holding ha.cf, authkeys (and haresources).
        #[arg(long, default_value = halo::DEFAULT_CONFIG_DIR)]
        config_dir: PathBuf,
        /// This node's name (default: ha.d/nodeinfo, else `uname -n`).
        #[arg(long)]
        node: Option<String>,
        /// Where the generation counter and node UUID are kept.
        #[arg(long, default_value = halo::DEFAULT_STATE_DIR)]
        state_dir: PathBuf,
        /// Serve the web dashboard (`/`), Prometheus `/metrics`, `/api/status` and `/api/lvs`
        /// over HTTP: `--http` alone listens on 127.0.0.1:9694, `--http PORT` on loopback,
        /// `--http ADDR:PORT` where asked. Off when absent.
        #[arg(long, value_name = "ADDR", num_args = 0..=1, default_missing_value = "9694",
              value_parser = halo::http::parse_addr)]
        http: Option<std::net::SocketAddr>,
        /// Let the members of this group use the control socket (`halo status`, but also
        /// `halo standby`...): the socket is given to the group with mode 0660. Without it
        /// only root may.
        #[arg(long, value_name = "NAME")]
        socket_group: Option<String>,
    },
    /// Show the cluster as the local daemon sees it.
    Status {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// A live view of the cluster (crm_mon-like), refreshed every second: nodes, groups,
    /// failed actions, links, the director's real servers; changes highlighted, recent
    /// events listed. `q` quits.
    Mon {
        /// Seconds between two refreshes.
        #[arg(long, default_value_t = 1.0)]
        interval: f64,
    },
    /// Validate the configuration and this host without starting anything: authkeys
    /// permissions, node name, interfaces, peers heard and reachable, clock skew and
    /// configuration drift between the nodes (asked of the running daemon), LVS-DR
    /// sysctls. One line per check (OK, WARN, FAIL); exit code 1 on any FAIL.
    Check {
        #[arg(long, default_value = halo::DEFAULT_CONFIG_DIR)]
        config_dir: PathBuf,
        /// Check the files only, not this host (interfaces, node name).
        #[arg(long)]
        config_only: bool,
        /// Check as this node (default: ha.d/nodeinfo, else `uname -n`).
        #[arg(long)]
        node: Option<String>,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Configuration tools: `halo config convert` prints the legacy files as halo.toml or
    /// halo.toml as the legacy files.
    Config {
        #[command(subcommand)]
        sub: ConfigCmd,
    },
    /// A three-node cluster in network namespaces: a VIP with halo's director on n1 and two
    /// web servers behind it (LVS-DR); n1 loses its cable, n2 takes over the VIP and the
    /// director; prints the outage a client saw, then removes everything it made.
    Demo,
    /// Give resource groups away to the other nodes (hb_standby): `all` (default), `local`
    /// (the groups this node prefers), `foreign` or `failback` (the others'). Sticks until
    /// `halo takeover`.
    Standby {
        #[arg(default_value = "all")]
        set: String,
    },
    /// Take resource groups here (hb_takeover): `all` (default), `local` or `foreign`.
    Takeover {
        #[arg(default_value = "all")]
        set: String,
    },
    /// Make the daemon re-read its configuration (as SIGHUP does) and apply only what
    /// changed; prints the changes, and what needs a restart. An invalid configuration is
    /// refused as a whole (the running one stays) with its file:line error.
    Reload,
    /// Forget the failures of a group on this node (all groups without KEY), so it may run
    /// here again.
    Cleanup { key: Option<String> },
    /// Fencing (STONITH): `halo fence confirm NODE` vouches that NODE is down (reset by
    /// hand): a meatware fence waiting for it completes, or a fence that cannot complete
    /// (no usable device, a device that keeps failing) ends, and NODE's groups may move.
    Fence {
        #[command(subcommand)]
        sub: FenceCmd,
    },
    /// The director's table as `ipvsadm -L -n` prints it (`--stats`, `--rate`, `--exact`,
    /// `-c`), or each real server's health (`--health`); `halo lvs realserver ...` sets up
    /// an LVS-DR real server.
    Lvs {
        #[command(subcommand)]
        sub: Option<LvsCmd>,
        #[arg(long)]
        stats: bool,
        #[arg(long)]
        rate: bool,
        #[arg(long)]
        exact: bool,
        /// Connection entries (`ipvsadm -L -n -c`).
        #[arg(short = 'c', long = "connection")]
        connection: bool,
        /// Every real server with its weight, check and health.
        #[arg(long)]
        health: bool,
        /// Accepted for ipvsadm habits (`halo lvs -L -n`): the output is always numeric.
        #[arg(short = 'L', long = "list", hide = true)]
        list: bool,
        #[arg(short = 'n', long = "numeric", hide = true)]
        numeric: bool,
    },
    /// Heartbeat's cl_status (also called as `cl_status` through a symlink): same
    /// subcommands, output and exit codes (`halo cl_status -h` lists them).
    #[command(name = "cl_status", disable_help_flag = true)]
    ClStatus {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Heartbeat's ResourceManager (also called as `ResourceManager` through a symlink):
    /// listkeys NODE, allkeys, ourkeys, otherkeys, status RESOURCE.
    #[command(name = "resourcemanager", alias = "ResourceManager", disable_help_flag = true)]
    ResourceManager {
        /// Directory holding haresources (and resource.d/).
        #[arg(long, default_value = halo::DEFAULT_CONFIG_DIR)]
        config_dir: PathBuf,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Run a command on every node at once (dsh): each line of output behind its node's
    /// name (`n1: ...`), then each node's exit status on stderr; exit 1 if any node failed.
    ///
    /// The words after `--` are joined by blanks and run by a shell on each node, as ssh
    /// runs them: `halo exec -- 'grep halo /var/log/syslog | tail -n 3'`. This node runs
    /// it with `sh -c`; the others through ssh (see `halo config sync --help` for how
    /// nodes are reached). The nodes are those of ha.cf (or halo.toml) in --config-dir.
    #[command(verbatim_doc_comment)]
    Exec {
        #[arg(long, default_value = halo::DEFAULT_CONFIG_DIR)]
        config_dir: PathBuf,
        /// Only this node (repeatable).
        #[arg(long = "node", value_name = "N")]
        nodes: Vec<String>,
        /// Kill a node's command after S seconds and count it failed (for another node
        /// its ssh is killed; a remote command that ignores the closed session may go on).
        #[arg(long, value_name = "S")]
        timeout: Option<f64>,
        #[command(flatten)]
        reach: halo::cmd::exec::ReachArgs,
        /// The command and its arguments.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true, value_name = "CMD")]
        command: Vec<String>,
    },
    /// Write the manual pages (halo.8 and one halo-SUBCOMMAND.8 per subcommand) into DIR,
    /// or print halo.8 without --out (`halo man | man -l -`).
    Man {
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
    /// Print the shell completion script: `halo completions bash > /etc/bash_completion.d/halo`.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(Subcommand)]
enum FenceCmd {
    /// NODE is down: complete its pending fence.
    Confirm { node: String },
}

#[derive(Subcommand)]
enum ConfigCmd {
    /// Print the configuration in the other format: the legacy files as halo.toml (the
    /// default for a legacy directory), or halo.toml as ha.cf, authkeys, haresources and
    /// ldirectord.cf (the default for a halo.toml directory). What the target cannot say is
    /// noted on stderr.
    Convert {
        #[arg(long, default_value = halo::DEFAULT_CONFIG_DIR)]
        config_dir: PathBuf,
        #[arg(long, value_parser = ["toml", "legacy"])]
        to: Option<String>,
        /// Write the files into this directory instead of printing them.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Push the configuration directory to the other nodes of ha.cf over ssh, after
    /// checking it as the daemon would (an invalid one is refused and nothing is sent).
    ///
    /// Each node gets the same files at the same path, with their modes and owners
    /// (authkeys stays 0600); files it has that are not here are removed. nodeinfo and
    /// names starting with '.' or ending with '~' belong to each node and are neither
    /// pushed nor removed. On the far side each file is replaced by rename(2), so no file
    /// is ever half-written; only sh, tar, find, cmp, stat and mv are needed there.
    /// Where something changed and a halo daemon runs (the --socket path exists there),
    /// `halo reload` is run there (halo from its PATH, else /usr/sbin/halo) and what the
    /// daemon applied is shown. A failing node does not stop the others; exit 1 if any
    /// failed.
    ///
    /// How nodes are reached: `ssh -o BatchMode=yes -o ConnectTimeout=10 NODE`, by node
    /// name, so ~/.ssh/config (Host NODE / HostName / User / Port / IdentityFile),
    /// /etc/hosts or DNS say where a node is. `--host NODE=[USER@]ADDRESS` overrides one
    /// node's address, `--ssh-option KEY=VALUE` adds `-o KEY=VALUE` (before halo's own, so
    /// it wins), and HALO_SSH replaces the ssh command (split on blanks), e.g.
    /// HALO_SSH="ssh -F /root/cluster_ssh_config". Key-based login only (BatchMode).
    /// ha.cf's ucast addresses are not used: a ucast line names an address, not whose.
    #[command(verbatim_doc_comment)]
    Sync {
        #[arg(long, default_value = halo::DEFAULT_CONFIG_DIR)]
        config_dir: PathBuf,
        /// Only this node (repeatable).
        #[arg(long = "node", value_name = "N")]
        nodes: Vec<String>,
        /// Show what would change on each node; write nothing.
        #[arg(long)]
        dry_run: bool,
        /// Run `halo reload` on the nodes where something changed and a daemon runs (the
        /// default).
        #[arg(long, overrides_with = "no_reload")]
        reload: bool,
        /// Leave the daemons alone.
        #[arg(long, overrides_with = "reload")]
        no_reload: bool,
        #[command(flatten)]
        reach: halo::cmd::exec::ReachArgs,
    },
}

#[derive(Subcommand)]
enum LvsCmd {
    /// LVS-DR real server (seed 002's lvsdr script): the VIPs on lo, arp_ignore=1 and
    /// arp_announce=2; without --vip, the VIPs of the director groups of haresources and of
    /// ldirectord.cf in --config-dir.
    Realserver {
        #[arg(value_parser = ["start", "stop", "status"])]
        action: String,
        #[arg(long = "vip")]
        vips: Vec<std::net::IpAddr>,
        #[arg(long)]
        interface: Option<String>,
        #[arg(long, default_value = halo::DEFAULT_CONFIG_DIR)]
        config_dir: PathBuf,
        /// Where the values replaced are saved for stop (`lvs-realserver`).
        #[arg(long, default_value = halo::DEFAULT_STATE_DIR)]
        state_dir: PathBuf,
    },
}

fn main() {
    // Called as Heartbeat's tools (a symlink named hb_standby or hb_takeover): same job.
    let mut args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let argv0 = args
        .first()
        .and_then(|a| std::path::Path::new(a).file_name())
        .map(|a| a.to_string_lossy().into_owned());
    if let Some(tool @ ("hb_standby" | "hb_takeover" | "cl_status" | "ResourceManager")) = argv0.as_deref() {
        let sub = match tool {
            "hb_standby" => "standby",
            "hb_takeover" => "takeover",
            "cl_status" => "cl_status",
            _ => "resourcemanager",
        };
        let mut pre: Vec<std::ffi::OsString> = Vec::new();
        // Heartbeat's tools take no socket or directory option: the environment can say.
        if let Some(sock) = std::env::var_os("HALO_SOCKET") {
            pre.extend(["--socket".into(), sock]);
        }
        pre.push(sub.into());
        if let (true, Some(dir)) = (tool == "ResourceManager", std::env::var_os("HALO_CONFIG_DIR")) {
            pre.extend(["--config-dir".into(), dir]);
        }
        args.splice(1..1, pre);
    }
    let cli = Cli::parse_from(args);
    if !matches!(cli.cmd, Cmd::Run { .. }) {
        // A command whose output goes into `head` or `grep -q` should end quietly when the
        // pipe closes, as every Unix tool does. The daemon keeps SIGPIPE ignored (Rust's
        // default): a client hanging up must never kill it.
        // SAFETY: setting a signal disposition before any thread exists.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    let result = match cli.cmd {
        Cmd::Run { config_dir, node, state_dir, http, socket_group } => halo::run::run(halo::run::RunArgs {
            config_dir,
            node,
            state_dir,
            socket: cli.socket,
            socket_group,
            http,
        }),
        Cmd::ClStatus { args } => Ok(halo::cmd::cl_status::main(&cli.socket, &args)),
        Cmd::ResourceManager { config_dir, args } => Ok(halo::cmd::resourcemanager::main(&config_dir, &args)),
        Cmd::Status { json } => halo::cmd::status::status(&cli.socket, json),
        Cmd::Mon { interval } => {
            let secs = if interval.is_finite() { interval.clamp(0.1, 3600.0) } else { 1.0 };
            halo::cmd::mon::mon(&cli.socket, std::time::Duration::from_secs_f64(secs))
        }
        Cmd::Check { config_dir, config_only, node, json } => {
            halo::cmd::check::check(halo::cmd::check::CheckArgs {
                config_dir: &config_dir,
                config_only,
                node: node.as_deref(),
                socket: &cli.socket,
                json,
            })
        }
        Cmd::Config { sub: ConfigCmd::Convert { config_dir, to, out } } => {
            halo::cmd::config::convert(&config_dir, to.as_deref(), out.as_deref())
        }
        Cmd::Config { sub: ConfigCmd::Sync { config_dir, nodes, dry_run, reload: _, no_reload, reach } } => {
            halo::cmd::sync::sync(halo::cmd::sync::SyncArgs {
                config_dir: &config_dir,
                nodes: &nodes,
                dry_run,
                reload: !no_reload,
                socket: &cli.socket,
                reach: &reach,
            })
        }
        Cmd::Exec { config_dir, nodes, timeout, reach, command } => {
            halo::cmd::exec::exec(&config_dir, &nodes, timeout, &reach, &command)
        }
        Cmd::Demo => halo::cmd::demo::demo(),
        Cmd::Man { out } => halo::cmd::docs::man(Cli::command(), out.as_deref()),
        Cmd::Completions { shell } => halo::cmd::docs::completions(Cli::command(), shell),
        Cmd::Standby { set } => halo::cmd::status::operator(&cli.socket, &format!("standby {set}")),
        Cmd::Takeover { set } => halo::cmd::status::operator(&cli.socket, &format!("takeover {set}")),
        Cmd::Fence { sub: FenceCmd::Confirm { node } } => {
            halo::cmd::status::operator(&cli.socket, &format!("fence confirm {node}"))
        }
        Cmd::Reload => halo::cmd::reload::reload(&cli.socket),
        Cmd::Cleanup { key } => {
            let cmd = match key {
                Some(k) => format!("cleanup {k}"),
                None => "cleanup".to_string(),
            };
            halo::cmd::status::operator(&cli.socket, &cmd)
        }
        Cmd::Lvs {
            sub: Some(LvsCmd::Realserver { action, vips, interface, config_dir, state_dir }), ..
        } => halo::cmd::lvs::realserver(&action, &vips, interface.as_deref(), &config_dir, &state_dir),
        Cmd::Lvs { sub: None, stats, rate, exact, connection, health, list: _, numeric: _ } => {
            let view = halo::cmd::lvs::View { stats, rate, exact, conn: connection, health };
            halo::cmd::lvs::lvs(&cli.socket, view)
        }
    };
    match result {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("halo: {e:#}");
            std::process::exit(1);
        }
    }
}
