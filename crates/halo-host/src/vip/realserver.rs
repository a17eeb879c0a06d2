//! The real-server side of an LVS-DR cluster (`spec/heartbeat.md` §6, the `lvsdr` init
//! script of seed 002), without a shell: each virtual IP sits on `lo` as a host address
//! (/32, /128) so the real server accepts the packets the director forwards to it unchanged,
//! and the ARP sysctls keep the host from answering ARP for it — otherwise it would fight the
//! director for the VIP.
//!
//! * [`start`] sets `arp_ignore=1` (answer only for addresses configured on the receiving
//!   interface) and `arp_announce=2` (never use a non-primary address as an ARP source) on
//!   `all` and on the interface that carries each IPv4 VIP's subnet (the given one, else
//!   findif's choice; none when no connected route covers the VIP — `all` alone does it,
//!   since the kernel takes the larger of `all` and the interface for both sysctls), *then*
//!   puts the VIPs on `lo` (the seed's order: ARP settings before the address). The values
//!   it replaces are written first to a state file, so that
//! * [`stop`] can take the VIPs off `lo` and write those values back exactly (the script
//!   wrote 0, whatever was there before), and
//! * [`status`] reports each VIP (on `lo`, or held on a NIC because this host is the active
//!   director right now — IPaddr2's `lvs_support` moved it there) and the sysctls, and
//!   whether the host is correctly configured.
//!
//! IPv6 VIPs only go on `lo`: there is no ARP, and Linux answers neighbour solicitations only
//! for addresses configured on the interface they arrive on. A VIP goes on `lo` even when a
//! NIC holds it too (an active director): when IPaddr2 later gives the VIP up, the host is a
//! real server again without further ado. Broadcast is left unset (`lvsdr`'s `brd
//! 255.255.255.255` on a /32 only adds a broadcast route to `lo`), and no label is given.
//!
//! `start` and `stop` are idempotent. A second `start` keeps the values saved by the first
//! (the originals), adding only interfaces and VIPs it did not know; a VIP that was on `lo`
//! before the first `start` is recorded as such and `stop` leaves it there; `stop` without a
//! state file still takes the given VIPs off `lo` but cannot know what the sysctls were, so it
//! leaves them. Sysctls are written to `/proc/sys/net/ipv4/conf/<iface>/` directly, in the
//! calling thread's network namespace like everything in [`crate::vip`].
//!
//! State file: text, one fact per line, `#` comments:
//! ```text
//! sysctl all arp_ignore 0
//! sysctl eth0 arp_announce 0
//! vip 192.0.2.80 added
//! vip 192.0.2.81 kept
//! ```

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use super::addr::get_link;
use super::nl::{self, Request};
use super::spec::check_iface;
use super::{add, remove, resolve, Resolved, VipError, VipSpec};

/// Where the per-interface IPv4 sysctls live.
pub const CONF_DIR: &str = "/proc/sys/net/ipv4/conf";

/// A conventional place for the state file.
pub const DEFAULT_STATE_FILE: &str = "/var/lib/halo/lvs-realserver";

/// The sysctls set, and the values they are set to.
pub const ARP_SETTINGS: [(&str, i32); 2] = [("arp_ignore", 1), ("arp_announce", 2)];

const LOOPBACK: &str = "lo";

/// Why a real-server operation failed.
#[derive(Debug, thiserror::Error)]
pub enum RealServerError {
    /// Resolving, adding or removing a VIP failed.
    #[error(transparent)]
    Vip(#[from] VipError),
    /// Reading or writing a sysctl or the state file failed.
    #[error("{}: {what}: {error}", .path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What was being done (`read`, `write`, ...).
        what: &'static str,
        /// The error.
        error: io::Error,
    },
    /// A sysctl file held something other than an integer.
    #[error("{}: expected an integer, found {found:?}", .path.display())]
    Sysctl {
        /// The sysctl file.
        path: PathBuf,
        /// What it held.
        found: String,
    },
    /// A line of the state file could not be read.
    #[error("{}:{line}: {expected}", .path.display())]
    State {
        /// The state file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What was expected there.
        expected: String,
    },
}

