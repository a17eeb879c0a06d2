//! Real servers on 127.0.0.1 for the check tests, each a tokio task started by the test that
//! uses it (and gone with the test's runtime). Included by the `check_*` tests with
//! `#[path = "support/mod.rs"] mod support;` (a directory, so cargo does not build it as a test crate of its own).
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpSocket, TcpStream, UdpSocket};

pub const LOCAL: &str = "127.0.0.1:0";

/// A listener with a deep backlog (the concurrency test connects 2000 times at once).
pub fn listener() -> TcpListener {
    let sock = TcpSocket::new_v4().expect("socket");
    sock.set_reuseaddr(true).expect("reuseaddr");
    sock.bind("127.0.0.1:0".parse().expect("addr")).expect("bind");
    sock.listen(4096).expect("listen")
}

pub fn addr(l: &TcpListener) -> SocketAddr {
    l.local_addr().expect("local addr")
}

/// Accepts connections and never answers (nor closes them).
pub fn silent_server() -> SocketAddr {
    let l = listener();
    let a = addr(&l);
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = l.accept().await {
            held.push(s);
        }
    });
    a
}

/// A UDP socket that reads and never answers.
pub async fn silent_udp() -> SocketAddr {
    let s = UdpSocket::bind(LOCAL).await.expect("udp");
    let a = s.local_addr().expect("addr");
    tokio::spawn(async move {
        let mut buf = [0u8; 2048];
        while s.recv_from(&mut buf).await.is_ok() {}
    });
    a
}

/// Accepts and writes `A` forever, never a newline.
pub fn flood_server() -> SocketAddr {
    let l = listener();
    let a = addr(&l);
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let chunk = [b'A'; 4096];
                while s.write_all(&chunk).await.is_ok() {}
            });
        }
    });
    a
}

/// Any port nobody listens on (bound, then closed).
pub fn closed_port() -> SocketAddr {
    let l = std::net::TcpListener::bind(LOCAL).expect("bind");
    l.local_addr().expect("addr")
}

// ------------------------------------------------------------------------------------------
// HTTP
// ------------------------------------------------------------------------------------------

/// What the HTTP test server saw: (method, path, Host header).
pub type Seen = Arc<Mutex<Vec<(String, String, String)>>>;

#[derive(Clone, Default)]
pub struct Http {
    pub seen: Seen,
    /// When false, every path answers 500.
    pub healthy: Arc<AtomicBool>,
}

async fn read_head<S: AsyncRead + Unpin>(s: &mut BufReader<S>) -> Option<(String, String, String)> {
    let mut request_line = String::new();
    s.read_line(&mut request_line).await.ok()?;
    let mut parts = request_line.split_whitespace();
    let method = parts.next()?.to_string();
    let path = parts.next()?.to_string();
    let mut host = String::new();
    loop {
        let mut line = String::new();
        if s.read_line(&mut line).await.ok()? == 0 {
            return None;
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            if k.eq_ignore_ascii_case("host") {
                host = v.trim().to_string();
            }
        }
    }
    Some((method, path, host))
}

/// Paths: `/` and `/ok` 200 "hello world"; `/fail` 500; `/slow` never answers; `/redirect`
/// 302 to `/ok`; `/away` 302 to another host; `/big` 1 MiB then "MARK"; `/host` echoes the
/// Host header; `/garbage` is not HTTP; anything else 404.
pub async fn serve_http<S: AsyncRead + AsyncWrite + Unpin>(stream: S, http: Http) {
    let mut s = BufReader::new(stream);
    let Some((method, path, host)) = read_head(&mut s).await else { return };
    http.seen.lock().expect("lock").push((method.clone(), path.clone(), host.clone()));
    let (status, body, extra): (&str, Vec<u8>, String) = if !http.healthy.load(Ordering::SeqCst) {
        ("500 Internal Server Error", b"sick".to_vec(), String::new())
    } else {
        match path.as_str() {
            "/" | "/ok" => ("200 OK", b"hello world".to_vec(), String::new()),
            "/fail" => ("500 Internal Server Error", b"hello world".to_vec(), String::new()),
            "/slow" => {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                return;
            }
            "/redirect" => ("302 Found", Vec::new(), "Location: /ok\r\n".to_string()),
            "/away" => ("302 Found", Vec::new(), "Location: http://elsewhere.example/\r\n".to_string()),
            "/big" => {
                let mut b = vec![b'x'; 1 << 20];
                b.extend_from_slice(b"MARK");
                ("200 OK", b, String::new())
            }
            "/host" => ("200 OK", host.into_bytes(), String::new()),
            "/garbage" => {
                let _ = s.get_mut().write_all(b"\x00\xff\x13garbage\r\n\r\n").await;
                return;
            }
            _ => ("404 Not Found", b"no".to_vec(), String::new()),
        }
    };
    let mut out =
        format!("HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n{extra}\r\n", body.len())
            .into_bytes();
    if method != "HEAD" {
        out.extend_from_slice(&body);
    }
    let _ = s.get_mut().write_all(&out).await;
    let _ = s.get_mut().shutdown().await;
}

