//! The CLI without a network: `halo check` and `halo run` on good and bad configurations,
//! `halo status` without a daemon.
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

const HALO: &str = env!("CARGO_BIN_EXE_halo");

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

/// A copy of a config dir with authkeys at mode 0600 (git does not keep modes).
fn copy_dir(src: &Path, tag: &str) -> halo::testbed::Scratch {
    let dst = std::env::temp_dir().join(format!("halo-cli-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dst);
    std::fs::create_dir_all(&dst).unwrap();
    for e in std::fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_file() {
            std::fs::copy(e.path(), dst.join(e.file_name())).unwrap();
        }
    }
    if dst.join("authkeys").exists() {
        std::fs::set_permissions(dst.join("authkeys"), std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    halo::testbed::Scratch(dst)
}

fn halo(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(HALO).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_accepts_every_example_including_the_seeds() {
    let mut n = 0;
    for e in std::fs::read_dir(examples()).unwrap() {
        let e = e.unwrap();
        if !e.path().join("ha.cf").exists() {
            continue;
        }
        let d = copy_dir(&e.path(), &e.file_name().to_string_lossy());
        let (code, out, err) = halo(&["check", "--config-dir", &d.to_string_lossy(), "--config-only"]);
        assert_eq!(code, 0, "{}: {out}{err}", e.path().display());
        assert!(out.contains("configuration OK"), "{out}");
        n += 1;
    }
    assert!(n >= 3, "expected at least the seed-001, seed-002 and minimal examples, found {n}");
}

#[test]
fn check_names_file_line_and_expectation() {
    let d = copy_dir(&examples().join("minimal-ucast"), "bad");
    let cf = std::fs::read_to_string(d.join("ha.cf")).unwrap();
    std::fs::write(d.join("ha.cf"), format!("{cf}keepalive 500s\n")).unwrap();
    let line = cf.lines().count() + 1;
    let (code, _out, err) = halo(&["check", "--config-dir", &d.to_string_lossy(), "--config-only"]);
    assert_eq!(code, 1);
    assert!(err.contains(&format!("ha.cf:{line}:")), "{err}");
    assert!(err.contains("keepalive"), "{err}");
    // The daemon refuses the same configuration with the same reason, before touching anything.
    let (code, _o, err2) = halo(&[
        "run",
        "--config-dir",
        &d.to_string_lossy(),
        "--node",
        "node1",
        "--state-dir",
        "/nonexistent/x",
    ]);
    assert_ne!(code, 0);
    assert!(err2.contains(&format!("ha.cf:{line}:")), "{err2}");
}

#[test]
fn readable_authkeys_is_refused_with_the_reason() {
    let d = copy_dir(&examples().join("minimal-ucast"), "perm");
    std::fs::set_permissions(d.join("authkeys"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let (code, _out, err) = halo(&["check", "--config-dir", &d.to_string_lossy(), "--config-only"]);
    assert_eq!(code, 1);
    assert!(err.contains("authkeys") && err.contains("chmod 600"), "{err}");
}

#[test]
fn unimplemented_directives_warn_once_by_name() {
    let d = copy_dir(&examples().join("minimal-ucast"), "warn");
    let cf = std::fs::read_to_string(d.join("ha.cf")).unwrap();
    std::fs::write(d.join("ha.cf"), format!("{cf}compression bz2\ncompression zlib\n")).unwrap();
    let (code, _out, err) = halo(&["check", "--config-dir", &d.to_string_lossy(), "--config-only"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(err.matches("'compression'").count(), 1, "{err}");
}

#[test]
fn check_without_config_only_checks_the_host() {
    let d = copy_dir(&examples().join("minimal-ucast"), "host");
    let (code, _out, err) = halo(&["check", "--config-dir", &d.to_string_lossy(), "--node", "not-a-member"]);
    assert_eq!(code, 1);
    assert!(err.contains("not-a-member"), "{err}");
}

#[test]
fn status_without_daemon_fails() {
    let (code, _out, err) = halo(&["--socket", "/nonexistent/halo.sock", "status", "--json"]);
    assert_ne!(code, 0);
    assert!(err.contains("no halo daemon answers on /nonexistent/halo.sock"), "{err}");
}
