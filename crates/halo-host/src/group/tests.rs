//! Group executor tests. Script-only groups run anywhere; VIP tests need root and run in a
//! private network namespace (veth hv0 192.0.2.1/24 — hv1); the real Debian agents
//! (resource-agents' `Dummy`, heartbeat's `IPaddr2` wrapper) are used where installed.

use std::os::fd::{BorrowedFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use halo_config::{ResourceGroup, ResourceSpec};
use nix::poll::{PollFd, PollFlags, PollTimeout};

use super::*;
use crate::testutil::{capture, dual_stack_veth, skip, sniffer, Netns, TempDir};

type Logged = Vec<(Level, String)>;

fn group(words: &[&str]) -> ResourceGroup {
    ResourceGroup {
        node: "nodea".into(),
        line: 1,
        resources: words.iter().map(|w| ResourceSpec::parse(w)).collect(),
    }
}

/// A scratch config dir with `resource.d/`, an order file and a state dir.
struct Scratch {
    dir: TempDir,
}

impl Scratch {
    fn new(tag: &str) -> Scratch {
        let dir = TempDir::new(tag);
        for d in ["resource.d", "init.d", "ocf", "state", "run"] {
            std::fs::create_dir_all(dir.0.join(d)).expect("mkdir");
        }
        Scratch { dir }
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.0.join(p)
    }

    fn env(&self) -> GroupEnv {
        GroupEnv {
            config_dir: self.dir.0.clone(),
            init_dir: self.path("init.d"),
            ocf_root: self.path("ocf"),
            state_dir: self.path("state"),
            timeout: Duration::from_secs(20),
            env: vec![
                ("ORDER".into(), self.path("order").display().to_string()),
                ("STATE".into(), self.path("run").display().to_string()),
            ],
            announce_count: 3,
            announce_interval: Duration::from_millis(40),
            reannounce_after: Some(Duration::from_millis(300)),
            refresh_interval: Some(Duration::from_secs(60)),
            stop_retries: 2,
            stop_retry_interval: Duration::from_millis(10),
        }
    }

    /// A Heartbeat-class script that records start/stop in $ORDER and keeps its state in
    /// $STATE/NAME; `start_body` replaces the normal start when given.
    fn script(&self, name: &str, start_body: Option<&str>) {
        let start = start_body.map(str::to_string).unwrap_or_else(|| format!("touch \"$STATE/{name}\""));
        let text = format!(
            "#!/bin/sh\n\
             case \"$1\" in\n\
             start) echo \"{name} start\" >> \"$ORDER\"; {start};;\n\
             stop) echo \"{name} stop\" >> \"$ORDER\"; rm -f \"$STATE/{name}\";;\n\
             status) if [ -f \"$STATE/{name}\" ]; then echo running; else echo \"{name} is not running\"; fi;;\n\
             esac\n"
        );
        let p = self.path("resource.d").join(name);
        std::fs::write(&p, text).expect("write script");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }

    fn order(&self) -> Vec<String> {
        std::fs::read_to_string(self.path("order")).unwrap_or_default().lines().map(str::to_string).collect()
    }
}

fn start(ex: &GroupExecutor, g: &ResourceGroup) -> (Result<(), GroupError>, Logged) {
    let mut logged = Vec::new();
    let r = ex.start_group(g, &mut |l, m| logged.push((l, m)));
    (r, logged)
}

fn stop(ex: &GroupExecutor, g: &ResourceGroup) -> (Result<(), GroupError>, Logged) {
    let mut logged = Vec::new();
    let r = ex.stop_group(g, &mut |l, m| logged.push((l, m)));
    (r, logged)
}

fn probe(ex: &GroupExecutor, g: &ResourceGroup) -> Vec<ProbeResult> {
    ex.probe_group(g, &mut |_, _| {})
}

fn monitor(ex: &GroupExecutor, g: &ResourceGroup) -> Vec<(usize, String)> {
    ex.monitor_group(g, &mut |_, _| {})
}

// ---- anywhere ----

#[test]
fn group_scripts_start_in_order_and_stop_in_reverse() {
    let s = Scratch::new("group-order");
    for n in ["a", "b", "c"] {
        s.script(n, None);
    }
    let ex = GroupExecutor::new(s.env());
    let g = group(&["a", "b", "c"]);
    assert_eq!(probe(&ex, &g), vec![ProbeResult::Stopped; 3]);
    let (r, logged) = start(&ex, &g);
    r.expect("start");
    assert_eq!(s.order(), ["a start", "b start", "c start"]);
    assert!(logged
        .iter()
        .any(|(l, m)| *l == Level::Info && m.starts_with("Acquiring resource group: nodea a b c")));
    assert_eq!(probe(&ex, &g), vec![ProbeResult::Running; 3]);
    assert!(monitor(&ex, &g).is_empty());

    // Starting again: status says running, nothing is started twice.
    start(&ex, &g).0.expect("start again");
    assert_eq!(s.order().len(), 3);

    std::fs::remove_file(s.path("run/b")).expect("b dies");
    assert_eq!(monitor(&ex, &g), vec![(1, "not running".to_string())]);

    stop(&ex, &g).0.expect("stop");
    assert_eq!(s.order()[3..], ["c stop", "b stop", "a stop"]);
    assert_eq!(probe(&ex, &g), vec![ProbeResult::Stopped; 3]);
}

#[test]
fn group_failing_middle_resource_undoes_the_start() {
    let s = Scratch::new("group-fail");
    s.script("a", None);
    s.script("b", Some("echo 'b: disk on fire' >&2; exit 1"));
    s.script("c", None);
    s.script("pre", None);
    std::fs::write(s.path("run/pre"), "").expect("pre already runs");
    let ex = GroupExecutor::new(s.env());
    let g = group(&["pre", "a", "b", "c"]);
    let (r, logged) = start(&ex, &g);
    let e = r.expect_err("b fails");
    assert_eq!(
        e,
        GroupError::Start {
            group: "pre".into(),
            resource: "b".into(),
            reason: "exit 1".into(),
            undo: vec![]
        }
    );
    assert_eq!(e.to_string(), "resource group pre: cannot start b: exit 1");
    // a was started by this call and is stopped again; pre ran before and is left alone;
    // c is never started.
    assert_eq!(s.order(), ["a start", "b start", "a stop"]);
    assert!(s.path("run/pre").exists());
    assert!(logged.iter().any(|(l, m)| *l == Level::Crit && m == "Giving up resources due to failure of b"));
    assert!(logged.iter().any(|(_, m)| m.contains("b: disk on fire")), "agent output logged: {logged:?}");

    // A missing script is an error naming it.
    let (r, _) = start(&ex, &group(&["a", "nosuch"]));
    let e = r.expect_err("missing");
    assert!(
        matches!(&e, GroupError::Start { resource, reason, .. } if resource == "nosuch" && reason.starts_with("Cannot locate resource script nosuch")),
        "{e}"
    );
}

#[test]
fn group_hung_agent_is_killed_at_the_timeout() {
    let s = Scratch::new("group-hung");
    s.script("a", None);
    s.script("hang", Some("sleep 600"));
    let ex = GroupExecutor::new(GroupEnv { timeout: Duration::from_millis(500), ..s.env() });
    let (r, _) = start(&ex, &group(&["a", "hang"]));
    let e = r.expect_err("hang times out");
    let GroupError::Start { resource, reason, .. } = &e else { panic!("{e}") };
    assert_eq!(resource, "hang");
    assert!(reason.starts_with("timed out"), "{reason}");
    assert_eq!(s.order(), ["a start", "hang start", "a stop"]);
    // The sleep is gone with its agent.
    let out = Command::new("pgrep").args(["-f", "sleep 600"]).output().expect("pgrep");
    let ours: Vec<_> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|pid| std::fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|c| c == Path::new("/")))
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|e| String::from_utf8_lossy(&e).contains(&*s.path("order").to_string_lossy()))
        })
        .map(str::to_string)
        .collect();
    assert!(ours.is_empty(), "left behind: {ours:?}");
}

