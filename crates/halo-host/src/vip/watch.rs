//! Noticing address changes made behind halo's back.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};

use super::addr::{info, AddrInfo};
use super::nl;
use super::VipError;

/// An address change reported by [`AddrWatch::drain`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddrEvent {
    /// An address was added, or its state changed (e.g. IPv6 DAD finished): the kernel
    /// reports both as `RTM_NEWADDR`, so this may repeat for one address.
    Added(AddrInfo),
    /// An address was removed (`ip addr del`, NetworkManager, the kernel on link down for
    /// IPv6, the interface deleted).
    Removed(AddrInfo),
    /// Events were lost (the kernel's queue for this socket overflowed, or a message could
    /// not be decoded): check the addresses that matter with [`super::present`].
    Lost {
        /// What happened.
        reason: String,
    },
}

/// A netlink socket subscribed to the IPv4 and IPv6 address groups
/// (`RTNLGRP_IPV4_IFADDR`, `RTNLGRP_IPV6_IFADDR`). It reports every address change in its
/// network namespace (the one of the thread that opened it); the caller picks out the
/// addresses it holds. Put [`AddrWatch::fd`] in a `poll(2)` set and call
/// [`AddrWatch::drain`] when it is readable.
#[derive(Debug)]
pub struct AddrWatch {
    events: nl::Socket,
    /// Looks up interface names, in the watch's namespace whatever thread drains it.
    query: nl::Socket,
}

/// How many datagrams one [`AddrWatch::drain`] reads at most; poll is level-triggered, so a
/// burst longer than this is read on the next round instead of starving the caller.
const MAX_BATCH: usize = 1024;

impl AddrWatch {
    /// Subscribes to address changes.
    pub fn open() -> Result<AddrWatch, VipError> {
        let what = "watch address changes";
        let events = nl::Socket::multicast(nl::RTMGRP_IPV4_IFADDR | nl::RTMGRP_IPV6_IFADDR)
            .map_err(|e| e.context(what))?;
        let query = nl::Socket::request().map_err(|e| e.context(what))?;
        Ok(AddrWatch { events, query })
    }

    /// The descriptor to poll for readability.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.events.as_fd()
    }

    /// Every change queued since the last call, oldest first; never blocks.
    pub fn drain(&mut self) -> Vec<AddrEvent> {
        let mut out = Vec::new();
        for _ in 0..MAX_BATCH {
            let msgs = match self.events.recv() {
                Ok(Some(m)) => m,
                Ok(None) => break,
                Err(nl::NlError::Io { error, .. }) if error.raw_os_error() == Some(libc::ENOBUFS) => {
                    // The socket stays usable after an overrun; the events are gone.
                    out.push(AddrEvent::Lost { reason: "the kernel's event queue overflowed".into() });
                    continue;
                }
                Err(e) => {
                    out.push(AddrEvent::Lost { reason: e.context("read address events").to_string() });
                    break;
                }
            };
            for m in msgs {
                if m.ty != nl::RTM_NEWADDR && m.ty != nl::RTM_DELADDR {
                    continue;
                }
                match nl::parse_addr(&m.body) {
                    Ok(Some(a)) => {
                        let i = info(&mut self.query, &a);
                        out.push(if m.ty == nl::RTM_NEWADDR {
                            AddrEvent::Added(i)
                        } else {
                            AddrEvent::Removed(i)
                        });
                    }
                    Ok(None) => {}
                    Err(reason) => {
                        out.push(AddrEvent::Lost { reason: format!("undecodable address event: {reason}") })
                    }
                }
            }
        }
        out
    }
}

impl AsFd for AddrWatch {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.events.as_fd()
    }
}

impl AsRawFd for AddrWatch {
    fn as_raw_fd(&self) -> RawFd {
        self.events.as_fd().as_raw_fd()
    }
}