pub fn http_server() -> (SocketAddr, Http) {
    let http = Http::default();
    http.healthy.store(true, Ordering::SeqCst);
    let l = listener();
    let a = addr(&l);
    let h = http.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            tokio::spawn(serve_http(s, h.clone()));
        }
    });
    (a, http)
}

// ------------------------------------------------------------------------------------------
// TLS
// ------------------------------------------------------------------------------------------

pub fn tls_acceptor() -> tokio_rustls::TlsAcceptor {
    let ck = rcgen::generate_simple_self_signed(vec!["www.example.test".to_string()]).expect("rcgen");
    let cert = ck.cert.der().clone();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(rustls::pki_types::PrivatePkcs8KeyDer::from(
        ck.signing_key.serialize_der(),
    ));
    let config =
        rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(vec![cert], key)
            .expect("cert");
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}

/// HTTPS with a self-signed certificate; also records the SNI of each handshake.
pub fn https_server() -> (SocketAddr, Http, Arc<Mutex<Vec<Option<String>>>>) {
    let http = Http::default();
    http.healthy.store(true, Ordering::SeqCst);
    let sni = Arc::new(Mutex::new(Vec::new()));
    let l = listener();
    let a = addr(&l);
    let acceptor = tls_acceptor();
    let (h, n) = (http.clone(), sni.clone());
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            let (acceptor, h, n) = (acceptor.clone(), h.clone(), n.clone());
            tokio::spawn(async move {
                if let Ok(tls) = acceptor.accept(s).await {
                    n.lock().expect("lock").push(tls.get_ref().1.server_name().map(str::to_string));
                    serve_http(tls, h).await;
                }
            });
        }
    });
    (a, http, sni)
}

// ------------------------------------------------------------------------------------------
// Line protocols
// ------------------------------------------------------------------------------------------

/// simpletcp: reads the whole request (the client shuts down its write side), then answers
/// "hello\nPONG ok\n" to "PING\n", and "ERR\n" to anything else.
pub fn line_server() -> SocketAddr {
    let l = listener();
    let a = addr(&l);
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut req = Vec::new();
                let _ = (&mut s).take(4096).read_to_end(&mut req).await;
                let answer: &[u8] = if req == b"PING\n" { b"hello\nPONG ok\n" } else { b"ERR\n" };
                let _ = s.write_all(answer).await;
            });
        }
    });
    a
}

/// A scripted line server: sends `banner`, then answers each line with `reply(line)` (None
/// closes the connection). Works over TLS when `tls` is given.
pub fn scripted(
    banner: &'static str,
    reply: fn(&str) -> Option<String>,
    tls: Option<tokio_rustls::TlsAcceptor>,
) -> SocketAddr {
    let l = listener();
    let a = addr(&l);
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            let tls = tls.clone();
            tokio::spawn(async move {
                match tls {
                    Some(acc) => {
                        if let Ok(t) = acc.accept(s).await {
                            converse(t, banner, reply).await
                        }
                    }
                    None => converse(s, banner, reply).await,
                }
            });
        }
    });
    a
}

async fn converse<S: AsyncRead + AsyncWrite + Unpin>(s: S, banner: &str, reply: fn(&str) -> Option<String>) {
    let mut s = BufReader::new(s);
    if s.get_mut().write_all(banner.as_bytes()).await.is_err() {
        return;
    }
    loop {
        let mut line = String::new();
        match s.read_line(&mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        match reply(line.trim_end()) {
            Some(r) => {
                if s.get_mut().write_all(r.as_bytes()).await.is_err() {
                    return;
                }
            }
            None => return,
        }
    }
}

pub fn smtp_reply(line: &str) -> Option<String> {
    let verb = line.split_whitespace().next().unwrap_or("").to_ascii_uppercase();
    match verb.as_str() {
        "EHLO" => Some("250-mx.example.test\r\n250 PIPELINING\r\n".into()),
        "HELO" => Some("250 mx.example.test\r\n".into()),
        "QUIT" => None,
        _ => Some("500 what\r\n".into()),
    }
}

/// An old server: EHLO refused, HELO accepted.
pub fn smtp_helo_only(line: &str) -> Option<String> {
    if line.to_ascii_uppercase().starts_with("EHLO") {
        Some("502 not implemented\r\n".into())
    } else {
        smtp_reply(line)
    }
}

pub fn pop_reply(line: &str) -> Option<String> {
    match line {
        "USER alice" => Some("+OK\r\n".into()),
        "PASS secret" => Some("+OK logged in\r\n".into()),
        l if l.starts_with("PASS") => Some("-ERR bad password\r\n".into()),
        "QUIT" => None,
        _ => Some("-ERR\r\n".into()),
    }
}

pub fn imap_reply(line: &str) -> Option<String> {
    if line == r#"a1 LOGIN "alice" "secret""# {
        Some("* CAPABILITY IMAP4rev1\r\na1 OK LOGIN completed\r\n".into())
    } else if line.starts_with("a1 LOGIN") {
        Some("a1 NO wrong\r\n".into())
    } else if line.starts_with("a2 LOGOUT") {
        None
    } else {
        Some("* BAD\r\n".into())
    }
}

