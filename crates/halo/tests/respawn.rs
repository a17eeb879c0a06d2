//! ha.cf `respawn` under a real daemon: the child starts once communication is up, is
//! restarted when killed, and is stopped with halo.
use halo::testbed::{wait_for, Testbed};
use std::path::Path;
use std::time::Duration;

const HALO: &str = env!("CARGO_BIN_EXE_halo");

fn pid_in(file: &Path) -> Option<i32> {
    std::fs::read_to_string(file).ok()?.trim().parse().ok()
}

fn alive(pid: i32) -> bool {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok()
}

#[test]
fn respawn_children_are_kept_running_and_stopped_with_halo() {
    let Some(mut tb) = Testbed::for_test("rs") else { return };
    tb.add_host("n1", "10.79.0.1/16").unwrap();
    let pidfile = tb.dir.join("child.pid");
    let log = tb.dir.join("n1.log");
    let cf = format!(
        "keepalive 100ms\ndeadtime 1\ninitdead 2\nbcast eth0\nnode n1\nlogfile {}\nrealtime off\n\
         respawn root /bin/sh -c 'echo $$ > {}; exec sleep 600'\n",
        log.display(),
        pidfile.display()
    );
    let dir = tb.write_config("n1", &cf, "auth 1\n1 sha1 k\n").unwrap();
    let (pid, _) = tb.start_halo("n1", Path::new(HALO), &dir).unwrap();
    let first = wait_for(Duration::from_secs(10), || pid_in(&pidfile)).expect("the child started");
    assert!(alive(first));
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(first), nix::sys::signal::Signal::SIGKILL).unwrap();
    let second = wait_for(Duration::from_secs(10), || pid_in(&pidfile).filter(|p| *p != first && alive(*p)))
        .expect("the child was restarted");
    tb.stop(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    assert!(
        wait_for(Duration::from_secs(5), || (!alive(second)).then_some(())).is_some(),
        "stopped with halo"
    );
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("process signal 9; restarting in 100 ms"), "{text}");
}

/// Pids of processes whose command line is exactly `argv`.
fn pids_of(argv: &[&str]) -> Vec<i32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else { continue };
        let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) else { continue };
        let words: Vec<String> =
            String::from_utf8_lossy(&cmd).split('\0').filter(|w| !w.is_empty()).map(str::to_string).collect();
        if words == argv {
            out.push(pid);
        }
    }
    out
}

#[test]
fn the_respawn_resource_keeps_a_plain_daemon_running_once_even_across_a_halo_crash() {
    let Some(mut tb) = Testbed::for_test("rsr") else { return };
    tb.add_host("n1", "10.79.1.1/16").unwrap();
    let log = tb.dir.join("n1.log");
    let cf = format!(
        "keepalive 100ms\ndeadtime 1\ninitdead 2\nbcast eth0\nnode n1\nlogfile {}\nrealtime off\n",
        log.display()
    );
    let dir = tb.write_config("n1", &cf, "auth 1\n1 sha1 k\n").unwrap();
    // A unique command line, to find it among the machine's processes.
    let secs = format!("{}", 600_000 + std::process::id() % 100_000);
    std::fs::write(dir.join("haresources"), format!("n1 respawn::/bin/sleep::{secs}\n")).unwrap();
    let argv = ["/bin/sleep", secs.as_str()];
    let (pid, _) = tb.start_halo("n1", Path::new(HALO), &dir).unwrap();
    let first = wait_for(Duration::from_secs(10), || pids_of(&argv).first().copied()).expect("started");
    // It dies: the supervisor starts it again (the group stays up).
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(first), nix::sys::signal::Signal::SIGKILL).unwrap();
    let second = wait_for(Duration::from_secs(10), || pids_of(&argv).into_iter().find(|p| *p != first))
        .expect("restarted");
    assert_eq!(pids_of(&argv).len(), 1);
    // halo crashes and comes back: the daemon still runs, is adopted, not started twice.
    tb.stop(pid, nix::sys::signal::Signal::SIGKILL).unwrap();
    assert!(alive(second), "the daemon outlives a halo crash");
    let (pid, sock) = tb.start_halo("n1", Path::new(HALO), &dir).unwrap();
    let running = wait_for(Duration::from_secs(10), || {
        let v = halo::control::request(&sock, "status").ok()?;
        (v["resources"]["groups"][0]["state"] == "running").then_some(())
    });
    assert!(running.is_some(), "{}", std::fs::read_to_string(&log).unwrap_or_default());
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(pids_of(&argv), vec![second], "adopted, not started a second time");
    // A graceful stop stops it.
    tb.stop(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    assert!(wait_for(Duration::from_secs(10), || pids_of(&argv).is_empty().then_some(())).is_some());
}
