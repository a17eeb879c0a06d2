use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use halo_config::ResourceSpec;

use super::*;
use crate::testutil::{skip, TempDir};

const T: Duration = Duration::from_secs(10);

fn write_script(path: &Path, body: &str) -> PathBuf {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).expect("mkdir");
    }
    fs::write(path, format!("#!/bin/sh\n{body}")).expect("write script");
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).expect("chmod");
    path.to_path_buf()
}

fn agent(class: AgentClass, path: PathBuf) -> Agent {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("x").to_string();
    Agent { name, class, path, ocf_root: PathBuf::from("/usr/lib/ocf") }
}

fn outcome(exit: Option<i32>, stdout: &str) -> Outcome {
    Outcome {
        exit,
        signal: None,
        timed_out: false,
        stdout: stdout.to_string(),
        stderr: String::new(),
        duration: Duration::ZERO,
    }
}

/// Live (non-zombie) processes whose command line mentions `marker`, except this test.
fn processes_with(marker: &str) -> Vec<String> {
    let mut found = Vec::new();
    let me = std::process::id().to_string();
    for entry in fs::read_dir("/proc").expect("/proc").flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name == me || !name.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(cmdline) = fs::read(entry.path().join("cmdline")) else { continue };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains(marker) {
            found.push(format!("{name}: {cmdline}"));
        }
    }
    found
}

fn kill_all_with(marker: &str) {
    for p in processes_with(marker) {
        if let Some(pid) = p.split(':').next().and_then(|s| s.parse::<i32>().ok()) {
            let _ =
                nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
        }
    }
}

#[test]
fn lookup_order() {
    let t = TempDir::new("agents-lookup");
    let cfg = t.0.join("ha.d");
    let init = t.0.join("init.d");
    let ocf = t.0.join("ocf");
    write_script(&cfg.join("resource.d/both"), "");
    write_script(&init.join("both"), "");
    // Not executable in resource.d: init.d wins.
    write_script(&cfg.join("resource.d/noexec"), "");
    fs::set_permissions(cfg.join("resource.d/noexec"), fs::Permissions::from_mode(0o644)).expect("chmod");
    write_script(&init.join("noexec"), "");
    // A directory is not a script.
    fs::create_dir_all(cfg.join("resource.d/adir")).expect("mkdir");
    write_script(&init.join("adir"), "");
    write_script(&ocf.join("resource.d/heartbeat/Thing"), "");
    write_script(&ocf.join("resource.d/acme/Widget"), "");
    // A symbolic link to an executable counts (Debian's resource.d/ldirectord is one).
    std::os::unix::fs::symlink(init.join("both"), cfg.join("resource.d/link")).expect("symlink");

    let r = |n: &str| resolve(n, &cfg, &init, &ocf);
    let a = r("both").expect("both");
    assert_eq!((a.class, a.path), (AgentClass::Heartbeat, cfg.join("resource.d/both")));
    let a = r("noexec").expect("noexec");
    assert_eq!((a.class, a.path), (AgentClass::Lsb, init.join("noexec")));
    assert_eq!(r("adir").expect("adir").class, AgentClass::Lsb);
    assert_eq!(r("link").expect("link").class, AgentClass::Heartbeat);
    let heartbeat = AgentClass::Ocf { provider: "heartbeat".into() };
    let a = r("Thing").expect("bare OCF type");
    assert_eq!(
        (&a.class, &a.path, a.name.as_str()),
        (&heartbeat, &ocf.join("resource.d/heartbeat/Thing"), "Thing")
    );
    assert_eq!(a.ocf_root, ocf);
    assert_eq!(r("OCF::Thing").expect("OCF::").class, heartbeat);
    let a = r("ocf:acme:Widget").expect("ocf:acme:");
    assert_eq!((a.class, a.name.as_str()), (AgentClass::Ocf { provider: "acme".into() }, "Widget"));
    // Bare types are only looked for under the heartbeat provider.
    assert!(r("Widget").is_err());

    let e = r("nope").expect_err("missing");
    let msg = e.to_string();
    assert!(msg.starts_with("Cannot locate resource script nope (looked in "), "{msg}");
    for p in [cfg.join("resource.d/nope"), init.join("nope"), ocf.join("resource.d/heartbeat/nope")] {
        assert!(msg.contains(&p.display().to_string()), "{msg}");
    }
    assert!(matches!(r("ocf:acme:Nope"), Err(AgentError::NotFound { .. })));
    for bad in ["", ".", "..", "../both", "a/b", "ocf:acme", "ocf:../x:y", "ocf:a:b:c", "OCF::"] {
        assert!(matches!(r(bad), Err(AgentError::BadName(_))), "{bad:?}: {:?}", r(bad));
    }
}

