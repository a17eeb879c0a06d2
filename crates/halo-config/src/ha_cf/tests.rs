use super::*;
use crate::model::*;

fn parse(text: &str) -> Result<(HaCf, Vec<Diagnostic>), ConfigError> {
    parse_ha_cf(Path::new("ha.cf"), text)
}

fn ok(text: &str) -> (HaCf, Vec<String>) {
    match parse(text) {
        Ok((cfg, w)) => (cfg, w.iter().map(|d| d.to_string()).collect()),
        Err(e) => panic!("unexpected errors for {text:?}:\n{e}"),
    }
}

fn errs(text: &str) -> Vec<String> {
    match parse(text) {
        Ok(_) => panic!("expected errors for {text:?}"),
        Err(e) => e.errors.iter().map(|d| d.to_string()).collect(),
    }
}

fn one_err(text: &str) -> String {
    let e = errs(text);
    assert_eq!(e.len(), 1, "expected exactly one error, got {e:?}");
    e.into_iter().next().unwrap_or_default()
}

/// One valid line per accepted directive; checked against the directive tables below.
const ACCEPT: &[&str] = &[
    "cluster mycluster",
    "node alpha beta",
    "hopfudge 2",
    "keepalive 500ms",
    "deadtime 10",
    "deadping 20",
    "initdead 60",
    "warntime 5",
    "watchdog /dev/watchdog",
    "baud 38400",
    "udpport 695",
    "logfacility local0",
    "logfile /var/log/ha-log",
    "debugfile /var/log/ha-debug",
    "nice_failback on",
    "auto_failback on",
    "rtprio 5",
    "hbgenmethod time",
    "realtime off",
    "debug 3",
    "msgfmt netstring",
    "use_logd yes",
    "conn_logd_time 30",
    "use_apphbd no",
    "log_badpack false",
    "syslogmsgfmt false",
    "coredumps no",
    "coreroot /var/lib/heartbeat/cores",
    "crm_daemon_dir /usr/lib/pacemaker",
    "crmd_spawns_pengine yes",
    "crm respawn",
    "pacemaker off",
    "autojoin other",
    "uuidfrom nodename",
    "compression bz2",
    "compression_threshold 4",
    "traditional_compression yes",
    "env FOO=bar",
    "max_rexmit_delay 300",
    "record_config_changes off",
    "record_pengine_inputs off",
    "enable_config_writes off",
    "memreserve 8000",
    "quorum_server qs.example.com",
    "stonith baytech /etc/ha.d/conf/stonith.baytech",
    "stonith_host * baytech 10.0.0.3 mylogin mysecretpassword",
    "apiauth ipfail uid=hacluster",
    "respawn hacluster /usr/lib/heartbeat/ipfail",
    "failfast hacluster /usr/lib/heartbeat/ccm",
    "mcast eth0 225.0.0.1 694 1 0",
    "mcast6 eth0 ff02::694 694 1 0",
    "ucast eth0 10.0.0.2",
    "ucast6 eth0 fe80::1%eth0",
    "ping_group group1 10.0.0.1 10.0.0.2",
    "bcast eth0 eth1",
    "serial /dev/ttyS0",
    "ping 10.0.0.254",
    "ping6 2001:db8::1",
    "no_quorum_policy freeze",
    "notify /usr/local/bin/halo-hook --event",
    "lvs_sync_daemon eth1 id 3",
];

#[test]
fn every_directive_has_an_accept_case() {
    for d in all_directives() {
        assert!(ACCEPT.iter().any(|l| l.split_whitespace().next() == Some(d)), "no accept case for {d}");
    }
}

#[test]
fn every_directive_is_accepted() {
    for line in ACCEPT {
        // `crm` and `pacemaker` may appear only once per file, so each line is parsed alone.
        let text = format!("{line}\n");
        if let Err(e) = parse(&text) {
            panic!("{line:?} was refused:\n{e}");
        }
    }
}

