//! http, https and http_proxy: one HTTP/1.1 request over a connection made to exactly the
//! real server (no pool, no resolver, no proxy settings), the whole exchange under the check's
//! deadline. Up iff the status is 2xx and the body (its first [`MAX_READ`] bytes) matches
//! `receive`.
//!
//! Redirects: LWP, which ldirectord uses, follows up to 7 redirects of GET and HEAD. halo
//! follows them too, but only while they stay on the same real server (a relative
//! `Location`, or one naming the same host and scheme): the check is about this real
//! server, never about wherever it points. A redirect elsewhere is reported down, with the
//! location in the reason.
//!
//! The exchange is written by hand, not with an HTTP client library: a check sends one
//! request (`Connection: close`) and reads one answer — the status, `Location`, and the body
//! up to [`MAX_READ`] bytes (by `Content-Length`, chunked, or up to the end of the stream) —
//! and that is all. One buffer per check, sized to the answer (1 KiB to start), the request
//! written in one `write`; the connection is closed with a reset once the answer is read (no
//! FIN exchange and no TIME_WAIT on either side: at 10,000 checks a second the kernel's TCP
//! work is most of a check's cost), as HAProxy's checks do.

use std::borrow::Cow;
use std::io::ErrorKind;

use hyper::{StatusCode, Uri};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::connector;
use super::tls::{self, strip_port};
use super::{printable, CheckKind, CheckSpec, HttpMethod, Outcome, MAX_READ};

const MAX_REDIRECTS: usize = 7;
const AGENT: &[u8] = b"halo-check (ldirectord compatible)";
/// Longest line of a chunked body's framing.
const MAX_CHUNK_LINE: usize = 4096;

struct Answer {
    status: StatusCode,
    location: Option<String>,
    body: Vec<u8>,
}

pub(crate) async fn check(spec: &CheckSpec) -> Outcome {
    let https = spec.kind == CheckKind::Https;
    let (mut target, host) = if spec.kind == CheckKind::HttpProxy {
        let url = spec.request_body();
        let uri: Uri = url
            .parse()
            .map_err(|_| format!("http_proxy: request '{}' is not a URL", printable(url.as_bytes())))?;
        let authority = uri.authority().filter(|_| uri.scheme().is_some()).ok_or_else(|| {
            format!("http_proxy: request '{}' is not an absolute URL", printable(url.as_bytes()))
        })?;
        (Cow::Owned(url.to_string()), Cow::Owned(authority.to_string()))
    } else {
        let host: Cow<str> = match &spec.virtualhost {
            Some(vh) => Cow::Borrowed(vh),
            None => match spec.target.ip() {
                std::net::IpAddr::V4(a) => Cow::Owned(a.to_string()),
                std::net::IpAddr::V6(a) => Cow::Owned(format!("[{a}]")),
            },
        };
        let target = if spec.request.starts_with('/') && !spec.request.contains("://") {
            Cow::Borrowed(spec.request.as_str())
        } else {
            Cow::Owned(origin_path(spec.request_body())?)
        };
        (target, host)
    };
    let mut redirects = 0;
    loop {
        let answer = exchange(spec, https, &target, &host).await?;
        let status = answer.status;
        let line = status_line(status);
        if status.is_redirection() && spec.kind != CheckKind::HttpProxy {
            let Some(location) = answer.location else {
                return Err(format!("{line} without a Location"));
            };
            if redirects == MAX_REDIRECTS {
                return Err(format!("{line}: more than {MAX_REDIRECTS} redirects"));
            }
            match same_server(&location, &target, &host, https) {
                Some(next) => {
                    target = Cow::Owned(next);
                    redirects += 1;
                    continue;
                }
                None => {
                    return Err(format!(
                        "{line} to '{}': another server, not followed (the check asks this real server only)",
                        printable(location.as_bytes())
                    ))
                }
            }
        }
        let via = if redirects > 0 {
            format!(" (after {redirects} redirect(s), at {target})")
        } else {
            String::new()
        };
        if !status.is_success() {
            return Err(format!("{line}{via}"));
        }
        return if spec.receive_matches(&answer.body) {
            Ok(format!("{line}{via}"))
        } else {
            let pattern = spec.receive.as_ref().map(|r| r.as_str()).unwrap_or_default();
            Err(format!(
                "{line}{via} but the body does not match /{pattern}/ (body starts '{}')",
                printable(&answer.body)
            ))
        };
    }
}

