use clap::{Parser, Subcommand};
use std::path::PathBuf;

/// halo: high availability for Linux (Heartbeat 3 compatible).
#[derive(Parser)]
#[command(name = "halo", version, about, long_about = None)]
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
    },
    /// Show the cluster as the local daemon sees it.
    Status {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Validate the configuration (and the host) without starting anything.
    Check {
        #[arg(long, default_value = halo::DEFAULT_CONFIG_DIR)]
        config_dir: PathBuf,
        /// Check the files only, not this host (interfaces, node name).
        #[arg(long)]
        config_only: bool,
        /// Check as this node (default: ha.d/nodeinfo, else `uname -n`).
        #[arg(long)]
        node: Option<String>,
    },
    /// A two-node cluster in network namespaces: both nodes alive, then one dies.
    Demo,
}

fn main() {
    let cli = Cli::parse();
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
        Cmd::Run { config_dir, node, state_dir } => {
            halo::run::run(halo::run::RunArgs { config_dir, node, state_dir, socket: cli.socket })
        }
        Cmd::Status { json } => halo::cmd::status::status(&cli.socket, json),
        Cmd::Check { config_dir, config_only, node } => {
            halo::cmd::check::check(&config_dir, config_only, node.as_deref())
        }
        Cmd::Demo => halo::cmd::demo::demo(),
    };
    match result {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("halo: {e:#}");
            std::process::exit(1);
        }
    }
}
