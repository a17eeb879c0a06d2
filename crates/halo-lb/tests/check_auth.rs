//! ldap, mysql, pgsql and radius: each up and down against small in-process servers on
//! 127.0.0.1 that check the client's handshake bytes the way the real servers do (the bind
//! DN and password, the MySQL scramble, the PostgreSQL md5 hash and SCRAM proof, the RADIUS
//! hidden password and authenticators), so the suite needs no database daemon.

#[path = "support/mod.rs"]
mod support;

use std::time::Duration;

use halo_lb::check::{run_check, CheckKind, CheckResult, CheckSpec};
use hmac::{Hmac, KeyInit, Mac};
use md5::Md5;
use sha1::Sha1;
use sha2::{Digest, Sha256};
use support::{addr, closed_port, listener, silent_server, silent_udp};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

const T: Duration = Duration::from_secs(5);

fn up(r: &CheckResult) {
    assert!(r.up, "expected up, got down: {}", r.reason);
}

fn down(r: &CheckResult, reason_part: &str) {
    assert!(!r.up, "expected down, got up: {}", r.reason);
    assert!(r.reason.contains(reason_part), "reason '{}' lacks '{reason_part}'", r.reason);
}

fn spec(
    kind: CheckKind,
    target: std::net::SocketAddr,
    login: &str,
    passwd: &str,
    request: &str,
) -> CheckSpec {
    let mut s = CheckSpec::new(kind, target, T).with_request(request);
    s.login = login.into();
    s.passwd = passwd.into();
    s
}

// ------------------------------------------------------------------------------------------
// LDAP
// ------------------------------------------------------------------------------------------

fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    if content.len() < 0x80 {
        out.push(content.len() as u8);
    } else {
        out.push(0x82);
        out.extend_from_slice(&(content.len() as u16).to_be_bytes());
    }
    out.extend_from_slice(content);
    out
}

/// (tag, content, rest)
fn ber(buf: &[u8]) -> (u8, &[u8], &[u8]) {
    let tag = buf[0];
    let (len, at) = if buf[1] < 0x80 {
        (buf[1] as usize, 2)
    } else {
        let n = (buf[1] & 0x7f) as usize;
        (buf[2..2 + n].iter().fold(0usize, |a, &b| a << 8 | b as usize), 2 + n)
    };
    (tag, &buf[at..at + len], &buf[at + len..])
}

fn ldap_msg(id: u8, op: Vec<u8>) -> Vec<u8> {
    let mut body = tlv(0x02, &[id]);
    body.extend(op);
    tlv(0x30, &body)
}

fn ldap_result(tag: u8, code: u8, text: &str) -> Vec<u8> {
    let mut r = tlv(0x0a, &[code]);
    r.extend(tlv(0x04, b""));
    r.extend(tlv(0x04, text.as_bytes()));
    tlv(tag, &r)
}

/// Directory: `dc=example,dc=test` and the root DSE; `cn=admin,dc=example,dc=test` binds
/// with `secret`; anonymous binds are allowed.
async fn ldap_conn(mut s: TcpStream) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        // One message at a time: wait until a whole one is buffered.
        while buf.len() < 2 || buf.len() < 2 + ber_len(&buf) {
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let whole = buf.clone();
        let (_, msg, rest) = ber(&whole);
        buf = rest.to_vec();
        let (_, id, msg) = ber(msg);
        let id = id[0];
        let (op, body, _) = ber(msg);
        let reply = match op {
            0x60 => {
                let (_, version, r) = ber(body);
                let (_, name, r) = ber(r);
                let (auth, pw, _) = ber(r);
                assert_eq!((version, auth), (&[3u8][..], 0x80), "LDAPv3 simple bind");
                let ok = name.is_empty() || (name == b"cn=admin,dc=example,dc=test" && pw == b"secret");
                ldap_msg(
                    id,
                    ldap_result(0x61, if ok { 0 } else { 49 }, if ok { "" } else { "bad credentials" }),
                )
            }
            0x63 => {
                let (_, base, r) = ber(body);
                let (_, scope, r) = ber(r);
                assert_eq!(scope, &[0u8][..], "base scope");
                let filter = r.iter().skip(12).take(0).count();
                let _ = filter;
                let mut out = Vec::new();
                if base.is_empty() || base == b"dc=example,dc=test" {
                    let mut entry = tlv(0x04, base);
                    entry.extend(tlv(0x30, b""));
                    out.extend(ldap_msg(id, tlv(0x64, &entry)));
                    out.extend(ldap_msg(id, ldap_result(0x65, 0, "")));
                } else {
                    out.extend(ldap_msg(id, ldap_result(0x65, 32, "no such object")));
                }
                out
            }
            0x42 => return,
            _ => panic!("unexpected LDAP operation {op:#x}"),
        };
        if s.write_all(&reply).await.is_err() {
            return;
        }
    }
}