#[test]
fn group_stop_failures_retry_then_ask_status() {
    let s = Scratch::new("group-stopfail");
    // Stop always fails; status follows the state file.
    let bad = |name: &str, keep_running: bool| {
        let rm = if keep_running { String::new() } else { format!("rm -f \"$STATE/{name}\"; ") };
        let text = format!(
            "#!/bin/sh\ncase \"$1\" in\nstart) touch \"$STATE/{name}\";;\n\
             stop) echo \"{name} stop\" >> \"$ORDER\"; {rm}exit 1;;\n\
             status) [ -f \"$STATE/{name}\" ] && echo OK;;\nesac\n"
        );
        let p = s.path("resource.d").join(name);
        std::fs::write(&p, text).expect("write");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    };
    bad("sloppy", false);
    bad("stuck", true);
    s.script("a", None);
    let ex = GroupExecutor::new(s.env());
    let g = group(&["a", "stuck", "sloppy"]);
    start(&ex, &g).0.expect("start");
    let (r, logged) = stop(&ex, &g);
    let e = r.expect_err("stuck stays");
    let GroupError::Stop { group, failures } = &e else { panic!("{e}") };
    assert_eq!(group, "a");
    assert_eq!(failures.len(), 1, "{e}");
    assert_eq!(failures[0].resource, "stuck");
    assert_eq!(failures[0].reason, "exit 1; status says it is still running");
    // 1 try + 2 retries each; a is still stopped after stuck's failure.
    let o = s.order();
    assert_eq!(o.iter().filter(|l| *l == "sloppy stop").count(), 3, "{o:?}");
    assert_eq!(o.iter().filter(|l| *l == "stuck stop").count(), 3, "{o:?}");
    assert_eq!(o.last().map(String::as_str), Some("a stop"));
    assert!(logged.iter().any(|(l, m)| *l == Level::Warn && m.contains("probably not LSB-compliant")));
}