#[test]
fn accepted_values_reach_the_model() {
    let text = "\
cluster mycluster
node Alpha beta
hopfudge 2
keepalive 500ms
deadtime 10
deadping 20
initdead 60
warntime 5
watchdog /dev/watchdog
udpport 695
baud 38400
logfacility local0
logfile /var/log/ha-log
debugfile /var/log/ha-debug
auto_failback off
rtprio 5
hbgenmethod time
realtime off
debug 3
msgfmt netstring
use_logd yes
conn_logd_time 30
use_apphbd no
log_badpack false
syslogmsgfmt false
coredumps no
coreroot /cores
crm_daemon_dir /usr/lib/pacemaker
crmd_spawns_pengine yes
pacemaker respawn
autojoin other
uuidfrom nodename
compression bz2
compression_threshold 4
traditional_compression yes
env FOO=bar,BAZ=
max_rexmit_delay 300
record_config_changes off
record_pengine_inputs off
enable_config_writes off
memreserve 8000
stonith baytech /etc/ha.d/conf/stonith.baytech
stonith_host * baytech 10.0.0.3 login pw
apiauth ipfail uid=hacluster
apiauth ping gid=haclient,root uid=root
respawn hacluster /usr/lib/heartbeat/ipfail -v
failfast root /usr/lib/heartbeat/ccm
mcast eth1 225.0.0.7 694 1 1
mcast6 eth2 ff05::1:3 700 2 0
ucast eth3 10.0.0.2
ucast6 eth4 2001:db8::2
ping_group Group1 10.0.0.1 10.0.0.2
bcast eth5
serial /dev/ttyS0
ping 10.0.0.254
ping6 2001:db8::1
";
    let (c, _) = ok(text);
    assert_eq!(c.cluster, "mycluster");
    assert_eq!(c.nodes, vec!["alpha", "beta"]);
    assert_eq!(c.hopfudge, 2);
    assert_eq!(c.keepalive_ms, 500);
    assert_eq!(c.deadtime_ms, 10_000);
    assert_eq!(c.deadping_ms, 20_000);
    assert_eq!(c.initdead_ms, 60_000);
    assert_eq!(c.warntime_ms, 5_000);
    assert_eq!(c.watchdog, Some(PathBuf::from("/dev/watchdog")));
    assert_eq!(c.udpport, 695);
    assert_eq!(c.baud, 38400);
    assert_eq!(c.logfacility.as_deref(), Some("local0"));
    assert_eq!(c.logfile, Some(PathBuf::from("/var/log/ha-log")));
    assert_eq!(c.debugfile, Some(PathBuf::from("/var/log/ha-debug")));
    assert_eq!(c.auto_failback, AutoFailback::Off);
    assert_eq!(c.rtprio, Some(5));
    assert_eq!(c.hbgenmethod, GenMethod::Time);
    assert!(!c.realtime);
    assert_eq!(c.debug, 3);
    assert_eq!(c.msgfmt, MsgFmt::Netstring);
    assert_eq!(c.use_logd, Some(true));
    assert_eq!(c.conn_logd_time_ms, Some(30_000));
    assert_eq!(c.use_apphbd, Some(false));
    assert!(!c.log_badpack);
    assert!(!c.syslogmsgfmt);
    assert!(!c.coredumps);
    assert_eq!(c.coreroot, Some(PathBuf::from("/cores")));
    assert_eq!(c.crm_daemon_dir, Some(PathBuf::from("/usr/lib/pacemaker")));
    assert_eq!(c.crmd_spawns_pengine, Some(true));
    assert_eq!(c.crm.as_deref(), Some("respawn"));
    assert!(c.pacemaker_enabled());
    assert_eq!(c.autojoin, Autojoin::Other);
    assert_eq!(c.uuidfrom, UuidFrom::Nodename);
    assert_eq!(c.compression.as_deref(), Some("bz2"));
    assert_eq!(c.compression_threshold_kib, Some(4));
    assert_eq!(c.traditional_compression, Some(true));
    assert_eq!(c.env, vec![("FOO".to_string(), "bar".to_string()), ("BAZ".to_string(), String::new())]);
    assert_eq!(c.max_rexmit_delay_ms, 300);
    assert_eq!(c.record_config_changes, Some(false));
    assert_eq!(c.record_pengine_inputs, Some(false));
    assert_eq!(c.enable_config_writes, Some(false));
    assert_eq!(c.memreserve_kib, Some(8000));
    assert_eq!(c.stonith.as_deref(), Some("baytech /etc/ha.d/conf/stonith.baytech"));
    assert_eq!(c.stonith_host, vec!["* baytech 10.0.0.3 login pw"]);
    assert_eq!(c.apiauth, vec!["ipfail uid=hacluster", "ping gid=haclient,root uid=root"]);
    assert_eq!(c.respawn.len(), 1);
    assert_eq!(c.respawn[0].user, "hacluster");
    assert_eq!(c.respawn[0].command, "/usr/lib/heartbeat/ipfail -v");
    assert_eq!(c.respawn[0].program(), "/usr/lib/heartbeat/ipfail");
    assert_eq!(c.respawn[0].line, 46);
    assert_eq!(c.failfast[0].user, "root");
    assert_eq!(
        c.media,
        vec![
            Medium::Mcast {
                iface: "eth1".into(),
                group: Ipv4Addr::new(225, 0, 0, 7),
                port: 694,
                ttl: 1,
                looped: true
            },
            Medium::Mcast6 { iface: "eth2".into(), group: "ff05::1:3".parse().unwrap(), port: 700, hops: 2 },
            Medium::Ucast { iface: "eth3".into(), peer: "10.0.0.2".into() },
            Medium::Ucast6 { iface: "eth4".into(), peer: "2001:db8::2".into() },
            Medium::Bcast { iface: "eth5".into() },
            Medium::Serial { device: "/dev/ttyS0".into(), baud: 38400 },
        ]
    );
    assert_eq!(
        c.ping_nodes,
        vec![
            PingNode {
                name: "group1".into(),
                addrs: vec!["10.0.0.1".into(), "10.0.0.2".into()],
                kind: PingKind::Group
            },
            PingNode { name: "10.0.0.254".into(), addrs: vec!["10.0.0.254".into()], kind: PingKind::Ping },
            PingNode { name: "2001:db8::1".into(), addrs: vec!["2001:db8::1".into()], kind: PingKind::Ping6 },
        ]
    );
    assert_eq!(c.port_of(&c.media[2]), Some(695));
    assert_eq!(c.port_of(&c.media[0]), Some(694));
    assert_eq!(c.port_of(&c.media[5]), None);
    assert_eq!(c.line_of("keepalive"), Some(4));
    assert_eq!(c.line_of("node"), Some(2));
}

