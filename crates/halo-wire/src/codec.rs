//! Netstring (`###`) and classic (`>>>`) encodings (spec §3.2–3.6).
//!
//! What a 3.0.6 node sends over UDP is always netstring with a trailer; with `msgfmt classic`
//! (the default) the message also carries an inner `auth` field computed over the classic text
//! rendering. Receivers check the trailer of netstring packets and the inner field of classic
//! packets, never both. [`encode`] reproduces the default byte for byte, [`decode`] accepts
//! both encodings and hands out only authenticated messages.
//!
//! Parsing is defensive where cluster-glue is not: every length is checked against the bytes
//! that remain, lengths are parsed with a digit cap, and nothing ever panics or allocates more
//! than a small multiple of the input (itself capped at [`MAX_MSG`]).

use crate::encoding::{base64_decode, base64_encode};
use crate::message::{Field, Message, FT_BINARY, FT_STRING};
use crate::Keyring;

/// Why an inbound packet was dropped. Each variant is counted separately by callers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
pub enum DropReason {
    /// Not a well-formed Heartbeat message (framing, field syntax, auth string syntax).
    #[error("malformed message")]
    Malformed,
    /// Longer than [`MAX_MSG`].
    #[error("message larger than {MAX_MSG} bytes")]
    TooLarge,
    /// Well-formed but carrying no authentication (netstring without trailer, classic
    /// text without `auth` field).
    #[error("message not signed")]
    Unsigned,
    /// Signed with an `authkeys` index we have no key for.
    #[error("message signed with an unknown key index")]
    UnknownKey,
    /// The digest does not match (wrong key or altered message).
    #[error("message failed authentication")]
    BadAuth,
}

impl DropReason {
    /// Every reason, e.g. to pre-register metrics at zero.
    pub const ALL: [DropReason; 5] = [
        DropReason::Malformed,
        DropReason::TooLarge,
        DropReason::Unsigned,
        DropReason::UnknownKey,
        DropReason::BadAuth,
    ];

    /// A stable snake_case name, used as metric label and JSON key.
    pub fn label(&self) -> &'static str {
        match self {
            DropReason::Malformed => "malformed",
            DropReason::TooLarge => "too_large",
            DropReason::Unsigned => "unsigned",
            DropReason::UnknownKey => "unknown_key",
            DropReason::BadAuth => "bad_auth",
        }
    }
}

/// Largest message Heartbeat sends or receives (`MAXMSG`, 256 KiB).
pub const MAX_MSG: usize = 256 * 1024;

/// Name of the inner authentication field (`F_AUTH`).
pub const AUTH_FIELD: &str = "auth";

const NS_START: &[u8] = b"###\n";
const NS_END: &[u8] = b"%%%\n";
const CL_START: &[u8] = b">>>\n";
const CL_END: &[u8] = b"<<<";
/// In classic text a newline inside a string value would end the line, so cluster-glue
/// writes it as this byte (`SPECIAL_SYM`, depth 0) and maps it back when parsing.
const SPECIAL_SYM: u8 = 0x13;
/// Netstring lengths in a message of at most [`MAX_MSG`] bytes have at most 6 digits; one
/// more keeps the parse total (no overflow) while rejecting absurd lengths early.
const MAX_LEN_DIGITS: usize = 7;
/// Field types that may appear in netstring messages: string, binary, struct, list,
/// compressed. 5 (`FT_UNCOMPRESS`) exists only in memory.
const MAX_NETSTRING_TYPE: u8 = 4;

// ---------------------------------------------------------------------------------------
// Encoding

/// The classic NOHEAD rendering of one field (`msg2string_buf`): `(type)` prefix unless a
/// string, `name=`, value (base64 for binary-like types, newline mapped for strings), `\n`.
fn push_classic_field(out: &mut Vec<u8>, f: &Field) {
    if f.ftype != FT_STRING {
        out.push(b'(');
        push_decimal(out, usize::from(f.ftype));
        out.push(b')');
    }
    out.extend_from_slice(f.name.as_bytes());
    out.push(b'=');
    match f.ftype {
        FT_STRING => out.extend(f.value.iter().map(|&c| if c == b'\n' { SPECIAL_SYM } else { c })),
        // Binary and compressed payloads are base64 in text. Structs and lists (2, 3) have
        // recursive text forms that R1 traffic never uses; they are written raw, which peers
        // and [`decode`] reject rather than misread.
        FT_BINARY | 4 => out.extend_from_slice(&base64_encode(&f.value)),
        _ => out.extend_from_slice(&f.value),
    }
    out.push(b'\n');
}

