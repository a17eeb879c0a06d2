//! oracle: the TNS connect exchange of ldirectord's check_oracle, not its login.
//!
//! ldirectord's check_oracle is its check_sql with DBD::Oracle: it connects to
//! `dbi:Oracle:sid=<database>;host=<real server>;port=<checkport>` as `login`/`passwd`,
//! runs `request` and is up iff it returns a row. DBD::Oracle turns that DSN into the connect
//! descriptor `(CONNECT_DATA=(SID=<database>))` for the real server's listener. Oracle's
//! login (TTC and O5LOGON authentication) is closed and large, so halo checks what every
//! Oracle client does first and what can be built from the published packet format (the
//! Wireshark dissector, python-oracledb's thin mode): the TNS connect exchange, which tells
//! whether the listener answers **and** knows the database asked for.
//!
//! * A CONNECT packet (type 1, TNS version 313 (0x0139), lowest 300 (0x012c), SDU 8192)
//!   carries `(DESCRIPTION=(CONNECT_DATA=(SID=<database>)(CID=(PROGRAM=halo)(HOST=<this
//!   host>)(USER=halo)))(ADDRESS=(PROTOCOL=TCP)(HOST=<real server>)(PORT=<checkport>)))`.
//!   Connect data longer than 230 bytes goes in a DATA packet after the CONNECT, as clients
//!   send it.
//! * ACCEPT (type 2): up — a server process took the connection for that database. halo then
//!   says goodbye (a DATA packet with the end-of-file flag) and closes.
//! * REDIRECT (type 5): up — the listener hands the client to a dispatcher or another
//!   listener (shared server, RAC/SCAN), which it does only for a service it knows; the
//!   address is quoted in the reason and not followed.
//! * REFUSE (type 4): down, with the listener's `(ERR=NNNNN)` as ORA-NNNNN and its meaning
//!   (12505: SID unknown, 12514: service unknown, 12516/12519/12520: no handler, 12528: the
//!   instances block new connections, ...).
//! * RESEND (type 11): the CONNECT is sent again, once (listeners ask for it routinely).
//! * Anything else — ABORT, another type, a short, truncated or oversized packet (larger
//!   than the SDU announced), bytes that are not TNS — is down with what was seen.
//!
//! SID or service: ldirectord's DSN asks for `database` as a SID, so halo asks the same
//! first. Modern databases (pluggable ones above all) register services rather than SIDs;
//! when the listener refuses the SID with ORA-12505 halo asks again, on a new connection,
//! with `(SERVICE_NAME=<database>)`, and says which one it found. An empty `database` is
//! sent as `(SID=)`, as ldirectord's `sid=;host=…` DSN makes DBD::Oracle send it (most
//! listeners refuse it: set `database`).
//!
//! Not checked: the login as `login`/`passwd` and the `request`/`receive` query (they need
//! TTC and O5LOGON); every reason says "TNS level only". Where the login itself must be
//! checked, `checktype=external` with Oracle's own client (sqlplus, or a script using it) is
//! the way. Unlike ldirectord, a check without `login` or `request` is not refused: this
//! check uses neither. Each successful check makes the listener start a server process (as
//! any client's connection does, ldirectord's included), which ends when halo closes.

use std::net::SocketAddr;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::io::{connect_tcp, eof};
use super::spec::local_hostname;
use super::{printable, CheckSpec, Outcome};

const HEADER: usize = 8;
const CONNECT: u8 = 1;
const ACCEPT: u8 = 2;
const REFUSE: u8 = 4;
const REDIRECT: u8 = 5;
const DATA: u8 = 6;
const ABORT: u8 = 9;
const RESEND: u8 = 11;
/// Highest packet type Wireshark's dissector knows; above it the bytes are not TNS.
const TYPE_MAX: u8 = 19;

