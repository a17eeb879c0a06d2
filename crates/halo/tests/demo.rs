//! `halo demo` as the README's first command runs it (scripts/demo.sh runs the same binary):
//! three halo nodes, a VIP with halo's director on n1, web servers n2 and n3 behind it by
//! direct routing, n1's cable pulled. The test reads what the demo measured (the takeover,
//! who answered before and after, the outage) and checks, itself, that nothing is left
//! behind: no namespace of the demo, no process, no file. A second run is interrupted with
//! Ctrl-C (SIGINT to its process group, as a terminal sends it) once the client is served,
//! and must clean up all the same.
use regex::Regex;
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

const HALO: &str = env!("CARGO_BIN_EXE_halo");

/// The demo's testbed (namespace prefix, directory) from its output.
fn testbed_of(out: &str) -> (String, String) {
    let re = Regex::new(r"== testbed: network namespaces (\S+)-\*, files in (\S+)").unwrap();
    let c = re.captures(out).unwrap_or_else(|| panic!("no testbed line in\n{out}"));
    (c[1].to_string(), c[2].to_string())
}

/// What the demo left behind, looked at from outside: its namespaces, processes with its
/// directory in their command line or working directory, its directory.
fn leftovers(prefix: &str, dir: &str) -> Vec<String> {
    let mut left = Vec::new();
    let out = Command::new("ip").args(["netns", "list"]).output().unwrap();
    for l in String::from_utf8_lossy(&out.stdout).lines() {
        if l.starts_with(&format!("{prefix}-")) {
            left.push(format!("namespace {l}"));
        }
    }
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|p| p.parse::<u32>().ok()) else { continue };
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).unwrap_or_default();
        if String::from_utf8_lossy(&cmd).contains(dir) || cwd.starts_with(dir) {
            left.push(format!("process {pid} {}", String::from_utf8_lossy(&cmd).replace('\0', " ")));
        }
    }
    if Path::new(dir).exists() {
        left.push(dir.to_string());
    }
    left
}

fn number(out: &str, re: &str) -> Vec<u64> {
    let c = Regex::new(re).unwrap().captures(out).unwrap_or_else(|| panic!("no match for {re} in\n{out}"));
    c.iter().skip(1).map(|m| m.unwrap().as_str().parse().unwrap()).collect()
}

#[test]
fn demo_three_nodes_director_takeover_outage_and_cleanup() {
    if !halo::testbed::root_for_test() {
        return;
    }
    let out = Command::new(HALO).arg("demo").env_remove("HALO_KEEP_TESTBED").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let all = format!("{text}\n--- stderr\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "halo demo failed\n{all}");
    let (prefix, dir) = testbed_of(&text);

    // Before the cut: n1 holds the VIP and directs; status and the director's table shown,
    // with both real servers in it.
    assert!(text.contains("== n1 holds the VIP and directs; the client is served by n2 and n3"), "{all}");
    assert!(text.contains("$ halo status   # on n1"), "{all}");
    assert!(text.contains("Online: [ n1 n2 n3 ]"), "{all}");
    let reals = Regex::new(r"-> 10\.77\.0\.[23]:80 +weight 1 ").unwrap();
    assert_eq!(reals.find_iter(&text).count(), 4, "both real servers in table, before and after\n{all}");

    // The takeover, measured: n2 holds the VIP and runs the director.
    let t = number(
        &text,
        r"== after the cut, polled: n2 holds the VIP at \+(\d+) ms, its director has both real servers at \+(\d+) ms; the client is answered again by n2 at \+(\d+) ms, by n3 at \+(\d+) ms",
    );
    assert!(t.iter().all(|ms| *ms > 0), "{t:?}\n{all}");
    assert!(text.contains("$ halo status   # on n2"), "{all}");
    assert!(text.contains("OFFLINE: [ n1 ]"), "n2 sees n1 gone\n{all}");

    // Both real servers answered before the cut and after the takeover.
    let c = number(
        &text,
        r"== answers by server: before the cut n2 (\d+), n3 (\d+) \((\d+) failed\); after the takeover n2 (\d+), n3 (\d+) \((\d+) failed\)",
    );
    assert!(c[0] > 0 && c[1] > 0, "both served before the cut: {c:?}\n{all}");
    assert!(c[3] > 0 && c[4] > 0, "both served after the takeover: {c:?}\n{all}");

    // The outage: a gap there was (the client lost n1's director), and requests failed in it;
    // the gap covers the takeover n2 measured, which needed deadtime.
    let o = number(
        &text,
        r"== the client's outage: longest gap between two answers (\d+) ms, (\d+) of (\d+) requests failed",
    );
    assert!(o[0] > 0 && o[1] > 0 && o[1] < o[2], "{o:?}\n{all}");
    assert!(o[0] >= t[0].min(t[1]) / 2, "the gap {} ms is of the takeover's order ({t:?})\n{all}", o[0]);

    // Cleaned up, by its own account and as seen from here.
    assert!(text.contains("== checked: no namespace"), "{all}");
    assert!(text.contains("== demo finished in"), "{all}");
    let left = leftovers(&prefix, &dir);
    assert!(left.is_empty(), "left behind: {left:?}\n{all}");
}

#[test]
fn demo_interrupted_by_ctrl_c_cleans_up() {
    if !halo::testbed::root_for_test() {
        return;
    }
    let mut child = Command::new(HALO)
        .arg("demo")
        .env_remove("HALO_KEEP_TESTBED")
        .process_group(0)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pgid = child.id() as i32;
    let mut text = String::new();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    // Interrupted mid-demo: the cluster runs, the client is served, the status is printed.
    for line in lines.by_ref() {
        let line = line.unwrap();
        text += &line;
        text.push('\n');
        if line.starts_with("$ halo status") {
            break;
        }
    }
    assert!(text.contains("$ halo status"), "the demo never got to its status\n{text}");
    let (prefix, dir) = testbed_of(&text);
    assert!(!leftovers(&prefix, &dir).is_empty(), "the demo's namespaces exist while it runs");
    nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pgid), nix::sys::signal::Signal::SIGINT).unwrap();
    for line in lines {
        text += &line.unwrap();
        text.push('\n');
    }
    let out = child.wait_with_output().unwrap();
    let all = format!("{text}\n--- stderr\n{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(130), "{all}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("SIGINT received"), "{all}");
    assert!(text.contains("== checked: no namespace"), "{all}");
    assert!(text.contains("== demo interrupted after"), "{all}");
    let left = leftovers(&prefix, &dir);
    assert!(left.is_empty(), "left behind: {left:?}\n{all}");
}
