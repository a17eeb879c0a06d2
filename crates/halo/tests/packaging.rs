//! Packaging: the systemd unit (verified by systemd-analyze), the daemon speaking systemd's
//! notify protocol and writing journal-style stderr, `halo --version`, the manual pages
//! and shell completions generated from the CLI, and the .deb (built, installed with
//! dpkg, checked, removed).
use std::os::unix::fs::MetadataExt;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const HALO: &str = env!("CARGO_BIN_EXE_halo");

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn tempdir(tag: &str) -> halo::testbed::Scratch {
    let d = std::env::temp_dir().join(format!("halo-pkg-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    halo::testbed::Scratch(d)
}

fn halo(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(HALO).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Skips (returns true) without root, unless CI asks for every test (HALO_REQUIRE_ROOT=1).
fn skip_without_root(what: &str) -> bool {
    if is_root() {
        return false;
    }
    if std::env::var("HALO_REQUIRE_ROOT").as_deref() == Ok("1") {
        panic!("{what} needs root and HALO_REQUIRE_ROOT=1");
    }
    eprintln!("skipping {what}: not root (set HALO_REQUIRE_ROOT=1 to make this a failure)");
    true
}

#[test]
fn version_names_the_wire_protocol() {
    let (code, out, _) = halo(&["--version"]);
    assert_eq!(code, 0);
    assert_eq!(out.trim(), format!("halo {} (Heartbeat 3.0.6 wire protocol)", env!("CARGO_PKG_VERSION")));
}

#[test]
fn unit_file_is_valid_and_says_what_operations_asked() {
    let unit = std::fs::read_to_string(repo().join("packaging/halo.service")).unwrap();
    for want in [
        "Type=notify",
        "WatchdogSec=",
        "ExecStart=/usr/sbin/halo run",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "Restart=on-failure",
        "After=network-online.target",
        "Wants=network-online.target",
    ] {
        assert!(unit.contains(want), "halo.service lacks {want}");
    }
    // systemd-analyze checks that ExecStart exists: point it at the binary under test.
    let d = tempdir("unit");
    let path = d.join("halo.service");
    std::fs::write(&path, unit.replace("/usr/sbin/halo", HALO)).unwrap();
    let out = match Command::new("systemd-analyze").args(["verify", "--man=no"]).arg(&path).output() {
        Ok(o) => o,
        Err(e) if std::env::var("HALO_REQUIRE_ROOT").as_deref() == Ok("1") => {
            panic!("systemd-analyze: {e} (scripts/test.sh installs systemd)")
        }
        Err(e) => {
            eprintln!("skipping systemd-analyze verify: {e}");
            return;
        }
    };
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "systemd-analyze verify failed:\n{text}");
    assert!(!text.contains("halo.service:"), "systemd-analyze complained about the unit:\n{text}");
    // And it does catch a broken unit (the test is not vacuous).
    std::fs::write(&path, unit.replace("/usr/sbin/halo", "/nonexistent/halo")).unwrap();
    let bad = Command::new("systemd-analyze").args(["verify", "--man=no"]).arg(&path).output().unwrap();
    assert!(!bad.status.success(), "a unit with a missing ExecStart was accepted");
}

#[test]
fn man_pages_are_generated_from_the_cli() {
    let d = tempdir("man");
    let (code, _out, err) = halo(&["man", "--out", &d.to_string_lossy()]);
    assert_eq!(code, 0, "{err}");
    let main = std::fs::read_to_string(d.join("halo.8")).unwrap();
    assert!(main.contains(".TH halo 8"), "{main}");
    for sub in
        ["run", "status", "standby", "takeover", "check", "mon", "cl_status", "lvs", "man", "completions"]
    {
        assert!(main.contains(sub), "halo.8 does not mention {sub}");
        let page = std::fs::read_to_string(d.join(format!("halo-{sub}.8")))
            .unwrap_or_else(|e| panic!("halo-{sub}.8: {e}"));
        assert!(page.contains(&format!(".TH halo-{sub} 8")), "halo-{sub}.8:\n{page}");
    }
    let run = std::fs::read_to_string(d.join("halo-run.8")).unwrap();
    assert!(run.contains("config\\-dir"), "halo-run.8 lacks --config-dir:\n{run}");
    assert!(d.join("halo-config-convert.8").exists(), "nested subcommands get a page too");
    assert!(!d.join("halo-help.8").exists(), "clap's help subcommand gets no page");
    // Without --out, halo.8 goes to stdout.
    let (code, out, _) = halo(&["man"]);
    assert_eq!(code, 0);
    assert_eq!(out, main);
}

#[test]
fn completions_are_generated_for_bash_zsh_and_fish() {
    for shell in ["bash", "zsh", "fish"] {
        let (code, out, err) = halo(&["completions", shell]);
        assert_eq!(code, 0, "{shell}: {err}");
        for sub in ["run", "status", "standby", "takeover", "cl_status"] {
            assert!(out.contains(sub), "{shell} completion lacks {sub}");
        }
        assert!(out.contains("config-dir"), "{shell} completion lacks --config-dir");
    }
    let (code, _, _) = halo(&["completions", "tcsh"]);
    assert_ne!(code, 0, "an unknown shell is refused");
    // The bash script at least parses.
    let (_, bash, _) = halo(&["completions", "bash"]);
    if let Ok(out) = Command::new("bash").args(["-n", "-c", &bash]).output() {
        assert!(out.status.success(), "bash -n: {}", String::from_utf8_lossy(&out.stderr));
    }
}

/// A one-node-of-two configuration on loopback: the daemon starts and runs alone.
fn loopback_config(d: &Path) -> PathBuf {
    let cfg = d.join("ha.d");
    std::fs::create_dir_all(&cfg).unwrap();
    let port = 20000 + (std::process::id() % 20000);
    std::fs::write(
        cfg.join("ha.cf"),
        format!(
            "keepalive 200ms\ndeadtime 2\ninitdead 2\nudpport {port}\nucast lo 127.0.0.1\nnode alpha beta\n"
        ),
    )
    .unwrap();
    std::fs::write(cfg.join("authkeys"), "auth 1\n1 sha1 packaging-test\n").unwrap();
    std::fs::set_permissions(cfg.join("authkeys"), std::fs::Permissions::from_mode(0o600)).unwrap();
    cfg
}

#[test]
fn daemon_notifies_systemd_and_writes_journal_lines() {
    if skip_without_root("the sd_notify daemon test") {
        return;
    }
    let d = tempdir("notify");
    let cfg = loopback_config(&d);
    let sock_path = d.join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    // stderr to a file whose device:inode is given as JOURNAL_STREAM, as systemd does.
    let err_path = d.join("stderr");
    let err_file = std::fs::File::create(&err_path).unwrap();
    let md = err_file.metadata().unwrap();
    let mut child = Command::new(HALO)
        .args(["--socket", &d.join("halo.sock").to_string_lossy(), "run", "--node", "alpha"])
        .args(["--config-dir", &cfg.to_string_lossy(), "--state-dir", &d.join("state").to_string_lossy()])
        .env("NOTIFY_SOCKET", &sock_path)
        .env("WATCHDOG_USEC", "400000")
        .env("JOURNAL_STREAM", format!("{}:{}", md.dev(), md.ino()))
        .stdout(Stdio::null())
        .stderr(err_file)
        .spawn()
        .unwrap();
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let mut got: Vec<(Instant, String)> = Vec::new();
    let recv_until = |got: &mut Vec<(Instant, String)>, until: Instant, stop: &dyn Fn(&str) -> bool| {
        let mut buf = [0u8; 4096];
        while Instant::now() < until {
            if let Ok(n) = sock.recv(&mut buf) {
                let m = String::from_utf8_lossy(&buf[..n]).into_owned();
                let done = stop(&m);
                got.push((Instant::now(), m));
                if done {
                    return true;
                }
            }
        }
        false
    };
    let ready = recv_until(&mut got, Instant::now() + Duration::from_secs(20), &|m| m.contains("READY=1"));
    if !ready {
        let _ = child.kill();
        panic!("no READY=1: {got:?}\nstderr:\n{}", std::fs::read_to_string(&err_path).unwrap_or_default());
    }
    let ready_msg = got.last().unwrap().1.clone();
    assert!(ready_msg.contains("STATUS=") && ready_msg.contains("of 2 nodes up"), "{ready_msg}");
    // Watchdog pings at half of WATCHDOG_USEC: about 5 in 1.1 s (and at least 3).
    let t0 = Instant::now();
    recv_until(&mut got, t0 + Duration::from_millis(1100), &|_| false);
    let pings = got.iter().filter(|(t, m)| *t >= t0 && m == "WATCHDOG=1").count();
    assert!((2..=8).contains(&pings), "{pings} watchdog pings in 1.1 s: {got:?}");
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let stopping =
        recv_until(&mut got, Instant::now() + Duration::from_secs(10), &|m| m.contains("STOPPING=1"));
    let status = child.wait().unwrap();
    assert!(stopping, "no STOPPING=1: {got:?}");
    assert!(status.success(), "{status:?}");
    let err = std::fs::read_to_string(&err_path).unwrap();
    let first = err.lines().next().unwrap_or_default();
    assert!(first.starts_with('<') && (first.contains(">info: ") || first.contains(">WARN: ")), "{err}");
    assert!(!err.contains("alpha halo: ["), "the date/host prefix repeated in the journal:\n{err}");
}

#[test]
fn deb_installs_the_binary_unit_man_pages_and_symlinks() {
    if skip_without_root("the .deb test (dpkg -i)") {
        return;
    }
    if Path::new("/usr/sbin/halo").exists() && !dpkg_owns_halo() {
        panic!("/usr/sbin/halo exists and is not from the halo package: not overwriting it");
    }
    let out = Command::new(repo().join("scripts/build-deb.sh")).stderr(Stdio::inherit()).output().unwrap();
    assert!(out.status.success(), "scripts/build-deb.sh failed");
    let deb = String::from_utf8_lossy(&out.stdout).lines().last().unwrap_or_default().trim().to_string();
    assert!(deb.ends_with(".deb") && Path::new(&deb).exists(), "no .deb: {deb:?}");
    let run = |cmd: &[&str]| {
        let o = Command::new(cmd[0]).args(&cmd[1..]).output().unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
        (o.status.success(), text)
    };
    let (ok, text) = run(&["dpkg-deb", "--info", &deb]);
    assert!(ok && text.contains("Package: halo") && text.contains("Section: admin"), "{text}");
    let (ok, text) = run(&["dpkg", "-i", &deb]);
    assert!(ok, "dpkg -i: {text}");
    let checks = std::panic::catch_unwind(|| {
        let (ok, text) = run(&["/usr/sbin/halo", "--version"]);
        assert!(ok && text.contains("(Heartbeat 3.0.6 wire protocol)"), "{text}");
        let unit = std::fs::read_to_string("/lib/systemd/system/halo.service").unwrap();
        assert!(unit.contains("Type=notify"), "{unit}");
        assert!(Path::new("/usr/share/man/man8/halo.8.gz").exists(), "no halo.8.gz");
        assert!(Path::new("/usr/share/man/man8/halo-run.8.gz").exists(), "no halo-run.8.gz");
        assert!(Path::new("/usr/share/bash-completion/completions/halo").exists());
        assert!(Path::new("/etc/default/halo").exists());
        for tool in ["cl_status", "hb_standby", "hb_takeover", "ResourceManager"] {
            let link = Path::new("/usr/lib/halo/bin").join(tool);
            let target = std::fs::read_link(&link).unwrap_or_else(|e| panic!("{}: {e}", link.display()));
            assert_eq!(
                std::fs::canonicalize(link.parent().unwrap().join(target)).unwrap(),
                Path::new("/usr/sbin/halo")
            );
        }
        // Called through a symlink, the binary acts as that tool.
        let (ok, text) = run(&["/usr/lib/halo/bin/cl_status", "-h"]);
        assert!(text.contains("hbstatus"), "cl_status -h ({ok}): {text}");
        let (ok, text) = run(&["dpkg", "-L", "halo"]);
        assert!(ok && text.contains("/usr/sbin/halo"), "{text}");
        assert!(!text.contains("/usr/bin/cl_status"), "heartbeat's paths must stay free:\n{text}");
    });
    let (ok, text) = run(&["dpkg", "-r", "halo"]);
    assert!(ok, "dpkg -r: {text}");
    assert!(!Path::new("/usr/sbin/halo").exists(), "dpkg -r left /usr/sbin/halo");
    assert!(!Path::new("/usr/lib/halo/bin/cl_status").exists(), "dpkg -r left the symlinks");
    if let Err(e) = checks {
        std::panic::resume_unwind(e);
    }
}

fn dpkg_owns_halo() -> bool {
    Command::new("dpkg").args(["-S", "/usr/sbin/halo"]).output().is_ok_and(|o| o.status.success())
}
