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

use std::pin::pin;

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper::client::conn::http1;
use hyper::header::{HeaderValue, CONNECTION, HOST, LOCATION, USER_AGENT};
use hyper::{Method, Request, StatusCode, Uri};
use hyper_util::rt::TokioIo;

use super::io::connect_tcp;
use super::tls::{self, strip_port};
use super::{printable, CheckKind, CheckSpec, HttpMethod, Outcome, MAX_READ};

const MAX_REDIRECTS: usize = 7;
const AGENT: &str = "halo-check (ldirectord compatible)";

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
        (url.to_string(), authority.to_string())
    } else {
        let host = match &spec.virtualhost {
            Some(vh) => vh.clone(),
            None => match spec.target.ip() {
                std::net::IpAddr::V4(a) => a.to_string(),
                std::net::IpAddr::V6(a) => format!("[{a}]"),
            },
        };
        (origin_path(spec.request_body())?, host)
    };
    let method = match spec.httpmethod {
        HttpMethod::Get => Method::GET,
        HttpMethod::Head => Method::HEAD,
    };
    let mut redirects = 0;
    loop {
        let answer = exchange(spec, https, &method, &target, &host).await?;
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
                    target = next;
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

async fn exchange(
    spec: &CheckSpec,
    https: bool,
    method: &Method,
    target: &str,
    host: &str,
) -> Result<Answer, String> {
    let host_value = HeaderValue::from_str(host)
        .map_err(|_| format!("virtualhost '{}' is not a valid Host header", printable(host.as_bytes())))?;
    let request = Request::builder()
        .method(method.clone())
        .uri(target)
        .header(HOST, host_value)
        .header(USER_AGENT, AGENT)
        .header(CONNECTION, "close")
        .body(Empty::<Bytes>::new())
        .map_err(|_| format!("request '{}' is not a valid request target", printable(target.as_bytes())))?;
    let tcp = connect_tcp(spec.target).await?;
    if https {
        let tls = tls::connect(tcp, spec.virtualhost.as_deref(), spec.target.ip(), true).await?;
        send(TokioIo::new(tls), request).await
    } else {
        send(TokioIo::new(tcp), request).await
    }
}

/// Drives the connection and the request in this task (no spawn): when the deadline drops
/// the check, the connection goes with it.
async fn send<T>(io: T, request: Request<Empty<Bytes>>) -> Result<Answer, String>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    // The response head is read into a buffer capped like every other answer.
    let (mut sender, conn) = http1::Builder::new()
        .max_buf_size(MAX_READ)
        .handshake::<_, Empty<Bytes>>(io)
        .await
        .map_err(|e| format!("HTTP: {e}"))?;
    let work = async move {
        let response = sender.send_request(request).await.map_err(|e| format!("HTTP: {e}"))?;
        let status = response.status();
        let location = response.headers().get(LOCATION).and_then(|v| v.to_str().ok()).map(str::to_string);
        let mut body = response.into_body();
        let mut data = Vec::new();
        while data.len() < MAX_READ {
            let Some(frame) = body.frame().await else { break };
            let frame = frame.map_err(|e| format!("HTTP body: {e}"))?;
            if let Ok(chunk) = frame.into_data() {
                let room = MAX_READ - data.len();
                data.extend_from_slice(&chunk[..chunk.len().min(room)]);
            }
        }
        Ok::<_, String>(Answer { status, location, body: data })
    };
    let mut work = pin!(work);
    let mut conn = pin!(conn);
    tokio::select! {
        biased;
        answer = &mut work => answer,
        ended = &mut conn => {
            // The connection ended first (closed by the server, or an error): whatever the
            // request got before that is still delivered to it.
            match (work.await, ended) {
                (Ok(a), _) => Ok(a),
                (Err(_), Err(e)) => Err(format!("HTTP: {e}")),
                (Err(e), Ok(())) => Err(e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
