//! `halo config sync` and `halo exec` against real sshd (Debian's openssh-server), one per
//! node, each in its own network namespace and its own mount namespace where the node's
//! directory is bind-mounted on /etc/ha.d — so every "node" has its own /etc/ha.d, as
//! scripts/hb-node.sh does for Heartbeat. halo itself runs as node n1 the same way. Host
//! and client keys are made by the test in its directory; the real /root/.ssh and /etc/ssh
//! are not touched (ssh -F with a generated config, sshd -f with a generated one).
use halo::testbed::{sh, wait_for, Testbed};
use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const HALO: &str = env!("CARGO_BIN_EXE_halo");
const SSHD: &str = "/usr/sbin/sshd";
const NODES: [&str; 3] = ["n1", "n2", "n3"];

const HA_CF: &str = "keepalive 1\ndeadtime 10\nbcast eth0\nauto_failback off\nnode n1 n2 n3\n";
const AUTHKEYS: &str = "auth 1\n1 sha1 sync-test-secret\n";
const HARESOURCES_OLD: &str = "n1 IPaddr::10.66.0.100/24/eth0\n";
const HARESOURCES_NEW: &str = "# moved to n2\nn2 IPaddr::10.66.0.100/24/eth0\n";

fn addr(node: &str) -> String {
    format!("10.66.0.{}", &node[1..])
}

struct Cluster {
    tb: Testbed,
    ssh_config: PathBuf,
    sshd: BTreeMap<String, u32>,
}

impl Cluster {
    /// n1, n2, n3 on one switch, each with /etc/ha.d from `<dir>/<node>/ha.d` (ha.cf,
    /// authkeys 0600, haresources, nodeinfo naming the node); sshd on n2 and n3.
    fn new(tag: &str) -> Option<Cluster> {
        let mut tb = Testbed::for_test(tag)?;
        assert!(Path::new(SSHD).exists(), "{SSHD} is missing: apt-get install openssh-server");
        assert!(
            Path::new("/etc/ha.d").is_dir(),
            "/etc/ha.d must exist to be bind-mounted over (apt-get install heartbeat creates it)"
        );
        std::fs::create_dir_all(tb.dir.join("run")).unwrap();
        for n in NODES {
            std::fs::create_dir_all(tb.dir.join(n).join("run")).unwrap();
            tb.add_host(n, &format!("{}/24", addr(n))).unwrap();
            let d = tb.write_config(n, HA_CF, AUTHKEYS).unwrap();
            std::fs::write(d.join("haresources"), HARESOURCES_OLD).unwrap();
            std::fs::write(d.join("nodeinfo"), format!("{n}\n")).unwrap();
        }
        let k = tb.dir.join("ssh");
        std::fs::create_dir_all(&k).unwrap();
        for key in ["host_key", "client_key"] {
            let f = k.join(key);
            sh(&["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", key, "-f", f.to_str().unwrap()])
                .unwrap();
        }
        let host_pub = std::fs::read_to_string(k.join("host_key.pub")).unwrap();
        let host_pub: Vec<&str> = host_pub.split_whitespace().take(2).collect();
        std::fs::write(k.join("known_hosts"), format!("* {}\n", host_pub.join(" "))).unwrap();
        std::fs::copy(k.join("client_key.pub"), k.join("authorized_keys")).unwrap();
        // The sessions find this build's halo as `halo` (the remote `halo reload`).
        let bin = tb.dir.join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        std::os::unix::fs::symlink(HALO, bin.join("halo")).unwrap();
        let sshd_config = k.join("sshd_config");
        std::fs::write(
            &sshd_config,
            format!(
                "Port 22\nHostKey {k}/host_key\nAuthorizedKeysFile {k}/authorized_keys\nPidFile none\n\
                 PermitRootLogin prohibit-password\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
                 UsePAM no\nStrictModes no\nLogLevel VERBOSE\nSetEnv PATH={b}:/usr/sbin:/usr/bin:/sbin:/bin\n",
                k = k.display(),
                b = bin.display()
            ),
        )
        .unwrap();
        let ssh_config = k.join("ssh_config");
        let mut cfg = String::new();
        for n in NODES {
            cfg.push_str(&format!("Host {n}\n  HostName {}\n", addr(n)));
        }
        cfg.push_str(&format!(
            "Host *\n  User root\n  IdentityFile {k}/client_key\n  IdentitiesOnly yes\n  UserKnownHostsFile {k}/known_hosts\n  \
             GlobalKnownHostsFile /dev/null\n  StrictHostKeyChecking yes\n  LogLevel ERROR\n",
            k = k.display()
        ));
        std::fs::write(&ssh_config, cfg).unwrap();
        let mut c = Cluster { tb, ssh_config, sshd: BTreeMap::new() };
        for n in ["n2", "n3"] {
            c.start_sshd(n, &sshd_config);
        }
        Some(c)
    }

