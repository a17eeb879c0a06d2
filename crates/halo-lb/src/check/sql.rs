//! mysql and pgsql: ldirectord's check_sql (DBI) — log in as `login` with `passwd` to
//! `database`, run `request` (leading `/` dropped), up iff it returns at least one row.
//! As in ldirectord, a check without a login or without a request is down ("Must specify a
//! login and request string").
//!
//! Both wire protocols are spoken here over tokio rather than through a driver crate: a
//! health check needs one login and one simple query, not a pool, prepared statements or
//! type decoding, and the driver crates (mysql_async, tokio-postgres, sqlx) each bring dozens
//! of dependencies and their own TLS stack for that. What is covered:
//!
//! * MySQL/MariaDB: protocol 10 handshake, `mysql_native_password` and the fast path of
//!   `caching_sha2_password` (MySQL 8's default; its full path needs TLS or RSA and is
//!   reported as such), authentication switch requests, `COM_QUERY` and its result set.
//! * PostgreSQL: protocol 3.0 startup, trust, cleartext, md5 and SCRAM-SHA-256 (the default
//!   since PostgreSQL 14) authentication, the simple query protocol.
//!
//! Every packet is capped ([`MAX_READ`] per packet, [`MAX_READ`] × 4 per answer).

use hmac::{Hmac, KeyInit, Mac};
use md5::Md5;
use sha1::Sha1;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use super::crypto::{base64_decode, base64_encode, hex, random_bytes};
use super::io::{connect_tcp, eof};
use super::{printable, CheckSpec, Outcome, MAX_READ};

/// The query and login ldirectord insists on.
fn query_of(spec: &CheckSpec) -> Result<&str, String> {
    let query = spec.request_body();
    if spec.login.is_empty() || query.trim().is_empty() {
        return Err("a mysql/pgsql check needs a login and a request (the SELECT to run), as in ldirectord"
            .to_string());
    }
    Ok(query)
}

fn rows_outcome(rows: u64, query: &str) -> Outcome {
    if rows > 0 {
        Ok(format!(
            "'{}' returned {rows} row{}",
            printable(query.as_bytes()),
            if rows == 1 { "" } else { "s" }
        ))
    } else {
        Err(format!("'{}' returned no row", printable(query.as_bytes())))
    }
}

// ==========================================================================================
// MySQL / MariaDB
// ==========================================================================================

const CLIENT_LONG_PASSWORD: u32 = 0x1;
const CLIENT_CONNECT_WITH_DB: u32 = 0x8;
const CLIENT_PROTOCOL_41: u32 = 0x200;
const CLIENT_TRANSACTIONS: u32 = 0x2000;
const CLIENT_SECURE_CONNECTION: u32 = 0x8000;
const CLIENT_PLUGIN_AUTH: u32 = 0x8_0000;

struct MyConn {
    r: BufReader<TcpStream>,
    seq: u8,
}

impl MyConn {
    async fn read(&mut self) -> Result<Vec<u8>, String> {
        let mut head = [0u8; 4];
        self.r.read_exact(&mut head).await.map_err(|e| eof("instead of a MySQL packet", e))?;
        let len = usize::from(head[0]) | usize::from(head[1]) << 8 | usize::from(head[2]) << 16;
        if len > MAX_READ {
            return Err(format!("MySQL packet of {len} bytes, more than {MAX_READ}"));
        }
        self.seq = head[3].wrapping_add(1);
        let mut body = vec![0u8; len];
        self.r.read_exact(&mut body).await.map_err(|e| eof("instead of a MySQL packet", e))?;
        Ok(body)
    }

    async fn write(&mut self, body: &[u8]) -> Result<(), String> {
        let len = body.len() as u32;
        let mut p = len.to_le_bytes()[..3].to_vec();
        p.push(self.seq);
        p.extend_from_slice(body);
        self.seq = self.seq.wrapping_add(1);
        let w = self.r.get_mut();
        w.write_all(&p).await.map_err(|e| format!("send: {e}"))?;
        w.flush().await.map_err(|e| format!("send: {e}"))
    }
}