fn status_line(status: StatusCode) -> String {
    format!("HTTP {} {}", status.as_str(), status.canonical_reason().unwrap_or("")).trim_end().to_string()
}

/// The request target for `request` (without ldirectord's leading `/`): `/request`, or the
/// path of an absolute URL (a per-real request may be one).
fn origin_path(body: &str) -> Result<String, String> {
    if body.contains("://") {
        let uri: Uri = body
            .parse()
            .map_err(|_| format!("request '{}' is not a valid URL", printable(body.as_bytes())))?;
        return Ok(uri.path_and_query().map_or_else(|| "/".to_string(), |p| p.as_str().to_string()));
    }
    Ok(format!("/{body}"))
}

/// Where a redirect leads when it stays on this real server: a path for the next request.
fn same_server(location: &str, current: &str, host: &str, https: bool) -> Option<String> {
    let location = location.trim();
    if location.starts_with("//") {
        let uri: Uri = format!("{}:{location}", if https { "https" } else { "http" }).parse().ok()?;
        return same_authority(&uri, host);
    }
    if location.starts_with('/') {
        return Some(location.to_string());
    }
    if let Ok(uri) = location.parse::<Uri>() {
        if let Some(scheme) = uri.scheme_str() {
            let same_scheme = scheme.eq_ignore_ascii_case(if https { "https" } else { "http" });
            return if same_scheme { same_authority(&uri, host) } else { None };
        }
    }
    // Relative to the current path's directory.
    let path = current.split('?').next().unwrap_or(current);
    let dir = path.rsplit_once('/').map_or("", |(d, _)| d);
    Some(format!("{dir}/{location}"))
}

fn same_authority(uri: &Uri, host: &str) -> Option<String> {
    let authority = uri.authority()?;
    if authority.host().trim_matches(['[', ']']).eq_ignore_ascii_case(strip_port(host)) {
        Some(uri.path_and_query().map_or_else(|| "/".to_string(), |p| p.as_str().to_string()))
    } else {
        None
    }
}

/// The request, in one buffer: `METHOD target HTTP/1.1`, Host, User-Agent, `Connection:
/// close`. Refuses what would not make a valid request line or Host header.
fn request(method: HttpMethod, target: &str, host: &str) -> Result<Vec<u8>, String> {
    // Visible ASCII only in the target; visible ASCII and tabs in the Host value.
    if target.is_empty() || !target.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(format!("request '{}' is not a valid request target", printable(target.as_bytes())));
    }
    if !host.bytes().all(|b| b == b'\t' || (b' '..=b'~').contains(&b)) {
        return Err(format!("virtualhost '{}' is not a valid Host header", printable(host.as_bytes())));
    }
    let method: &[u8] = match method {
        HttpMethod::Get => b"GET ",
        HttpMethod::Head => b"HEAD ",
    };
    let mut out = Vec::with_capacity(target.len() + host.len() + 100);
    out.extend_from_slice(method);
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\nHost: ");
    out.extend_from_slice(host.as_bytes());
    out.extend_from_slice(b"\r\nUser-Agent: ");
    out.extend_from_slice(AGENT);
    out.extend_from_slice(b"\r\nConnection: close\r\n\r\n");
    Ok(out)
}

async fn exchange(spec: &CheckSpec, https: bool, target: &str, host: &str) -> Result<Answer, String> {
    let request = request(spec.httpmethod, target, host)?;
    let head_only = spec.httpmethod == HttpMethod::Head;
    // The body matters only for a pattern.
    let keep = spec.receive.is_some();
    // A pooled socket, reset and pooled again when the exchange is over (or cut short).
    let tcp = connector::connect(spec.target).await?;
    if https {
        // Boxed: the TLS state is large, and plain http checks need not carry its room.
        Box::pin(async {
            let mut tls = tls::connect(tcp, spec.virtualhost.as_deref(), spec.target.ip(), true).await?;
            talk(&mut tls, &request, head_only, keep).await
        })
        .await
    } else {
        let mut tcp = tcp;
        talk(&mut tcp, &request, head_only, keep).await
    }
}

/// The answer's head.
struct Head {
    status: StatusCode,
    location: Option<String>,
    framing: Framing,
    /// Bytes of the buffer the head took.
    len: usize,
}

/// How the body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Empty,
    Length(u64),
    Chunked,
    UntilClose,
}