    fn ha_d(&self, node: &str) -> PathBuf {
        self.tb.dir.join(node).join("ha.d")
    }

    /// Where each node's control socket is: one path, a different directory in each node.
    fn socket(&self) -> PathBuf {
        self.tb.dir.join("run").join("halo.sock")
    }

    fn start_sshd(&mut self, node: &str, config: &Path) {
        let log = self.tb.dir.join(format!("{node}-sshd.log"));
        // sshd needs its privilege-separation directory, which the package makes at boot.
        std::fs::create_dir_all("/run/sshd").unwrap();
        let ha_d = self.ha_d(node);
        let pid = self
            .tb
            .spawn(
                node,
                Path::new("unshare"),
                &[
                    "--mount",
                    "--propagation",
                    "private",
                    "sh",
                    "-c",
                    r#"mount --bind "$0" /etc/ha.d && mount --bind "$1" "$2" && exec "$3" -D -e -f "$4""#,
                    ha_d.to_str().unwrap(),
                    self.tb.dir.join(node).join("run").to_str().unwrap(),
                    self.tb.dir.join("run").to_str().unwrap(),
                    SSHD,
                    config.to_str().unwrap(),
                ],
                &log,
            )
            .unwrap();
        let ns = self.tb.ns(node);
        let up = wait_for(Duration::from_secs(20), || {
            let o = Command::new("ip")
                .args(["netns", "exec", &ns, "ss", "-Hltn", "sport", "= :22"])
                .output()
                .ok()?;
            (!String::from_utf8_lossy(&o.stdout).trim().is_empty()).then_some(())
        });
        assert!(
            up.is_some(),
            "sshd did not listen on {node}: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        self.sshd.insert(node.to_string(), pid);
    }

    /// `halo run` on `node`, in the mount namespace of its sshd (its /etc/ha.d, its socket).
    fn start_daemon(&mut self, node: &str) {
        let sshd = self.sshd[node].to_string();
        let log = self.tb.dir.join(format!("{node}-halo.log"));
        let state = self.tb.dir.join(node).join("state");
        let sock = self.socket();
        let args = [
            "--target",
            &sshd,
            "--mount",
            "--",
            HALO,
            "--socket",
            sock.to_str().unwrap(),
            "run",
            "--config-dir",
            "/etc/ha.d",
            "--node",
            node,
            "--state-dir",
            state.to_str().unwrap(),
        ];
        self.tb.spawn(node, Path::new("nsenter"), &args, &log).unwrap();
        let sock = self.tb.dir.join(node).join("run").join("halo.sock");
        let up = wait_for(Duration::from_secs(20), || sock.exists().then_some(()));
        assert!(
            up.is_some(),
            "halo did not start on {node}: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }

    fn stop_sshd(&mut self, node: &str) {
        let pid = self.sshd.remove(node).unwrap();
        self.tb.stop(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    }

    /// `halo ARGS` on n1, in n1's network namespace with n1's directory on /etc/ha.d.
    fn halo(&self, args: &[&str]) -> (i32, String, String) {
        let o = Command::new("ip")
            .args(["netns", "exec", &self.tb.ns("n1"), "unshare", "--mount", "--propagation", "private"])
            .args(["sh", "-c", r#"mount --bind "$0" /etc/ha.d && exec "$@""#])
            .arg(self.ha_d("n1"))
            .arg(HALO)
            .args(args)
            .env("HALO_SSH", format!("ssh -F {}", self.ssh_config.display()))
            .output()
            .unwrap();
        let r = (
            o.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        );
        eprintln!("$ halo {}\n-> exit {}\n--- stdout\n{}--- stderr\n{}", args.join(" "), r.0, r.1, r.2);
        r
    }
}

/// Every entry under `dir` (relative path -> bytes or link target, mode, uid, gid).
fn tree(dir: &Path) -> BTreeMap<String, (Vec<u8>, u32, u32, u32)> {
    fn walk(root: &Path, d: &Path, out: &mut BTreeMap<String, (Vec<u8>, u32, u32, u32)>) {
        for e in std::fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            let m = std::fs::symlink_metadata(&p).unwrap();
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            let body = if m.file_type().is_symlink() {
                std::fs::read_link(&p).unwrap().into_os_string().into_encoded_bytes()
            } else if m.is_dir() {
                walk(root, &p, out);
                Vec::new()
            } else {
                std::fs::read(&p).unwrap()
            };
            out.insert(rel, (body, m.mode() & 0o7777, m.uid(), m.gid()));
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().mode() & 0o7777
}

fn lines_of<'a>(text: &'a str, node: &str) -> Vec<&'a str> {
    let prefix = format!("{node}: ");
    text.lines().filter_map(|l| l.strip_prefix(prefix.as_str())).collect()
}

#[test]
fn sync_pushes_the_changed_files_to_both_peers_with_their_modes_and_owners() {
    let Some(c) = Cluster::new("sy") else { return };
    let n1 = c.ha_d("n1");
    // What changed on n1: haresources (now owned by another uid, to see owners carried),
    // a new resource script; n2 has a file n1 no longer has, node-local state, and n3 an
    // authkeys someone made world-readable.
    std::fs::write(n1.join("haresources"), HARESOURCES_NEW).unwrap();
    std::os::unix::fs::chown(n1.join("haresources"), Some(4321), Some(4322)).unwrap();
    halo::testbed::install_script(&n1, "web", "#!/bin/sh\nexit 0\n").unwrap();
    std::os::unix::fs::symlink("web", n1.join("resource.d/www")).unwrap();
    std::fs::write(c.ha_d("n2").join("stale.conf"), "old\n").unwrap();
    std::fs::write(c.ha_d("n2").join(".rsc_list"), "n2 state\n").unwrap();
    std::fs::set_permissions(c.ha_d("n3").join("authkeys"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let before: Vec<_> = ["n2", "n3"].iter().map(|n| tree(&c.ha_d(n))).collect();

    // A dry run tells and writes nothing.
    let (code, out, err) = c.halo(&["config", "sync", "--dry-run"]);
    assert_eq!(code, 0, "{err}");
    assert!(lines_of(&out, "n2").contains(&"would change haresources"), "{out}");
    assert!(lines_of(&out, "n2").contains(&"would remove stale.conf"), "{out}");
    assert!(lines_of(&out, "n3").contains(&"would add resource.d"), "{out}");
    assert!(
        lines_of(&out, "n3").contains(&"would change mode/owner of authkeys: 644 0:0 -> 600 0:0"),
        "{out}"
    );
    let after: Vec<_> = ["n2", "n3"].iter().map(|n| tree(&c.ha_d(n))).collect();
    assert_eq!(before, after, "a dry run changed a peer");

    let (code, out, err) = c.halo(&["config", "sync"]);
    assert_eq!(code, 0, "{err}");
    for n in ["n2", "n3"] {
        let l = lines_of(&out, n);
        for want in
            ["changed haresources", "added resource.d", "added resource.d/web", "added resource.d/www"]
        {
            assert!(l.contains(&want), "{n}: no '{want}' in\n{out}");
        }
        assert!(l.iter().any(|x| x.starts_with("no halo daemon running")), "{out}");
    }
    assert!(lines_of(&out, "n2").contains(&"removed stale.conf"), "{out}");
    assert!(lines_of(&out, "n3").contains(&"changed mode/owner of authkeys: 644 0:0 -> 600 0:0"), "{out}");
    assert!(out.contains("halo config sync: 2 node(s) synced from n1"), "{out}");

    // Every pushed entry is the same, byte for byte, mode and owner, on both peers.
    let mut want = tree(&n1);
    want.remove("nodeinfo");
    assert_eq!(want["authkeys"].1, 0o600);
    assert_eq!((want["haresources"].2, want["haresources"].3), (4321, 4322));
    for n in ["n2", "n3"] {
        let mut got = tree(&c.ha_d(n));
        assert_eq!(
            got.remove("nodeinfo").map(|e| e.0),
            Some(format!("{n}\n").into_bytes()),
            "{n}'s own name"
        );
        if n == "n2" {
            assert_eq!(got.remove(".rsc_list").map(|e| e.0), Some(b"n2 state\n".to_vec()), "n2's own state");
        }
        assert_eq!(got, want, "{n}'s /etc/ha.d differs from n1's");
        assert_eq!(mode(&c.ha_d(n).join("authkeys")), 0o600);
    }

    // Nothing left to do the second time.
    let (code, out, err) = c.halo(&["config", "sync", "--node", "n3"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(lines_of(&out, "n3"), ["up to date"], "{out}");
    assert!(lines_of(&out, "n2").is_empty(), "--node n3 reached n2:\n{out}");
}

#[test]
fn sync_asks_the_daemons_that_run_to_reload() {
    let Some(mut c) = Cluster::new("sr") else { return };
    c.start_daemon("n2");
    std::fs::write(c.ha_d("n1").join("ha.cf"), HA_CF.replace("deadtime 10", "deadtime 12")).unwrap();
    let sock = c.socket();
    let (code, out, err) = c.halo(&["--socket", sock.to_str().unwrap(), "config", "sync"]);
    assert_eq!(code, 0, "{err}");
    let n2 = lines_of(&out, "n2");
    assert!(n2.contains(&"changed ha.cf"), "{out}");
    assert!(n2.contains(&"daemon reloaded"), "{out}");
    assert!(
        n2.iter().any(|l| l.starts_with("reload: ") && l.contains("deadtime") && l.contains("->")),
        "the daemon's account of the change is not shown:\n{out}"
    );
    let n3 = lines_of(&out, "n3");
    assert!(n3.contains(&"changed ha.cf"), "{out}");
    assert!(n3.iter().any(|l| l.starts_with("no halo daemon running")), "{out}");

    // --no-reload leaves the daemon alone.
    std::fs::write(c.ha_d("n1").join("ha.cf"), HA_CF.replace("deadtime 10", "deadtime 14")).unwrap();
    let (code, out, err) = c.halo(&["--socket", sock.to_str().unwrap(), "config", "sync", "--no-reload"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(lines_of(&out, "n2"), ["changed ha.cf"], "{out}");
}

#[test]
fn sync_refuses_an_invalid_configuration_and_touches_no_peer() {
    let Some(c) = Cluster::new("si") else { return };
    let n1 = c.ha_d("n1");
    std::fs::write(n1.join("haresources"), HARESOURCES_NEW).unwrap();
    std::fs::write(n1.join("ha.cf"), format!("{HA_CF}keepalive soon\n")).unwrap();
    let before: Vec<_> = ["n2", "n3"].iter().map(|n| tree(&c.ha_d(n))).collect();
    let (code, out, err) = c.halo(&["config", "sync"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("/etc/ha.d/ha.cf:6: "), "no file:line in\n{err}");
    assert!(err.contains("refusing to push an invalid configuration; nothing was sent"), "{err}");
    assert!(lines_of(&out, "n2").is_empty() && lines_of(&out, "n3").is_empty(), "{out}");
    let after: Vec<_> = ["n2", "n3"].iter().map(|n| tree(&c.ha_d(n))).collect();
    assert_eq!(before, after, "a refused sync changed a peer");

    // An ldirectord.cf the haresources names is checked too.
    std::fs::write(n1.join("ha.cf"), HA_CF).unwrap();
    std::fs::write(n1.join("haresources"), "n1 IPaddr::10.66.0.100/24/eth0 ldirectord::lvs.cf\n").unwrap();
    std::fs::write(n1.join("lvs.cf"), "checktimeout=3\nvirtual=10.66.0.100:80\n\tbogus_directive=1\n")
        .unwrap();
    let (code, _, err) = c.halo(&["config", "sync"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("/etc/ha.d/lvs.cf:3: "), "no file:line in\n{err}");
    let after: Vec<_> = ["n2", "n3"].iter().map(|n| tree(&c.ha_d(n))).collect();
    assert_eq!(before, after, "a refused sync changed a peer");
}

#[test]
fn sync_reports_an_unreachable_peer_and_still_syncs_the_other() {
    let Some(mut c) = Cluster::new("su") else { return };
    c.stop_sshd("n3");
    std::fs::write(c.ha_d("n1").join("haresources"), HARESOURCES_NEW).unwrap();
    let (code, out, err) = c.halo(&["config", "sync"]);
    assert_eq!(code, 1, "{out}{err}");
    let synced = lines_of(&out, "n2");
    assert_eq!(synced.len(), 2, "{out}");
    assert_eq!(synced[0], "changed haresources", "{out}");
    assert!(synced[1].starts_with("no halo daemon running"), "{out}");
    let failed: Vec<&str> = lines_of(&err, "n3");
    assert!(failed.iter().any(|l| l.contains("Connection refused")), "{err}");
    assert!(failed.iter().any(|l| l.starts_with("FAILED: ssh exit 255")), "{err}");
    assert!(err.contains("halo config sync: 1 of 2 node(s) synced; FAILED: n3"), "{err}");
    assert_eq!(std::fs::read(c.ha_d("n2").join("haresources")).unwrap(), HARESOURCES_NEW.as_bytes());
    assert_eq!(std::fs::read(c.ha_d("n3").join("haresources")).unwrap(), HARESOURCES_OLD.as_bytes());
}

#[test]
fn exec_runs_everywhere_at_once_with_each_nodes_output_and_status() {
    let Some(mut c) = Cluster::new("ex") else { return };
    // Each node answers from its own /etc/ha.d and its own network.
    let (code, out, err) = c.halo(&["exec", "--", "cat", "/etc/ha.d/nodeinfo"]);
    assert_eq!(code, 0, "{err}");
    for n in NODES {
        assert_eq!(lines_of(&out, n), [n], "{out}");
        assert!(lines_of(&err, "halo exec").contains(&format!("{n}: exit 0").as_str()), "{err}");
    }
    let (code, out, err) = c.halo(&[
        "exec",
        "--host",
        "n2=root@10.66.0.2",
        "--",
        "ip",
        "-o",
        "-4",
        "addr",
        "show",
        "dev",
        "eth0",
    ]);
    assert_eq!(code, 0, "{err}");
    for n in NODES {
        let l = lines_of(&out, n);
        assert_eq!(l.len(), 1, "{out}");
        assert!(l[0].contains(&format!("inet {}/24", addr(n))), "{n}: {}", l[0]);
    }

    // The words run in a shell on each node; one node failing makes the whole fail.
    let script = r#"if [ "$(cat /etc/ha.d/nodeinfo)" = n2 ]; then echo "not here" >&2; exit 3; fi; echo fine; echo two"#;
    let (code, out, err) = c.halo(&["exec", "--", script]);
    assert_eq!(code, 1, "{err}");
    assert_eq!(lines_of(&out, "n1"), ["fine", "two"], "{out}");
    assert_eq!(lines_of(&out, "n3"), ["fine", "two"], "{out}");
    assert_eq!(lines_of(&err, "n2"), ["not here"], "{err}");
    let status = lines_of(&err, "halo exec");
    assert_eq!(status, ["n1: exit 0", "n2: exit 3", "n3: exit 0", "1 of 3 node(s) failed: n2"], "{err}");

    // --node picks; --timeout kills what runs too long and counts it failed. (The remote
    // loop writes, so it ends at its next line once its session is gone, and does not
    // outlive the test.)
    let (code, out, err) = c.halo(&["exec", "--node", "n3", "--", "cat", "/etc/ha.d/nodeinfo"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "n3: n3\n");
    let ticking = "while sleep 0.2; do echo tick; done";
    let (code, _, err) = c.halo(&["exec", "--node", "n1", "--node", "n2", "--timeout", "1", "--", ticking]);
    assert_eq!(code, 1, "{err}");
    let status = lines_of(&err, "halo exec");
    assert_eq!(
        status,
        [
            "n1: timed out after 1 s (killed)",
            "n2: timed out after 1 s (killed)",
            "2 of 2 node(s) failed: n1 n2"
        ],
        "{err}"
    );

    // An unreachable node is reported; the others still run.
    c.stop_sshd("n3");
    let (code, out, err) = c.halo(&["exec", "--", "cat", "/etc/ha.d/nodeinfo"]);
    assert_eq!(code, 1, "{err}");
    assert_eq!(lines_of(&out, "n1"), ["n1"]);
    assert_eq!(lines_of(&out, "n2"), ["n2"]);
    assert!(lines_of(&err, "n3").iter().any(|l| l.contains("Connection refused")), "{err}");
    assert!(err.contains("halo exec: n3: exit 255: ssh could not reach it"), "{err}");
    assert!(err.contains("halo exec: 1 of 3 node(s) failed: n3"), "{err}");
}
