//! The `respawn` resource: a plain daemon kept running by halo for as long as its group runs
//! here, the way `cl_respawn` wrapped programs for Heartbeat resource scripts.
//!
//! In haresources: `respawn::/usr/sbin/mydaemon::-f::--port::8080` runs
//! `/usr/sbin/mydaemon -f --port 8080` (as root, through `sh -c "exec ..."`). The program is
//! restarted with a growing back-off when it exits (exit code 100 means "do not restart");
//! only when it crash-loops (more than 10 deaths in 30 s) does its status turn to stopped, so
//! the group's monitor restarts the group in place and then moves it (halo's usual limits).
//!
//! The running pid is kept in `<state_dir>/respawn/<name>.pid`, so a halo restarted after a
//! crash sees the program still running (the start-up probe adopts the group instead of
//! starting it twice) and a later start replaces the orphan instead of running a second copy.
use halo_host::group::Builtin;
use halo_host::respawn::{Spec, Supervisor};
use halo_host::{Level, Logger};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub struct Respawn {
    state_dir: PathBuf,
    logger: Arc<Logger>,
    running: Mutex<HashMap<String, Supervisor>>,
}

impl Respawn {
    pub fn new(state_dir: PathBuf, logger: Arc<Logger>) -> Respawn {
        Respawn { state_dir, logger, running: Mutex::new(HashMap::new()) }
    }

    fn pidfile(&self, command: &str) -> PathBuf {
        let name: String =
            command.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).take(100).collect();
        self.state_dir.join("respawn").join(format!("{name}.pid"))
    }

    fn orphan(&self, command: &str) -> Option<i32> {
        let pid: i32 = std::fs::read_to_string(self.pidfile(command)).ok()?.trim().parse().ok()?;
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).ok()?;
        // A recycled pid running something else is not ours.
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let program = command.split_whitespace().next()?;
        String::from_utf8_lossy(&cmdline).split('\0').next().is_some_and(|a| a == program).then_some(pid)
    }

    fn forget(&self, command: &str) {
        let _ = std::fs::remove_file(self.pidfile(command));
    }
}

fn command_of(args: &[String]) -> Result<String, String> {
    if args.is_empty() || !args[0].starts_with('/') {
        return Err("respawn needs an absolute program path: respawn::/path/to/program::arg...".into());
    }
    Ok(args.join(" "))
}

impl Builtin for Respawn {
    fn start(&self, group: &str, args: &[String], log: &mut dyn FnMut(Level, String)) -> Result<(), String> {
        let command = command_of(args)?;
        if let Some(pid) = self.orphan(&command) {
            log(Level::Warn, format!("{group}: {command} still runs unsupervised (pid {pid}): replacing it"));
            let _ =
                nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGTERM);
        }
        let logger = Arc::clone(&self.logger);
        let sup = Supervisor::start(
            &[Spec { user: "root".into(), command: command.clone(), pidfile: Some(self.pidfile(&command)) }],
            Arc::new(move |l, m: String| logger.log(l, &m)),
        );
        // Give it a moment to be running (or to fail at once).
        let end = Instant::now() + Duration::from_secs(2);
        while Instant::now() < end {
            let st = &sup.status()[0];
            if st.given_up {
                sup.stop();
                return Err(format!("{command} could not be started"));
            }
            if st.pid.is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        self.running.lock().unwrap_or_else(|e| e.into_inner()).insert(command, sup);
        Ok(())
    }

    fn stop(&self, group: &str, args: &[String], log: &mut dyn FnMut(Level, String)) -> Result<(), String> {
        let command = command_of(args)?;
        let sup = self.running.lock().unwrap_or_else(|e| e.into_inner()).remove(&command);
        match sup {
            Some(s) => s.stop(),
            None => {
                if let Some(pid) = self.orphan(&command) {
                    log(Level::Info, format!("{group}: stopping unsupervised {command} (pid {pid})"));
                    let p = nix::unistd::Pid::from_raw(pid);
                    let _ = nix::sys::signal::kill(p, nix::sys::signal::Signal::SIGTERM);
                    let end = Instant::now() + Duration::from_secs(10);
                    while nix::sys::signal::kill(p, None).is_ok() && Instant::now() < end {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    let _ = nix::sys::signal::kill(p, nix::sys::signal::Signal::SIGKILL);
                }
            }
        }
        self.forget(&command);
        Ok(())
    }

    fn status(&self, args: &[String]) -> Result<bool, String> {
        let command = command_of(args)?;
        let running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        match running.get(&command) {
            Some(s) => Ok(!s.status()[0].given_up),
            None => Ok(self.orphan(&command).is_some()),
        }
    }
}
