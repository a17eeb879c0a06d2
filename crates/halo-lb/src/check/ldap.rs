//! ldap and ldaps: ldirectord's check_ldap — a simple bind (as `login` with `passwd` when both
//! are set, anonymous otherwise), then a search of the base object `request` (leading `/`
//! dropped; empty: the root DSE) with scope `base` and filter `(objectClass=*)`; up iff the
//! bind succeeds, exactly one entry comes back and its DN matches `receive` (any DN without a
//! pattern). ldaps speaks the same over TLS (no certificate verification, as the others).
//!
//! The LDAPv3 messages (RFC 4511) are few and fixed, so they are BER-encoded here by hand
//! rather than through an LDAP client crate: a bind, a search, an unbind, and a reader of the
//! three answers that matter, each message capped at [`MAX_READ`] bytes.

use tokio::io::{AsyncBufRead, AsyncReadExt, AsyncWriteExt};

use super::mail::open;
use super::{printable, CheckKind, CheckSpec, Outcome, MAX_READ};

// Tags: universal, and [APPLICATION n] of the LDAPMessage protocolOp choice.
const INTEGER: u8 = 0x02;
const OCTET_STRING: u8 = 0x04;
const ENUMERATED: u8 = 0x0a;
const BOOLEAN: u8 = 0x01;
const SEQUENCE: u8 = 0x30;
const BIND_REQUEST: u8 = 0x60;
const BIND_RESPONSE: u8 = 0x61;
const UNBIND_REQUEST: u8 = 0x42;
const SEARCH_REQUEST: u8 = 0x63;
const SEARCH_RESULT_ENTRY: u8 = 0x64;
const SEARCH_RESULT_DONE: u8 = 0x65;
const SIMPLE_AUTH: u8 = 0x80;
const FILTER_PRESENT: u8 = 0x87;

pub(crate) async fn check(spec: &CheckSpec) -> Outcome {
    let mut conn = open(spec, spec.kind == CheckKind::Ldaps).await?;
    let (dn, password) = if !spec.login.is_empty() && !spec.passwd.is_empty() {
        (spec.login.as_str(), spec.passwd.as_str())
    } else {
        ("", "")
    };
    send(&mut conn, &bind_request(1, dn, password)).await?;
    let (id, op, body) = read_message(&mut conn).await?;
    if id != 1 || op != BIND_RESPONSE {
        return Err(format!("answer to the bind is not a BindResponse (message {id}, tag {op:#04x})"));
    }
    let (code, text) = ldap_result(&body)?;
    if code != 0 {
        let who = if dn.is_empty() { "anonymous bind".to_string() } else { format!("bind as {dn}") };
        return Err(format!("{who} refused: {}", result_text(code, &text)));
    }
    let base = spec.request_body();
    send(&mut conn, &search_request(2, base)).await?;
    let mut dns = Vec::new();
    let mut read = 0usize;
    let done = loop {
        let (id, op, body) = read_message(&mut conn).await?;
        read += body.len();
        if read > MAX_READ {
            return Err(format!("search answer longer than {MAX_READ} bytes"));
        }
        if id != 2 {
            continue;
        }
        match op {
            SEARCH_RESULT_ENTRY => {
                let mut r = Ber::new(&body);
                dns.push(r.expect(OCTET_STRING)?.to_vec());
            }
            SEARCH_RESULT_DONE => break ldap_result(&body)?,
            // References and intermediate responses are not entries.
            _ => {}
        }
    };
    let _ = send(&mut conn, &unbind_request(3)).await;
    let shown = if base.is_empty() { "the root DSE".to_string() } else { format!("base {base}") };
    if dns.len() != 1 {
        return Err(format!(
            "search of {shown}: {} entries, expected 1 ({})",
            dns.len(),
            result_text(done.0, &done.1)
        ));
    }
    let entry = &dns[0];
    if spec.receive_matches(entry) {
        Ok(format!("bound, search of {shown} found '{}'", printable(entry)))
    } else {
        let pattern = spec.receive.as_ref().map(|r| r.as_str()).unwrap_or_default();
        Err(format!("search of {shown}: DN '{}' does not match /{pattern}/", printable(entry)))
    }
}