pub fn quit_only(line: &str) -> Option<String> {
    if line.eq_ignore_ascii_case("QUIT") {
        None
    } else {
        Some("500 what\r\n".into())
    }
}

// ------------------------------------------------------------------------------------------
// FTP
// ------------------------------------------------------------------------------------------

/// A minimal FTP server: user alice / secret (or anonymous), `CWD`, `TYPE`, `PASV`, and
/// `RETR /index.html` ("ftp says hello") or `RETR /big` (1 MiB); anything else 550.
pub fn ftp_server() -> SocketAddr {
    let l = listener();
    let a = addr(&l);
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            tokio::spawn(ftp_session(s));
        }
    });
    a
}

async fn ftp_session(s: TcpStream) {
    let mut s = BufReader::new(s);
    let mut data: Option<TcpListener> = None;
    let mut user = String::new();
    if s.get_mut().write_all(b"220-Welcome\r\n220 mini ftp\r\n").await.is_err() {
        return;
    }
    loop {
        let mut line = String::new();
        match s.read_line(&mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let line = line.trim_end().to_string();
        let (verb, arg) = line.split_once(' ').unwrap_or((line.as_str(), ""));
        let reply = match verb.to_ascii_uppercase().as_str() {
            "USER" => {
                user = arg.to_string();
                "331 password please\r\n".to_string()
            }
            "PASS" if (user == "alice" && arg == "secret") || user == "anonymous" => "230 in\r\n".to_string(),
            "PASS" => "530 no\r\n".to_string(),
            "CWD" => "250 ok\r\n".to_string(),
            "TYPE" => "200 binary\r\n".to_string(),
            "PASV" => {
                let dl = TcpListener::bind(LOCAL).await.expect("data listener");
                let port = dl.local_addr().expect("addr").port();
                data = Some(dl);
                // An address that must be ignored: the check connects to the real server.
                format!("227 Entering Passive Mode (10,255,255,1,{},{})\r\n", port / 256, port % 256)
            }
            "RETR" => {
                let content: Option<Vec<u8>> = match arg {
                    "/index.html" => Some(b"ftp says hello\n".to_vec()),
                    "/big" => Some(vec![b'z'; 1 << 20]),
                    _ => None,
                };
                match (content, data.take()) {
                    (Some(content), Some(dl)) => {
                        if s.get_mut().write_all(b"150 here it comes\r\n").await.is_err() {
                            return;
                        }
                        if let Ok((mut d, _)) = dl.accept().await {
                            let _ = d.write_all(&content).await;
                            let _ = d.shutdown().await;
                        }
                        "226 done\r\n".to_string()
                    }
                    (None, _) => "550 no such file\r\n".to_string(),
                    (_, None) => "425 use PASV first\r\n".to_string(),
                }
            }
            "QUIT" => {
                let _ = s.get_mut().write_all(b"221 bye\r\n").await;
                return;
            }
            _ => "502 not implemented\r\n".to_string(),
        };
        if s.get_mut().write_all(reply.as_bytes()).await.is_err() {
            return;
        }
    }
}

// ------------------------------------------------------------------------------------------
// DNS
// ------------------------------------------------------------------------------------------

use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::rdata::{A, PTR};
use hickory_proto::rr::{Name, RData, Record, RecordType};

/// Answers: A www.example.test → 192.0.2.99; PTR 192.0.2.99 → www.example.test;
/// A big.example.test → truncated over UDP, 192.0.2.100 over TCP; anything else NXDOMAIN.
fn dns_answer(query: &[u8], udp: bool) -> Option<Vec<u8>> {
    let q = Message::from_vec(query).ok()?;
    let question = q.queries.first()?.clone();
    let mut r = Message::response(q.metadata.id, q.metadata.op_code);
    r.metadata.recursion_desired = q.metadata.recursion_desired;
    r.add_query(question.clone());
    let name = question.name().to_string();
    match (question.query_type(), name.as_str()) {
        (RecordType::A, "www.example.test.") => {
            r.add_answer(Record::from_rdata(question.name().clone(), 60, RData::A(A::new(192, 0, 2, 99))));
        }
        (RecordType::A, "big.example.test.") if udp => {
            r.metadata.truncation = true;
        }
        (RecordType::A, "big.example.test.") => {
            r.add_answer(Record::from_rdata(question.name().clone(), 60, RData::A(A::new(192, 0, 2, 100))));
        }
        (RecordType::PTR, "99.2.0.192.in-addr.arpa.") => {
            let target = Name::from_ascii("www.example.test.").ok()?;
            r.add_answer(Record::from_rdata(question.name().clone(), 60, RData::PTR(PTR(target))));
        }
        _ => r.metadata.response_code = ResponseCode::NXDomain,
    }
    r.metadata.message_type = MessageType::Response;
    r.to_vec().ok()
}

/// A DNS server on UDP and TCP, same port.
pub async fn dns_server() -> SocketAddr {
    let (udp, tcp) = loop {
        let udp = UdpSocket::bind(LOCAL).await.expect("udp");
        let a = udp.local_addr().expect("addr");
        if let Ok(tcp) = TcpListener::bind(a).await {
            break (udp, tcp);
        }
    };
    let a = udp.local_addr().expect("addr");
    tokio::spawn(async move {
        let mut buf = [0u8; 2048];
        while let Ok((n, from)) = udp.recv_from(&mut buf).await {
            if let Some(answer) = dns_answer(&buf[..n], true) {
                let _ = udp.send_to(&answer, from).await;
            }
        }
    });
    tokio::spawn(async move {
        while let Ok((mut s, _)) = tcp.accept().await {
            tokio::spawn(async move {
                let mut len = [0u8; 2];
                if s.read_exact(&mut len).await.is_err() {
                    return;
                }
                let mut q = vec![0u8; usize::from(u16::from_be_bytes(len))];
                if s.read_exact(&mut q).await.is_err() {
                    return;
                }
                if let Some(answer) = dns_answer(&q, false) {
                    let mut out = (answer.len() as u16).to_be_bytes().to_vec();
                    out.extend_from_slice(&answer);
                    let _ = s.write_all(&out).await;
                }
            });
        }
    });
    a
}

// ------------------------------------------------------------------------------------------
// SIP
// ------------------------------------------------------------------------------------------

/// A SIP responder on UDP and TCP (same port) answering OPTIONS with `status`; records the
/// request lines it saw.
pub async fn sip_server(status: &'static str) -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (udp, tcp) = loop {
        let udp = UdpSocket::bind(LOCAL).await.expect("udp");
        let a = udp.local_addr().expect("addr");
        if let Ok(tcp) = TcpListener::bind(a).await {
            break (udp, tcp);
        }
    };
    let a = udp.local_addr().expect("addr");
    let answer = move |req: &[u8]| -> Vec<u8> {
        let text = String::from_utf8_lossy(req);
        let call_id = text.lines().find(|l| l.starts_with("Call-ID:")).unwrap_or("Call-ID: x");
        format!("SIP/2.0 {status}\r\n{call_id}\r\nCSeq: 63104 OPTIONS\r\nContent-Length: 0\r\n\r\n")
            .into_bytes()
    };
    let s1 = seen.clone();
    tokio::spawn(async move {
        let mut buf = [0u8; 4096];
        while let Ok((n, from)) = udp.recv_from(&mut buf).await {
            let req = &buf[..n];
            s1.lock()
                .expect("lock")
                .push(String::from_utf8_lossy(req).lines().next().unwrap_or("").to_string());
            let _ = udp.send_to(&answer(req), from).await;
        }
    });
    let s2 = seen.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = tcp.accept().await {
            let s2 = s2.clone();
            tokio::spawn(async move {
                let mut s = BufReader::new(s);
                let mut req = Vec::new();
                loop {
                    let mut line = String::new();
                    match s.read_line(&mut line).await {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {}
                    }
                    req.extend_from_slice(line.as_bytes());
                    if line == "\r\n" {
                        break;
                    }
                }
                s2.lock()
                    .expect("lock")
                    .push(String::from_utf8_lossy(&req).lines().next().unwrap_or("").to_string());
                let _ = s.get_mut().write_all(&answer(&req)).await;
            });
        }
    });
    (a, seen)
}