#[test]
fn resolve_spec_runs_ocf_words_directly() {
    let t = TempDir::new("agents-spec");
    let cfg = t.0.join("ha.d");
    let init = t.0.join("init.d");
    let ocf = t.0.join("ocf");
    // Debian's broken generic wrapper is in resource.d; the word must bypass it.
    write_script(&cfg.join("resource.d/OCF"), "exit 1");
    write_script(&cfg.join("resource.d/IPaddr"), "");
    write_script(&ocf.join("resource.d/heartbeat/Thing"), "");

    let (a, args) =
        resolve_spec(&ResourceSpec::parse("OCF::Thing::inst1"), &cfg, &init, &ocf).expect("OCF::");
    assert_eq!(a.class, AgentClass::Ocf { provider: "heartbeat".into() });
    assert_eq!(a.path, ocf.join("resource.d/heartbeat/Thing"));
    assert_eq!(args, ["inst1"]);
    let (a, args) = resolve_spec(&ResourceSpec::parse("10.0.0.5/24"), &cfg, &init, &ocf).expect("ip");
    assert_eq!((a.class, a.name.as_str()), (AgentClass::Heartbeat, "IPaddr"));
    assert_eq!(args, ["10.0.0.5/24"]);
    let e = resolve_spec(&ResourceSpec::parse("OCF::Nope::x"), &cfg, &init, &ocf).expect_err("missing");
    assert!(e.to_string().starts_with("Cannot locate resource script OCF::Nope::x"), "{e}");
}

#[test]
fn heartbeat_class_gets_args_first_in_a_clean_environment() {
    let t = TempDir::new("agents-args");
    let rec = t.0.join("argv");
    let envf = t.0.join("env");
    let a = agent(
        AgentClass::Heartbeat,
        write_script(
            &t.0.join("resource.d/IPaddr2"),
            &format!(
                "printf '%s\\n' \"$@\" > {}\nenv > {}\npwd >> {}\necho hello; echo oops >&2\nexit 0\n",
                rec.display(),
                envf.display(),
                envf.display()
            ),
        ),
    );
    let args = vec!["10.0.0.5/24/eth0".to_string(), "second".to_string()];
    let env = vec![("HA_CURHOST".to_string(), "nodea".to_string())];
    let call = Call { args: &args, env: &env, ..Call::new(&a, Op::Start, T) };
    assert!(call.command_line().ends_with("resource.d/IPaddr2 10.0.0.5/24/eth0 second start"));
    let o = run(&call);
    assert_eq!(o.exit, Some(0), "{o:?}");
    assert_eq!((o.stdout.as_str(), o.stderr.as_str()), ("hello\n", "oops\n"));
    assert_eq!(fs::read_to_string(&rec).expect("argv"), "10.0.0.5/24/eth0\nsecond\nstart\n");
    assert_eq!(interpret_status(&a, Op::Start, &o), Running::Yes);

    let env = fs::read_to_string(&envf).expect("env");
    assert!(env.lines().any(|l| l == "PATH=/usr/sbin:/usr/bin:/sbin:/bin"), "{env}");
    assert!(env.lines().any(|l| l == "HA_CURHOST=nodea"), "{env}");
    assert!(env.lines().any(|l| l == "OCF_ROOT=/usr/lib/ocf"), "{env}");
    assert!(env.lines().any(|l| l == "/"), "working directory: {env}");
    // Nothing of the test process's own environment (cargo sets CARGO_* for tests) leaks in.
    for (k, _) in std::env::vars() {
        if !["PATH", "OCF_ROOT", "PWD", "OLDPWD", "SHLVL", "_"].contains(&k.as_str()) {
            assert!(!env.lines().any(|l| l.starts_with(&format!("{k}="))), "{k} leaked: {env}");
        }
    }
    assert!(!env.contains("OCF_RESKEY"), "{env}");

    // Status and monitor both call `status`; stop is `stop`.
    for (op, word) in [(Op::Status, "status"), (Op::Monitor, "status"), (Op::Stop, "stop")] {
        let o = run(&Call { args: &args, ..Call::new(&a, op, T) });
        assert_eq!(o.exit, Some(0));
        assert_eq!(fs::read_to_string(&rec).expect("argv"), format!("10.0.0.5/24/eth0\nsecond\n{word}\n"));
    }
}