fn ber_len(buf: &[u8]) -> usize {
    if buf[1] < 0x80 {
        buf[1] as usize
    } else {
        let n = (buf[1] & 0x7f) as usize;
        if buf.len() < 2 + n {
            return usize::MAX - 2;
        }
        n + buf[2..2 + n].iter().fold(0usize, |a, &b| a << 8 | b as usize)
    }
}

fn ldap_server() -> std::net::SocketAddr {
    let l = listener();
    let a = addr(&l);
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            tokio::spawn(ldap_conn(s));
        }
    });
    a
}

#[tokio::test]
async fn ldap() {
    let a = ldap_server();
    // Anonymous bind, the root DSE (ldirectord's default request "/").
    let r = run_check(&spec(CheckKind::Ldap, a, "", "", "/")).await;
    up(&r);
    assert!(r.reason.contains("root DSE"), "{}", r.reason);
    // A bind DN with its password, a base and a receive pattern on the DN.
    let s = spec(CheckKind::Ldap, a, "cn=admin,dc=example,dc=test", "secret", "/dc=example,dc=test")
        .with_receive("^dc=example")
        .unwrap();
    up(&run_check(&s).await);
    let s = spec(CheckKind::Ldap, a, "cn=admin,dc=example,dc=test", "wrong", "dc=example,dc=test");
    down(&run_check(&s).await, "invalidCredentials");
    // A login without a password binds anonymously, as ldirectord does.
    up(&run_check(&spec(CheckKind::Ldap, a, "cn=admin,dc=example,dc=test", "", "dc=example,dc=test")).await);
    down(&run_check(&spec(CheckKind::Ldap, a, "", "", "dc=missing")).await, "0 entries");
    let s = spec(CheckKind::Ldap, a, "", "", "dc=example,dc=test").with_receive("^ou=").unwrap();
    down(&run_check(&s).await, "does not match");
    down(&run_check(&spec(CheckKind::Ldap, closed_port(), "", "", "/")).await, "refused");
    down(
        &run_check(&CheckSpec::new(CheckKind::Ldap, silent_server(), Duration::from_millis(300))).await,
        "deadline",
    );
    // ldaps: the same over TLS; plain LDAP where TLS is expected is down.
    down(&run_check(&spec(CheckKind::Ldaps, a, "", "", "/")).await, "TLS");
}

// ------------------------------------------------------------------------------------------
// MySQL
// ------------------------------------------------------------------------------------------

async fn my_write(s: &mut TcpStream, seq: u8, body: &[u8]) {
    let mut p = (body.len() as u32).to_le_bytes()[..3].to_vec();
    p.push(seq);
    p.extend_from_slice(body);
    let _ = s.write_all(&p).await;
}

async fn my_read(s: &mut TcpStream) -> Option<(u8, Vec<u8>)> {
    let mut h = [0u8; 4];
    s.read_exact(&mut h).await.ok()?;
    let len = h[0] as usize | (h[1] as usize) << 8 | (h[2] as usize) << 16;
    let mut b = vec![0u8; len];
    s.read_exact(&mut b).await.ok()?;
    Some((h[3], b))
}

fn native_ok(nonce: &[u8], password: &[u8], scramble: &[u8]) -> bool {
    // What the server stores is SHA1(SHA1(pw)); it recovers SHA1(pw) from the scramble.
    let stored = Sha1::digest(Sha1::digest(password));
    let mut h = Sha1::new();
    h.update(nonce);
    h.update(stored);
    let h1: Vec<u8> = scramble.iter().zip(h.finalize().iter()).map(|(a, b)| a ^ b).collect();
    scramble.len() == 20 && Sha1::digest(&h1).as_slice() == stored.as_slice()
}

fn my_err(code: u16, state: &str, msg: &str) -> Vec<u8> {
    let mut p = vec![0xff];
    p.extend_from_slice(&code.to_le_bytes());
    p.push(b'#');
    p.extend_from_slice(state.as_bytes());
    p.extend_from_slice(msg.as_bytes());
    p
}

const MY_OK: &[u8] = &[0, 0, 0, 2, 0, 0, 0];
const MY_EOF: &[u8] = &[0xfe, 0, 0, 2, 0];