/// The text the inner `auth` field authenticates: every field except `auth`, in order.
fn classic_auth_text<'a>(fields: impl IntoIterator<Item = &'a Field>) -> Vec<u8> {
    let mut text = Vec::with_capacity(512);
    for f in fields.into_iter().filter(|f| f.name != AUTH_FIELD) {
        push_classic_field(&mut text, f);
    }
    text
}

/// A freshly computed inner `auth` field for `m`.
fn inner_auth(m: &Message, k: &Keyring) -> Field {
    Field {
        name: AUTH_FIELD.to_string(),
        ftype: FT_STRING,
        value: k.sign(&classic_auth_text(m.fields())).into_bytes(),
    }
}

/// The fields of `m` in order with `auth` in its place, without copying them (every
/// heartbeat goes through here). Like `ha_msg_mod`, an existing `auth` field is replaced
/// where it stands (otherwise it is appended); any further `auth` duplicates are dropped so
/// only one, correct, value is ever sent.
fn inner_auth_order<'a>(m: &'a Message, auth: &'a Field) -> impl Iterator<Item = &'a Field> {
    let replaces = m.fields().iter().any(|f| f.name == AUTH_FIELD);
    let mut auth_left = true;
    m.fields()
        .iter()
        .filter_map(move |f| {
            if f.name != AUTH_FIELD {
                Some(f)
            } else if std::mem::take(&mut auth_left) {
                Some(auth)
            } else {
                None
            }
        })
        .chain((!replaces).then_some(auth))
}

/// Decimal digits of `n`, without allocating (std's formatting writes straight into `out`).
fn push_decimal(out: &mut Vec<u8>, n: usize) {
    use std::io::Write;
    // Writing to a Vec never fails.
    let _ = write!(out, "{n}");
}

fn push_netstring(out: &mut Vec<u8>, parts: &[&[u8]]) {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    push_decimal(out, len);
    out.push(b':');
    for p in parts {
        out.extend_from_slice(p);
    }
    out.push(b',');
}

/// `###\n` + `len:(type)name=value,`… + `%%%\n` + trailer `len:<idx> <digest>,` over all
/// bytes before it (`msg2netstring`).
fn netstring_with_trailer<'a>(fields: impl IntoIterator<Item = &'a Field>, k: &Keyring) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    out.extend_from_slice(NS_START);
    let mut prefix = Vec::with_capacity(8);
    for f in fields {
        prefix.clear();
        prefix.push(b'(');
        push_decimal(&mut prefix, usize::from(f.ftype));
        prefix.push(b')');
        push_netstring(&mut out, &[&prefix, f.name.as_bytes(), b"=", &f.value]);
    }
    out.extend_from_slice(NS_END);
    let trailer = k.sign(&out);
    push_netstring(&mut out, &[trailer.as_bytes()]);
    out
}

/// Encodes `m` exactly as Heartbeat 3.0.6 with `msgfmt classic` (the default) sends it over
/// UDP: netstring body including an inner `auth` field (placed last unless `m` already has
/// one), then the trailer.
///
/// Field names must be valid (non-empty, no `=`, CR, LF or NUL, not starting with `(`) and
/// types single digits; otherwise the output is rejected by receivers. No size check is made:
/// callers that build huge messages should compare the length with [`MAX_MSG`].
pub fn encode(m: &Message, k: &Keyring) -> Vec<u8> {
    let auth = inner_auth(m, k);
    netstring_with_trailer(inner_auth_order(m, &auth), k)
}

/// Encodes `m` as Heartbeat with `msgfmt netstring` does: no inner `auth` field (any in `m`
/// is left out), trailer only.
pub fn encode_netstring_only(m: &Message, k: &Keyring) -> Vec<u8> {
    netstring_with_trailer(m.fields().iter().filter(|f| f.name != AUTH_FIELD), k)
}

/// Encodes `m` as classic text with its `auth` field (what Heartbeat writes on serial links):
/// `>>>\n`, one `name=value` line per field, `<<<\n`. No trailing NUL.
///
/// String values must not contain `\r`, nor byte 0x13 (which stands for `\n`): the text
/// format cannot carry them, and a receiver would reject the message.
pub fn encode_classic(m: &Message, k: &Keyring) -> Vec<u8> {
    let mut out = CL_START.to_vec();
    let auth = inner_auth(m, k);
    for f in inner_auth_order(m, &auth) {
        push_classic_field(&mut out, f);
    }
    out.extend_from_slice(CL_END);
    out.push(b'\n');
    out
}

