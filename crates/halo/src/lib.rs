//! The halo binary's library: the daemon runtime (`run`), the control socket (`control`),
//! the operator commands (`cmd`) and the network-namespace testbed used by `halo demo`
//! and the end-to-end tests. It wires halo-config, halo-wire, halo-core and halo-host
//! together and owns every thread; nothing below it knows about the others.
//!
//! The heartbeat path (receive, engine, send) runs on one thread driven by poll(2), at
//! real-time priority with memory locked; the control socket is served by another thread
//! that only asks it for snapshots, so no operator can block a heartbeat.

pub mod cmd;
pub mod control;
pub mod director;
pub mod dirsync;
pub mod fence;
pub mod hooks;
pub mod http;
pub mod notify;
pub mod rsc;
pub mod run;
pub mod supervise;
pub mod testbed;

pub const DEFAULT_CONFIG_DIR: &str = "/etc/ha.d";
pub const DEFAULT_STATE_DIR: &str = "/var/lib/halo";
pub const DEFAULT_SOCKET: &str = "/run/halo/halo.sock";
