//! ftp: ldirectord's Net::FTP sequence — log in, `CWD /`, binary, passive, `RETR request` —
//! and the file's content (its first [`MAX_READ`] bytes) matched against `receive`.
//!
//! Differences from ldirectord, on purpose: the data connection always goes to the real
//! server's own address (the address in a `227` reply is ignored: it is often wrong behind
//! NAT, and following it would let a server point the director anywhere); IPv6 uses `EPSV`;
//! and the check is up only when the file was actually transferred (ldirectord ignores every
//! FTP error and matches whatever arrived, so an empty `receive` made it always up).

use std::net::SocketAddr;

use tokio::net::TcpStream;

use super::io::{read_capped, read_reply};
use super::mail::{open, send_line, Stream};
use super::{printable, CheckSpec, Outcome, MAX_READ};
use tokio::io::BufReader;

type Conn = BufReader<Box<dyn Stream>>;

async fn command(conn: &mut Conn, line: &str) -> Result<(u16, String), String> {
    send_line(conn, line).await?;
    read_reply(conn).await
}

pub(crate) async fn check(spec: &CheckSpec) -> Outcome {
    let mut conn = open(spec, false).await?;
    let (code, text) = read_reply(&mut conn).await?;
    if !(200..300).contains(&code) {
        return Err(format!("greeting: {text}"));
    }
    login(spec, &mut conn).await?;
    // ldirectord goes on when these fail; so does halo (RETR will tell).
    let _ = command(&mut conn, "CWD /").await?;
    let _ = command(&mut conn, "TYPE I").await?;
    let data_addr = passive(spec, &mut conn).await?;
    let mut data =
        TcpStream::connect(data_addr).await.map_err(|e| format!("data connection to {data_addr}: {e}"))?;
    let file = format!("/{}", spec.request_body());
    let (code, text) = command(&mut conn, &format!("RETR {file}")).await?;
    if !(100..200).contains(&code) && !(200..300).contains(&code) {
        return Err(format!("RETR {file}: {text}"));
    }
    let (content, ended) = read_capped(&mut data, MAX_READ).await?;
    drop(data);
    if ended && (100..200).contains(&code) {
        let (code, text) = read_reply(&mut conn).await?;
        if !(200..300).contains(&code) {
            return Err(format!("RETR {file}: transfer failed: {text}"));
        }
    }
    let _ = send_line(&mut conn, "QUIT").await;
    if spec.receive_matches(&content) {
        Ok(format!("RETR {file}: {} bytes", content.len()))
    } else {
        let pattern = spec.receive.as_ref().map(|r| r.as_str()).unwrap_or_default();
        Err(format!("RETR {file}: the content does not match /{pattern}/ (starts '{}')", printable(&content)))
    }
}

async fn login(spec: &CheckSpec, conn: &mut Conn) -> Result<(), String> {
    let user = if spec.login.is_empty() { "anonymous" } else { &spec.login };
    let (code, text) = command(conn, &format!("USER {user}")).await?;
    match code {
        230 => return Ok(()),
        331 | 332 => {}
        _ => return Err(format!("USER {user}: {text}")),
    }
    let (code, text) = command(conn, &format!("PASS {}", spec.passwd)).await?;
    match code {
        230 | 202 => Ok(()),
        _ => Err(format!("login as {user} refused: {text}")),
    }
}

/// `PASV` (IPv4) or `EPSV` (IPv6); the port of the answer, on the real server's address.
async fn passive(spec: &CheckSpec, conn: &mut Conn) -> Result<SocketAddr, String> {
    let port = if spec.target.is_ipv4() {
        let (code, text) = command(conn, "PASV").await?;
        if code != 227 {
            return Err(format!("PASV: {text}"));
        }
        pasv_port(&text).ok_or_else(|| format!("PASV: cannot read the address in '{text}'"))?
    } else {
        let (code, text) = command(conn, "EPSV").await?;
        if code != 229 {
            return Err(format!("EPSV: {text}"));
        }
        epsv_port(&text).ok_or_else(|| format!("EPSV: cannot read the port in '{text}'"))?
    };
    Ok(SocketAddr::new(spec.target.ip(), port))
}

/// `227 Entering Passive Mode (h1,h2,h3,h4,p1,p2)` → p1·256 + p2.
fn pasv_port(text: &str) -> Option<u16> {
    let after = text.get(3..)?;
    let start = after.find(|c: char| c.is_ascii_digit())?;
    let numbers: Vec<u16> = after[start..]
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .take(6)
        .map(|s| s.parse::<u16>().ok().filter(|n| *n < 256))
        .collect::<Option<Vec<u16>>>()?;
    if numbers.len() != 6 {
        return None;
    }
    let port = numbers[4] * 256 + numbers[5];
    (port != 0).then_some(port)
}

/// `229 Entering Extended Passive Mode (|||6446|)` → 6446.
fn epsv_port(text: &str) -> Option<u16> {
    let open = text.find('(')?;
    let inner = text.get(open + 1..)?.split(')').next()?;
    let mut chars = inner.chars();
    let delim = chars.next()?;
    let fields: Vec<&str> = inner.split(delim).collect();
    let port: u16 = fields.get(3)?.parse().ok()?;
    (port != 0).then_some(port)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passive_replies() {
        assert_eq!(pasv_port("227 Entering Passive Mode (127,0,0,1,200,10)."), Some(200 * 256 + 10));
        assert_eq!(pasv_port("227 =127,0,0,1,4,1"), Some(1025));
        assert_eq!(pasv_port("227 (1,2,3)"), None);
        assert_eq!(pasv_port("227 (1,2,3,4,999,1)"), None);
        assert_eq!(pasv_port("227 (1,2,3,4,99999999999999999999,1)"), None);
        assert_eq!(pasv_port("2"), None);
        assert_eq!(epsv_port("229 Entering Extended Passive Mode (|||6446|)"), Some(6446));
        assert_eq!(epsv_port("229 (|||0|)"), None);
        assert_eq!(epsv_port("229 (|||x|)"), None);
        assert_eq!(epsv_port("229 ("), None);
    }
}
