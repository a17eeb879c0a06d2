//! Authentication methods of `authkeys`: HMAC-SHA1, HMAC-MD5, CRC (Heartbeat) and
//! HMAC-SHA256 (halo's stronger method).
//!
//! An "auth string" is `"<index> <digest>"`: the decimal `authkeys` index, one space, and the
//! digest as Heartbeat prints it (spec §2.3). Both the netstring trailer and the inner `auth`
//! field carry one.

use std::fmt;

use hmac::{Hmac, KeyInit, Mac};
use md5::Md5;
use sha1::Sha1;
use sha2::Sha256;

use crate::codec::DropReason;
use crate::encoding::hex_lower;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AuthMethod {
    /// CRC-32/CKSUM without the length (no key): integrity only, no authenticity.
    Crc,
    /// HMAC-MD5.
    Md5,
    /// HMAC-SHA1.
    Sha1,
    /// HMAC-SHA256: halo's stronger method; a 3.0.6 peer cannot verify it.
    Sha256,
}

impl AuthMethod {
    /// The method of an `authkeys` line. Case-sensitive, as Heartbeat loads the plugin
    /// `HBauth/<name>.so` by that exact name.
    pub fn from_name(s: &str) -> Option<Self> {
        match s {
            "crc" => Some(Self::Crc),
            "md5" => Some(Self::Md5),
            "sha1" => Some(Self::Sha1),
            "sha256" => Some(Self::Sha256),
            _ => None,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Self::Crc => "crc",
            Self::Md5 => "md5",
            Self::Sha1 => "sha1",
            Self::Sha256 => "sha256",
        }
    }

    /// Whether the method takes a key (`crc` must not have one in `authkeys`).
    pub fn needs_key(&self) -> bool {
        !matches!(self, Self::Crc)
    }
}

impl fmt::Display for AuthMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Highest `authkeys` index plus one (`MAXAUTH` in Heartbeat).
pub const MAX_AUTH_INDEX: u8 = 16;

/// The keys of `authkeys`, by index 0..=15, and the index used to sign outbound messages.
///
/// If an index appears more than once the last entry wins, as a later `authkeys` line
/// overwrites an earlier one in Heartbeat.
#[derive(Clone, PartialEq, Eq)]
pub struct Keyring {
    pub active: u8,
    pub keys: Vec<(u8, AuthMethod, Vec<u8>)>,
}

// Hand-written so that keys never end up in logs or panic messages.
impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let keys: Vec<_> = self.keys.iter().map(|(i, m, k)| format!("{i} {m} <{} bytes>", k.len())).collect();
        f.debug_struct("Keyring").field("active", &self.active).field("keys", &keys).finish()
    }
}

impl Keyring {
    pub fn new(active: u8, keys: Vec<(u8, AuthMethod, Vec<u8>)>) -> Self {
        Self { active, keys }
    }

    /// The method and key of an index.
    pub fn get(&self, index: u8) -> Option<(AuthMethod, &[u8])> {
        self.keys.iter().rev().find(|(i, _, _)| *i == index).map(|(_, m, k)| (*m, k.as_slice()))
    }

    /// Whether outbound messages can be signed (the `auth N` index has a key), which
    /// Heartbeat checks at start-up (`Auth Key [n] not found`).
    pub fn can_sign(&self) -> bool {
        self.get(self.active).is_some()
    }

    /// The auth string `"<active index> <digest>"` for `data`.
    ///
    /// Without a key for the active index (see [`Keyring::can_sign`]) the digest is left
    /// empty: such a string never verifies anywhere, so a misconfiguration fails closed
    /// instead of panicking or sending something a peer could accept.
    pub fn sign(&self, data: &[u8]) -> String {
        let hex = match self.get(self.active) {
            Some((method, key)) => digest(method, key, data),
            None => String::new(),
        };
        format!("{} {}", self.active, hex)
    }

    /// Checks an auth string received with `data`, using the method and key of the index the
    /// string names.
    pub fn verify(&self, auth_string: &[u8], data: &[u8]) -> Result<(), DropReason> {
        let (index, received) = parse_auth_string(auth_string)?;
        let (method, key) = self.get(index).ok_or(DropReason::UnknownKey)?;
        let expected = digest(method, key, data);
        // Byte-exact like Heartbeat's strcmp (upper-case hex fails), but in constant time so
        // a forger cannot learn the HMAC byte by byte from response timing.
        if ct_eq(expected.as_bytes(), received) {
            Ok(())
        } else {
            Err(DropReason::BadAuth)
        }
    }
}

