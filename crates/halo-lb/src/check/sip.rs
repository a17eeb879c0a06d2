//! sip: ldirectord's check_sip — `OPTIONS sip:<login> SIP/2.0` over UDP or TCP (the virtual
//! service's protocol), up iff the status line is `SIP/2.0 200 OK`. The Via header names the
//! real transport (ldirectord always writes UDP there).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncWriteExt, BufReader};

use super::io::{connect_tcp, read_line, MAX_LINE};
use super::tcp::udp_socket;
use super::{printable, CheckSpec, Outcome, Transport};

pub(crate) fn options_request(spec: &CheckSpec, local: SocketAddr) -> Result<String, String> {
    let login = &spec.login;
    if login.contains(['\r', '\n']) {
        return Err("the sip login holds a line break".to_string());
    }
    let transport = match spec.transport {
        Transport::Udp => "UDP",
        Transport::Tcp => "TCP",
    };
    let call_id = call_id();
    Ok(format!(
        "OPTIONS sip:{login} SIP/2.0\r\n\
         Via: SIP/2.0/{transport} {local};branch=z9hG4bK{call_id}\r\n\
         Max-Forwards: 70\r\n\
         To: <sip:{login}>\r\n\
         From: <sip:{login}>;tag=1928301774\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: 63104 OPTIONS\r\n\
         Contact: <sip:{login}>\r\n\
         Accept: application/sdp\r\n\
         Content-Length: 0\r\n\r\n"
    ))
}

/// Unique per check (a counter mixed with the time and the pid); not a secret.
fn call_id() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let t = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    format!("{:016x}", t ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ u64::from(std::process::id()))
}

fn judge(status: &[u8]) -> Outcome {
    if status.starts_with(b"SIP/2.0 200 OK") {
        Ok(printable(status))
    } else {
        Err(format!("status: '{}'", printable(status)))
    }
}

pub(crate) async fn check(spec: &CheckSpec) -> Outcome {
    match spec.transport {
        Transport::Udp => {
            let sock = udp_socket(spec).await?;
            let local = sock.local_addr().map_err(|e| format!("UDP socket: {e}"))?;
            let request = options_request(spec, local)?;
            sock.send(request.as_bytes()).await.map_err(|e| format!("send OPTIONS: {e}"))?;
            // Only the status line matters; a longer datagram is cut.
            let mut buf = vec![0u8; 8192];
            let n = sock.recv(&mut buf).await.map_err(|e| format!("receive: {e}"))?;
            let data = buf.get(..n).unwrap_or_default();
            let status = data.split(|&b| b == b'\n').next().unwrap_or_default();
            judge(status.strip_suffix(b"\r").unwrap_or(status))
        }
        Transport::Tcp => {
            let mut stream = connect_tcp(spec.target).await?;
            let local = stream.local_addr().map_err(|e| format!("TCP socket: {e}"))?;
            let request = options_request(spec, local)?;
            stream.write_all(request.as_bytes()).await.map_err(|e| format!("send OPTIONS: {e}"))?;
            let mut reader = BufReader::new(stream);
            let status =
                read_line(&mut reader, MAX_LINE).await?.ok_or("connection closed without an answer")?;
            judge(&status)
        }
    }
}