/// Users: `check`/`pw` (mysql_native_password), `switch`/`pw` (asked to switch method with a
/// fresh nonce). Queries: `SELECT 1` one row, `SELECT * FROM empty` none, others an error.
async fn mysql_conn(mut s: TcpStream) {
    let nonce: Vec<u8> = (b'a'..b'a' + 20).collect();
    let mut g = vec![10];
    g.extend_from_slice(b"10.11.6-MariaDB-fake\0");
    g.extend_from_slice(&7u32.to_le_bytes());
    g.extend_from_slice(&nonce[..8]);
    g.push(0);
    let caps: u32 = 0x0200 | 0x8000 | 0x8_0000 | 0x8 | 0x1;
    g.extend_from_slice(&(caps as u16).to_le_bytes());
    g.push(45);
    g.extend_from_slice(&2u16.to_le_bytes());
    g.extend_from_slice(&((caps >> 16) as u16).to_le_bytes());
    g.push(21);
    g.extend_from_slice(&[0; 10]);
    g.extend_from_slice(&nonce[8..]);
    g.push(0);
    g.extend_from_slice(b"mysql_native_password\0");
    my_write(&mut s, 0, &g).await;
    let Some((seq, resp)) = my_read(&mut s).await else { return };
    assert_eq!(seq, 1);
    let flags = u32::from_le_bytes(resp[..4].try_into().unwrap());
    assert!(flags & 0x200 != 0 && flags & 0x8000 != 0, "protocol 4.1, secure connection");
    let rest = &resp[32..];
    let nul = rest.iter().position(|&b| b == 0).unwrap();
    let user = String::from_utf8_lossy(&rest[..nul]).to_string();
    let alen = rest[nul + 1] as usize;
    let scramble = rest[nul + 2..nul + 2 + alen].to_vec();
    let after = &rest[nul + 2 + alen..];
    if flags & 0x8 != 0 {
        assert!(after.starts_with(b"appdb\0"), "the database follows the scramble");
    }
    let mut seq = 2;
    let ok = match user.as_str() {
        "check" => native_ok(&nonce, b"pw", &scramble),
        "switch" => {
            let fresh: Vec<u8> = (b'A'..b'A' + 20).collect();
            let mut sw = vec![0xfe];
            sw.extend_from_slice(b"mysql_native_password\0");
            sw.extend_from_slice(&fresh);
            sw.push(0);
            my_write(&mut s, seq, &sw).await;
            let Some((n, again)) = my_read(&mut s).await else { return };
            seq = n + 1;
            native_ok(&fresh, b"pw", &again)
        }
        _ => false,
    };
    if !ok {
        my_write(&mut s, seq, &my_err(1045, "28000", &format!("Access denied for user '{user}'"))).await;
        return;
    }
    my_write(&mut s, seq, MY_OK).await;
    let Some((0, q)) = my_read(&mut s).await else { return };
    assert_eq!(q[0], 3, "COM_QUERY");
    let query = String::from_utf8_lossy(&q[1..]).to_string();
    let rows: Vec<&[u8]> = match query.as_str() {
        "SELECT 1" => vec![b"\x011"],
        "SELECT * FROM empty" => vec![],
        _ => {
            my_write(&mut s, 1, &my_err(1064, "42000", "You have an error in your SQL syntax")).await;
            return;
        }
    };
    my_write(&mut s, 1, &[1]).await; // one column
    let mut col = Vec::new();
    for f in ["def", "", "", "", "1", ""] {
        col.push(f.len() as u8);
        col.extend_from_slice(f.as_bytes());
    }
    col.extend_from_slice(&[0x0c, 63, 0, 1, 0, 0, 0, 8, 0x81, 0, 0, 0, 0]);
    my_write(&mut s, 2, &col).await;
    my_write(&mut s, 3, MY_EOF).await;
    let mut n = 4;
    for r in rows {
        my_write(&mut s, n, r).await;
        n += 1;
    }
    my_write(&mut s, n, MY_EOF).await;
    let _ = my_read(&mut s).await; // COM_QUIT
}

fn mysql_server() -> std::net::SocketAddr {
    let l = listener();
    let a = addr(&l);
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            tokio::spawn(mysql_conn(s));
        }
    });
    a
}

