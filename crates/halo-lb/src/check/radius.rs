//! radius: ldirectord's check_radius (Authen::Radius `check_pwd`) — an Access-Request with
//! User-Name `login`, User-Password `passwd` hidden with `secret` (RFC 2865 §5.2) and
//! NAS-IP-Address, sent over UDP to the real server; the answer's Response Authenticator must
//! check out with `secret`.
//!
//! Up only on Access-Accept, as ldirectord: `check_pwd` returns `defined($rcv) and $rcv ==
//! ACCESS_ACCEPT`, which is Perl's empty string for an Access-Reject, and check_radius reports
//! down on an empty result. An Access-Reject therefore means down here too (its reason says
//! the server answered, so an operator sees the credentials, not the server, are at fault).
//!
//! Beyond ldirectord: the request carries a Message-Authenticator (RFC 3579, HMAC-MD5 with
//! the secret), which FreeRADIUS ≥ 3.2.5 asks for since the BlastRADIUS fixes, and one in an
//! answer is verified.

use hmac::{Hmac, KeyInit, Mac};
use md5::{Digest, Md5};

use super::crypto::random_bytes;
use super::tcp::udp_socket;
use super::{printable, CheckSpec, Outcome};

const ACCESS_REQUEST: u8 = 1;
const ACCESS_ACCEPT: u8 = 2;
const ACCESS_REJECT: u8 = 3;
const ACCESS_CHALLENGE: u8 = 11;
const USER_NAME: u8 = 1;
const USER_PASSWORD: u8 = 2;
const NAS_IP_ADDRESS: u8 = 4;
const REPLY_MESSAGE: u8 = 18;
const MESSAGE_AUTHENTICATOR: u8 = 80;

pub(crate) async fn check(spec: &CheckSpec) -> Outcome {
    let sock = udp_socket(spec).await?;
    let local = sock.local_addr().map_err(|e| format!("UDP socket: {e}"))?;
    let nas = match local.ip() {
        std::net::IpAddr::V4(a) => a.octets(),
        std::net::IpAddr::V6(_) => [127, 0, 0, 1],
    };
    let id = random_bytes(1)[0];
    let mut authenticator = [0u8; 16];
    authenticator.copy_from_slice(&random_bytes(16));
    let packet = access_request(id, &authenticator, &spec.login, &spec.passwd, &spec.secret, nas)?;
    sock.send(&packet).await.map_err(|e| format!("send Access-Request: {e}"))?;
    let mut buf = vec![0u8; 4096];
    loop {
        let n = sock.recv(&mut buf).await.map_err(|e| format!("receive: {e}"))?;
        let answer = buf.get(..n).unwrap_or_default();
        // Another request's answer (or noise): keep waiting until the deadline.
        if answer.len() < 20 || answer[1] != id {
            continue;
        }
        return judge(answer, &authenticator, &spec.secret);
    }
}

pub(crate) fn access_request(
    id: u8,
    authenticator: &[u8; 16],
    login: &str,
    passwd: &str,
    secret: &str,
    nas: [u8; 4],
) -> Result<Vec<u8>, String> {
    if login.is_empty() || login.len() > 253 {
        return Err("the radius check needs a login of 1 to 253 bytes".to_string());
    }
    if passwd.len() > 128 {
        return Err("the radius passwd is longer than 128 bytes".to_string());
    }
    let mut p = vec![ACCESS_REQUEST, id, 0, 0];
    p.extend_from_slice(authenticator);
    attr(&mut p, USER_NAME, login.as_bytes());
    attr(&mut p, USER_PASSWORD, &hide_password(passwd.as_bytes(), secret.as_bytes(), authenticator));
    attr(&mut p, NAS_IP_ADDRESS, &nas);
    let ma_at = p.len() + 2;
    attr(&mut p, MESSAGE_AUTHENTICATOR, &[0u8; 16]);
    let len = p.len() as u16;
    p[2..4].copy_from_slice(&len.to_be_bytes());
    let mac = hmac_md5(secret.as_bytes(), &p);
    p[ma_at..ma_at + 16].copy_from_slice(&mac);
    Ok(p)
}

fn attr(p: &mut Vec<u8>, t: u8, v: &[u8]) {
    p.push(t);
    p.push((v.len() + 2) as u8);
    p.extend_from_slice(v);
}

