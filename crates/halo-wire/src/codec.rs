//! Netstring (`###`) and classic (`>>>`) encodings.
use crate::{Keyring, Message};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DropReason {
    Malformed,
}

pub fn encode(_m: &Message, _k: &Keyring) -> Vec<u8> {
    unimplemented!()
}
pub fn encode_classic(_m: &Message, _k: &Keyring) -> Vec<u8> {
    unimplemented!()
}
pub fn decode(_b: &[u8], _k: &Keyring) -> Result<Message, DropReason> {
    unimplemented!()
}
