//! connect and simpletcp.

use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::UdpSocket;

use super::io::{connect_tcp, read_line, trim_eol};
use super::{printable, CheckSpec, Outcome, Transport, MAX_READ};

/// Up iff a TCP connection to the real server is established (and reset at once, from a
/// reused socket: see [`super::connector`]).
pub(crate) async fn connect(spec: &CheckSpec) -> Outcome {
    super::connector::connect_and_reset(spec.target).await?;
    Ok(format!("connected to {}", spec.target))
}

/// `\n` written in the configuration becomes a newline, as ldirectord does (`s/\\n/\n/g`).
pub(crate) fn simpletcp_payload(spec: &CheckSpec) -> Vec<u8> {
    spec.request_body().replace("\\n", "\n").into_bytes()
}

/// ldirectord's check_simpletcp: send the request, shut down the write side, read lines until
/// one matches `receive` (any line at all when there is no pattern) or the stream ends.
pub(crate) async fn simpletcp(spec: &CheckSpec) -> Outcome {
    let payload = simpletcp_payload(spec);
    if spec.transport == Transport::Udp {
        return simpleudp(spec, &payload).await;
    }
    let mut stream = connect_tcp(spec.target).await?;
    stream.write_all(&payload).await.map_err(|e| format!("send request: {e}"))?;
    stream.shutdown().await.map_err(|e| format!("shutdown: {e}"))?;
    let mut reader = BufReader::new(stream);
    let mut read = 0usize;
    let mut last = Vec::new();
    while read < MAX_READ {
        // A line is cut at what is left of the budget: a pattern may still match its start.
        let line = match read_line(&mut reader, MAX_READ - read).await {
            Ok(Some(line)) => line,
            Ok(None) => break,
            Err(e) if read == 0 => return Err(e),
            Err(_) => break,
        };
        read += line.len() + 1;
        if spec.receive_matches(&line) {
            return Ok(format!("line matches: '{}'", printable(&line)));
        }
        last = line;
    }
    if read == 0 {
        Err("connection closed without an answer".to_string())
    } else {
        Err(no_match(spec, &last))
    }
}

fn no_match(spec: &CheckSpec, last: &[u8]) -> String {
    let pattern = spec.receive.as_ref().map(|r| r.as_str()).unwrap_or_default();
    format!("no line of the answer matches /{pattern}/ (last line '{}')", printable(last))
}

/// simpletcp on a UDP service: one datagram out, one back, its lines matched.
async fn simpleudp(spec: &CheckSpec, payload: &[u8]) -> Outcome {
    let sock = udp_socket(spec).await?;
    sock.send(payload).await.map_err(|e| format!("send request: {e}"))?;
    let mut buf = vec![0u8; MAX_READ];
    let n = sock.recv(&mut buf).await.map_err(|e| format!("receive: {e}"))?;
    let data = buf.get(..n).unwrap_or_default();
    let mut last = Vec::new();
    for line in data.split_inclusive(|&b| b == b'\n') {
        let mut line = line.to_vec();
        trim_eol(&mut line);
        if spec.receive_matches(&line) {
            return Ok(format!("line matches: '{}'", printable(&line)));
        }
        last = line;
    }
    Err(no_match(spec, &last))
}

/// A UDP socket connected to the real server (so that only its answers are received).
pub(crate) async fn udp_socket(spec: &CheckSpec) -> Result<UdpSocket, String> {
    let bind = if spec.target.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" };
    let sock = UdpSocket::bind(bind).await.map_err(|e| format!("UDP socket: {e}"))?;
    sock.connect(spec.target).await.map_err(|e| format!("UDP connect to {}: {e}", spec.target))?;
    Ok(sock)
}