#[test]
fn group_word_errors() {
    let s = Scratch::new("group-words");
    let ex = GroupExecutor::new(s.env());
    let why = |w: &str| match &probe(&ex, &group(&[w]))[0] {
        ProbeResult::Failed(why) => why.clone(),
        other => panic!("{w}: {other:?}"),
    };
    assert!(why("IPaddr2").contains("IPaddr2 takes one argument"));
    assert!(why("IPaddr2::10.0.0.1::x").contains("takes one argument"));
    assert!(why("IPaddr2::2001:db8::5::x").contains("takes one argument"));
    assert!(why("IPaddr::nodea").contains("an IPv4 or IPv6 address first"));
    assert!(why("heartbeat:IPaddr2::10.0.0.1").starts_with("Cannot locate resource script IPaddr2"));
    assert!(why("heartbeat:../x").starts_with("invalid resource script name"));
    let dummy = s.path("ocf/resource.d/heartbeat/Dummy");
    std::fs::create_dir_all(dummy.parent().expect("parent")).expect("mkdir");
    std::fs::write(&dummy, "#!/bin/sh\nexit 7\n").expect("write");
    std::fs::set_permissions(&dummy, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    assert!(why("ocf:heartbeat:Dummy::positional").contains("takes name=value parameters"));
    assert!(why("OCF::Dummy::nope").starts_with("cannot read the instance file"));
    assert_eq!(probe(&ex, &group(&["ocf:heartbeat:Dummy::a=b"])), vec![ProbeResult::Stopped]);
}

#[test]
fn ocf_conf_and_loopback_save_files() {
    let p = Path::new("/etc/ha.d/conf/OCF/Dummy/x");
    let text = "# comment\n\nOCF_RESKEY_state=/tmp/s\nexport fake=\"a b\"\nplain='q' \nv=1 # note\n";
    assert_eq!(
        parse_ocf_conf(text, p).expect("parse"),
        vec![
            ("state".to_string(), "/tmp/s".to_string()),
            ("fake".into(), "a b".into()),
            ("plain".into(), "q".into()),
            ("v".into(), "1".into())
        ]
    );
    assert_eq!(
        parse_ocf_conf("ok=1\nno equals\n", p).expect_err("bad"),
        "/etc/ha.d/conf/OCF/Dummy/x:2: expected VAR=value, not \"no equals\""
    );
    assert!(parse_ocf_conf("1x=2\n", p).is_err());

    let save = LoopbackSave {
        addr: "192.0.2.40".parse().expect("ip"),
        prefix: 32,
        iface: "lo".into(),
        label: Some("lo:vip".into()),
        scope: 254,
    };
    assert_eq!(parse_save(&format_save(&save)), Some(save.clone()));
    let v6 =
        LoopbackSave { addr: "2001:db8::1".parse().expect("ip"), prefix: 128, label: None, scope: 0, ..save };
    assert_eq!(parse_save(&format_save(&v6)), Some(v6));
    for garbage in ["", "addr=x\n", "addr=192.0.2.1\nprefix=999\niface=lo\nlabel=\nscope=0\n", "\u{0}"] {
        assert_eq!(parse_save(garbage), None, "{garbage:?}");
    }
}

/// resource-agents' real `Dummy`, as `ocf:heartbeat:Dummy::state=...` and as
/// `OCF::Dummy::inst` with the parameters in `conf/OCF/Dummy/inst`.
#[test]
fn group_real_ocf_dummy() {
    let real = Path::new("/usr/lib/ocf/resource.d/heartbeat/Dummy");
    if !real.exists() {
        skip("group_real_ocf_dummy", "resource-agents is not installed");
        return;
    }
    let s = Scratch::new("group-dummy");
    s.script("a", None);
    let conf = s.path("conf/OCF/Dummy");
    std::fs::create_dir_all(&conf).expect("mkdir");
    let st2 = s.path("run/dummy2.state");
    std::fs::write(conf.join("inst"), format!("# written by the test\nOCF_RESKEY_state={}\n", st2.display()))
        .expect("conf");
    let st1 = s.path("run/dummy1.state");
    let ex = GroupExecutor::new(GroupEnv { ocf_root: PathBuf::from("/usr/lib/ocf"), ..s.env() });
    let w1 = format!("ocf:heartbeat:Dummy::state={}", st1.display());
    let g = group(&["a", &w1, "OCF::Dummy::inst"]);
    assert_eq!(probe(&ex, &g), vec![ProbeResult::Stopped; 3]);
    let (r, logged) = start(&ex, &g);
    r.unwrap_or_else(|e| panic!("{e}: {logged:?}"));
    assert!(st1.exists() && st2.exists(), "both instances started with their own state file");
    assert_eq!(probe(&ex, &g), vec![ProbeResult::Running; 3]);
    assert!(monitor(&ex, &g).is_empty());
    std::fs::remove_file(&st2).expect("instance dies");
    assert_eq!(monitor(&ex, &g), vec![(2, "not running".to_string())]);
    stop(&ex, &g).0.expect("stop");
    assert!(!st1.exists());
    assert_eq!(probe(&ex, &g), vec![ProbeResult::Stopped; 3]);
}

// ---- root, in a network namespace ----

fn setup(test: &str) -> Option<Netns> {
    dual_stack_veth(test)
}

/// The executor built inside the namespace (its announcer thread and watch live there).
fn executor(ns: &Netns, env: GroupEnv) -> Arc<GroupExecutor> {
    Arc::new(ns.run(move || GroupExecutor::new(env)))
}

fn in_ns<R: Send + 'static>(
    ns: &Netns,
    ex: &Arc<GroupExecutor>,
    f: impl FnOnce(&GroupExecutor) -> R + Send + 'static,
) -> R {
    let ex = Arc::clone(ex);
    ns.run(move || f(&ex))
}

