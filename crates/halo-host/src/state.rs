//! Persistent node state in the state directory (default `/var/lib/halo`), in Heartbeat's
//! file formats (spec §1.6): `hb_generation` and `hb_uuid`.
//!
//! The generation (`hg` on the wire) is what lets peers tell a restarted node from a replay
//! of old packets, so it must never go backwards: every write is atomic (temporary file,
//! `O_SYNC`, fsync, rename, fsync of the directory), and a file that cannot be read as a
//! number is an error rather than a silent restart from the clock.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Name of the generation file inside the state directory.
pub const GENERATION_FILE: &str = "hb_generation";
/// Name of the node UUID file inside the state directory.
pub const UUID_FILE: &str = "hb_uuid";

/// Computes, persists and returns this start's generation number.
///
/// Reads `<state_dir>/hb_generation` (Heartbeat's format: 16 bytes `"%15lu\n"`) and also
/// `legacy_file` (e.g. `/var/lib/heartbeat/hb_generation`) when given and readable, takes the
/// max, adds 1 and writes it back in the same format, creating `state_dir` (mode 0700) if
/// needed. If neither file exists the generation starts at `now_secs + 1`. With `by_time`
/// (`hbgenmethod time`) it is `max(now_secs, previous + 1)`.
///
/// When the legacy file exists it is rewritten too (best effort), so that going back to
/// Heartbeat after running halo does not make the generation go backwards — peers would
/// take the node's packets for replays and ignore it.
pub fn next_generation(
    state_dir: &Path,
    by_time: bool,
    legacy_file: Option<&Path>,
    now_secs: u64,
) -> io::Result<u64> {
    let path = state_dir.join(GENERATION_FILE);
    let stored = read_generation(&path)?;
    // A legacy file we cannot read or parse is Heartbeat's business, not a reason to stop.
    let legacy = legacy_file.and_then(|p| read_generation(p).ok().flatten());
    let next = match stored.max(legacy) {
        Some(g) => g.checked_add(1).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: generation {g} cannot be incremented", path.display()),
            )
        })?,
        None => now_secs.saturating_add(1),
    };
    let next = if by_time { next.max(now_secs) } else { next };
    let text = format_generation(next);
    ensure_dir(state_dir)?;
    write_atomic(&path, text.as_bytes())?;
    if let (Some(p), Some(_)) = (legacy_file, legacy) {
        let _ = write_atomic(p, text.as_bytes());
    }
    Ok(next)
}

/// Heartbeat's `"%15lu\n"`.
fn format_generation(g: u64) -> String {
    format!("{g:>15}\n")
}

/// Ok(None) when the file does not exist.
fn read_generation(path: &Path) -> io::Result<Option<u64>> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io::Error::new(e.kind(), format!("{}: {e}", path.display()))),
    };
    let text = String::from_utf8_lossy(&bytes);
    let trimmed = text.trim_matches(|c: char| c.is_ascii_whitespace() || c == '\0');
    trimmed.parse::<u64>().map(Some).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{}: not a generation number: {trimmed:?} (remove the file to restart from the current time)",
                path.display()
            ),
        )
    })
}

/// The node's 16-byte UUID (`srcuuid` on the wire).
///
/// With `from_nodename` (`uuidfrom nodename`) it is derived from the name alone and no file is
/// touched. The derivation is halo's own (FNV-1a-128 of the name, RFC 9562 version 8 bits):
/// stable across restarts and nodes, but NOT the UUID Heartbeat derives with srand/rand.
///
/// Otherwise `<state_dir>/hb_uuid` (16 raw bytes) is read, or created once from
/// `/dev/urandom` as a version-4 UUID. A file of the wrong size is an error, never replaced.
pub fn node_uuid(state_dir: &Path, from_nodename: Option<&str>) -> io::Result<[u8; 16]> {
    node_uuid_with_legacy(state_dir, from_nodename, None)
}

