//! smtp/submission, pop/pops, imap/imaps and nntp: greeting-level checks, as ldirectord's
//! Net::SMTP, Mail::POP3Client, Net::IMAP::Simple and raw-socket NNTP checks do.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};

use super::io::{connect_tcp, read_line, read_reply, MAX_LINE};
use super::spec::local_hostname;
use super::{printable, tls, CheckKind, CheckSpec, Outcome, MAX_READ};

pub(crate) trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// A TCP connection to the real server, wrapped in TLS for the `*s` services.
pub(crate) async fn open(spec: &CheckSpec, tls: bool) -> Result<BufReader<Box<dyn Stream>>, String> {
    let tcp = connect_tcp(spec.target).await?;
    let stream: Box<dyn Stream> = if tls {
        Box::new(tls::connect(tcp, spec.virtualhost.as_deref(), spec.target.ip(), false).await?)
    } else {
        Box::new(tcp)
    };
    Ok(BufReader::new(stream))
}

pub(crate) async fn send_line(conn: &mut BufReader<Box<dyn Stream>>, line: &str) -> Result<(), String> {
    // A login or file name holding a line break would smuggle a second command.
    if line.contains(['\r', '\n']) {
        return Err("a command parameter (login, password or request) holds a line break".to_string());
    }
    let mut bytes = Vec::with_capacity(line.len() + 2);
    bytes.extend_from_slice(line.as_bytes());
    bytes.extend_from_slice(b"\r\n");
    let w = conn.get_mut();
    w.write_all(&bytes).await.map_err(|e| format!("send: {e}"))?;
    w.flush().await.map_err(|e| format!("send: {e}"))
}

async fn line(conn: &mut BufReader<Box<dyn Stream>>, what: &str) -> Result<Vec<u8>, String> {
    read_line(conn, MAX_LINE).await?.ok_or_else(|| format!("connection closed instead of {what}"))
}

/// A 2xx greeting, then `EHLO` (or `HELO` if EHLO is refused) accepted, then `QUIT`.
pub(crate) async fn smtp(spec: &CheckSpec) -> Outcome {
    let mut conn = open(spec, false).await?;
    let (code, text) = read_reply(&mut conn).await?;
    if !(200..300).contains(&code) {
        return Err(format!("greeting: {text}"));
    }
    let greeting = text;
    let host = local_hostname();
    send_line(&mut conn, &format!("EHLO {host}")).await?;
    let (code, text) = read_reply(&mut conn).await?;
    if code != 250 {
        send_line(&mut conn, &format!("HELO {host}")).await?;
        let (code, helo) = read_reply(&mut conn).await?;
        if code != 250 {
            return Err(format!("EHLO refused ({text}), HELO refused ({helo})"));
        }
    }
    // Not waiting for the 221: a server slow to say goodbye is not down.
    let _ = send_line(&mut conn, "QUIT").await;
    Ok(greeting)
}

/// `+OK` greeting; with a login, `USER` and `PASS` accepted; then `QUIT`.
pub(crate) async fn pop(spec: &CheckSpec) -> Outcome {
    let mut conn = open(spec, spec.kind == CheckKind::Pops).await?;
    let greeting = line(&mut conn, "a greeting").await?;
    if !greeting.starts_with(b"+OK") {
        return Err(format!("greeting: '{}'", printable(&greeting)));
    }
    if !spec.login.is_empty() {
        send_line(&mut conn, &format!("USER {}", spec.login)).await?;
        let reply = line(&mut conn, "an answer to USER").await?;
        if !reply.starts_with(b"+OK") {
            return Err(format!("USER refused: '{}'", printable(&reply)));
        }
        send_line(&mut conn, &format!("PASS {}", spec.passwd)).await?;
        let reply = line(&mut conn, "an answer to PASS").await?;
        if !reply.starts_with(b"+OK") {
            return Err(format!("login refused: '{}'", printable(&reply)));
        }
    }
    let _ = send_line(&mut conn, "QUIT").await;
    Ok(printable(&greeting))
}

/// `* OK` (or `* PREAUTH`) greeting; with a login, `LOGIN` accepted; then `LOGOUT`.
pub(crate) async fn imap(spec: &CheckSpec) -> Outcome {
    let mut conn = open(spec, spec.kind == CheckKind::Imaps).await?;
    let greeting = line(&mut conn, "a greeting").await?;
    let upper = greeting.to_ascii_uppercase();
    let ok = upper.starts_with(b"* OK") || upper.starts_with(b"* PREAUTH");
    if !ok {
        return Err(format!("greeting: '{}'", printable(&greeting)));
    }
    if !spec.login.is_empty() {
        send_line(&mut conn, &format!("a1 LOGIN {} {}", imap_quote(&spec.login), imap_quote(&spec.passwd)))
            .await?;
        let mut read = 0usize;
        loop {
            let reply = line(&mut conn, "an answer to LOGIN").await?;
            read += reply.len();
            if read > MAX_READ {
                return Err("no answer to LOGIN in the first 64 KiB".to_string());
            }
            // Untagged lines (capabilities, alerts) come before the tagged answer.
            if reply.starts_with(b"a1 ") {
                if reply.to_ascii_uppercase().starts_with(b"A1 OK") {
                    break;
                }
                return Err(format!("login refused: '{}'", printable(&reply)));
            }
        }
    }
    let _ = send_line(&mut conn, "a2 LOGOUT").await;
    Ok(printable(&greeting))
}

/// An IMAP quoted string.
fn imap_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        // CR and LF cannot be quoted in IMAP; a password holding them cannot log in anyway.
        if c != '\r' && c != '\n' {
            out.push(c);
        }
    }
    out.push('"');
    out
}

/// ldirectord's check_nntp: the first bytes of the greeting (one read of up to 64 bytes)
/// start with `2`.
pub(crate) async fn nntp(spec: &CheckSpec) -> Outcome {
    let mut conn = open(spec, false).await?;
    let mut buf = [0u8; 64];
    let n = conn.read(&mut buf).await.map_err(|e| format!("read: {e}"))?;
    let got = buf.get(..n).unwrap_or_default();
    if n == 0 {
        return Err("connection closed without a greeting".to_string());
    }
    let first_line = got.split(|&b| b == b'\r' || b == b'\n').next().unwrap_or_default();
    if got.first() == Some(&b'2') {
        let _ = send_line(&mut conn, "QUIT").await;
        Ok(printable(first_line))
    } else {
        Err(format!("greeting: '{}'", printable(first_line)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(imap_quote(r#"a"b\c"#), r#""a\"b\\c""#);
        assert_eq!(imap_quote("x\r\ny"), "\"xy\"");
    }
}
