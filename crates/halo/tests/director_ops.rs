//! End-to-end operations of halo's built-in director, in network namespaces: a director
//! node `d` runs `halo run` with the group `d ldirectord::ldirectord.cf`; `r1` and `r2` are
//! real servers (a web server each, checked with `checktype=connect`).
//!
//! * maintenancedir: a file named after a real server takes it out (quiescent: weight 0 in
//!   `halo lvs`), removing it brings it back;
//! * emailalert: an SMTP server written here (listening on port 25 inside `d`) receives
//!   ldirectord's mails for a real server that goes down, again every `emailalertfreq`
//!   while it stays down, and none for the daemon states `emailalertstatus` excludes;
//! * alertcommand: a script records every change, one at a time, in order;
//! * autoreload: a real server added to the file joins while the other keeps its health
//!   (same id, check counters continuing, never out of the table); an invalid file is
//!   refused with its file:line and the table stays;
//! * connection counts: over LVS-NAT, connections held through the VIP show as `ActiveConn`
//!   of their real servers in `halo lvs` (from conntrack), and as `InActConn` once closed.
use halo::testbed::{wait_for, Testbed};
use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const HALO: &str = env!("CARGO_BIN_EXE_halo");
const AUTHKEYS: &str = "auth 1\n1 sha1 director-ops\n";
const R1: &str = "10.81.0.2:80";
const R2: &str = "10.81.0.3:80";
const VS: &str = "10.81.0.100:80";

struct Bed {
    tb: Testbed,
    web: Vec<(String, u32)>,
}

impl Bed {
    fn new(tag: &str) -> Option<Bed> {
        let mut tb = Testbed::for_test(tag)?;
        tb.add_host("d", "10.81.0.1/16").unwrap();
        tb.add_host("r1", "10.81.0.2/16").unwrap();
        tb.add_host("r2", "10.81.0.3/16").unwrap();
        Some(Bed { tb, web: Vec::new() })
    }

    /// LVS-NAT on the same switch: the real servers in 10.81.0.0/24 route through the
    /// director (10.81.0.1), which also has 10.81.1.1 and the VIP 10.81.1.100 in the client's
    /// 10.81.1.0/24 (client `c` at 10.81.1.9, routing the inside subnet through the director).
    fn nat(tag: &str) -> Option<Bed> {
        let mut tb = Testbed::for_test(tag)?;
        tb.add_host("d", "10.81.0.1/24").unwrap();
        tb.add_host("r1", "10.81.0.2/24").unwrap();
        tb.add_host("r2", "10.81.0.3/24").unwrap();
        tb.add_host("c", "10.81.1.9/24").unwrap();
        for a in ["10.81.1.1/24", "10.81.1.100/24"] {
            tb.exec("d", &["ip", "addr", "add", a, "dev", "eth0"]).unwrap();
        }
        tb.exec("d", &["sysctl", "-qw", "net.ipv4.ip_forward=1"]).unwrap();
        tb.exec("c", &["ip", "route", "add", "10.81.0.0/24", "via", "10.81.1.1"]).unwrap();
        for r in ["r1", "r2"] {
            tb.exec(r, &["ip", "route", "add", "default", "via", "10.81.0.1"]).unwrap();
        }
        Some(Bed { tb, web: Vec::new() })
    }

    fn socket(&self) -> PathBuf {
        self.tb.dir.join("d.sock")
    }

    fn cf_path(&self) -> PathBuf {
        self.tb.dir.join("d").join("ha.d").join("ldirectord.cf")
    }

    /// The director's configuration directory, with `ldirectord_cf` as its ldirectord.cf.
    fn config(&self, ldirectord_cf: &str) -> PathBuf {
        let log = self.tb.dir.join("d.log");
        let cf = format!(
            "keepalive 100ms\nwarntime 500ms\ndeadtime 1\ninitdead 2\nbcast eth0\nauto_failback off\n\
             node d\nlogfile {}\nrealtime off\n",
            log.display()
        );
        let dir = self
            .tb
            .write_director_config("d", &cf, AUTHKEYS, "d ldirectord::ldirectord.cf\n", ldirectord_cf)
            .unwrap();
        assert_eq!(dir.join("ldirectord.cf"), self.cf_path());
        dir
    }