/// Longest digest text accepted: SHA-512 size, far above anything any method produces; the
/// cap only bounds work on garbage.
const MAX_DIGEST_TEXT: usize = 128;

/// Splits `"<index> <hex>"`. Stricter than Heartbeat's `sscanf("%d %s")`: exactly one space,
/// one or two decimal digits, and hex digits only. Anything else is garbage, not a wrong key.
fn parse_auth_string(s: &[u8]) -> Result<(u8, &[u8]), DropReason> {
    let space = s.iter().position(|&c| c == b' ').ok_or(DropReason::Malformed)?;
    let (idx, hex) = (&s[..space], &s[space + 1..]);
    if idx.is_empty() || idx.len() > 2 || !idx.iter().all(u8::is_ascii_digit) {
        return Err(DropReason::Malformed);
    }
    if hex.is_empty() || hex.len() > MAX_DIGEST_TEXT || !hex.iter().all(u8::is_ascii_hexdigit) {
        return Err(DropReason::Malformed);
    }
    let index = idx.iter().fold(0u8, |n, d| n * 10 + (d - b'0'));
    Ok((index, hex))
}

fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    // Lengths are public (they depend only on the method), so an early exit leaks nothing.
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// The digest of `data` as Heartbeat renders it: lower-case hex of the HMAC, or for `crc`
/// `printf("%lx")` of the checksum (no leading zeros). `key` is ignored for `crc`.
pub fn digest(method: AuthMethod, key: &[u8], data: &[u8]) -> String {
    match method {
        AuthMethod::Crc => format!("{:x}", crc_cksum(data)),
        AuthMethod::Md5 => hmac_hex::<Hmac<Md5>>(key, data),
        AuthMethod::Sha1 => hmac_hex::<Hmac<Sha1>>(key, data),
        AuthMethod::Sha256 => hmac_hex::<Hmac<Sha256>>(key, data),
    }
}

fn hmac_hex<M: Mac + KeyInit>(key: &[u8], data: &[u8]) -> String {
    // HMAC accepts keys of any length (long ones are hashed first), so this cannot fail;
    // should it ever, the empty digest makes signing and verification fail closed.
    match <M as KeyInit>::new_from_slice(key) {
        Ok(mut mac) => {
            mac.update(data);
            hex_lower(&mac.finalize().into_bytes())
        }
        Err(_) => String::new(),
    }
}

const CRC_TABLE: [u32; 256] = crc_table();

const fn crc_table() -> [u32; 256] {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut r = (i as u32) << 24;
        let mut bit = 0;
        while bit < 8 {
            r = if r & 0x8000_0000 != 0 { (r << 1) ^ 0x04C1_1DB7 } else { r << 1 };
            bit += 1;
        }
        table[i] = r;
        i += 1;
    }
    table
}