/// TNS 313 (Oracle 11g clients): the CONNECT layout with connect data at offset 58. Every
/// listener since 8i accepts it; the login that would follow is not our business.
const VERSION: u16 = 0x0139;
const VERSION_MIN: u16 = 0x012c;
const SDU: u16 = 8192;
const TDU: u16 = 32767;
/// NT protocol characteristics as current clients send them.
const NT_CHARACTERISTICS: u16 = 0x4f98;
const CONNECT_DATA_OFFSET: u16 = 58;
/// Longer connect data does not fit in the CONNECT packet; it follows in a DATA packet.
const MAX_INLINE_CONNECT_DATA: usize = 230;
/// The largest answer accepted: the SDU announced in the CONNECT.
const MAX_PACKET: usize = SDU as usize;
/// DATA packet flag: end of file (the client is leaving).
const DATA_FLAG_EOF: u16 = 0x0040;
/// Longest `database` accepted (Oracle's service names are at most 64 bytes per domain
/// part; a little room is left).
const MAX_NAME: usize = 128;

/// How `database` is named in CONNECT_DATA.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Key {
    Sid,
    ServiceName,
}

impl Key {
    fn name(self) -> &'static str {
        match self {
            Key::Sid => "SID",
            Key::ServiceName => "SERVICE_NAME",
        }
    }
}

/// What the listener answered to one CONNECT.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Answer {
    Accept { version: u16 },
    Redirect { to: String },
    Refuse { err: Option<u32>, text: String },
}

/// The connect descriptor for `database` named by `key`, asked of `target`.
fn descriptor(key: Key, database: &str, host: &str, target: SocketAddr) -> String {
    format!(
        "(DESCRIPTION=(CONNECT_DATA=({}={database})(CID=(PROGRAM=halo)(HOST={host})(USER=halo)))\
         (ADDRESS=(PROTOCOL=TCP)(HOST={})(PORT={})))",
        key.name(),
        target.ip(),
        target.port()
    )
}

/// A TNS packet: the 8-byte header (length, packet checksum 0, type, flags 0, header
/// checksum 0) and `body`.
fn packet(kind: u8, body: &[u8]) -> Vec<u8> {
    // Every packet built here is far below 64 KiB (the descriptor is bounded).
    let len = (HEADER + body.len()) as u16;
    let mut p = Vec::with_capacity(HEADER + body.len());
    p.extend_from_slice(&len.to_be_bytes());
    p.extend_from_slice(&[0, 0, kind, 0, 0, 0]);
    p.extend_from_slice(body);
    p
}

/// The bytes of a CONNECT for `connect_data`: one CONNECT packet, followed by a DATA packet
/// when the connect data is longer than [`MAX_INLINE_CONNECT_DATA`].
fn connect_bytes(connect_data: &[u8]) -> Vec<u8> {
    let mut b = Vec::with_capacity(64 + connect_data.len());
    b.extend_from_slice(&VERSION.to_be_bytes());
    b.extend_from_slice(&VERSION_MIN.to_be_bytes());
    b.extend_from_slice(&0u16.to_be_bytes()); // service options
    b.extend_from_slice(&SDU.to_be_bytes());
    b.extend_from_slice(&TDU.to_be_bytes());
    b.extend_from_slice(&NT_CHARACTERISTICS.to_be_bytes());
    b.extend_from_slice(&0u16.to_be_bytes()); // line turnaround
                                              // "Value of 1 in hardware": the integer 1 as the client stores it. python-oracledb
                                              // (Oracle's own thin client) writes it big-endian, 00 01, and every listener takes it.
    b.extend_from_slice(&1u16.to_be_bytes());
    b.extend_from_slice(&(connect_data.len() as u16).to_be_bytes());
    b.extend_from_slice(&CONNECT_DATA_OFFSET.to_be_bytes());
    b.extend_from_slice(&0u32.to_be_bytes()); // max receivable connect data
    b.extend_from_slice(&[0, 0]); // connect flags 0 and 1
                                  // Trace cross-facility items 1 and 2, trace unique connection id, reserved: up to the
                                  // connect data offset.
    b.resize(usize::from(CONNECT_DATA_OFFSET) - HEADER, 0);
    if connect_data.len() <= MAX_INLINE_CONNECT_DATA {
        b.extend_from_slice(connect_data);
        packet(CONNECT, &b)
    } else {
        let mut out = packet(CONNECT, &b);
        let mut d = 0u16.to_be_bytes().to_vec(); // data flags
        d.extend_from_slice(connect_data);
        out.extend_from_slice(&packet(DATA, &d));
        out
    }
}