/// One VIP as [`status`] finds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VipState {
    /// The address.
    pub addr: IpAddr,
    /// It is on `lo` as a host address (/32, /128).
    pub on_loopback: bool,
    /// A non-loopback interface that holds it too (this host is the active director).
    pub held_on: Option<String>,
    /// The interface whose ARP settings matter for it (IPv4 only; `None` when no connected
    /// route covers it, and then `all` alone decides).
    pub arp_iface: Option<String>,
}

/// The ARP sysctls of one interface (`all` included); `None` when the interface has no
/// `/proc/sys/net/ipv4/conf` entry (gone).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArpSysctls {
    /// Interface name, or `all`.
    pub iface: String,
    /// `arp_ignore`.
    pub arp_ignore: Option<i32>,
    /// `arp_announce`.
    pub arp_announce: Option<i32>,
}

/// What [`status`] reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RealServerStatus {
    /// Each VIP asked about, in the order given.
    pub vips: Vec<VipState>,
    /// `all` first, then each interface some IPv4 VIP's ARP depends on.
    pub arp: Vec<ArpSysctls>,
    /// A state file exists: [`start`] ran and [`stop`] has not.
    pub started: bool,
}

impl RealServerStatus {
    /// What is wrong, one sentence per problem; empty when the host is a correctly
    /// configured real server for every VIP.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        let get = |iface: &str| self.arp.iter().find(|a| a.iface == iface);
        for v in &self.vips {
            if !v.on_loopback && v.held_on.is_none() {
                out.push(format!("{} is not on {LOOPBACK}", v.addr));
            }
            if v.addr.is_ipv6() {
                continue;
            }
            let all = get("all");
            let dev = v.arp_iface.as_deref().and_then(get);
            // The kernel uses the larger of `all` and the interface's value for both.
            let eff = |f: fn(&ArpSysctls) -> Option<i32>| {
                [all.and_then(f), dev.and_then(f)].into_iter().flatten().max()
            };
            let on = v.arp_iface.as_deref().unwrap_or("all");
            match eff(|a| a.arp_ignore) {
                Some(1 | 2 | 8) => {}
                e => out.push(format!(
                    "{}: arp_ignore on {on} is {}, so this host answers ARP for it (want 1)",
                    v.addr,
                    e.map_or("unknown".to_string(), |e| e.to_string())
                )),
            }
            match eff(|a| a.arp_announce) {
                Some(2) => {}
                e => out.push(format!(
                    "{}: arp_announce on {on} is {}, so it can be announced as an ARP source (want 2)",
                    v.addr,
                    e.map_or("unknown".to_string(), |e| e.to_string())
                )),
            }
        }
        out
    }

    /// Every VIP is on `lo` (or held by this host as the director) and ARP is quiet about
    /// the IPv4 ones.
    pub fn configured(&self) -> bool {
        self.problems().is_empty()
    }
}

/// Makes this host an LVS-DR real server for `vips`; `iface` is the interface facing the
/// director (default: for each VIP, the one whose connected route covers it). The previous
/// sysctl values go to `state_file` first. See the module documentation.
pub fn start(vips: &[IpAddr], iface: Option<&str>, state_file: &Path) -> Result<(), RealServerError> {
    start_in(Path::new(CONF_DIR), vips, iface, state_file)
}

/// Undoes [`start`]: the VIPs leave `lo` (except those that were there before), then the
/// sysctls get their saved values back and the state file is removed.
pub fn stop(vips: &[IpAddr], iface: Option<&str>, state_file: &Path) -> Result<(), RealServerError> {
    stop_in(Path::new(CONF_DIR), vips, iface, state_file)
}

