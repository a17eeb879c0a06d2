//! The connect and http checks' connections: a real TCP handshake with the real server, at the
//! fewest system calls per check.
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
//!
//! The http and https checks exchange bytes on the same pooled sockets ([`connect`] gives a
//! [`Conn`], tokio's `AsyncRead`/`AsyncWrite`): a read or write that would block arms the
//! socket one-shot for `EPOLLIN`/`EPOLLOUT` on the same epoll instance and the check waits for
//! that event; dropping the `Conn` resets the connection and pools the socket. An exchange
//! then costs `connect`, an `epoll_ctl` per wait, the `send`/`recv` calls and the disconnect,
//! instead of tokio's `socket`, `setsockopt`, `epoll_ctl` ADD and DEL and `close` around them.

use std::collections::HashMap;
use std::io::{self, Read};
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use nix::libc;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Idle sockets kept per address family: about what one tick of 10,000 checks a second has
/// in flight. More than that are closed when their check ends.
const POOL_MAX: usize = 256;

/// Events harvested per `epoll_wait`.
const BATCH: usize = 64;

/// Connects to `target` and resets the connection at once: `Ok` iff the handshake completed.
/// The error is the one a `TcpStream::connect` gives (`connect to ADDR: Connection refused
/// (os error 111)`). Dropping the connection resets it (and pools its socket).
pub(crate) async fn connect_and_reset(target: SocketAddr) -> Result<(), String> {
    connect(target).await.map(drop)
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
    /// The wait armed in the connector's epoll instance: its token and the events asked for.
    armed: Option<(u64, EpollFlags)>,
}

impl Attempt {
    fn new(connector: Arc<Connector>, v4: bool) -> io::Result<Attempt> {
        let sock = connector.take(v4)?;
        Ok(Attempt { connector, sock: Some(sock), v4, armed: None })
    }

    fn socket(&self) -> io::Result<&Socket> {
        self.sock.as_ref().map(|p| &p.sock).ok_or_else(|| io::Error::other("no socket"))
    }

    async fn run(&mut self, target: SocketAddr) -> io::Result<()> {
        match self.socket()?.connect(&SockAddr::from(target)) {
            Ok(()) => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
            Err(e) => return Err(e),
        }
        let bits = std::future::poll_fn(|cx| self.poll_event(cx, EpollFlags::EPOLLOUT)).await?;
        if bits.intersects(EpollFlags::EPOLLERR | EpollFlags::EPOLLHUP) {
            return Err(self
                .socket()?
                .take_error()?
                .unwrap_or_else(|| io::Error::other("connection failed")));
        }
        Ok(())
    }

    /// Arms the socket (one-shot) for `interest` unless it is armed for it already, and polls
    /// for the event: `Ready` with its bits once it came (the wait is then over: the next one
    /// arms again).
    fn poll_event(&mut self, cx: &mut Context<'_>, interest: EpollFlags) -> Poll<io::Result<EpollFlags>> {
        let token = match self.armed {
            Some((token, armed)) if armed.contains(interest) => token,
            // Waiting for the other direction too (a TLS handshake's write and read can both
            // wait in one poll): armed for both, and either event wakes the task.
            Some((token, armed)) => {
                self.arm(token, armed | interest)?;
                token
            }
            None => {
                let token = {
                    let mut st = self.connector.lock();
                    let t = st.next_token;
                    st.next_token += 1;
                    st.waiting.insert(t, Slot::Waiting(None));
                    t
                };
                // Set first: if arming fails, the drop still removes the slot.
                self.armed = Some((token, interest));
                self.arm(token, interest)?;
                token
            }
        };
        let connector = Arc::clone(&self.connector);
        let polled = match fired(&connector, token, cx) {
            Some(bits) => Poll::Ready(Ok(bits)),
            None => match connector.harvest(cx, token) {
                Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                // Harvested: ours may be among them; if not, poll again at once (the
                // runtime's readiness was cleared only when the epoll instance was empty).
                Poll::Ready(Ok(())) => match fired(&connector, token, cx) {
                    Some(bits) => Poll::Ready(Ok(bits)),
                    None => {
                        cx.waker().wake_by_ref();
                        Poll::Pending
                    }
                },
                Poll::Pending => Poll::Pending,
            },
        };
        if let Poll::Ready(Ok(_)) = polled {
            // `fired` removed the slot. This task may go on without waiting here again for a
            // while (a `Conn` between its waits): if the runtime wakes it for the epoll
            // instance, another waiting check takes that over now.
            self.armed = None;
            hand_over(&mut self.connector.lock(), token);
        }
        polled
    }

    fn arm(&mut self, token: u64, interest: EpollFlags) -> io::Result<()> {
        let p = self.sock.as_mut().ok_or_else(|| io::Error::other("no socket"))?;
        let mut ev = EpollEvent::new(interest | EpollFlags::EPOLLONESHOT, token);
        let epoll = &self.connector.epoll.get_ref().0;
        if p.added {
            epoll.modify(p.sock.as_fd(), &mut ev)?;
        } else {
            epoll.add(p.sock.as_fd(), ev)?;
            p.added = true;
        }
        self.armed = Some((token, interest));
        Ok(())
    }

    fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        loop {
            let read = {
                let sock = self.socket()?;
                let mut r: &Socket = sock;
                r.read(buf.initialize_unfilled())
            };
            match read {
                Ok(n) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
            // Readable, an error or a hang-up: the next read says which.
            std::task::ready!(self.poll_event(cx, EpollFlags::EPOLLIN))?;
        }
    }