/// One TNS packet: its type and its whole bytes (header included). Bytes that are not a TNS
/// header, and packets larger than the SDU announced, are refused before anything more is
/// read.
async fn read_packet<R: AsyncRead + Unpin>(r: &mut R) -> Result<(u8, Vec<u8>), String> {
    let mut head = [0u8; HEADER];
    let mut got = 0;
    while got < HEADER {
        let n = r.read(&mut head[got..]).await.map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return Err(if got == 0 {
                "connection closed without a TNS answer".to_string()
            } else {
                format!("connection closed inside a TNS header ({got} of {HEADER} bytes)")
            });
        }
        got += n;
    }
    let len = usize::from(u16::from_be_bytes([head[0], head[1]]));
    let kind = head[4];
    if kind == 0 || kind > TYPE_MAX || len < HEADER {
        return Err(format!("not a TNS packet: '{}'", printable(&head)));
    }
    if len > MAX_PACKET {
        return Err(format!("TNS packet of {len} bytes, more than the {MAX_PACKET}-byte SDU announced"));
    }
    let mut p = vec![0u8; len];
    p[..HEADER].copy_from_slice(&head);
    r.read_exact(&mut p[HEADER..])
        .await
        .map_err(|e| eof(&format!("inside a TNS packet of {len} bytes"), e))?;
    Ok((kind, p))
}

fn be16(p: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*p.get(at)?, *p.get(at + 1)?]))
}

/// The number in `(ERR=NNNNN)` of a refuse's data.
fn err_code(text: &[u8]) -> Option<u32> {
    let at = text.windows(5).position(|w| w.eq_ignore_ascii_case(b"(ERR="))? + 5;
    let digits: Vec<u8> = text[at..].iter().copied().take_while(u8::is_ascii_digit).collect();
    if digits.is_empty() || digits.len() > 9 || text.get(at + digits.len()) != Some(&b')') {
        return None;
    }
    std::str::from_utf8(&digits).ok()?.parse().ok()
}

/// What the common listener refusals mean (Oracle's error messages, shortened).
fn err_meaning(code: u32) -> &'static str {
    match code {
        12500 => "the listener failed to start a dedicated server process",
        12504 => "the listener was not given a SID or SERVICE_NAME",
        12505 => "the listener does not know the SID",
        12514 => "the listener does not know the service",
        12516 => "no handler with a matching protocol stack",
        12518 => "the listener could not hand off the connection",
        12519 => "no appropriate service handler found",
        12520 => "no handler for the requested type of server",
        12521 => "the listener does not know the instance",
        12526 => "all appropriate instances are in restricted mode",
        12527 => "all instances are in restricted mode or blocking new connections",
        12528 => "all appropriate instances are blocking new connections",
        12529 => "refused by the listener's filtering rules",
        _ => "refused by the listener",
    }
}

fn refuse_text(err: Option<u32>, text: &str) -> String {
    match err {
        Some(code) => format!("ORA-{code:05}: {}", err_meaning(code)),
        None if text.is_empty() => "refused without a reason".to_string(),
        None => format!("refused: '{text}'"),
    }
}