#[test]
fn rejections_name_file_line_and_expectation() {
    let table: &[(&str, &str)] = &[
        ("keepalive 500s", "ha.cf:1: keepalive: expected a time such as 2, 1.5 or 500ms (seconds unless suffixed ms or us), got '500s'"),
        ("keepalive 0", "ha.cf:1: keepalive: must be more than 0 ms, got '0'"),
        ("deadtime 1m", "ha.cf:1: deadtime: expected a time such as 2, 1.5 or 500ms (seconds unless suffixed ms or us), got '1m'"),
        ("deadping abc", "ha.cf:1: deadping: expected a time"),
        ("initdead -5", "ha.cf:1: initdead: expected a time"),
        ("warntime 0", "ha.cf:1: warntime: must be more than 0 ms, got '0'"),
        ("conn_logd_time 2sec", "ha.cf:1: conn_logd_time: expected a time"),
        ("hopfudge 256", "ha.cf:1: hopfudge: expected a whole number from 0 to 255, got '256'"),
        ("hopfudge x", "ha.cf:1: hopfudge: expected a whole number from 0 to 255, got 'x'"),
        ("baud 12345", "ha.cf:1: baud: expected one of 9600, 19200, 38400, 57600, 115200, 230400, 460800, got '12345'"),
        ("udpport 0", "ha.cf:1: udpport: expected a port number from 1 to 65535, got '0'"),
        ("udpport 70000", "ha.cf:1: udpport: expected a port number from 1 to 65535, got '70000'"),
        ("logfacility LOCAL0", "ha.cf:1: logfacility: expected a syslog facility"),
        ("nice_failback maybe", "ha.cf:1: nice_failback: expected a boolean (true/false, on/off, yes/no, y/n, 1/0), got 'maybe'"),
        ("auto_failback sometimes", "ha.cf:1: auto_failback: expected on, off or legacy, got 'sometimes'"),
        ("rtprio 0", "ha.cf:1: rtprio: expected a realtime priority from 1 to 99 (the SCHED_FIFO range on Linux), got '0'"),
        ("rtprio 100", "ha.cf:1: rtprio: expected a realtime priority"),
        ("hbgenmethod File", "ha.cf:1: hbgenmethod: expected file or time, got 'File'"),
        ("realtime sure", "ha.cf:1: realtime: expected a boolean"),
        ("debug 300", "ha.cf:1: debug: expected a debug level from 0 to 255, got '300'"),
        ("msgfmt xml", "ha.cf:1: msgfmt: expected classic or netstring, got 'xml'"),
        ("use_logd perhaps", "ha.cf:1: use_logd: expected a boolean"),
        ("use_apphbd 2", "ha.cf:1: use_apphbd: expected a boolean"),
        ("log_badpack 2", "ha.cf:1: log_badpack: expected a boolean"),
        ("syslogmsgfmt 2", "ha.cf:1: syslogmsgfmt: expected a boolean"),
        ("coredumps 2", "ha.cf:1: coredumps: expected a boolean"),
        ("crmd_spawns_pengine 2", "ha.cf:1: crmd_spawns_pengine: expected a boolean"),
        ("crm sometimes", "ha.cf:1: crm: expected a boolean, respawn, minimal, manual, ccm-only or valgrind, got 'sometimes'"),
        ("pacemaker x", "ha.cf:1: pacemaker: expected a boolean, respawn"),
        ("autojoin all", "ha.cf:1: autojoin: expected none, other or any, got 'all'"),
        ("uuidfrom name", "ha.cf:1: uuidfrom: expected file or nodename, got 'name'"),
        ("compression gzip", "ha.cf:1: compression: expected zlib or bz2 (the compression plugins Heartbeat ships), got 'gzip'"),
        ("compression_threshold 0", "ha.cf:1: compression_threshold: expected a size in KiB greater than 0, got '0'"),
        ("traditional_compression 2", "ha.cf:1: traditional_compression: expected a boolean"),
        ("record_config_changes 2", "ha.cf:1: record_config_changes: expected a boolean"),
        ("record_pengine_inputs 2", "ha.cf:1: record_pengine_inputs: expected a boolean"),
        ("enable_config_writes 2", "ha.cf:1: enable_config_writes: expected a boolean"),
        ("env FOO", "ha.cf:1: env: expected NAME=value (exported as HA_NAME; no spaces or commas), got 'FOO'"),
        ("env =x", "ha.cf:1: env: expected NAME=value"),
        ("max_rexmit_delay 250ms", "ha.cf:1: max_rexmit_delay: expected a whole number of milliseconds greater than 0 (no unit), got '250ms'"),
        ("max_rexmit_delay 0", "ha.cf:1: max_rexmit_delay: expected a whole number of milliseconds"),
        ("memreserve 0", "ha.cf:1: memreserve: expected a size in KiB greater than 0, got '0'"),
        ("node a234567890123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890", "ha.cf:1: node: node name 'a2345678"),
        ("stonith", "ha.cf:1: stonith: expected 'stonith TYPE CONFIGFILE', got nothing"),
        ("stonith_host *", "ha.cf:1: stonith_host: expected 'stonith_host HOST|* TYPE PARAMS...', got '*'"),
        ("apiauth", "ha.cf:1: apiauth: expected 'apiauth CLIENT [uid=user,...] [gid=group,...]' with a uid or gid list, got nothing"),
        ("apiauth ipfail", "ha.cf:1: apiauth: expected 'apiauth CLIENT [uid=user,...] [gid=group,...]' with a uid or gid list, got 'ipfail'"),
        ("apiauth ipfail user=x", "ha.cf:1: apiauth: expected 'apiauth CLIENT [uid=user,...] [gid=group,...]' with a uid or gid list; 'user=x' is neither uid=... nor gid=..."),
        ("apiauth ipfail uid=a uid=b", "ha.cf:1: apiauth: expected 'apiauth CLIENT [uid=user,...] [gid=group,...]' with a uid or gid list; 'uid=b' repeats a uid or gid list"),
        ("apiauth ipfail gid=", "has an empty list"),
        ("respawn hacluster ipfail", "ha.cf:1: respawn: expected 'respawn USER /full/path/to/program [args...]'; the program must be a full path, got 'ipfail'"),
        ("respawn", "ha.cf:1: respawn: expected 'respawn USER /full/path/to/program [args...]', got nothing"),
        ("failfast root", "ha.cf:1: failfast: expected 'failfast USER /full/path/to/program [args...]'; the program must be a full path, got ''"),
        ("mcast eth0 10.0.0.1 694 1 0", "ha.cf:1: mcast: GROUP must be an IPv4 multicast (class D, 224.0.0.0 to 239.255.255.255) address, got '10.0.0.1'"),
        ("mcast eth0 240.0.0.1 694 1 0", "ha.cf:1: mcast: GROUP must be an IPv4 multicast"),
        ("mcast eth0 225.0.0.1 0 1 0", "ha.cf:1: mcast: PORT must be a port number from 1 to 65535, got '0'"),
        ("mcast eth0 225.0.0.1 694 5 0", "ha.cf:1: mcast: TTL must be from 0 to 4 (Heartbeat's mcast plugin refuses larger values, although its man page says 0-255), got '5'"),
        ("mcast eth0 225.0.0.1 694 1 2", "ha.cf:1: mcast: LOOP must be 0 or 1, got '2'"),
        ("mcast eth0 225.0.0.1 694 1", "ha.cf:1: mcast: expected 'mcast IFACE GROUP PORT TTL LOOP' (e.g. mcast eth0 225.0.0.1 694 1 0); LOOP is missing"),
        ("mcast eth0", "ha.cf:1: mcast: expected 'mcast IFACE GROUP PORT TTL LOOP' (e.g. mcast eth0 225.0.0.1 694 1 0); GROUP is missing"),
        ("mcast6", "ha.cf:1: mcast6: expected 'mcast6 IFACE GROUP PORT HOPS LOOP' (e.g. mcast6 eth0 ff02::694 694 1 0); IFACE is missing"),
        ("mcast6 eth0 ff0e::1 694 1 0", "ha.cf:1: mcast6: GROUP must be an IPv6 multicast address"),
        ("mcast6 eth0 ff02:: 694 1 0", "ha.cf:1: mcast6: GROUP must be an IPv6 multicast address"),
        ("mcast6 eth0 ff02::1 694 5 0", "ha.cf:1: mcast6: HOPS must be from 0 to 4"),
        ("mcast6 eth0 ff02::1 694 1 3", "ha.cf:1: mcast6: LOOP must be 0 or 1, got '3'"),
        ("mcast6 eth0 ff02::1 x 1 0", "ha.cf:1: mcast6: PORT must be a port number from 1 to 65535, got 'x'"),
        ("ucast eth0", "ha.cf:1: ucast: expected 'ucast IFACE PEER' (PEER is an address or host name); PEER is missing"),
        ("ucast6", "ha.cf:1: ucast6: expected 'ucast6 IFACE PEER6[%scope]'; IFACE is missing"),
        ("ucast6 eth0 ::1", "ha.cf:1: ucast6: PEER6 must be an IPv6 unicast address (not multicast, unspecified or loopback), got '::1'"),
        ("ucast6 eth0 ff02::1", "ha.cf:1: ucast6: PEER6 must be an IPv6 unicast address"),
        ("ucast6 eth0 10.0.0.1", "ha.cf:1: ucast6: PEER6 must be an IPv6 unicast address"),
        ("ping_group", "ha.cf:1: ping_group: expected 'ping_group NAME HOST [HOST...]', got nothing"),
        ("ping_group g1", "ha.cf:1: ping_group: expected 'ping_group NAME HOST [HOST...]'; group 'g1' has no hosts"),
        ("serial ttyS0", "ha.cf:1: serial: expected the full path of a serial device such as /dev/ttyS0, got 'ttyS0'"),
    ];
    for (line, want) in table {
        let e = errs(&format!("{line}\n"));
        assert!(
            e.iter().any(|m| m.starts_with(want) || m.contains(want)),
            "{line:?}: expected an error like {want:?}, got {e:?}"
        );
    }
}

