//! ldirectord's global directives about the daemon itself, acted on by halo's built-in
//! director (spec §7.1, §7.3), end to end in network namespaces: a director node `d` runs
//! `halo run` with the group `d ldirectord::ldirectord.cf`; `r1` and `r2` are real servers
//! (a web server each, checked with `checktype=connect`).
//!
//! * `execute=web.cf`: the director also runs the virtual services of `conf/web.cf` (found
//!   where ldirectord looks second), with that file's own globals (`quiescent=yes`, its own
//!   `logfile`) and table;
//! * `logfile`: each file gets ldirectord's lines, `[<localtime>|<CFGNAME>|<pid>] <message>`,
//!   for real servers added, quiesced and purged at stop;
//! * `fork=yes`: each virtual service is checked at its own `checkinterval` (compared as a
//!   ratio of check counts, never as a time);
//! * `halo reload`: an error in the executed file refuses the whole reload (its file:line);
//!   a change to the executed file alone reconfigures its director; a file that no longer
//!   executes it stops its director.
use halo::testbed::{wait_for, Testbed};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const HALO: &str = env!("CARGO_BIN_EXE_halo");
const AUTHKEYS: &str = "auth 1\n1 sha1 director-directives\n";
const R1: &str = "10.82.0.2:80";
const R2: &str = "10.82.0.3:80";

struct Bed {
    tb: Testbed,
    web: Vec<(String, u32)>,
}

impl Bed {
    fn new(tag: &str) -> Option<Bed> {
        let mut tb = Testbed::for_test(tag)?;
        tb.add_host("d", "10.82.0.1/16").unwrap();
        tb.add_host("r1", "10.82.0.2/16").unwrap();
        tb.add_host("r2", "10.82.0.3/16").unwrap();
        Some(Bed { tb, web: Vec::new() })
    }

    fn socket(&self) -> PathBuf {
        self.tb.dir.join("d.sock")
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

    /// The daemon's `lvs` answer: every director.
    fn directors(&self) -> Vec<Value> {
        let v = halo::control::request(&self.socket(), "lvs").unwrap_or(Value::Null);
        v["directors"].as_array().cloned().unwrap_or_default()
    }

    /// The real server `addr` of service `id` (`tcp:VIP:PORT`), in whichever director runs it.
    fn real(&self, id: &str, addr: &str) -> Value {
        for d in self.directors() {
            for s in d["services"].as_array().cloned().unwrap_or_default() {
                if s["id"] == id {
                    for r in s["reals"].as_array().cloned().unwrap_or_default() {
                        if r["addr"] == addr {
                            return r;
                        }
                    }
                }
            }
        }
        Value::Null
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.tb.dir.join("d.log")).unwrap_or_default()
            + &std::fs::read_to_string(self.tb.dir.join("d.out")).unwrap_or_default()
    }

    fn until(&self, within: Duration, what: &str, mut f: impl FnMut() -> bool) {
        if wait_for(within, || f().then_some(())).is_none() {
            panic!("{what} (waited {within:?})\n--- lvs\n{:#?}\n--- log\n{}", self.directors(), self.log());
        }
    }
}