fn hmac_md5(key: &[u8], data: &[u8]) -> [u8; 16] {
    let mut out = [0u8; 16];
    if let Ok(mut mac) = <Hmac<Md5> as KeyInit>::new_from_slice(key) {
        mac.update(data);
        out.copy_from_slice(&mac.finalize().into_bytes());
    }
    out
}

/// RFC 2865 §5.2: the password padded to 16-byte blocks, each XORed with MD5(secret + the
/// previous cipher block), the first with the request authenticator.
pub(crate) fn hide_password(passwd: &[u8], secret: &[u8], authenticator: &[u8; 16]) -> Vec<u8> {
    let mut padded = passwd.to_vec();
    let blocks = passwd.len().div_ceil(16).max(1);
    padded.resize(blocks * 16, 0);
    let mut out = Vec::with_capacity(padded.len());
    let mut prev: Vec<u8> = authenticator.to_vec();
    for block in padded.chunks(16) {
        let mut h = Md5::new();
        h.update(secret);
        h.update(&prev);
        let key = h.finalize();
        let c: Vec<u8> = block.iter().zip(key.iter()).map(|(a, b)| a ^ b).collect();
        out.extend_from_slice(&c);
        prev = c;
    }
    out
}

/// The answer's verdict, after its authenticators are checked.
pub(crate) fn judge(answer: &[u8], request_auth: &[u8; 16], secret: &str) -> Outcome {
    let len = usize::from(u16::from_be_bytes([answer[2], answer[3]]));
    if len < 20 || len > answer.len() {
        return Err(format!("malformed RADIUS answer (length {len} of {} bytes)", answer.len()));
    }
    let answer = &answer[..len];
    let mut h = Md5::new();
    h.update(&answer[..4]);
    h.update(request_auth);
    h.update(&answer[20..]);
    h.update(secret.as_bytes());
    if h.finalize().as_slice() != &answer[4..20] {
        return Err(
            "the answer's Response Authenticator is wrong: the secret differs from the server's".to_string()
        );
    }
    let mut reply = String::new();
    let mut attrs = &answer[20..];
    while attrs.len() >= 2 {
        let (t, l) = (attrs[0], usize::from(attrs[1]));
        if l < 2 || l > attrs.len() {
            return Err("malformed attribute in the RADIUS answer".to_string());
        }
        let value = &attrs[2..l];
        if t == REPLY_MESSAGE && reply.is_empty() {
            reply = format!(" '{}'", printable(value));
        }
        if t == MESSAGE_AUTHENTICATOR {
            let offset = answer.len() - attrs.len() + 2;
            let mut copy = answer.to_vec();
            copy[4..20].copy_from_slice(request_auth);
            copy[offset..offset + 16].fill(0);
            if value.len() != 16 || hmac_md5(secret.as_bytes(), &copy) != value {
                return Err("the answer's Message-Authenticator is wrong".to_string());
            }
        }
        attrs = &attrs[l..];
    }
    match answer[0] {
        ACCESS_ACCEPT => Ok(format!("Access-Accept{reply}")),
        ACCESS_REJECT => Err(format!(
            "Access-Reject{reply}: the server answers but refuses login/passwd (ldirectord counts that as down)"
        )),
        ACCESS_CHALLENGE => Err(format!("Access-Challenge{reply}: ldirectord counts only Access-Accept as up")),
        code => Err(format!("RADIUS code {code} instead of Access-Accept")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_hiding_matches_rfc2865() {
        // Round trip: the server recovers the password by the same XOR.
        let ra = [7u8; 16];
        let hidden = hide_password(b"a password longer than 16", b"s3cret", &ra);
        assert_eq!(hidden.len(), 32);
        let mut prev = ra.to_vec();
        let mut clear = Vec::new();
        for block in hidden.chunks(16) {
            let mut h = Md5::new();
            h.update(b"s3cret");
            h.update(&prev);
            clear.extend(block.iter().zip(h.finalize().iter()).map(|(a, b)| a ^ b));
            prev = block.to_vec();
        }
        assert_eq!(&clear[..25], b"a password longer than 16");
        assert!(clear[25..].iter().all(|&b| b == 0));
    }

    #[test]
    fn refuses_bad_input() {
        assert!(access_request(1, &[0; 16], "", "pw", "s", [127, 0, 0, 1]).is_err());
        assert!(
            judge(&[2, 1, 0, 200, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], &[0; 16], "s").is_err()
        );
    }
}