#[test]
fn keepalive_with_a_detached_unit_is_an_error_with_a_hint() {
    let e = one_err("keepalive 500 ms\n");
    assert_eq!(
        e,
        "ha.cf:1: keepalive: expected a time such as 2, 1.5 or 500ms (seconds unless suffixed ms or us), got 'ms' (the unit must be attached to the number: write 500ms)"
    );
}

#[test]
fn option_directives_apply_once_per_word() {
    let (c, _) = ok("node a b,c\tD\nkeepalive 2 3\nbcast eth0 eth1,eth2\n");
    assert_eq!(c.nodes, vec!["a", "b", "c", "d"]);
    assert_eq!(c.keepalive_ms, 3000);
    assert_eq!(c.parameter("keepalive"), Some("3"));
    assert_eq!(c.media.len(), 3);
    assert_eq!(c.media[2].link_name(), "eth2");
}

#[test]
fn comments_anywhere_and_blank_lines() {
    let (c, w) = ok("# header\n\n   \n\tnode a#b\nkeepalive 2 # two seconds\nbcast eth0#comment\r\n");
    assert_eq!(c.nodes, vec!["a"]);
    assert_eq!(c.keepalive_ms, 2000);
    assert_eq!(c.media.len(), 1);
    assert!(w.is_empty(), "{w:?}");
}

