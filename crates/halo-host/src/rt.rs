//! Real-time knobs of the heartbeat thread (`realtime`, `rtprio` in ha.cf) and the load
//! average Heartbeat puts in every message (`ld`).

use std::io;

use crate::HostError;

/// Puts the calling thread back under the normal scheduler. Threads inherit the policy of
/// the thread that creates them, so a worker started from the real-time heartbeat thread
/// calls this first: slow work must never compete with heartbeats at real-time priority.
pub fn set_normal() {
    // SAFETY: `sched_param` is plain data; the call only changes this thread's policy.
    unsafe {
        let param: libc::sched_param = std::mem::zeroed();
        libc::pthread_setschedparam(libc::pthread_self(), libc::SCHED_OTHER, &param);
    }
}

/// Puts the calling thread under `SCHED_RR` at `prio` (default: the middle of the
/// `SCHED_RR` range, as Heartbeat does) and returns the priority set.
///
/// `SCHED_RESET_ON_FORK` is set too, so processes forked from this thread (should any be)
/// start with normal scheduling instead of inheriting real-time priority.
pub fn set_realtime(prio: Option<i32>) -> Result<i32, HostError> {
    // SAFETY: plain queries without pointers.
    let (min, max) = unsafe {
        (libc::sched_get_priority_min(libc::SCHED_RR), libc::sched_get_priority_max(libc::SCHED_RR))
    };
    if min < 0 || max < 0 {
        return Err(HostError::Realtime(format!("SCHED_RR priority range: {}", io::Error::last_os_error())));
    }
    let prio = prio.unwrap_or((min + max) / 2);
    if !(min..=max).contains(&prio) {
        return Err(HostError::Realtime(format!("priority {prio} out of range {min}..={max}")));
    }
    // SAFETY: `sched_param` is plain data; zeroing covers libc variants with extra fields.
    let mut param: libc::sched_param = unsafe { std::mem::zeroed() };
    param.sched_priority = prio;
    // SAFETY: pthread_self() is the calling thread and `param` lives across the call.
    let rc = unsafe {
        libc::pthread_setschedparam(libc::pthread_self(), libc::SCHED_RR | libc::SCHED_RESET_ON_FORK, &param)
    };
    if rc != 0 {
        return Err(HostError::Realtime(format!(
            "SCHED_RR priority {prio}: {}",
            io::Error::from_raw_os_error(rc)
        )));
    }
    Ok(prio)
}

/// `mlockall(MCL_CURRENT | MCL_FUTURE | MCL_ONFAULT)`: pages are locked once touched, so
/// the resident set stays small but is never swapped out. On kernels without
/// `MCL_ONFAULT` (before 4.4) falls back to locking everything at once.
///
/// Refused (with an error) for a non-root process whose `RLIMIT_MEMLOCK` is finite: under
/// `MCL_FUTURE` every allocation past that limit would fail.
pub fn lock_memory() -> Result<(), HostError> {
    if !nix::unistd::geteuid().is_root() {
        let limited = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_MEMLOCK)
            .map_or(true, |(soft, _)| soft != nix::sys::resource::RLIM_INFINITY);
        if limited {
            return Err(HostError::LockMemory(io::Error::new(
                io::ErrorKind::PermissionDenied,
                "not root and RLIMIT_MEMLOCK is finite: later allocations would fail",
            )));
        }
    }
    let mlockall = |flags: libc::c_int| {
        // SAFETY: mlockall takes no pointers.
        if unsafe { libc::mlockall(flags) } == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    };
    match mlockall(libc::MCL_CURRENT | libc::MCL_FUTURE | libc::MCL_ONFAULT) {
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => mlockall(libc::MCL_CURRENT | libc::MCL_FUTURE),
        r => r,
    }
    .map_err(HostError::LockMemory)
}

/// The first line of `/proc/loadavg` without its newline (Heartbeat's `ld` field), e.g.
/// `0.00 0.01 0.05 1/123 4567`; "" when it cannot be read.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.lines().next().map(str::to_string))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{require_root, skip};

    #[test]
    fn loadavg_is_one_line() {
        let l = loadavg();
        assert!(!l.is_empty());
        assert!(!l.contains('\n'));
        assert_eq!(l.split_whitespace().count(), 5, "{l}");
    }

    #[test]
    fn bad_priority_is_refused() {
        let e = set_realtime(Some(1000)).expect_err("out of range");
        assert!(e.to_string().starts_with("realtime scheduling: priority 1000 out of range"), "{e}");
    }

    #[test]
    fn realtime_thread() {
        if !require_root("realtime_thread") {
            return;
        }
        // A thread of its own, so the test harness' threads keep normal scheduling.
        let r = std::thread::spawn(|| {
            let prio = set_realtime(None)?;
            let mut policy = 0;
            // SAFETY: zeroed plain data, filled by the call.
            let mut param: libc::sched_param = unsafe { std::mem::zeroed() };
            // SAFETY: valid out-pointers for the calling thread.
            let rc = unsafe { libc::pthread_getschedparam(libc::pthread_self(), &mut policy, &mut param) };
            assert_eq!(rc, 0);
            Ok::<_, HostError>((prio, policy & !libc::SCHED_RESET_ON_FORK, param.sched_priority))
        })
        .join()
        .expect("thread");
        match r {
            Ok((prio, policy, got)) => {
                assert_eq!(prio, 50);
                assert_eq!(policy, libc::SCHED_RR);
                assert_eq!(got, 50);
            }
            // Root without an RT budget (cgroup v1 rt_runtime_us = 0, containers).
            Err(e) => skip("realtime_thread", &e.to_string()),
        }
    }

    #[test]
    fn memory_lock() {
        if !require_root("memory_lock") {
            return;
        }
        let r = lock_memory();
        // SAFETY: no pointers; undoes the lock for the rest of the test process.
        unsafe { libc::munlockall() };
        if let Err(e) = r {
            skip("memory_lock", &e.to_string());
        }
    }
}
