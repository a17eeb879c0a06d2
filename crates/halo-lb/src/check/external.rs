//! external (and external-perl, run by `perl`): ldirectord's check_external — run
//! `checkcommand VIP VPORT RIP RPORT` without a shell, up iff it exits 0 before the deadline.
//!
//! The command runs in a process group of its own; at the deadline the whole group is killed
//! with SIGKILL (ldirectord only sent SIGTERM to the direct child, leaving any grandchild
//! running) and the child is reaped. If the check itself is dropped (the caller gave up), the
//! group is killed too.

use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

use super::{fmt_duration, CheckSpec, Outcome};

/// Kills the process group unless the child has been reaped (after which its pid, and so the
/// group id, may belong to someone else).
struct GroupGuard {
    pgid: Option<i32>,
}

impl GroupGuard {
    fn kill(&self) {
        if let Some(pgid) = self.pgid {
            let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
        }
    }

    fn disarm(&mut self) {
        self.pgid = None;
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

pub(crate) async fn check(spec: &CheckSpec) -> Outcome {
    let cmd = spec.command.as_ref().ok_or("external check without a command")?;
    let mut child = tokio::process::Command::new(&cmd.program)
        .args(&cmd.args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("run {}: {e}", cmd.program))?;
    let mut guard = GroupGuard { pgid: child.id().and_then(|p| i32::try_from(p).ok()) };
    tokio::select! {
        status = child.wait() => {
            guard.disarm();
            let status = status.map_err(|e| format!("wait for {}: {e}", cmd.program))?;
            match (status.code(), status.signal()) {
                (Some(0), _) => Ok(format!("{} exited 0", cmd.program)),
                (Some(code), _) => Err(format!("{} exited {code}", cmd.program)),
                (None, Some(sig)) => Err(format!("{} killed by signal {sig}", cmd.program)),
                (None, None) => Err(format!("{} ended abnormally", cmd.program)),
            }
        }
        _ = tokio::time::sleep(spec.timeout) => {
            guard.kill();
            let _ = child.wait().await;
            guard.disarm();
            Err(format!("{} still running at the {} deadline: killed with its process group", cmd.program, fmt_duration(spec.timeout)))
        }
    }
}