    fn poll_write(&mut self, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        loop {
            match self.socket()?.send_with_flags(data, libc::MSG_NOSIGNAL) {
                Ok(n) => return Poll::Ready(Ok(n)),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
            std::task::ready!(self.poll_event(cx, EpollFlags::EPOLLOUT))?;
        }
    }
}

/// When the check of `token` was the one the runtime wakes for the epoll instance and no
/// longer waits: wakes a check still waiting, which takes that over (its next harvest).
fn hand_over(st: &mut State, token: u64) {
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
        if let Some((token, _)) = self.armed {
            let mut st = self.connector.lock();
            st.waiting.remove(&token);
            hand_over(&mut st, token);
        }
        if let Some(p) = self.sock.take() {
            self.connector.give_back(p, self.v4);
        }
    }
}

/// A check's established connection for an exchange (http, https): on a pooled socket of
/// the runtime's connector, read and written without blocking and waited for through its
/// epoll instance like the connect, and reset and pooled again when dropped, as
/// [`connect_and_reset`] does; through tokio's `TcpStream` (closed with a reset) where the
/// runtime has no connector.
pub(crate) struct Conn(Inner);

enum Inner {
    Pooled(Attempt),
    Plain(tokio::net::TcpStream),
}

/// Connects to `target`; errors as [`connect_and_reset`]'s.
pub(crate) async fn connect(target: SocketAddr) -> Result<Conn, String> {
    // No epoll instance for this runtime (out of descriptors): tokio's own way.
    let Ok(connector) = Connector::current() else {
        let stream = super::io::connect_tcp(target).await?;
        super::io::close_with_reset(&stream);
        return Ok(Conn(Inner::Plain(stream)));
    };
    let mut attempt =
        Attempt::new(connector, target.is_ipv4()).map_err(|e| format!("connect to {target}: {e}"))?;
    attempt.run(target).await.map_err(|e| format!("connect to {target}: {e}"))?;
    Ok(Conn(Inner::Pooled(attempt)))
}

impl AsyncRead for Conn {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().0 {
            Inner::Pooled(a) => a.poll_read(cx, buf),
            Inner::Plain(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().0 {
            Inner::Pooled(a) => a.poll_write(cx, data),
            Inner::Plain(s) => Pin::new(s).poll_write(cx, data),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().0 {
            Inner::Pooled(_) => Poll::Ready(Ok(())),
            Inner::Plain(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().0 {
            Inner::Pooled(a) => Poll::Ready(a.socket()?.shutdown(std::net::Shutdown::Write)),
            Inner::Plain(s) => Pin::new(s).poll_shutdown(cx),
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

    /// A server that reads until a blank line (or `expect` bytes), then answers `answer` in
    /// two writes 20 ms apart and closes.
    async fn answering(expect: usize, answer: &'static [u8]) -> SocketAddr {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                tokio::spawn(async move {
                    let mut got = Vec::new();
                    let mut buf = [0u8; 64 * 1024];
                    while got.len() < expect && !got.ends_with(b"\r\n\r\n") {
                        match s.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => got.extend_from_slice(&buf[..n]),
                        }
                    }
                    let (a, b) = answer.split_at(answer.len() / 2);
                    let _ = s.write_all(a).await;
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                    let _ = s.write_all(b).await;
                });
            }
        });
        addr
    }

    async fn exchange(target: SocketAddr, request: &[u8]) -> Result<Vec<u8>, String> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut c = connect(target).await?;
        c.write_all(request).await.map_err(|e| e.to_string())?;
        c.flush().await.map_err(|e| e.to_string())?;
        let mut out = Vec::new();
        c.read_to_end(&mut out).await.map_err(|e| e.to_string())?;
        Ok(out)
    }

    #[tokio::test]
    async fn exchanges_on_pooled_sockets_read_whole_answers_and_reuse_the_sockets() {
        const ANSWER: &[u8] = b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nN1";
        let up = answering(usize::MAX, ANSWER).await;
        for round in 0..10 {
            let got = exchange(up, b"GET / HTTP/1.0\r\n\r\n")
                .await
                .unwrap_or_else(|e| panic!("round {round}: {e}"));
            assert_eq!(got, ANSWER, "round {round}");
        }
        // A request larger than the socket buffers: the write waits for the server to read.
        let big = vec![b'x'; 4 << 20];
        let sink = answering(big.len(), b"ok").await;
        assert_eq!(exchange(sink, &big).await.unwrap(), b"ok");
        let e = exchange(closed_port().await, b"GET /").await.expect_err("nothing listens there");
        assert!(e.contains("refused"), "{e}");
        let c = Connector::current().unwrap();
        let st = c.lock();
        assert!((1..=2).contains(&st.idle_v4.len()), "{} idle sockets", st.idle_v4.len());
        assert!(st.waiting.is_empty());
    }

    #[tokio::test]
    async fn an_exchange_cut_by_its_deadline_leaves_a_reusable_socket() {
        use tokio::io::AsyncReadExt;
        // A server that accepts and never answers: the read is cut by its deadline.
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let silent = l.local_addr().unwrap();
        let _h = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = l.accept().await {
                held.push(s);
            }
        });
        const ANSWER: &[u8] = b"HTTP/1.0 200 OK\r\n\r\n";
        let up = answering(usize::MAX, ANSWER).await;
        for _ in 0..3 {
            let cut = tokio::time::timeout(std::time::Duration::from_millis(50), async {
                let mut c = connect(silent).await.unwrap();
                let mut b = [0u8; 16];
                c.read(&mut b).await
            })
            .await;
            assert!(cut.is_err(), "the silent server answered: {cut:?}");
            assert_eq!(exchange(up, b"GET / HTTP/1.0\r\n\r\n").await.unwrap(), ANSWER);
        }
        let c = Connector::current().unwrap();
        assert!(c.lock().waiting.is_empty());
        assert!(c.lock().idle_v4.len() <= 2, "{} idle sockets", c.lock().idle_v4.len());
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