fn result_text(code: u32, text: &str) -> String {
    let name = match code {
        0 => "success",
        1 => "operationsError",
        2 => "protocolError",
        7 => "authMethodNotSupported",
        8 => "strongerAuthRequired",
        13 => "confidentialityRequired",
        32 => "noSuchObject",
        34 => "invalidDNSyntax",
        48 => "inappropriateAuthentication",
        49 => "invalidCredentials",
        50 => "insufficientAccessRights",
        51 => "busy",
        52 => "unavailable",
        53 => "unwillingToPerform",
        _ => "result",
    };
    if text.is_empty() {
        format!("{name} ({code})")
    } else {
        format!("{name} ({code}): {text}")
    }
}

async fn send<W: AsyncWriteExt + Unpin>(w: &mut W, bytes: &[u8]) -> Result<(), String> {
    w.write_all(bytes).await.map_err(|e| format!("send: {e}"))?;
    w.flush().await.map_err(|e| format!("send: {e}"))
}

// ------------------------------------------------------------------------------------------
// Encoding
// ------------------------------------------------------------------------------------------

fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let n = content.len();
    if n < 0x80 {
        out.push(n as u8);
    } else {
        let bytes = (n as u32).to_be_bytes();
        let skip = bytes.iter().take_while(|&&b| b == 0).count();
        out.push(0x80 | (4 - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(content);
    out
}

fn int(tag: u8, v: u32) -> Vec<u8> {
    let bytes = v.to_be_bytes();
    let mut skip = bytes.iter().take_while(|&&b| b == 0).count().min(3);
    // A leading bit set would make the number negative: keep a zero byte before it.
    if bytes[skip] & 0x80 != 0 {
        skip -= 1;
    }
    tlv(tag, &bytes[skip..])
}

fn message(id: u32, op: Vec<u8>) -> Vec<u8> {
    let mut body = int(INTEGER, id);
    body.extend(op);
    tlv(SEQUENCE, &body)
}

pub(crate) fn bind_request(id: u32, dn: &str, password: &str) -> Vec<u8> {
    let mut op = int(INTEGER, 3);
    op.extend(tlv(OCTET_STRING, dn.as_bytes()));
    op.extend(tlv(SIMPLE_AUTH, password.as_bytes()));
    message(id, tlv(BIND_REQUEST, &op))
}

pub(crate) fn search_request(id: u32, base: &str) -> Vec<u8> {
    let mut op = tlv(OCTET_STRING, base.as_bytes());
    op.extend(int(ENUMERATED, 0)); // scope: baseObject
    op.extend(int(ENUMERATED, 0)); // derefAliases: never
    op.extend(int(INTEGER, 0)); // sizeLimit
    op.extend(int(INTEGER, 0)); // timeLimit
    op.extend(tlv(BOOLEAN, &[0])); // typesOnly
    op.extend(tlv(FILTER_PRESENT, b"objectClass"));
    // "1.1": no attributes, only the DN is judged.
    op.extend(tlv(SEQUENCE, &tlv(OCTET_STRING, b"1.1")));
    message(id, tlv(SEARCH_REQUEST, &op))
}

fn unbind_request(id: u32) -> Vec<u8> {
    message(id, vec![UNBIND_REQUEST, 0])
}

// ------------------------------------------------------------------------------------------
// Decoding
// ------------------------------------------------------------------------------------------

/// A cursor over BER content.
pub(crate) struct Ber<'a> {
    buf: &'a [u8],
}

impl<'a> Ber<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Ber<'a> {
        Ber { buf }
    }

    /// The next element: its tag and content.
    pub(crate) fn next(&mut self) -> Result<(u8, &'a [u8]), String> {
        let bad = || "malformed LDAP message".to_string();
        let (&tag, rest) = self.buf.split_first().ok_or_else(bad)?;
        let (&first, mut rest) = rest.split_first().ok_or_else(bad)?;
        let len = if first < 0x80 {
            usize::from(first)
        } else {
            let n = usize::from(first & 0x7f);
            if n == 0 || n > 4 || rest.len() < n {
                return Err(bad());
            }
            let len = rest[..n].iter().fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
            rest = &rest[n..];
            len
        };
        if rest.len() < len {
            return Err(bad());
        }
        let (content, after) = rest.split_at(len);
        self.buf = after;
        Ok((tag, content))
    }

    pub(crate) fn expect(&mut self, tag: u8) -> Result<&'a [u8], String> {
        let (t, c) = self.next()?;
        if t != tag {
            return Err(format!("malformed LDAP message: tag {t:#04x} where {tag:#04x} was expected"));
        }
        Ok(c)
    }
}

