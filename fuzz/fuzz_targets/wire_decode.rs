//! Any bytes into the wire decoder: never a panic, and whatever verifies must re-encode
//! to something that decodes to the same message.
#![no_main]
use halo_wire::{AuthMethod, Keyring};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The captures' keys: sha1 index 1, md5 index 2, crc index 3, all "testkey".
    let keyring = Keyring::new(
        1,
        vec![
            (1, AuthMethod::Sha1, b"testkey".to_vec()),
            (2, AuthMethod::Md5, b"testkey".to_vec()),
            (3, AuthMethod::Crc, Vec::new()),
        ],
    );
    let _ = halo_wire::codec::decode_unverified(data);
    if let Ok(msg) = halo_wire::decode(data, &keyring) {
        let again = halo_wire::decode(&halo_wire::encode(&msg, &keyring), &keyring)
            .expect("re-encoded message verifies");
        assert_eq!(again, msg);
    }
});
