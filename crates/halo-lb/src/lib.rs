//! halo-lb is halo's director, the part that replaces ldirectord and drives LVS: it decides
//! which real server receives each new connection to a virtual service, it will health-check
//! the real servers, and it will make the kernel forward the traffic (nftables, or IPVS where
//! the kernel has it) by reconciling the state it wants against the state the kernel reports.
//!
//! It must never block the caller (scheduling is pure computation over the slice it is given;
//! time is passed in, never read), never panic on anything that comes from configuration, the
//! operator or the network (weights, counters, addresses, scheduler names and flags are all
//! untrusted), never let a table grow without bound because of traffic (every per-client or
//! per-destination table has a cap), and never replay kernel commands blindly: a data plane
//! compares what it wants with what is there and changes only the difference.
//!
//! Layout:
//! * [`alert`]: ldirectord's e-mail alerts (which changes are mailed, when they are mailed
//!   again) and a small SMTP client, and halo's `alertcommand`.
//! * [`scheduler`]: every IPVS scheduler (`rr wrr lc wlc lblc lblcr dh sh sed nq fo ovf mh`) as
//!   deterministic Rust that takes the same decisions as the kernel's `ip_vs_*.c` modules, the
//!   [`Scheduler`] trait they share, [`by_name`] to build one from its ipvsadm name and
//!   flags, and [`Persistence`] (`persistent` + `netmask`: client affinity as IPVS does it).
//! * [`check`]: asynchronous health checks of real servers (ldirectord's check types and
//!   negotiate protocols, each under one total deadline), [`check::spec_for`] to build them
//!   from ldirectord.cf, and [`check::Health`] (rise/fall, last results) per real server.
//! * [`conntrack`]: connection counts per real server (`ActiveConn`/`InActConn`) for the
//!   nftables plane, from a ctnetlink dump of the kernel's connection tracking.
//! * [`ipvsadm`]: a model of the IPVS table and what `ipvsadm` 1.31 prints for it, byte for
//!   byte (`-L -n` and its `--stats`/`--rate`/... views, `-c`, `-S`), as pure functions.
//! * [`dataplane`]: the director's typed desired state (virtual services, real servers,
//!   weights, persistence, NAT or DR) and [`dataplane::NftDataPlane`], which makes one nftables
//!   table match it (reconciled, one atomic transaction, counters per real server), and
//!   [`dataplane::IpvsDataPlane`], which does the same with the kernel's IPVS over generic
//!   netlink where the kernel has it (and reads its table back as the [`ipvsadm`] model).
//! * [`director`]: the director's state without I/O — ldirectord.cf's services, the health
//!   of each real server, and from them the desired state (`quiescent`, `fallback`) and the
//!   IPVS model `halo lvs` prints.

#![deny(unsafe_code)]

pub mod alert;
pub mod check;
pub mod conntrack;
pub mod dataplane;
pub mod director;
pub mod ipvsadm;
pub mod scheduler;

pub use scheduler::{
    by_name, Conn, Dest, Netmask, NetmaskError, Persistence, Scheduler, SchedulerError, SCHEDULERS,
};