fn ns_start(ns: &Netns, ex: &Arc<GroupExecutor>, g: &ResourceGroup) -> (Result<(), GroupError>, Logged) {
    let g = g.clone();
    in_ns(ns, ex, move |ex| start(ex, &g))
}

fn ns_stop(ns: &Netns, ex: &Arc<GroupExecutor>, g: &ResourceGroup) -> (Result<(), GroupError>, Logged) {
    let g = g.clone();
    in_ns(ns, ex, move |ex| stop(ex, &g))
}

fn ns_probe(ns: &Netns, ex: &Arc<GroupExecutor>, g: &ResourceGroup) -> Vec<ProbeResult> {
    let g = g.clone();
    in_ns(ns, ex, move |ex| probe(ex, &g))
}

/// Where the address is: (iface, prefix, label) for each place.
fn where_is(ns: &Netns, a: &str) -> Vec<(String, u8, Option<String>)> {
    let a: IpAddr = a.parse().expect("ip");
    ns.run(move || vip::present_all(a).expect("present_all"))
        .into_iter()
        .map(|i| (i.iface, i.prefix, i.label))
        .collect()
}

/// ARP frames about `vip` received on `fd`: (operation, sender MAC), until `want` or 3 s.
fn arp_frames(fd: &OwnedFd, vip: [u8; 4], want: usize) -> Vec<(u16, [u8; 6])> {
    let about_vip =
        |f: &[u8]| f.len() >= 42 && f[12..14] == [0x08, 0x06] && f[28..32] == vip && f[38..42] == vip;
    capture(fd, want, about_vip)
        .into_iter()
        .map(|f| {
            let mut mac = [0u8; 6];
            mac.copy_from_slice(&f[22..28]);
            (u16::from_be_bytes([f[20], f[21]]), mac)
        })
        .collect()
}

fn mac_of(ns: &Netns, iface: &'static str) -> [u8; 6] {
    let out = ns.run(move || Command::new("ip").args(["link", "show", iface]).output().expect("ip link"));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let hex = text.split_whitespace().skip_while(|w| *w != "link/ether").nth(1).expect("link/ether");
    let v: Vec<u8> = hex.split(':').map(|b| u8::from_str_radix(b, 16).expect("hex")).collect();
    v.try_into().expect("6 bytes")
}

