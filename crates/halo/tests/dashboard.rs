//! The web dashboard (`halo run --http`, `/`) in a real browser: a two-node cluster in
//! network namespaces with seed 002's group (a VIP and halo's built-in director over two
//! LVS-DR real servers), n1 serving the dashboard on its loopback, headless Chromium in n1's
//! namespace driven over the DevTools protocol (`--remote-debugging-pipe`: NUL-separated
//! JSON on fds 3 and 4, no websocket and no port to reach across namespaces). The page must
//! show both nodes, the group and the real servers, draw the load chart from the `ld` of
//! both nodes, the traffic chart from the director's counters and the connections chart
//! (ActiveConn per real server), log no console error, and report n2 going dead as an event. The screenshot is kept in the test's temp dir
//! (and in `target/tmp/dashboard.png` to look at).
use halo::testbed::{wait_for, Testbed};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const HALO: &str = env!("CARGO_BIN_EXE_halo");
const CHROMIUM: &str = "/usr/bin/chromium";
const AUTHKEYS: &str = "auth 1\n1 sha1 dashboard-secret\n";
const VIP: &str = "10.81.0.100";
const LDIRECTORD_CF: &str = "\
checktimeout=3
checkinterval=1

virtual=10.81.0.100:80
\treal=10.81.0.1:80 gate 1 \"testcluster.html\", \"N1\"
\treal=10.81.0.2:80 gate 1 \"testcluster.html\", \"N2\"
\tchecktype=negotiate
\tservice=http
\tcheckport=80
\tscheduler=rr
";

/// Headless Chromium with its DevTools pipe; killed (its whole process group) on drop.
struct Browser {
    child: Child,
    to: std::fs::File,
    from: mpsc::Receiver<Value>,
    next_id: u64,
    /// Events received while waiting for answers.
    events: Vec<Value>,
}

