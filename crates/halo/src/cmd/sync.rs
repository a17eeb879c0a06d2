//! `halo config sync`: pushes the configuration directory to the other nodes over ssh, as
//! seeds 001 and 003 do by hand (`scp -r /etc/ha.d backupnode:/etc/ha.d`), but refusing an
//! invalid configuration, showing what changes on each node, and never leaving a
//! half-written file behind.
//!
//! How it works: the directory is checked with the daemon's own loader; its files are
//! packed by `tar` here and unpacked by `tar` on the far side into a staging directory
//! inside the target (mode 0700), where a POSIX shell script compares them with the files
//! in place and moves each new or changed file over its old copy with rename(2) — each
//! file is either wholly old or wholly new at every instant, with its mode and owner as
//! they are here (authkeys stays 0600). Only `sh`, `tar`, `find`, `cmp`, `stat`, `mktemp`
//! and `mv` are needed over there (Debian's essential set), so the far side need not run
//! halo: a node still on Heartbeat can be synced during a migration.
//!
//! What is not pushed, because it belongs to one node: `nodeinfo` (the node's name) and
//! every file or directory whose name starts with a dot (state such as `.rsc_list`, editor
//! swap files) or ends with `~` (backups). Those are left alone on the far side too.
use super::exec::{cluster_nodes, select, shell_quote, Reach, ReachArgs};
use anyhow::{bail, Context};
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// What `halo config sync` was asked.
pub struct SyncArgs<'a> {
    pub config_dir: &'a Path,
    pub nodes: &'a [String],
    pub dry_run: bool,
    pub reload: bool,
    /// The daemons' control socket (the same path on every node).
    pub socket: &'a Path,
    pub reach: &'a ReachArgs,
}

/// Runs on the far side as `sh -c SCRIPT halo-sync DIR MODE RELOAD SOCKET` with the tar
/// stream on stdin. It prints one tab-separated line per finding: `N dir` (created),
/// `A path` (added), `C path` (content or type changed), `M path old new` (mode/owner
/// only), `D path` (removed), `R ok|none|fail message` (reload), `O text` (a line `halo
/// reload` printed), `E message` (error).
const REMOTE: &str = r#"set -u
D=$1; MODE=$2; RELOAD=$3; SOCK=$4
isdir() { [ -d "$1" ] && [ ! -L "$1" ]; }
exists() { [ -e "$1" ] || [ -L "$1" ]; }
meta() { stat -c '%a %u:%g' -- "$1"; }
if [ "$MODE" = apply ]; then
    # -d, not isdir: an /etc/ha.d that is a symlink to the real directory is followed.
    if [ ! -d "$D" ]; then
        mkdir -p -- "$D" || { printf 'E\tcannot create %s\n' "$D"; exit 20; }
        printf 'N\t%s\n' "$D"
    fi
    umask 077
    S=$(mktemp -d "$D/.halo-sync.XXXXXX") || { printf 'E\tcannot make a staging directory in %s\n' "$D"; exit 20; }
else
    umask 077
    S=$(mktemp -d "${TMPDIR:-/tmp}/halo-sync.XXXXXX") || { printf 'E\tcannot make a staging directory\n'; exit 20; }