// ---------------------------------------------------------------------------------------
// Decoding

/// A parsed packet, not yet authenticated.
enum Parsed<'a> {
    Netstring {
        fields: Vec<Field>,
        /// `###\n` through `%%%\n`: what the trailer authenticates.
        body: &'a [u8],
        trailer: Option<&'a [u8]>,
    },
    Classic {
        fields: Vec<Field>,
    },
}

/// Size cap, then removal of the one NUL a peer may append (Heartbeat sends none over UDP,
/// but its receivers tolerate one, and scripts writing text blocks add one).
fn frame(b: &[u8]) -> Result<&[u8], DropReason> {
    if b.len() > MAX_MSG {
        return Err(DropReason::TooLarge);
    }
    Ok(b.strip_suffix(&[0]).unwrap_or(b))
}

fn parse(b: &[u8]) -> Result<Parsed<'_>, DropReason> {
    let b = frame(b)?;
    if let Some(rest) = b.strip_prefix(NS_START) {
        parse_netstring(b, rest)
    } else if let Some(rest) = b.strip_prefix(CL_START) {
        parse_classic(rest).map(|fields| Parsed::Classic { fields })
    } else {
        Err(DropReason::Malformed)
    }
}

/// Peels one `len:data,` off the front of `s`; returns `data` and what follows the comma.
fn peel_netstring(s: &[u8]) -> Result<(&[u8], &[u8]), DropReason> {
    let digits = s.iter().take(MAX_LEN_DIGITS + 1).take_while(|c| c.is_ascii_digit()).count();
    if digits == 0 || digits > MAX_LEN_DIGITS {
        return Err(DropReason::Malformed);
    }
    // At most 7 digits: cannot overflow.
    let len = s[..digits].iter().fold(0usize, |n, d| n * 10 + usize::from(d - b'0'));
    let rest = s[digits..].strip_prefix(b":").ok_or(DropReason::Malformed)?;
    if len >= rest.len() {
        // Data plus the comma must fit in what remains.
        return Err(DropReason::Malformed);
    }
    let (data, rest) = rest.split_at(len);
    let rest = rest.strip_prefix(b",").ok_or(DropReason::Malformed)?;
    Ok((data, rest))
}

/// A field name as both encodings can carry it unambiguously. Beyond cluster-glue's rules
/// (non-empty, no `=`), a name must not contain CR, LF or NUL (it could not survive the
/// classic text the inner auth covers, nor Heartbeat's C strings) and must not start with
/// `(` (it would read back as a type prefix).
fn valid_name(name: &[u8]) -> Option<String> {
    let ok =
        !name.is_empty() && name[0] != b'(' && !name.iter().any(|&c| matches!(c, b'=' | b'\n' | b'\r' | 0));
    if ok {
        String::from_utf8(name.to_vec()).ok()
    } else {
        None
    }
}

/// One netstring item `(d)name=value`. The value is taken raw; types 2–4 stay undecoded.
fn parse_netstring_field(item: &[u8]) -> Result<Field, DropReason> {
    // cluster-glue assert()s on this prefix; a packet must not be able to abort us.
    let (ftype, rest) = match item {
        [b'(', d @ b'0'..=b'9', b')', rest @ ..] => (d - b'0', rest),
        _ => return Err(DropReason::Malformed),
    };
    if ftype > MAX_NETSTRING_TYPE {
        return Err(DropReason::Malformed);
    }
    let eq = rest.iter().position(|&c| c == b'=').ok_or(DropReason::Malformed)?;
    let name = valid_name(&rest[..eq]).ok_or(DropReason::Malformed)?;
    Ok(Field { name, ftype, value: rest[eq + 1..].to_vec() })
}

fn parse_netstring<'a>(whole: &'a [u8], after_start: &'a [u8]) -> Result<Parsed<'a>, DropReason> {
    let mut fields = Vec::with_capacity(16);
    let mut rest = after_start;
    let tail = loop {
        if let Some(tail) = rest.strip_prefix(NS_END) {
            break tail;
        }
        let (item, next) = peel_netstring(rest)?;
        fields.push(parse_netstring_field(item)?);
        rest = next;
    };
    let body = &whole[..whole.len() - tail.len()];
    let trailer = if tail.is_empty() {
        None
    } else {
        let (auth, after) = peel_netstring(tail)?;
        if !after.is_empty() {
            return Err(DropReason::Malformed);
        }
        Some(auth)
    };
    Ok(Parsed::Netstring { fields, body, trailer })
}