#[test]
fn crlf_line_endings_are_stripped() {
    let (c, _) = ok("node a\r\nkeepalive 2\r\n");
    assert_eq!(c.keepalive_ms, 2000);
}

#[test]
fn directive_names_are_case_sensitive() {
    assert_eq!(
        one_err("Keepalive 2\n"),
        "ha.cf:1: unknown directive 'Keepalive' (Heartbeat 3.0.6 would refuse it too); did you mean 'keepalive'?"
    );
    assert_eq!(
        one_err("\n\nBCAST eth0\n"),
        "ha.cf:3: unknown directive 'BCAST' (Heartbeat 3.0.6 would refuse it too); did you mean 'bcast'?"
    );
}

#[test]
fn unknown_directives() {
    assert_eq!(
        one_err("timeout 5\n"),
        "ha.cf:1: unknown directive 'timeout' (Heartbeat 3.0.6 would refuse it too)"
    );
    for d in ["hbaping", "rds", "tipc", "normalpoll"] {
        let e = one_err(&format!("{d} x\n"));
        assert!(
            e.starts_with(&format!("ha.cf:1: unknown directive '{d}' (Heartbeat 3.0.6 would refuse it too)")),
            "{e}"
        );
    }
    assert!(one_err("slogfile /var/log/x\n").ends_with("; did you mean 'logfile'?"));
    assert!(
        one_err("keepalive=2\n").ends_with("; did you mean 'keepalive 2'? (values are separated by spaces)")
    );
}

#[test]
fn all_errors_are_collected() {
    let e = errs("keepalive x\nfoo\ndeadtime y\n");
    assert_eq!(e.len(), 3);
    assert!(e[0].starts_with("ha.cf:1:"));
    assert!(e[1].starts_with("ha.cf:2:"));
    assert!(e[2].starts_with("ha.cf:3:"));
}

#[test]
fn udp_is_bcast_with_a_warning() {
    let (c, w) = ok("udp eth0\n");
    assert_eq!(c.media, vec![Medium::Bcast { iface: "eth0".into() }]);
    assert_eq!(w[0], "ha.cf:1: directive 'udp' is the old name of 'bcast' and is read as 'bcast'");
}

#[test]
fn udpport_after_media_is_a_warning_and_media_keep_the_old_port() {
    let (c, w) = ok("bcast eth0\nudpport 700\nbcast eth1\nucast eth2 10.0.0.2\n");
    assert_eq!(c.udpport, 700);
    assert_eq!(c.port_of(&c.media[0]), Some(694));
    // Heartbeat's bcast plugin latched 694 with the first bcast line.
    assert_eq!(c.port_of(&c.media[1]), Some(694));
    // ucast's first medium comes after udpport, so it uses 700.
    assert_eq!(c.port_of(&c.media[2]), Some(700));
    let late: Vec<&String> = w.iter().filter(|m| m.contains("udpport 700")).collect();
    assert_eq!(late.len(), 1);
    assert_eq!(
        late[0],
        "ha.cf:2: udpport 700 comes after media that already took their port (bcast at line 1 keeps port 694); Heartbeat reads udpport when the first medium of a kind is parsed, so put udpport above the bcast/ucast lines"
    );
}

#[test]
fn udpport_before_media_is_quiet() {
    let (c, w) = ok("udpport 700\nbcast eth0\nmcast eth1 225.0.0.1 694 1 0\n");
    assert_eq!(c.port_of(&c.media[0]), Some(700));
    assert_eq!(c.port_of(&c.media[1]), Some(694));
    assert!(w.is_empty(), "{w:?}");
    assert_eq!(c.parameter("udpport"), Some("700"));
}

#[test]
fn baud_rules() {
    let (c, w) = ok("serial /dev/ttyS0\nbaud 38400\nserial /dev/ttyS1\n");
    assert_eq!(c.baud, 38400);
    assert_eq!(
        c.media,
        vec![
            Medium::Serial { device: "/dev/ttyS0".into(), baud: 19200 },
            Medium::Serial { device: "/dev/ttyS1".into(), baud: 19200 },
        ]
    );
    assert!(w[0].starts_with("ha.cf:2: baud 38400 comes after the serial line at line 1"));
    assert_eq!(
        one_err("baud 9600\nbaud 19200\n"),
        "ha.cf:2: baud: baud may be given only once (first at line 1)"
    );
    let (c, _) = ok("baud 115200\nserial /dev/ttyS0\n");
    assert_eq!(c.media[0], Medium::Serial { device: "/dev/ttyS0".into(), baud: 115200 });
}