/// The `(HOST=…)(PORT=…)` of a redirect's address, else the data itself.
fn redirect_target(data: &[u8]) -> String {
    let text = String::from_utf8_lossy(data);
    let upper = text.to_ascii_uppercase();
    let field = |name: &str| {
        let key = format!("({name}=");
        let at = upper.find(&key)? + key.len();
        let end = upper[at..].find(')')? + at;
        Some(text[at..end].trim().to_string())
    };
    match (field("HOST"), field("PORT")) {
        (Some(h), Some(p)) => printable(format!("{h}:{p}").as_bytes()),
        _ if data.is_empty() => "an address sent in a following packet".to_string(),
        _ => format!("'{}'", printable(data)),
    }
}

/// One connection: CONNECT (again once on RESEND), and the listener's answer.
async fn exchange(target: SocketAddr, connect_data: &[u8]) -> Result<Answer, String> {
    let mut tcp: TcpStream = connect_tcp(target).await?;
    let request = connect_bytes(connect_data);
    let mut resent = false;
    loop {
        tcp.write_all(&request).await.map_err(|e| format!("send: {e}"))?;
        let (kind, p) = read_packet(&mut tcp).await?;
        match kind {
            RESEND if !resent => resent = true,
            RESEND => return Err("the listener asked for the CONNECT a third time".to_string()),
            ACCEPT => {
                let version = be16(&p, HEADER).ok_or("TNS ACCEPT too short to hold a version")?;
                // Goodbye as clients say it; best effort, the answer is known.
                let _ = tcp.write_all(&packet(DATA, &DATA_FLAG_EOF.to_be_bytes())).await;
                let _ = tcp.shutdown().await;
                return Ok(Answer::Accept { version });
            }
            REFUSE => {
                let len = usize::from(be16(&p, HEADER + 2).ok_or("TNS REFUSE too short")?);
                let data = p.get(HEADER + 4..).unwrap_or_default();
                let data = &data[..len.min(data.len())];
                return Ok(Answer::Refuse { err: err_code(data), text: printable(data) });
            }
            REDIRECT => {
                let len = usize::from(be16(&p, HEADER).ok_or("TNS REDIRECT too short")?);
                let data = p.get(HEADER + 2..).unwrap_or_default();
                return Ok(Answer::Redirect { to: redirect_target(&data[..len.min(data.len())]) });
            }
            ABORT => {
                let data = p.get(HEADER + 2..).unwrap_or_default();
                return Err(format!("the listener aborted the connection: '{}'", printable(data)));
            }
            other => return Err(format!("unexpected TNS packet of type {other} in answer to CONNECT")),
        }
    }
}

/// `database` as it may appear in a descriptor: letters, digits and `_ . $ # -`.
fn valid_name(name: &str) -> bool {
    name.len() <= MAX_NAME
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'$' | b'#' | b'-'))
}

