//! The director's data plane choice (ldirectord.cf's `dataplane`, a halo extension) through
//! halo's real built-in director (`Director` as the group executor starts it): a bad value is
//! refused with its file:line, `dataplane=ipvs` on a kernel without IPVS (this machine's)
//! refuses to start with what to do, and no director runs after either. The IPVS plane
//! itself, driven by the same director under `halo run`, is shown in a kernel that has it by
//! `tests/ipvs_vm.rs`. Needs no root: both refusals come before any table is touched.

use halo::director::Director;
use halo_host::group::Builtin;
use halo_host::log::{LogConfig, Logger};
use halo_host::Level;
use halo_lb::dataplane::ipvs;
use std::path::PathBuf;
use std::sync::Arc;

/// A scratch configuration directory with this ldirectord.cf, removed on drop.
struct Dir(PathBuf);

impl Dir {
    fn new(tag: &str, cf: &str) -> Dir {
        let d = std::env::temp_dir().join(format!("halo-dataplane-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).expect("mkdir");
        std::fs::write(d.join("ldirectord.cf"), halo::testbed::ldirectord_cf_logging_in(&d, cf))
            .expect("write ldirectord.cf");
        Dir(d)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn director(d: &Dir) -> Director {
    Director::new(&d.0, Arc::new(Logger::new(LogConfig::default()).expect("logger")))
}

fn start(dir: &Director) -> (Result<(), String>, Vec<(Level, String)>) {
    let mut lines = Vec::new();
    let r = dir.start("g", &["ldirectord.cf".to_string()], &mut |l, m| lines.push((l, m)));
    (r, lines)
}

#[test]
fn a_bad_dataplane_is_refused_with_its_line() {
    let d = Dir::new(
        "bad",
        "checkinterval=2\ndataplane=xdp\nvirtual=198.51.100.10:80\n\treal=192.0.2.11:80 gate\n",
    );
    let dir = director(&d);
    let (r, _) = start(&dir);
    let e = r.expect_err("a bad dataplane must not start");
    assert!(
        e.contains("ldirectord.cf:2: dataplane: expected auto, nftables or ipvs, got 'xdp'"),
        "the error names file, line and what is expected: {e}"
    );
    assert_eq!(dir.status(&["ldirectord.cf".to_string()]), Ok(false));
    assert!(dir.running_configs().is_empty());
}

#[test]
fn dataplane_ipvs_without_ipvs_in_the_kernel_refuses_to_start() {
    let d = Dir::new("ipvs", "dataplane=ipvs\nvirtual=198.51.100.10:80\n\treal=192.0.2.11:80 gate\n");
    let dir = director(&d);
    let (r, lines) = start(&dir);
    if ipvs::available() {
        // A kernel with IPVS (not this project's CI): the choice is honoured instead, which
        // needs root to apply; tests/ipvs_vm.rs shows it.
        assert!(
            r.is_ok() || !nix::unistd::Uid::effective().is_root(),
            "dataplane=ipvs on a kernel with IPVS, as root: {r:?} {lines:?}"
        );
        let _ = dir.stop("g", &["ldirectord.cf".to_string()], &mut |_, _| {});
        return;
    }
    let e = r.expect_err("dataplane=ipvs must not fall back to nftables");
    let cf = d.0.join("ldirectord.cf");
    assert!(e.starts_with(&format!("{}: dataplane=ipvs: ", cf.display())), "names the file and choice: {e}");
    assert!(e.contains("modprobe ip_vs"), "says what to do: {e}");
    assert_eq!(dir.status(&["ldirectord.cf".to_string()]), Ok(false));
    let lvs = dir.lvs_json();
    assert_eq!(lvs["directors"].as_array().map(Vec::len), Some(0), "{lvs}");
}

#[test]
fn the_nftables_plane_refuses_ipip_at_start_saying_what_runs_it() {
    // ldirectord's ipip real servers (LVS-TUN) are IPVS's alone: on the nftables plane the
    // director does not start, and says what would run it; nothing is half made.
    let d = Dir::new("tun", "dataplane=nftables\nvirtual=198.51.100.10:80\n\treal=192.0.2.11:80 ipip\n");
    let dir = director(&d);
    let e = start(&dir).0.expect_err("ipip on nftables must not start");
    assert!(
        e.contains("virtual service tcp:198.51.100.10:80: ipip forwarding (LVS-TUN) needs the IPVS data plane (dataplane=ipvs"),
        "{e}"
    );
    assert_eq!(dir.status(&["ldirectord.cf".to_string()]), Ok(false));
}
