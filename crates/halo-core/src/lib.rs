//! halo-core is the brain of halo, written sans-I/O: it never reads a socket, a file or a
//! clock. The runtime feeds an [`Engine`] with [`Event`]s (a message heard on a link, a
//! tick) stamped with the current time, and carries out the [`Action`]s it returns (send
//! this message, log this line). Membership and liveness live here today — keepalive,
//! warntime, deadtime, initdead, generations, sequence numbers, retransmission, the
//! `reqnodes`/`repnodes` exchange — exactly as Heartbeat 3.0.6 does them on the wire, so
//! the same code drives a real daemon and a deterministic simulator.
//!
//! It must never do I/O, read the time, spawn threads, or panic on anything a peer sends.
//!
//! Layout:
//! * [`engine`]: the [`Engine`], its configuration, events and actions.
//! * [`seqtrack`]: per-peer sequence and generation tracking (duplicates, gaps, replays).
//! * [`history`]: the sent-message history that answers `NS_rexmit`.
//! * [`status`]: the snapshot the control socket and status views show.

pub mod engine;
pub mod history;
pub mod resources;
pub mod seqtrack;
pub mod status;

pub use engine::{Action, CoreConfig, Engine, Event, FencingConfig, Level, NoQuorumPolicy, NodeState, Now};
pub use resources::{
    CloneConfig, CloneStatus, ColocationConfig, FenceStatus, GroupConfig, GroupState, GroupStatus,
    OperatorCmd, OrderConfig, ResourceStatus, RscSet,
};
pub use status::{ClusterStatus, LinkStatus, NodeStatus, QuorumStatus};