/// Like [`node_uuid`], but when `<state_dir>/hb_uuid` does not exist yet and `legacy_file`
/// (e.g. `/var/lib/heartbeat/hb_uuid`) holds a valid UUID, that one is adopted, so a node
/// migrating from Heartbeat keeps its identity.
pub fn node_uuid_with_legacy(
    state_dir: &Path,
    from_nodename: Option<&str>,
    legacy_file: Option<&Path>,
) -> io::Result<[u8; 16]> {
    if let Some(name) = from_nodename {
        return Ok(uuid_from_nodename(name));
    }
    let path = state_dir.join(UUID_FILE);
    if let Some(u) = read_uuid(&path)? {
        return Ok(u);
    }
    let uuid = match legacy_file.and_then(|p| read_uuid(p).ok().flatten()) {
        Some(u) => u,
        None => random_uuid()?,
    };
    ensure_dir(state_dir)?;
    write_atomic(&path, &uuid)?;
    Ok(uuid)
}

fn read_uuid(path: &Path) -> io::Result<Option<[u8; 16]>> {
    match fs::read(path) {
        Ok(b) => <[u8; 16]>::try_from(b.as_slice()).map(Some).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: expected 16 bytes, found {}", path.display(), b.len()),
            )
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io::Error::new(e.kind(), format!("{}: {e}", path.display()))),
    }
}

fn random_uuid() -> io::Result<[u8; 16]> {
    let mut u = [0u8; 16];
    File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut u))
        .map_err(|e| io::Error::new(e.kind(), format!("/dev/urandom: {e}")))?;
    u[6] = (u[6] & 0x0f) | 0x40;
    u[8] = (u[8] & 0x3f) | 0x80;
    Ok(u)
}

/// FNV-1a, 128-bit, of the node name; version 8 ("custom") and RFC variant bits set.
fn uuid_from_nodename(name: &str) -> [u8; 16] {
    const OFFSET: u128 = 0x6c62_272e_07bb_0142_62b8_2175_6295_c58d;
    const PRIME: u128 = 0x0000_0000_0100_0000_0000_0000_0000_013b;
    let mut h = OFFSET;
    for &b in b"halo-node-uuid:".iter().chain(name.as_bytes()) {
        h ^= u128::from(b);
        h = h.wrapping_mul(PRIME);
    }
    let mut u = h.to_be_bytes();
    u[6] = (u[6] & 0x0f) | 0x80;
    u[8] = (u[8] & 0x3f) | 0x80;
    u
}

fn ensure_dir(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", dir.display())))
}