/// `ERR` packet → "1045 (28000): Access denied …".
fn my_error(p: &[u8]) -> String {
    let code = p.get(1..3).map_or(0, |c| u16::from_le_bytes([c[0], c[1]]));
    let rest = p.get(3..).unwrap_or_default();
    let (state, msg) = match rest.strip_prefix(b"#") {
        Some(r) if r.len() >= 5 => (String::from_utf8_lossy(&r[..5]).into_owned(), &r[5..]),
        _ => (String::new(), rest),
    };
    if state.is_empty() {
        format!("error {code}: {}", printable(msg))
    } else {
        format!("error {code} ({state}): {}", printable(msg))
    }
}

fn cstr(p: &[u8]) -> (&[u8], &[u8]) {
    match p.iter().position(|&b| b == 0) {
        Some(i) => (&p[..i], &p[i + 1..]),
        None => (p, &[]),
    }
}

/// Length-encoded integer; `None` on a short buffer or the NULL marker.
fn lenenc(p: &[u8]) -> Option<(u64, &[u8])> {
    let (&first, rest) = p.split_first()?;
    let n = match first {
        0..=0xfa => return Some((u64::from(first), rest)),
        0xfc => 2,
        0xfd => 3,
        0xfe => 8,
        _ => return None,
    };
    let bytes = rest.get(..n)?;
    let v = bytes.iter().rev().fold(0u64, |acc, &b| (acc << 8) | u64::from(b));
    Some((v, &rest[n..]))
}

/// The scramble for `plugin` from the password and the server's nonce.
pub(crate) fn mysql_scramble(plugin: &[u8], password: &[u8], nonce: &[u8]) -> Result<Vec<u8>, String> {
    if password.is_empty() {
        return Ok(Vec::new());
    }
    match plugin {
        b"mysql_native_password" | b"" => {
            // SHA1(pw) XOR SHA1(nonce + SHA1(SHA1(pw)))
            let h1 = Sha1::digest(password);
            let h2 = Sha1::digest(h1);
            let mut h = Sha1::new();
            h.update(nonce.get(..20).unwrap_or(nonce));
            h.update(h2);
            Ok(h1.iter().zip(h.finalize().iter()).map(|(a, b)| a ^ b).collect())
        }
        b"caching_sha2_password" => {
            // SHA256(pw) XOR SHA256(SHA256(SHA256(pw)) + nonce)
            let h1 = Sha256::digest(password);
            let h2 = Sha256::digest(h1);
            let mut h = Sha256::new();
            h.update(h2);
            h.update(nonce.get(..20).unwrap_or(nonce));
            Ok(h1.iter().zip(h.finalize().iter()).map(|(a, b)| a ^ b).collect())
        }
        b"mysql_clear_password" => {
            let mut v = password.to_vec();
            v.push(0);
            Ok(v)
        }
        other => Err(format!(
            "the server asks for the {} authentication, which halo does not speak",
            printable(other)
        )),
    }
}

