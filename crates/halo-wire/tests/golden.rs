//! Golden tests against real Heartbeat 3.0.6 traffic: the captures of
//! `spec/heartbeat-captures/` (see its README). Every packet must decode and authenticate
//! except the four deliberately broken injected ones of capture 03, and every authenticated
//! netstring packet must re-encode to exactly the captured bytes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use halo_wire::{
    decode, decode_unverified, encode, encode_classic, encode_netstring_only, AuthMethod, DropReason,
    Keyring, Message, AUTH_FIELD,
};

const CAPTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/spec/heartbeat-captures");
const HEARTBEAT_PORT: u16 = 694;

// ---------------------------------------------------------------------------------------
// A minimal pcap reader: classic libpcap files (either byte order, µs or ns timestamps),
// Ethernet frames, IPv4, UDP.

struct Pcap<'a> {
    data: &'a [u8],
    big_endian: bool,
}

impl<'a> Pcap<'a> {
    fn parse(data: &'a [u8]) -> Result<Self, String> {
        let magic = data.get(..4).ok_or("file shorter than a pcap header")?;
        let big_endian = match magic {
            [0xd4, 0xc3, 0xb2, 0xa1] | [0x4d, 0x3c, 0xb2, 0xa1] => false,
            [0xa1, 0xb2, 0xc3, 0xd4] | [0xa1, 0xb2, 0x3c, 0x4d] => true,
            _ => return Err(format!("not a classic pcap file (magic {magic:02x?})")),
        };
        let pcap = Pcap { data, big_endian };
        let linktype = pcap.u32_at(20).ok_or("truncated pcap header")?;
        if linktype != 1 {
            return Err(format!("link type {linktype} unsupported, only Ethernet (1)"));
        }
        Ok(pcap)
    }

    fn u32_at(&self, at: usize) -> Option<u32> {
        let b: [u8; 4] = self.data.get(at..at + 4)?.try_into().ok()?;
        Some(if self.big_endian { u32::from_be_bytes(b) } else { u32::from_le_bytes(b) })
    }

    /// The captured frames, in order.
    fn frames(&self) -> Result<Vec<&'a [u8]>, String> {
        let mut frames = Vec::new();
        let mut at = 24;
        while at < self.data.len() {
            let incl = self.u32_at(at + 8).ok_or(format!("truncated record header at {at}"))? as usize;
            let start = at + 16;
            let frame = self.data.get(start..start + incl).ok_or(format!("truncated record at {at}"))?;
            frames.push(frame);
            at = start + incl;
        }
        Ok(frames)
    }
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

/// The UDP payload of an Ethernet/IPv4/UDP frame to or from `port`; `None` for other frames
/// (ARP in capture 02).
fn udp_payload(frame: &[u8], port: u16) -> Option<&[u8]> {
    if be16(frame, 12)? != 0x0800 {
        return None;
    }
    let ip = frame.get(14..)?;
    let ihl = usize::from(ip.first()? & 0x0f) * 4;
    if ip.first()? >> 4 != 4 || ip.get(9)? != &17 {
        return None;
    }
    // Heartbeat messages here fit one datagram; a fragment would silently lose data.
    let frag = be16(ip, 6)?;
    assert_eq!(frag & 0x3fff, 0, "IP fragment in a capture: reassembly not implemented");
    let udp = ip.get(ihl..)?;
    let (src, dst, len) = (be16(udp, 0)?, be16(udp, 2)?, usize::from(be16(udp, 4)?));
    if src != port && dst != port {
        return None;
    }
    // The UDP length, not the frame length: short frames carry Ethernet padding.
    udp.get(8..len)
}

// ---------------------------------------------------------------------------------------
// Expectations (packet totals as counted by `hbwire_check.py`).

struct Expect {
    ring: Keyring,
    packets: usize,
    bad_auth: usize,
    unsigned: usize,
}

fn ring(idx: u8, method: AuthMethod, key: &[u8]) -> Keyring {
    Keyring::new(idx, vec![(idx, method, key.to_vec())])
}

fn expectations() -> BTreeMap<&'static str, Expect> {
    let sha1 = || ring(1, AuthMethod::Sha1, b"testkey");
    let e = |ring, packets, bad_auth, unsigned| Expect { ring, packets, bad_auth, unsigned };
    BTreeMap::from([
        ("01-startup-standby-shutdown-ipaddr-fail.pcap", e(sha1(), 275, 0, 0)),
        ("02-full-failover-scenarios.pcap", e(sha1(), 525, 0, 0)),
        // The injector's two classic packets with a zeroed auth and two netstrings without
        // trailer, all of which 3.0.6 rejected too.
        ("03-injected-classic-and-netstring.pcap", e(sha1(), 204, 2, 2)),
        ("04-msgfmt-netstring-minimal-peer.pcap", e(sha1(), 20, 0, 0)),
        ("05-auth-md5.pcap", e(ring(2, AuthMethod::Md5, b"testkey"), 6, 0, 0)),
        ("06-auth-crc.pcap", e(ring(3, AuthMethod::Crc, b""), 8, 0, 0)),
    ])
}