#[test]
fn status_stdout_matching() {
    let table: &[(&str, bool)] = &[
        ("", false),
        ("running", true),
        ("Running", true),
        ("RUNNING", false),
        ("INFO:  Running OK\n", true),
        ("INFO:  Resource is stopped\n", false),
        ("OK", true),
        ("ok", false),
        ("apache2 is not running\n", false),
        ("Not Running", false),
        ("NOT  running", false),
        ("not\trunning", true),
        ("notrunning", true),
        ("cannot be running", false),
        ("running, not yet", true),
        ("heartbeat OK [pid 11160 et al] is running on nodea [nodea]...", true),
        ("heartbeat is stopped. No process", false),
        ("ldirectord for /etc/ha.d/ldirectord.cf is running with pid: 1234", true),
        ("line one\nstill Running\n", true),
        ("Status: OK but is not running", false),
        ("unning", false),
        ("not ", false),
    ];
    for &(text, want) in table {
        assert_eq!(stdout_says_running(text), want, "{text:?}");
    }
    let a = agent(AgentClass::Heartbeat, PathBuf::from("/x"));
    // The exit code of a Heartbeat-class status is ignored.
    assert_eq!(interpret_status(&a, Op::Status, &outcome(Some(3), "Running OK")), Running::Yes);
    assert_eq!(interpret_status(&a, Op::Status, &outcome(Some(0), "is not running")), Running::No);
    assert_eq!(interpret_status(&a, Op::Monitor, &outcome(Some(0), "")), Running::No);
    assert_eq!(
        interpret_status(&a, Op::Start, &outcome(Some(1), "Running")),
        Running::Failed("exit 1".into())
    );
    assert_eq!(interpret_status(&a, Op::Stop, &outcome(Some(0), "")), Running::No);
    assert_eq!(interpret_status(&a, Op::Stop, &outcome(Some(7), "")), Running::Failed("exit 7".into()));
}

#[test]
fn heartbeat_status_from_real_script_ignores_exit_code() {
    let t = TempDir::new("agents-hbstatus");
    let a = agent(
        AgentClass::Heartbeat,
        write_script(&t.0.join("svc"), "echo \"$STATUS_TEXT\"; exit $STATUS_RC\n"),
    );
    for (text, rc, want) in [
        ("Running OK", "3", Running::Yes),
        ("svc is not running", "0", Running::No),
        ("stopped", "0", Running::No),
    ] {
        let env =
            vec![("STATUS_TEXT".to_string(), text.to_string()), ("STATUS_RC".to_string(), rc.to_string())];
        let o = run(&Call { env: &env, ..Call::new(&a, Op::Status, T) });
        assert_eq!(o.exit, Some(rc.parse().expect("rc")));
        assert_eq!(interpret_status(&a, Op::Status, &o), want, "{text}");
    }
}