pub(crate) async fn mysql(spec: &CheckSpec) -> Outcome {
    let query = query_of(spec)?;
    let tcp = connect_tcp(spec.target).await?;
    let mut c = MyConn { r: BufReader::new(tcp), seq: 0 };
    let hello = c.read().await?;
    if hello.first() == Some(&0xff) {
        return Err(format!("refused at connect: {}", my_error(&hello)));
    }
    if hello.first() != Some(&10) {
        return Err("not a MySQL protocol 10 greeting".to_string());
    }
    let bad = || "malformed MySQL greeting".to_string();
    let (version, rest) = cstr(&hello[1..]);
    let version = printable(version);
    let rest = rest.get(4..).ok_or_else(bad)?; // connection id
    let mut nonce = rest.get(..8).ok_or_else(bad)?.to_vec();
    let rest = rest.get(9..).ok_or_else(bad)?; // nonce part 1, filler
    let caps_lo =
        u32::from(u16::from_le_bytes([*rest.first().ok_or_else(bad)?, *rest.get(1).ok_or_else(bad)?]));
    let mut caps = caps_lo;
    let mut plugin: Vec<u8> = b"mysql_native_password".to_vec();
    if rest.len() >= 15 {
        caps |= u32::from(u16::from_le_bytes([rest[5], rest[6]])) << 16;
        let auth_len = usize::from(rest[7]);
        let tail = rest.get(18..).unwrap_or_default();
        if caps & CLIENT_SECURE_CONNECTION != 0 {
            let n = auth_len.saturating_sub(8).max(13).min(tail.len());
            let (part2, after) = tail.split_at(n);
            // The second part ends with a NUL that is not part of the nonce.
            nonce.extend_from_slice(cstr(part2).0);
            if caps & CLIENT_PLUGIN_AUTH != 0 {
                plugin = cstr(after).0.to_vec();
            }
        }
    }
    if caps & CLIENT_PROTOCOL_41 == 0 {
        return Err(format!("MySQL {version} predates protocol 4.1"));
    }
    let db = spec.database.as_str();
    let mut flags = CLIENT_LONG_PASSWORD
        | CLIENT_PROTOCOL_41
        | CLIENT_TRANSACTIONS
        | CLIENT_SECURE_CONNECTION
        | (caps & CLIENT_PLUGIN_AUTH);
    if !db.is_empty() {
        flags |= CLIENT_CONNECT_WITH_DB;
    }
    let auth = mysql_scramble(&plugin, spec.passwd.as_bytes(), &nonce)?;
    let mut p = flags.to_le_bytes().to_vec();
    p.extend_from_slice(&(1u32 << 24).to_le_bytes());
    p.push(45); // utf8mb4_general_ci
    p.extend_from_slice(&[0u8; 23]);
    p.extend_from_slice(spec.login.as_bytes());
    p.push(0);
    p.push(auth.len() as u8);
    p.extend_from_slice(&auth);
    if !db.is_empty() {
        p.extend_from_slice(db.as_bytes());
        p.push(0);
    }
    if flags & CLIENT_PLUGIN_AUTH != 0 {
        p.extend_from_slice(&plugin);
        p.push(0);
    }
    c.write(&p).await?;
    // Authentication: OK, ERR, a switch to another method, or caching_sha2's extra data.
    for _ in 0..4 {
        let r = c.read().await?;
        match r.first() {
            Some(0x00) => return mysql_query(&mut c, query, &version).await,
            Some(0xff) => return Err(format!("login as {} refused: {}", spec.login, my_error(&r))),
            Some(0xfe) => {
                let (name, data) = cstr(&r[1..]);
                plugin = name.to_vec();
                let nonce = cstr(data).0.to_vec();
                let auth = mysql_scramble(&plugin, spec.passwd.as_bytes(), &nonce)?;
                c.write(&auth).await?;
            }
            Some(0x01) => match r.get(1) {
                Some(3) => {} // fast authentication succeeded: an OK follows
                Some(4) => {
                    return Err(format!(
                        "MySQL {version} asks for caching_sha2_password's full authentication (TLS or RSA), \
                         which halo's check does not do: log in once with a client to fill the server's cache, \
                         or use mysql_native_password for the check's user"
                    ))
                }
                _ => return Err("unexpected authentication data from the server".to_string()),
            },
            _ => return Err("unexpected answer to the login".to_string()),
        }
    }
    Err("authentication did not finish".to_string())
}

async fn mysql_query(c: &mut MyConn, query: &str, version: &str) -> Outcome {
    c.seq = 0;
    let mut p = vec![0x03];
    p.extend_from_slice(query.as_bytes());
    c.write(&p).await?;
    let first = c.read().await?;
    match first.first() {
        Some(0xff) => return Err(format!("'{}': {}", printable(query.as_bytes()), my_error(&first))),
        Some(0x00) => return rows_outcome(0, query), // not a SELECT: no result set
        _ => {}
    }
    let columns = lenenc(&first).map(|(n, _)| n).ok_or("malformed result set header")?;
    let mut read = first.len();
    let mut eofs = 0;
    let mut rows = 0u64;
    // Column definitions, EOF, rows, EOF (servers without CLIENT_DEPRECATE_EOF, which we do
    // not ask for).
    let mut seen_columns = 0u64;
    loop {
        let p = c.read().await?;
        read += p.len();
        if read > 4 * MAX_READ {
            break;
        }
        if p.first() == Some(&0xff) {
            return Err(format!("'{}': {}", printable(query.as_bytes()), my_error(&p)));
        }
        if p.first() == Some(&0xfe) && p.len() < 9 {
            eofs += 1;
            if eofs == 2 {
                break;
            }
            continue;
        }
        if eofs == 0 {
            seen_columns += 1;
        } else {
            rows += 1;
        }
    }
    let _ = seen_columns == columns;
    c.seq = 0;
    let _ = c.write(&[0x01]).await; // COM_QUIT
    rows_outcome(rows, query).map(|ok| format!("MySQL {version}: {ok}"))
}