/// A connection's reading side: one buffer, grown as the answer needs.
struct Reader<'a, S> {
    io: &'a mut S,
    buf: Vec<u8>,
}

impl<S: AsyncRead + Unpin> Reader<'_, S> {
    /// Reads once more; 0 at the end of the stream. A TLS peer that closes without
    /// close_notify ends the stream too (the body's framing says whether it was complete).
    async fn more(&mut self) -> Result<usize, String> {
        if self.buf.capacity() - self.buf.len() < 512 {
            let grow = self.buf.capacity().clamp(1024, 16 * 1024);
            self.buf.reserve(grow);
        }
        match self.io.read_buf(&mut self.buf).await {
            Ok(n) => Ok(n),
            Err(e) if e.kind() == ErrorKind::UnexpectedEof => Ok(0),
            Err(e) => Err(format!("HTTP: read: {e}")),
        }
    }
}

/// Sends the request, reads the answer.
async fn talk<S>(io: &mut S, request: &[u8], head_only: bool, keep: bool) -> Result<Answer, String>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    io.write_all(request).await.map_err(|e| format!("HTTP: send request: {e}"))?;
    io.flush().await.map_err(|e| format!("HTTP: send request: {e}"))?;
    let mut r = Reader { io, buf: Vec::with_capacity(1024) };
    // Interim answers (1xx) come before the final one.
    let head = loop {
        let head = loop {
            if let Some(head) = parse_head(&r.buf, head_only)? {
                break head;
            }
            if r.buf.len() > MAX_READ {
                return Err(format!("HTTP: answer head longer than {MAX_READ} bytes"));
            }
            if r.more().await? == 0 {
                return Err(if r.buf.is_empty() {
                    "HTTP: connection closed without an answer".to_string()
                } else {
                    format!("HTTP: connection closed inside the answer head '{}'", printable(&r.buf))
                });
            }
        };
        r.buf.drain(..head.len);
        if !head.status.is_informational() {
            break head;
        }
    };
    let body = match head.framing {
        Framing::Empty => Vec::new(),
        Framing::Length(n) => {
            let want = usize::try_from(n).unwrap_or(usize::MAX).min(MAX_READ);
            while r.buf.len() < want {
                if r.more().await? == 0 {
                    return Err(format!("HTTP body: connection closed after {} of {n} bytes", r.buf.len()));
                }
            }
            r.buf.truncate(want);
            r.buf
        }
        Framing::UntilClose => {
            while r.buf.len() < MAX_READ && r.more().await? > 0 {}
            r.buf.truncate(MAX_READ);
            r.buf
        }
        Framing::Chunked => dechunk(&mut r, keep).await?,
    };
    let body = if keep { body } else { Vec::new() };
    Ok(Answer { status: head.status, location: head.location, body })
}

/// A chunked body, decoded, up to [`MAX_READ`] bytes (kept only when `keep`).
async fn dechunk<S: AsyncRead + Unpin>(r: &mut Reader<'_, S>, keep: bool) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    let mut seen = 0usize;
    let mut pos = 0usize;
    loop {
        // The chunk-size line.
        let line_end = loop {
            if let Some(i) = r.buf[pos..].iter().position(|&b| b == b'\n') {
                break pos + i;
            }
            if r.buf.len() - pos > MAX_CHUNK_LINE {
                return Err("HTTP body: chunk size line too long".to_string());
            }
            if r.more().await? == 0 {
                return Err("HTTP body: connection closed inside a chunked body".to_string());
            }
        };
        let line = &r.buf[pos..line_end];
        let digits = line.split(|&b| b == b';').next().unwrap_or_default().trim_ascii();
        let size = std::str::from_utf8(digits)
            .ok()
            .filter(|d| !d.is_empty())
            .and_then(|d| u64::from_str_radix(d, 16).ok())
            .ok_or_else(|| format!("HTTP body: bad chunk size '{}'", printable(line)))?;
        pos = line_end + 1;
        if size == 0 {
            return Ok(body);
        }
        // The chunk's data, then its CRLF.
        let mut left = size;
        while left > 0 {
            if pos == r.buf.len() {
                r.buf.clear();
                pos = 0;
                if r.more().await? == 0 {
                    return Err("HTTP body: connection closed inside a chunk".to_string());
                }
            }
            let take = (r.buf.len() - pos).min(usize::try_from(left).unwrap_or(usize::MAX));
            let room = MAX_READ - seen;
            if keep {
                body.extend_from_slice(&r.buf[pos..pos + take.min(room)]);
            }
            seen += take.min(room);
            if seen == MAX_READ {
                return Ok(body);
            }
            pos += take;
            left -= take as u64;
        }
        loop {
            match r.buf[pos..].iter().position(|&b| b == b'\n') {
                Some(i) => {
                    pos += i + 1;
                    break;
                }
                None if r.buf.len() - pos > 2 => {
                    return Err("HTTP body: chunk longer than its size".to_string())
                }
                None => {
                    if r.more().await? == 0 {
                        return Err("HTTP body: connection closed inside a chunked body".to_string());
                    }
                }
            }
        }
        if pos > 16 * 1024 {
            r.buf.drain(..pos);
            pos = 0;
        }
    }
}