impl Drop for Bed {
    fn drop(&mut self) {
        for host in ["d", "r1", "r2"] {
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

/// The lines of ldirectord's log `file` that are `[<localtime>|cfgname|pid] <message>`,
/// each as `(pid, message)`; panics on a line of another form.
fn ld_lines(file: &Path, cfgname: &str) -> Vec<(u32, String)> {
    let text = std::fs::read_to_string(file).unwrap_or_default();
    text.lines()
        .map(|l| {
            let rest = l.strip_prefix('[').unwrap_or_else(|| panic!("not ldirectord's: {l}"));
            let (stamp, rest) = rest.split_once('|').unwrap_or_else(|| panic!("not ldirectord's: {l}"));
            // Perl's scalar localtime: `Tue Dec  1 21:17:12 2026`.
            assert_eq!(stamp.len(), 24, "{l}");
            assert!(stamp[20..].parse::<u32>().is_ok() && stamp.as_bytes()[13] == b':', "{l}");
            let rest = rest
                .strip_prefix(cfgname)
                .and_then(|r| r.strip_prefix('|'))
                .unwrap_or_else(|| panic!("CFGNAME {cfgname}: {l}"));
            let (pid, msg) = rest.split_once("] ").unwrap_or_else(|| panic!("not ldirectord's: {l}"));
            (pid.parse().unwrap_or_else(|_| panic!("pid: {l}")), msg.to_string())
        })
        .collect()
}

fn has(lines: &[(u32, String)], msg: &str) -> bool {
    lines.iter().any(|(_, m)| m.starts_with(msg))
}

#[test]
fn director_execute_logfile_and_fork() {
    let Some(mut b) = Bed::new("ddir") else { return };
    let main_log = b.tb.dir.join("ldirectord-main.log");
    let web_log = b.tb.dir.join("ldirectord-web.log");
    // The main file: fork=yes, two services on r1, one checked every second, one every 4.
    let main = format!(
        "checktimeout=1\ncheckinterval=4\nfork=yes\nlogfile=\"{}\"\nexecute=web.cf\n\n\
         virtual=10.82.0.100:80\n\treal={R1} gate 1\n\tchecktype=connect\n\tcheckinterval=1\n\n\
         virtual=10.82.0.101:80\n\treal={R1} gate 1\n\tchecktype=connect\n",
        main_log.display()
    );
    // The executed file, with its own globals: quiescent, its own log file.
    let web = format!(
        "checktimeout=1\ncheckinterval=1\nquiescent=yes\nlogfile=\"{}\"\n\n\
         virtual=10.82.0.110:80\n\treal={R2} gate 2\n\tchecktype=connect\n",
        web_log.display()
    );
    let cf = format!(
        "keepalive 100ms\nwarntime 500ms\ndeadtime 1\ninitdead 2\nbcast eth0\nauto_failback off\n\
         node d\nlogfile {}\nrealtime off\n",
        b.tb.dir.join("d.log").display()
    );
    let dir = b.tb.write_config("d", &cf, AUTHKEYS).unwrap();
    std::fs::write(dir.join("haresources"), "d ldirectord::ldirectord.cf\n").unwrap();
    std::fs::write(dir.join("ldirectord.cf"), &main).unwrap();
    std::fs::create_dir_all(dir.join("conf")).unwrap();
    std::fs::write(dir.join("conf").join("web.cf"), &web).unwrap();
    b.start_web("r1");
    b.start_web("r2");
    let (pid, _) = b.tb.start_halo("d", Path::new(HALO), &dir).unwrap();

    // execute: both files' services run, each director with its own table.
    b.until(Duration::from_secs(25), "r1 and r2 in the table", || {
        b.real("tcp:10.82.0.100:80", R1)["in_table"] == 1 && b.real("tcp:10.82.0.110:80", R2)["in_table"] == 2
    });
    let dirs = b.directors();
    let tables: Vec<(String, String)> = dirs
        .iter()
        .map(|d| {
            let config = d["config"].as_str().unwrap_or("").to_string();
            let name = Path::new(&config).file_name().unwrap().to_string_lossy().into_owned();
            (name, d["table"].as_str().unwrap_or("").to_string())
        })
        .collect();
    assert!(tables.contains(&("ldirectord.cf".into(), "halo_lb".into())), "{tables:?}");
    assert!(tables.contains(&("web.cf".into(), "halo_lb_web".into())), "{tables:?}");
    let nft = b.tb.exec("d", &["nft", "list", "tables"]).unwrap();
    let nft = String::from_utf8_lossy(&nft.stdout).into_owned();
    assert!(nft.contains("table ip halo_lb\n") && nft.contains("table ip halo_lb_web"), "{nft}");

    // logfile: ldirectord's lines, each file with its CFGNAME, halo's pid.
    b.until(Duration::from_secs(5), "ldirectord's lines in both logfiles", || {
        has(
            &ld_lines(&main_log, "ldirectord.cf"),
            &format!("Added real server: {R1} (10.82.0.100:80) (Weight set to 1)"),
        ) && has(
            &ld_lines(&web_log, "web.cf"),
            &format!("Added real server: {R2} (10.82.0.110:80) (Weight set to 2)"),
        )
    });
    let main_lines = ld_lines(&main_log, "ldirectord.cf");
    assert!(main_lines.iter().all(|(p, _)| *p == pid), "halo's pid {pid}: {main_lines:?}");
    assert!(has(&main_lines, "Starting halo's Linux Director"), "{main_lines:?}");
    assert!(!has(&main_lines, &format!("Added real server: {R2}")), "r2 is web.cf's: {main_lines:?}");

    // The executed file's own quiescent=yes: r2 down is weight 0, logged as ldirectord does.
    b.stop_web("r2");
    b.until(Duration::from_secs(10), "r2 quiesced", || b.real("tcp:10.82.0.110:80", R2)["in_table"] == 0);
    b.until(Duration::from_secs(5), "the quiescent line in web.cf's log", || {
        has(
            &ld_lines(&web_log, "web.cf"),
            &format!("Quiescent real server: {R2} (10.82.0.110:80) (Weight set to 0)"),
        )
    });

    // fork=yes: 10.82.0.100 (checkinterval=1) is checked about 4 times as often as
    // 10.82.0.101 (the global 4). Compared as a ratio of the checks made over the same span.
    let checks = |id: &str| b.real(id, R1)["checks"].as_u64().unwrap_or(0);
    b.until(Duration::from_secs(20), "two checks of the slower service", || {
        checks("tcp:10.82.0.101:80") >= 2
    });
    let (f0, s0) = (checks("tcp:10.82.0.100:80"), checks("tcp:10.82.0.101:80"));
    b.until(Duration::from_secs(30), "two more checks of the slower service", || {
        checks("tcp:10.82.0.101:80") >= s0 + 2
    });
    let (f1, s1) = (checks("tcp:10.82.0.100:80"), checks("tcp:10.82.0.101:80"));
    assert!(f1 - f0 >= 2 * (s1 - s0), "checkinterval 1 vs 4: {f0}->{f1} checks vs {s0}->{s1}");
    // Without fork the parser's warning, with file:line, is in halo's log: not here.
    assert!(!b.log().contains("is ignored when fork=no"), "fork=yes: no warning");

    // halo reload with an error in the executed file alone: the whole reload is refused, with
    // the executed file's file:line, and both directors run on as they were.
    let web_cf = dir.join("conf").join("web.cf");
    std::fs::write(&web_cf, format!("{web}fork=maybe\n")).unwrap();
    let reload = || Command::new(HALO).arg("--socket").arg(b.socket()).arg("reload").output().unwrap();
    let out = reload();
    let err = String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "refused: {err}");
    assert!(err.contains(&format!("{}:9: fork: expected yes or no", web_cf.display())), "{err}");
    assert_eq!(b.directors().len(), 2, "both run on");
    assert_eq!(b.real("tcp:10.82.0.100:80", R1)["in_table"], 1);
    // A valid change to the executed file alone is applied to its director.
    std::fs::write(&web_cf, format!("{web}# reload 2\n")).unwrap();
    let out = reload();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "halo reload: {}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("web.cf: changed (director reconfigured)"), "{text}");
    let reload = || {
        let out = reload();
        assert!(out.status.success(), "halo reload: {}", String::from_utf8_lossy(&out.stderr));
    };

    // halo reload without the execute line: the executed director stops (its purge in its
    // own log), the main one runs on.
    std::fs::write(&web_cf, &web).unwrap();
    std::fs::write(dir.join("ldirectord.cf"), main.replace("execute=web.cf\n", "")).unwrap();
    reload();
    b.until(Duration::from_secs(10), "web.cf's director stopped", || {
        let nft = b.tb.exec("d", &["nft", "list", "tables"]).unwrap();
        let nft = String::from_utf8_lossy(&nft.stdout).into_owned();
        b.directors().len() == 1 && nft.contains("table ip halo_lb\n") && !nft.contains("halo_lb_web")
    });
    assert!(has(&ld_lines(&web_log, "web.cf"), &format!("Purged real server (stop): {R2} (10.82.0.110:80)")));
    assert_eq!(b.real("tcp:10.82.0.100:80", R1)["in_table"], 1);

    // Stop (SIGTERM): the main director's purge in its log.
    b.tb.stop(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    b.until(Duration::from_secs(20), "the daemon stopped the director", || {
        let nft = b.tb.exec("d", &["nft", "list", "tables"]).unwrap();
        let nft = String::from_utf8_lossy(&nft.stdout).into_owned();
        !nft.contains("halo_lb")
    });
    b.until(Duration::from_secs(5), "purge lines", || {
        has(
            &ld_lines(&main_log, "ldirectord.cf"),
            &format!("Purged real server (stop): {R1} (10.82.0.100:80)"),
        )
    });
}