    fn start_web(&mut self, node: &str) {
        let www = self.tb.dir.join(node).join("www");
        std::fs::create_dir_all(&www).unwrap();
        std::fs::write(www.join("index.html"), format!("{node}\n")).unwrap();
        let script = format!("cd {} && exec python3 -m http.server 80 --bind 0.0.0.0", www.display());
        let out = self.tb.dir.join(format!("{node}.web"));
        let pid = self.tb.spawn(node, Path::new("/bin/sh"), &["-c", &script], &out).unwrap();
        self.web.push((node.to_string(), pid));
        let up = wait_for(Duration::from_secs(10), || {
            let o = self.tb.exec(node, &["ss", "-ltn"]).ok()?;
            String::from_utf8_lossy(&o.stdout).contains(":80 ").then_some(())
        });
        assert!(up.is_some(), "the web server of {node} listens");
    }

    fn stop_web(&mut self, node: &str) {
        let i = self.web.iter().position(|(n, _)| n == node).expect("web runs");
        let (_, pid) = self.web.remove(i);
        self.tb.stop(pid, nix::sys::signal::Signal::SIGKILL).unwrap();
    }

    /// `halo lvs` (ipvsadm -L -n), empty while the daemon does not answer.
    fn lvs(&self) -> String {
        let out = Command::new(HALO).arg("--socket").arg(self.socket()).arg("lvs").output().unwrap();
        if out.status.success() {
            String::from_utf8_lossy(&out.stdout).into_owned()
        } else {
            String::new()
        }
    }

    /// The daemon's `lvs` answer (what `halo lvs --health` renders), first director.
    fn director(&self) -> Value {
        let v = halo::control::request(&self.socket(), "lvs").unwrap_or(Value::Null);
        v["directors"][0].clone()
    }

    fn real(&self, addr: &str) -> Value {
        let d = self.director();
        let reals = d["services"][0]["reals"].as_array().cloned().unwrap_or_default();
        reals.into_iter().find(|r| r["addr"] == addr).unwrap_or(Value::Null)
    }

    /// /etc/netns/NS of `host`: files there replace /etc's for processes `ip netns exec`
    /// starts in it. Removed on drop.
    fn etc_netns(&self, host: &str) -> PathBuf {
        let d = Path::new("/etc/netns").join(self.tb.ns(host));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.tb.dir.join("d.log")).unwrap_or_default()
            + &std::fs::read_to_string(self.tb.dir.join("d.out")).unwrap_or_default()
    }

    fn until(&self, within: Duration, what: &str, mut f: impl FnMut() -> bool) {
        if wait_for(within, || f().then_some(())).is_none() {
            panic!("{what} (waited {within:?})\n--- halo lvs\n{}\n--- log\n{}", self.lvs(), self.log());
        }
    }
}

impl Drop for Bed {
    fn drop(&mut self) {
        for host in ["d", "r1", "r2", "c"] {
            let _ = std::fs::remove_dir_all(Path::new("/etc/netns").join(self.tb.ns(host)));
        }
        // Only if nothing else uses it (remove_dir fails on a directory that is not empty).
        let _ = std::fs::remove_dir("/etc/netns");
        for host in ["d", "r1", "r2", "c"] {
            let Ok(out) = Command::new("ip").args(["netns", "pids", &self.tb.ns(host)]).output() else {
                continue;
            };
            for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                if let Ok(pid) = pid.parse::<i32>() {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
            }
        }
    }
}

/// `-> ADDR  Route  WEIGHT` in `halo lvs`.
fn weight_in(lvs: &str, addr: &str) -> Option<u32> {
    lvs.lines().find_map(|l| {
        let cols: Vec<&str> = l.split_whitespace().collect();
        match cols.as_slice() {
            ["->", a, _fwd, w, ..] if *a == addr => w.parse().ok(),
            _ => None,
        }
    })
}

