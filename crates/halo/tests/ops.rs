//! The operations surface against real processes: `ResourceManager` (a symlink to halo)
//! over a haresources file, and a live two-node cluster in network namespaces whose
//! `halo status`, `cl_status` (a symlink) and `--http` endpoint (`/metrics`,
//! `/api/status`) must tell the truth as the cluster changes.
use halo::testbed::{wait_for, Testbed};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const HALO: &str = env!("CARGO_BIN_EXE_halo");

/// A Heartbeat-class script: `status` prints what ResourceManager matches.
const DUMMY: &str = r#"#!/bin/sh
D=$(cd "$(dirname "$0")/.." && pwd)
case "$1" in
start) touch "$D/dummy.on"; exit 0 ;;
stop) rm -f "$D/dummy.on"; exit 0 ;;
status) if [ -f "$D/dummy.on" ]; then echo "dummy is running"; else echo "dummy is not running"; fi ;;
esac
exit 0
"#;

fn tmpdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("halo-ops-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A symlink named `name` to the halo binary (how Heartbeat's tools are installed).
fn tool(dir: &Path, name: &str) -> PathBuf {
    let link = dir.join(name);
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(HALO, &link).unwrap();
    link
}

fn out(c: &mut Command) -> (i32, String, String) {
    let o = c.output().unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn write_script(dir: &Path, name: &str, text: &str) {
    let rd = dir.join("resource.d");
    std::fs::create_dir_all(&rd).unwrap();
    std::fs::write(rd.join(name), text).unwrap();
    std::fs::set_permissions(rd.join(name), std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn resourcemanager_lists_keys_and_answers_status_like_heartbeats() {
    let d = tmpdir("rm");
    std::fs::write(
        d.join("haresources"),
        "# seed-like\nN1 10.9.0.1/24/eth0 dummy\t  web::8080\nn2 IPaddr2::10.9.0.2 \\\n   db\nn1 mail\n",
    )
    .unwrap();
    write_script(&d, "dummy", DUMMY);
    let rm = tool(&d, "ResourceManager");
    let run = |args: &[&str], host: &str| {
        out(Command::new(&rm).args(args).env("HALO_CONFIG_DIR", &d).env("HA_CURHOST", host))
    };
    assert_eq!(run(&["listkeys", "n1"], "n1"), (0, "10.9.0.1/24/eth0\nmail\n".into(), String::new()));
    assert_eq!(run(&["listkeys", "N1"], "n1").1, "10.9.0.1/24/eth0\nmail\n", "case-insensitive as egrep -i");
    assert_eq!(run(&["listkeys", "n2"], "n1").1, "IPaddr2::10.9.0.2\n");
    assert_eq!(run(&["listkeys", ".*"], "n1").1, "10.9.0.1/24/eth0\nIPaddr2::10.9.0.2\nmail\n");
    assert_eq!(run(&["listkeys", "n"], "n1").1, "", "the node must match whole: ^NODE followed by a blank");
    assert_eq!(run(&["allkeys"], "n1").1, "10.9.0.1/24/eth0\nIPaddr2::10.9.0.2\nmail\n");
    assert_eq!(run(&["ourkeys"], "n1").1, "10.9.0.1/24/eth0 dummy web::8080 \nmail \n");
    assert_eq!(run(&["otherkeys"], "n1").1, "IPaddr2::10.9.0.2 db \n");
    // status: exit 0 when the script says running, 3 otherwise; its output is not printed.
    assert_eq!(run(&["status", "dummy"], "n1"), (3, String::new(), String::new()));
    std::fs::write(d.join("dummy.on"), "").unwrap();
    assert_eq!(run(&["status", "dummy"], "n1"), (0, String::new(), String::new()));
    assert_eq!(run(&["status", "nosuchscript"], "n1").0, 3);
    let (code, o, e) = run(&["frob"], "n1");
    assert_eq!((code, o.as_str()), (1, ""));
    assert!(e.starts_with("usage: ResourceManager listkeys machine"), "{e}");
    assert_eq!(run(&[], "n1").0, 1);
    // The subcommand spelling of the same tool.
    let (code, o, _) =
        out(Command::new(HALO).args(["resourcemanager", "--config-dir"]).arg(&d).arg("allkeys"));
    assert_eq!((code, o.as_str()), (0, "10.9.0.1/24/eth0\nIPaddr2::10.9.0.2\nmail\n"));
    // Without haresources: nothing listed, as the shell pipeline.
    let empty = tmpdir("rm-empty");
    let (code, o, _) = out(Command::new(&rm).arg("allkeys").env("HALO_CONFIG_DIR", &empty));
    assert_eq!((code, o.as_str()), (0, ""));
    let _ = std::fs::remove_dir_all(&d);
    let _ = std::fs::remove_dir_all(&empty);
}

#[test]
fn cl_status_without_a_daemon() {
    let d = tmpdir("cl");
    let cl = tool(&d, "cl_status");
    let sock = d.join("none.sock");
    let (code, o, _) = out(Command::new(&cl).arg("hbstatus").env("HALO_SOCKET", &sock));
    assert_eq!((code, o.as_str()), (1, "Heartbeat is stopped on this machine.\n"));
    let (code, _, e) = out(Command::new(&cl).args(["nodestatus", "n1"]).env("HALO_SOCKET", &sock));
    assert_eq!(code, 1);
    assert!(e.contains("Cannot signon with heartbeat"), "{e}");
    let (code, _, _) = out(Command::new(&cl).arg("nosuch").env("HALO_SOCKET", &sock));
    assert_eq!(code, 11);
    let (code, o, _) = out(Command::new(HALO).args(["cl_status", "-h"]));
    assert_eq!(code, 0);
    assert!(o.starts_with("Usage: cl_status <sub-command>"), "{o}");
    let _ = std::fs::remove_dir_all(&d);
}

const AUTHKEYS: &str = "auth 1\n1 sha1 ops-secret\n";
const VIP: &str = "10.79.0.100";

#[test]
fn live_cluster_status_cl_status_and_metrics() {
    let Some(mut tb) = Testbed::for_test("ops") else { return };
    tb.add_host("n1", "10.79.0.1/16").unwrap();
    tb.add_host("n2", "10.79.0.2/16").unwrap();
    let haresources = format!("n1 IPaddr2::{VIP}/16 dummy\n");
    let mut socks = Vec::new();
    let mut pids = Vec::new();
    for n in ["n1", "n2"] {
        let log = tb.dir.join(format!("{n}.log"));
        let cf = format!(
            "keepalive 100ms\nwarntime 500ms\ndeadtime 1\ninitdead 3\nbcast eth0\nauto_failback on\n\
             node n1 n2\nlogfile {}\nrealtime off\n",
            log.display()
        );
        let dir = tb.write_config(n, &cf, AUTHKEYS).unwrap();
        std::fs::write(dir.join("haresources"), &haresources).unwrap();
        write_script(&dir, "dummy", DUMMY);
        let sock = tb.dir.join(format!("{n}.sock"));
        let state = tb.dir.join(n).join("state");
        let mut args: Vec<String> = vec!["--socket".into(), sock.display().to_string(), "run".into()];
        args.extend(["--config-dir".into(), dir.display().to_string(), "--node".into(), n.into()]);
        args.extend(["--state-dir".into(), state.display().to_string()]);
        if n == "n1" {
            args.extend(["--http".into(), "127.0.0.1:9694".into()]);
        }
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        let pid = tb.spawn(n, Path::new(HALO), &a, &tb.dir.join(format!("{n}.out"))).unwrap();
        socks.push(sock);
        pids.push(pid);
    }
    let logs = |tb: &Testbed| {
        let r = |f: &str| std::fs::read_to_string(tb.dir.join(f)).unwrap_or_default();
        format!("--- n1\n{}{}\n--- n2\n{}{}", r("n1.log"), r("n1.out"), r("n2.log"), r("n2.out"))
    };
    let status = |sock: &Path| out(Command::new(HALO).arg("--socket").arg(sock).arg("status"));
    let group_line = format!("     IPaddr2::{VIP}/16\t(IPaddr2):\tStarted n1");
    let settled = wait_for(Duration::from_secs(20), || {
        let (_, text, _) = status(&socks[0]);
        (text.contains("Online: [ n1 n2 ]") && text.contains(&group_line) && text.contains("Started n1"))
            .then_some(text)
    });
    let text = settled.unwrap_or_else(|| {
        panic!(
            "n1 never showed both nodes online and the group on n1:\n{}\n{}",
            status(&socks[0]).1,
            logs(&tb)
        )
    });
    assert!(text.starts_with("Stack: halo (Heartbeat 3 compatible)\n"), "{text}");
    assert!(text.contains("2 nodes configured"), "{text}");
    assert!(text.contains("1 resource group configured (2 resources)"), "{text}");
    assert!(text.contains(&format!(" Resource Group: IPaddr2::{VIP}/16 (prefers n1")), "{text}");
    assert!(text.contains("     dummy\t(dummy):\tStarted n1"), "{text}");
    assert!(text.contains(" * n2: eth0 up"), "{text}");
    // n2 sees the same placement.
    let n2_text = wait_for(Duration::from_secs(5), || {
        let (_, t, _) = status(&socks[1]);
        t.contains(&group_line).then_some(t)
    });
    assert!(n2_text.is_some(), "n2: {}", status(&socks[1]).1);

    // --json keeps its fields and carries the resources of each group.
    let (_, j, _) = out(Command::new(HALO).arg("--socket").arg(&socks[0]).args(["status", "--json"]));
    let v: serde_json::Value = serde_json::from_str(&j).unwrap();
    assert_eq!(v["node"], "n1");
    let g = &v["resources"]["groups"][0];
    assert_eq!(g["holders"], serde_json::json!(["n1"]));
    assert_eq!(g["resources"][1]["name"], "dummy");
    assert_eq!(g["resources"][1]["state"], "started");

    // cl_status through its symlink, against the live daemon.
    let bin = tb.dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let cl = tool(&bin, "cl_status");
    let cl_run = |args: &[&str]| out(Command::new(&cl).args(args).env("HALO_SOCKET", &socks[0]));
    assert_eq!(cl_run(&["hbstatus"]).1, "Heartbeat is running on this machine.\n");
    assert_eq!(cl_run(&["listnodes"]), (0, "n1\nn2\n".into(), String::new()));
    assert_eq!(cl_run(&["nodestatus", "n2"]), (0, "active\n".into(), String::new()));
    assert_eq!(cl_run(&["nodetype", "n2"]).1, "normal\n");
    assert_eq!(cl_run(&["listhblinks", "n2"]).1, "\teth0\n");
    assert_eq!(cl_run(&["hblinkstatus", "n2", "eth0"]), (0, "up\n".into(), String::new()));
    // "transition" while the start settles, then this node holds its own (local) group.
    let rsc = wait_for(Duration::from_secs(10), || {
        let r = cl_run(&["rscstatus"]);
        (r.1 != "transition\n").then_some(r)
    });
    assert_eq!(rsc, Some((0, "local\n".into(), String::new())));
    assert_eq!(cl_run(&["hbparameter", "-p", "keepalive"]), (0, "100ms\n".into(), String::new()));
    assert_eq!(cl_run(&["hbparameter", "-p", "deadtime"]).1, "1\n");
    assert_eq!(cl_run(&["hbparameter", "-p", "nosuch"]).0, 1);
    assert_eq!(cl_run(&["nodestatus", "n3"]).0, 11);

    // The HTTP endpoint, from inside n1's namespace (loopback).
    let curl = |tb: &Testbed, path: &str| {
        let o = tb
            .exec(
                "n1",
                &[
                    "curl",
                    "-s",
                    "-w",
                    "\n%{http_code}",
                    "--max-time",
                    "3",
                    &format!("http://127.0.0.1:9694{path}"),
                ],
            )
            .unwrap();
        let s = String::from_utf8_lossy(&o.stdout).into_owned();
        let (body, code) = s.rsplit_once('\n').unwrap();
        (code.to_string(), body.to_string())
    };
    let (code, m) = curl(&tb, "/metrics");
    assert_eq!(code, "200", "{m}");
    for line in [
        "halo_info{node=\"n1\",version=\"0.1.0\"} 1",
        "halo_node_state{node=\"n2\",type=\"normal\",state=\"active\"} 1",
        "halo_node_state{node=\"n1\",type=\"normal\",state=\"active\"} 1",
        "halo_link_up{node=\"n2\",link=\"eth0\"} 1",
        "halo_comm_up 1",
        &format!("halo_group_held{{group=\"IPaddr2::{VIP}/16\",node=\"n1\"}} 1"),
        &format!("halo_group_state{{group=\"IPaddr2::{VIP}/16\",state=\"running\"}} 1"),
        &format!("halo_resource_started{{group=\"IPaddr2::{VIP}/16\",resource=\"dummy\"}} 1"),
        "halo_failovers_total 0",
    ] {
        assert!(m.lines().any(|l| l == line), "missing {line:?} in\n{m}");
    }
    for name in [
        "halo_heartbeats_late_total{node=\"n2\"}",
        "halo_packets_lost_total{node=\"n2\"}",
        "halo_link_rx_packets_total{link=\"eth0\",kind=\"bcast\"}",
    ] {
        assert!(m.lines().any(|l| l.starts_with(name)), "missing {name} in\n{m}");
    }
    let (code, api) = curl(&tb, "/api/status");
    assert_eq!(code, "200");
    let api: serde_json::Value = serde_json::from_str(&api).unwrap();
    assert_eq!(api["node"], "n1");
    assert_eq!(api["resources"]["groups"][0]["holders"], serde_json::json!(["n1"]));
    assert_eq!(curl(&tb, "/nope").0, "404");
    // Not on the cluster address: loopback only.
    let o = tb
        .exec("n2", &["sh", "-c", "curl -s --max-time 2 http://10.79.0.1:9694/metrics; echo rc=$?"])
        .unwrap();
    assert!(!String::from_utf8_lossy(&o.stdout).contains("rc=0"), "the endpoint answered on eth0");

    // n2 leaves: n1's view shows it offline; cl_status says dead with exit 1.
    tb.stop(pids[1], nix::sys::signal::Signal::SIGTERM).unwrap();
    let text = wait_for(Duration::from_secs(10), || {
        let (_, t, _) = status(&socks[0]);
        t.contains("Online: [ n1 ]\nOFFLINE: [ n2 ]").then_some(t)
    });
    assert!(text.is_some(), "{}\n{}", status(&socks[0]).1, logs(&tb));
    assert_eq!(cl_run(&["nodestatus", "n2"]), (1, "dead\n".into(), String::new()));
    let (_, m) = curl(&tb, "/metrics");
    assert!(m.lines().any(|l| l == "halo_node_state{node=\"n2\",type=\"normal\",state=\"dead\"} 1"), "{m}");
}