/// Heartbeat's `crc` method (HBauth/crc.c): CRC-32 polynomial 0x04C11DB7, MSB first, initial
/// value 0, final complement, and — unlike POSIX `cksum` — no length appended.
fn crc_cksum(data: &[u8]) -> u32 {
    let crc = data.iter().fold(0u32, |c, &b| (c << 8) ^ CRC_TABLE[usize::from(((c >> 24) as u8) ^ b)]);
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The classic NOHEAD text of spec §3.6's worked example (capture 02, packet #25).
    const INNER: &[u8] = b"t=status\nst=active\ndt=2710\nprotocol=1\nsrc=nodea\n\
(1)srcuuid=eE3dmdKzSXSBSmvL8fIhjw==\nseq=d\nhg=6b0223d5\nts=6b0223d9\n\
ld=0.00 0.00 0.00 1/91 8344\nttl=3\n";

    #[test]
    fn worked_example_digests() {
        assert_eq!(digest(AuthMethod::Sha1, b"testkey", INNER), "5a23b1f776271afb65fbe014f024c2c2c7ecb1bf");
        assert_eq!(digest(AuthMethod::Md5, b"testkey", INNER), "5f7532becbb4a8b0b625387bfebad0c6");
        assert_eq!(digest(AuthMethod::Crc, b"", INNER), "ce92ac49");
        assert_eq!(digest(AuthMethod::Crc, b"ignored", INNER), "ce92ac49");
    }

    #[test]
    fn crc_check_value() {
        assert_eq!(digest(AuthMethod::Crc, b"", b"123456789"), "765e7680");
        // No zero padding, as printf("%lx"): the CRC of the empty input is !0.
        assert_eq!(digest(AuthMethod::Crc, b"", b""), "ffffffff");
        assert!((0u32..4096).map(|i| digest(AuthMethod::Crc, b"", &i.to_le_bytes())).any(|d| d.len() < 8));
    }

    #[test]
    fn hmac_sha256_rfc4231_case2() {
        assert_eq!(
            digest(AuthMethod::Sha256, b"Jefe", b"what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn method_names_round_trip() {
        for m in [AuthMethod::Crc, AuthMethod::Md5, AuthMethod::Sha1, AuthMethod::Sha256] {
            assert_eq!(AuthMethod::from_name(m.name()), Some(m));
        }
        assert_eq!(AuthMethod::from_name("SHA1"), None);
        assert_eq!(AuthMethod::from_name("sha512"), None);
    }

    #[test]
    fn sign_and_verify() {
        let k = Keyring::new(1, vec![(1, AuthMethod::Sha1, b"testkey".to_vec())]);
        assert_eq!(k.sign(INNER), "1 5a23b1f776271afb65fbe014f024c2c2c7ecb1bf");
        assert_eq!(k.verify(k.sign(INNER).as_bytes(), INNER), Ok(()));
        assert_eq!(k.verify(b"1 5a23b1f776271afb65fbe014f024c2c2c7ecb1be", INNER), Err(DropReason::BadAuth));
        assert_eq!(k.verify(b"1 5A23B1F776271AFB65FBE014F024C2C2C7ECB1BF", INNER), Err(DropReason::BadAuth));
        assert_eq!(k.verify(b"1 5a23", INNER), Err(DropReason::BadAuth));
        assert_eq!(
            k.verify(b"2 5a23b1f776271afb65fbe014f024c2c2c7ecb1bf", INNER),
            Err(DropReason::UnknownKey)
        );
        assert_eq!(k.verify(b"15 00", INNER), Err(DropReason::UnknownKey));
        for garbage in
            [&b""[..], b"1", b"1 ", b" 1 ab", b"1  ab", b"x ab", b"123 ab", b"1 ab cd", b"1 xyz", b"-1 ab"]
        {
            assert_eq!(k.verify(garbage, INNER), Err(DropReason::Malformed), "{garbage:?}");
        }
    }

    #[test]
    fn verify_uses_the_index_of_the_packet() {
        let k = Keyring::new(
            1,
            vec![
                (1, AuthMethod::Sha1, b"testkey".to_vec()),
                (2, AuthMethod::Md5, b"other".to_vec()),
                (3, AuthMethod::Crc, vec![]),
            ],
        );
        let md5 = format!("2 {}", digest(AuthMethod::Md5, b"other", b"data"));
        assert_eq!(k.verify(md5.as_bytes(), b"data"), Ok(()));
        let crc = format!("3 {}", digest(AuthMethod::Crc, b"", b"data"));
        assert_eq!(k.verify(crc.as_bytes(), b"data"), Ok(()));
    }

    #[test]
    fn last_duplicate_index_wins() {
        let k = Keyring::new(
            1,
            vec![(1, AuthMethod::Md5, b"old".to_vec()), (1, AuthMethod::Sha1, b"testkey".to_vec())],
        );
        assert_eq!(k.sign(INNER), "1 5a23b1f776271afb65fbe014f024c2c2c7ecb1bf");
    }

    #[test]
    fn missing_active_key_fails_closed() {
        let k = Keyring::new(4, vec![(1, AuthMethod::Sha1, b"testkey".to_vec())]);
        assert!(!k.can_sign());
        let s = k.sign(b"data");
        assert_eq!(s, "4 ");
        assert!(k.verify(s.as_bytes(), b"data").is_err());
    }

    #[test]
    fn debug_hides_keys() {
        let k = Keyring::new(1, vec![(1, AuthMethod::Sha1, b"testkey".to_vec())]);
        let shown = format!("{k:?}");
        assert!(!shown.contains("testkey"), "{shown}");
        assert!(shown.contains("sha1"), "{shown}");
    }
}