/// Where the VIPs are and what the ARP sysctls say.
pub fn status(
    vips: &[IpAddr],
    iface: Option<&str>,
    state_file: &Path,
) -> Result<RealServerStatus, RealServerError> {
    let conf = Path::new(CONF_DIR);
    let mut states = Vec::new();
    for &addr in vips {
        let arp_iface = if addr.is_ipv4() { arp_iface_of(conf, addr, iface)? } else { None };
        let (on_loopback, held_on) = whereabouts(addr)?;
        states.push(VipState { addr, on_loopback, held_on, arp_iface });
    }
    let mut arp = Vec::new();
    for i in std::iter::once("all".to_string()).chain(arp_ifaces(&states)) {
        arp.push(ArpSysctls {
            arp_ignore: read_sysctl_if_present(conf, &i, "arp_ignore")?,
            arp_announce: read_sysctl_if_present(conf, &i, "arp_announce")?,
            iface: i,
        });
    }
    Ok(RealServerStatus { vips: states, arp, started: state_file.exists() })
}

fn start_in(
    conf: &Path,
    vips: &[IpAddr],
    iface: Option<&str>,
    state_file: &Path,
) -> Result<(), RealServerError> {
    let mut targets = Vec::new();
    for &addr in vips {
        let arp_iface = if addr.is_ipv4() { arp_iface_of(conf, addr, iface)? } else { None };
        targets.push((addr, arp_iface, loopback_address(addr)?));
    }
    let mut state = State::load(state_file)?.unwrap_or_default();

    // 1. Remember what is there now (the first start's values win), before changing it.
    let mut ifaces = vec!["all".to_string()];
    for (_, i, _) in &targets {
        if let Some(i) = i {
            if !ifaces.contains(i) {
                ifaces.push(i.clone());
            }
        }
    }
    for i in &ifaces {
        for (name, _) in ARP_SETTINGS {
            if state.saved(i, name).is_none() {
                let v = read_sysctl(conf, i, name)?;
                state.sysctls.push((i.clone(), name.to_string(), v));
            }
        }
    }
    for (addr, _, _) in &targets {
        if state.vip(*addr).is_none() {
            let kept = whereabouts(*addr)?.0;
            state.vips.push((*addr, kept));
        }
    }
    state.store(state_file)?;

    // 2. Quiet ARP, then 3. the VIPs on lo.
    for i in &ifaces {
        for (name, value) in ARP_SETTINGS {
            write_sysctl(conf, i, name, value)?;
        }
    }
    for (_, _, lo) in &targets {
        add(lo)?;
    }
    Ok(())
}

fn stop_in(
    conf: &Path,
    vips: &[IpAddr],
    _iface: Option<&str>,
    state_file: &Path,
) -> Result<(), RealServerError> {
    let state = State::load(state_file)?;
    let state_ref = state.as_ref();
    let mut to_remove: Vec<IpAddr> = Vec::new();
    let recorded = state_ref.map(|s| s.vips.iter().filter(|(_, kept)| !kept).map(|(a, _)| *a));
    for addr in vips.iter().copied().chain(recorded.into_iter().flatten()) {
        let kept = state_ref.and_then(|s| s.vip(addr)).unwrap_or(false);
        if !kept && !to_remove.contains(&addr) {
            to_remove.push(addr);
        }
    }
    for addr in to_remove {
        remove(&loopback_address(addr)?)?;
    }
    if let Some(s) = &state {
        for (i, name, value) in &s.sysctls {
            // An interface that is gone has nothing left to restore.
            if conf.join(i).is_dir() {
                write_sysctl(conf, i, name, *value)?;
            }
        }
    }
    match fs::remove_file(state_file) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(RealServerError::Io { path: state_file.to_path_buf(), what: "remove", error }),
    }
}

/// The distinct interfaces (besides `all`) the VIPs' ARP depends on, in order.
fn arp_ifaces(states: &[VipState]) -> Vec<String> {
    let mut seen = BTreeSet::new();
    states.iter().filter_map(|v| v.arp_iface.clone()).filter(|i| seen.insert(i.clone())).collect()
}