#[test]
fn watchdog_only_once() {
    assert_eq!(
        one_err("watchdog /dev/watchdog\nwatchdog /dev/watchdog1\n"),
        "ha.cf:2: watchdog: the watchdog device may be given only once (first at line 1)"
    );
}

#[test]
fn crm_and_pacemaker_once() {
    assert_eq!(
        one_err("crm yes\npacemaker yes\n"),
        "ha.cf:2: pacemaker: crm/pacemaker may be given only once (first at line 1)"
    );
    let (c, _) = ok("crm yes\n");
    assert_eq!(c.parameter("pacemaker"), Some("yes"));
    assert_eq!(c.parameter("crm"), None);
    let (c, _) = ok("pacemaker off\n");
    assert!(!c.pacemaker_enabled());
    assert_eq!(
        one_err("pacemaker on\ncrm_daemon_dir /x\n"),
        "ha.cf:2: crm_daemon_dir: must come before the crm/pacemaker directive (line 1)"
    );
    assert!(one_err("crm on\ncrmd_spawns_pengine yes\n").contains("must come before"));
}

#[test]
fn apiauth_duplicate_client() {
    assert_eq!(
        one_err("apiauth ipfail uid=hacluster\napiauth ipfail gid=haclient\n"),
        "ha.cf:2: apiauth: duplicate apiauth for client 'ipfail' (first at line 1)"
    );
}

#[test]
fn whole_line_directives_keep_the_rest_verbatim() {
    let (c, _) = ok("respawn   hacluster   /usr/lib/heartbeat/ipfail  -a, b  \n");
    assert_eq!(c.respawn[0].command, "/usr/lib/heartbeat/ipfail  -a, b");
    let (c, _) = ok("stonith_host node1 external/ipmi a,b c\n");
    assert_eq!(c.stonith_host, vec!["node1 external/ipmi a,b c"]);
}

#[test]
fn whole_line_media_ignore_extra_words_with_a_warning() {
    let (c, w) = ok("ucast eth0 10.0.0.2 10.0.0.3\n");
    assert_eq!(c.media.len(), 1);
    assert!(w.iter().any(|m| m.contains("('10.0.0.3') are ignored")), "{w:?}");
    let (_, w) = ok("mcast eth0 225.0.0.1 694 1 0 extra\n");
    assert!(w.iter().any(|m| m.contains("('extra') are ignored")), "{w:?}");
}

#[test]
fn empty_values_are_warned_not_dropped() {
    let (c, w) = ok("keepalive\nmcast\nucast\n");
    assert_eq!(c.keepalive_ms, 1000);
    assert!(c.media.is_empty());
    assert!(w.iter().any(|m| m.starts_with("ha.cf:1: 'keepalive' has no value")));
    assert!(w.iter().any(|m| m.starts_with("ha.cf:2: mcast with no interface")));
    assert!(w.iter().any(|m| m.starts_with("ha.cf:3: ucast with no interface")));
}

#[test]
fn duplicate_nodes_are_removed_with_a_warning() {
    let (c, w) = ok("node a B\nnode b\n");
    assert_eq!(c.nodes, vec!["a", "b"]);
    assert_eq!(w, vec!["ha.cf:2: node 'b' is already listed at line 1; the repeat is ignored"]);
}

#[test]
fn too_many_nodes() {
    let names: Vec<String> = (0..101).map(|i| format!("n{i}")).collect();
    let e = one_err(&format!("node {}\n", names.join(" ")));
    assert_eq!(e, "ha.cf:1: node: too many nodes (Heartbeat allows at most 100)");
}

#[test]
fn unimplemented_directives_warn_once_per_name() {
    let (_, w) = ok("apiauth a uid=b\nping 10.0.0.1\napiauth c uid=d\nkeepalive 2\n");
    assert_eq!(w, vec!["ha.cf:1: 'apiauth' is accepted but not implemented by halo yet; it has no effect"]);
    for d in IMPLEMENTED {
        assert!(is_legal_directive(d), "{d}");
    }
}

#[test]
fn implemented_directives_do_not_warn() {
    let text = "logfile /l\ndebugfile /d\nlogfacility daemon\ndebug 1\nkeepalive 1\ndeadtime 10\nwarntime 5\ninitdead 20\nudpport 694\nbcast eth0\nmcast eth0 225.0.0.1 694 1 0\nucast eth0 10.0.0.1\nbaud 19200\nserial /dev/ttyS0\nnode a\nhopfudge 1\nmax_rexmit_delay 250\nmsgfmt classic\nhbgenmethod file\nuuidfrom file\nrealtime yes\nrtprio 10\nsyslogmsgfmt yes\ncluster c\nlog_badpack yes\nautojoin none\nauto_failback on\nuse_logd no\n";
    let (_, w) = ok(text);
    assert!(w.is_empty(), "{w:?}");
}

#[test]
fn nice_failback_converts_with_a_warning() {
    let (c, w) = ok("nice_failback on\n");
    assert_eq!(c.auto_failback, AutoFailback::Off);
    assert!(w[0].contains("read as 'auto_failback off'"));
    let (c, _) = ok("nice_failback off\n");
    assert_eq!(c.auto_failback, AutoFailback::Legacy);
}