/// One mail as the SMTP server received it.
#[derive(Debug, Clone)]
struct Received {
    helo: String,
    from: String,
    to: Vec<String>,
    data: String,
}

impl Received {
    fn header(&self, name: &str) -> Option<&str> {
        let head = self.data.split("\r\n\r\n").next()?;
        head.lines().find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(": ")))
    }

    fn subject(&self) -> &str {
        self.header("Subject").unwrap_or("")
    }

    fn body(&self) -> &str {
        self.data.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("")
    }
}

type Inbox = Arc<Mutex<Vec<Received>>>;

/// An SMTP server on 127.0.0.1:25 inside namespace `ns` (a thread that enters it: the
/// listening socket belongs to that namespace). Every mail it accepts lands in the inbox.
fn smtp_server(ns: &str) -> Inbox {
    let inbox: Inbox = Arc::new(Mutex::new(Vec::new()));
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let path = format!("/run/netns/{ns}");
    let boxed = Arc::clone(&inbox);
    std::thread::spawn(move || {
        let f = std::fs::File::open(&path).expect("the namespace");
        nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
        let l = TcpListener::bind("127.0.0.1:25").expect("port 25 in the namespace");
        ready_tx.send(()).unwrap();
        for conn in l.incoming() {
            let Ok(conn) = conn else { continue };
            let boxed = Arc::clone(&boxed);
            std::thread::spawn(move || {
                if let Some(m) = smtp_session(conn) {
                    boxed.lock().unwrap().push(m);
                }
            });
        }
    });
    ready_rx.recv_timeout(Duration::from_secs(5)).expect("the SMTP server listens");
    inbox
}

/// One SMTP session, as RFC 5321 has it (EHLO, MAIL, RCPT, DATA with dot-unstuffing, QUIT).
fn smtp_session(conn: std::net::TcpStream) -> Option<Received> {
    conn.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let mut w = conn.try_clone().ok()?;
    let mut r = BufReader::new(conn);
    let mut m = Received { helo: String::new(), from: String::new(), to: Vec::new(), data: String::new() };
    let mut done = None;
    w.write_all(b"220 test.invalid ESMTP test server\r\n").ok()?;
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).ok()? == 0 {
            return done;
        }
        let line = line.trim_end_matches(['\r', '\n']).to_string();
        let upper = line.to_ascii_uppercase();
        let reply: &[u8] = if upper.starts_with("EHLO ") {
            m.helo = line[5..].to_string();
            b"250-test.invalid\r\n250 8BITMIME\r\n"
        } else if upper.starts_with("MAIL FROM:") {
            m.from = line[10..].to_string();
            b"250 sender ok\r\n"
        } else if upper.starts_with("RCPT TO:") {
            m.to.push(line[8..].to_string());
            b"250 recipient ok\r\n"
        } else if upper == "DATA" {
            w.write_all(b"354 go ahead\r\n").ok()?;
            let mut data = String::new();
            loop {
                let mut l = String::new();
                if r.read_line(&mut l).ok()? == 0 {
                    return None;
                }
                if l == ".\r\n" {
                    break;
                }
                data.push_str(l.strip_prefix('.').unwrap_or(&l));
            }
            m.data = data;
            done = Some(m.clone());
            b"250 queued\r\n"
        } else if upper == "QUIT" {
            w.write_all(b"221 bye\r\n").ok()?;
            return done;
        } else {
            b"502 not implemented\r\n"
        };
        w.write_all(reply).ok()?;
    }
}

fn subjects(inbox: &Inbox) -> Vec<String> {
    inbox.lock().unwrap().iter().map(|m| m.subject().to_string()).collect()
}

fn mail_with(inbox: &Inbox, subject: &str) -> Option<Received> {
    inbox.lock().unwrap().iter().find(|m| m.subject() == subject).cloned()
}