// ==========================================================================================
// PostgreSQL
// ==========================================================================================

struct PgConn {
    r: BufReader<TcpStream>,
}

impl PgConn {
    async fn read(&mut self) -> Result<(u8, Vec<u8>), String> {
        let mut head = [0u8; 5];
        self.r.read_exact(&mut head).await.map_err(|e| eof("instead of a PostgreSQL message", e))?;
        let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
        if !(4..=MAX_READ).contains(&len) {
            return Err(format!("PostgreSQL message of {len} bytes"));
        }
        let mut body = vec![0u8; len - 4];
        self.r.read_exact(&mut body).await.map_err(|e| eof("instead of a PostgreSQL message", e))?;
        Ok((head[0], body))
    }

    async fn write(&mut self, tag: Option<u8>, body: &[u8]) -> Result<(), String> {
        let mut p = Vec::with_capacity(body.len() + 5);
        p.extend(tag);
        p.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
        p.extend_from_slice(body);
        let w = self.r.get_mut();
        w.write_all(&p).await.map_err(|e| format!("send: {e}"))?;
        w.flush().await.map_err(|e| format!("send: {e}"))
    }
}

/// ErrorResponse fields → "FATAL 28P01: password authentication failed for user …".
fn pg_error(body: &[u8]) -> String {
    let (mut severity, mut code, mut msg) = (String::new(), String::new(), String::new());
    let mut rest = body;
    while let Some((&t, r)) = rest.split_first() {
        if t == 0 {
            break;
        }
        let (v, after) = cstr(r);
        match t {
            b'V' => severity = printable(v),
            b'S' if severity.is_empty() => severity = printable(v),
            b'C' => code = printable(v),
            b'M' => msg = printable(v),
            _ => {}
        }
        rest = after;
    }
    format!("{severity} {code}: {msg}")
}

fn hmac256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut out = [0u8; 32];
    if let Ok(mut mac) = <Hmac<Sha256> as KeyInit>::new_from_slice(key) {
        for p in parts {
            mac.update(p);
        }
        out.copy_from_slice(&mac.finalize().into_bytes());
    }
    out
}

/// PBKDF2-HMAC-SHA-256 with one output block (32 bytes), SCRAM's Hi().
pub(crate) fn hi(password: &[u8], salt: &[u8], iterations: u32) -> [u8; 32] {
    let mut u = hmac256(password, &[salt, &1u32.to_be_bytes()]);
    let mut out = u;
    for _ in 1..iterations {
        u = hmac256(password, &[&u]);
        for (o, x) in out.iter_mut().zip(u.iter()) {
            *o ^= x;
        }
    }
    out
}

/// The SCRAM-SHA-256 client (RFC 5802/7677, channel binding not used: `n,,`).
pub(crate) struct Scram {
    nonce: String,
    client_first_bare: String,
    server_signature: Option<[u8; 32]>,
}

impl Scram {
    pub(crate) fn new() -> Scram {
        let nonce = base64_encode(&random_bytes(18));
        // PostgreSQL takes the user from the startup message and ignores n= here.
        let client_first_bare = format!("n=,r={nonce}");
        Scram { nonce, client_first_bare, server_signature: None }
    }

    pub(crate) fn client_first(&self) -> String {
        format!("n,,{}", self.client_first_bare)
    }