/// Waits (up to 5 s) until `pred` holds of the held addresses; returns the last view.
fn held_until(ex: &GroupExecutor, pred: impl Fn(&[HeldAddress]) -> bool) -> Vec<HeldAddress> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let h = ex.held();
        if pred(&h) || Instant::now() > deadline {
            return h;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn group_vip_and_script_in_order_with_arp_on_the_wire() {
    let Some(ns) = setup("group_vip_and_script_in_order_with_arp_on_the_wire") else { return };
    let s = Scratch::new("group-vip");
    // The script sees the VIP already up when it starts, and still up when it stops.
    let svc = "#!/bin/sh\ncase \"$1\" in\n\
               start) echo \"svc start vip=$(ip -o addr show to 192.0.2.20 | wc -l)\" >> \"$ORDER\"; touch \"$STATE/svc\";;\n\
               stop) echo \"svc stop vip=$(ip -o addr show to 192.0.2.20 | wc -l)\" >> \"$ORDER\"; rm -f \"$STATE/svc\";;\n\
               status) [ -f \"$STATE/svc\" ] && echo running;;\nesac\n";
    let p = s.path("resource.d/svc");
    std::fs::write(&p, svc).expect("write");
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let mac = mac_of(&ns, "hv0");
    let rx = sniffer(&ns, "hv1");
    let ex = executor(&ns, s.env());
    assert!(ex.watch_fd().is_some(), "{:?}", ex.watch_error());
    let g = group(&["IPaddr2::192.0.2.20/24", "svc"]);
    let (r, logged) = ns_start(&ns, &ex, &g);
    r.unwrap_or_else(|e| panic!("{e}: {logged:?}"));
    assert_eq!(where_is(&ns, "192.0.2.20"), vec![("hv0".to_string(), 24, Some("hv0".to_string()))]);
    assert_eq!(s.order(), ["svc start vip=1"]);

    // Request, reply, request, ... all from hv0's MAC; the whole burst, then the second one.
    let frames = arp_frames(&rx, [192, 0, 2, 20], 6);
    assert_eq!(frames.len(), 6, "{frames:?}");
    for (i, (op, from)) in frames.iter().enumerate() {
        assert_eq!((*op, *from), (if i % 2 == 0 { 1 } else { 2 }, mac), "frame {i}");
    }
    let h = held_until(&ex, |h| h.first().is_some_and(|h| h.bursts >= 2 && h.frames_sent >= 12));
    assert_eq!(h.len(), 1);
    assert_eq!(
        (h[0].group.as_str(), h[0].resource.as_str(), h[0].iface.as_str(), h[0].from_loopback),
        ("IPaddr2::192.0.2.20/24", "IPaddr2::192.0.2.20/24", "hv0", false)
    );
    assert!(h[0].bursts >= 2 && h[0].frames_sent >= 12 && h[0].frames_failed == 0, "{h:?}");
    assert_eq!(arp_frames(&rx, [192, 0, 2, 20], 6).len(), 6, "the second burst is on the wire too");

    let (r, logged) = ns_stop(&ns, &ex, &g);
    r.unwrap_or_else(|e| panic!("{e}: {logged:?}"));
    assert_eq!(s.order(), ["svc start vip=1", "svc stop vip=1"]);
    assert!(where_is(&ns, "192.0.2.20").is_empty());
    assert!(ex.held().is_empty(), "announcements cancelled");

    // IPaddr: first free alias label.
    ns.ip("addr add 192.0.2.21/24 dev hv0 label hv0:0").expect("hv0:0 taken");
    let g1 = group(&["192.0.2.22"]);
    ns_start(&ns, &ex, &g1).0.expect("start IPaddr");
    assert_eq!(where_is(&ns, "192.0.2.22"), vec![("hv0".to_string(), 24, Some("hv0:1".to_string()))]);
    ns_stop(&ns, &ex, &g1).0.expect("stop IPaddr");
    assert!(where_is(&ns, "192.0.2.22").is_empty());
}

#[test]
fn group_failing_resource_after_a_vip_removes_the_vip() {
    let Some(ns) = setup("group_failing_resource_after_a_vip_removes_the_vip") else { return };
    let s = Scratch::new("group-vip-fail");
    s.script("bad", Some("exit 1"));
    let ex = executor(&ns, s.env());
    let g = group(&["IPaddr2::192.0.2.25", "bad"]);
    let (r, _) = ns_start(&ns, &ex, &g);
    let e = r.expect_err("bad fails");
    assert_eq!(e.group(), "IPaddr2::192.0.2.25");
    assert!(matches!(&e, GroupError::Start { resource, .. } if resource == "bad"), "{e}");
    assert!(where_is(&ns, "192.0.2.25").is_empty(), "the VIP this call added is gone");
    assert!(ex.held().is_empty());
}

#[test]
fn group_lvs_dr_vip_moves_from_lo_and_back() {
    let Some(ns) = setup("group_lvs_dr_vip_moves_from_lo_and_back") else { return };
    let s = Scratch::new("group-lvs");
    ns.ip("addr add 192.0.2.40/32 dev lo").expect("vip on lo");
    let ex = executor(&ns, s.env());
    let g = group(&["IPaddr2::192.0.2.40"]);
    assert_eq!(ns_probe(&ns, &ex, &g), vec![ProbeResult::Stopped], "on lo only: not running");
    ns_start(&ns, &ex, &g).0.expect("start");
    assert_eq!(where_is(&ns, "192.0.2.40"), vec![("hv0".to_string(), 24, Some("hv0".to_string()))]);
    let save = s.path("state/lvs-lo/192.0.2.40");
    assert!(save.exists(), "the loopback address is saved for a restart");
    assert!(ex.held()[0].from_loopback);
    ns_stop(&ns, &ex, &g).0.expect("stop");
    assert_eq!(where_is(&ns, "192.0.2.40"), vec![("lo".to_string(), 32, Some("lo".to_string()))]);
    assert!(!save.exists());

    // halo dies holding the VIP; the next halo's stop still puts it back on lo.
    ns_start(&ns, &ex, &g).0.expect("start again");
    drop(ex);
    let ex2 = executor(&ns, s.env());
    assert_eq!(ns_probe(&ns, &ex2, &g), vec![ProbeResult::Running]);
    ns_stop(&ns, &ex2, &g).0.expect("stop by the next halo");
    assert_eq!(where_is(&ns, "192.0.2.40"), vec![("lo".to_string(), 32, Some("lo".to_string()))]);
}

#[test]
fn group_probe_finds_a_running_vip_and_start_adopts_it() {
    let Some(ns) = setup("group_probe_finds_a_running_vip_and_start_adopts_it") else { return };
    let s = Scratch::new("group-probe");
    let g = group(&["IPaddr2::192.0.2.30/24"]);
    let ex = executor(&ns, s.env());
    assert_eq!(ns_probe(&ns, &ex, &g), vec![ProbeResult::Stopped]);
    ns_start(&ns, &ex, &g).0.expect("start");
    drop(ex);
    // A restarted halo: the VIP is found, and starting does not add it twice but holds it.
    let ex2 = executor(&ns, s.env());
    assert_eq!(ns_probe(&ns, &ex2, &g), vec![ProbeResult::Running]);
    let (r, logged) = ns_start(&ns, &ex2, &g);
    r.expect("start adopts");
    assert!(logged.iter().any(|(_, m)| m.contains("already running")), "{logged:?}");
    assert!(!logged.iter().any(|(_, m)| m.contains("adding")), "{logged:?}");
    let h = ex2.held();
    assert_eq!((h.len(), h.first().map(|h| h.iface.as_str())), (1, Some("hv0")));
    assert!(in_ns(&ns, &ex2, |ex| monitor(ex, &group(&["IPaddr2::192.0.2.30/24"]))).is_empty());
    ns_stop(&ns, &ex2, &g).0.expect("stop");
    assert!(where_is(&ns, "192.0.2.30").is_empty());
    assert_eq!(
        in_ns(&ns, &ex2, |ex| monitor(ex, &group(&["IPaddr2::192.0.2.30/24"]))),
        vec![(0, "not running".to_string())]
    );
}

/// A restarted halo keeps a group found running without starting it: `adopt_group` holds
/// its VIP (watched: put back when removed; not announced until `announce_group`) and
/// leaves the rest alone.
#[test]
fn group_adopt_holds_a_probed_vip() {
    let Some(ns) = setup("group_adopt_holds_a_probed_vip") else { return };
    let s = Scratch::new("group-adopt");
    s.script("svc", None);
    let g = group(&["IPaddr2::192.0.2.31/24", "svc"]);
    let ex = executor(&ns, s.env());
    ns_start(&ns, &ex, &g).0.expect("start");
    drop(ex);
    let ex2 = executor(&ns, s.env());
    assert_eq!(ns_probe(&ns, &ex2, &g), vec![ProbeResult::Running, ProbeResult::Running]);
    assert!(ex2.held().is_empty());
    let g2 = g.clone();
    let logged = in_ns(&ns, &ex2, move |ex| {
        let mut logged = Vec::new();
        ex.adopt_group(&g2, &mut |l, m| logged.push((l, m)));
        logged
    });
    assert!(!logged.iter().any(|(_, m)| m.contains("adding") || m.contains("Running")), "{logged:?}");
    assert_eq!(s.order(), vec!["svc start".to_string()], "svc was not started again");
    // Held but not announced: it may be an orphan whose group another node owns.
    let h = ex2.held();
    assert_eq!((h.len(), h[0].iface.as_str(), h[0].group.as_str()), (1, "hv0", "IPaddr2::192.0.2.31/24"));
    assert_eq!((h[0].bursts, h[0].frames_sent), (0, 0), "{h:?}");
    // Once it is known to be ours, announce_group sends a burst.
    let g3 = g.clone();
    in_ns(&ns, &ex2, move |ex| ex.announce_group(&g3, &mut |_, _| {}));
    let h = held_until(&ex2, |h| h.first().is_some_and(|h| h.frames_sent >= 2));
    assert!(h[0].frames_sent >= 2, "announced: {h:?}");
    ns.ip("addr del 192.0.2.31/24 dev hv0").expect("ip addr del");
    let lost = in_ns(&ns, &ex2, |ex| ex.check_addresses(&mut |_, _| {}));
    assert!(lost.is_empty());
    assert_eq!(where_is(&ns, "192.0.2.31").len(), 1, "the adopted VIP was put back");
    ns_stop(&ns, &ex2, &g).0.expect("stop");
}

fn readable(fd: BorrowedFd<'_>) -> bool {
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        let mut p = [PollFd::new(fd, PollFlags::POLLIN)];
        if nix::poll::poll(&mut p, PollTimeout::from(100u16)).unwrap_or(0) > 0 {
            return true;
        }
    }
    false
}

