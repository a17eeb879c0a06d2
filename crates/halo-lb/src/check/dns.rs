//! dns: ldirectord's Net::DNS check — query `request` against the real server (UDP, or TCP
//! when the virtual service is TCP), an A query for a name and a PTR query for an address,
//! up iff an A address or PTR name of the answer matches `receive`.
//!
//! Differences from ldirectord: with an empty `receive` any A or PTR answer is up (ldirectord
//! reports down whatever the answer); a truncated UDP answer is asked again over TCP, as
//! resolvers do; the name is queried as written, without the resolver's search domains.

use std::net::IpAddr;

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::io::connect_tcp;
use super::tcp::udp_socket;
use super::{printable, CheckSpec, Outcome, Transport};

pub(crate) async fn check(spec: &CheckSpec) -> Outcome {
    let request = spec.request_body().trim();
    let (name, rtype) = match request.parse::<IpAddr>() {
        Ok(ip) => (Name::from(ip), RecordType::PTR),
        Err(_) => {
            let mut name = Name::from_ascii(request).map_err(|e| {
                format!("request '{}' is not a domain name: {e}", printable(request.as_bytes()))
            })?;
            name.set_fqdn(true);
            (name, RecordType::A)
        }
    };
    let id = query_id();
    let mut query = Message::new(id, MessageType::Query, OpCode::Query);
    query.metadata.recursion_desired = true;
    query.add_query(Query::query(name.clone(), rtype));
    let wire = query.to_vec().map_err(|e| format!("DNS query: {e}"))?;

    let mut answer = match spec.transport {
        Transport::Udp => ask_udp(spec, &wire, id).await?,
        Transport::Tcp => ask_tcp(spec, &wire, id).await?,
    };
    if answer.metadata.truncation && spec.transport == Transport::Udp {
        answer = ask_tcp(spec, &wire, id).await?;
    }
    let rcode = answer.metadata.response_code;
    if rcode != ResponseCode::NoError {
        return Err(format!("{rtype} {name}: {rcode}"));
    }
    let mut seen = Vec::new();
    for record in &answer.answers {
        let text = match &record.data {
            RData::A(a) => a.0.to_string(),
            RData::PTR(p) => {
                let s = p.0.to_string();
                s.strip_suffix('.').map(str::to_string).unwrap_or(s)
            }
            _ => continue,
        };
        if spec.receive_matches(text.as_bytes()) {
            return Ok(format!("{rtype} {name}: {text}"));
        }
        seen.push(text);
    }
    if seen.is_empty() {
        Err(format!("{rtype} {name}: no A or PTR record in the answer"))
    } else {
        let pattern = spec.receive.as_ref().map(|r| r.as_str()).unwrap_or_default();
        Err(format!("{rtype} {name}: {} does not match /{pattern}/", printable(seen.join(", ").as_bytes())))
    }
}

/// Ids need not be secret here (the socket is connected to the real server); they must only
/// differ between the checks in flight.
fn query_id() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let seed = std::process::id() as u16;
    NEXT.fetch_add(1, Ordering::Relaxed).wrapping_mul(40503).wrapping_add(seed)
}

fn parse(buf: &[u8], id: u16) -> Option<Result<Message, String>> {
    match Message::from_vec(buf) {
        // Someone else's (or an old) answer: keep waiting.
        Ok(m) if m.metadata.id != id || m.metadata.message_type != MessageType::Response => None,
        Ok(m) => Some(Ok(m)),
        Err(e) => Some(Err(format!("malformed DNS answer: {e}"))),
    }
}

async fn ask_udp(spec: &CheckSpec, wire: &[u8], id: u16) -> Result<Message, String> {
    let sock = udp_socket(spec).await?;
    sock.send(wire).await.map_err(|e| format!("send query: {e}"))?;
    let mut buf = vec![0u8; 4096];
    loop {
        let n = sock.recv(&mut buf).await.map_err(|e| format!("receive: {e}"))?;
        if let Some(r) = parse(buf.get(..n).unwrap_or_default(), id) {
            return r;
        }
    }
}

async fn ask_tcp(spec: &CheckSpec, wire: &[u8], id: u16) -> Result<Message, String> {
    let mut stream = connect_tcp(spec.target).await?;
    let len = u16::try_from(wire.len()).map_err(|_| "query too long".to_string())?;
    let mut framed = len.to_be_bytes().to_vec();
    framed.extend_from_slice(wire);
    stream.write_all(&framed).await.map_err(|e| format!("send query: {e}"))?;
    loop {
        let mut len = [0u8; 2];
        stream.read_exact(&mut len).await.map_err(|e| format!("receive: {e}"))?;
        let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
        stream.read_exact(&mut buf).await.map_err(|e| format!("receive: {e}"))?;
        if let Some(r) = parse(&buf, id) {
            return r;
        }
    }
}