    /// The client-final message for the server-first one.
    pub(crate) fn client_final(&mut self, server_first: &str, password: &str) -> Result<String, String> {
        let bad = || format!("malformed SCRAM server-first message '{}'", printable(server_first.as_bytes()));
        let mut nonce = None;
        let mut salt = None;
        let mut iterations = None;
        for part in server_first.split(',') {
            match part.split_at_checked(2) {
                Some(("r=", v)) => nonce = Some(v),
                Some(("s=", v)) => salt = base64_decode(v),
                Some(("i=", v)) => iterations = v.parse::<u32>().ok(),
                _ => {}
            }
        }
        let (nonce, salt, iterations) =
            (nonce.ok_or_else(bad)?, salt.ok_or_else(bad)?, iterations.ok_or_else(bad)?);
        if !nonce.starts_with(&self.nonce) || iterations == 0 || iterations > 1_000_000 {
            return Err(bad());
        }
        let salted = hi(password.as_bytes(), &salt, iterations);
        let client_key = hmac256(&salted, &[b"Client Key"]);
        let stored_key: [u8; 32] = Sha256::digest(client_key).into();
        let without_proof = format!("c=biws,r={nonce}");
        let auth_message = format!("{},{server_first},{without_proof}", self.client_first_bare);
        let signature = hmac256(&stored_key, &[auth_message.as_bytes()]);
        let proof: Vec<u8> = client_key.iter().zip(signature.iter()).map(|(a, b)| a ^ b).collect();
        let server_key = hmac256(&salted, &[b"Server Key"]);
        self.server_signature = Some(hmac256(&server_key, &[auth_message.as_bytes()]));
        Ok(format!("{without_proof},p={}", base64_encode(&proof)))
    }

    /// Checks the server-final message: the server knew the password too.
    pub(crate) fn verify(&self, server_final: &str) -> Result<(), String> {
        let sig = server_final.strip_prefix("v=").and_then(base64_decode);
        match (sig, self.server_signature) {
            (Some(s), Some(expected)) if s == expected => Ok(()),
            _ => Err("the server's SCRAM signature is wrong".to_string()),
        }
    }
}