#[test]
fn group_vip_deleted_behind_our_back_is_restored() {
    let Some(ns) = setup("group_vip_deleted_behind_our_back_is_restored") else { return };
    let s = Scratch::new("group-watch");
    let ex = executor(&ns, s.env());
    let g = group(&["IPaddr2::192.0.2.50/24"]);
    ns_start(&ns, &ex, &g).0.expect("start");
    let fd = ex.watch_fd().expect("watch fd");
    // SAFETY (test): the executor, and so the descriptor, outlives this borrow.
    let bfd = unsafe { BorrowedFd::borrow_raw(fd) };
    in_ns(&ns, &ex, |ex| ex.check_addresses(&mut |_, _| {}));
    let before = ex.held()[0].frames_sent;

    ns.ip("addr del 192.0.2.50/24 dev hv0").expect("ip addr del");
    assert!(readable(bfd), "the watch reports the removal");
    let (lost, logged) = in_ns(&ns, &ex, |ex| {
        let mut logged = Vec::new();
        let lost = ex.check_addresses(&mut |l, m| logged.push((l, m)));
        (lost, logged)
    });
    assert!(lost.is_empty(), "{lost:?} {logged:?}");
    assert!(
        logged
            .iter()
            .any(|(l, m)| *l == Level::Warn
                && m.contains("192.0.2.50 was removed from hv0 behind halo's back")),
        "{logged:?}"
    );
    assert_eq!(where_is(&ns, "192.0.2.50"), vec![("hv0".to_string(), 24, Some("hv0".to_string()))]);
    let h = held_until(&ex, |h| h.first().is_some_and(|h| h.frames_sent >= before + 6));
    assert!(h[0].frames_sent >= before + 6, "announced again: {h:?}");

    // Our own stop is not taken for a removal.
    ns_stop(&ns, &ex, &g).0.expect("stop");
    assert!(in_ns(&ns, &ex, |ex| ex.check_addresses(&mut |_, _| {})).is_empty());
    assert!(where_is(&ns, "192.0.2.50").is_empty());

    // An address that cannot be put back: its group is returned.
    ns_start(&ns, &ex, &g).0.expect("start");
    ns.ip("link del hv0").expect("link del");
    assert!(readable(bfd));
    let lost = in_ns(&ns, &ex, |ex| ex.check_addresses(&mut |_, _| {}));
    assert_eq!(lost, vec!["IPaddr2::192.0.2.50/24".to_string()]);
}