/// One classic line `name=value` or `(d)name=value`.
fn parse_classic_field(line: &[u8]) -> Result<Field, DropReason> {
    let eq = line.iter().position(|&c| c == b'=').ok_or(DropReason::Malformed)?;
    let (name, value) = (&line[..eq], &line[eq + 1..]);
    // Only string and binary fields have a flat text form. cluster-glue also refuses `(0)`.
    let (ftype, name) = match name {
        [b'(', b'1', b')', name @ ..] => (FT_BINARY, name),
        [b'(', ..] => return Err(DropReason::Malformed),
        _ => (FT_STRING, name),
    };
    let name = valid_name(name).ok_or(DropReason::Malformed)?;
    let value = if ftype == FT_BINARY {
        base64_decode(value).ok_or(DropReason::Malformed)?
    } else {
        value.iter().map(|&c| if c == SPECIAL_SYM { b'\n' } else { c }).collect()
    };
    Ok(Field { name, ftype, value })
}

/// The lines between `>>>\n` and `<<<\n`. As in `string2msg_ll`, CR and LF both end a line
/// and empty lines are skipped. Unlike it, the end marker is required and must be last, and
/// a NUL anywhere is refused (Heartbeat would silently stop reading there).
fn parse_classic(text: &[u8]) -> Result<Vec<Field>, DropReason> {
    if text.contains(&0) {
        return Err(DropReason::Malformed);
    }
    let mut fields = Vec::new();
    let mut rest = text;
    loop {
        let end = rest.iter().position(|&c| c == b'\n' || c == b'\r').ok_or(DropReason::Malformed)?;
        let (line, next) = (&rest[..end], &rest[end + 1..]);
        if line == CL_END && rest[end] == b'\n' {
            return if next.is_empty() { Ok(fields) } else { Err(DropReason::Malformed) };
        }
        if !line.is_empty() {
            fields.push(parse_classic_field(line)?);
        }
        rest = next;
    }
}

fn into_message(mut fields: Vec<Field>, keep_auth: bool) -> Message {
    if !keep_auth {
        fields.retain(|f| f.name != AUTH_FIELD);
    }
    Message::from_fields(fields)
}

/// Decodes and authenticates a received packet (netstring or classic text, one trailing NUL
/// tolerated). Only authenticated messages come back, without their `auth` field.
///
/// * netstring: the trailer is required and verified over `###\n`…`%%%\n`; an inner `auth`
///   field is ignored, as by Heartbeat.
/// * classic: the `auth` field is required and verified over the classic rendering of the
///   parsed fields (what `isauthentic` digests), so the check covers exactly the field list
///   returned.
///
/// Upstream quirk, deliberately not copied: 3.0.6 verifies a netstring trailer with the
/// *method* of the packet's index but the *key* of its own outbound `auth N` index
/// (`hb_compute_authentication` is passed `config->authmethod`). halo uses method and key of
/// the packet's index, as it does for classic text. The two agree whenever the sender's and
/// receiver's active indices match or all keys are equal, which is the only configuration in
/// which 3.0.6 itself interoperates reliably.
pub fn decode(b: &[u8], k: &Keyring) -> Result<Message, DropReason> {
    match parse(b)? {
        Parsed::Netstring { fields, body, trailer } => {
            let trailer = trailer.ok_or(DropReason::Unsigned)?;
            k.verify(trailer, body)?;
            Ok(into_message(fields, false))
        }
        Parsed::Classic { fields } => {
            // `ha_msg_value`: the first field of that name, which must be a string.
            let auth = fields.iter().find(|f| f.name == AUTH_FIELD).ok_or(DropReason::Unsigned)?;
            if auth.ftype != FT_STRING {
                return Err(DropReason::Malformed);
            }
            k.verify(&auth.value, &classic_auth_text(&fields))?;
            Ok(into_message(fields, false))
        }
    }
}