/// The interface whose ARP matters for `addr`: the given one (which must exist), else the one
/// findif picks; none when no connected route covers it or it is a loopback address.
fn arp_iface_of(conf: &Path, addr: IpAddr, iface: Option<&str>) -> Result<Option<String>, RealServerError> {
    if let Some(i) = iface {
        check_iface(i)
            .map_err(|reason| VipError::Unsupported { what: format!("interface {i:?}"), reason })?;
        if !conf.join(i).is_dir() {
            return Err(VipError::NoSuchInterface { iface: i.to_string() }.into());
        }
        return Ok(Some(i.to_string()));
    }
    let spec = VipSpec { addr, prefix: None, iface: None, label: None, broadcast: None };
    match resolve(&spec) {
        Ok(r) if r.iface == LOOPBACK => Ok(None),
        Ok(r) => Ok(Some(r.iface)),
        Err(VipError::NoRoute { .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// `addr` as a host address on `lo`.
fn loopback_address(addr: IpAddr) -> Result<Resolved, VipError> {
    let host = if addr.is_ipv4() { 32 } else { 128 };
    let spec =
        VipSpec { addr, prefix: Some(host), iface: Some(LOOPBACK.to_string()), label: None, broadcast: None };
    let mut r = resolve(&spec)?;
    r.broadcast = None;
    Ok(r)
}

/// Is `addr` on a loopback interface as a host address, and which non-loopback interface
/// (if any) holds it.
fn whereabouts(addr: IpAddr) -> Result<(bool, Option<String>), VipError> {
    let what = format!("look for {addr}");
    let family = nl::family_of(addr);
    let host = if addr.is_ipv4() { 32 } else { 128 };
    let mut s = nl::Socket::request().map_err(|e| e.context(what.clone()))?;
    let msgs = s
        .dump(Request::new(nl::RTM_GETADDR, 0, &nl::ifaddrmsg(family, 0, 0, 0, 0)))
        .map_err(|e| e.context(what.clone()))?;
    let mut found = Vec::new();
    for m in msgs.iter().filter(|m| m.ty == nl::RTM_NEWADDR) {
        match nl::parse_addr(&m.body) {
            Ok(Some(a)) if a.addr == addr => found.push(a),
            Ok(_) => {}
            Err(reason) => return Err(VipError::Malformed { what, reason }),
        }
    }
    let (mut on_lo, mut held) = (false, None);
    for a in found {
        let link = get_link(&mut s, a.ifindex).map_err(|e| e.context(what.clone()))?;
        if link.flags & nl::IFF_LOOPBACK != 0 {
            on_lo |= a.prefix == host;
        } else if held.is_none() {
            held = Some(link.name.unwrap_or_else(|| format!("if{}", a.ifindex)));
        }
    }
    Ok((on_lo, held))
}

fn sysctl_path(conf: &Path, iface: &str, name: &str) -> PathBuf {
    conf.join(iface).join(name)
}

fn read_sysctl(conf: &Path, iface: &str, name: &str) -> Result<i32, RealServerError> {
    let path = sysctl_path(conf, iface, name);
    let text = fs::read_to_string(&path).map_err(|error| RealServerError::Io {
        path: path.clone(),
        what: "read",
        error,
    })?;
    text.trim().parse().map_err(|_| RealServerError::Sysctl { path, found: text.trim().to_string() })
}

fn read_sysctl_if_present(conf: &Path, iface: &str, name: &str) -> Result<Option<i32>, RealServerError> {
    if !conf.join(iface).is_dir() {
        return Ok(None);
    }
    read_sysctl(conf, iface, name).map(Some)
}

fn write_sysctl(conf: &Path, iface: &str, name: &str, value: i32) -> Result<(), RealServerError> {
    let path = sysctl_path(conf, iface, name);
    fs::write(&path, format!("{value}\n")).map_err(|error| RealServerError::Io { path, what: "write", error })
}

/// What the state file records.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct State {
    /// (interface, sysctl, value before start), in the order saved.
    sysctls: Vec<(String, String, i32)>,
    /// (VIP, it was on lo before start).
    vips: Vec<(IpAddr, bool)>,
}

impl State {
    fn saved(&self, iface: &str, name: &str) -> Option<i32> {
        self.sysctls.iter().find(|(i, n, _)| i == iface && n == name).map(|(_, _, v)| *v)
    }

    fn vip(&self, addr: IpAddr) -> Option<bool> {
        self.vips.iter().find(|(a, _)| *a == addr).map(|(_, k)| *k)
    }

    fn format(&self) -> String {
        let mut out = String::from("# halo LVS-DR real server: values before `start`, restored by `stop`\n");
        for (i, n, v) in &self.sysctls {
            out.push_str(&format!("sysctl {i} {n} {v}\n"));
        }
        for (a, kept) in &self.vips {
            out.push_str(&format!("vip {a} {}\n", if *kept { "kept" } else { "added" }));
        }
        out
    }

    fn parse(text: &str, path: &Path) -> Result<State, RealServerError> {
        let mut st = State::default();
        for (n, line) in text.lines().enumerate() {
            let bad = |expected: &str| RealServerError::State {
                path: path.to_path_buf(),
                line: n + 1,
                expected: expected.to_string(),
            };
            let words: Vec<&str> = line.split_whitespace().collect();
            match words.as_slice() {
                [] => {}
                [w, ..] if w.starts_with('#') => {}
                ["sysctl", iface, name, value] => {
                    if check_iface(iface).is_err() && *iface != "all" {
                        return Err(bad("an interface name after `sysctl`"));
                    }
                    if !ARP_SETTINGS.iter().any(|(s, _)| s == name) {
                        return Err(bad("arp_ignore or arp_announce"));
                    }
                    let v = value.parse().map_err(|_| bad("an integer sysctl value"))?;
                    st.sysctls.push((iface.to_string(), name.to_string(), v));
                }
                ["vip", addr, how] => {
                    let a = addr.parse().map_err(|_| bad("an IP address after `vip`"))?;
                    let kept = match *how {
                        "kept" => true,
                        "added" => false,
                        _ => return Err(bad("`added` or `kept` after the address")),
                    };
                    st.vips.push((a, kept));
                }
                _ => return Err(bad("`sysctl IFACE NAME VALUE` or `vip ADDRESS added|kept`")),
            }
        }
        Ok(st)
    }

    fn load(path: &Path) -> Result<Option<State>, RealServerError> {
        match fs::read_to_string(path) {
            Ok(text) => State::parse(&text, path).map(Some),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(RealServerError::Io { path: path.to_path_buf(), what: "read", error }),
        }
    }

    /// Written to a temporary file then renamed, so a crash leaves the old or the new state,
    /// never half of one.
    fn store(&self, path: &Path) -> Result<(), RealServerError> {
        let io_err = |what, error| RealServerError::Io { path: path.to_path_buf(), what, error };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::create_dir_all(dir).map_err(|e| io_err("create the directory of", e))?;
        }
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        fs::write(&tmp, self.format()).map_err(|e| io_err("write", e))?;
        fs::rename(&tmp, path).map_err(|e| io_err("rename into place", e))
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};
    use std::process::Command;

    use super::*;
    use crate::testutil::{dual_stack_veth as setup, Netns, TempDir};

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn realserver_state_file_round_trip_and_errors() {
        let st = State {
            sysctls: vec![("all".into(), "arp_ignore".into(), 0), ("eth0".into(), "arp_announce".into(), -1)],
            vips: vec![(ip("192.0.2.80"), false), (ip("2001:db8::80"), true)],
        };
        let text = st.format();
        assert_eq!(
            text,
            "# halo LVS-DR real server: values before `start`, restored by `stop`\n\
             sysctl all arp_ignore 0\nsysctl eth0 arp_announce -1\n\
             vip 192.0.2.80 added\nvip 2001:db8::80 kept\n"
        );
        let p = Path::new("/var/lib/halo/lvs-realserver");
        assert_eq!(State::parse(&text, p).expect("parse"), st);
        for (bad, line, want) in [
            ("sysctl all arp_ignore one\n", 1, "an integer"),
            ("\n# c\nsysctl all rp_filter 1\n", 3, "arp_ignore or arp_announce"),
            ("sysctl ../x arp_ignore 1\n", 1, "an interface name"),
            ("vip 300.1.1.1 added\n", 1, "an IP address"),
            ("vip 192.0.2.1 maybe\n", 1, "`added` or `kept`"),
            ("hello\n", 1, "`sysctl IFACE NAME VALUE`"),
        ] {
            let e = State::parse(bad, p).expect_err(bad);
            let msg = e.to_string();
            assert!(msg.starts_with(&format!("/var/lib/halo/lvs-realserver:{line}: ")), "{msg}");
            assert!(msg.contains(want), "{msg}");
        }
    }

    #[test]
    fn realserver_sysctls_on_a_fake_conf_dir() {
        // Without VIPs, start and stop only touch `all`: the sysctl and state-file logic,
        // checked on an ordinary directory standing in for /proc/sys/net/ipv4/conf.
        let tmp = TempDir::new("realserver-conf");
        let conf = tmp.0.join("conf");
        for i in ["all", "eth0"] {
            fs::create_dir_all(conf.join(i)).expect("mkdir");
            fs::write(conf.join(i).join("arp_ignore"), "3\n").expect("write");
            fs::write(conf.join(i).join("arp_announce"), "1\n").expect("write");
        }
        let state = tmp.0.join("sub/dir/state");
        start_in(&conf, &[], None, &state).expect("start");
        let read = |i: &str, n: &str| read_sysctl(&conf, i, n).expect("read");
        assert_eq!((read("all", "arp_ignore"), read("all", "arp_announce")), (1, 2));
        assert_eq!((read("eth0", "arp_ignore"), read("eth0", "arp_announce")), (3, 1), "not asked for");
        start_in(&conf, &[], None, &state).expect("start again");
        let saved = State::load(&state).expect("load").expect("state");
        assert_eq!(saved.saved("all", "arp_ignore"), Some(3), "the first start's values are kept");
        assert_eq!(saved.saved("all", "arp_announce"), Some(1));
        stop_in(&conf, &[], None, &state).expect("stop");
        assert_eq!((read("all", "arp_ignore"), read("all", "arp_announce")), (3, 1));
        assert!(!state.exists());
        stop_in(&conf, &[], None, &state).expect("stop again");

        fs::write(conf.join("all").join("arp_ignore"), "x\n").expect("write");
        let e = start_in(&conf, &[], None, &state).expect_err("not a number");
        assert!(matches!(e, RealServerError::Sysctl { .. }), "{e}");
        let e = arp_iface_of(&conf, ip("192.0.2.1"), Some("nope0")).expect_err("no such interface");
        assert!(matches!(e, RealServerError::Vip(VipError::NoSuchInterface { .. })), "{e}");
        let e = arp_iface_of(&conf, ip("192.0.2.1"), Some("../all")).expect_err("bad name");
        assert!(matches!(e, RealServerError::Vip(VipError::Unsupported { .. })), "{e}");
    }

    #[test]
    fn realserver_problems() {
        let arp = |iface: &str, ig, an| ArpSysctls { iface: iface.into(), arp_ignore: ig, arp_announce: an };
        let vip = |a: &str, lo, held: Option<&str>, i: Option<&str>| VipState {
            addr: ip(a),
            on_loopback: lo,
            held_on: held.map(String::from),
            arp_iface: i.map(String::from),
        };
        let good = RealServerStatus {
            vips: vec![vip("192.0.2.80", true, None, Some("eth0")), vip("2001:db8::80", true, None, None)],
            arp: vec![arp("all", Some(0), Some(0)), arp("eth0", Some(1), Some(2))],
            started: true,
        };
        assert!(good.configured(), "{:?}", good.problems());
        // `all` alone is enough: the kernel takes the larger value.
        let via_all = RealServerStatus {
            arp: vec![arp("all", Some(1), Some(2)), arp("eth0", Some(0), Some(0))],
            ..good.clone()
        };
        assert!(via_all.configured(), "{:?}", via_all.problems());
        // The active director holds the VIP on its NIC: fine.
        let director = RealServerStatus {
            vips: vec![vip("192.0.2.80", false, Some("eth0"), Some("eth0"))],
            ..good.clone()
        };
        assert!(director.configured(), "{:?}", director.problems());
        let bad = RealServerStatus {
            vips: vec![vip("192.0.2.80", false, None, Some("eth0")), vip("2001:db8::80", false, None, None)],
            arp: vec![arp("all", Some(0), Some(1)), arp("eth0", Some(3), Some(0))],
            started: false,
        };
        assert_eq!(
            bad.problems(),
            [
                "192.0.2.80 is not on lo",
                "192.0.2.80: arp_ignore on eth0 is 3, so this host answers ARP for it (want 1)",
                "192.0.2.80: arp_announce on eth0 is 1, so it can be announced as an ARP source (want 2)",
                "2001:db8::80 is not on lo",
            ]
        );
    }

    fn lo_addrs(ns: &Netns) -> String {
        ns.run(|| {
            let out = Command::new("ip").args(["addr", "show", "dev", "lo"]).output().expect("run ip");
            String::from_utf8_lossy(&out.stdout).into_owned()
        })
    }

    /// (arp_ignore, arp_announce) of `iface` in the namespace.
    fn arp(ns: &Netns, iface: &'static str) -> (i32, i32) {
        ns.run(move || {
            let conf = Path::new(CONF_DIR);
            (
                read_sysctl(conf, iface, "arp_ignore").expect("read"),
                read_sysctl(conf, iface, "arp_announce").expect("read"),
            )
        })
    }

    fn set_arp(ns: &Netns, iface: &'static str, ignore: i32, announce: i32) {
        ns.run(move || {
            let conf = Path::new(CONF_DIR);
            write_sysctl(conf, iface, "arp_ignore", ignore).expect("write");
            write_sysctl(conf, iface, "arp_announce", announce).expect("write");
        })
    }

    #[test]
    fn realserver_start_stop_status_in_a_netns() {
        let Some(ns) = setup("realserver_start_stop_status_in_a_netns") else { return };
        let tmp = TempDir::new("realserver");
        let state = tmp.0.join("lvs-realserver");
        let vips = vec![
            IpAddr::V4(Ipv4Addr::new(192, 0, 2, 80)),
            IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0x77, 0, 0, 0, 0, 0x80)),
        ];
        // Non-default values, to prove stop puts back what was there.
        set_arp(&ns, "all", 3, 1);
        set_arp(&ns, "hv0", 2, 1);
        let hv1_before = arp(&ns, "hv1");

        let run_status = |ns: &Netns| {
            let (v, s) = (vips.clone(), state.clone());
            ns.run(move || status(&v, None, &s).expect("status"))
        };
        let before = run_status(&ns);
        assert!(!before.configured() && !before.started);
        assert!(before.vips.iter().all(|v| !v.on_loopback && v.held_on.is_none()), "{before:?}");
        assert_eq!(before.vips[0].arp_iface.as_deref(), Some("hv0"), "findif's interface");
        assert_eq!(before.vips[1].arp_iface, None, "no ARP for IPv6");

        for round in 0..2 {
            let (v, s) = (vips.clone(), state.clone());
            ns.run(move || start(&v, None, &s)).expect("start");
            let lo = lo_addrs(&ns);
            assert!(lo.contains("inet 192.0.2.80/32 scope global lo"), "round {round}: {lo}");
            assert!(lo.contains("inet6 2001:db8:77::80/128 scope global"), "round {round}: {lo}");
            assert_eq!(arp(&ns, "all"), (1, 2));
            assert_eq!(arp(&ns, "hv0"), (1, 2));
            assert_eq!(arp(&ns, "hv1"), hv1_before, "not the VIP's interface");
            let st = run_status(&ns);
            assert!(st.configured(), "round {round}: {:?}", st.problems());
            assert!(st.started && st.vips.iter().all(|v| v.on_loopback && v.held_on.is_none()), "{st:?}");
            assert_eq!(
                st.arp,
                [
                    ArpSysctls { iface: "all".into(), arp_ignore: Some(1), arp_announce: Some(2) },
                    ArpSysctls { iface: "hv0".into(), arp_ignore: Some(1), arp_announce: Some(2) },
                ]
            );
        }
        let saved = fs::read_to_string(&state).expect("state file");
        assert!(
            saved.contains("sysctl all arp_ignore 3\n") && saved.contains("sysctl hv0 arp_ignore 2\n"),
            "{saved}"
        );

        // This host becomes the director: IPaddr2 moves the VIP from lo to the NIC.
        ns.ip("addr del 192.0.2.80/32 dev lo").expect("take from lo");
        ns.ip("addr add 192.0.2.80/24 dev hv0").expect("put on hv0");
        let st = run_status(&ns);
        assert_eq!((st.vips[0].on_loopback, st.vips[0].held_on.as_deref()), (false, Some("hv0")));
        assert!(st.configured(), "{:?}", st.problems());
        ns.ip("addr del 192.0.2.80/24 dev hv0").expect("give up");
        ns.ip("addr add 192.0.2.80/32 dev lo").expect("back on lo");

        for round in 0..2 {
            let (v, s) = (vips.clone(), state.clone());
            ns.run(move || stop(&v, None, &s)).expect("stop");
            let lo = lo_addrs(&ns);
            assert!(!lo.contains("192.0.2.80") && !lo.contains("2001:db8:77::80"), "round {round}: {lo}");
            assert_eq!(arp(&ns, "all"), (3, 1), "round {round}");
            assert_eq!(arp(&ns, "hv0"), (2, 1), "round {round}");
            assert!(!state.exists());
        }
        let after = run_status(&ns);
        assert!(!after.configured() && !after.started, "{after:?}");
    }

    #[test]
    fn realserver_given_interface_unrouted_vip_and_kept_addresses() {
        let Some(ns) = setup("realserver_given_interface_unrouted_vip_and_kept_addresses") else { return };
        let tmp = TempDir::new("realserver-iface");
        let state = tmp.0.join("state");
        set_arp(&ns, "all", 0, 0);
        set_arp(&ns, "hv0", 0, 0);
        set_arp(&ns, "hv1", 0, 0);
        // 192.0.2.81 is on lo before start (an operator's, or the old lvsdr script's): stop
        // must leave it.
        ns.ip("addr add 192.0.2.81/32 dev lo").expect("pre-existing");

        let vips = vec![ip("192.0.2.80"), ip("192.0.2.81")];
        let (v, s) = (vips.clone(), state.clone());
        ns.run(move || start(&v, Some("hv1"), &s)).expect("start on hv1");
        assert_eq!((arp(&ns, "all"), arp(&ns, "hv1"), arp(&ns, "hv0")), ((1, 2), (1, 2), (0, 0)));
        let (v, s) = (vips.clone(), state.clone());
        let st = ns.run(move || status(&v, Some("hv1"), &s)).expect("status");
        assert!(st.configured(), "{:?}", st.problems());
        let (v, s) = (vips.clone(), state.clone());
        ns.run(move || stop(&v, Some("hv1"), &s)).expect("stop");
        let lo = lo_addrs(&ns);
        assert!(!lo.contains("192.0.2.80/32") && lo.contains("192.0.2.81/32"), "{lo}");
        assert_eq!((arp(&ns, "all"), arp(&ns, "hv1")), ((0, 0), (0, 0)));

        // No connected route covers 198.51.100.7: only `all` is set.
        let (v, s) = (vec![ip("198.51.100.7")], state.clone());
        ns.run(move || start(&v, None, &s)).expect("start unrouted");
        assert_eq!((arp(&ns, "all"), arp(&ns, "hv0"), arp(&ns, "hv1")), ((1, 2), (0, 0), (0, 0)));
        let (v, s) = (vec![ip("198.51.100.7")], state.clone());
        let st = ns.run(move || status(&v, None, &s)).expect("status");
        assert!(st.configured() && st.vips[0].arp_iface.is_none(), "{st:?}");
        let (v, s) = (vec![ip("198.51.100.7")], state.clone());
        ns.run(move || stop(&v, None, &s)).expect("stop unrouted");
        assert_eq!(arp(&ns, "all"), (0, 0));
        assert!(!lo_addrs(&ns).contains("198.51.100.7"));

        // A missing interface is refused before anything changes.
        let (v, s) = (vec![ip("192.0.2.80")], state.clone());
        let e = ns
            .run(move || start(&v, Some("nope0"), &s).map_err(|e| e.to_string()))
            .expect_err("no such iface");
        assert!(e.contains("nope0"), "{e}");
        assert!(!state.exists());
        assert!(!lo_addrs(&ns).contains("192.0.2.80"));
    }
}