/// Debian's real `/etc/ha.d/resource.d/IPaddr2` wrapper (and the OCF IPaddr2 under it),
/// through `heartbeat:IPaddr2::...`, beside halo's built-in.
#[test]
fn group_real_heartbeat_ipaddr2_wrapper() {
    let wrapper = Path::new("/etc/ha.d/resource.d/IPaddr2");
    if !wrapper.exists() {
        skip("group_real_heartbeat_ipaddr2_wrapper", "the heartbeat package is not installed");
        return;
    }
    let Some(ns) = setup("group_real_heartbeat_ipaddr2_wrapper") else { return };
    let s = Scratch::new("group-hb-ipaddr2");
    let env = GroupEnv {
        config_dir: PathBuf::from("/etc/ha.d"),
        ocf_root: PathBuf::from("/usr/lib/ocf"),
        ..s.env()
    };
    let ex = executor(&ns, env);
    let g = group(&["heartbeat:IPaddr2::192.0.2.60/24/hv0", "IPaddr2::192.0.2.61/24"]);
    assert_eq!(ns_probe(&ns, &ex, &g), vec![ProbeResult::Stopped; 2]);
    let (r, logged) = ns_start(&ns, &ex, &g);
    r.unwrap_or_else(|e| panic!("{e}: {logged:?}"));
    assert!(
        logged.iter().any(|(_, m)| m == "Running /etc/ha.d/resource.d/IPaddr2 192.0.2.60/24/hv0 start"),
        "{logged:?}"
    );
    assert_eq!(where_is(&ns, "192.0.2.60").len(), 1);
    assert_eq!(where_is(&ns, "192.0.2.60")[0].0, "hv0");
    assert_eq!(ns_probe(&ns, &ex, &g), vec![ProbeResult::Running; 2]);
    assert_eq!(ex.held().len(), 1, "only the built-in one is halo's to hold");
    let (r, logged) = ns_stop(&ns, &ex, &g);
    r.unwrap_or_else(|e| panic!("{e}: {logged:?}"));
    assert!(where_is(&ns, "192.0.2.60").is_empty() && where_is(&ns, "192.0.2.61").is_empty());
    assert_eq!(ns_probe(&ns, &ex, &g), vec![ProbeResult::Stopped; 2]);
}