fi
trap 'rm -rf -- "$S"' EXIT
tar -x -p -f - -C "$S" || { printf 'E\tcould not unpack the configuration into %s (tar failed)\n' "$S"; exit 21; }
CH=$(cd "$S" && find . ! -name . | LC_ALL=C sort | while IFS= read -r p; do
    p=${p#./}
    n=$S/$p
    o=$D/$p
    if ! exists "$o"; then
        printf 'A\t%s\n' "$p"
    elif isdir "$n"; then
        if ! isdir "$o"; then
            printf 'C\t%s\n' "$p"
        elif [ "$(meta "$n")" != "$(meta "$o")" ]; then
            printf 'M\t%s\t%s\t%s\n' "$(meta "$o")" "$(meta "$n")" "$p"
        fi
    elif [ -L "$n" ]; then
        if [ ! -L "$o" ] || [ "$(readlink -- "$n")" != "$(readlink -- "$o")" ]; then
            printf 'C\t%s\n' "$p"
        fi
    elif [ -L "$o" ] || [ ! -f "$o" ] || ! cmp -s -- "$n" "$o"; then
        printf 'C\t%s\n' "$p"
    elif [ "$(meta "$n")" != "$(meta "$o")" ]; then
        printf 'M\t%s\t%s\t%s\n' "$(meta "$o")" "$(meta "$n")" "$p"
    fi
done)
DEL=
if [ -d "$D" ]; then
    DEL=$(cd "$D" && find . ! -name . \( -name '.*' -o -name '*~' -o -path ./nodeinfo \) -prune -o ! -name . -print | LC_ALL=C sort | while IFS= read -r p; do
        p=${p#./}
        exists "$S/$p" || printf 'D\t%s\n' "$p"
    done)
fi
[ -n "$CH" ] && printf '%s\n' "$CH"
[ -n "$DEL" ] && printf '%s\n' "$DEL"
[ "$MODE" = apply ] || exit 0
# From here on everything is local to this node: a dropped connection must not stop it
# half-way.
trap '' HUP INT TERM PIPE
T=$(printf '\t')
fail=0
if [ -n "$CH" ]; then
    printf '%s\n' "$CH" | {
        f=0
        while IFS= read -r l; do
            p=${l##*"$T"}
            n=$S/$p
            o=$D/$p
            if isdir "$n"; then
                if ! isdir "$o"; then
                    { rm -rf -- "$o" && mkdir -- "$o"; } || f=1
                fi
                { chown --reference="$n" -- "$o" && chmod --reference="$n" -- "$o"; } || f=1
            else
                if isdir "$o"; then rm -rf -- "$o" || f=1; fi
                mv -f -- "$n" "$o" || f=1
            fi
        done
        exit $f
    } || fail=1
fi
if [ -n "$DEL" ]; then
    printf '%s\n' "$DEL" | {
        f=0
        while IFS= read -r l; do
            p=${l#*"$T"}
            exists "$D/$p" || continue
            rm -rf -- "$D/$p" || f=1
        done
        exit $f
    } || fail=1
fi
if [ $fail != 0 ]; then
    printf 'E\tsome files could not be put in place (see the messages above)\n'
    exit 22
fi
if [ "$RELOAD" = reload ] && [ -n "$CH$DEL" ]; then
    if [ -S "$SOCK" ]; then
        H=$(command -v halo 2>/dev/null || echo /usr/sbin/halo)
        if out=$("$H" --socket "$SOCK" reload 2>&1); then
            printf 'R\tok\n'
            printf '%s\n' "$out" | while IFS= read -r l; do [ -n "$l" ] && printf 'O\t%s\n' "$l"; done
        else
            printf 'R\tfail\t%s\n' "$(printf '%s' "$out" | tr '\n' ' ')"
            exit 23
        fi
    else
        printf 'R\tnone\n'
    fi
fi
exit 0
"#;

/// `halo config sync`.
pub fn sync(args: SyncArgs) -> anyhow::Result<i32> {
    let dir = std::path::absolute(args.config_dir)
        .with_context(|| format!("{}: cannot make the path absolute", args.config_dir.display()))?;
    if let Err(e) = validate(&dir) {
        eprintln!("{e:#}");
        eprintln!("halo config sync: refusing to push an invalid configuration; nothing was sent");
        return Ok(1);
    }
    let (nodes, local) = cluster_nodes(&dir, &[])?;
    if args.nodes.iter().any(|n| n.eq_ignore_ascii_case(&local)) {
        bail!("--node {local}: that is this node (its configuration is the one pushed)");
    }
    let targets: Vec<String> = select(&nodes, args.nodes)?.into_iter().filter(|n| *n != local).collect();
    if targets.is_empty() {
        println!("{}: no other node to push to (nodes: {})", dir.join("ha.cf").display(), nodes.join(", "));
        return Ok(0);
    }
    let reach = Reach::new(args.reach, &nodes)?;
    let files = collect(&dir)?;
    let archive = pack(&dir, &files)?;
    let remote = format!(
        "sh -c {} halo-sync {} {} {} {}",
        shell_quote(REMOTE),
        shell_quote(&dir.to_string_lossy()),
        if args.dry_run { "dry" } else { "apply" },
        if args.reload { "reload" } else { "noreload" },
        shell_quote(&args.socket.to_string_lossy()),
    );
    let handles: Vec<_> = targets
        .iter()
        .map(|node| {
            let mut c = reach.command(node, &remote);
            let archive = archive.clone();
            std::thread::spawn(move || push(&mut c, archive))
        })
        .collect();
    let mut failed = Vec::new();
    for (node, h) in targets.iter().zip(handles) {
        let result = h.join().unwrap_or_else(|_| Err("its thread panicked".into()));
        let ok = report(node, &result, args.dry_run, args.socket);
        if !ok {
            failed.push(node.as_str());
        }
    }
    let what = if args.dry_run { "checked (dry run: nothing written)" } else { "synced" };
    if failed.is_empty() {
        println!("halo config sync: {} node(s) {what} from {local}", targets.len());
        Ok(0)
    } else {
        eprintln!(
            "halo config sync: {} of {} node(s) {what}; FAILED: {}",
            targets.len() - failed.len(),
            targets.len(),
            failed.join(" ")
        );
        Ok(1)
    }
}

/// The configuration as the daemon would load it, plus each ldirectord.cf an ldirectord
/// resource names inside the directory (the daemon reads that one when the resource
/// starts, which is too late to find it broken).
fn validate(dir: &Path) -> anyhow::Result<()> {
    let (model, warnings, _) = crate::run::load(dir, None)?;
    for w in &warnings {
        eprintln!("warning: {w}");
    }
    let Some(h) = &model.haresources else { return Ok(()) };
    for r in h.groups.iter().flat_map(|g| g.resources.iter()).filter(|r| r.agent == "ldirectord") {
        let name = r.args.first().map(String::as_str).unwrap_or(crate::director::DEFAULT_CF);
        if Path::new(name).is_absolute() {
            continue;
        }
        let path = [dir.join(name), dir.join("conf").join(name)].into_iter().find(|p| p.is_file());
        let Some(path) = path else { continue };
        let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        halo_config::parse_ldirectord_cf(&path, &text)
            .map_err(|e| anyhow::anyhow!("invalid configuration in {}:\n{e}", dir.display()))?;
    }
    Ok(())
}

/// Whether a name is one node's own and is neither pushed nor removed.
fn local_only(rel: &Path) -> bool {
    if rel == Path::new("nodeinfo") {
        return true;
    }
    rel.file_name().map(|n| n.as_bytes()).is_some_and(|n| n.starts_with(b".") || n.ends_with(b"~"))
}

/// Every file, directory and symlink under `dir` that is pushed, relative, parents first.
fn collect(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut todo = vec![PathBuf::new()];
    while let Some(rel) = todo.pop() {
        let abs = dir.join(&rel);
        let entries = std::fs::read_dir(&abs).with_context(|| format!("reading {}", abs.display()))?;
        let mut names: Vec<PathBuf> = Vec::new();
        for e in entries {
            let e = e.with_context(|| format!("reading {}", abs.display()))?;
            names.push(rel.join(e.file_name()));
        }
        names.sort();
        for r in names.into_iter().rev() {
            if local_only(&r) {
                continue;
            }
            if r.as_os_str().as_bytes().contains(&b'\n') {
                bail!("{}: a file name with a newline cannot be synced; rename it", dir.join(&r).display());
            }
            let meta = std::fs::symlink_metadata(dir.join(&r))
                .with_context(|| format!("reading {}", dir.join(&r).display()))?;
            let ft = meta.file_type();
            if ft.is_dir() {
                todo.push(r.clone());
            } else if !ft.is_file() && !ft.is_symlink() {
                eprintln!(
                    "warning: {}: not a file, directory or symlink; not pushed",
                    dir.join(&r).display()
                );
                continue;
            }
            out.push(r);
        }
    }
    out.sort();
    Ok(out)
}

/// The files as one tar stream (GNU tar: modes, owners, symlinks as they are).
fn pack(dir: &Path, files: &[PathBuf]) -> anyhow::Result<Vec<u8>> {
    let mut child = Command::new("tar")
        .arg("-c")
        .arg("-f")
        .arg("-")
        .arg("-C")
        .arg(dir)
        .args(["--no-recursion", "--null", "-T", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("running tar")?;
    let mut list = Vec::new();
    for f in files {
        list.extend_from_slice(f.as_os_str().as_bytes());
        list.push(0);
    }
    let mut stdin = child.stdin.take().context("tar's stdin")?;
    let writer = std::thread::spawn(move || stdin.write_all(&list));
    let out = child.wait_with_output().context("running tar")?;
    let _ = writer.join();
    if !out.status.success() {
        bail!("tar could not pack {}: {}", dir.display(), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(out.stdout)
}

/// What came back from one node: its exit status, stdout and stderr.
type Pushed = Result<(Option<i32>, String, String), String>;

fn push(c: &mut Command, archive: Vec<u8>) -> Pushed {
    c.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = c.spawn().map_err(|e| format!("{}: {e}", c.get_program().to_string_lossy()))?;
    let mut stdin = child.stdin.take().ok_or("no stdin")?;
    // A broken connection shows in the exit status and stderr, not here.
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&archive);
    });
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    let _ = writer.join();
    Ok((
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

/// Prints one node's findings; true when it went well.
fn report(node: &str, result: &Pushed, dry_run: bool, socket: &Path) -> bool {
    let (code, stdout, stderr) = match result {
        Ok(x) => x,
        Err(e) => {
            eprintln!("{node}: FAILED: could not run ssh: {e}");
            return false;
        }
    };
    let (add, change, remove) =
        if dry_run { ("would add", "would change", "would remove") } else { ("added", "changed", "removed") };
    let mut changes = 0;
    let mut errors = Vec::new();
    let mut removed: Vec<&str> = Vec::new();
    for line in stdout.lines() {
        let f: Vec<&str> = line.split('\t').collect();
        match f.as_slice() {
            ["N", d] => println!("{node}: created {d}"),
            ["A", p] => {
                changes += 1;
                println!("{node}: {add} {p}");
            }
            ["C", p] => {
                changes += 1;
                println!("{node}: {change} {p}");
            }
            ["M", old, new, p] => {
                changes += 1;
                println!("{node}: {change} mode/owner of {p}: {old} -> {new}");
            }
            ["D", p] => {
                changes += 1;
                // A removed directory's contents go with it: name the directory only.
                if !removed.iter().any(|r| p.starts_with(&format!("{r}/"))) {
                    println!("{node}: {remove} {p}");
                    removed.push(p);
                }
            }
            ["R", "ok"] => println!("{node}: daemon reloaded"),
            ["O", text] => println!("{node}: reload: {text}"),
            ["R", "none"] => {
                println!("{node}: no halo daemon running ({} absent): nothing to reload", socket.display())
            }
            ["R", "fail", msg] => {
                errors.push(format!("the files are in place but `halo reload` failed: {msg}"))
            }
            ["E", msg] => errors.push(msg.to_string()),
            _ => println!("{node}: {line}"),
        }
    }
    if *code == Some(0) && errors.is_empty() {
        if changes == 0 {
            println!("{node}: up to date");
        }
        return true;
    }
    for l in stderr.lines().filter(|l| !l.trim().is_empty()) {
        eprintln!("{node}: {l}");
    }
    let status = match code {
        Some(255) => "ssh exit 255: not reached".to_string(),
        Some(c) => format!("exit {c}"),
        None => "killed by a signal".to_string(),
    };
    errors.push(status);
    eprintln!("{node}: FAILED: {}", errors.join("; "));
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_own_files_are_not_pushed() {
        for p in ["nodeinfo", ".rsc_list", "ha.cf~", "resource.d/.web.swp"] {
            assert!(local_only(Path::new(p)), "{p}");
        }
        for p in ["ha.cf", "authkeys", "resource.d/nodeinfo", "resource.d/web"] {
            assert!(!local_only(Path::new(p)), "{p}");
        }
    }
}