#[test]
fn lsb_convention_and_codes() {
    let t = TempDir::new("agents-lsb");
    let rec = t.0.join("argv");
    let a = agent(
        AgentClass::Lsb,
        write_script(
            &t.0.join("init.d/svc"),
            &format!("printf '%s\\n' \"$@\" > {}\nexit $RC\n", rec.display()),
        ),
    );
    let cases = [
        (Op::Status, 0, Running::Yes),
        (Op::Status, 3, Running::No),
        (Op::Monitor, 3, Running::No),
        (Op::Status, 1, Running::Failed("LSB status 1: program is dead and /var/run pid file exists".into())),
        (
            Op::Status,
            2,
            Running::Failed("LSB status 2: program is dead and /var/lock lock file exists".into()),
        ),
        (Op::Status, 4, Running::Failed("LSB status 4: program or service status is unknown".into())),
        (Op::Start, 0, Running::Yes),
        (Op::Start, 5, Running::Failed("LSB exit 5: program is not installed".into())),
        (Op::Stop, 0, Running::No),
        (Op::Stop, 7, Running::No),
        (Op::Stop, 1, Running::Failed("LSB exit 1: generic or unspecified error".into())),
    ];
    for (op, rc, want) in cases {
        let env = vec![("RC".to_string(), rc.to_string())];
        let o = run(&Call { env: &env, ..Call::new(&a, op, T) });
        assert_eq!(o.exit, Some(rc));
        assert_eq!(interpret_status(&a, op, &o), want, "{op:?} {rc}");
        let word = match op {
            Op::Start => "start",
            Op::Stop => "stop",
            _ => "status",
        };
        assert_eq!(fs::read_to_string(&rec).expect("argv"), format!("{word}\n"));
    }
    // LSB status ignores stdout.
    assert_eq!(interpret_status(&a, Op::Status, &outcome(Some(3), "Running OK")), Running::No);
}