#[tokio::test]
async fn mysql() {
    let a = mysql_server();
    let r = run_check(&spec(CheckKind::Mysql, a, "check", "pw", "SELECT 1")).await;
    up(&r);
    assert!(r.reason.contains("1 row"), "{}", r.reason);
    let mut s = spec(CheckKind::Mysql, a, "check", "pw", "/SELECT 1");
    s.database = "appdb".into();
    up(&run_check(&s).await);
    up(&run_check(&spec(CheckKind::Mysql, a, "switch", "pw", "SELECT 1")).await);
    down(&run_check(&spec(CheckKind::Mysql, a, "check", "wrong", "SELECT 1")).await, "1045 (28000)");
    down(&run_check(&spec(CheckKind::Mysql, a, "switch", "wrong", "SELECT 1")).await, "Access denied");
    down(&run_check(&spec(CheckKind::Mysql, a, "check", "pw", "SELECT * FROM empty")).await, "no row");
    down(&run_check(&spec(CheckKind::Mysql, a, "check", "pw", "SELEKT")).await, "1064");
    // ldirectord refuses to check without a login or a request.
    down(&run_check(&spec(CheckKind::Mysql, a, "", "", "SELECT 1")).await, "needs a login and a request");
    down(&run_check(&spec(CheckKind::Mysql, a, "check", "pw", "/")).await, "needs a login and a request");
    down(&run_check(&spec(CheckKind::Mysql, closed_port(), "check", "pw", "SELECT 1")).await, "refused");
}

// ------------------------------------------------------------------------------------------
// PostgreSQL
// ------------------------------------------------------------------------------------------

async fn pg_write(s: &mut TcpStream, tag: u8, body: &[u8]) {
    let mut p = vec![tag];
    p.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
    p.extend_from_slice(body);
    let _ = s.write_all(&p).await;
}

async fn pg_read(s: &mut TcpStream) -> Option<(u8, Vec<u8>)> {
    let mut h = [0u8; 5];
    s.read_exact(&mut h).await.ok()?;
    let len = u32::from_be_bytes(h[1..].try_into().unwrap()) as usize;
    let mut b = vec![0u8; len - 4];
    s.read_exact(&mut b).await.ok()?;
    Some((h[0], b))
}

fn pg_error(msg: &str) -> Vec<u8> {
    let mut e = b"SFATAL\0VFATAL\0C28P01\0M".to_vec();
    e.extend_from_slice(msg.as_bytes());
    e.extend_from_slice(b"\0\0");
    e
}

fn hmac256(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut m = <Hmac<Sha256> as KeyInit>::new_from_slice(key).unwrap();
    m.update(data);
    m.finalize().into_bytes().to_vec()
}

fn b64(bytes: &[u8]) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in bytes.chunks(3) {
        let n = (c[0] as u32) << 16 | (*c.get(1).unwrap_or(&0) as u32) << 8 | *c.get(2).unwrap_or(&0) as u32;
        for i in 0..4 {
            out.push(if i <= c.len() { A[(n >> (18 - 6 * i) & 63) as usize] as char } else { '=' });
        }
    }
    out
}

/// The server side of SCRAM-SHA-256 for password `pw`: true iff the client's proof is right;
/// sends the server-final message.
async fn scram_server(s: &mut TcpStream, pw: &str) -> bool {
    let mut sasl = b"SCRAM-SHA-256\0\0".to_vec();
    sasl.splice(0..0, 10u32.to_be_bytes());
    pg_write(s, b'R', &sasl).await;
    let Some((b'p', init)) = pg_read(s).await else { return false };
    assert!(init.starts_with(b"SCRAM-SHA-256\0"));
    let first = String::from_utf8_lossy(&init[14 + 4..]).to_string();
    let bare = first.strip_prefix("n,,").expect("no channel binding").to_string();
    let cnonce = bare.split(",r=").nth(1).unwrap().to_string();
    let salt = b"pepper-salt-1234";
    let nonce = format!("{cnonce}srvNONCE");
    let server_first = format!("r={nonce},s={},i=4096", b64(salt));
    let mut m = 11u32.to_be_bytes().to_vec();
    m.extend_from_slice(server_first.as_bytes());
    pg_write(s, b'R', &m).await;
    let Some((b'p', fin)) = pg_read(s).await else { return false };
    let fin = String::from_utf8_lossy(&fin).to_string();
    let (without, proof) = fin.rsplit_once(",p=").unwrap();
    // PBKDF2 by hand, independently of the client's code.
    let mut u = hmac256(pw.as_bytes(), &[&salt[..], &[0, 0, 0, 1]].concat());
    let mut salted = u.clone();
    for _ in 1..4096 {
        u = hmac256(pw.as_bytes(), &u);
        salted.iter_mut().zip(&u).for_each(|(a, b)| *a ^= b);
    }
    let client_key = hmac256(&salted, b"Client Key");
    let stored = Sha256::digest(&client_key);
    let auth = format!("{bare},{server_first},{without}");
    let sig = hmac256(&stored, auth.as_bytes());
    let expected: Vec<u8> = client_key.iter().zip(&sig).map(|(a, b)| a ^ b).collect();
    if proof != b64(&expected) {
        return false;
    }
    let server_sig = hmac256(&hmac256(&salted, b"Server Key"), auth.as_bytes());
    let mut m = 12u32.to_be_bytes().to_vec();
    m.extend_from_slice(format!("v={}", b64(&server_sig)).as_bytes());
    pg_write(s, b'R', &m).await;
    true
}