impl Browser {
    fn start(ns: &str, profile: &Path, log: &Path) -> Browser {
        let (our_rx, their_tx) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
        let (their_rx, our_tx) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
        let (cin, cout) = (their_rx.as_raw_fd(), their_tx.as_raw_fd());
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", ns, CHROMIUM])
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-dev-shm-usage",
                "--hide-scrollbars",
                "--window-size=1400,1100",
                "--remote-debugging-pipe",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(log).unwrap())
            .stderr(std::fs::File::create(log.with_extension("err")).unwrap())
            .process_group(0);
        // SAFETY: only async-signal-safe calls (fcntl, dup2) between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                // Out of the way of 3 and 4 first, then onto them (dup2 clears CLOEXEC).
                let a = libc::fcntl(cin, libc::F_DUPFD, 10);
                let b = libc::fcntl(cout, libc::F_DUPFD, 10);
                if a < 0 || b < 0 || libc::dup2(a, 3) < 0 || libc::dup2(b, 4) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().expect("starting chromium");
        drop((their_rx, their_tx));
        let (tx, from) = mpsc::channel();
        std::thread::spawn(move || read_messages(our_rx, tx));
        Browser { child, to: std::fs::File::from(our_tx), from, next_id: 0, events: Vec::new() }
    }

    /// One DevTools command (in `session` when given); its result.
    fn call(&mut self, session: Option<&str>, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut msg = json!({"id": id, "method": method, "params": params});
        if let Some(s) = session {
            msg["sessionId"] = json!(s);
        }
        let mut bytes = msg.to_string().into_bytes();
        bytes.push(0);
        self.to.write_all(&bytes).expect("writing to chromium");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let m =
                self.from.recv_timeout(left).unwrap_or_else(|_| panic!("chromium did not answer {method}"));
            if m.get("id").and_then(|i| i.as_u64()) == Some(id) {
                if let Some(e) = m.get("error") {
                    panic!("{method}: {e}");
                }
                return m["result"].clone();
            }
            self.events.push(m);
        }
    }

    /// Takes the events that arrived without being waited for.
    fn drain(&mut self) {
        while let Ok(m) = self.from.try_recv() {
            self.events.push(m);
        }
    }

    /// Console errors, uncaught exceptions and failed loads the page reported.
    fn errors(&mut self) -> Vec<String> {
        self.drain();
        self.events
            .iter()
            .filter_map(|e| {
                let p = &e["params"];
                match e["method"].as_str()? {
                    "Runtime.exceptionThrown" => Some(format!("exception: {}", p["exceptionDetails"])),
                    "Runtime.consoleAPICalled" if matches!(p["type"].as_str(), Some("error" | "assert")) => {
                        Some(format!("console.{}: {}", p["type"], p["args"]))
                    }
                    "Log.entryAdded" if p["entry"]["level"] == "error" => {
                        Some(format!("log: {}", p["entry"]))
                    }
                    _ => None,
                }
            })
            .collect()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let pgid = nix::unistd::Pid::from_raw(-(self.child.id() as i32));
        let _ = nix::sys::signal::kill(pgid, nix::sys::signal::Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

fn read_messages(fd: OwnedFd, tx: mpsc::Sender<Value>) {
    let mut f = std::fs::File::from(fd);
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 1 << 16];
    loop {
        let n = match f.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        while let Some(end) = buf.iter().position(|b| *b == 0) {
            let msg: Vec<u8> = buf.drain(..=end).collect();
            if let Ok(v) = serde_json::from_slice(&msg[..msg.len() - 1]) {
                if tx.send(v).is_err() {
                    return;
                }
            }
        }
    }
}

fn base64_decode(s: &str) -> Vec<u8> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        _ => 63,
    };
    let clean: Vec<u8> =
        s.bytes().filter(|c| c.is_ascii_alphanumeric() || *c == b'+' || *c == b'/').collect();
    let mut out = Vec::with_capacity(clean.len() * 3 / 4);
    for chunk in clean.chunks(4) {
        let v: Vec<u32> = chunk.iter().map(|c| u32::from(val(*c))).collect();
        let n = v.iter().enumerate().fold(0u32, |acc, (i, x)| acc | (x << (18 - 6 * i)));
        out.push((n >> 16) as u8);
        if v.len() > 2 {
            out.push((n >> 8) as u8);
        }
        if v.len() > 3 {
            out.push(n as u8);
        }
    }
    out
}

fn config(tb: &Testbed, node: &str) -> PathBuf {
    let log = tb.dir.join(format!("{node}.log"));
    let cf = format!(
        "keepalive 100ms\nwarntime 500ms\ndeadtime 1\ninitdead 3\nbcast eth0\nauto_failback on\n\
         node n1 n2\nlogfile {}\nrealtime off\n",
        log.display()
    );
    let group = format!("n1 IPaddr2::{VIP}/16/eth0 ldirectord::ldirectord.cf\n");
    tb.write_director_config(node, &cf, AUTHKEYS, &group, LDIRECTORD_CF).unwrap()
}

fn logs(tb: &Testbed) -> String {
    let r = |f: &str| std::fs::read_to_string(tb.dir.join(f)).unwrap_or_default();
    format!(
        "--- n1\n{}{}\n--- n2\n{}{}\n--- chromium\n{}",
        r("n1.log"),
        r("n1.out"),
        r("n2.log"),
        r("n2.out"),
        r("chromium.err")
    )
}

/// Kills what is left in the namespaces (web servers, the browser's helpers).
struct Reaper(Vec<String>);

impl Drop for Reaper {
    fn drop(&mut self) {
        for ns in &self.0 {
            let Ok(out) = Command::new("ip").args(["netns", "pids", ns]).output() else { continue };
            for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                if let Ok(pid) = pid.parse::<i32>() {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
            }
        }
    }
}

