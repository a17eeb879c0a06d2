//! halo-wire encodes and decodes Heartbeat 3.0.6 cluster messages and computes and checks
//! their authentication, byte-compatibly with the real daemon (see `spec/heartbeat.md` §2–3).
//!
//! It is pure: bytes in, messages out, and back. It never touches a socket, a clock or a
//! file, and it never panics on input: every malformed, unsigned or wrongly signed packet
//! becomes a [`DropReason`] the caller counts.

pub mod auth;
pub mod codec;
mod encoding;
pub mod message;

pub use auth::{digest, AuthMethod, Keyring};
pub use codec::{
    decode, decode_unverified, encode, encode_classic, encode_netstring_only, DropReason, AUTH_FIELD, MAX_MSG,
};
pub use message::{Field, Message, PackedMessage, FT_BINARY, FT_STRING};
