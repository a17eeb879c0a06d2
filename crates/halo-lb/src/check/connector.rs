//! The connect check's connection: a real TCP handshake with the real server, at the fewest
//! system calls per check.
//!
//! A connect check through tokio's `TcpStream` costs seven system calls: `socket`, `connect`,
//! `epoll_ctl` ADD, `getsockopt(SO_ERROR)`, `setsockopt(SO_LINGER)`, `epoll_ctl` DEL and
//! `close` (plus a share of `epoll_wait`), and a socket and a file to allocate and free.
//! Here a connect check costs four, and reuses its socket:
//!
//! * the socket comes from a small pool of idle non-blocking sockets of this runtime (a new
//!   one, with `SO_LINGER` 0, when the pool is empty);
//! * `connect` (`EINPROGRESS`), then `epoll_ctl` MOD (ADD the first time) on the connector's
//!   own epoll instance, one-shot, with a token unique to this check. That epoll instance is
//!   itself registered with tokio's reactor once, so one wake-up of the runtime harvests the
//!   answers of many checks with one `epoll_wait`. A one-shot registration disarms itself
//!   when it fires, so nothing is ever deregistered;
//! * the event says the answer: writable without error is established (no `SO_ERROR` read);
//!   an error (a reset: refused) is read with `SO_ERROR` for the reason;
//! * then `connect(AF_UNSPEC)`: the kernel's disconnect, which resets an established
//!   connection (as `close` with `SO_LINGER` 0 does: no FIN exchange, no TIME_WAIT) and
//!   leaves the socket unconnected, ready for the next check; its `ECONNRESET` is cleared
//!   with one `SO_ERROR` read, and the socket goes back to the pool.
//!
//! Every check is still a full handshake with the real server (which accepts it and sees it
//! reset), from a fresh ephemeral port. A check dropped before its answer (its deadline)
//! disconnects its socket the same way; an event that comes for a token no longer waited for
//! is ignored, and a socket whose disconnect fails is closed instead of reused.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use nix::libc;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use tokio::io::unix::AsyncFd;

/// Idle sockets kept per address family: about what one tick of 10,000 checks a second has
/// in flight. More than that are closed when their check ends.
const POOL_MAX: usize = 256;

/// Events harvested per `epoll_wait`.
const BATCH: usize = 64;

/// Connects to `target` and resets the connection at once: `Ok` iff the handshake completed.
/// The error is the one a `TcpStream::connect` gives (`connect to ADDR: Connection refused
/// (os error 111)`).
pub(crate) async fn connect_and_reset(target: SocketAddr) -> Result<(), String> {
    let connector = match Connector::current() {
        Ok(c) => c,
        // No epoll instance for this runtime (out of descriptors): tokio's own way.
        Err(_) => return fallback(target).await,
    };
    let sock = connector.take(target.is_ipv4()).map_err(|e| format!("connect to {target}: {e}"))?;
    let mut attempt = Attempt { connector, sock: Some(sock), v4: target.is_ipv4(), token: None };
    attempt.run(target).await.map_err(|e| format!("connect to {target}: {e}"))
}

async fn fallback(target: SocketAddr) -> Result<(), String> {
    let stream = super::io::connect_tcp(target).await?;
    super::io::close_with_reset(&stream);
    Ok(())
}

/// One runtime's connector: its epoll instance, the checks waiting on it, its idle sockets.
struct Connector {
    epoll: AsyncFd<EpollFd>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    next_token: u64,
    waiting: HashMap<u64, Slot>,
    /// The token whose task is the one tokio wakes when the epoll instance is readable (the
    /// last to poll it); when that check ends, another waiting check takes over.
    poller: Option<u64>,
    idle_v4: Vec<Pooled>,
    idle_v6: Vec<Pooled>,
}

enum Slot {
    Waiting(Option<Waker>),
    /// The epoll events that came for the check.
    Fired(EpollFlags),
}

struct Pooled {
    sock: Socket,
    /// Already in the connector's epoll instance (re-armed with MOD, not ADD).
    added: bool,
}

thread_local! {
    /// The connector of the runtime running on this thread (halo's director runs its checks
    /// on a current_thread runtime; a multi-thread runtime gets one per worker thread).
    static CURRENT: std::cell::RefCell<Option<(tokio::runtime::Id, Arc<Connector>)>> =
        const { std::cell::RefCell::new(None) };
}