fn uint(content: &[u8]) -> Result<u32, String> {
    if content.is_empty() || content.len() > 5 {
        return Err("malformed LDAP integer".to_string());
    }
    Ok(content.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b)) as u32)
}

/// resultCode and diagnosticMessage of an LDAPResult.
pub(crate) fn ldap_result(body: &[u8]) -> Result<(u32, String), String> {
    let mut r = Ber::new(body);
    let code = uint(r.expect(ENUMERATED)?)?;
    let _matched = r.expect(OCTET_STRING)?;
    let text = r.expect(OCTET_STRING)?;
    Ok((code, printable(text)))
}

/// One LDAPMessage: its id, the protocolOp's tag and the protocolOp's content.
async fn read_message<R: AsyncBufRead + Unpin>(r: &mut R) -> Result<(u32, u8, Vec<u8>), String> {
    let closed = |e: std::io::Error| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            "connection closed inside or instead of an LDAP answer".to_string()
        } else {
            format!("read: {e}")
        }
    };
    let mut head = [0u8; 2];
    r.read_exact(&mut head).await.map_err(closed)?;
    if head[0] != SEQUENCE {
        return Err(format!("not an LDAP answer (first byte {:#04x})", head[0]));
    }
    let len = if head[1] < 0x80 {
        usize::from(head[1])
    } else {
        let n = usize::from(head[1] & 0x7f);
        if n == 0 || n > 4 {
            return Err("malformed LDAP message length".to_string());
        }
        let mut b = [0u8; 4];
        r.read_exact(&mut b[..n]).await.map_err(closed)?;
        b[..n].iter().fold(0usize, |acc, &x| (acc << 8) | usize::from(x))
    };
    if len > MAX_READ {
        return Err(format!("LDAP message of {len} bytes, more than {MAX_READ}"));
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).await.map_err(closed)?;
    let mut m = Ber::new(&body);
    let id = uint(m.expect(INTEGER)?)?;
    let (op, content) = m.next()?;
    Ok((id, op, content.to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_as_openldap_does() {
        // ldapsearch -x: an anonymous simple bind, message 1.
        assert_eq!(bind_request(1, "", ""), b"\x30\x0c\x02\x01\x01\x60\x07\x02\x01\x03\x04\x00\x80\x00");
        let long = "x".repeat(300);
        let m = bind_request(200, &long, "pw");
        assert_eq!(&m[..4], b"\x30\x82\x01\x3f");
        assert_eq!(&m[4..8], b"\x02\x02\x00\xc8");
        let mut r = Ber::new(&m);
        let (tag, body) = r.next().unwrap();
        assert_eq!((tag, body.len()), (SEQUENCE, 0x13f));
    }

    #[test]
    fn decodes_results() {
        let body = b"\x0a\x01\x31\x04\x00\x04\x0binvalid pwd";
        assert_eq!(ldap_result(body).unwrap(), (49, "invalid pwd".to_string()));
        assert!(ldap_result(b"\x0a\x01").is_err());
        assert!(Ber::new(b"\x04\x85\x00\x00\x00\x00\x01").next().is_err());
    }
}