/// The answer's head when `buf` holds all of it (`None`: read more).
fn parse_head(buf: &[u8], head_only: bool) -> Result<Option<Head>, String> {
    // The head ends at an empty line (CRLF or a bare LF).
    let mut start = 0;
    let mut end = None;
    while let Some(i) = buf[start..].iter().position(|&b| b == b'\n') {
        let line = &buf[start..start + i];
        if start > 0 && (line.is_empty() || line == b"\r") {
            end = Some(start + i + 1);
            break;
        }
        start += i + 1;
    }
    let Some(len) = end else {
        // Not HTTP at all: say so without waiting for more.
        let n = buf.len().min(5);
        if buf[..n] != b"HTTP/"[..n] {
            return Err(format!("HTTP: not an HTTP answer: '{}'", printable(buf)));
        }
        return Ok(None);
    };
    let mut lines = buf[..len].split(|&b| b == b'\n').map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let status_line = lines.next().unwrap_or_default();
    let status = parse_status(status_line)
        .ok_or_else(|| format!("HTTP: invalid status line '{}'", printable(status_line)))?;
    let mut location = None;
    let mut length: Option<u64> = None;
    let mut chunked = false;
    let mut encoded = false;
    for line in lines {
        let Some(colon) = line.iter().position(|&b| b == b':') else { continue };
        let (name, value) = (line[..colon].trim_ascii(), line[colon + 1..].trim_ascii());
        if name.eq_ignore_ascii_case(b"content-length") {
            let n = std::str::from_utf8(value)
                .ok()
                .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|v| v.parse::<u64>().ok())
                .ok_or_else(|| format!("HTTP: invalid Content-Length '{}'", printable(value)))?;
            if length.is_some_and(|l| l != n) {
                return Err("HTTP: conflicting Content-Length headers".to_string());
            }
            length = Some(n);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            encoded = true;
            chunked = value
                .rsplit(|&b| b == b',')
                .next()
                .is_some_and(|last| last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        } else if name.eq_ignore_ascii_case(b"location") && location.is_none() {
            location = value
                .iter()
                .all(|&b| b == b'\t' || (b' '..=b'~').contains(&b))
                .then(|| String::from_utf8_lossy(value).into_owned());
        }
    }
    let code = status.as_u16();
    let framing = if head_only || status.is_informational() || code == 204 || code == 304 {
        Framing::Empty
    } else if chunked {
        Framing::Chunked
    } else if encoded {
        Framing::UntilClose
    } else {
        length.map_or(Framing::UntilClose, Framing::Length)
    };
    Ok(Some(Head { status, location, framing, len }))
}