impl Connector {
    fn current() -> io::Result<Arc<Connector>> {
        let id = tokio::runtime::Handle::try_current().map_err(io::Error::other)?.id();
        CURRENT.with(|cell| {
            let mut cur = cell.borrow_mut();
            if let Some((rid, c)) = cur.as_ref() {
                if *rid == id {
                    return Ok(Arc::clone(c));
                }
            }
            let epoll = EpollFd(Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?);
            let c = Arc::new(Connector { epoll: register(epoll)?, state: Mutex::new(State::default()) });
            *cur = Some((id, Arc::clone(&c)));
            Ok(c)
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// An idle socket of the family, or a new one (non-blocking, `SO_LINGER` 0).
    fn take(&self, v4: bool) -> io::Result<Pooled> {
        let pooled = {
            let mut st = self.lock();
            if v4 {
                st.idle_v4.pop()
            } else {
                st.idle_v6.pop()
            }
        };
        if let Some(p) = pooled {
            return Ok(p);
        }
        let domain = if v4 { Domain::IPV4 } else { Domain::IPV6 };
        let sock = Socket::new(domain, Type::STREAM.nonblocking(), Some(Protocol::TCP))?;
        // A socket closed instead of pooled still ends with a reset, never a TIME_WAIT.
        sock.set_linger(Some(std::time::Duration::ZERO))?;
        Ok(Pooled { sock, added: false })
    }

    /// Back to the pool after a disconnect; closed (with a reset) when that fails or the pool
    /// is full.
    fn give_back(&self, p: Pooled, v4: bool) {
        if !disconnect(&p.sock) {
            return;
        }
        let mut st = self.lock();
        let idle = if v4 { &mut st.idle_v4 } else { &mut st.idle_v6 };
        if idle.len() < POOL_MAX {
            idle.push(p);
        }
    }

    /// Reads the ready events of the connector's epoll instance (without waiting) and hands
    /// them to their checks. `Pending` once there are none (the caller's task is then the
    /// one woken when more come).
    fn harvest(&self, cx: &mut Context<'_>, me: u64) -> Poll<io::Result<()>> {
        loop {
            let mut guard = match self.epoll.poll_read_ready(cx) {
                Poll::Ready(Ok(g)) => g,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => {
                    self.lock().poller = Some(me);
                    return Poll::Pending;
                }
            };
            let mut events = [EpollEvent::empty(); BATCH];
            let n = match self.epoll.get_ref().0.wait(&mut events, EpollTimeout::ZERO) {
                Ok(n) => n,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Poll::Ready(Err(e.into())),
            };
            {
                let mut st = self.lock();
                for ev in &events[..n] {
                    let (token, bits) = (ev.data(), ev.events());
                    if let Some(slot) = st.waiting.get_mut(&token) {
                        if let Slot::Waiting(Some(w)) = std::mem::replace(slot, Slot::Fired(bits)) {
                            w.wake();
                        }
                    }
                }
            }
            if n < BATCH {
                guard.clear_ready();
            }
            return Poll::Ready(Ok(()));
        }
    }
}

/// The connector's epoll instance, as tokio's reactor needs it.
struct EpollFd(Epoll);

impl AsRawFd for EpollFd {
    fn as_raw_fd(&self) -> RawFd {
        self.0 .0.as_raw_fd()
    }
}

/// The epoll instance in tokio's reactor (readable when it holds events).
#[allow(unsafe_code)]
fn register(epoll: EpollFd) -> io::Result<AsyncFd<EpollFd>> {
    // SAFETY: `AsyncFd` owns the `EpollFd`, which owns its descriptor: it stays open and is
    // the same descriptor for as long as the registration lives, and is closed only after it.
    unsafe { AsyncFd::register_with_interest(epoll, tokio::io::Interest::READABLE) }.map_err(io::Error::from)
}

/// `connect(AF_UNSPEC)`: resets an established connection (or abandons a handshake) and
/// leaves the socket unconnected; then clears the error (`ECONNRESET`) the disconnect leaves
/// with one `SO_ERROR` read.
fn disconnect(sock: &Socket) -> bool {
    disconnect_raw(sock.as_raw_fd()) && sock.take_error().is_ok()
}

/// Unsafe because neither socket2 nor nix builds an `AF_UNSPEC` address.
#[allow(unsafe_code)]
fn disconnect_raw(fd: RawFd) -> bool {
    let mut sa: libc::sockaddr = libc::sockaddr { sa_family: 0, sa_data: [0; 14] };
    sa.sa_family = libc::AF_UNSPEC as libc::sa_family_t;
    let len = std::mem::size_of::<libc::sockaddr>() as libc::socklen_t;
    // SAFETY: `fd` is an open socket borrowed for the call; `sa` is a valid, initialised
    // sockaddr of `len` bytes that the kernel only reads.
    unsafe { libc::connect(fd, &sa, len) == 0 }
}

/// One check's use of a pooled socket; dropping it (done, or its deadline) returns the socket.
struct Attempt {
    connector: Arc<Connector>,
    sock: Option<Pooled>,
    v4: bool,
    token: Option<u64>,
}

impl Attempt {
    async fn run(&mut self, target: SocketAddr) -> io::Result<()> {
        let Some(p) = self.sock.as_mut() else { return Err(io::Error::other("no socket")) };
        match p.sock.connect(&SockAddr::from(target)) {
            Ok(()) => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
            Err(e) => return Err(e),
        }
        let token = {
            let mut st = self.connector.lock();
            let t = st.next_token;
            st.next_token += 1;
            st.waiting.insert(t, Slot::Waiting(None));
            t
        };
        self.token = Some(token);
        let mut ev = EpollEvent::new(EpollFlags::EPOLLOUT | EpollFlags::EPOLLONESHOT, token);
        let epoll = &self.connector.epoll.get_ref().0;
        if p.added {
            epoll.modify(p.sock.as_fd(), &mut ev)?;
        } else {
            epoll.add(p.sock.as_fd(), ev)?;
            p.added = true;
        }
        let connector = Arc::clone(&self.connector);
        let bits = std::future::poll_fn(|cx| {
            if let Some(bits) = fired(&connector, token, cx) {
                return Poll::Ready(Ok(bits));
            }
            match connector.harvest(cx, token) {
                Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                Poll::Ready(Ok(())) => {
                    // Harvested: ours may be among them; if not, poll again at once (the
                    // runtime's readiness was cleared only when the epoll instance was empty).
                    match fired(&connector, token, cx) {
                        Some(bits) => Poll::Ready(Ok(bits)),
                        None => {
                            cx.waker().wake_by_ref();
                            Poll::Pending
                        }
                    }
                }
                Poll::Pending => Poll::Pending,
            }
        })
        .await?;
        if bits.intersects(EpollFlags::EPOLLERR | EpollFlags::EPOLLHUP) {
            let p = self.sock.as_ref().ok_or_else(|| io::Error::other("no socket"))?;
            return Err(p.sock.take_error()?.unwrap_or_else(|| io::Error::other("connection failed")));
        }
        Ok(())
    }
}

/// The events of `token` once they came (its slot is then gone); else its waker is stored.
fn fired(c: &Connector, token: u64, cx: &mut Context<'_>) -> Option<EpollFlags> {
    let mut st = c.lock();
    match st.waiting.get_mut(&token) {
        Some(Slot::Fired(bits)) => {
            let bits = *bits;
            st.waiting.remove(&token);
            Some(bits)
        }
        Some(Slot::Waiting(w)) => {
            if !w.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                *w = Some(cx.waker().clone());
            }
            None
        }
        None => None,
    }
}

impl Drop for Attempt {
    fn drop(&mut self) {
        if let Some(token) = self.token {
            let mut st = self.connector.lock();
            st.waiting.remove(&token);
            // This check's task was the one the runtime wakes for the epoll instance: hand
            // that over to a check still waiting.
            if st.poller == Some(token) {
                st.poller = None;
                if let Some(w) = st.waiting.values().find_map(|s| match s {
                    Slot::Waiting(Some(w)) => Some(w),
                    _ => None,
                }) {
                    w.wake_by_ref();
                }
            }
        }
        if let Some(p) = self.sock.take() {
            self.connector.give_back(p, self.v4);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::net::TcpListener;

    /// A listener that accepts (and counts) every connection.
    async fn server() -> (SocketAddr, Arc<AtomicUsize>, tokio::task::JoinHandle<()>) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let n = Arc::new(AtomicUsize::new(0));
        let n2 = Arc::clone(&n);
        let h = tokio::spawn(async move {
            while let Ok((s, _)) = l.accept().await {
                n2.fetch_add(1, Ordering::SeqCst);
                drop(s);
            }
        });
        (addr, n, h)
    }

    async fn closed_port() -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap()
    }

    #[tokio::test]
    async fn up_then_refused_then_up_again_on_reused_sockets() {
        let (up, accepted, _h) = server().await;
        let down = closed_port().await;
        for round in 0..20 {
            connect_and_reset(up).await.unwrap_or_else(|e| panic!("round {round}: {e}"));
            let e = connect_and_reset(down).await.expect_err("nothing listens there");
            assert!(e.contains("refused") && e.contains(&down.to_string()), "{e}");
        }
        // Every up check was a real connection the server accepted.
        for _ in 0..100 {
            if accepted.load(Ordering::SeqCst) == 20 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 20);
        // The sockets were reused: a few in the pool, not one per check.
        let idle = Connector::current().unwrap().lock().idle_v4.len();
        assert!((1..=2).contains(&idle), "{idle} idle sockets");
    }

    #[tokio::test]
    async fn a_stopped_server_goes_down() {
        let (addr, _n, h) = server().await;
        connect_and_reset(addr).await.unwrap();
        h.abort();
        let _ = h.await; // the listener is closed with its task
        let e = connect_and_reset(addr).await.expect_err("stopped");
        assert!(e.contains("refused"), "{e}");
    }

    #[tokio::test]
    async fn many_at_once_all_answered() {
        // 400 checks in flight on one connector: each one is woken with its own answer,
        // whichever task harvests the epoll instance (and after the harvester ends).
        let mut servers = Vec::new();
        for _ in 0..4 {
            servers.push(server().await);
        }
        let down = closed_port().await;
        let mut tasks = Vec::new();
        for i in 0..400 {
            let target = if i % 10 == 9 { down } else { servers[i % 4].0 };
            tasks
                .push(tokio::spawn(async move { (target == down, connect_and_reset(target).await.is_ok()) }));
        }
        let (mut ups, mut downs) = (0, 0);
        for t in tasks {
            let (expect_down, ok) =
                tokio::time::timeout(std::time::Duration::from_secs(10), t).await.expect("answered").unwrap();
            assert_eq!(ok, !expect_down);
            if ok {
                ups += 1;
            } else {
                downs += 1;
            }
        }
        assert_eq!((ups, downs), (360, 40));
        assert!(Connector::current().unwrap().lock().waiting.is_empty());
    }

    #[tokio::test]
    async fn a_check_cut_by_its_deadline_leaves_a_reusable_socket() {
        let (up, _n, _h) = server().await;
        // A deadline of zero drops the check right after its connect: the socket is
        // disconnected and pooled, and the next check on it still works.
        for _ in 0..5 {
            let _ = tokio::time::timeout(std::time::Duration::ZERO, connect_and_reset(up)).await;
            connect_and_reset(up).await.unwrap();
        }
        assert!(Connector::current().unwrap().lock().waiting.is_empty());
    }

    #[test]
    fn a_new_runtime_on_the_same_thread_gets_its_own_connector() {
        for _ in 0..2 {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                let (up, _n, _h) = server().await;
                connect_and_reset(up).await.unwrap();
                assert!(connect_and_reset(closed_port().await).await.is_err());
            });
        }
    }

    #[tokio::test]
    async fn ipv6_has_its_own_pool() {
        // No IPv6 loopback on this host: nothing to check.
        let Ok(l) = TcpListener::bind("[::1]:0").await else { return };
        let up = l.local_addr().unwrap();
        let h = tokio::spawn(async move { while l.accept().await.is_ok() {} });
        let (v4, _n, _h4) = server().await;
        for _ in 0..3 {
            connect_and_reset(up).await.unwrap();
            connect_and_reset(v4).await.unwrap();
        }
        h.abort();
        let _ = h.await;
        assert!(connect_and_reset(up).await.is_err(), "stopped");
        let c = Connector::current().unwrap();
        let st = c.lock();
        assert_eq!((st.idle_v4.len(), st.idle_v6.len()), (1, 1));
    }
}