fn captures_dir() -> PathBuf {
    let dir = Path::new(CAPTURES);
    assert!(
        dir.is_dir(),
        "capture directory {} is missing: the golden tests need spec/heartbeat-captures \
         (a sibling of the workspace, /work/shared/spec/heartbeat-captures)",
        dir.display()
    );
    dir.to_path_buf()
}

#[derive(Default, Debug)]
struct Counts {
    packets: usize,
    verified: usize,
    bad_auth: usize,
    unsigned: usize,
    netstring: usize,
    classic: usize,
    reencoded: usize,
}

/// What `encode*` must produce for a verified packet: the encoding its sender used.
fn reencode(payload: &[u8], m: &Message, ring: &Keyring) -> Vec<u8> {
    let raw = decode_unverified(payload).expect("verified packet parses");
    if payload.starts_with(b">>>\n") {
        encode_classic(m, ring)
    } else if raw.has(AUTH_FIELD) {
        // msgfmt classic (the default): inner auth field plus trailer.
        encode(m, ring)
    } else {
        // msgfmt netstring (capture 04's nodea, 03's injected netstrings): trailer only.
        encode_netstring_only(m, ring)
    }
}

fn check_capture(name: &str, data: &[u8], expect: &Expect) -> Counts {
    let pcap = Pcap::parse(data).unwrap_or_else(|e| panic!("{name}: {e}"));
    let frames = pcap.frames().unwrap_or_else(|e| panic!("{name}: {e}"));
    let mut c = Counts::default();
    for (i, frame) in frames.iter().enumerate() {
        let Some(payload) = udp_payload(frame, HEARTBEAT_PORT) else {
            continue;
        };
        c.packets += 1;
        let classic = payload.starts_with(b">>>\n");
        if classic {
            c.classic += 1;
        } else {
            c.netstring += 1;
        }
        match decode(payload, &expect.ring) {
            Ok(m) => {
                c.verified += 1;
                assert!(!m.has(AUTH_FIELD), "{name} #{i}: auth field returned");
                // A trailing NUL is tolerated on input but never produced.
                let wire = payload.strip_suffix(&[0]).unwrap_or(payload);
                let again = reencode(payload, &m, &expect.ring);
                assert!(
                    again == wire,
                    "{name} #{i}: re-encoding differs\n captured: {}\n encoded:  {}",
                    String::from_utf8_lossy(wire).escape_debug(),
                    String::from_utf8_lossy(&again).escape_debug()
                );
                c.reencoded += 1;
            }
            Err(reason) => {
                // Only the injector's fake `nodeb` packets may fail.
                let raw = decode_unverified(payload)
                    .unwrap_or_else(|e| panic!("{name} #{i}: does not even parse: {e:?}"));
                assert_eq!(raw.get("src"), Some("nodeb"), "{name} #{i}: real packet rejected: {reason:?}");
                match reason {
                    DropReason::BadAuth if classic => c.bad_auth += 1,
                    DropReason::Unsigned if !classic => c.unsigned += 1,
                    other => panic!("{name} #{i}: unexpected {other:?} (classic: {classic})"),
                }
            }
        }
    }
    c
}

#[test]
fn captures_decode_verify_and_reencode() {
    let dir = captures_dir();
    let expectations = expectations();
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "pcap"))
        .collect();
    files.sort();
    let names: Vec<_> = files.iter().filter_map(|p| p.file_name()?.to_str().map(str::to_owned)).collect();
    let known: Vec<_> = expectations.keys().map(|k| k.to_string()).collect();
    assert_eq!(names, known, "captures on disk and expectations in this test differ");

    for path in &files {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("?");
        let expect = &expectations[name];
        let data = std::fs::read(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        let c = check_capture(name, &data, expect);
        println!(
            "{name}: {} packets ({} netstring, {} classic), {} verified and re-encoded identically, \
             {} bad_auth, {} unsigned",
            c.packets, c.netstring, c.classic, c.reencoded, c.bad_auth, c.unsigned
        );
        assert_eq!(c.packets, expect.packets, "{name}: packet count");
        assert_eq!(c.bad_auth, expect.bad_auth, "{name}: bad_auth count");
        assert_eq!(c.unsigned, expect.unsigned, "{name}: unsigned count");
        assert_eq!(c.verified, c.packets - c.bad_auth - c.unsigned, "{name}: verified count");
    }
}

/// The keyring matters: the same capture under a different key or method fails everywhere.
#[test]
fn captures_fail_under_the_wrong_keys() {
    let dir = captures_dir();
    let data = std::fs::read(dir.join("05-auth-md5.pcap")).expect("capture 05 readable");
    let pcap = Pcap::parse(&data).expect("pcap");
    let frames = pcap.frames().expect("frames");
    let payloads: Vec<_> = frames.iter().filter_map(|f| udp_payload(f, HEARTBEAT_PORT)).collect();
    assert!(!payloads.is_empty());
    for p in payloads {
        assert_eq!(decode(p, &ring(2, AuthMethod::Md5, b"wrongkey")), Err(DropReason::BadAuth));
        assert_eq!(decode(p, &ring(2, AuthMethod::Sha1, b"testkey")), Err(DropReason::BadAuth));
        assert_eq!(decode(p, &ring(1, AuthMethod::Md5, b"testkey")), Err(DropReason::UnknownKey));
    }
}