#[test]
fn auto_failback_values() {
    for (v, want) in [
        ("on", AutoFailback::On),
        ("yes", AutoFailback::On),
        ("off", AutoFailback::Off),
        ("0", AutoFailback::Off),
        ("legacy", AutoFailback::Legacy),
        ("LEGACY", AutoFailback::Legacy),
    ] {
        let (c, _) = ok(&format!("auto_failback {v}\n"));
        assert_eq!(c.auto_failback, want, "{v}");
    }
}

#[test]
fn logfacility_none_and_autojoin_case() {
    let (c, _) = ok("logfacility none\nautojoin ANY\n");
    assert_eq!(c.logfacility, None);
    assert_eq!(c.autojoin, Autojoin::Any);
}

#[test]
fn quorum_server_also_sets_cluster_like_heartbeat() {
    let (c, _) = ok("cluster c1\nquorum_server qs\n");
    assert_eq!(c.quorum_server.as_deref(), Some("qs"));
    assert_eq!(c.cluster, "qs");
    assert_eq!(c.parameter("cluster"), Some("c1"));
}

#[test]
fn defaults_and_derivations() {
    let (c, _) = ok("");
    assert_eq!(c.keepalive_ms, 1000);
    assert_eq!(c.deadtime_ms, 30000);
    assert_eq!(c.warntime_ms, 15000);
    assert_eq!(c.initdead_ms, 30000);
    assert_eq!(c.deadping_ms, 30000);
    assert_eq!(c.udpport, 694);
    assert_eq!(c.baud, 19200);
    assert_eq!(c.auto_failback, AutoFailback::Legacy);
    assert_eq!(c.cluster, "linux-ha");
    assert_eq!(c.hopfudge, 1);
    assert_eq!(c.max_rexmit_delay_ms, 250);
    assert_eq!(c.msgfmt, MsgFmt::Classic);
    assert!(c.realtime && c.coredumps && c.log_badpack && c.syslogmsgfmt);

    assert_eq!(derived_initdead(30000), 30000);
    assert_eq!(derived_initdead(10000), 20000);
    assert_eq!(derived_initdead(6000), 12000);
    assert_eq!(derived_initdead(5999), 12000);
    assert_eq!(derived_initdead(2000), 12000);
    let (c, _) = ok("deadtime 8\n");
    assert_eq!(c.initdead_ms, 16000);
    assert_eq!(c.warntime_ms, 4000);
    assert_eq!(c.deadping_ms, 8000);
}

#[test]
fn recorded_values_follow_heartbeat() {
    let (c, _) = ok("keepalive 1\ndeadtime 10\nnode a\nenv X=1\n");
    assert_eq!(c.parameter("keepalive"), Some("1"));
    assert_eq!(c.parameter("deadtime"), Some("10"));
    assert_eq!(c.parameter("warntime"), Some("5000ms"));
    assert_eq!(c.parameter("initdead"), Some("20000ms"));
    assert_eq!(c.parameter("deadping"), Some("10000ms"));
    assert_eq!(c.parameter("udpport"), Some("694"));
    assert_eq!(c.parameter("auto_failback"), Some("legacy"));
    assert_eq!(c.parameter("debug"), Some("0"));
    assert_eq!(c.parameter("use_logd"), Some("yes"));
    assert_eq!(c.parameter("node"), None);
    assert_eq!(c.parameter("env"), None);
    let (c, _) = ok("logfacility local0\n");
    assert_eq!(c.parameter("logfile"), Some("/dev/null"));
    assert_eq!(c.parameter("use_logd"), None);
    let (c, _) = ok("");
    assert_eq!(c.parameter("keepalive"), Some("1000ms"));
    assert_eq!(c.parameter("deadtime"), Some("30000ms"));
    assert_eq!(c.parameter("warntime"), Some("15000ms"));
}

#[test]
fn too_many_media() {
    let ifaces: Vec<String> = (0..65).map(|i| format!("eth{i}")).collect();
    let e = one_err(&format!("bcast {}\n", ifaces.join(" ")));
    assert_eq!(e, "ha.cf:1: bcast: too many media and ping nodes (Heartbeat allows at most 64)");
}

fn start(text: &str) -> (Vec<String>, Vec<String>) {
    let (c, _) = ok(text);
    let (e, w) = check_start(Path::new("ha.cf"), &c);
    (e.iter().map(|d| d.to_string()).collect(), w.iter().map(|d| d.to_string()).collect())
}

