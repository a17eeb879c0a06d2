//! ipvsadm 1.31 output, byte for byte: the examples of `spec/heartbeat.md` §8.1 (trailing
//! spaces included) and the edges of its format strings.

// In a module so that `cargo test ipvsadm` selects these tests.
mod ipvsadm {
    use std::net::{IpAddr, Ipv4Addr, SocketAddr};

    use halo_lb::ipvsadm::{
        largenum, list, list_conn, list_conn_with, list_rate, list_stats, list_with, save, save_with,
        Connection, Destination, Forward, Model, Names, Options, Persistent, Protocol, Rates, SchedFlags,
        Service, ServiceKey, Stats, Tunnel, TunnelCsum, TunnelKind, View,
    };
    use halo_lb::Netmask;

    fn sa(s: &str) -> SocketAddr {
        s.parse().expect("test socket address")
    }

    fn tcp(addr: &str, sched: &str) -> Service {
        Service::new(ServiceKey::Addr { protocol: Protocol::Tcp, addr: sa(addr) }, sched)
    }

    fn svc(protocol: Protocol, addr: &str, sched: &str) -> Service {
        Service::new(ServiceKey::Addr { protocol, addr: sa(addr) }, sched)
    }

    fn fwm(mark: u32, ipv6: bool, sched: &str) -> Service {
        Service::new(ServiceKey::Fwmark { mark, ipv6 }, sched)
    }

    fn dest(addr: &str, forward: Forward, weight: i32, active: u32, inactive: u32) -> Destination {
        Destination { active, inactive, ..Destination::new(sa(addr), forward, weight) }
    }

    fn persistent(timeout: u32, mask: &str) -> Option<Persistent> {
        Some(Persistent { timeout, netmask: Netmask::parse(mask).expect("mask") })
    }

    /// The table of §8.1's `ipvsadm -L -n` example, services given in an unsorted order.
    fn example() -> Model {
        let mut web = tcp("192.168.6.240:80", "wrr");
        web.dests = vec![
            dest("192.168.6.3:80", Forward::Route, 0, 0, 3),
            dest("192.168.6.2:80", Forward::Route, 1, 12, 40),
        ];
        let mut tls = tcp("192.168.6.240:443", "rr");
        tls.persistent = persistent(600, "255.255.255.0");
        tls.dests = vec![dest("192.168.16.3:443", Forward::Masq, 1, 0, 0)];
        let mut mark = fwm(1, false, "wlc");
        mark.dests = vec![dest("127.0.0.1:80", Forward::Local, 1, 0, 0)];
        Model { services: vec![mark, tls, web], ..Model::default() }
    }

    const EXAMPLE_LIST: &str = "\
IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port Scheduler Flags
  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn
TCP  192.168.6.240:80 wrr
  -> 192.168.6.2:80               Route   1      12         40        
  -> 192.168.6.3:80               Route   0      0          3         
TCP  192.168.6.240:443 rr persistent 600 mask 255.255.255.0
  -> 192.168.16.3:443             Masq    1      0          0         
FWM  1 wlc
  -> 127.0.0.1:80                 Local   1      0          0         
";

    #[test]
    fn list_reproduces_the_spec_example() {
        assert_eq!(list(&example()), EXAMPLE_LIST);
        // Trailing spaces are real: the last column is %-10u.
        let real = EXAMPLE_LIST.lines().nth(4).expect("line");
        assert!(real.ends_with("40        "), "{real:?}");
    }

    #[test]
    fn version_and_size_come_from_the_model() {
        let m = Model { version: 0x010300, size: 1 << 20, ..Model::default() };
        assert_eq!(
            list(&m),
            "IP Virtual Server version 1.3.0 (size=1048576)\n\
         Prot LocalAddress:Port Scheduler Flags\n  \
         -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n"
        );
    }

    #[test]
    fn stats_reproduce_the_spec_example() {
        let mut web = tcp("192.168.6.240:80", "wrr");
        web.stats = Stats { conns: 1234, inpkts: 98765, outpkts: 0, inbytes: 12345678, outbytes: 0 };
        let mut d = dest("192.168.6.2:80", Forward::Route, 1, 0, 0);
        d.stats = Stats { conns: 617, inpkts: 49382, outpkts: 0, inbytes: 6172839, outbytes: 0 };
        web.dests = vec![d];
        let m = Model { services: vec![web], ..Model::default() };
        assert_eq!(
            list_stats(&m),
            "\
IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port               Conns   InPkts  OutPkts  InBytes OutBytes
  -> RemoteAddress:Port
TCP  192.168.6.240:80                 1234    98765        0 12345678        0
  -> 192.168.6.2:80                    617    49382        0  6172839        0
"
        );
    }