/// The sample of `metric` with exactly these labels in a Prometheus text.
fn sample(m: &str, metric: &str, labels: &str) -> Option<f64> {
    let key = format!("{metric}{{{labels}}} ");
    m.lines().find_map(|l| l.strip_prefix(&key)).and_then(|v| v.parse().ok())
}

/// n1's `/metrics` with the cluster up and traffic through the VIP: n2's heartbeat interval
/// histogram, both nodes' load from `ld`, the director's real servers and the sync counters.
fn check_metrics(tb: &Testbed) {
    let o = tb.exec("n1", &["curl", "-s", "--max-time", "3", "http://127.0.0.1:9694/metrics"]).unwrap();
    let m = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(m.contains("# TYPE halo_heartbeat_interval_seconds histogram"), "{m}");
    let n2 = "node=\"n2\"";
    let count = sample(&m, "halo_heartbeat_interval_seconds_count", n2).unwrap_or(0.0);
    assert!(count > 0.0, "no heartbeat interval counted for n2:\n{m}");
    let inf = sample(&m, "halo_heartbeat_interval_seconds_bucket", &format!("{n2},le=\"+Inf\""));
    assert_eq!(inf, Some(count), "+Inf bucket is the count\n{m}");
    let buckets: Vec<f64> = m
        .lines()
        .filter(|l| l.starts_with(&format!("halo_heartbeat_interval_seconds_bucket{{{n2},")))
        .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
        .collect();
    assert!(buckets.len() > 10 && buckets.windows(2).all(|w| w[0] <= w[1]), "{buckets:?}\n{m}");
    assert!(sample(&m, "halo_heartbeat_interval_seconds_sum", n2).is_some_and(|s| s > 0.0), "{m}");
    // n1 does not time itself.
    assert!(sample(&m, "halo_heartbeat_interval_seconds_count", "node=\"n1\"").is_none(), "{m}");
    for node in ["n1", "n2"] {
        for k in ["1", "5", "15"] {
            let l = sample(&m, &format!("halo_node_load{k}"), &format!("node=\"{node}\""));
            assert!(l.is_some_and(|l| l >= 0.0), "no halo_node_load{k} for {node}\n{m}");
        }
    }
    // The director's two real servers, up, with the fetches through the VIP counted.
    let mut forwarded = 0.0;
    for rs in ["10.81.0.1:80", "10.81.0.2:80"] {
        let l = format!("service=\"tcp:{VIP}:80\",real_server=\"{rs}\"");
        assert_eq!(sample(&m, "halo_real_server_up", &l), Some(1.0), "{rs}\n{m}");
        assert_eq!(sample(&m, "halo_real_server_weight", &l), Some(1.0), "{rs}\n{m}");
        assert!(sample(&m, "halo_real_server_checks_total", &l).is_some_and(|c| c > 0.0), "{rs}\n{m}");
        // LVS-DR on nftables: counted from the plane's flow sets.
        assert!(sample(&m, "halo_real_server_active_connections", &l).is_some(), "{rs}\n{m}");
        forwarded += sample(&m, "halo_real_server_packets_total", &format!("{l},direction=\"in\""))
            .unwrap_or_else(|| panic!("no packet counter for {rs}\n{m}"));
        assert!(
            sample(&m, "halo_real_server_bytes_total", &format!("{l},direction=\"in\"")).is_some(),
            "{rs}\n{m}"
        );
    }
    assert!(forwarded > 0.0, "no packet forwarded to a real server counted\n{m}");
    // No lvs_sync_daemon in ha.cf: the sync counters are there and nothing was sent.
    assert!(m.lines().any(|l| l == "halo_director_sync_sent_datagrams_total 0"), "{m}");
}