#[test]
fn director_maintenancedir_emailalert_and_alertcommand() {
    let Some(mut b) = Bed::new("dops") else { return };
    let maint = b.tb.dir.join("maintenance");
    std::fs::create_dir_all(&maint).unwrap();
    let events = b.tb.dir.join("events");
    let script = b.tb.dir.join("alert.sh");
    // The sleep makes overlapping runs show: each line is written after it, so commands run
    // at the same time would interleave their lines out of order.
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nsleep 0.2\necho \"$HALO_ALERT_EVENT $HALO_ALERT_REAL $HALO_ALERT_VIRTUAL \
             $HALO_ALERT_OLD_STATE>$HALO_ALERT_NEW_STATE w=$HALO_ALERT_WEIGHT $HALO_ALERT_DAEMON_STATUS\" >> {}\n",
            events.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let fb_calls = b.tb.dir.join("fallbackcommand.calls");
    let fb = b.tb.dir.join("fallbackcommand.sh");
    std::fs::write(&fb, format!("#!/bin/sh\necho \"$@\" >> {}\n", fb_calls.display())).unwrap();
    std::fs::set_permissions(&fb, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let cf = format!(
        "checktimeout=1\ncheckinterval=1\nquiescent=yes\nfallback=10.81.0.9:80 gate\nfallbackcommand={}\nmaintenancedir={}\n\
         emailalert=ops@example.org\nemailalertfreq=3\nemailalertstatus=running\nsmtp=127.0.0.1\n\
         alertcommand={}\n\n\
         virtual={VS}\n\treal={R1} gate 1\n\treal={R2} gate 1\n\tchecktype=connect\n\tscheduler=rr\n",
        fb.display(),
        maint.display(),
        script.display()
    );
    let dir = b.config(&cf);
    // The director's resolver knows r1 by name (`ip netns exec` mounts /etc/netns/NS/hosts
    // over /etc/hosts for the daemon), for a maintenance file named as ldirectord names it.
    let etc = b.etc_netns("d");
    std::fs::write(etc.join("hosts"), "127.0.0.1 localhost\n10.81.0.2 web1.example.test web1\n").unwrap();
    let inbox = smtp_server(&b.tb.ns("d"));
    b.start_web("r1");
    b.start_web("r2");
    let (pid, _) = b.tb.start_halo("d", Path::new(HALO), &dir).unwrap();
    b.until(Duration::from_secs(20), "both real servers in the table", || {
        let t = b.lvs();
        weight_in(&t, R1) == Some(1) && weight_in(&t, R2) == Some(1)
    });

    // A maintenance file named after r2's address: quiesced (weight 0), not checked.
    std::fs::write(maint.join("10.81.0.3"), "").unwrap();
    b.until(Duration::from_secs(5), "r2 quiesced by its maintenance file", || {
        weight_in(&b.lvs(), R2) == Some(0)
    });
    let r2 = b.real(R2);
    assert_eq!(r2["maintenance"], "10.81.0.3", "{r2}");
    assert_eq!(r2["health"], "down (maintenance file 10.81.0.3)", "{r2}");
    let checks = r2["checks"].as_u64().unwrap();
    // ldirectord's mail for it, then again emailalertfreq later while it stays out.
    let quiesced = format!("Quiescent real server: {R2} ({VS}) (Weight set to 0)");
    b.until(Duration::from_secs(10), "the quiescent mail", || mail_with(&inbox, &quiesced).is_some());
    let m = mail_with(&inbox, &quiesced).unwrap();
    assert_eq!(m.to, vec!["<ops@example.org>"]);
    assert!(m.from.starts_with("<root@") || m.from.contains('@'), "{m:?}");
    assert!(!m.helo.is_empty());
    assert_eq!(m.header("To"), Some("ops@example.org"), "{m:?}");
    assert!(m.header("From").is_some_and(|f| f.contains('@')), "{m:?}");
    let body: Vec<&str> = m.body().lines().collect();
    assert!(body[0].starts_with("ldirectord host: "), "{body:?}");
    assert_eq!(body[1..], [format!("Log-Message: {quiesced}").as_str(), "Daemon-Status: running"]);
    let inaccessible = format!("Inaccessible real server: {R2} ({VS})");
    b.until(Duration::from_secs(12), "the repeated alert while r2 stays out", || {
        mail_with(&inbox, &inaccessible).is_some()
    });
    assert_eq!(b.real(R2)["checks"].as_u64().unwrap(), checks, "no check while in maintenance");

    // The file goes: r2 is checked again and comes back at its weight.
    std::fs::remove_file(maint.join("10.81.0.3")).unwrap();
    b.until(Duration::from_secs(5), "r2 back after its maintenance", || weight_in(&b.lvs(), R2) == Some(1));
    let added = format!("Added real server: {R2} ({VS}) (Weight set to 1)");
    b.until(Duration::from_secs(10), "the mail for r2 back", || mail_with(&inbox, &added).is_some());

    // A file named after the short name of r1's address (`web1:80`): out, then back.
    std::fs::write(maint.join("web1:80"), "").unwrap();
    b.until(Duration::from_secs(10), "r1 quiesced by web1:80", || weight_in(&b.lvs(), R1) == Some(0));
    assert_eq!(b.real(R1)["maintenance"], "web1:80");
    std::fs::remove_file(maint.join("web1:80")).unwrap();
    b.until(Duration::from_secs(5), "r1 back", || weight_in(&b.lvs(), R1) == Some(1));

    // A real failure: r1's web server stops; mailed, and again every emailalertfreq.
    let seen = subjects(&inbox).len();
    b.stop_web("r1");
    b.until(Duration::from_secs(5), "r1 quiesced", || weight_in(&b.lvs(), R1) == Some(0));
    let inaccessible1 = format!("Inaccessible real server: {R1} ({VS})");
    b.until(Duration::from_secs(15), "two repeated alerts for r1", || {
        subjects(&inbox)[seen..].iter().filter(|s| **s == inaccessible1).count() >= 2
    });
    let all = subjects(&inbox);
    let first = all[seen..]
        .iter()
        .position(|s| *s == format!("Quiescent real server: {R1} ({VS}) (Weight set to 0)"));
    let again = all[seen..].iter().position(|s| *s == inaccessible1);
    assert!(first.is_some() && first < again, "the change first, then the repeats: {all:?}");
    // r2 is back: no repeat for it after its Added mail.
    let back = all.iter().position(|s| *s == added).unwrap();
    assert!(!all[back..].contains(&inaccessible), "{all:?}");

    // Stop the daemon: the purges happen while `stopping`, which emailalertstatus excludes,
    // as it excluded the additions of the first pass (`starting`).
    b.tb.stop(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let all = subjects(&inbox);
    assert!(all.iter().all(|s| !s.starts_with("Purged")), "{all:?}");
    assert!(inbox.lock().unwrap().iter().all(|m| m.body().contains("Daemon-Status: running")), "{all:?}");

    // The alert command saw every change, in order, one at a time, all states included.
    let lines = std::fs::read_to_string(&events).unwrap();
    let of = |real: &str| -> Vec<String> {
        lines
            .lines()
            .filter(|l| l.split(' ').nth(1) == Some(real))
            .map(|l| {
                let w: Vec<&str> = l.split(' ').collect();
                format!("{} {} {} {}", w[0], w[3], w[4], w[5])
            })
            .collect()
    };
    assert_eq!(
        of(R2),
        vec![
            "added down>up w=1 starting",
            "quiescent up>down w=0 running",
            "added down>up w=1 running",
            "purged up>removed w= stopping",
        ],
        "{lines}"
    );
    assert_eq!(
        of(R1),
        vec![
            "added down>up w=1 starting",
            "quiescent up>down w=0 running",
            "added down>up w=1 running",
            "quiescent up>down w=0 running",
            "purged down>removed w= stopping"
        ],
        "{lines}"
    );
    assert!(lines.lines().all(|l| l.split(' ').nth(2) == Some(VS)), "{lines}");
    // The fallback, in the table while no real server was up, left when the first came up.
    assert_eq!(of("10.81.0.9:80"), vec!["deleted up>down w= starting"], "{lines}");
    // fallbackcommand: started at start (no real server up yet), stopped by the first one up;
    // never again, one real server being up all along.
    assert_eq!(std::fs::read_to_string(&fb_calls).unwrap(), format!("start {VS} tcp\nstop {VS} tcp\n"));
}

/// `halo lvs` lines of the real servers (weights included), for comparing tables.
fn reals_of(lvs: &str) -> Vec<String> {
    lvs.lines()
        .filter(|l| l.trim_start().starts_with("->") && !l.contains("RemoteAddress"))
        .map(String::from)
        .collect()
}

#[test]
fn director_autoreload_applies_the_difference_and_refuses_an_invalid_file() {
    let Some(mut b) = Bed::new("drel") else { return };
    // ldirectord's callback: run with the file's name whenever it changed on disk.
    let called = b.tb.dir.join("callback.calls");
    let callback = b.tb.dir.join("callback.sh");
    std::fs::write(&callback, format!("#!/bin/sh\necho \"$@\" >> {}\n", called.display())).unwrap();
    std::fs::set_permissions(&callback, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let head = format!(
        "checktimeout=1\ncheckinterval=1\nautoreload=yes\ncallback=\"{}\"\n\nvirtual=10.81.0.100:80\n",
        callback.display()
    );
    let head = head.as_str();
    // ldirectord's monitorfile: a line per check.
    let monitor = b.tb.dir.join("monitor.log");
    let tail = format!("\tchecktype=connect\n\tscheduler=rr\n\tmonitorfile={}\n", monitor.display());
    let tail = tail.as_str();
    let dir = b.config(&format!("{head}\treal={R1} gate 1\n{tail}"));
    b.start_web("r1");
    b.start_web("r2");
    let (pid, _) = b.tb.start_halo("d", Path::new(HALO), &dir).unwrap();
    b.until(Duration::from_secs(20), "r1 in the table", || weight_in(&b.lvs(), R1) == Some(1));
    b.until(Duration::from_secs(10), "a few checks of r1", || b.real(R1)["checks"].as_u64() >= Some(3));
    let before = b.real(R1);
    assert_eq!(b.director()["autoreload"], true);

    // r2 added to the file: it joins; r1 never leaves, keeps its id and its counters go on.
    std::fs::write(b.cf_path(), format!("{head}\treal={R1} gate 1\n\treal={R2} gate 1\n{tail}")).unwrap();
    b.until(Duration::from_secs(10), "r2 joins after the file changed", || {
        let t = b.lvs();
        assert_eq!(weight_in(&t, R1), Some(1), "r1 stays in the table throughout:\n{t}");
        weight_in(&t, R2) == Some(1)
    });
    let after = b.real(R1);
    assert_eq!(after["id"], before["id"], "the same real server, not a new one");
    assert_eq!(after["failures"], 0);
    let (c0, c1) = (before["checks"].as_u64().unwrap(), after["checks"].as_u64().unwrap());
    let (s0, s1) = (before["successes"].as_u64().unwrap(), after["successes"].as_u64().unwrap());
    assert!(c1 >= c0, "{before} -> {after}");
    assert_eq!(s1 - s0, c1 - c0, "its run of successes went on (no reset): {before} -> {after}");
    let reload = &b.director()["last_reload"];
    assert_eq!(reload["ok"], true, "{reload}");
    let msg = reload["message"].as_str().unwrap();
    assert!(
        msg.contains(&format!("real servers added: {R2} ({VS})")) && msg.contains("1 real server(s) kept"),
        "{msg}"
    );
    assert!(b.log().contains("has changed on disk"), "{}", b.log());
    let cf = b.cf_path().display().to_string();
    b.until(Duration::from_secs(5), "the callback ran with the file", || {
        std::fs::read_to_string(&called).unwrap_or_default() == format!("{cf}\n")
    });

    // An invalid file: refused with its file and line, the table as it was.
    let table = reals_of(&b.lvs());
    std::fs::write(
        b.cf_path(),
        format!("{head}\treal={R1} gate 1\n\treal={R2} gate 1\n\tchecktype=sometimes\n\tscheduler=rr\n"),
    )
    .unwrap();
    b.until(Duration::from_secs(10), "the invalid file refused", || {
        b.director()["last_reload"]["ok"] == false
    });
    let msg = b.director()["last_reload"]["message"].as_str().unwrap().to_string();
    let want = format!("{}:9:", b.cf_path().display());
    assert!(msg.contains(&want) && msg.contains("checktype"), "{msg}");
    assert!(b.log().contains("new configuration refused, the running one stays"), "{}", b.log());
    // Two more check rounds: the table is the one before, the refused file not retried.
    let checks = b.real(R1)["checks"].as_u64().unwrap();
    b.until(Duration::from_secs(10), "two more checks", || b.real(R1)["checks"].as_u64() >= Some(checks + 2));
    assert_eq!(reals_of(&b.lvs()), table);

    // A valid file again, without r1: r1 leaves, r2 keeps its health.
    let r2 = b.real(R2);
    std::fs::write(b.cf_path(), format!("{head}\treal={R2} gate 1\n{tail}")).unwrap();
    b.until(Duration::from_secs(10), "r1 left", || {
        let t = b.lvs();
        weight_in(&t, R1).is_none() && weight_in(&t, R2) == Some(1)
    });
    assert_eq!(b.real(R2)["id"], r2["id"]);
    assert!(b.real(R2)["checks"].as_u64() >= r2["checks"].as_u64());
    assert!(b.log().contains(&format!("Purged real server (reload): {R1} ({VS})")), "{}", b.log());
    // The monitorfile has a line per check of each, as ldirectord writes them.
    let text = std::fs::read_to_string(&monitor).unwrap();
    let line = regex::Regex::new(
        r"^\[\w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d \d{4}\] \[\d+\] connect tcp (10\.81\.0\.[23]) 80 1 gate /  \[up\] -$",
    )
    .unwrap();
    let mut per_real = std::collections::BTreeMap::new();
    for l in text.lines() {
        let c = line.captures(l).unwrap_or_else(|| panic!("monitorfile line {l:?}\n{text}"));
        *per_real.entry(c[1].to_string()).or_insert(0u32) += 1;
    }
    assert!(per_real.get("10.81.0.2").is_some_and(|n| *n >= 3), "{per_real:?}");
    assert!(per_real.get("10.81.0.3").is_some_and(|n| *n >= 2), "{per_real:?}");
    // Every change ran the callback, the refused one too (as ldirectord's check_cfgfile).
    b.until(Duration::from_secs(5), "three callbacks", || {
        std::fs::read_to_string(&called).unwrap_or_default() == format!("{cf}\n{cf}\n{cf}\n")
    });

    // cleanstop=no, reloaded: the daemon stops and leaves the virtual service in the kernel.
    let keep = head.replace("autoreload=yes\n", "autoreload=yes\ncleanstop=no\n");
    std::fs::write(b.cf_path(), format!("{keep}\treal={R2} gate 1\n{tail}")).unwrap();
    b.until(Duration::from_secs(10), "the cleanstop=no file applied", || {
        b.director()["last_reload"]["message"].as_str().is_some_and(|m| m.contains("no change"))
            && b.log().matches("reloaded").count() >= 3
    });
    b.tb.stop(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let table = b.tb.nft_table("d", "ip", "halo_lb").unwrap_or_default();
    assert!(table.contains("10.81.0.100") && table.contains("10.81.0.3"), "{table}\n{}", b.log());
    assert!(b.log().contains("cleanstop=no: table ip halo_lb left with 1 virtual service(s)"), "{}", b.log());
}

/// (ActiveConn, InActConn) of `addr` in `halo lvs`.
fn conns_in(lvs: &str, addr: &str) -> Option<(u32, u32)> {
    lvs.lines().find_map(|l| {
        let cols: Vec<&str> = l.split_whitespace().collect();
        match cols.as_slice() {
            ["->", a, _fwd, _w, act, inact] if *a == addr => Some((act.parse().ok()?, inact.parse().ok()?)),
            _ => None,
        }
    })
}

#[test]
fn director_nat_connection_counts_from_conntrack() {
    let Some(mut b) = Bed::nat("dcon") else { return };
    let cf = format!(
        "checktimeout=1\ncheckinterval=1\n\nvirtual=10.81.1.100:80\n\treal={R1} masq 1\n\treal={R2} masq 1\n\
         \tchecktype=connect\n\tscheduler=rr\n"
    );
    let dir = b.config(&cf);
    b.start_web("r1");
    b.start_web("r2");
    b.tb.start_halo("d", Path::new(HALO), &dir).unwrap();
    b.until(Duration::from_secs(20), "both real servers in the table", || {
        let t = b.lvs();
        weight_in(&t, R1) == Some(1) && weight_in(&t, R2) == Some(1)
    });
    // Checks come from the director itself, not through the VIP: nothing counted yet.
    assert_eq!(conns_in(&b.lvs(), R1), Some((0, 0)), "{}", b.lvs());
    // The kernel's table, which the clients meet, read from the kernel itself: both real
    // servers must be in its rotation first.
    b.until(Duration::from_secs(10), "both real servers in the kernel's table", || {
        let t = b.tb.nft_table("d", "ip", "halo_lb").unwrap_or_default();
        t.contains(&format!("dnat to {R1}")) && t.contains(&format!("dnat to {R2}")) && t.contains("numgen")
    });

    // Three clients hold a connection each through the VIP (rr: two on one real server).
    let hold = "import socket, time\n\
                s = [socket.create_connection(('10.81.1.100', 80), timeout=5) for _ in range(3)]\n\
                print('connected', flush=True)\n\
                time.sleep(120)\n";
    let out = b.tb.dir.join("c.hold");
    let pid = b.tb.spawn("c", Path::new("/usr/bin/python3"), &["-c", hold], &out).unwrap();
    b.until(Duration::from_secs(10), "three established connections counted", || {
        let t = b.lvs();
        let (a1, _) = conns_in(&t, R1).unwrap_or_default();
        let (a2, _) = conns_in(&t, R2).unwrap_or_default();
        a1 + a2 == 3 && a1 >= 1 && a2 >= 1
    });
    let t = b.lvs();
    for (r, addr) in [(b.real(R1), R1), (b.real(R2), R2)] {
        assert_eq!(r["active_conns"].as_u64(), conns_in(&t, addr).map(|c| u64::from(c.0)), "{r}\n{t}");
    }
    assert_eq!(b.director()["conntrack_error"], Value::Null);
    // `halo lvs -c`: the connections as `ipvsadm -L -c` lists them.
    let out = Command::new(HALO).arg("--socket").arg(b.socket()).args(["lvs", "-c"]).output().unwrap();
    let list = String::from_utf8_lossy(&out.stdout).into_owned();
    let rows: Vec<Vec<&str>> = list.lines().skip(2).map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(rows.len(), 3, "{list}");
    for r in &rows {
        assert_eq!((r[0], r[2], r[4]), ("TCP", "ESTABLISHED", "10.81.1.100:80"), "{list}");
        assert!(r[3].starts_with("10.81.1.9:") && (r[5] == R1 || r[5] == R2), "{list}");
    }

    // The client goes: its connections close and count as inactive (TIME_WAIT) until they expire.
    b.tb.stop(pid, nix::sys::signal::Signal::SIGKILL).unwrap();
    b.until(Duration::from_secs(10), "no active connection, the closed ones inactive", || {
        let t = b.lvs();
        let (a1, i1) = conns_in(&t, R1).unwrap_or_default();
        let (a2, i2) = conns_in(&t, R2).unwrap_or_default();
        a1 + a2 == 0 && i1 + i2 == 3
    });
}