#[test]
fn ocf_environment_and_codes() {
    let t = TempDir::new("agents-ocf");
    let root = t.0.join("ocf");
    let envf = t.0.join("env");
    write_script(
        &root.join("resource.d/acme/Fake"),
        &format!("printf '%s\\n' \"$@\" > {0}.argv\nenv > {0}\nexit ${{OCF_RESKEY_rc:-0}}\n", envf.display()),
    );
    let cfg = t.0.join("ha.d");
    let a = resolve("ocf:acme:Fake", &cfg, &cfg, &root).expect("resolve");
    let params = vec![("rc".to_string(), "0".to_string()), ("ip".to_string(), "10.0.0.5".to_string())];
    let env = vec![("HA_CURHOST".to_string(), "nodea".to_string())];
    let args = vec!["ignored".to_string()];
    let call = Call {
        args: &args,
        env: &env,
        ocf_params: &params,
        instance: "vip1",
        ..Call::new(&a, Op::Status, Duration::from_millis(5500))
    };
    let o = run(&call);
    assert_eq!(o.exit, Some(0), "{o:?}");
    assert_eq!(fs::read_to_string(format!("{}.argv", envf.display())).expect("argv"), "monitor\n");
    let env = fs::read_to_string(&envf).expect("env");
    for want in [
        format!("OCF_ROOT={}", root.display()),
        "OCF_RESKEY_ip=10.0.0.5".to_string(),
        "OCF_RESKEY_rc=0".to_string(),
        "OCF_RESOURCE_INSTANCE=vip1".to_string(),
        "OCF_RESOURCE_TYPE=Fake".to_string(),
        "OCF_RESOURCE_PROVIDER=acme".to_string(),
        "OCF_RA_VERSION_MAJOR=1".to_string(),
        "OCF_RA_VERSION_MINOR=0".to_string(),
        "OCF_RESKEY_CRM_meta_timeout=5500".to_string(),
        "HA_CURHOST=nodea".to_string(),
    ] {
        assert!(env.lines().any(|l| l == want), "missing {want} in\n{env}");
    }
    // Without an instance name the type stands in.
    let o = run(&Call::new(&a, Op::Start, T));
    assert_eq!(interpret_status(&a, Op::Start, &o), Running::Yes);
    assert!(fs::read_to_string(&envf).expect("env").lines().any(|l| l == "OCF_RESOURCE_INSTANCE=Fake"));

    let expect = [
        (Op::Monitor, 0, Running::Yes),
        (Op::Monitor, 7, Running::No),
        (Op::Monitor, 8, Running::Yes),
        (Op::Monitor, 1, Running::Failed("OCF_ERR_GENERIC (1)".into())),
        (Op::Monitor, 2, Running::Failed("OCF_ERR_ARGS (2)".into())),
        (Op::Monitor, 3, Running::Failed("OCF_ERR_UNIMPLEMENTED (3)".into())),
        (Op::Monitor, 4, Running::Failed("OCF_ERR_PERM (4)".into())),
        (Op::Monitor, 5, Running::Failed("OCF_ERR_INSTALLED (5)".into())),
        (Op::Monitor, 6, Running::Failed("OCF_ERR_CONFIGURED (6)".into())),
        (Op::Monitor, 9, Running::Failed("OCF_FAILED_MASTER (9)".into())),
        (Op::Monitor, 42, Running::Failed("OCF exit 42 (unknown code)".into())),
        (Op::Start, 0, Running::Yes),
        (Op::Start, 7, Running::Failed("OCF_NOT_RUNNING (7)".into())),
        (Op::Start, 6, Running::Failed("OCF_ERR_CONFIGURED (6)".into())),
        (Op::Stop, 0, Running::No),
        (Op::Stop, 7, Running::No),
        (Op::Stop, 1, Running::Failed("OCF_ERR_GENERIC (1)".into())),
    ];
    // Two through the real script, the rest on synthesized outcomes.
    for (op, rc, want) in &expect[..2] {
        let params = vec![("rc".to_string(), rc.to_string())];
        let o = run(&Call { ocf_params: &params, ..Call::new(&a, *op, T) });
        assert_eq!(interpret_status(&a, *op, &o), *want);
    }
    for (op, rc, want) in expect {
        // OCF status ignores stdout.
        assert_eq!(interpret_status(&a, op, &outcome(Some(rc), "not running")), want, "{op:?} {rc}");
    }
}

#[test]
fn failures_that_are_not_exit_codes() {
    let t = TempDir::new("agents-fail");
    let missing = agent(AgentClass::Lsb, t.0.join("gone"));
    let o = run(&Call::new(&missing, Op::Start, T));
    assert_eq!((o.exit, o.signal, o.timed_out), (None, None, false));
    assert!(o.stderr.contains("cannot run") && o.stderr.contains("gone"), "{o:?}");
    assert_eq!(o.describe(), "not run");
    assert!(
        matches!(interpret_status(&missing, Op::Status, &o), Running::Failed(s) if s.starts_with("not run: cannot run"))
    );

    let a =
        agent(AgentClass::Heartbeat, write_script(&t.0.join("selfkill"), "echo Running; kill -USR1 $$\n"));
    let o = run(&Call::new(&a, Op::Status, T));
    assert_eq!((o.exit, o.signal), (None, Some(libc::SIGUSR1)));
    assert_eq!(o.describe(), "killed by SIGUSR1");
    assert_eq!(interpret_status(&a, Op::Status, &o), Running::Failed("killed by SIGUSR1".into()));

    // A timeout too large for the clock means no timeout, not a panic.
    let ok = agent(AgentClass::Lsb, write_script(&t.0.join("ok"), "exit 0\n"));
    assert_eq!(run(&Call::new(&ok, Op::Status, Duration::MAX)).exit, Some(0));

    let env = vec![("A=B".to_string(), "x".to_string())];
    let o = run(&Call { env: &env, ..Call::new(&a, Op::Status, T) });
    assert!(o.exit.is_none() && o.stderr.contains("invalid environment variable name"), "{o:?}");
}

