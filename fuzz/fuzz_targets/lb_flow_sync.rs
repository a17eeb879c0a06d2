//! Any bytes into the directors' connection-sync datagram decoder
//! (`halo_lb::dataplane::flows::decode`), twice: as they came (almost always refused for
//! their MAC), and as the payload of a datagram whose HMAC-SHA256 tag is right for the key,
//! so that the JSON behind the MAC is what gets fuzzed. Never a panic; whatever decodes must
//! re-encode to a datagram that decodes to the same message. "The same" allows one thing:
//! serde_json (without its float_roundtrip feature) may read a floating-point number in an
//! element's opaque value an ulp off, on every round trip; nftables' element values are
//! strings and integers, so floats are compared only as being floats.
#![no_main]
use halo_lb::dataplane::flows;
use hmac::{Hmac, KeyInit, Mac};
use libfuzzer_sys::fuzz_target;

const KEY: &[u8] = b"testkey";

fuzz_target!(|data: &[u8]| {
    let keys: [&[u8]; 2] = [b"old-key", KEY];
    let _ = flows::decode(data, &keys);

    let mut m = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(KEY).expect("HMAC takes any key length");
    m.update(data);
    let mut datagram = m.finalize().into_bytes().to_vec();
    datagram.extend_from_slice(data);
    match flows::decode(&datagram, &keys) {
        Ok(msg) => {
            let again = flows::decode(&flows::encode(&msg, KEY), &keys).expect("re-encoded message decodes");
            assert_eq!(without_floats(again), without_floats(msg.clone()));
            assert!(flows::decode(&flows::encode(&msg, b"other"), &keys) == Err(flows::Drop::BadMac));
        }
        Err(e) => {
            assert!(data.is_empty() || e == flows::Drop::Malformed, "{e:?} for a correctly tagged datagram")
        }
    }
});

/// The message with every floating-point number in its elements' values replaced by "float".
fn without_floats(mut m: flows::SyncMsg) -> flows::SyncMsg {
    fn strip(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Number(n) if n.is_f64() => *v = serde_json::Value::from("float"),
            serde_json::Value::Array(a) => a.iter_mut().for_each(strip),
            serde_json::Value::Object(o) => o.values_mut().for_each(strip),
            _ => {}
        }
    }
    m.sets.iter_mut().flat_map(|s| s.elems.iter_mut()).for_each(|e| strip(&mut e.val));
    m
}