pub(crate) async fn pgsql(spec: &CheckSpec) -> Outcome {
    let query = query_of(spec)?;
    if query.contains('\0') {
        return Err("the request holds a NUL byte".to_string());
    }
    let tcp = connect_tcp(spec.target).await?;
    let mut c = PgConn { r: BufReader::new(tcp) };
    let mut startup = 196_608u32.to_be_bytes().to_vec(); // protocol 3.0
    let mut param = |k: &str, v: &str| {
        startup.extend_from_slice(k.as_bytes());
        startup.push(0);
        startup.extend_from_slice(v.as_bytes());
        startup.push(0);
    };
    param("user", &spec.login);
    if !spec.database.is_empty() {
        param("database", &spec.database);
    }
    param("application_name", "halo-check");
    startup.push(0);
    c.write(None, &startup).await?;
    let mut scram: Option<Scram> = None;
    let mut version = String::new();
    loop {
        let (tag, body) = c.read().await?;
        match tag {
            b'E' => return Err(format!("login as {} refused: {}", spec.login, pg_error(&body))),
            b'R' => {
                let code = body.get(..4).map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
                let data = body.get(4..).unwrap_or_default();
                match code {
                    Some(0) => {}
                    Some(3) => {
                        let mut p = spec.passwd.as_bytes().to_vec();
                        p.push(0);
                        c.write(Some(b'p'), &p).await?;
                    }
                    Some(5) => {
                        let salt = data.get(..4).ok_or("malformed md5 request")?;
                        let inner =
                            hex(&Md5::digest([spec.passwd.as_bytes(), spec.login.as_bytes()].concat()));
                        let outer = hex(&Md5::digest([inner.as_bytes(), salt].concat()));
                        let mut p = format!("md5{outer}").into_bytes();
                        p.push(0);
                        c.write(Some(b'p'), &p).await?;
                    }
                    Some(10) => {
                        let offers: Vec<&[u8]> = data.split(|&b| b == 0).filter(|m| !m.is_empty()).collect();
                        if !offers.contains(&&b"SCRAM-SHA-256"[..]) {
                            return Err(
                                "the server offers no SASL mechanism halo speaks (SCRAM-SHA-256)".to_string()
                            );
                        }
                        let s = Scram::new();
                        let first = s.client_first();
                        let mut p = b"SCRAM-SHA-256\0".to_vec();
                        p.extend_from_slice(&(first.len() as u32).to_be_bytes());
                        p.extend_from_slice(first.as_bytes());
                        c.write(Some(b'p'), &p).await?;
                        scram = Some(s);
                    }
                    Some(11) => {
                        let s = scram.as_mut().ok_or("SASL continue without a SASL start")?;
                        let fin = s.client_final(&String::from_utf8_lossy(data), &spec.passwd)?;
                        c.write(Some(b'p'), fin.as_bytes()).await?;
                    }
                    Some(12) => {
                        let s = scram.as_ref().ok_or("SASL final without a SASL start")?;
                        s.verify(&String::from_utf8_lossy(data))?;
                    }
                    Some(n) => {
                        return Err(format!(
                            "the server asks for authentication method {n}, which halo does not speak"
                        ))
                    }
                    None => return Err("malformed authentication request".to_string()),
                }
            }
            b'S' => {
                let (k, rest) = cstr(&body);
                if k == b"server_version" {
                    version = printable(cstr(rest).0);
                }
            }
            b'Z' => break,
            // BackendKeyData, notices, negotiation of minor versions.
            _ => {}
        }
    }
    let mut q = query.as_bytes().to_vec();
    q.push(0);
    c.write(Some(b'Q'), &q).await?;
    let mut rows = 0u64;
    let mut error = None;
    let mut read = 0usize;
    loop {
        let (tag, body) = c.read().await?;
        read += body.len();
        if read > 4 * MAX_READ {
            break;
        }
        match tag {
            b'D' => rows += 1,
            b'E' if error.is_none() => error = Some(pg_error(&body)),
            b'Z' => break,
            _ => {}
        }
    }
    let _ = c.write(Some(b'X'), &[]).await;
    if let Some(e) = error {
        return Err(format!("'{}': {e}", printable(query.as_bytes())));
    }
    rows_outcome(rows, query).map(|ok| format!("PostgreSQL {version}: {ok}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scram_matches_rfc7677() {
        // RFC 7677 §3: user "user", password "pencil".
        let mut s = Scram {
            nonce: "rOprNGfwEbeRWgbNEkqO".to_string(),
            client_first_bare: "n=user,r=rOprNGfwEbeRWgbNEkqO".to_string(),
            server_signature: None,
        };
        let server_first =
            "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
        let fin = s.client_final(server_first, "pencil").unwrap();
        assert_eq!(
            fin,
            "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
        );
        s.verify("v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=").unwrap();
        assert!(s.verify("v=AAAA").is_err());
        assert!(s.client_final("r=other,s=AAAA,i=1", "pencil").is_err());
    }

    #[test]
    fn mysql_native_scramble() {
        // Known vector: password "secret", nonce of 20 bytes 0x01..0x14.
        let nonce: Vec<u8> = (1..=20).collect();
        let s = mysql_scramble(b"mysql_native_password", b"secret", &nonce).unwrap();
        assert_eq!(s.len(), 20);
        // The server's check: SHA1(nonce + stored) XOR scramble = SHA1(pw); SHA1 of it = stored.
        let stored = Sha1::digest(Sha1::digest(b"secret"));
        let mut h = Sha1::new();
        h.update(&nonce);
        h.update(stored);
        let recovered: Vec<u8> = s.iter().zip(h.finalize().iter()).map(|(a, b)| a ^ b).collect();
        assert_eq!(Sha1::digest(&recovered).as_slice(), stored.as_slice());
        assert!(mysql_scramble(b"mysql_native_password", b"", &nonce).unwrap().is_empty());
        assert!(mysql_scramble(b"auth_gssapi_client", b"x", &nonce).is_err());
    }

    #[test]
    fn lenenc_ints() {
        assert_eq!(lenenc(&[5, 9]), Some((5, &[9u8][..])));
        assert_eq!(lenenc(&[0xfc, 0x01, 0x02]), Some((0x0201, &[][..])));
        assert_eq!(lenenc(&[0xfc, 0x01]), None);
        assert_eq!(lenenc(&[0xfb]), None);
    }
}
