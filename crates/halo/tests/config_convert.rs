//! `halo config convert` end to end: legacy examples to halo.toml and back through the CLI,
//! and a converted configuration running real daemons in network namespaces with the same
//! failover as the legacy one (n1's cable cut -> n2 holds the VIP and serves it).
use halo::testbed::{wait_for, Testbed};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const HALO: &str = env!("CARGO_BIN_EXE_halo");
const VIP: &str = "10.79.0.100";

fn scratch(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("halo-convert-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn copy_example(name: &str, tag: &str) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples").join(name);
    let dst = scratch(tag);
    for e in std::fs::read_dir(&src).unwrap() {
        let p = e.unwrap().path();
        let to = dst.join(p.file_name().unwrap());
        std::fs::copy(&p, &to).unwrap();
        let n = p.file_name().unwrap().to_string_lossy().to_string();
        let mode = if n == "authkeys" || n == "halo.toml" { 0o600 } else { 0o644 };
        std::fs::set_permissions(&to, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    dst
}

fn convert(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(HALO).args(["config", "convert"]).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn legacy_example_to_toml_and_back_through_the_cli() {
    let legacy = copy_example("seed-001", "seed001");
    let (code, toml, err) = convert(&["--config-dir", legacy.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(toml.contains("nodes = [\"debian1\", \"debian2\"]"), "{toml}");
    assert!(toml.contains("resources = [\"IPaddr::10.3.2.50/8/eth0:0\", \"apache2\"]"), "{toml}");
    assert!(err.contains("chmod 600"), "{err}");

    // --out writes a halo.toml that halo check accepts, and converting it back gives the
    // legacy files as sections.
    let out = scratch("seed001-toml");
    let (code, _, err) = convert(&["--config-dir", legacy.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(std::fs::metadata(out.join("halo.toml")).unwrap().permissions().mode() & 0o777, 0o600);
    let check = Command::new(HALO)
        .args(["check", "--config-only", "--config-dir", out.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stderr));
    let (code, legacy_text, err) = convert(&["--config-dir", out.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(legacy_text.contains("==> ha.cf <==") && legacy_text.contains("bcast eth0"), "{legacy_text}");
    assert!(
        legacy_text.contains("==> haresources <==\ndebian1 IPaddr::10.3.2.50/8/eth0:0 apache2"),
        "{legacy_text}"
    );
    assert!(legacy_text.contains("==> authkeys <==\nauth 1\n1 sha1 P@ssw0rd"), "{legacy_text}");

    // Both formats in one directory: refused, naming both.
    std::fs::copy(legacy.join("ha.cf"), out.join("ha.cf")).unwrap();
    let (code, _, err) = convert(&["--config-dir", out.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains("halo.toml") && err.contains("ha.cf"), "{err}");

    // halo.toml's extras going to legacy files are named on stderr.
    let ex = copy_example("halo.toml", "example");
    let (code, text, err) = convert(&["--config-dir", ex.to_str().unwrap(), "--to", "legacy"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("clone 'gw_pingd_clone'") && err.contains("order 'gw_pingd_clone' before 'vpn'"),
        "{err}"
    );
    assert!(text.contains("==> ldirectord.cf <==") && text.contains("\nchecktimeout=10\n"), "{text}");
    for d in [legacy, out, ex] {
        let _ = std::fs::remove_dir_all(d);
    }
}

/// A 2-node ucast cluster with a VIP group, written the legacy way, converted to halo.toml,
/// and run from the halo.toml only.
#[test]
fn converted_config_fails_over_like_the_original() {
    let Some(mut tb) = Testbed::for_test("cv") else { return };
    tb.add_host("n1", "10.79.0.1/16").unwrap();
    tb.add_host("n2", "10.79.0.2/16").unwrap();
    tb.add_host("client", "10.79.0.9/16").unwrap();

    let mut socks = Vec::new();
    for node in ["n1", "n2"] {
        let log = tb.dir.join(format!("{node}.log"));
        let cf = format!(
            "keepalive 100ms\nwarntime 500ms\ndeadtime 1\ninitdead 3\nucast eth0 10.79.0.1\nucast eth0 10.79.0.2\n\
             auto_failback on\nnode n1 n2\nlogfile {}\nrealtime off\n",
            log.display()
        );
        let legacy =
            tb.write_config(&format!("{node}-legacy"), &cf, "auth 1\n1 sha1 convert-secret\n").unwrap();
        std::fs::write(legacy.join("haresources"), format!("n1 IPaddr2::{VIP}/16/eth0 web\n")).unwrap();

        let dir = tb.dir.join(node).join("ha.d");
        let (code, _, err) =
            convert(&["--config-dir", legacy.to_str().unwrap(), "--out", dir.to_str().unwrap()]);
        assert_eq!(code, 0, "{err}");
        assert!(
            dir.join("halo.toml").exists()
                && !dir.join("ha.cf").exists()
                && !dir.join("haresources").exists()
        );
        halo::testbed::install_web(&dir, node).unwrap();
        let (_, sock) = tb.start_halo(node, Path::new(HALO), &dir).unwrap();
        socks.push(sock);
    }

    let logs = |tb: &Testbed| {
        let mut s = String::new();
        for n in ["n1", "n2"] {
            for f in [format!("{n}.log"), format!("{n}.out")] {
                s += &format!("--- {f}\n{}\n", std::fs::read_to_string(tb.dir.join(&f)).unwrap_or_default());
            }
        }
        s
    };
    let has_vip = |tb: &Testbed, node: &str| {
        let out = tb.exec(node, &["ip", "-4", "addr", "show", "dev", "eth0"]).unwrap();
        String::from_utf8_lossy(&out.stdout).contains(&format!("{VIP}/"))
    };
    let fetch = |tb: &Testbed| tb.fetch("client", &format!("http://{VIP}/"), Duration::from_secs(1));

    // The converted configuration is what the daemons run: both see each other, n1 holds
    // the group.
    let up = wait_for(Duration::from_secs(30), || {
        (halo::testbed::node_state(&socks[0], "n2").as_deref() == Some("active")
            && halo::testbed::node_state(&socks[1], "n1").as_deref() == Some("active"))
        .then_some(())
    });
    assert!(up.is_some(), "the nodes never saw each other\n{}", logs(&tb));
    let served = wait_for(Duration::from_secs(30), || (fetch(&tb).as_deref() == Some("n1")).then_some(()));
    assert!(served.is_some(), "n1 never served the VIP\n{}", logs(&tb));
    assert!(has_vip(&tb, "n1") && !has_vip(&tb, "n2"));

    // n1's cable cut: n2 takes the VIP over and serves it.
    tb.cable("n1", false).unwrap();
    let moved = wait_for(Duration::from_secs(20), || (fetch(&tb).as_deref() == Some("n2")).then_some(()));
    assert!(moved.is_some(), "n2 did not take the VIP over after n1's cable cut\n{}", logs(&tb));
    assert!(has_vip(&tb, "n2"), "{}", logs(&tb));
}