#[test]
fn dashboard_in_headless_chromium_shows_the_cluster_and_its_charts() {
    let Some(mut tb) = Testbed::for_test("dash") else { return };
    if !Path::new(CHROMIUM).exists() {
        if std::env::var("HALO_REQUIRE_ROOT").as_deref() == Ok("1") {
            panic!("{CHROMIUM} is missing (scripts/test.sh installs Debian's chromium)");
        }
        eprintln!("skipping: {CHROMIUM} is not installed");
        return;
    }
    tb.add_host("n1", "10.81.0.1/16").unwrap();
    tb.add_host("n2", "10.81.0.2/16").unwrap();
    tb.add_host("client", "10.81.0.9/16").unwrap();
    let _reaper = Reaper(["n1", "n2", "client"].iter().map(|h| tb.ns(h)).collect());

    let mut pids = Vec::new();
    for n in ["n1", "n2"] {
        let dir = config(&tb, n);
        // A web server answering N1 / N2, and the LVS-DR real-server set-up.
        let www = tb.dir.join(n).join("www");
        std::fs::create_dir_all(&www).unwrap();
        std::fs::write(www.join("testcluster.html"), format!("{}\n", n.to_uppercase())).unwrap();
        let script = format!("cd {} && exec python3 -m http.server 80 --bind 0.0.0.0", www.display());
        tb.spawn(n, Path::new("/bin/sh"), &["-c", &script], &tb.dir.join(format!("{n}.web"))).unwrap();
        let state = tb.dir.join(n).join("state");
        std::fs::create_dir_all(&state).unwrap();
        let rs = Command::new("ip")
            .args(["netns", "exec", &tb.ns(n), HALO, "lvs", "realserver", "start", "--config-dir"])
            .arg(&dir)
            .arg("--state-dir")
            .arg(&state)
            .output()
            .unwrap();
        assert!(rs.status.success(), "realserver start on {n}: {}", String::from_utf8_lossy(&rs.stderr));

        let sock = tb.dir.join(format!("{n}.sock"));
        let mut args: Vec<String> = vec!["--socket".into(), sock.display().to_string(), "run".into()];
        args.extend(["--config-dir".into(), dir.display().to_string(), "--node".into(), n.into()]);
        args.extend(["--state-dir".into(), state.display().to_string()]);
        if n == "n1" {
            args.extend(["--http".into(), "127.0.0.1:9694".into()]);
        }
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        pids.push(tb.spawn(n, Path::new(HALO), &a, &tb.dir.join(format!("{n}.out"))).unwrap());
    }
    let sock1 = tb.dir.join("n1.sock");
    let director_up = wait_for(Duration::from_secs(30), || {
        let o = Command::new(HALO).arg("--socket").arg(&sock1).args(["lvs", "--health"]).output().ok()?;
        let t = String::from_utf8_lossy(&o.stdout).into_owned();
        (t.matches("weight 1").count() == 2).then_some(t)
    });
    assert!(director_up.is_some(), "n1 never ran the director with both real servers\n{}", logs(&tb));
    // Some traffic through the VIP, for the counters.
    let fetch = |tb: &Testbed| {
        let _ =
            tb.exec("client", &["curl", "-s", "--max-time", "2", &format!("http://{VIP}/testcluster.html")]);
    };
    for _ in 0..4 {
        fetch(&tb);
    }

    let profile = tb.dir.join("chromium-profile");
    std::fs::create_dir_all(&profile).unwrap();
    let mut b = Browser::start(&tb.ns("n1"), &profile, &tb.dir.join("chromium.out"));
    let target = b.call(None, "Target.createTarget", json!({"url": "about:blank"}));
    let target = target["targetId"].as_str().expect("targetId").to_string();
    let session = b.call(None, "Target.attachToTarget", json!({"targetId": target, "flatten": true}));
    let session = session["sessionId"].as_str().expect("sessionId").to_string();
    let s = Some(session.as_str());
    for m in ["Runtime.enable", "Log.enable", "Page.enable"] {
        b.call(s, m, json!({}));
    }
    let nav = b.call(s, "Page.navigate", json!({"url": "http://127.0.0.1:9694/"}));
    assert!(nav.get("errorText").is_none(), "navigation failed: {nav}\n{}", logs(&tb));

    let eval = |b: &mut Browser, expr: &str| -> Value {
        let r = b.call(s, "Runtime.evaluate", json!({"expression": expr, "returnByValue": true}));
        r["result"]["value"].clone()
    };
    const PROBE: &str = "JSON.stringify({text: document.body.innerText, \
        polls: window.halo ? window.halo.polls : 0, \
        load: [...document.querySelectorAll('#load-chart path.series')].map(p => [p.dataset.name, +p.dataset.points]), \
        traffic: [...document.querySelectorAll('#traffic-chart path.series')].map(p => [p.dataset.name, +p.dataset.points]), \
        conns: [...document.querySelectorAll('#conns-chart path.series')].map(p => [p.dataset.name, +p.dataset.points])})";
    let group = format!("IPaddr2::{VIP}/16/eth0");
    let deadline = Instant::now() + Duration::from_secs(40);
    let (ready, last) = loop {
        fetch(&tb);
        let v: Value =
            eval(&mut b, PROBE).as_str().and_then(|t| serde_json::from_str(t).ok()).unwrap_or(Value::Null);
        let text = v["text"].as_str().unwrap_or("");
        let charted = |k: &str, n: usize| {
            v[k].as_array().is_some_and(|a| a.iter().filter(|s| s[1].as_u64().unwrap_or(0) >= 2).count() >= n)
        };
        let ok = v["polls"].as_u64().unwrap_or(0) >= 4
            && text.contains("n1 (this node)")
            && text.contains("\nn2\t")
            && text.contains(&group)
            && text.contains("Started n1")
            && text.contains("10.81.0.1:80")
            && text.contains("10.81.0.2:80")
            && charted("load", 2)
            && charted("traffic", 2)
            && charted("conns", 2);
        if ok || Instant::now() > deadline {
            break (ok, v);
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    assert!(ready, "the dashboard never showed the cluster and its three charts:\n{last:#}\n{}", logs(&tb));
    let text = last["text"].as_str().unwrap_or("");
    assert!(text.contains("active"), "{text}");
    assert!(text.contains("communication up"), "{text}");

    check_metrics(&tb);

    let shot = b.call(s, "Page.captureScreenshot", json!({"format": "png"}));
    let png = base64_decode(shot["data"].as_str().expect("screenshot data"));
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    std::fs::write(tb.dir.join("dashboard.png"), &png).unwrap();
    let keep = Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard.png");
    let _ = std::fs::write(&keep, &png);
    // A blank 1400x1100 page compresses to a few kB; tables, text and two charts do not.
    assert!(png.len() > 30_000, "the screenshot looks blank ({} bytes, {})", png.len(), keep.display());
    // Painted, not only in the DOM: the charts have a size on screen.
    let h = eval(&mut b, "document.getElementById('load-chart').getBoundingClientRect().height");
    assert!(h.as_f64().unwrap_or(0.0) > 100.0, "load chart height {h}");

    // n2 leaves: the page turns it dead and says so in its events.
    tb.stop(pids[1], nix::sys::signal::Signal::SIGTERM).unwrap();
    let seen = wait_for(Duration::from_secs(15), || {
        let t = eval(&mut b, "document.getElementById('events').innerText");
        t.as_str().filter(|t| t.contains("node n2 went dead")).map(str::to_string)
    });
    assert!(
        seen.is_some(),
        "no 'node n2 went dead' event\n{}\n{}",
        eval(&mut b, "document.body.innerText"),
        logs(&tb)
    );
    let row = eval(&mut b, "document.querySelector('tr[data-id=\"node:n2\"]').innerText");
    assert!(row.as_str().is_some_and(|r| r.contains("dead")), "{row}");

    let errors = b.errors();
    assert!(errors.is_empty(), "the page logged errors:\n{}", errors.join("\n"));
}