/// Users: `trusted` (trust), `clear`/`pw` (cleartext), `md5user`/`pw` (md5), `scram`/`pw`
/// (SCRAM-SHA-256). Queries: `SELECT 1` one row, `SELECT none` none, others an error.
async fn pg_conn(mut s: TcpStream) {
    let mut len = [0u8; 4];
    if s.read_exact(&mut len).await.is_err() {
        return;
    }
    let mut startup = vec![0u8; u32::from_be_bytes(len) as usize - 4];
    let _ = s.read_exact(&mut startup).await;
    assert_eq!(&startup[..4], &196_608u32.to_be_bytes(), "protocol 3.0");
    let fields: Vec<String> =
        startup[4..].split(|&b| b == 0).map(|f| String::from_utf8_lossy(f).to_string()).collect();
    let user = fields.iter().position(|f| f == "user").map(|i| fields[i + 1].clone()).unwrap();
    let ok = match user.as_str() {
        "trusted" => true,
        "clear" => {
            pg_write(&mut s, b'R', &3u32.to_be_bytes()).await;
            matches!(pg_read(&mut s).await, Some((b'p', p)) if p == b"pw\0")
        }
        "md5user" => {
            let mut m = 5u32.to_be_bytes().to_vec();
            m.extend_from_slice(b"\x01\x02\x03\x04");
            pg_write(&mut s, b'R', &m).await;
            let hex = |d: &[u8]| d.iter().map(|b| format!("{b:02x}")).collect::<String>();
            let inner = hex(&Md5::digest(b"pwmd5user"));
            let outer = hex(&Md5::digest([inner.as_bytes(), b"\x01\x02\x03\x04"].concat()));
            matches!(pg_read(&mut s).await, Some((b'p', p)) if p == format!("md5{outer}\0").as_bytes())
        }
        "scram" => scram_server(&mut s, "pw").await,
        _ => false,
    };
    if !ok {
        pg_write(&mut s, b'E', &pg_error(&format!("password authentication failed for user \"{user}\"")))
            .await;
        return;
    }
    pg_write(&mut s, b'R', &0u32.to_be_bytes()).await;
    pg_write(&mut s, b'S', b"server_version\x0015.8\0").await;
    pg_write(&mut s, b'K', &[0, 0, 0, 1, 0, 0, 0, 2]).await;
    pg_write(&mut s, b'Z', b"I").await;
    let Some((b'Q', q)) = pg_read(&mut s).await else { return };
    match &q[..] {
        b"SELECT 1\0" => {
            pg_write(&mut s, b'T', b"\x00\x01?column?\0\0\0\0\0\0\0\0\0\0\x17\0\x04\xff\xff\xff\xff\0\0")
                .await;
            pg_write(&mut s, b'D', b"\x00\x01\x00\x00\x00\x011").await;
            pg_write(&mut s, b'C', b"SELECT 1\0").await;
        }
        b"SELECT none\0" => pg_write(&mut s, b'C', b"SELECT 0\0").await,
        _ => pg_write(&mut s, b'E', b"SERROR\0C42601\0Msyntax error\0\0").await,
    }
    pg_write(&mut s, b'Z', b"I").await;
    let _ = pg_read(&mut s).await; // Terminate
}

fn pg_server() -> std::net::SocketAddr {
    let l = listener();
    let a = addr(&l);
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            tokio::spawn(pg_conn(s));
        }
    });
    a
}