#[test]
fn group_ipv6_vip_with_refreshes() {
    let Some(ns) = setup("group_ipv6_vip_with_refreshes") else { return };
    let s = Scratch::new("group-v6");
    let env =
        GroupEnv { reannounce_after: None, refresh_interval: Some(Duration::from_millis(150)), ..s.env() };
    let ex = executor(&ns, env);
    let g = group(&["IPaddr2::2001:db8:77::20"]);
    assert_eq!(ns_probe(&ns, &ex, &g), vec![ProbeResult::Stopped]);
    let (r, logged) = ns_start(&ns, &ex, &g);
    r.unwrap_or_else(|e| panic!("{e}: {logged:?}"));
    assert_eq!(where_is(&ns, "2001:db8:77::20"), vec![("hv0".to_string(), 64, None)]);
    // Three NAs per burst, bursts repeated every refresh interval while held.
    let h = held_until(&ex, |h| h.first().is_some_and(|h| h.bursts >= 3 && h.frames_sent >= 9));
    assert!(h[0].bursts >= 3 && h[0].frames_sent >= 9 && h[0].frames_failed == 0, "{h:?}");
    ns_stop(&ns, &ex, &g).0.expect("stop");
    assert!(where_is(&ns, "2001:db8:77::20").is_empty());
    assert!(ex.held().is_empty());
}

/// A built-in that records its calls and keeps its state in memory.
#[derive(Default)]
struct Recorder {
    calls: std::sync::Mutex<Vec<String>>,
    running: std::sync::Mutex<bool>,
}

impl Builtin for Recorder {
    fn start(&self, group: &str, args: &[String], _log: &mut dyn FnMut(Level, String)) -> Result<(), String> {
        self.calls.lock().unwrap().push(format!("start {group} {}", args.join(" ")));
        *self.running.lock().unwrap() = true;
        Ok(())
    }
    fn stop(&self, _group: &str, args: &[String], _log: &mut dyn FnMut(Level, String)) -> Result<(), String> {
        self.calls.lock().unwrap().push(format!("stop {}", args.join(" ")));
        *self.running.lock().unwrap() = false;
        Ok(())
    }
    fn status(&self, _args: &[String]) -> Result<bool, String> {
        Ok(*self.running.lock().unwrap())
    }
}

#[test]
fn group_builtin_runs_registered_words_and_leaves_explicit_scripts_alone() {
    let s = Scratch::new("group-builtin");
    s.script("ldirectord", None);
    let rec = Arc::new(Recorder::default());
    let mut ex = GroupExecutor::new(s.env());
    ex.register_builtin("ldirectord", Arc::clone(&rec) as Arc<dyn Builtin>);
    let g = group(&["ldirectord::web.cf", "heartbeat:ldirectord"]);
    assert_eq!(probe(&ex, &g), vec![ProbeResult::Stopped; 2]);
    start(&ex, &g).0.expect("start");
    assert_eq!(*rec.calls.lock().unwrap(), ["start ldirectord::web.cf web.cf"]);
    assert_eq!(s.order(), ["ldirectord start"], "the explicit heartbeat: word runs the script");
    assert_eq!(probe(&ex, &g), vec![ProbeResult::Running; 2]);
    *rec.running.lock().unwrap() = false;
    assert_eq!(monitor(&ex, &g), vec![(0, "not running".to_string())]);
    stop(&ex, &g).0.expect("stop");
    assert_eq!(rec.calls.lock().unwrap().last().map(String::as_str), Some("stop web.cf"));
}