/// `HTTP/1.1 200 OK` → 200.
fn parse_status(line: &[u8]) -> Option<StatusCode> {
    let rest = line.strip_prefix(b"HTTP/")?;
    let sp = rest.iter().position(|&b| b == b' ')?;
    let version = &rest[..sp];
    if version.is_empty() || !version.iter().all(|b| b.is_ascii_digit() || *b == b'.') {
        return None;
    }
    let code = rest[sp + 1..].trim_ascii_start();
    let digits = code.get(..3)?;
    if code.get(3).is_some_and(|b| *b != b' ' && *b != b'\t') {
        return None;
    }
    StatusCode::from_bytes(digits).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn answer(bytes: &[u8], head_only: bool) -> Result<Answer, String> {
        // The request goes to a sink; the answer comes from `bytes`.
        let mut io = tokio::io::join(bytes, tokio::io::sink());
        talk(&mut io, b"GET / HTTP/1.1\r\n\r\n", head_only, true).await
    }

    #[tokio::test]
    async fn answers() {
        let a = answer(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello world", false).await.unwrap();
        assert_eq!((a.status.as_u16(), a.body.as_slice()), (200, &b"hello"[..]));
        let a = answer(b"HTTP/1.0 404 Not Found\nServer: x\n\nno such page", false).await.unwrap();
        assert_eq!((a.status.as_u16(), a.body.as_slice()), (404, &b"no such page"[..]));
        let a = answer(
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
              5;x=y\r\nhello\r\n6\r\n world\r\n0\r\nTrailer: t\r\n\r\n",
            false,
        )
        .await
        .unwrap();
        assert_eq!((a.status.as_u16(), a.body.as_slice()), (200, &b"hello world"[..]));
        let a =
            answer(b"HTTP/1.1 302 Found\r\nLocation: /ok\r\nContent-Length: 0\r\n\r\n", false).await.unwrap();
        assert_eq!((a.status.as_u16(), a.location.as_deref()), (302, Some("/ok")));
        let a = answer(b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n", true).await.unwrap();
        assert!(a.body.is_empty(), "HEAD: no body");
        let a = answer(b"HTTP/1.1 204 No Content\r\n\r\n", false).await.unwrap();
        assert_eq!(a.status.as_u16(), 204);
    }

    #[tokio::test]
    async fn bad_answers() {
        for (bytes, why) in [
            (&b""[..], "without an answer"),
            (b"\x00\xff\x13garbage\r\n\r\n", "invalid status line"),
            (b"SSH-2.0-OpenSSH_9.2\r\n", "not an HTTP answer"),
            (b"HTTP/1.1 2x0 OK\r\n\r\n", "invalid status line"),
            (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", "closed after 5 of 10"),
            (b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", "Content-Length"),
            (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "chunk size"),
            (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel", "inside a chunk"),
            (b"HTTP/1.1 200 OK\r\nContent-", "inside the answer head"),
        ] {
            let e = answer(bytes, false).await.err().unwrap_or_default();
            assert!(e.contains(why), "{e:?} lacks {why:?}");
        }
    }

    #[tokio::test]
    async fn bodies_are_capped() {
        let mut big = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        for _ in 0..20 {
            big.extend_from_slice(b"1000\r\n");
            big.extend_from_slice(&[b'x'; 4096]);
            big.extend_from_slice(b"\r\n");
        }
        assert_eq!(answer(&big, false).await.unwrap().body.len(), MAX_READ);
        let mut big = b"HTTP/1.1 200 OK\r\n\r\n".to_vec();
        big.resize(big.len() + 3 * MAX_READ, b'y');
        assert_eq!(answer(&big, false).await.unwrap().body.len(), MAX_READ);
    }

    #[test]
    fn requests() {
        let r = request(HttpMethod::Head, "/a?b", "h:8080").unwrap();
        assert_eq!(
            r,
            b"HEAD /a?b HTTP/1.1\r\nHost: h:8080\r\nUser-Agent: halo-check (ldirectord compatible)\r\n\
              Connection: close\r\n\r\n"
        );
        assert!(request(HttpMethod::Get, "/a b", "h").is_err());
        assert!(request(HttpMethod::Get, "/", "h\r\nX: y").is_err());
    }

    #[test]
    fn paths() {
        assert_eq!(origin_path("").unwrap(), "/");
        assert_eq!(origin_path("index.html?a=1").unwrap(), "/index.html?a=1");
        assert_eq!(origin_path("http://www.example.com/x/y?z").unwrap(), "/x/y?z");
        assert_eq!(origin_path("http://www.example.com").unwrap(), "/");
    }

    #[test]
    fn redirects() {
        assert_eq!(same_server("/a", "/", "h", false).as_deref(), Some("/a"));
        assert_eq!(same_server("b.html", "/dir/a.html?x", "h", false).as_deref(), Some("/dir/b.html"));
        assert_eq!(same_server("http://H:8080/c", "/", "h", false).as_deref(), Some("/c"));
        assert_eq!(same_server("http://other/c", "/", "h", false), None);
        assert_eq!(same_server("https://h/c", "/", "h", false), None);
        assert_eq!(same_server("//h/d", "/", "h", true).as_deref(), Some("/d"));
        assert_eq!(same_server("http://[2001:db8::1]/e", "/", "[2001:db8::1]", false).as_deref(), Some("/e"));
    }
}
