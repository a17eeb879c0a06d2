//! The message model of Heartbeat (cluster-glue's `ha_msg`): an ordered list of typed
//! `name=value` fields. Order matters because the authentication covers the rendering.

/// Field type 0: a printable string.
pub const FT_STRING: u8 = 0;
/// Field type 1: raw bytes (base64 in classic text), e.g. `srcuuid`.
pub const FT_BINARY: u8 = 1;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Field {
    pub name: String,
    pub ftype: u8,
    pub value: Vec<u8>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Message {
    fields: Vec<Field>,
}

impl Message {
    pub fn new() -> Self {
        Self::default()
    }

    /// A message whose first field is `t=<kind>`.
    pub fn of_type(kind: &str) -> Self {
        let mut m = Self::new();
        m.add("t", kind);
        m
    }

    pub fn fields(&self) -> &[Field] {
        &self.fields
    }

    /// A message of already parsed fields (the decoder's: names checked there).
    pub(crate) fn from_fields(fields: Vec<Field>) -> Self {
        Self { fields }
    }

    /// Appends a string field (duplicates allowed, as in `ha_msg_add`).
    pub fn add(&mut self, name: &str, value: impl AsRef<[u8]>) {
        self.push(name, FT_STRING, value.as_ref().to_vec());
    }

    pub fn add_binary(&mut self, name: &str, value: impl AsRef<[u8]>) {
        self.push(name, FT_BINARY, value.as_ref().to_vec());
    }

    /// Appends a field of any type (used by decoders).
    pub fn push(&mut self, name: &str, ftype: u8, value: Vec<u8>) {
        self.fields.push(Field { name: name.to_string(), ftype, value });
    }

    /// Replaces the first field of that name, or appends (`ha_msg_mod`).
    pub fn set(&mut self, name: &str, value: impl AsRef<[u8]>) {
        self.set_typed(name, FT_STRING, value.as_ref().to_vec());
    }

    pub fn set_binary(&mut self, name: &str, value: impl AsRef<[u8]>) {
        self.set_typed(name, FT_BINARY, value.as_ref().to_vec());
    }

    fn set_typed(&mut self, name: &str, ftype: u8, value: Vec<u8>) {
        match self.fields.iter_mut().find(|f| f.name == name) {
            Some(f) => {
                f.ftype = ftype;
                f.value = value;
            }
            None => self.push(name, ftype, value),
        }
    }

    pub fn remove(&mut self, name: &str) {
        self.fields.retain(|f| f.name != name);
    }

    pub fn has(&self, name: &str) -> bool {
        self.fields.iter().any(|f| f.name == name)
    }

    /// The value of the first string field of that name, if it is valid UTF-8.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|f| f.name == name && f.ftype == FT_STRING)
            .and_then(|f| std::str::from_utf8(&f.value).ok())
    }

    /// The raw bytes of the first field of that name, whatever its type.
    pub fn get_bytes(&self, name: &str) -> Option<&[u8]> {
        self.fields.iter().find(|f| f.name == name).map(|f| f.value.as_slice())
    }

    /// The message type (`t` field).
    pub fn kind(&self) -> Option<&str> {
        self.get("t")
    }

    /// A hex field as Heartbeat writes `seq`, `hg`, `ts`, `ackseq` (lower-case, no `0x`).
    pub fn get_hex(&self, name: &str) -> Option<u64> {
        let v = self.get(name)?;
        if v.is_empty() || v.len() > 16 {
            return None;
        }
        u64::from_str_radix(v, 16).ok()
    }

    /// A decimal field as `NS_rexmit` carries `firstseq`/`lastseq` (`atoi` semantics are
    /// too lax to copy: garbage is refused instead of read as 0).
    pub fn get_dec(&self, name: &str) -> Option<u64> {
        self.get(name)?.trim().parse().ok()
    }

    /// A compact copy for long-lived storage (the retransmission history keeps 500 of
    /// them): one allocation instead of two per field.
    pub fn pack(&self) -> PackedMessage {
        let mut buf = Vec::with_capacity(self.fields.iter().map(|f| 6 + f.name.len() + f.value.len()).sum());
        for f in &self.fields {
            // Names come from our own code and values from our own messages; both are far
            // below these limits (a message is at most 256 KiB), which `unpack` relies on.
            buf.push(f.name.len().min(255) as u8);
            buf.push(f.ftype);
            buf.extend_from_slice(&(f.value.len() as u32).to_le_bytes());
            buf.extend_from_slice(&f.name.as_bytes()[..f.name.len().min(255)]);
            buf.extend_from_slice(&f.value);
        }
        PackedMessage(buf.into_boxed_slice())
    }
}

/// A [`Message`] packed by [`Message::pack`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PackedMessage(Box<[u8]>);

impl PackedMessage {
    pub fn unpack(&self) -> Message {
        let b = &self.0;
        let mut m = Message::new();
        let mut i = 0;
        while i + 6 <= b.len() {
            let nlen = b[i] as usize;
            let ftype = b[i + 1];
            let vlen = u32::from_le_bytes([b[i + 2], b[i + 3], b[i + 4], b[i + 5]]) as usize;
            i += 6;
            let (Some(name), Some(value)) = (b.get(i..i + nlen), b.get(i + nlen..i + nlen + vlen)) else {
                break;
            };
            m.push(&String::from_utf8_lossy(name), ftype, value.to_vec());
            i += nlen + vlen;
        }
        m
    }
}

#[cfg(test)]
mod pack_tests {
    use super::*;

    #[test]
    fn pack_round_trips_every_field_type() {
        let mut m = Message::of_type("status");
        m.add("st", "active");
        m.add_binary("srcuuid", [0u8, 255, 10, 13, 61]);
        m.push("x", 3, Vec::new());
        m.add("ld", "0.00 0.00 0.00 1/91 8344");
        assert_eq!(m.pack().unpack(), m);
        assert_eq!(Message::new().pack().unpack(), Message::new());
    }
}
