//! Helpers for tests that need root, private network namespaces or scratch directories.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{self, AddressFamily, LinkAddr, SockFlag, SockProtocol, SockType, SockaddrLike};

/// Called when a test cannot do its job on this machine: fails the test when
/// `HALO_REQUIRE_ROOT=1` (CI as root must really run it), otherwise prints a note so the
/// caller can return.
pub fn skip(test: &str, why: &str) {
    if std::env::var("HALO_REQUIRE_ROOT").as_deref() == Ok("1") {
        panic!("{test}: {why} (HALO_REQUIRE_ROOT=1)");
    }
    eprintln!("note: {test} skipped: {why}");
}

/// True when running as root; otherwise [`skip`]s and returns false.
pub fn require_root(test: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        true
    } else {
        skip(test, "needs root");
        false
    }
}

/// A fresh, empty scratch directory (removed by [`TempDir`]'s drop).
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("halo-host-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("create temp dir");
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A UDP port that was free a moment ago on 127.0.0.1.
pub fn free_udp_port() -> u16 {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind probe socket");
    s.local_addr().expect("local addr").port()
}

type Job = Box<dyn FnOnce() + Send>;

/// A thread living in its own private network namespace (`unshare(CLONE_NEWNET)` affects
/// only the calling thread), so tests can create interfaces without touching the host.
/// Sockets created by [`Netns::run`] stay in that namespace wherever they are used later;
/// commands run by [`Netns::ip`] are spawned from that thread and so inherit it.
pub struct Netns {
    jobs: Option<mpsc::Sender<Job>>,
    tid: i32,
    handle: Option<thread::JoinHandle<()>>,
}

impl Netns {
    /// A new namespace with `lo` up; Err(reason) when this machine does not allow it.
    pub fn new() -> Result<Netns, String> {
        let (jobs, rx) = mpsc::channel::<Job>();
        let (ready_tx, ready_rx) = mpsc::channel::<Result<i32, String>>();
        let handle = thread::spawn(move || {
            let r = nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
                .map(|()| nix::unistd::gettid().as_raw())
                .map_err(|e| format!("unshare(CLONE_NEWNET): {e}"));
            let ok = r.is_ok();
            let _ = ready_tx.send(r);
            if ok {
                while let Ok(job) = rx.recv() {
                    job();
                }
            }
        });
        let tid = ready_rx.recv().map_err(|e| format!("netns thread: {e}"))??;
        let ns = Netns { jobs: Some(jobs), tid, handle: Some(handle) };
        ns.ip("link set lo up")?;
        Ok(ns)
    }

    /// Runs `f` on the namespace's thread and returns its result.
    pub fn run<R: Send + 'static>(&self, f: impl FnOnce() -> R + Send + 'static) -> R {
        let (tx, rx) = mpsc::channel();
        let job: Job = Box::new(move || {
            let _ = tx.send(f());
        });
        self.jobs.as_ref().expect("netns alive").send(job).expect("netns thread alive");
        rx.recv().expect("netns job result")
    }

    /// Runs `ip ARGS` (whitespace-separated) inside the namespace.
    pub fn ip(&self, args: &str) -> Result<(), String> {
        let args: Vec<String> = args.split_whitespace().map(String::from).collect();
        self.run(move || {
            let out =
                Command::new("ip").args(&args).output().map_err(|e| format!("ip {}: {e}", args.join(" ")))?;
            if out.status.success() {
                Ok(())
            } else {
                Err(format!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()))
            }
        })
    }

    /// What `ip ... netns` accepts to name this namespace (the thread id).
    pub fn id(&self) -> i32 {
        self.tid
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        self.jobs = None;
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// A private namespace with a veth pair hv0 — hv1, hv0 at 192.0.2.1/24 and
/// 2001:db8:77::1/64 (documentation ranges), or None (after a skip note, or a failure under
/// HALO_REQUIRE_ROOT=1) when this machine cannot have one.
pub fn dual_stack_veth(test: &str) -> Option<Netns> {
    if !require_root(test) {
        return None;
    }
    let ns = match Netns::new() {
        Ok(ns) => ns,
        Err(e) => {
            skip(test, &e);
            return None;
        }
    };
    let steps = [
        "link add hv0 type veth peer name hv1",
        "link set hv0 up",
        "link set hv1 up",
        "addr add 192.0.2.1/24 dev hv0",
        "-6 addr add 2001:db8:77::1/64 dev hv0 nodad",
    ];
    for s in steps {
        if let Err(e) = ns.ip(s) {
            skip(test, &e);
            return None;
        }
    }
    Some(ns)
}

/// A packet socket receiving every frame that arrives on `iface`.
pub fn sniffer(ns: &Netns, iface: &'static str) -> OwnedFd {
    ns.run(move || {
        let idx = nix::net::if_::if_nametoindex(iface).expect("ifindex");
        let fd = socket::socket(
            AddressFamily::Packet,
            SockType::Raw,
            SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
            SockProtocol::EthAll,
        )
        .expect("packet socket");
        // SAFETY (test): zeroed sockaddr_ll filled in below, of the stated size.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = (libc::ETH_P_ALL as u16).to_be();
        sll.sll_ifindex = idx as i32;
        let len = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
        let addr = unsafe { LinkAddr::from_raw((&sll as *const libc::sockaddr_ll).cast(), Some(len)) }
            .expect("link addr");
        socket::bind(fd.as_raw_fd(), &addr).expect("bind");
        fd
    })
}

/// Frames received on `fd` that `keep` accepts, until `want` of them or 3 s pass.
pub fn capture(fd: &OwnedFd, want: usize, keep: impl Fn(&[u8]) -> bool) -> Vec<Vec<u8>> {
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut got = Vec::new();
    let mut buf = [0u8; 2048];
    while got.len() < want && Instant::now() < deadline {
        let mut p = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
        let _ = nix::poll::poll(&mut p, PollTimeout::from(100u16));
        // Never past `want`: what comes after is left queued for the next capture (a second
        // burst that arrived early must not be swallowed by this one).
        while got.len() < want {
            let Ok(n) = socket::recv(fd.as_raw_fd(), &mut buf, socket::MsgFlags::empty()) else { break };
            if keep(&buf[..n]) {
                got.push(buf[..n].to_vec());
            }
        }
    }
    got
}