#[tokio::test]
async fn pgsql() {
    let a = pg_server();
    for user in ["trusted", "clear", "md5user", "scram"] {
        let r = run_check(&spec(CheckKind::Pgsql, a, user, "pw", "SELECT 1")).await;
        up(&r);
        assert!(r.reason.contains("PostgreSQL 15.8"), "{}", r.reason);
    }
    for user in ["clear", "md5user", "scram"] {
        down(&run_check(&spec(CheckKind::Pgsql, a, user, "wrong", "SELECT 1")).await, "28P01");
    }
    down(&run_check(&spec(CheckKind::Pgsql, a, "trusted", "", "SELECT none")).await, "no row");
    down(&run_check(&spec(CheckKind::Pgsql, a, "trusted", "", "SELEKT")).await, "syntax error");
    down(&run_check(&spec(CheckKind::Pgsql, a, "", "", "SELECT 1")).await, "needs a login and a request");
    down(&run_check(&spec(CheckKind::Pgsql, closed_port(), "trusted", "", "SELECT 1")).await, "refused");
}

// ------------------------------------------------------------------------------------------
// RADIUS
// ------------------------------------------------------------------------------------------

fn hmac_md5(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut m = <Hmac<Md5> as KeyInit>::new_from_slice(key).unwrap();
    m.update(data);
    m.finalize().into_bytes().to_vec()
}

/// A RADIUS server with `secret`: `alice`/`pw` is accepted, anyone else rejected. It checks
/// the request's Message-Authenticator and recovers the password as RFC 2865 says.
async fn radius_server(secret: &'static str) -> std::net::SocketAddr {
    let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let a = s.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = [0u8; 4096];
        while let Ok((n, peer)) = s.recv_from(&mut buf).await {
            let req = &buf[..n];
            assert_eq!(req[0], 1, "Access-Request");
            let ra = &req[4..20];
            let (mut user, mut hidden, mut ma_ok) = (Vec::new(), Vec::new(), false);
            let mut at = 20;
            while at < req.len() {
                let (t, l) = (req[at], req[at + 1] as usize);
                let v = &req[at + 2..at + l];
                match t {
                    1 => user = v.to_vec(),
                    2 => hidden = v.to_vec(),
                    80 => {
                        let mut copy = req.to_vec();
                        copy[at + 2..at + l].fill(0);
                        ma_ok = hmac_md5(secret.as_bytes(), &copy) == v;
                    }
                    _ => {}
                }
                at += l;
            }
            // A wrong Message-Authenticator is dropped silently, as FreeRADIUS does.
            if !ma_ok {
                continue;
            }
            let mut clear = Vec::new();
            let mut prev = ra.to_vec();
            for block in hidden.chunks(16) {
                let key = Md5::digest([secret.as_bytes(), &prev].concat());
                clear.extend(block.iter().zip(key.iter()).map(|(a, b)| a ^ b));
                prev = block.to_vec();
            }
            while clear.last() == Some(&0) {
                clear.pop();
            }
            let accept = user == b"alice" && clear == b"pw";
            let msg: &[u8] = if accept { b"welcome" } else { b"go away" };
            let mut resp = vec![if accept { 2 } else { 3 }, req[1], 0, 0];
            resp.extend_from_slice(ra);
            resp.push(18);
            resp.push(msg.len() as u8 + 2);
            resp.extend_from_slice(msg);
            let len = resp.len() as u16;
            resp[2..4].copy_from_slice(&len.to_be_bytes());
            let auth = Md5::digest([&resp[..], secret.as_bytes()].concat());
            resp[4..20].copy_from_slice(&auth);
            let _ = s.send_to(&resp, peer).await;
        }
    });
    a
}

#[tokio::test]
async fn radius() {
    let a = radius_server("testing123").await;
    let mut s = spec(CheckKind::Radius, a, "alice", "pw", "/");
    s.secret = "testing123".into();
    let r = run_check(&s).await;
    up(&r);
    assert!(r.reason.contains("Access-Accept 'welcome'"), "{}", r.reason);
    // ldirectord's check_pwd is true only for Access-Accept: a reject is down.
    s.passwd = "wrong".into();
    down(&run_check(&s).await, "Access-Reject 'go away'");
    // A server with another secret drops the request (bad Message-Authenticator).
    let other = radius_server("another").await;
    let mut s = CheckSpec::new(CheckKind::Radius, other, Duration::from_millis(400));
    s.login = "alice".into();
    s.passwd = "pw".into();
    s.secret = "testing123".into();
    down(&run_check(&s).await, "deadline");
    s.target = silent_udp().await;
    down(&run_check(&s).await, "deadline");
    s.login = String::new();
    down(&run_check(&s).await, "login");
}
