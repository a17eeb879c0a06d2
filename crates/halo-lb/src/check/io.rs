//! Bounded reading and connecting shared by the checks. Every read is capped: a server that
//! sends an endless line or an endless body costs at most [`MAX_READ`] bytes of memory.

use std::net::SocketAddr;

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncReadExt};
use tokio::net::TcpStream;

use super::{printable, MAX_READ};

/// Longest line accepted from a line protocol (SMTP, FTP, POP, IMAP, SIP).
pub(crate) const MAX_LINE: usize = 8 * 1024;

pub(crate) async fn connect_tcp(target: SocketAddr) -> Result<TcpStream, String> {
    TcpStream::connect(target).await.map_err(|e| format!("connect to {target}: {e}"))
}

/// Makes closing `stream` send a reset instead of a FIN (`SO_LINGER` 0), for the checks that
/// are done with a connection once they have read their answer (connect, http): no FIN
/// exchange and no TIME_WAIT socket on either side, as HAProxy closes its checks. Best
/// effort: on failure the connection closes normally.
pub(crate) fn close_with_reset(stream: &TcpStream) {
    let _ = socket2::SockRef::from(stream).set_linger(Some(std::time::Duration::ZERO));
}

/// One line without its `\n` (and `\r`), `None` at end of stream before any byte. A line
/// longer than `cap` is an error; the bytes are never buffered beyond `cap`.
pub(crate) async fn read_line<R: AsyncBufRead + Unpin>(
    r: &mut R,
    cap: usize,
) -> Result<Option<Vec<u8>>, String> {
    let mut line = Vec::new();
    loop {
        let buf = r.fill_buf().await.map_err(|e| format!("read: {e}"))?;
        if buf.is_empty() {
            return Ok(if line.is_empty() { None } else { Some(line) });
        }
        let (take, done) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (buf.len(), false),
        };
        if line.len() + take > cap + 2 {
            return Err(format!("line longer than {cap} bytes"));
        }
        line.extend_from_slice(&buf[..take]);
        r.consume(take);
        if done {
            trim_eol(&mut line);
            return Ok(Some(line));
        }
    }
}

pub(crate) fn trim_eol(line: &mut Vec<u8>) {
    if line.last() == Some(&b'\n') {
        line.pop();
    }
    if line.last() == Some(&b'\r') {
        line.pop();
    }
}

/// A failed exact read's reason: `connection closed <closed>` when the stream ended early
/// (`closed`: "instead of a MySQL packet", "inside a TNS packet of 40 bytes"), else the error.
pub(crate) fn eof(closed: &str, e: std::io::Error) -> String {
    if e.kind() == std::io::ErrorKind::UnexpectedEof {
        format!("connection closed {closed}")
    } else {
        format!("read: {e}")
    }
}

/// Reads until end of stream or `cap` bytes, whichever comes first. Returns the bytes and
/// whether the stream ended (false: cut at `cap`).
pub(crate) async fn read_capped<R: AsyncRead + Unpin>(
    r: &mut R,
    cap: usize,
) -> Result<(Vec<u8>, bool), String> {
    let mut out = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let room = cap - out.len();
        if room == 0 {
            return Ok((out, false));
        }
        let want = room.min(chunk.len());
        let n = r.read(&mut chunk[..want]).await.map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return Ok((out, true));
        }
        out.extend_from_slice(&chunk[..n]);
    }
}

/// A reply of the SMTP/FTP family: a three-digit code, with `ddd-` continuation lines up to
/// the `ddd ` line. Returns the code and the last line's text.
pub(crate) async fn read_reply<R: AsyncBufRead + Unpin>(r: &mut R) -> Result<(u16, String), String> {
    let mut total = 0usize;
    let first = read_line(r, MAX_LINE).await?.ok_or("connection closed instead of a reply")?;
    total += first.len();
    let code = reply_code(&first).ok_or_else(|| format!("not a reply: '{}'", printable(&first)))?;
    let mut last = first;
    while last.get(3) == Some(&b'-') {
        let line = read_line(r, MAX_LINE).await?.ok_or("connection closed inside a multi-line reply")?;
        total += line.len();
        if total > MAX_READ {
            return Err(format!("reply longer than {MAX_READ} bytes"));
        }
        // The reply ends on a line with the same code followed by a space (or nothing).
        if reply_code(&line) == Some(code) && line.get(3) != Some(&b'-') {
            last = line;
            break;
        }
        // Keep the "-" marker so the loop goes on.
        if line.get(3) != Some(&b'-') {
            let mut l = b"000-".to_vec();
            l.extend_from_slice(&line);
            last = l;
        } else {
            last = line;
        }
    }
    Ok((code, printable(&last)))
}

fn reply_code(line: &[u8]) -> Option<u16> {
    let digits = line.get(..3)?;
    if !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    match line.get(3) {
        None | Some(b' ') | Some(b'-') => {}
        Some(_) => return None,
    }
    let n = digits.iter().fold(0u16, |acc, d| acc * 10 + u16::from(d - b'0'));
    Some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn lines_and_caps() {
        let mut r: &[u8] = b"one\r\ntwo\nthree";
        assert_eq!(read_line(&mut r, 100).await.unwrap().unwrap(), b"one");
        assert_eq!(read_line(&mut r, 100).await.unwrap().unwrap(), b"two");
        assert_eq!(read_line(&mut r, 100).await.unwrap().unwrap(), b"three");
        assert_eq!(read_line(&mut r, 100).await.unwrap(), None);
        let long = vec![b'x'; 1000];
        let mut r: &[u8] = &long;
        assert!(read_line(&mut r, 100).await.is_err());
    }

    #[tokio::test]
    async fn replies() {
        let mut r: &[u8] = b"220-hello\r\n220-more\r\n220 done\r\n";
        assert_eq!(read_reply(&mut r).await.unwrap(), (220, "220 done".to_string()));
        let mut r: &[u8] = b"250-a\r\nfree text\r\n250 ok\r\n";
        assert_eq!(read_reply(&mut r).await.unwrap().0, 250);
        let mut r: &[u8] = b"hello\r\n";
        assert!(read_reply(&mut r).await.is_err());
        let mut r: &[u8] = b"220-never ends\r\n";
        assert!(read_reply(&mut r).await.is_err());
        let mut r: &[u8] = b"2";
        assert!(read_reply(&mut r).await.is_err());
    }

    #[tokio::test]
    async fn capped_read() {
        let data = vec![7u8; 100];
        let mut r: &[u8] = &data;
        let (got, ended) = read_capped(&mut r, 10).await.unwrap();
        assert_eq!((got.len(), ended), (10, false));
        let mut r: &[u8] = &data;
        let (got, ended) = read_capped(&mut r, 1000).await.unwrap();
        assert_eq!((got.len(), ended), (100, true));
    }
}
