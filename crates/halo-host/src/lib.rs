//! halo-host is where halo touches the machine: on the heartbeat path, the UDP and serial
//! links that carry Heartbeat's packets (`bcast`, `mcast`, `mcast6`, `ucast`, `ucast6`,
//! `serial`, see `spec/heartbeat.md` §1.4 and §3.1), the node's persistent state files
//! (`hb_generation`, `hb_uuid`, §1.6), Heartbeat-style log sinks, and the real-time knobs
//! (`realtime`, `rtprio`, memory locking) of the heartbeat thread; off that path, for worker
//! threads, virtual IP addresses ([`vip`]) and resource agents ([`agents`]).
//!
//! What the heartbeat path calls (`net`, `log`, `state`, `rt`) runs on a latency-critical
//! thread driven by a `poll(2)` loop, so it must never block that thread (sockets and ttys are non-blocking; a full buffer drops a
//! packet and counts it), never panic on an I/O error (errors are values, returned or
//! counted), and never interpret message contents: bytes go out and come in as opaque
//! datagrams or frames — decoding and authentication are halo-wire's job, and deciding what
//! they mean is halo-core's.
//!
//! # Layout
//!
//! * [`net`] — [`Links`]: every configured medium opened, grouped into logical links by
//!   link name (interface, or serial device path), with per-link counters.
//! * [`state`] — [`next_generation`] and [`node_uuid`]: the state files that make a restart
//!   recognisable to peers (a generation that never goes backwards).
//! * [`log`] — [`Logger`]: `logfile`, `debugfile`, syslog and stderr sinks in Heartbeat's
//!   line format.
//! * [`rt`] — [`set_realtime`], [`lock_memory`], [`loadavg`].
//! * [`vip`] — virtual IP addresses for the built-in IPaddr/IPaddr2: findif, add/remove over
//!   netlink, gratuitous ARP / unsolicited NA, LVS-DR loopback handling, address watch.
//!   Blocking: for a worker thread, never the heartbeat thread.
//! * [`agents`] — [`agents::resolve`] and [`agents::run`]: resource scripts (Heartbeat-class,
//!   LSB, OCF) found and called as Heartbeat's ResourceManager does, with timeouts and
//!   process-tree kill; for worker threads only, never the heartbeat thread.
//! * [`fence`] — STONITH devices from ha.cf's `stonith`/`stonith_host` (cluster-glue
//!   `external/NAME` scripts, ssh, ipmitool, meatware, a test device) and
//!   [`fence::fence`], with timeouts; blocking, for worker threads only.
//! * [`group`] — [`GroupExecutor`]: haresources groups started left to right and stopped
//!   right to left over the built-in IPaddr/IPaddr2 and the agents, probes, monitors, and
//!   held VIPs kept announced and put back when removed behind halo's back. Worker threads.

pub mod agents;
mod error;
pub mod fence;
pub mod group;
pub mod log;
pub mod net;
pub mod respawn;
pub mod rt;
pub mod state;
pub mod vip;

#[cfg(test)]
mod testutil;

pub use error::HostError;
pub use group::{GroupEnv, GroupError, GroupExecutor, HeldAddress, ProbeResult, ResourceFailure};
pub use log::{Level, LogConfig, Logger};
pub use net::{LinkSpec, LinkStats, Links};
pub use rt::{loadavg, lock_memory, set_realtime};
pub use state::{next_generation, node_uuid, node_uuid_with_legacy};
