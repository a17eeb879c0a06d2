//! Authentication methods of `authkeys`: HMAC-SHA1, HMAC-MD5, CRC (Heartbeat) and
//! HMAC-SHA256 (halo's stronger method).

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthMethod {
    Crc,
    Md5,
    Sha1,
    Sha256,
}

/// The keys of `authkeys`, by index 0..=15, and the index used to sign outbound messages.
#[derive(Clone, Debug)]
pub struct Keyring {
    pub active: u8,
    pub keys: Vec<(u8, AuthMethod, Vec<u8>)>,
}