pub(crate) async fn check(spec: &CheckSpec) -> Outcome {
    let db = spec.database.as_str();
    if !valid_name(db) {
        return Err(format!(
            "database '{}' is not an Oracle SID or service name (letters, digits, _ . $ # -, at most {MAX_NAME})",
            printable(db.as_bytes())
        ));
    }
    let scope = if spec.login.is_empty() && spec.request_body().trim().is_empty() {
        "TNS level only"
    } else {
        "TNS level only: login and request not checked"
    };
    let host = local_hostname();
    let ask = |key: Key| descriptor(key, db, host, spec.target);
    let first = exchange(spec.target, ask(Key::Sid).as_bytes()).await?;
    let (key, answer, refused_sid) = match first {
        Answer::Refuse { err: Some(12505), .. } if !db.is_empty() => {
            (Key::ServiceName, exchange(spec.target, ask(Key::ServiceName).as_bytes()).await?, true)
        }
        a => (Key::Sid, a, false),
    };
    let what = format!("{}={db}", key.name());
    let note = if refused_sid {
        " (asked as a SID, as ldirectord's DSN asks, it was refused with ORA-12505)"
    } else {
        ""
    };
    match answer {
        Answer::Accept { version } => {
            Ok(format!("TNS accept, version {version}, for {what}{note} ({scope})"))
        }
        Answer::Redirect { to } => Ok(format!(
            "TNS redirect for {what} to {to}: the listener knows it and hands the client on{note} ({scope})"
        )),
        Answer::Refuse { err, text } => {
            let why = refuse_text(err, &text);
            if refused_sid {
                Err(format!("listener refused SID={db} (ORA-12505) and {what} ({why}) ({scope})"))
            } else {
                Err(format!("listener refused {what} ({why}) ({scope})"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! The peer here is a TNS listener written for these tests from the published packet
    //! format (Wireshark's TNS dissector, python-oracledb's thin mode): no Oracle server can
    //! be installed on the build machine, so no real listener is asked.

    use super::*;
    use crate::check::{run_check, spec_for, CheckKind};
    use std::sync::{Arc, Mutex};
    use std::time::Duration;
    use tokio::net::TcpListener;

    /// A CONNECT as the peer parsed it.
    #[derive(Debug, Clone)]
    struct Seen {
        /// The header's length field equals the bytes of the CONNECT packet, and the connect
        /// data's length and offset point at exactly the descriptor.
        consistent: bool,
        kind: u8,
        version: u16,
        value_of_one: [u8; 2],
        split: bool,
        descriptor: String,
    }

    async fn read_one(s: &mut TcpStream) -> Option<(u8, Vec<u8>)> {
        let mut head = [0u8; HEADER];
        s.read_exact(&mut head).await.ok()?;
        let len = usize::from(u16::from_be_bytes([head[0], head[1]]));
        let mut p = head.to_vec();
        p.resize(len.max(HEADER), 0);
        s.read_exact(&mut p[HEADER..]).await.ok()?;
        Some((head[4], p))
    }

    /// Reads a CONNECT (and its DATA packet when the connect data did not fit).
    async fn read_connect(s: &mut TcpStream) -> Option<Seen> {
        let (kind, p) = read_one(s).await?;
        let cd_len = usize::from(be16(&p, 24)?);
        let cd_off = usize::from(be16(&p, 26)?);
        let (descriptor, consistent, split) = if p.len() > cd_off {
            let d = p.get(cd_off..)?.to_vec();
            (d.clone(), d.len() == cd_len, false)
        } else {
            let (dkind, dp) = read_one(s).await?;
            let d = dp.get(HEADER + 2..)?.to_vec();
            (
                d.clone(),
                dkind == DATA && d.len() == cd_len && p.len() == usize::from(CONNECT_DATA_OFFSET),
                true,
            )
        };
        let consistent = consistent && usize::from(be16(&p, 0)?) == p.len();
        Some(Seen {
            consistent,
            kind,
            version: be16(&p, 8)?,
            value_of_one: [p[22], p[23]],
            split,
            descriptor: String::from_utf8(descriptor).ok()?,
        })
    }

    fn accept() -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&VERSION.to_be_bytes());
        b.extend_from_slice(&0u16.to_be_bytes());
        b.extend_from_slice(&SDU.to_be_bytes());
        b.extend_from_slice(&TDU.to_be_bytes());
        b.extend_from_slice(&[0, 1]);
        b.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
        packet(ACCEPT, &b)
    }

    fn refuse(err: u32) -> Vec<u8> {
        let text =
            format!("(DESCRIPTION=(TMP=)(VSNNUM=0)(ERR={err})(ERROR_STACK=(ERROR=(CODE={err})(EMFI=4))))");
        let mut b = vec![1, 0];
        b.extend_from_slice(&(text.len() as u16).to_be_bytes());
        b.extend_from_slice(text.as_bytes());
        packet(REFUSE, &b)
    }

    fn redirect() -> Vec<u8> {
        let text = "(ADDRESS=(PROTOCOL=tcp)(HOST=10.0.0.9)(PORT=40123))";
        let mut b = (text.len() as u16).to_be_bytes().to_vec();
        b.extend_from_slice(text.as_bytes());
        packet(REDIRECT, &b)
    }

    /// The name asked for: `SID=X` or `SERVICE_NAME=X`.
    fn asked(d: &str) -> (Key, String) {
        for key in [Key::Sid, Key::ServiceName] {
            let k = format!("({}=", key.name());
            if let Some(at) = d.find(&k) {
                let rest = &d[at + k.len()..];
                return (key, rest[..rest.find(')').unwrap_or(0)].to_string());
            }
        }
        (Key::Sid, String::new())
    }

    /// The test listener: ORCL is a SID, SVC a service only, RESEND asks for the CONNECT
    /// again, REDIR redirects, TRUNC/GARBAGE/BIG/SILENT misbehave, a name of 100+ bytes is
    /// accepted (its descriptor needs the DATA packet), anything else is unknown.
    async fn peer() -> (SocketAddr, Arc<Mutex<Vec<Seen>>>, Arc<Mutex<Vec<Vec<u8>>>>) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let byes = Arc::new(Mutex::new(Vec::new()));
        let (log, bye_log) = (seen.clone(), byes.clone());
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                let (log, bye_log) = (log.clone(), bye_log.clone());
                tokio::spawn(async move {
                    let Some(c) = read_connect(&mut s).await else { return };
                    log.lock().unwrap().push(c.clone());
                    let (key, name) = asked(&c.descriptor);
                    let answer = match (key, name.as_str()) {
                        (Key::Sid, "ORCL") | (Key::ServiceName, "SVC") => accept(),
                        (_, n) if n.len() > 100 => accept(),
                        (_, "REDIR") => redirect(),
                        (_, "RESEND") => {
                            let _ = s.write_all(&packet(RESEND, &[])).await;
                            let Some(again) = read_connect(&mut s).await else { return };
                            log.lock().unwrap().push(again);
                            accept()
                        }
                        (_, "TRUNC") => accept()[..12].to_vec(),
                        (_, "GARBAGE") => b"HTTP/1.0 400 Bad Request\r\n\r\n".to_vec(),
                        (_, "BIG") => {
                            let mut p = accept();
                            p[..2].copy_from_slice(&60000u16.to_be_bytes());
                            p
                        }
                        (_, "SILENT") => {
                            tokio::time::sleep(Duration::from_secs(30)).await;
                            return;
                        }
                        (Key::Sid, _) => refuse(12505),
                        (Key::ServiceName, _) => refuse(12514),
                    };
                    let _ = s.write_all(&answer).await;
                    if name == "TRUNC" {
                        return; // closes with the packet cut short
                    }
                    // Keep the client's goodbye, if any, then close.
                    if let Some((_, bye)) = read_one(&mut s).await {
                        bye_log.lock().unwrap().push(bye);
                    }
                });
            }
        });
        (addr, seen, byes)
    }

    fn spec(target: SocketAddr, database: &str) -> CheckSpec {
        let mut s = CheckSpec::new(CheckKind::Oracle, target, Duration::from_secs(5));
        s.database = database.to_string();
        s
    }

    #[test]
    fn connect_packet_layout() {
        let d = descriptor(Key::Sid, "ORCL", "director1", "192.0.2.7:1521".parse().unwrap());
        assert_eq!(
            d,
            "(DESCRIPTION=(CONNECT_DATA=(SID=ORCL)(CID=(PROGRAM=halo)(HOST=director1)(USER=halo)))\
             (ADDRESS=(PROTOCOL=TCP)(HOST=192.0.2.7)(PORT=1521)))"
        );
        let p = connect_bytes(d.as_bytes());
        assert_eq!(usize::from(be16(&p, 0).unwrap()), p.len());
        assert_eq!(&p[2..8], &[0, 0, CONNECT, 0, 0, 0]);
        assert_eq!(be16(&p, 8), Some(0x0139));
        assert_eq!(be16(&p, 10), Some(0x012c));
        assert_eq!(be16(&p, 24), Some(d.len() as u16));
        assert_eq!(be16(&p, 26), Some(58));
        assert_eq!(&p[58..], d.as_bytes());
        // Long connect data: a CONNECT without it, then a DATA packet holding it.
        let long = "x".repeat(300);
        let p = connect_bytes(long.as_bytes());
        assert_eq!(be16(&p, 0), Some(58));
        assert_eq!(be16(&p, 24), Some(300));
        assert_eq!(be16(&p, 58), Some(300 + 10));
        assert_eq!(p[58 + 4], DATA);
        assert_eq!(&p[58 + 10..], long.as_bytes());
    }

    #[test]
    fn refuse_and_redirect_data() {
        let r = b"(DESCRIPTION=(TMP=)(VSNNUM=0)(ERR=12514)(ERROR_STACK=(ERROR=(CODE=12514)(EMFI=4))))";
        assert_eq!(err_code(r), Some(12514));
        assert_eq!(err_code(b"(err=12505)"), Some(12505));
        assert_eq!(err_code(b"(ERR=)"), None);
        assert_eq!(err_code(b"(ERR=99999999999999)"), None);
        assert_eq!(err_code(b"(ERR=12"), None);
        assert_eq!(redirect_target(b"(ADDRESS=(PROTOCOL=tcp)(HOST=db2)(PORT=1522))"), "db2:1522");
        assert_eq!(redirect_target(b""), "an address sent in a following packet");
        assert!(valid_name("orclpdb1.example.com") && valid_name(""));
        assert!(!valid_name("X)(SERVICE_NAME=Y") && !valid_name(&"a".repeat(200)));
    }

    #[tokio::test]
    async fn oracle_accept_for_a_known_sid() {
        let (a, seen, byes) = peer().await;
        let r = run_check(&spec(a, "ORCL")).await;
        assert!(r.up, "{}", r.reason);
        assert!(
            r.reason.contains("TNS accept, version 313") && r.reason.contains("SID=ORCL"),
            "{}",
            r.reason
        );
        assert!(r.reason.contains("TNS level only"), "{}", r.reason);
        let c = seen.lock().unwrap()[0].clone();
        assert!(c.consistent, "{c:?}");
        assert_eq!((c.kind, c.version, c.value_of_one, c.split), (CONNECT, 0x0139, [0, 1], false));
        assert!(c.descriptor.contains("(CONNECT_DATA=(SID=ORCL)(CID=(PROGRAM=halo)"), "{}", c.descriptor);
        assert!(c
            .descriptor
            .ends_with(&format!("(ADDRESS=(PROTOCOL=TCP)(HOST=127.0.0.1)(PORT={})))", a.port())));
        // The goodbye after the ACCEPT: a DATA packet with the end-of-file flag. The peer may
        // not have read it yet when run_check returns.
        for _ in 0..100 {
            if !byes.lock().unwrap().is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(byes.lock().unwrap()[0], [0, 10, 0, 0, DATA, 0, 0, 0, 0, 0x40]);
    }

    #[tokio::test]
    async fn oracle_service_name_after_a_refused_sid() {
        let (a, seen, _) = peer().await;
        let r = run_check(&spec(a, "SVC")).await;
        assert!(r.up, "{}", r.reason);
        assert!(r.reason.contains("SERVICE_NAME=SVC") && r.reason.contains("ORA-12505"), "{}", r.reason);
        let seen = seen.lock().unwrap().clone();
        assert_eq!(seen.len(), 2);
        assert!(seen[0].descriptor.contains("(SID=SVC)"));
        assert!(seen[1].descriptor.contains("(SERVICE_NAME=SVC)"));
    }

    #[tokio::test]
    async fn oracle_refused_quotes_the_ora_error() {
        let (a, _, _) = peer().await;
        let mut s = spec(a, "NOSUCH");
        s.login = "scott".to_string();
        s.request = "/select 1 from dual".to_string();
        let r = run_check(&s).await;
        assert!(!r.up, "{}", r.reason);
        assert!(
            r.reason.contains("ORA-12514") && r.reason.contains("does not know the service"),
            "{}",
            r.reason
        );
        assert!(r.reason.contains("ORA-12505"), "{}", r.reason);
        assert!(r.reason.contains("TNS level only: login and request not checked"), "{}", r.reason);
    }

    #[tokio::test]
    async fn oracle_resend_then_accept() {
        let (a, seen, _) = peer().await;
        let r = run_check(&spec(a, "RESEND")).await;
        assert!(r.up, "{}", r.reason);
        let seen = seen.lock().unwrap().clone();
        assert_eq!(seen.len(), 2, "the CONNECT is sent again once");
        assert_eq!(seen[0].descriptor, seen[1].descriptor);
        assert!(seen[1].consistent);
    }

    #[tokio::test]
    async fn oracle_redirect_is_up() {
        let (a, _, _) = peer().await;
        let r = run_check(&spec(a, "REDIR")).await;
        assert!(r.up, "{}", r.reason);
        assert!(r.reason.contains("redirect") && r.reason.contains("10.0.0.9:40123"), "{}", r.reason);
    }

    #[tokio::test]
    async fn oracle_long_descriptor_goes_in_a_data_packet() {
        let (a, seen, _) = peer().await;
        let name = "L".repeat(120);
        let r = run_check(&spec(a, &name)).await;
        assert!(r.up, "{}", r.reason);
        let c = seen.lock().unwrap()[0].clone();
        assert!(c.split && c.consistent, "{c:?}");
        assert!(c.descriptor.contains(&format!("(SID={name})")));
    }

    #[tokio::test]
    async fn oracle_bad_answers_are_down() {
        let (a, _, _) = peer().await;
        for (name, part) in [
            ("TRUNC", "connection closed inside a TNS packet"),
            ("GARBAGE", "not a TNS packet"),
            ("BIG", "more than the 8192-byte SDU"),
        ] {
            let r = run_check(&spec(a, name)).await;
            assert!(!r.up && r.reason.contains(part), "{name}: {}", r.reason);
        }
        let bad = run_check(&spec(a, "A)(SERVICE_NAME=B")).await;
        assert!(!bad.up && bad.reason.contains("is not an Oracle SID"), "{}", bad.reason);
    }

    #[tokio::test]
    async fn oracle_silent_listener_and_closed_port() {
        let (a, _, _) = peer().await;
        let mut s = spec(a, "SILENT");
        s.timeout = Duration::from_millis(300);
        let r = run_check(&s).await;
        assert!(!r.up && r.reason.contains("deadline"), "{}", r.reason);
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let r = run_check(&spec(closed, "ORCL")).await;
        assert!(!r.up && r.reason.contains("connect to"), "{}", r.reason);
    }

    /// ldirectord.cf with `service=oracle`: the spec carries `database` and the check port,
    /// and the check runs through [`run_check`].
    #[tokio::test]
    async fn oracle_from_ldirectord_cf() {
        let (a, seen, _) = peer().await;
        let text = format!(
            "virtual=192.0.2.10:1521\n\treal=127.0.0.1:{} gate\n\tservice=oracle\n\tdatabase=\"ORCL\"\n\t\
             login=\"scott\"\n\tpasswd=\"tiger\"\n\trequest=\"select 1 from dual\"\n\tnegotiatetimeout=4\n",
            a.port()
        );
        let (cf, _) = halo_config::parse_ldirectord_cf(std::path::Path::new("ldirectord.cf"), &text).unwrap();
        let v = &cf.virtuals[0];
        let s = spec_for(v, &v.reals[0], &cf.global).unwrap();
        assert_eq!(
            (s.kind, s.database.as_str(), s.timeout),
            (CheckKind::Oracle, "ORCL", Duration::from_secs(4))
        );
        let r = run_check(&s).await;
        assert!(r.up, "{}", r.reason);
        assert!(r.reason.contains("login and request not checked"), "{}", r.reason);
        assert!(seen.lock().unwrap()[0].descriptor.contains("(SID=ORCL)"));
    }
}