#[test]
fn timeout_kills_the_whole_tree() {
    let t = TempDir::new("agents-timeout");
    let marker = t.0.display().to_string();
    let msleep = t.0.join("msleep");
    std::os::unix::fs::symlink("/bin/sleep", &msleep).expect("symlink sleep");
    let a = agent(
        AgentClass::Heartbeat,
        write_script(
            &t.0.join("hang"),
            "D=$(dirname \"$0\")\n\
             \"$D/msleep\" 30 &\n\
             ( \"$D/msleep\" 30; \"$D/msleep\" 31 ) &\n\
             setsid \"$D/msleep\" 30 &\n\
             ( trap '' TERM; \"$D/msleep\" 32 ) &\n\
             trap '' TERM\n\
             echo started\n\
             \"$D/msleep\" 30\n",
        ),
    );
    let started = Instant::now();
    let o = run(&Call::new(&a, Op::Start, Duration::from_millis(800)));
    let took = started.elapsed();
    assert!(o.timed_out, "{o:?}");
    assert_eq!(o.exit, None);
    assert_eq!(o.signal, Some(libc::SIGKILL), "the leader ignores SIGTERM");
    assert_eq!(o.stdout, "started\n");
    assert!(o.describe().starts_with("timed out (killed after "), "{}", o.describe());
    assert!(took >= Duration::from_millis(800) && took < Duration::from_secs(5), "{took:?}");
    assert!(matches!(interpret_status(&a, Op::Start, &o), Running::Failed(s) if s.starts_with("timed out")));
    let left = processes_with(&marker);
    kill_all_with(&marker);
    assert!(left.is_empty(), "orphans survived: {left:#?}");
}

#[test]
fn timeout_of_an_agent_that_obeys_sigterm_is_quick() {
    let t = TempDir::new("agents-term");
    let a = agent(AgentClass::Lsb, write_script(&t.0.join("hang"), "sleep 30 & sleep 30\n"));
    let o = run(&Call::new(&a, Op::Status, Duration::from_millis(300)));
    assert!(o.timed_out);
    assert_eq!(o.signal, Some(libc::SIGTERM));
    assert!(o.duration < Duration::from_millis(1500), "{:?}", o.duration);
}

#[test]
fn start_that_leaves_a_daemon_holding_stdout_returns_promptly() {
    let t = TempDir::new("agents-daemon");
    let marker = t.0.display().to_string();
    std::os::unix::fs::symlink("/bin/sleep", t.0.join("msleep")).expect("symlink sleep");
    let alive = t.0.join("alive");
    let a = agent(
        AgentClass::Heartbeat,
        write_script(
            &t.0.join("start"),
            &format!(
                "D=$(dirname \"$0\")\n\
                 ( \"$D/msleep\" 0.5; echo late output; echo late error >&2; \"$D/msleep\" 0.3; touch {}; \"$D/msleep\" 30 ) &\n\
                 echo started\n\
                 exit 0\n",
                alive.display()
            ),
        ),
    );
    let o = run(&Call::new(&a, Op::Start, T));
    assert_eq!(o.exit, Some(0), "{o:?}");
    assert!(!o.timed_out);
    assert_eq!(o.stdout, "started\n");
    assert!(o.duration < Duration::from_millis(400), "{:?}", o.duration);
    // The daemon was not killed, and writing to its stdout after we returned did not kill it.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !alive.exists() && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(50));
    }
    let ok = alive.exists();
    let still = processes_with(&marker);
    kill_all_with(&marker);
    assert!(ok, "daemon died after writing to its inherited stdout");
    assert!(!still.is_empty(), "daemon should still be running");
}