/// Parses a packet without authenticating it, for tools and tests. Unlike [`decode`], the
/// message keeps any inner `auth` field, so callers can see how it was signed; a netstring
/// trailer, if present, must be well-formed but is not checked.
pub fn decode_unverified(b: &[u8]) -> Result<Message, DropReason> {
    match parse(b)? {
        Parsed::Netstring { fields, .. } | Parsed::Classic { fields } => Ok(into_message(fields, true)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{digest, AuthMethod};
    use proptest::prelude::*;

    fn sha1_ring() -> Keyring {
        Keyring::new(1, vec![(1, AuthMethod::Sha1, b"testkey".to_vec())])
    }

    const UUID: &[u8] = b"xM\xdd\x99\xd2\xb3It\x81Jk\xcb\xf1\xf2!\x8f";

    /// The fields of spec §3.7 (capture 02, packet #25) without `auth`.
    fn status_25() -> Message {
        let mut m = Message::of_type("status");
        m.add("st", "active");
        m.add("dt", "2710");
        m.add("protocol", "1");
        m.add("src", "nodea");
        m.add_binary("srcuuid", UUID);
        m.add("seq", "d");
        m.add("hg", "6b0223d5");
        m.add("ts", "6b0223d9");
        m.add("ld", "0.00 0.00 0.00 1/91 8344");
        m.add("ttl", "3");
        m
    }

    /// The 309-byte UDP payload of spec §3.7.
    fn payload_25() -> Vec<u8> {
        [
            &b"###\n11:(0)t=status,12:(0)st=active,10:(0)dt=2710,13:(0)protocol=1,12:(0)src=nodea,"[..],
            b"27:(1)srcuuid=",
            UUID,
            b",8:(0)seq=d,14:(0)hg=6b0223d5,14:(0)ts=6b0223d9,30:(0)ld=0.00 0.00 0.00 1/91 8344,8:(0)ttl=3,",
            b"50:(0)auth=1 5a23b1f776271afb65fbe014f024c2c2c7ecb1bf,%%%\n",
            b"42:1 e67ec9c78674b5ee190d6ac1797692d31621645b,",
        ]
        .concat()
    }

    #[test]
    fn worked_example_inner_and_trailer() {
        let m = status_25();
        let inner = classic_auth_text(m.fields());
        assert_eq!(digest(AuthMethod::Sha1, b"testkey", &inner), "5a23b1f776271afb65fbe014f024c2c2c7ecb1bf");
        assert_eq!(digest(AuthMethod::Md5, b"testkey", &inner), "5f7532becbb4a8b0b625387bfebad0c6");
        assert_eq!(digest(AuthMethod::Crc, b"", &inner), "ce92ac49");
        // The spec's "0x00–0x130" are frame offsets; the UDP payload starts at 0x2a.
        let p = payload_25();
        let body = &p[..=0x130 - 0x2a];
        assert!(body.ends_with(b"%%%\n"));
        assert_eq!(digest(AuthMethod::Sha1, b"testkey", body), "e67ec9c78674b5ee190d6ac1797692d31621645b");
    }

    #[test]
    fn encodes_the_real_status_packet() {
        let bytes = encode(&status_25(), &sha1_ring());
        assert_eq!(bytes.len(), 309);
        assert_eq!(bytes, payload_25());
    }

    #[test]
    fn decodes_the_real_status_packet() {
        let k = sha1_ring();
        assert_eq!(decode(&payload_25(), &k), Ok(status_25()));
        let mut with_nul = payload_25();
        with_nul.push(0);
        assert_eq!(decode(&with_nul, &k), Ok(status_25()));
        with_nul.push(0);
        assert_eq!(decode(&with_nul, &k), Err(DropReason::Malformed));
        let raw = decode_unverified(&payload_25()).expect("parses");
        assert_eq!(raw.get(AUTH_FIELD), Some("1 5a23b1f776271afb65fbe014f024c2c2c7ecb1bf"));
    }

    #[test]
    fn classic_text_of_the_spec() {
        let k = sha1_ring();
        let text = encode_classic(&status_25(), &k);
        let expected = b">>>\nt=status\nst=active\ndt=2710\nprotocol=1\nsrc=nodea\n\
(1)srcuuid=eE3dmdKzSXSBSmvL8fIhjw==\nseq=d\nhg=6b0223d5\nts=6b0223d9\n\
ld=0.00 0.00 0.00 1/91 8344\nttl=3\nauth=1 5a23b1f776271afb65fbe014f024c2c2c7ecb1bf\n<<<\n";
        assert_eq!(String::from_utf8_lossy(&text), String::from_utf8_lossy(expected));
        assert_eq!(decode(&text, &k), Ok(status_25()));
    }

    #[test]
    fn classic_accepts_blank_lines_and_crlf() {
        let k = sha1_ring();
        let text = String::from_utf8(encode_classic(&status_25(), &k)).expect("ascii");
        let loose = text.replace("\nst=", "\n\n\r\nst=").replace("ttl=3\n", "ttl=3\r\n");
        assert_eq!(decode(loose.as_bytes(), &k), Ok(status_25()));
    }

    #[test]
    fn existing_auth_is_replaced_in_place() {
        let k = sha1_ring();
        let mut m = status_25();
        m.add(AUTH_FIELD, "9 stale");
        assert_eq!(encode(&m, &k), payload_25());

        let mut m = Message::of_type("x");
        m.add(AUTH_FIELD, "9 stale");
        m.add("a", "b");
        m.add(AUTH_FIELD, "9 stale again");
        let raw = decode_unverified(&encode(&m, &k)).expect("parses");
        let names: Vec<_> = raw.fields().iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["t", "auth", "a"]);
        let mut plain = Message::of_type("x");
        plain.add("a", "b");
        assert_eq!(decode(&encode(&m, &k), &k), Ok(plain.clone()));
        assert_eq!(decode(&encode_classic(&m, &k), &k), Ok(plain.clone()));
        assert_eq!(decode(&encode_netstring_only(&m, &k), &k), Ok(plain));
    }

    #[test]
    fn netstring_only_has_no_inner_auth() {
        let k = sha1_ring();
        let bytes = encode_netstring_only(&status_25(), &k);
        let raw = decode_unverified(&bytes).expect("parses");
        assert!(!raw.has(AUTH_FIELD));
        assert_eq!(decode(&bytes, &k), Ok(status_25()));
    }

    #[test]
    fn newline_in_string_value_is_special_sym_in_classic() {
        let k = sha1_ring();
        let mut m = Message::of_type("x");
        m.add("info", "line1\nline2");
        let text = encode_classic(&m, &k);
        assert!(text.windows(11).any(|w| w == b"line1\x13line2"));
        assert_eq!(decode(&text, &k), Ok(m.clone()));
        // Raw in netstring, but the inner auth covers the mapped text.
        let bytes = encode(&m, &k);
        assert!(bytes.windows(11).any(|w| w == b"line1\nline2"));
        assert_eq!(decode(&bytes, &k), Ok(m));
    }

    #[test]
    fn unsigned_packets() {
        let k = sha1_ring();
        let bytes = encode(&status_25(), &k);
        let body_end = bytes.len() - b"42:1 e67ec9c78674b5ee190d6ac1797692d31621645b,".len();
        assert_eq!(decode(&bytes[..body_end], &k), Err(DropReason::Unsigned));
        assert_eq!(decode(b">>>\nt=status\nsrc=nodeb\n<<<\n", &k), Err(DropReason::Unsigned));
        assert!(decode_unverified(&bytes[..body_end]).is_ok());
    }

    #[test]
    fn wrong_key_and_unknown_index() {
        let m = status_25();
        let k = sha1_ring();
        let other = Keyring::new(1, vec![(1, AuthMethod::Sha1, b"otherkey".to_vec())]);
        let md5 = Keyring::new(1, vec![(1, AuthMethod::Md5, b"testkey".to_vec())]);
        let idx2 = Keyring::new(2, vec![(2, AuthMethod::Sha1, b"testkey".to_vec())]);
        for enc in [encode, encode_netstring_only, encode_classic] {
            let bytes = enc(&m, &k);
            assert_eq!(decode(&bytes, &other), Err(DropReason::BadAuth));
            assert_eq!(decode(&bytes, &md5), Err(DropReason::BadAuth));
            assert_eq!(decode(&bytes, &idx2), Err(DropReason::UnknownKey));
            assert_eq!(decode(&enc(&m, &idx2), &k), Err(DropReason::UnknownKey));
        }
    }

    #[test]
    fn sha256_and_crc_round_trip() {
        let m = status_25();
        for ring in [
            Keyring::new(4, vec![(4, AuthMethod::Sha256, b"a longer key".to_vec())]),
            Keyring::new(3, vec![(3, AuthMethod::Crc, vec![])]),
            Keyring::new(2, vec![(2, AuthMethod::Md5, b"testkey".to_vec())]),
        ] {
            for enc in [encode, encode_netstring_only, encode_classic] {
                assert_eq!(decode(&enc(&m, &ring), &ring), Ok(m.clone()));
            }
        }
    }

    #[test]
    fn too_large() {
        let k = sha1_ring();
        let mut m = Message::of_type("big");
        m.add("blob", vec![b'x'; MAX_MSG]);
        let bytes = encode(&m, &k);
        assert_eq!(decode(&bytes, &k), Err(DropReason::TooLarge));
        assert_eq!(decode_unverified(&bytes), Err(DropReason::TooLarge));
        assert_eq!(decode(&vec![0u8; MAX_MSG + 1], &k), Err(DropReason::TooLarge));
    }

    #[test]
    fn malformed_netstrings() {
        let k = sha1_ring();
        let sig = |body: &[u8]| {
            let s = k.sign(body);
            [body, format!("{}:{s},", s.len()).as_bytes()].concat()
        };
        let cases: [&[u8]; 20] = [
            b"",
            b"##\n",
            b"garbage",
            b"###\n",
            b"###\n%%%",
            b"###\n6:(0)a=b,",
            b"###\n7:(0)a=b,%%%\n",
            b"###\n5:(0)a=b,%%%\n",
            b"###\n6:(0)a=b;%%%\n",
            b"###\n6:[0]a=b,%%%\n",
            b"###\n6:(x)a=b,%%%\n",
            b"###\n6:(5)a=b,%%%\n",
            b"###\n8:(0)a\nb=c,%%%\n",
            b"###\n6:(0)=ab,%%%\n",
            b"###\n7:(0)(a=b,%%%\n",
            b"###\n3:(0),%%%\n",
            b"###\n0:,%%%\n",
            b"###\n:(0)a=b,%%%\n",
            b"###\n99999999999999999999:(0)a=b,%%%\n",
            b"###\n-6:(0)a=b,%%%\n",
        ];
        for case in cases {
            let signed = sig(case);
            let r = decode(&signed, &k);
            assert!(
                r.is_err() && r != Err(DropReason::BadAuth),
                "{:?} -> {r:?}",
                String::from_utf8_lossy(case)
            );
            assert!(decode_unverified(&signed).is_err(), "{:?}", String::from_utf8_lossy(case));
        }
        // Well-formed baseline, and the same with bad trailers.
        assert!(decode(&sig(b"###\n6:(0)a=b,%%%\n"), &k).is_ok());
        assert_eq!(
            decode(&sig(b"###\n6:(0)ab=,%%%\n"), &k).map(|m| m.get("ab").map(str::to_owned)),
            Ok(Some(String::new()))
        );
        for tail in [&b"0:,"[..], b"2:1 ,", b"3:1 x,", b"42:1 x,", b"x", b"4:1 ab,junk", b"5:1 ab"] {
            let p = [&b"###\n6:(0)a=b,%%%\n"[..], tail].concat();
            assert_eq!(decode(&p, &k), Err(DropReason::Malformed), "{:?}", String::from_utf8_lossy(tail));
        }
    }

    #[test]
    fn malformed_classic() {
        let k = sha1_ring();
        let cases: [&[u8]; 10] = [
            b">>>\n",
            b">>>\nt=x\n",
            b">>>\nt=x\n<<<",
            b">>>\nt=x\n<<<\nmore",
            b">>>\nnoequals\n<<<\n",
            b">>>\n=x\n<<<\n",
            b">>>\n(0)t=x\n<<<\n",
            b">>>\n(2)t=x\n<<<\n",
            b">>>\n(1)u=not base64!\n<<<\n",
            b">>>\nt=a\0b\n<<<\n",
        ];
        for case in cases {
            assert_eq!(decode(case, &k), Err(DropReason::Malformed), "{:?}", String::from_utf8_lossy(case));
            assert_eq!(decode_unverified(case), Err(DropReason::Malformed));
        }
        // A binary auth field is not an auth string.
        assert_eq!(decode(b">>>\nt=x\n(1)auth=MSAwMA==\n<<<\n", &k), Err(DropReason::Malformed));
    }

    #[test]
    fn truncation_at_every_length_is_rejected() {
        let k = sha1_ring();
        for bytes in [
            encode(&status_25(), &k),
            encode_netstring_only(&status_25(), &k),
            encode_classic(&status_25(), &k),
        ] {
            for len in 0..bytes.len() {
                assert!(decode(&bytes[..len], &k).is_err(), "accepted a truncation to {len}");
            }
        }
    }

    #[test]
    fn labels_are_distinct() {
        let labels: std::collections::HashSet<_> = DropReason::ALL.iter().map(DropReason::label).collect();
        assert_eq!(labels.len(), DropReason::ALL.len());
    }

    // ---------------------------------------------------------------------------------
    // Properties

    fn arb_field() -> impl Strategy<Value = (String, bool, Vec<u8>)> {
        (
            "[a-z_]{1,12}",
            any::<bool>(),
            prop::collection::vec(0x20u8..0x7f, 1..40),
            prop::collection::vec(any::<u8>(), 0..40),
        )
            .prop_map(
                |(name, binary, text, bin)| {
                    if binary {
                        (name, true, bin)
                    } else {
                        (name, false, text)
                    }
                },
            )
    }

    fn arb_message() -> impl Strategy<Value = Message> {
        prop::collection::vec(arb_field(), 0..16).prop_map(|fields| {
            let mut m = Message::new();
            for (name, binary, value) in fields {
                // `auth` is reserved for the signature; decode never returns it.
                let name = if name == AUTH_FIELD { "auth_".to_string() } else { name };
                if binary {
                    m.add_binary(&name, value);
                } else {
                    m.add(&name, value);
                }
            }
            m
        })
    }

    fn arb_ring() -> impl Strategy<Value = Keyring> {
        (0u8..16, 0usize..4, prop::collection::vec(any::<u8>(), 1..80)).prop_map(|(idx, method, key)| {
            let method = [AuthMethod::Crc, AuthMethod::Md5, AuthMethod::Sha1, AuthMethod::Sha256][method];
            let key = if method == AuthMethod::Crc { Vec::new() } else { key };
            Keyring::new(idx, vec![(idx, method, key)])
        })
    }

    proptest! {
        #[test]
        fn round_trip_netstring(m in arb_message(), k in arb_ring()) {
            prop_assert_eq!(decode(&encode(&m, &k), &k), Ok(m.clone()));
            prop_assert_eq!(decode(&encode_netstring_only(&m, &k), &k), Ok(m));
        }

        #[test]
        fn round_trip_classic(m in arb_message(), k in arb_ring()) {
            prop_assert_eq!(decode(&encode_classic(&m, &k), &k), Ok(m));
        }

        #[test]
        fn any_bit_flip_is_rejected(m in arb_message(), which in 0usize..3, pos in any::<prop::sample::Index>(), bit in 0u8..8) {
            // CRC is not a MAC, but it also detects every single-bit error.
            let k = sha1_ring();
            let mut bytes = [encode, encode_netstring_only, encode_classic][which](&m, &k);
            let i = pos.index(bytes.len());
            bytes[i] ^= 1 << bit;
            let r = decode(&bytes, &k);
            prop_assert!(r.is_err(), "flip of bit {} at {} accepted: {:?}", bit, i, r);
        }

        #[test]
        fn any_bit_flip_is_rejected_crc(m in arb_message(), which in 0usize..3, pos in any::<prop::sample::Index>(), bit in 0u8..8) {
            let k = Keyring::new(3, vec![(3, AuthMethod::Crc, vec![])]);
            let mut bytes = [encode, encode_netstring_only, encode_classic][which](&m, &k);
            let i = pos.index(bytes.len());
            bytes[i] ^= 1 << bit;
            prop_assert!(decode(&bytes, &k).is_err());
        }

        #[test]
        fn random_bytes_never_panic(prefix in 0usize..3, data in prop::collection::vec(any::<u8>(), 0..512)) {
            let k = sha1_ring();
            let bytes = [[&b""[..], NS_START, CL_START][prefix], &data[..]].concat();
            let _ = decode(&bytes, &k);
            let _ = decode_unverified(&bytes);
        }

        #[test]
        fn netstring_like_noise_never_panics(parts in prop::collection::vec((0usize..40, "[(0-9)a-z=,:%#\n]{0,12}"), 0..12)) {
            // Plausible-looking framing reaches the deeper parser paths more often than noise.
            let mut bytes = NS_START.to_vec();
            for (len, s) in parts {
                bytes.extend_from_slice(format!("{len}:{s}").as_bytes());
            }
            let _ = decode(&bytes, &sha1_ring());
            let _ = decode_unverified(&bytes);
        }

        #[test]
        fn mutated_packets_never_panic(m in arb_message(), which in 0usize..3, edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8)) {
            let k = sha1_ring();
            let mut bytes = [encode, encode_netstring_only, encode_classic][which](&m, &k);
            for (pos, byte) in edits {
                let i = pos.index(bytes.len());
                bytes[i] = byte;
            }
            let _ = decode(&bytes, &k);
            let _ = decode_unverified(&bytes);
        }
    }
}