#[test]
fn start_conditions() {
    let good = "logfile /l\nnode a b\nbcast eth0\nauto_failback on\n";
    let (e, w) = start(good);
    assert!(e.is_empty() && w.is_empty(), "{e:?} {w:?}");

    let (e, _) = start("logfile /l\nauto_failback on\n");
    assert_eq!(
        e,
        vec![
            "ha.cf: no heartbeat media: add a bcast, mcast, ucast or serial line (Heartbeat refuses to start without one)",
            "ha.cf: no node directives: list every cluster member, e.g. 'node alpha beta' (names as printed by uname -n)",
        ]
    );
    let (e, _) = start("logfile /l\nautojoin any\nping 10.0.0.1\nauto_failback on\n");
    assert!(e.is_empty(), "{e:?}");

    let (e, _) = start(&format!("{good}keepalive 5\ndeadtime 10\n"));
    assert_eq!(e, vec!["ha.cf:6: deadtime (10000 ms) must be more than twice keepalive (5000 ms)"]);
    let (e, _) = start(&format!("{good}deadtime 30\ninitdead 20\n"));
    assert_eq!(e, vec!["ha.cf:6: initdead (20000 ms) must not be smaller than deadtime (30000 ms)"]);
    let (e, w) = start(&format!("{good}deadtime 5\ninitdead 8\n"));
    assert!(e.is_empty(), "{e:?}");
    assert_eq!(w.len(), 1);
    assert!(w[0].starts_with("ha.cf:6: initdead (8000 ms) may be too small"));
    let (e, _) = start(&format!("{good}keepalive 2\ndeadping 4\n"));
    assert_eq!(e, vec!["ha.cf:6: deadping (4000 ms) must be more than twice keepalive (2000 ms)"]);
}

#[test]
fn start_logging_rules() {
    let (e, w) = start("node a\nbcast eth0\nauto_failback on\n");
    assert!(e.is_empty());
    assert_eq!(
        w,
        vec!["ha.cf: no logfile, debugfile or logfacility: Heartbeat would log through ha_logd, but halo has no logd, so it logs to stderr only"]
    );
    let (e, _) = start("node a\nbcast eth0\nauto_failback on\nuse_logd no\n");
    assert_eq!(e.len(), 1);
    assert!(e[0].starts_with("ha.cf:4: no logfile, debugfile or logfacility and use_logd is off"));
    let (e, w) = start("node a\nbcast eth0\nauto_failback on\nlogfacility none\n");
    assert!(e.is_empty());
    assert_eq!(w.len(), 1, "logfacility none is no logging: {w:?}");
}

#[test]
fn start_warns_about_legacy_auto_failback() {
    let (_, w) = start("logfile /l\nnode a\nbcast eth0\n");
    assert_eq!(
        w,
        vec!["ha.cf: Deprecated 'legacy' auto_failback option selected (the default when auto_failback is not set); set auto_failback on or off"]
    );
    let (_, w) = start("logfile /l\nnode a\nbcast eth0\nauto_failback legacy\n");
    assert!(w[0].starts_with("ha.cf:4: Deprecated 'legacy'"));
    let (_, w) = start("logfile /l\nnode a\nbcast eth0\ncrm yes\n");
    assert!(!w.iter().any(|m| m.contains("legacy")), "{w:?}");
}

#[test]
fn huge_times_do_not_overflow() {
    let (e, _) = start(
        "logfile /l\nnode a\nbcast eth0\nauto_failback on\nkeepalive 99999999999999999999999\ndeadping 1\n",
    );
    assert_eq!(e.len(), 2, "{e:?}");
}

#[test]
fn no_quorum_policy_is_a_halo_extension_with_a_warning() {
    let (cfg, w) = ok("node a b\nbcast eth0\nno_quorum_policy stop\n");
    assert_eq!(cfg.no_quorum_policy, "stop");
    assert!(w.iter().any(|m| m.contains("ha.cf:3: 'no_quorum_policy' is a halo extension")), "{w:?}");
    let (cfg, _) = ok("node a b\nbcast eth0\n");
    assert_eq!(cfg.no_quorum_policy, "ignore");
    assert_eq!(
        one_err("node a\nbcast eth0\nno_quorum_policy maybe\n"),
        "ha.cf:3: no_quorum_policy: expected ignore, freeze or stop, got 'maybe'"
    );
}

#[test]
fn lvs_sync_daemon_is_a_halo_extension_with_ipvs_defaults() {
    let (cfg, w) = ok("node a b\nbcast eth0\nlvs_sync_daemon eth1\n");
    let l = cfg.lvs_sync.expect("parsed");
    assert_eq!((l.interface.as_str(), l.syncid, l.port, l.interval_ms), ("eth1", 0, 8848, 1000));
    assert_eq!(l.group, std::net::Ipv4Addr::new(224, 0, 0, 81));
    assert!(w.iter().any(|m| m.contains("ha.cf:3: 'lvs_sync_daemon' is a halo extension")), "{w:?}");
    let (cfg, _) =
        ok("node a b\nbcast eth0\nlvs_sync_daemon eth1 id 7 port 9000 group 239.1.2.3 interval 0.5\n");
    let l = cfg.lvs_sync.unwrap();
    assert_eq!((l.syncid, l.port, l.group.to_string(), l.interval_ms), (7, 9000, "239.1.2.3".into(), 500));
    assert_eq!(l.to_line(), "eth1 id 7 port 9000 group 239.1.2.3 interval 0.5");
    assert_eq!(
        one_err("node a\nbcast eth0\nlvs_sync_daemon eth1 group 10.0.0.1\n"),
        "ha.cf:3: lvs_sync_daemon: group: expected an IPv4 multicast address, got '10.0.0.1'"
    );
    assert_eq!(
        one_err("node a\nbcast eth0\nlvs_sync_daemon eth1 id\n"),
        "ha.cf:3: lvs_sync_daemon: expected 'lvs_sync_daemon IFACE [id 0-255] [port P] [group MULTICAST-ADDR] [interval SECONDS]'; 'id' has no value"
    );
    assert!(one_err("node a\nbcast eth0\nlvs_sync_daemon\n").contains("got nothing"));
}
