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