/// Replaces `path` with `bytes` so that a crash leaves either the old or the new content.
fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let ctx = |e: io::Error| io::Error::new(e.kind(), format!("{}: {e}", path.display()));
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path.file_name().ok_or_else(|| {
        io::Error::new(io::ErrorKind::InvalidInput, format!("{}: not a file name", path.display()))
    })?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(".tmp");
    let tmp = dir.join(tmp_name);
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o644)
            .custom_flags(libc::O_SYNC)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, path)?;
        File::open(&dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(ctx)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::TempDir;

    #[test]
    fn generation_starts_at_now_plus_one_and_increments() {
        let t = TempDir::new("gen");
        let dir = t.0.join("sub/state");
        assert_eq!(next_generation(&dir, false, None, 1_700_000_000).ok(), Some(1_700_000_001));
        let bytes = fs::read(dir.join(GENERATION_FILE)).expect("read");
        assert_eq!(bytes, b"     1700000001\n");
        assert_eq!(bytes.len(), 16);
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(&dir).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        // The clock does not matter in file mode, even when it went backwards.
        assert_eq!(next_generation(&dir, false, None, 5).ok(), Some(1_700_000_002));
        assert_eq!(next_generation(&dir, false, None, 2_000_000_000).ok(), Some(1_700_000_003));
        assert_eq!(fs::read(dir.join(GENERATION_FILE)).expect("read"), b"     1700000003\n");
        // hbgenmethod time: the clock wins when ahead, never goes backwards when behind.
        assert_eq!(next_generation(&dir, true, None, 1_800_000_000).ok(), Some(1_800_000_000));
        assert_eq!(next_generation(&dir, true, None, 10).ok(), Some(1_800_000_001));
        assert!(!dir.join(".hb_generation.tmp").exists());
    }

    #[test]
    fn generation_honours_legacy_max() {
        let t = TempDir::new("genlegacy");
        let dir = t.0.join("halo");
        let legacy = t.0.join("heartbeat_hb_generation");
        fs::write(&legacy, b"             42\n").expect("write legacy");
        assert_eq!(next_generation(&dir, false, Some(&legacy), 7).ok(), Some(43));
        // The legacy file follows, so going back to Heartbeat stays monotonic.
        assert_eq!(fs::read(&legacy).expect("read"), b"             43\n");
        fs::write(&legacy, b"            100\n").expect("write legacy");
        assert_eq!(next_generation(&dir, false, Some(&legacy), 7).ok(), Some(101));
        fs::write(&legacy, b"              1\n").expect("write legacy");
        assert_eq!(next_generation(&dir, false, Some(&legacy), 7).ok(), Some(102));
        // A missing or garbled legacy file is ignored; a missing one is not created.
        let absent = t.0.join("absent");
        assert_eq!(next_generation(&dir, false, Some(&absent), 7).ok(), Some(103));
        assert!(!absent.exists());
        fs::write(&legacy, b"junk").expect("write legacy");
        assert_eq!(next_generation(&dir, false, Some(&legacy), 7).ok(), Some(104));
    }

    #[test]
    fn corrupt_generation_is_an_error() {
        let t = TempDir::new("gencorrupt");
        fs::write(t.0.join(GENERATION_FILE), b"garbage\n").expect("write");
        let e = next_generation(&t.0, false, None, 7).expect_err("corrupt");
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        assert!(e.to_string().contains("not a generation number"), "{e}");
        assert_eq!(fs::read(t.0.join(GENERATION_FILE)).expect("read"), b"garbage\n");
        // Heartbeat's own files parse, with or without padding.
        fs::write(t.0.join(GENERATION_FILE), b"9\n").expect("write");
        assert_eq!(next_generation(&t.0, false, None, 7).ok(), Some(10));
    }

    #[test]
    fn uuid_is_created_once_and_stable() {
        let t = TempDir::new("uuid");
        let dir = t.0.join("state");
        let a = node_uuid(&dir, None).expect("create");
        assert_eq!(a[6] >> 4, 4, "version 4");
        assert_eq!(a[8] >> 6, 0b10, "RFC variant");
        assert_eq!(fs::read(dir.join(UUID_FILE)).expect("read"), a.to_vec());
        assert_eq!(node_uuid(&dir, None).expect("again"), a);
        // A different node gets a different random UUID.
        assert_ne!(node_uuid(&t.0.join("other"), None).expect("other"), a);
        // A truncated file is reported, not replaced.
        fs::write(dir.join(UUID_FILE), b"short").expect("write");
        assert_eq!(node_uuid(&dir, None).expect_err("short").kind(), io::ErrorKind::InvalidData);
    }

    #[test]
    fn uuid_from_nodename_is_deterministic() {
        let t = TempDir::new("uuidname");
        let a = node_uuid(&t.0, Some("nodea")).expect("a");
        assert_eq!(node_uuid(&t.0, Some("nodea")).expect("a again"), a);
        assert_ne!(node_uuid(&t.0, Some("nodeb")).expect("b"), a);
        assert!(!t.0.join(UUID_FILE).exists(), "no file in nodename mode");
        // Pinned: changing the derivation would change every node's identity.
        assert_eq!(
            a,
            [0xc9, 0xb2, 0x4b, 0x6c, 0xdd, 0x40, 0x8c, 0x34, 0xa0, 0xb2, 0x34, 0x1f, 0xcd, 0x75, 0xa2, 0x27]
        );
        assert_eq!(a[6] >> 4, 8);
    }

    #[test]
    fn uuid_adopts_legacy() {
        let t = TempDir::new("uuidlegacy");
        let legacy = t.0.join("legacy_uuid");
        let old = *b"0123456789abcdef";
        fs::write(&legacy, old).expect("write");
        let dir = t.0.join("halo");
        assert_eq!(node_uuid_with_legacy(&dir, None, Some(&legacy)).expect("adopt"), old);
        assert_eq!(node_uuid(&dir, None).expect("kept"), old);
    }
}