    #[test]
    fn rate_reproduces_the_spec_example() {
        let mut web = tcp("192.168.6.240:80", "wrr");
        web.rates = Rates { cps: 3, inpps: 45, outpps: 0, inbps: 5120, outbps: 0 };
        let mut d = dest("192.168.6.2:80", Forward::Route, 1, 0, 0);
        d.rates = Rates { cps: 2, inpps: 22, outpps: 0, inbps: 2560, outbps: 0 };
        web.dests = vec![d];
        let m = Model { services: vec![web], ..Model::default() };
        assert_eq!(
            list_rate(&m),
            "\
IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port                 CPS    InPPS   OutPPS    InBPS   OutBPS
  -> RemoteAddress:Port
TCP  192.168.6.240:80                    3       45        0     5120        0
  -> 192.168.6.2:80                      2       22        0     2560        0
"
        );
    }

    #[test]
    fn rate_real_lines_print_packet_rates_in_full_and_bytes_abbreviated() {
        // Service lines abbreviate every column; real lines only InBPS and OutBPS (CPS, InPPS
        // and OutPPS are %8llu there).
        let big = 123_456_789;
        let mut web = tcp("10.0.0.1:80", "rr");
        web.rates = Rates { cps: big, inpps: big, outpps: big, inbps: big, outbps: big };
        let mut d = dest("10.0.0.2:80", Forward::Route, 1, 0, 0);
        d.rates = web.rates;
        web.dests = vec![d];
        let m = Model { services: vec![web], ..Model::default() };
        let out = list_rate(&m);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            lines[3],
            "TCP  10.0.0.1:80                   123456K  123456K  123456K  123456K  123456K"
        );
        assert_eq!(
            lines[4],
            "  -> 10.0.0.2:80                  123456789 123456789 123456789  123456K  123456K"
        );
        // --exact: full numbers, each after at least one space.
        let exact = list_with(&m, View::Rate, &Options { exact: true, ..Options::default() });
        let lines: Vec<&str> = exact.lines().collect();
        assert_eq!(
            lines[3],
            "TCP  10.0.0.1:80                  123456789 123456789 123456789 123456789 123456789"
        );
        assert_eq!(
            lines[4],
            "  -> 10.0.0.2:80                  123456789 123456789 123456789 123456789 123456789"
        );
    }

    #[test]
    fn largenum_boundaries() {
        let cases: &[(u64, &str)] = &[
            (0, "        0"),
            (99_999_999, " 99999999"),
            (100_000_000, "  100000K"),
            (999_999_999, "  999999K"),
            (1_000_000_000, "    1000M"),
            (99_999_999_999, "   99999M"),
            (100_000_000_000, "     100G"),
            (99_999_999_999_999, "   99999G"),
            (100_000_000_000_000, "     100T"),
            (u64::MAX, "18446744T"),
        ];
        for (n, want) in cases {
            assert_eq!(largenum(*n, false), *want, "{n}");
        }
        assert_eq!(largenum(5, true), "        5");
        assert_eq!(largenum(12_345_678, true), " 12345678");
        assert_eq!(largenum(123_456_789, true), " 123456789");
        assert_eq!(largenum(u64::MAX, true), " 18446744073709551615");
    }

    #[test]
    fn conn_reproduces_the_spec_example() {
        let m = Model {
            connections: vec![
                Connection {
                    protocol: "TCP".into(),
                    source: sa("10.1.1.50:51234"),
                    virtual_addr: sa("192.168.6.240:80"),
                    destination: sa("192.168.6.2:80"),
                    state: "ESTABLISHED".into(),
                    expires: 14 * 60 + 58,
                    pe: None,
                },
                Connection {
                    protocol: "UDP".into(),
                    source: sa("10.1.1.52:5353"),
                    virtual_addr: sa("192.168.6.241:53"),
                    destination: sa("192.168.6.4:53"),
                    state: "UDP".into(),
                    expires: 4 * 60 + 57,
                    pe: None,
                },
            ],
            ..Model::default()
        };
        assert_eq!(
            list_conn(&m),
            "\
IPVS connection entries
pro expire state       source             virtual            destination
TCP 14:58  ESTABLISHED 10.1.1.50:51234    192.168.6.240:80   192.168.6.2:80
UDP 04:57  UDP         10.1.1.52:5353     192.168.6.241:53   192.168.6.4:53
"
        );
    }

    #[test]
    fn conn_edges_ipv6_long_expiry_and_persistence_engine_columns() {
        let m = Model {
            connections: vec![
                Connection {
                    protocol: "SCTP".into(),
                    source: sa("[2001:db8::50]:40000"),
                    virtual_addr: sa("[2001:db8::1]:3868"),
                    destination: sa("[2001:db8::10]:3868"),
                    state: "ESTABLISHED".into(),
                    expires: 6000,
                    pe: None,
                },
                Connection {
                    protocol: "UDP".into(),
                    source: sa("10.1.1.52:5060"),
                    virtual_addr: sa("192.168.6.241:5060"),
                    destination: sa("192.168.6.4:5060"),
                    state: "UDP".into(),
                    expires: 5,
                    pe: Some(("sip".into(), "a84b4c76e66710".into())),
                },
            ],
            ..Model::default()
        };
        assert_eq!(
            list_conn(&m),
            "\
IPVS connection entries
pro expire state       source             virtual            destination
SCTP 100:00 ESTABLISHED [2001:db8::50]:40000 [2001:db8::1]:3868 [2001:db8::10]:3868
UDP 00:05  UDP         10.1.1.52:5060     192.168.6.241:5060 192.168.6.4:5060
"
        );
        // --persistent-conn: the header's widths differ from the rows' (as in ipvsadm), and only
        // entries with a persistence engine get the two extra columns.
        assert_eq!(
        list_conn_with(&m, true, &Options::default()),
        "\
IPVS connection entries
pro expire state       source             virtual            destination        pe name          pe_data
SCTP 100:00 ESTABLISHED [2001:db8::50]:40000 [2001:db8::1]:3868 [2001:db8::10]:3868
UDP 00:05  UDP         10.1.1.52:5060     192.168.6.241:5060 192.168.6.4:5060 sip                a84b4c76e66710
"
    );
    }

    #[test]
    fn save_reproduces_the_spec_example() {
        assert_eq!(
            save(&example()),
            "\
-A -t 192.168.6.240:80 -s wrr
-a -t 192.168.6.240:80 -r 192.168.6.2:80 -g -w 1
-a -t 192.168.6.240:80 -r 192.168.6.3:80 -g -w 0
-A -t 192.168.6.240:443 -s rr -p 600 -M 255.255.255.0
-a -t 192.168.6.240:443 -r 192.168.16.3:443 -m -w 1
-A -f 1 -s wlc
-a -f 1 -r 127.0.0.1:80 -g -w 1
"
        );
    }

    #[test]
    fn ipv6_services_and_fwmarks() {
        let mut v6 = tcp("[2001:db8::1]:80", "wlc");
        v6.persistent = persistent(300, "64");
        v6.dests = vec![
            dest("[2001:db8:aaaa:bbbb:cccc:dddd:eeee:1]:8080", Forward::Masq, 1, 0, 0),
            dest("[2001:db8::10]:80", Forward::Route, 5, 1, 2),
        ];
        let mut v6host = svc(Protocol::Udp, "[2001:db8::2]:53", "rr");
        v6host.persistent = persistent(300, "128");
        let mut mark6 = fwm(7, true, "rr");
        mark6.persistent = persistent(120, "48");
        mark6.dests = vec![dest("[2001:db8::20]:0", Forward::Route, 1, 0, 0)];
        let m = Model { services: vec![mark6, v6host, v6], ..Model::default() };
        let out = list(&m);
        let body: Vec<&str> = out.lines().skip(3).collect();
        assert_eq!(
            body,
            [
                "TCP  [2001:db8::1]:80 wlc persistent 300 mask 64",
                // IPv6 names are never cut; %-28s just widens. And 2001:db8:aaaa:.. sorts
                // before 2001:db8::10: their second words are more than 2^31 apart, so
                // libipvs's int difference is negative.
                "  -> [2001:db8:aaaa:bbbb:cccc:dddd:eeee:1]:8080 Masq    1      0          0         ",
                "  -> [2001:db8::10]:80            Route   5      1          2         ",
                "UDP  [2001:db8::2]:53 rr persistent 300",
                "FWM  7 IPv6 rr persistent 120 mask 48",
                "  -> [2001:db8::20]:0             Route   1      0          0         ",
            ]
        );
        assert_eq!(
            save(&m),
            "\
-A -t [2001:db8::1]:80 -s wlc -p 300 -M 64
-a -t [2001:db8::1]:80 -r [2001:db8:aaaa:bbbb:cccc:dddd:eeee:1]:8080 -m -w 1
-a -t [2001:db8::1]:80 -r [2001:db8::10]:80 -g -w 5
-A -u [2001:db8::2]:53 -s rr -p 300
-A -f 7 -6 -s rr -p 120 -M 48
-a -f 7 -6 -r [2001:db8::20]:0 -g -w 1
"
        );
    }

    #[test]
    fn fwmarks_above_2_pow_31_print_negative_and_sort_first_as_in_1_31() {
        let m = Model {
            services: vec![tcp("10.0.0.1:80", "rr"), fwm(2_882_430_849, false, "wlc")],
            ..Model::default()
        };
        let out = list(&m);
        let body: Vec<&str> = out.lines().skip(3).collect();
        assert_eq!(body, ["FWM  -1412536447 wlc", "TCP  10.0.0.1:80 rr"]);
        assert!(save(&m).starts_with("-A -f -1412536447 -s wlc\n"));
    }

    #[test]
    fn persistence_mask_flags_pe_and_ops() {
        let mut host = tcp("10.0.0.1:80", "wlc");
        host.persistent = persistent(300, "255.255.255.255");
        let mut sh = tcp("10.0.0.1:81", "sh");
        sh.sched_flags = SchedFlags { flag1: true, flag2: true, flag3: false };
        sh.persistent = persistent(60, "255.255.0.0");
        sh.ops = true;
        let mut mh = svc(Protocol::Udp, "10.0.0.1:53", "mh");
        mh.sched_flags = SchedFlags { flag1: false, flag2: true, flag3: false };
        mh.ops = true;
        let mut wlc = svc(Protocol::Sctp, "10.0.0.1:3868", "wlc");
        wlc.sched_flags = SchedFlags { flag1: true, flag2: false, flag3: true };
        let mut sip = svc(Protocol::Udp, "10.0.0.1:5060", "rr");
        sip.persistent = persistent(360, "255.255.255.255");
        sip.pe_name = Some("sip".into());
        let mut pe_only = svc(Protocol::Udp, "10.0.0.1:5061", "rr");
        pe_only.pe_name = Some("sip".into());
        let m = Model { services: vec![pe_only, sip, wlc, mh, sh, host], ..Model::default() };
        let out = list(&m);
        let body: Vec<&str> = out.lines().skip(3).collect();
        assert_eq!(
            body,
            [
                "TCP  10.0.0.1:80 wlc persistent 300",
                "TCP  10.0.0.1:81 sh (sh-fallback,sh-port) persistent 60 mask 255.255.0.0 ops",
                "UDP  10.0.0.1:53 mh (mh-port) ops",
                "UDP  10.0.0.1:5060 rr persistent 360 pe sip",
                // -L shows the engine only with persistence...
                "UDP  10.0.0.1:5061 rr",
                "SCTP 10.0.0.1:3868 wlc (flag-1,flag-3)",
            ]
        );
        // ... -S always.
        assert_eq!(
            save(&m),
            "\
-A -t 10.0.0.1:80 -s wlc -p 300
-A -t 10.0.0.1:81 -s sh -p 60 -M 255.255.0.0 -o -b sh-fallback,sh-port
-A -u 10.0.0.1:53 -s mh -o -b mh-port
-A -u 10.0.0.1:5060 -s rr -p 360 --pe sip
-A -u 10.0.0.1:5061 -s rr --pe sip
-A --sctp-service 10.0.0.1:3868 -s wlc -b flag-1,flag-3
"
        );
    }

    #[test]
    fn sorting_is_ipvsadms_and_nosort_keeps_the_kernels_order() {
        let mut a = tcp("10.0.0.1:80", "rr");
        a.dests = vec![
            dest("10.0.1.2:80", Forward::Route, 1, 0, 0),
            dest("10.0.1.1:8080", Forward::Masq, 1, 0, 0),
            dest("10.0.1.1:80", Forward::Masq, 1, 0, 0),
        ];
        let services = vec![
            fwm(2, false, "rr"),
            svc(Protocol::Udp, "10.0.0.1:53", "rr"),
            tcp("[2001:db8::1]:80", "rr"),
            tcp("10.0.0.1:443", "rr"),
            a,
            fwm(1, true, "rr"),
            fwm(1, false, "rr"),
            svc(Protocol::Sctp, "10.0.0.1:80", "rr"),
            tcp("10.0.0.2:80", "rr"),
        ];
        let m = Model { services, ..Model::default() };
        let names = |out: String| -> Vec<String> { out.lines().skip(3).map(String::from).collect() };
        assert_eq!(
            names(list(&m)),
            [
                // fwmark 0 first; then IPv4 before IPv6; then TCP < UDP < SCTP; then address, port.
                "TCP  10.0.0.1:80 rr",
                "  -> 10.0.1.1:80                  Masq    1      0          0         ",
                "  -> 10.0.1.1:8080                Masq    1      0          0         ",
                "  -> 10.0.1.2:80                  Route   1      0          0         ",
                "TCP  10.0.0.1:443 rr",
                "TCP  10.0.0.2:80 rr",
                "UDP  10.0.0.1:53 rr",
                "SCTP 10.0.0.1:80 rr",
                "TCP  [2001:db8::1]:80 rr",
                "FWM  1 rr",
                "FWM  1 IPv6 rr",
                "FWM  2 rr",
            ]
        );
        let nosort = Options { sort: false, ..Options::default() };
        assert_eq!(
            names(list_with(&m, View::Plain, &nosort)),
            [
                "FWM  2 rr",
                "UDP  10.0.0.1:53 rr",
                "TCP  [2001:db8::1]:80 rr",
                "TCP  10.0.0.1:443 rr",
                "TCP  10.0.0.1:80 rr",
                "  -> 10.0.1.2:80                  Route   1      0          0         ",
                "  -> 10.0.1.1:8080                Masq    1      0          0         ",
                "  -> 10.0.1.1:80                  Masq    1      0          0         ",
                "FWM  1 IPv6 rr",
                "FWM  1 rr",
                "SCTP 10.0.0.1:80 rr",
                "TCP  10.0.0.2:80 rr",
            ]
        );
        assert!(save_with(&m, &nosort).starts_with("-A -f 2 -s rr\n"));
    }

    #[test]
    fn addresses_more_than_2_pow_31_apart_compare_backwards_as_in_libipvs() {
        // libipvs subtracts the host-order addresses as unsigned and reads an int:
        // 10.0.0.1 - 192.168.1.1 wraps to a positive number, so 192.168.1.1 lists first.
        let mut s = tcp("192.168.1.1:80", "rr");
        s.dests = vec![
            dest("10.0.0.9:80", Forward::Route, 1, 0, 0),
            dest("172.16.0.9:80", Forward::Route, 1, 0, 0),
        ];
        s.dests.push(dest("192.168.0.9:80", Forward::Route, 1, 0, 0));
        let m = Model { services: vec![tcp("10.0.0.1:80", "rr"), s], ..Model::default() };
        let out = list(&m);
        let body: Vec<&str> =
            out.lines().skip(3).map(|l| l.split_whitespace().nth(1).unwrap_or("")).collect();
        // Destinations: [10.0.0.9] | [172.16.0.9, 192.168.0.9]; 172.16 < 192.168 (close
        // enough); merge: 10.0.0.9 vs 172.16.0.9 -> 0x0a.. - 0xac.. wraps positive, so 172.16
        // first; then 10.0.0.9 vs 192.168.0.9 -> positive again, 192.168 next; 10.0.0.9 last.
        assert_eq!(body, ["192.168.1.1:80", "172.16.0.9:80", "192.168.0.9:80", "10.0.0.9:80", "10.0.0.1:80"]);
    }

    #[test]
    fn tunnels_in_every_view() {
        let mut s = tcp("10.0.0.1:80", "wrr");
        s.dests = vec![
            dest("10.0.1.1:80", Forward::Tunnel(Tunnel::default()), 1, 0, 0),
            dest(
                "10.0.1.2:80",
                Forward::Tunnel(Tunnel { kind: TunnelKind::Gue { port: 6080 }, csum: TunnelCsum::RemCsum }),
                2,
                0,
                0,
            ),
            dest(
                "10.0.1.3:80",
                Forward::Tunnel(Tunnel { kind: TunnelKind::Gre, csum: TunnelCsum::Csum }),
                3,
                0,
                0,
            ),
            dest("10.0.1.4:80", Forward::Route, 4, 0, 0),
        ];
        let m = Model { services: vec![s], ..Model::default() };
        assert_eq!(
            list_with(&m, View::TunInfo, &Options::default()),
            "\
IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port Scheduler Flags
  -> RemoteAddress:Port           Forward TunnelInfo    Weight ActiveConn InActConn
TCP  10.0.0.1:80 wrr
  -> 10.0.1.1:80                  Tunnel  ipip          1      0          0         
  -> 10.0.1.2:80                  Tunnel  gue:6080:r+c  2      0          0         
  -> 10.0.1.3:80                  Tunnel  gre:+c        3      0          0         
  -> 10.0.1.4:80                  Route   n/a           4      0          0         
"
        );
        assert_eq!(
            list(&m).lines().nth(4),
            Some("  -> 10.0.1.1:80                  Tunnel  1      0          0         ")
        );
        assert_eq!(
            save(&m),
            "\
-A -t 10.0.0.1:80 -s wrr
-a -t 10.0.0.1:80 -r 10.0.1.1:80 -i -w 1 --tun-type ipip
-a -t 10.0.0.1:80 -r 10.0.1.2:80 -i -w 2 --tun-type gue --tun-port 6080 --tun-remcsum
-a -t 10.0.0.1:80 -r 10.0.1.3:80 -i -w 3 --tun-type gre --tun-csum
-a -t 10.0.0.1:80 -r 10.0.1.4:80 -g -w 4
"
        );
    }

    #[test]
    fn thresholds_and_persistent_conn_views() {
        let mut s = tcp("10.0.0.1:80", "wlc");
        let mut d = dest("10.0.1.1:80", Forward::Route, 1, 7, 9);
        d.u_threshold = 1000;
        d.l_threshold = 750;
        d.persist = 3;
        s.dests = vec![d];
        let m = Model { services: vec![s], ..Model::default() };
        assert_eq!(
            list_with(&m, View::Thresholds, &Options::default()),
            "\
IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port            Uthreshold Lthreshold ActiveConn InActConn 
  -> RemoteAddress:Port
TCP  10.0.0.1:80 wlc
  -> 10.0.1.1:80                  1000       750        7          9         
"
        );
        assert_eq!(
            list_with(&m, View::PersistentConn, &Options::default()),
            "\
IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port            Weight    PersistConn ActiveConn InActConn 
  -> RemoteAddress:Port
TCP  10.0.0.1:80 wlc
  -> 10.0.1.1:80                  1         3           7          9         
"
        );
    }

    struct LongNames;

    impl Names for LongNames {
        fn host(&self, addr: IpAddr) -> Option<String> {
            match addr {
                IpAddr::V4(a) if a == Ipv4Addr::new(10, 0, 0, 1) => {
                    Some("www.a-rather-long-cluster-name.example.org".into())
                }
                IpAddr::V4(_) => Some("realserver-number-one.example.org".into()),
                IpAddr::V6(_) => Some("v6.example.org".into()),
            }
        }

        fn service(&self, port: u16, protocol: Option<Protocol>) -> Option<String> {
            match (port, protocol) {
                (80, Some(Protocol::Tcp)) => Some("http".into()),
                _ => None,
            }
        }
    }

    #[test]
    fn names_are_cut_like_ipvsadms_buffers() {
        let mut s = tcp("10.0.0.1:80", "rr");
        s.dests = vec![dest("10.0.1.1:80", Forward::Route, 1, 0, 0)];
        let mut v6 = tcp("[2001:db8::1]:8080", "rr");
        v6.dests = vec![dest("[2001:db8::2]:8080", Forward::Route, 1, 0, 0)];
        let m = Model { services: vec![s, v6], ..Model::default() };
        let opts = Options { names: Some(&LongNames), ..Options::default() };
        let out = list_with(&m, View::Plain, &opts);
        let body: Vec<&str> = out.lines().skip(3).collect();
        assert_eq!(
            body,
            [
                // IPv4 service names stop at 33 bytes, real-server names at 28.
                "TCP  www.a-rather-long-cluster-na rr",
                "  -> realserver-number-one.exampl Route   1      0          0         ",
                "TCP  [v6.example.org]:8080 rr",
                "  -> [v6.example.org]:8080        Route   1      0          0         ",
            ]
        );
        // -S is not cut.
        assert!(save_with(&m, &opts)
        .contains("-a -t www.a-rather-long-cluster-name.example.org:http -r realserver-number-one.example.org:http -g -w 1\n"));
    }
}
