//! The control socket: one JSON request per connection (`{"cmd":"status"}`), one JSON
//! answer. The serving thread never touches the engine: it forwards the request to the
//! heartbeat thread through a channel, wakes it through a pipe, and waits (bounded) for
//! the answer, so a slow or hostile client can only ever stall itself.
use anyhow::{anyhow, bail, Context};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

pub struct Request {
    pub cmd: String,
    pub reply: mpsc::Sender<String>,
}

const MAX_REQUEST: u64 = 64 * 1024;
const IO_TIMEOUT: Duration = Duration::from_secs(3);

/// Binds the socket and serves it on a thread of its own. The socket is root's alone
/// (mode 0600) unless `group` names a group whose members may use it too (mode 0660): every
/// command, `standby` and `takeover` included, is open to whoever can connect.
pub fn serve(
    path: &Path,
    group: Option<&str>,
    tx: mpsc::Sender<Request>,
    wake: OwnedFd,
) -> anyhow::Result<()> {
    // Resolved before binding: an unknown group must not leave a socket behind.
    let gid = match group {
        Some(name) => Some(
            nix::unistd::Group::from_name(name)
                .with_context(|| format!("looking up the socket group {name}"))?
                .with_context(|| format!("socket group {name}: no such group"))?
                .gid,
        ),
        None => None,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    if path.exists() {
        if UnixStream::connect(path).is_ok() {
            bail!("another halo daemon already answers on {}", path.display());
        }
        std::fs::remove_file(path).with_context(|| format!("removing stale socket {}", path.display()))?;
    }
    let listener =
        UnixListener::bind(path).with_context(|| format!("binding control socket {}", path.display()))?;
    match gid {
        Some(gid) => {
            nix::unistd::chown(path, None, Some(gid)).with_context(|| {
                format!("giving {} to group {}", path.display(), group.unwrap_or_default())
            })?;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))?;
        }
        None => std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?,
    }
    std::thread::Builder::new().name("halo-control".into()).spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { continue };
            // A failure talking to one client is that client's problem.
            let _ = handle(conn, &tx, &wake);
        }
    })?;
    Ok(())
}

fn handle(conn: UnixStream, tx: &mpsc::Sender<Request>, wake: &OwnedFd) -> anyhow::Result<()> {
    conn.set_read_timeout(Some(IO_TIMEOUT))?;
    conn.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut line = String::new();
    BufReader::new((&conn).take(MAX_REQUEST)).read_line(&mut line)?;
    let answer = match serde_json::from_str::<serde_json::Value>(&line) {
        Ok(v) => match v.get("cmd").and_then(|c| c.as_str()) {
            Some(cmd) => {
                let (rtx, rrx) = mpsc::channel();
                tx.send(Request { cmd: cmd.to_string(), reply: rtx })
                    .map_err(|_| anyhow!("daemon stopping"))?;
                nix::unistd::write(wake, &[1u8]).ok();
                rrx.recv_timeout(IO_TIMEOUT)
                    .unwrap_or_else(|_| error_json("the daemon did not answer in time"))
            }
            None => error_json("request must be a JSON object with a \"cmd\" string"),
        },
        Err(e) => error_json(&format!("request is not JSON: {e}")),
    };
    (&conn).write_all(answer.as_bytes())?;
    (&conn).write_all(b"\n")?;
    Ok(())
}

pub fn error_json(msg: &str) -> String {
    serde_json::json!({ "error": msg }).to_string()
}

/// Sends one command to the daemon and returns its JSON answer.
pub fn request(path: &Path, cmd: &str) -> anyhow::Result<serde_json::Value> {
    let mut conn =
        UnixStream::connect(path).with_context(|| format!("no halo daemon answers on {}", path.display()))?;
    conn.set_read_timeout(Some(Duration::from_secs(5)))?;
    conn.write_all(serde_json::json!({ "cmd": cmd }).to_string().as_bytes())?;
    conn.write_all(b"\n")?;
    let mut buf = String::new();
    conn.read_to_string(&mut buf).with_context(|| format!("reading the answer from {}", path.display()))?;
    let v: serde_json::Value = serde_json::from_str(buf.trim())
        .with_context(|| format!("the daemon's answer is not JSON: {buf:?}"))?;
    if let Some(e) = v.get("error").and_then(|e| e.as_str()) {
        bail!("the daemon refused '{cmd}': {e}");
    }
    Ok(v)
}
