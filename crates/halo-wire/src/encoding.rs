//! Lower-case hex and RFC 4648 base64, the two text encodings Heartbeat puts on the wire.
//! Hand-written because they are a few lines each and the exact rendering matters
//! (lower-case hex, `=`-padded base64) for byte compatibility.

const HEX: &[u8; 16] = b"0123456789abcdef";
const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Lower-case hex, two digits per byte (what `hexdigest()` and Heartbeat's HMAC plugins print).
pub(crate) fn hex_lower(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        s.push(char::from(HEX[usize::from(b >> 4)]));
        s.push(char::from(HEX[usize::from(b & 0x0f)]));
    }
    s
}

/// Standard alphabet, `=` padded: the form cluster-glue's `binary_to_base64` produces,
/// so the classic rendering of `srcuuid` matches what peers authenticate.
pub(crate) fn base64_encode(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b0 = chunk[0];
        let b1 = chunk.get(1).copied().unwrap_or(0);
        let b2 = chunk.get(2).copied().unwrap_or(0);
        out.push(B64[usize::from(b0 >> 2)]);
        out.push(B64[usize::from(((b0 & 0x03) << 4) | (b1 >> 4))]);
        out.push(if chunk.len() > 1 { B64[usize::from(((b1 & 0x0f) << 2) | (b2 >> 6))] } else { b'=' });
        out.push(if chunk.len() > 2 { B64[usize::from(b2 & 0x3f)] } else { b'=' });
    }
    out
}

fn b64_value(c: u8) -> Option<u8> {
    match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    }
}

/// Strict decoding: padded, no whitespace, and the unused low bits of the last symbol must be
/// zero. Strictness keeps the decoded value in one-to-one correspondence with its text, so the
/// re-rendering the classic auth check digests is exactly the text that was received.
pub(crate) fn base64_decode(text: &[u8]) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(4) {
        return None;
    }
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let quads = text.len() / 4;
    for (i, q) in text.chunks_exact(4).enumerate() {
        let last = i + 1 == quads;
        let pad = match (q[2], q[3]) {
            (b'=', b'=') if last => 2,
            (_, b'=') if last => 1,
            _ => 0,
        };
        let a = b64_value(q[0])?;
        let b = b64_value(q[1])?;
        let c = if pad == 2 { 0 } else { b64_value(q[2])? };
        let d = if pad >= 1 { 0 } else { b64_value(q[3])? };
        out.push((a << 2) | (b >> 4));
        match pad {
            0 => {
                out.push((b << 4) | (c >> 2));
                out.push((c << 6) | d);
            }
            1 => {
                if c & 0x03 != 0 {
                    return None;
                }
                out.push((b << 4) | (c >> 2));
            }
            _ => {
                if b & 0x0f != 0 {
                    return None;
                }
            }
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex() {
        assert_eq!(hex_lower(&[0x00, 0x0f, 0xab, 0xff]), "000fabff");
        assert_eq!(hex_lower(&[]), "");
    }

    #[test]
    fn base64_rfc4648_vectors() {
        let cases: [(&[u8], &[u8]); 7] = [
            (b"", b""),
            (b"f", b"Zg=="),
            (b"fo", b"Zm8="),
            (b"foo", b"Zm9v"),
            (b"foob", b"Zm9vYg=="),
            (b"fooba", b"Zm9vYmE="),
            (b"foobar", b"Zm9vYmFy"),
        ];
        for (raw, text) in cases {
            assert_eq!(base64_encode(raw), text);
            assert_eq!(base64_decode(text).as_deref(), Some(raw));
        }
    }

    #[test]
    fn base64_uuid_of_spec() {
        let uuid = b"xM\xdd\x99\xd2\xb3It\x81Jk\xcb\xf1\xf2!\x8f";
        assert_eq!(base64_encode(uuid), b"eE3dmdKzSXSBSmvL8fIhjw==");
    }

    #[test]
    fn base64_rejects_sloppy_text() {
        for bad in [
            &b"Zg="[..],
            b"Zg",
            b"Zh==",
            b"Zm9=",
            b"Z===",
            b"====",
            b"Zg==Zg==",
            b"Zm 9v",
            b"Zm9v\n",
            b"Zm-v",
        ] {
            assert_eq!(base64_decode(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }
}