#[test]
fn output_is_bounded_and_chatty_agents_do_not_block() {
    let t = TempDir::new("agents-chatty");
    let a = agent(
        AgentClass::Heartbeat,
        write_script(
            &t.0.join("chatty"),
            "head -c 1000000 /dev/zero | tr '\\0' e >&2\n\
             echo first-line\n\
             head -c 1000000 /dev/zero | tr '\\0' o\n\
             echo; echo last-line\n",
        ),
    );
    let o = run(&Call::new(&a, Op::Stop, T));
    assert_eq!(o.exit, Some(0), "{}", o.describe());
    for s in [&o.stdout, &o.stderr] {
        assert!(s.len() <= OUTPUT_LIMIT + 64, "{}", s.len());
        assert!(s.contains(" bytes omitted ...]"));
    }
    assert!(o.stdout.starts_with("first-line\nooo"));
    assert!(o.stdout.ends_with("ooo\nlast-line\n"));
    let omitted = 1_000_000 + "first-line\n\nlast-line\n".len() - OUTPUT_LIMIT;
    assert!(o.stdout.contains(&format!("[... {omitted} bytes omitted ...]")), "{omitted}");
    assert!(o.stderr.starts_with("eee") && o.stderr.ends_with("eee"));
}

/// The real Debian Dummy agent (package resource-agents) through its whole life cycle.
#[test]
fn real_ocf_dummy_agent() {
    let ocf_root = Path::new("/usr/lib/ocf");
    let t = TempDir::new("agents-dummy");
    let a = match resolve("ocf:heartbeat:Dummy", &t.0, &t.0, ocf_root) {
        Ok(a) => a,
        Err(e) => return skip("real_ocf_dummy_agent", &format!("{e} (apt-get install resource-agents)")),
    };
    let state = t.0.join("dummy.state");
    let params = vec![("state".to_string(), state.display().to_string())];
    let step = |op: Op| {
        let o = run(&Call {
            ocf_params: &params,
            instance: "dummy1",
            ..Call::new(&a, op, Duration::from_secs(20))
        });
        (o.exit, interpret_status(&a, op, &o), o)
    };
    let (rc, r, o) = step(Op::Monitor);
    assert_eq!((rc, r), (Some(7), Running::No), "{o:?}");
    let (rc, r, o) = step(Op::Start);
    assert_eq!((rc, r), (Some(0), Running::Yes), "{o:?}");
    assert!(state.exists());
    let (rc, r, o) = step(Op::Status);
    assert_eq!((rc, r), (Some(0), Running::Yes), "{o:?}");
    let (rc, r, o) = step(Op::Stop);
    assert_eq!((rc, r), (Some(0), Running::No), "{o:?}");
    let (rc, r, o) = step(Op::Monitor);
    assert_eq!((rc, r), (Some(7), Running::No), "{o:?}");
}

/// A real Heartbeat wrapper (`/etc/ha.d/resource.d/Delay`, package heartbeat): its status
/// says "Resource is stopped" and exits 7, which ResourceManager reads as not running.
#[test]
fn real_heartbeat_wrapper_status() {
    let cfg = Path::new("/etc/ha.d");
    let a = match resolve("Delay", cfg, Path::new("/etc/init.d"), Path::new("/usr/lib/ocf")) {
        Ok(a) if a.class == AgentClass::Heartbeat => a,
        _ => {
            return skip(
                "real_heartbeat_wrapper_status",
                "/etc/ha.d/resource.d/Delay missing (package heartbeat)",
            )
        }
    };
    let args = vec!["1".to_string()];
    // The wrapper maps status to monitor, which sleeps `mondelay` (30 s by default) first.
    let env = vec![("OCF_RESKEY_mondelay".to_string(), "0".to_string())];
    let o = run(&Call { args: &args, env: &env, ..Call::new(&a, Op::Status, Duration::from_secs(20)) });
    assert!(o.stdout.contains("Resource is stopped"), "{o:?}");
    assert_eq!(interpret_status(&a, Op::Status, &o), Running::No);
}
