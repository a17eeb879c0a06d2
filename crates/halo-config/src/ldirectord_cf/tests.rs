use super::*;

fn parse(text: &str) -> Result<(LdirectordCf, Vec<Diagnostic>), ConfigError> {
    parse_ldirectord_cf(Path::new("ldirectord.cf"), text)
}

fn ok(text: &str) -> (LdirectordCf, Vec<String>) {
    match parse(text) {
        Ok((cfg, w)) => (cfg, w.iter().map(|d| d.to_string()).collect()),
        Err(e) => panic!("unexpected errors for {text:?}:\n{e}"),
    }
}

/// Parses and insists on no warnings.
fn clean(text: &str) -> LdirectordCf {
    let (cfg, w) = ok(text);
    assert!(w.is_empty(), "unexpected warnings for {text:?}: {w:?}");
    cfg
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

/// One virtual service at line 1 with `body` as its (tab-indented) section.
fn section(body: &str) -> String {
    let mut s = "virtual=10.0.0.1:80\n".to_string();
    for l in body.lines() {
        s.push('\t');
        s.push_str(l);
        s.push('\n');
    }
    s
}

fn vs(body: &str) -> VirtualService {
    let cfg = clean(&section(body));
    assert_eq!(cfg.virtuals.len(), 1);
    cfg.virtuals.into_iter().next().unwrap_or_else(|| unreachable!())
}

fn vs_err(body: &str) -> String {
    one_err(&section(body))
}

fn ip(s: &str) -> Host {
    Host::Ip(s.parse().unwrap_or_else(|e| panic!("{s}: {e}")))
}

// --- defaults --------------------------------------------------------------------------------

#[test]
fn empty_file_has_ldirectord_defaults() {
    let cfg = clean("");
    let g = &cfg.global;
    assert_eq!(g.checktimeout, None);
    assert_eq!(g.negotiatetimeout, None);
    assert_eq!(g.checkinterval, 10);
    assert_eq!(g.checkcount, 1);
    assert_eq!(g.failurecount, 1);
    assert!(!g.autoreload);
    assert_eq!(g.callback, None);
    assert_eq!(g.fallback, None);
    assert_eq!(g.fallback6, None);
    assert_eq!(g.fallbackcommand, None);
    assert_eq!(g.logfile, LogTarget::File(PathBuf::from("/var/log/ldirectord.log")));
    assert!(g.emailalert.is_empty());
    assert_eq!(g.emailalertfreq, 0);
    assert_eq!(g.emailalertstatus, DaemonStatus::ALL.to_vec());
    assert_eq!(g.emailalertfrom, None);
    assert_eq!(g.smtp, None);
    assert!(!g.quiescent, "quiescent defaults to no in ldirectord's code");
    assert!(!g.readdquiescent);
    assert!(g.cleanstop);
    assert_eq!(g.maintenancedir, None);
    assert!(!g.fork);
    assert!(!g.supervised);
    assert!(g.execute.is_empty());
    assert!(cfg.virtuals.is_empty());
}

#[test]
fn virtual_defaults() {
    let v = vs("real=10.0.0.2:80 gate");
    assert_eq!(v.line, 1);
    assert_eq!(v.addr, VirtualAddr::Ip { ip: "10.0.0.1".parse().unwrap(), port: 80 });
    assert!(!v.v6);
    assert_eq!(v.protocol, Protocol::Tcp);
    assert_eq!(v.checktype, CheckType::Negotiate);
    assert_eq!(v.service, Service::Http);
    assert_eq!(v.checkcommand, "/bin/true");
    assert_eq!(v.checkport, None);
    assert_eq!(v.request, None);
    assert_eq!(v.receive, None);
    assert_eq!(v.httpmethod, HttpMethod::Get);
    assert_eq!(v.virtualhost, None);
    assert_eq!(v.scheduler, "wrr");
    assert_eq!(v.persistent, None);
    assert_eq!(v.netmask, None);
    assert!(!v.ops);
    assert_eq!(v.id(), "tcp:10.0.0.1:80");
    let r = &v.reals[0];
    assert_eq!(r.line, 2);
    assert_eq!(r.addr, ip("10.0.0.2"));
    assert_eq!(r.port, Some(80));
    assert_eq!(r.forward, Forward::Gate);
    assert_eq!(r.weight, 1);
    assert_eq!((r.request.as_deref(), r.receive.as_deref(), r.lower, r.upper), (None, None, None, None));
    assert_eq!(v.request_for(r), "/");
    assert_eq!(v.receive_for(r), "");
    assert_eq!(v.checkport_for(r), Some(80));
}

// --- global directives -----------------------------------------------------------------------

#[test]
fn every_global_directive_is_accepted() {
    let text = "\
checktimeout=3
negotiatetimeout = 20
checkinterval=1
failurecount=3
autoreload=yes
callback=\"/usr/local/bin/changed\"
fallback=127.0.0.1:80
fallback6=[::1]:80 masq
fallbackcommand=\"/usr/local/bin/fb\"
logfile=\"local0\"
emailalert=\"admin@x.y.z, ops@x.y.z\"
emailalertfreq=3600
emailalertstatus=starting, stopping
emailalertfrom=director@x.y.z
smtp=mail.x.y.z
quiescent=yes
readdquiescent=yes
cleanstop=no
maintenancedir=/etc/ha.d/maintenance
fork=yes
supervised=yes
execute=other.cf
execute=third.cf
";
    let g = clean(text).global;
    assert_eq!(g.checktimeout, Some(3));
    assert_eq!(g.negotiatetimeout, Some(20));
    assert_eq!(g.checkinterval, 1);
    assert_eq!(g.failurecount, 3);
    assert!(g.autoreload);
    assert_eq!(g.callback.as_deref(), Some("/usr/local/bin/changed"));
    assert_eq!(g.fallback, Some(Fallback { addr: ip("127.0.0.1"), port: Some(80), forward: Forward::Gate }));
    assert_eq!(g.fallback6, Some(Fallback { addr: ip("::1"), port: Some(80), forward: Forward::Masq }));
    assert_eq!(g.fallbackcommand.as_deref(), Some("/usr/local/bin/fb"));
    assert_eq!(g.logfile, LogTarget::Syslog("local0".into()));
    assert_eq!(g.emailalert, vec!["admin@x.y.z", "ops@x.y.z"]);
    assert_eq!(g.emailalertfreq, 3600);
    assert_eq!(g.emailalertstatus, vec![DaemonStatus::Starting, DaemonStatus::Stopping]);
    assert_eq!(g.emailalertfrom.as_deref(), Some("director@x.y.z"));
    assert_eq!(g.smtp.as_deref(), Some("mail.x.y.z"));
    assert!(g.quiescent);
    assert!(g.readdquiescent);
    assert!(!g.cleanstop);
    assert_eq!(g.maintenancedir, Some(PathBuf::from("/etc/ha.d/maintenance")));
    assert!(g.fork);
    assert!(g.supervised);
    assert_eq!(g.execute, vec!["other.cf", "third.cf"]);
}

#[test]
fn global_values_of_every_kind() {
    assert_eq!(
        clean("logfile=\"/var/log/ld.log\"\n").global.logfile,
        LogTarget::File("/var/log/ld.log".into())
    );
    assert_eq!(clean("emailalertstatus=none\n").global.emailalertstatus, vec![]);
    assert_eq!(clean("emailalertstatus=all\n").global.emailalertstatus, DaemonStatus::ALL.to_vec());
    assert_eq!(
        clean("emailalertstatus=reloading,running\n").global.emailalertstatus,
        vec![DaemonStatus::Running, DaemonStatus::Reloading]
    );
    assert_eq!(clean("emailalert=root\n").global.emailalert, vec!["root"]);
    assert_eq!(
        clean("fallback=backup.example.com\n").global.fallback.unwrap().addr,
        Host::Name("backup.example.com".into())
    );
    assert_eq!(clean("fallback=127.0.0.1:http ipip\n").global.fallback.unwrap().port, Some(80));
    assert!(!clean("supervised=no\n").global.supervised);
    assert_eq!(
        clean("fallbackcommand=/bin/fb --flag\n").global.fallbackcommand.as_deref(),
        Some("/bin/fb --flag")
    );
    // checkcount is deprecated but accepted, with ldirectord's warning.
    let (cfg, w) = ok("checkcount=3\n");
    assert_eq!(cfg.global.checkcount, 3);
    assert_eq!(w, vec!["ldirectord.cf:1: checkcount is deprecated and slated for removal (ldirectord warns too); see failurecount"]);
    // A bare supervised is read as yes, with a warning.
    let (cfg, w) = ok("supervised\n");
    assert!(cfg.global.supervised);
    assert!(w[0].contains("bare 'supervised' is deprecated"), "{w:?}");
}

#[test]
fn every_global_directive_rejects_bad_values() {
    let table: &[(&str, &str)] = &[
        ("checktimeout=0", "checktimeout: must be at least 1 second"),
        ("checktimeout=abc", "checktimeout: expected a whole number of seconds greater than 0, got 'abc'"),
        ("checktimeout=500ms", "ldirectord would read only '500' and ignore 'ms'"),
        ("checktimeout=", "checktimeout: no value"),
        ("negotiatetimeout=-1", "negotiatetimeout: expected a whole number of seconds"),
        ("checkinterval=0", "checkinterval: must be at least 1 second"),
        ("checkcount=0", "checkcount: must be greater than 0"),
        ("failurecount=x", "failurecount: expected a whole number greater than 0"),
        ("autoreload=true", "autoreload: expected yes or no, got 'true' (ldirectord accepts only the lowercase words yes and no)"),
        ("autoreload=Yes", "autoreload: expected yes or no, got 'Yes'"),
        ("callback=/bin/cb", "callback: the value must be double-quoted"),
        ("callback=\"/bin/cb", "callback: the closing double quote is missing"),
        ("fallback=", "fallback: no value"),
        ("fallback=127.0.0.1:80 route", "fallback: the forwarding method must be gate, masq or ipip, got 'route'"),
        ("fallback=127.0.0.1:80 gate extra", "fallback: expected a fallback server"),
        ("fallback=[::1]:80", "fallback: '[::1]' is an IPv6 address"),
        ("fallback6=127.0.0.1:80", "fallback6: '127.0.0.1' is an IPv4 address, but this is a virtual6 service"),
        ("fallback=127.0.0.1:99999", "fallback: port 99999 is out of range"),
        ("fallback=127.0.0.1:nosuchport", "fallback: unknown port name 'nosuchport'"),
        ("fallbackcommand=", "fallbackcommand: no value"),
        ("logfile=/var/log/x", "logfile: the value must be double-quoted"),
        ("logfile=\"var/log/x\"", "logfile: 'var/log/x' is neither an absolute file path"),
        ("logfile=\"local9\"", "logfile: 'local9' is neither"),
        ("logfile=\"\"", "logfile: the value between the quotes is empty"),
        ("emailalert=", "emailalert: no email address specified"),
        ("emailalert=\"\"", "emailalert: no email address specified"),
        ("emailalert=a@b,,c@d", "emailalert: empty address"),
        ("emailalert=\"a@b\" ; c", "emailalert: invalid address '\"a@b\" ; c'"),
        ("emailalert=a@b c@d", "emailalert: invalid address 'a@b c@d'"),
        ("emailalertfreq=often", "emailalertfreq: expected a number of seconds"),
        ("emailalertstatus=sometimes", "emailalertstatus: invalid email alert status at 'sometimes'"),
        ("emailalertstatus=none,running", "emailalertstatus: 'running' cannot be combined with 'none'"),
        ("emailalertstatus=", "emailalertstatus: no value"),
        ("emailalertfrom=", "emailalertfrom: no value"),
        ("smtp=", "smtp: no value"),
        ("smtp=@mail", "smtp: invalid SMTP server address '@mail'"),
        ("quiescent=1", "quiescent: expected yes or no, got '1'"),
        ("readdquiescent=maybe", "readdquiescent: expected yes or no"),
        ("cleanstop=", "cleanstop: no value: expected yes or no"),
        ("maintenancedir=", "maintenancedir: no value"),
        ("fork=on", "fork: expected yes or no, got 'on'"),
        ("supervised=sure", "supervised: expected yes or no"),
        ("execute=", "execute: no value"),
    ];
    for (line, want) in table {
        let e = one_err(&format!("{line}\n"));
        assert!(e.starts_with("ldirectord.cf:1: "), "{line}: {e}");
        assert!(e.contains(want), "{line}:\n  got  {e}\n  want {want}");
    }
}

#[test]
fn exact_yes_no_refuses_trailing_text_like_ldirectord() {
    // ldirectord compares `$1 eq "yes"`, so anything after the word is an error.
    assert!(one_err("autoreload=yes please\n").contains("expected yes or no, got 'yes please'"));
}

#[test]
fn trailing_text_after_a_word_is_ignored_with_a_warning() {
    // The seed writes `checktimeout=10 ; timeout ...`: ldirectord reads 10.
    let (cfg, w) = ok("checktimeout=10      ; timeout de 10s\n");
    assert_eq!(cfg.global.checktimeout, Some(10));
    assert_eq!(
        w,
        vec!["ldirectord.cf:1: only '10' is read; the rest of the line ('; timeout de 10s') is ignored, as ldirectord does (comments start with '#', not ';')"]
    );
    let (cfg, w) = ok("smtp=mail.x.y.z:2525\n");
    assert_eq!(cfg.global.smtp.as_deref(), Some("mail.x.y.z"));
    assert!(w[0].contains("':2525' is ignored"), "{w:?}");
}

#[test]
fn comments_on_global_lines_are_stripped() {
    // ldirectord would read `autoreload=yes # x` as an error; halo strips the comment.
    let cfg = clean("autoreload=yes # reload on change\nchecktimeout=3#x\n");
    assert!(cfg.global.autoreload);
    assert_eq!(cfg.global.checktimeout, Some(3));
}

#[test]
fn a_directive_given_twice_warns_and_the_last_wins() {
    let (cfg, w) = ok("checktimeout=3\nchecktimeout=4\n");
    assert_eq!(cfg.global.checktimeout, Some(4));
    assert_eq!(w, vec!["ldirectord.cf:2: checktimeout is given again: this value replaces the one of line 1 (as in ldirectord)"]);
    let (cfg, w) = ok(&section("scheduler=wlc\nscheduler=rr"));
    assert_eq!(cfg.virtuals[0].scheduler, "rr");
    assert!(w[0].starts_with("ldirectord.cf:3: scheduler is given again in this virtual section"), "{w:?}");
    let (cfg, w) = ok("execute=a.cf\nexecute=a.cf\n");
    assert_eq!(cfg.global.execute, vec!["a.cf"]);
    assert!(w[0].contains("'a.cf' is listed twice"), "{w:?}");
}

#[test]
fn deprecated_timeouts_are_refused_with_the_reason() {
    let e = one_err("timeout=5\n");
    assert_eq!(
        e,
        "ldirectord.cf:1: the timeout directive is deprecated in favour of checktimeout and negotiatetimeout, and ldirectord refuses it: write checktimeout= (connect, ping and external checks) and/or negotiatetimeout= (negotiate checks)"
    );
    let e = one_err("connecttimeout=5\n");
    assert!(e.contains("connecttimeout directive is deprecated in favour of negotiatetimeout"), "{e}");
    let e = vs_err("connecttimeout=5");
    assert!(e.starts_with("ldirectord.cf:2: the connecttimeout directive is deprecated"), "{e}");
    let e = vs_err("timeout=5");
    assert!(e.contains("timeout directive is deprecated"), "{e}");
}

#[test]
fn unknown_directives_with_suggestions() {
    assert_eq!(
        one_err("CheckTimeout=5\n"),
        "ldirectord.cf:1: unknown directive 'CheckTimeout' (ldirectord would refuse it too: \"Unknown command\"); did you mean 'checktimeout'?"
    );
    assert!(one_err("checktimout=5\n").ends_with("did you mean 'checktimeout'?"));
    assert!(one_err("emailalrt=root\n").ends_with("did you mean 'emailalert'?"));
    assert_eq!(
        one_err("frobnicate=1\n"),
        "ldirectord.cf:1: unknown directive 'frobnicate' (ldirectord would refuse it too: \"Unknown command\")"
    );
    assert!(vs_err("reel=10.0.0.2 gate").ends_with("did you mean 'real'?"));
    assert!(vs_err("Scheduler=rr").ends_with("did you mean 'scheduler'?"));
    // No '=' at all.
    assert_eq!(
        one_err("checktimeout 5\n"),
        "ldirectord.cf:1: expected 'checktimeout=value', got 'checktimeout 5'; did you mean 'checktimeout=5'?"
    );
    assert!(one_err("garbage\n").starts_with("ldirectord.cf:1: expected 'name=value', got 'garbage'"));
    assert!(vs_err("real 10.0.0.2 gate").contains("did you mean 'real=10.0.0.2 gate'?"));
}

#[test]
fn directives_in_the_wrong_place() {
    let e = one_err("scheduler=rr\n");
    assert!(e.starts_with("ldirectord.cf:1: 'scheduler' belongs in a virtual section: write it under a virtual= line, indented"), "{e}");
    let e = vs_err("autoreload=yes");
    assert_eq!(
        e,
        "ldirectord.cf:2: 'autoreload' is a global directive and cannot be set per virtual service: write it in column 0, before the first virtual= line"
    );
    let e = vs_err("virtual=10.0.0.9:80");
    assert!(e.contains("virtual= starts a new virtual section and must be written in column 0"), "{e}");
}

// --- section layout --------------------------------------------------------------------------

#[test]
fn tab_and_four_spaces_indent_a_section() {
    let cfg =
        clean("virtual=10.0.0.1:80\n\treal=10.0.0.2 gate\n    real=10.0.0.3 gate\n        scheduler=rr\n");
    assert_eq!(cfg.virtuals[0].reals.len(), 2);
    assert_eq!(cfg.virtuals[0].scheduler, "rr");
}

#[test]
fn three_spaces_are_not_enough() {
    let e = errs("virtual=10.0.0.1:80\n\treal=10.0.0.2 gate\n   scheduler=rr\n\tchecktype=connect\n");
    assert_eq!(
        e,
        vec!["ldirectord.cf:3: this line is indented by 3 columns: lines of a virtual section must be indented by at least 4 spaces or a tab"]
    );
    let e = one_err("virtual=10.0.0.1:80\n real=10.0.0.2 gate\n");
    assert!(e.contains("indented by 1 column:"), "{e}");
}

#[test]
fn an_empty_line_ends_the_section() {
    let text = "virtual=10.0.0.1:80\n\treal=10.0.0.2 gate\n\n\tscheduler=rr\n";
    assert_eq!(
        one_err(text),
        "ldirectord.cf:4: this indented line is outside any virtual section: the empty line 3 ended the section of the virtual at line 1; remove the empty line (or write '#' on it) to keep this line in that section"
    );
    // A '#' line keeps the section open, even in column 0.
    let cfg = clean("virtual=10.0.0.1:80\n\treal=10.0.0.2 gate\n# a comment\n\t# another\n\tscheduler=rr\n");
    assert_eq!(cfg.virtuals[0].scheduler, "rr");
    // An empty line between sections is the normal layout.
    let cfg = clean("virtual=10.0.0.1:80\n\treal=10.0.0.2 gate\n\nvirtual=10.0.0.1:443\n\treal=10.0.0.2 gate\n\nquiescent=yes\n");
    assert_eq!(cfg.virtuals.len(), 2);
    assert!(cfg.global.quiescent);
}

#[test]
fn a_column_zero_line_ends_the_section() {
    let cfg = clean("virtual=10.0.0.1:80\n\treal=10.0.0.2 gate\nquiescent=yes\n");
    assert!(cfg.global.quiescent);
    assert_eq!(cfg.virtuals[0].reals.len(), 1);
    // The seed's unindented section: the first virtual directive in column 0 is refused.
    let e = one_err("virtual=10.0.0.1:80\nchecktype=negotiate\n");
    assert_eq!(
        e,
        "ldirectord.cf:2: 'checktype' belongs in a virtual section: write it under a virtual= line, indented by at least 4 spaces or a tab (the section of the virtual at line 1 ended before this line)"
    );
}

#[test]
fn whitespace_only_lines() {
    // Up to 4 columns: ends the section quietly (as ldirectord).
    let cfg = clean("virtual=10.0.0.1:80\n\treal=10.0.0.2 gate\n\t\nquiescent=yes\n");
    assert_eq!(cfg.virtuals.len(), 1);
    // More: ldirectord refuses the line; halo ends the section and warns.
    let (cfg, w) = ok("virtual=10.0.0.1:80\n\treal=10.0.0.2 gate\n\t\t\nquiescent=yes\n");
    assert_eq!(cfg.virtuals.len(), 1);
    assert!(w[0].starts_with("ldirectord.cf:3: this blank-looking line holds only spaces or tabs"), "{w:?}");
    // Outside a section they are skipped.
    clean("   \n\t\nchecktimeout=3\n");
}

#[test]
fn indented_line_before_any_virtual() {
    assert_eq!(
        one_err("\tchecktimeout=3\n"),
        "ldirectord.cf:1: this indented line is outside any virtual section: global directives start in column 0, and a virtual section starts with a virtual= line"
    );
}

#[test]
fn comments_inside_a_section() {
    let v = vs("scheduler=rr # round robin\nchecktype=connect\t# just connect");
    assert_eq!(v.scheduler, "rr");
    assert_eq!(v.checktype, CheckType::Connect);
    // '#' starts a comment even inside quotes, as in ldirectord.
    let e = vs_err("request=\"/page#frag\"");
    assert_eq!(
        e,
        "ldirectord.cf:2: request: the closing double quote is missing ('#' starts a comment even inside quotes, so the rest of the line was cut off)"
    );
}

#[test]
fn tabs_inside_section_values_become_four_spaces_like_ldirectord() {
    let v = vs("receive=\"a\tb\"");
    assert_eq!(v.receive.as_deref(), Some("a    b"));
}

#[test]
fn crlf_line_endings() {
    let cfg = clean("autoreload=yes\r\nvirtual=10.0.0.1:80\r\n\treal=10.0.0.2 gate\r\n\tscheduler=rr\r\n");
    assert!(cfg.global.autoreload);
    assert_eq!(cfg.virtuals[0].scheduler, "rr");
}

#[test]
fn errors_continue_and_are_all_reported() {
    let e = errs("checktimeout=x\nvirtual=10.0.0.1:80\n\treal=10.0.0.2 bogus\n\tscheduler=RR\nfork=maybe\n");
    assert_eq!(e.len(), 4, "{e:?}");
    assert!(e[0].starts_with("ldirectord.cf:1: checktimeout:"));
    assert!(e[1].starts_with("ldirectord.cf:3: real:"));
    assert!(e[2].starts_with("ldirectord.cf:4: scheduler:"));
    assert!(e[3].starts_with("ldirectord.cf:5: fork:"));
}

#[test]
fn lines_of_a_refused_virtual_are_still_checked() {
    let e = errs("virtual=10.0.0.300:80\n\treal=10.0.0.2 gate\n\tscheduler=RR\n");
    assert_eq!(e.len(), 2, "{e:?}");
    assert!(e[0].starts_with("ldirectord.cf:1: virtual: invalid IPv4 address '10.0.0.300'"), "{e:?}");
    assert!(e[1].starts_with("ldirectord.cf:3: scheduler:"), "{e:?}");
}

// --- quoting ---------------------------------------------------------------------------------

#[test]
fn quoted_only_directives_refuse_bare_values() {
    for name in ["request", "receive", "login", "passwd", "database", "secret", "load"] {
        let e = vs_err(&format!("{name}=value"));
        assert!(
            e.starts_with(&format!(
                "ldirectord.cf:2: {name}: the value must be double-quoted, as in {name}=\""
            )),
            "{e}"
        );
        assert!(e.ends_with(&format!("ldirectord reads an unquoted {name} as \"Unknown command\"")), "{e}");
    }
    for name in ["callback", "logfile"] {
        let e = one_err(&format!("{name}=/x\n"));
        assert!(e.contains(&format!("{name}: the value must be double-quoted")), "{e}");
    }
}

#[test]
fn quoted_values() {
    let v = vs("request=\"index.html\"\nreceive=\"Test Page\"\nlogin=\"u\"\npasswd=\"p w\"\ndatabase=\"db\"\nsecret=\"s\"\nload=\"cpu\"");
    assert_eq!(v.request.as_deref(), Some("index.html"));
    assert_eq!(v.receive.as_deref(), Some("Test Page"));
    assert_eq!(v.login.as_deref(), Some("u"));
    assert_eq!(v.passwd.as_deref(), Some("p w"));
    assert_eq!(v.database.as_deref(), Some("db"));
    assert_eq!(v.secret.as_deref(), Some("s"));
    assert_eq!(v.load.as_deref(), Some("cpu"));
    // ldirectord's greedy "(.*)" runs to the last quote.
    assert_eq!(vs("receive=\"say \"hi\"\"").receive.as_deref(), Some("say \"hi\""));
    // Empty strings are refused, as in ldirectord.
    assert!(vs_err("request=\"\"").contains("no request string specified"));
    assert!(vs_err("receive=\"\"").contains("receive string between the quotes is empty"));
    assert!(vs_err("login=\"\"").contains("empty"));
    assert!(vs_err("load=\"two words\"").contains("expected one word"));
    // Text after the closing quote is ignored with a warning.
    let (cfg, w) = ok(&section("request=\"/a\" extra"));
    assert_eq!(cfg.virtuals[0].request.as_deref(), Some("/a"));
    assert!(w[0].contains("'extra' after the closing quote is ignored"), "{w:?}");
}

#[test]
fn quoted_or_bare_directives() {
    for (line, want) in [
        ("checkcommand=/usr/local/bin/check", "/usr/local/bin/check"),
        ("checkcommand=\"/usr/local/bin/check --x\"", "/usr/local/bin/check --x"),
    ] {
        assert_eq!(vs(line).checkcommand, want);
    }
    assert_eq!(vs("virtualhost=www.x.y.z").virtualhost.as_deref(), Some("www.x.y.z"));
    assert_eq!(vs("virtualhost=\"www.x.y.z\"").virtualhost.as_deref(), Some("www.x.y.z"));
    assert_eq!(vs("monitorfile=\"/var/log/mon\"").monitorfile, Some(PathBuf::from("/var/log/mon")));
    assert_eq!(vs("monitorfile=/var/log/mon").monitorfile, Some(PathBuf::from("/var/log/mon")));
    assert_eq!(vs("fallbackcommand=\"/bin/fb\"").fallbackcommand.as_deref(), Some("/bin/fb"));
    assert!(vs_err("checkcommand=").contains("checkcommand: no value"));
    assert!(vs_err("virtualhost=\"\"").contains("virtualhost: no value"));
    assert!(vs_err("monitorfile=\"/x").contains("closing double quote is missing"));
}

// --- virtual directives ----------------------------------------------------------------------

#[test]
fn every_virtual_directive_is_accepted() {
    let v = vs("\
real=10.0.0.2:8080 masq 5
checktype=negotiate
checkcommand=/bin/check
checktimeout=4
negotiatetimeout=12
failurecount=2
checkport=8080
request=\"health\"
receive=\"OK\"
httpmethod=head
virtualhost=www.example.com
login=\"l\"
passwd=\"p\"
database=\"d\"
secret=\"s\"
load=\"x\"
scheduler=wlc
schedflags=sh-port
persistent=600
netmask=255.255.255.0
protocol=tcp
ops=no
service=https
fallback=127.0.0.1 masq
fallbackcommand=/bin/fb
quiescent=yes
cleanstop=no
emailalert=\"a@b\"
emailalertfreq=60
emailalertstatus=running
monitorfile=/var/log/mon
smtp=10.0.0.25
servicename=Web Site
comment=Test load balanced web site");
    assert_eq!(v.reals[0].port, Some(8080));
    assert_eq!(v.reals[0].forward, Forward::Masq);
    assert_eq!(v.reals[0].weight, 5);
    assert_eq!(v.checktype, CheckType::Negotiate);
    assert_eq!(v.checkcommand, "/bin/check");
    assert_eq!(v.checktimeout, Some(4));
    assert_eq!(v.negotiatetimeout, Some(12));
    assert_eq!(v.failurecount, Some(2));
    assert_eq!(v.checkport, Some(8080));
    assert_eq!(v.request.as_deref(), Some("health"));
    assert_eq!(v.receive.as_deref(), Some("OK"));
    assert_eq!(v.httpmethod, HttpMethod::Head);
    assert_eq!(v.virtualhost.as_deref(), Some("www.example.com"));
    assert_eq!(v.login.as_deref(), Some("l"));
    assert_eq!(v.passwd.as_deref(), Some("p"));
    assert_eq!(v.database.as_deref(), Some("d"));
    assert_eq!(v.secret.as_deref(), Some("s"));
    assert_eq!(v.load.as_deref(), Some("x"));
    assert_eq!(v.scheduler, "wlc");
    assert_eq!(v.schedflags.as_deref(), Some("sh-port"));
    assert_eq!(v.persistent, Some(600));
    assert_eq!(v.netmask.as_deref(), Some("255.255.255.0"));
    assert_eq!(v.protocol, Protocol::Tcp);
    assert!(!v.ops);
    assert_eq!(v.service, Service::Https);
    assert_eq!(v.fallback, Some(Fallback { addr: ip("127.0.0.1"), port: None, forward: Forward::Masq }));
    assert_eq!(v.fallbackcommand.as_deref(), Some("/bin/fb"));
    assert_eq!(v.quiescent, Some(true));
    assert_eq!(v.cleanstop, Some(false));
    assert_eq!(v.emailalert, Some(vec!["a@b".to_string()]));
    assert_eq!(v.emailalertfreq, Some(60));
    assert_eq!(v.emailalertstatus, Some(vec![DaemonStatus::Running]));
    assert_eq!(v.monitorfile, Some(PathBuf::from("/var/log/mon")));
    assert_eq!(v.smtp.as_deref(), Some("10.0.0.25"));
    assert_eq!(v.servicename.as_deref(), Some("Web Site"));
    assert_eq!(v.comment.as_deref(), Some("Test load balanced web site"));
}

#[test]
fn checktype_values() {
    for (word, want) in [
        ("connect", CheckType::Connect),
        ("negotiate", CheckType::Negotiate),
        ("ping", CheckType::Ping),
        ("external", CheckType::External),
        ("external-perl", CheckType::ExternalPerl),
        ("off", CheckType::Off),
        ("on", CheckType::On),
        ("3", CheckType::Combined(3)),
    ] {
        assert_eq!(vs(&format!("checktype={word}")).checktype, want, "{word}");
        assert_eq!(want.to_string(), word);
    }
    assert!(vs_err("checktype=http").contains("checktype must be connect, negotiate"));
    assert!(vs_err("checktype=").contains("no value"));
    assert!(vs_err("checktype=99999999999").contains("too large"));
}

#[test]
fn every_virtual_directive_rejects_bad_values() {
    let table: &[(&str, &str)] = &[
        ("checktimeout=0", "checktimeout: must be at least 1 second"),
        ("negotiatetimeout=x", "negotiatetimeout: expected a whole number of seconds"),
        ("checkcount=0", "checkcount: must be greater than 0"),
        ("failurecount=-2", "failurecount: expected a whole number greater than 0"),
        ("checkinterval=0", "checkinterval: must be at least 1 second"),
        ("checkport=0", "checkport: expected a port from 1 to 65535, got '0'"),
        ("checkport=65536", "checkport: expected a port from 1 to 65535"),
        ("checkport=http", "checkport: expected a port from 1 to 65535, got 'http'"),
        ("scheduler=RR", "scheduler: invalid scheduler 'RR': expected lowercase letters only"),
        ("scheduler=", "scheduler: no value"),
        ("persistent=0", "persistent: must be at least 1 second (ipvsadm refuses -p 0)"),
        ("persistent=ten", "persistent: expected a number of seconds, got 'ten'"),
        ("schedflags=", "schedflags: no value"),
        ("netmask=24", "netmask: invalid netmask '24': dotted quad notation is required"),
        ("netmask=255.255.255.256", "netmask: invalid netmask"),
        (
            "protocol=fwm",
            "protocol: protocol must be tcp or udp if the virtual service is an address and port, got 'fwm'",
        ),
        ("protocol=rr", "got 'rr' (to choose the scheduler, write scheduler=rr)"),
        ("ops=true", "ops: expected yes or no, got 'true'"),
        ("service=web", "service: service must be dns, ftp, http"),
        ("service=HTTP", "did you mean 'http'?"),
        ("httpmethod=POST", "httpmethod: httpmethod must be GET or HEAD, got 'POST'"),
        ("fallback6=[::1]:80", "fallback6: a virtual (IPv4) section takes fallback=, not fallback6="),
        ("fallback=10.0.0.9:80 nat", "fallback: the forwarding method must be gate, masq or ipip"),
        ("quiescent=no thanks", "quiescent: expected yes or no"),
        ("cleanstop=YES", "cleanstop: expected yes or no, got 'YES' (ldirectord accepts only the lowercase"),
        ("emailalert=", "emailalert: no email address specified"),
        ("emailalertfreq=x", "emailalertfreq: expected a number of seconds"),
        (
            "emailalertstatus=stopping ; only stops",
            "emailalertstatus: invalid email alert status at 'stopping ; only stops'",
        ),
        ("smtp=", "smtp: no value"),
        ("real6=[2001:db8::2]:80 gate", "real6: a virtual (IPv4) section takes real=, not real6="),
    ];
    for (line, want) in table {
        let e = vs_err(line);
        assert!(e.starts_with("ldirectord.cf:2: "), "{line}: {e}");
        assert!(e.contains(want), "{line}:\n  got  {e}\n  want {want}");
    }
}

#[test]
fn httpmethod_is_case_insensitive_like_ldirectord() {
    assert_eq!(vs("httpmethod=get").httpmethod, HttpMethod::Get);
    assert_eq!(vs("httpmethod=HEAD").httpmethod, HttpMethod::Head);
}

#[test]
fn ops_and_netmask_warn_when_they_have_no_effect() {
    let (cfg, w) = ok(&section("ops=yes"));
    assert!(cfg.virtuals[0].ops);
    assert!(w[0].contains("ops=yes has no effect on a tcp service"), "{w:?}");
    let cfg = clean("virtual=10.0.0.1:53\n\tops=yes\n");
    assert!(cfg.virtuals[0].ops && cfg.virtuals[0].protocol == Protocol::Udp);
    let (_, w) = ok(&section("netmask=255.255.255.0"));
    assert!(w[0].contains("netmask has no effect without persistent"), "{w:?}");
}

#[test]
fn protocol_can_be_changed_on_an_address() {
    assert_eq!(vs("protocol=udp").protocol, Protocol::Udp);
    let cfg = clean("virtual=10.0.0.1:53\n\tprotocol=tcp\n");
    assert_eq!(cfg.virtuals[0].protocol, Protocol::Tcp);
    assert_eq!(cfg.virtuals[0].id(), "tcp:10.0.0.1:53");
}

#[test]
fn ftp_and_sip_login_defaults() {
    let cfg = clean("virtual=10.0.0.1:21\n\treal=10.0.0.2 masq\n");
    let v = &cfg.virtuals[0];
    assert_eq!(v.service, Service::Ftp);
    assert_eq!(v.effective_login("dir1"), "anonymous");
    assert_eq!(v.effective_passwd("dir1"), "ldirectord@dir1");
    let v = vs("service=sip");
    assert_eq!(v.effective_login("dir1"), "ldirectord@dir1");
    assert_eq!(v.effective_passwd("dir1"), "");
    let v = vs("service=ftp\nlogin=\"bob\"\npasswd=\"pw\"");
    assert_eq!((v.effective_login("h").as_str(), v.effective_passwd("h").as_str()), ("bob", "pw"));
    assert_eq!(vs("").effective_login("h"), "");
}

// --- real servers ----------------------------------------------------------------------------

#[test]
fn real_server_forms() {
    let v = vs("\
real=10.0.0.2 gate
real=10.0.0.3:8080 masq 0
real=10.0.0.4:http ipip 10 \"/health\", \"OK\"
real=10.0.0.5:80 gate 2 \"a\" \"b\" l:5 u:100
real=10.0.0.6:80 gate u:7 l:3
real=web1.example.com:80 gate
real=10.0.0.7:0 gate \"x\",\"y\"");
    let r = &v.reals;
    assert_eq!(
        (r[0].addr.clone(), r[0].port, r[0].forward, r[0].weight),
        (ip("10.0.0.2"), None, Forward::Gate, 1)
    );
    assert_eq!((r[1].port, r[1].forward, r[1].weight), (Some(8080), Forward::Masq, 0));
    assert_eq!((r[2].port, r[2].forward, r[2].weight), (Some(80), Forward::Ipip, 10));
    assert_eq!((r[2].request.as_deref(), r[2].receive.as_deref()), (Some("/health"), Some("OK")));
    assert_eq!((r[3].request.as_deref(), r[3].receive.as_deref()), (Some("a"), Some("b")));
    assert_eq!((r[3].lower, r[3].upper), (Some(5), Some(100)));
    assert_eq!((r[4].lower, r[4].upper), (Some(3), Some(7)));
    assert_eq!(r[5].addr, Host::Name("web1.example.com".into()));
    assert_eq!(r[6].port, None);
    assert_eq!((r[6].request.as_deref(), r[6].receive.as_deref()), (Some("x"), Some("y")));
    assert_eq!(v.request_for(&r[2]), "/health");
    assert_eq!(v.receive_for(&r[2]), "OK");
    // Without a real port the check port is the service's.
    assert_eq!(v.checkport_for(&r[0]), Some(80));
    assert_eq!(v.checkport_for(&r[1]), Some(8080));
    let v = vs("checkport=81\nreal=10.0.0.3:8080 masq");
    assert_eq!(v.checkport_for(&v.reals[0]), Some(81));
    let v = clean("virtual=1\n\treal=10.0.0.2 gate\n").virtuals.remove(0);
    assert_eq!(v.checkport_for(&v.reals[0]), None, "fwmark, service none, no port");
}

#[test]
fn real_server_errors() {
    let table: &[(&str, &str)] = &[
        ("real=", "real: expected ip|host"),
        ("real=10.0.0.2:80", "real: a forwarding method (gate, masq or ipip) must follow the address, as in real=10.0.0.2:80 gate"),
        ("real=10.0.0.2:80 route", "real: the forwarding method must be gate, masq or ipip, got 'route'"),
        ("real=10.0.0.2:80 GATE", "got 'GATE' (lowercase)"),
        ("real=10.0.0.2::5060 gate", "real: '10.0.0.2::5060': write one ':' between the address and the port, as in 10.0.0.2:5060"),
        ("real=10.0.0.256:80 gate", "real: invalid IPv4 address '10.0.0.256'"),
        ("real=5060 gate", "real: invalid address '5060': expected a dotted quad"),
        ("real=10.0.0.2:99999 gate", "real: port 99999 is out of range"),
        ("real=10.0.0.2:dns gate", "'dns' is an ldirectord service name, not a port name; its port is 53"),
        ("real=10.0.0.2:HTTP gate", "(http is 80; port names are lowercase)"),
        ("real=10.0.0.2:8$ gate", "real: invalid port '8$'"),
        ("real=web_1 gate", "real: invalid host name 'web_1': '_' is not allowed"),
        ("real=10.0.0.2 gate 70000", "real: invalid weight '70000': expected a whole number from 0 to 65535"),
        ("real=10.0.0.2 gate 1 2", "real: unexpected '2': the weight comes right after the forwarding method"),
        ("real=10.0.0.2 gate 1 \"/only-request\"", "real: a per-real check is written as two quoted strings"),
        ("real=10.0.0.2 gate 1 \"/a\", \"b", "real: a per-real check is written as two quoted strings"),
        ("real=10.0.0.2 gate \"<l:5>\"", "real: a per-real check is written as two quoted strings"),
        ("real=10.0.0.2 gate <l:5>", "write thresholds as l:5 u:100, without quotes or angle brackets"),
        ("real=10.0.0.2 gate l:x", "real: invalid threshold 'l:x'"),
        ("real=10.0.0.2 gate l:1 l:2", "real: l: is given twice"),
        ("real=10.0.0.2 gate l:1 \"a\", \"b\"", "one \"request\", \"receive\" pair may follow the weight, before l: and u:"),
        ("real=10.0.0.2 gate junk", "real: invalid real server line around 'junk'"),
        ("real=2001:db8::2 gate", "real: '2001:db8::2': IPv6 addresses must be written in brackets"),
        ("real=[2001:db8::2]:80 gate", "real: '[2001:db8::2]' is an IPv6 address"),
        ("real=10.0.0.1->10.0.0.2->10.0.0.3 gate", "a range has one '->'"),
    ];
    for (line, want) in table {
        let e = vs_err(line);
        assert!(e.starts_with("ldirectord.cf:2: "), "{line}: {e}");
        assert!(e.contains(want), "{line}:\n  got  {e}\n  want {want}");
    }
}

#[test]
fn duplicate_real_servers_warn() {
    let (cfg, w) = ok(&section("real=10.0.0.2:80 gate\nreal=10.0.0.2:80 gate 2"));
    assert_eq!(cfg.virtuals[0].reals.len(), 2);
    assert_eq!(
        w,
        vec!["ldirectord.cf:3: real server 10.0.0.2:80 is already listed at line 2 of this virtual service; LVS holds it once"]
    );
}

#[test]
fn ranges_expand_every_ipv4_address() {
    let v = vs("real=192.168.6.2->192.168.6.7:80 gate 3");
    let addrs: Vec<String> = v.reals.iter().map(|r| r.addr.to_string()).collect();
    assert_eq!(
        addrs,
        ["192.168.6.2", "192.168.6.3", "192.168.6.4", "192.168.6.5", "192.168.6.6", "192.168.6.7"]
    );
    assert!(v
        .reals
        .iter()
        .all(|r| r.port == Some(80) && r.weight == 3 && r.line == 2 && r.range_end.is_none()));
    // Across an octet boundary (ldirectord compares these as strings and can stop early).
    let v = vs("real=10.0.0.254->10.0.1.1 gate");
    let addrs: Vec<String> = v.reals.iter().map(|r| r.addr.to_string()).collect();
    assert_eq!(addrs, ["10.0.0.254", "10.0.0.255", "10.0.1.0", "10.0.1.1"]);
    // One address.
    assert_eq!(vs("real=10.0.0.5->10.0.0.5 gate").reals.len(), 1);
    // The cap: exactly MAX_RANGE is fine, one more is refused.
    assert_eq!(vs("real=10.0.0.0->10.0.255.255 gate").reals.len(), MAX_RANGE as usize);
    assert_eq!(
        vs_err("real=10.0.0.0->10.1.0.0 gate"),
        "ldirectord.cf:2: real: the range 10.0.0.0->10.1.0.0 holds 65537 addresses; halo expands at most 65536"
    );
    assert_eq!(
        vs_err("real=10.0.0.9->10.0.0.1 gate"),
        "ldirectord.cf:2: real: invalid range 10.0.0.9->10.0.0.1: the first address must not be greater than the last"
    );
}

#[test]
fn ranges_of_names_are_left_to_the_runtime() {
    let v = vs("real=sql01->sql03:3306 gate 10");
    assert_eq!(v.reals.len(), 1);
    let r = &v.reals[0];
    assert_eq!(r.addr, Host::Name("sql01".into()));
    assert_eq!(r.range_end, Some(Host::Name("sql03".into())));
    assert_eq!((r.port, r.weight), (Some(3306), 10));
}

#[test]
fn ipv6_ranges_are_refused() {
    let e = one_err("virtual6=[2001:db8::1]:80\n\treal6=[2001:db8::2]->[2001:db8::4]:80 gate\n");
    assert!(e.contains("address ranges are not supported for IPv6"), "{e}");
}

// --- virtual addresses -----------------------------------------------------------------------

#[test]
fn virtual_address_forms() {
    let cfg = clean(
        "virtual=10.0.0.1:http\n\treal=10.0.0.2 gate\n\
         virtual = 10.0.0.1:443\n\treal=10.0.0.2 gate\n\
         virtual=www.example.com:8080\n\treal=10.0.0.2 gate\n\
         virtual=10.0.0.1:domain\n\treal=10.0.0.2 gate\n",
    );
    let v = &cfg.virtuals;
    assert_eq!(v[0].addr, VirtualAddr::Ip { ip: "10.0.0.1".parse().unwrap(), port: 80 });
    assert_eq!(v[0].service, Service::Http);
    assert_eq!(v[1].port(), 443);
    assert_eq!(v[1].service, Service::Https);
    assert_eq!(v[2].addr, VirtualAddr::Host { name: "www.example.com".into(), port: 8080 });
    assert_eq!(v[2].service, Service::None);
    assert_eq!(v[2].id(), "tcp:www.example.com:8080");
    assert_eq!(v[3].protocol, Protocol::Udp);
    assert_eq!(v[3].service, Service::Dns);
}

#[test]
fn virtual_address_errors() {
    let table: &[(&str, &str)] = &[
        ("virtual=", "virtual: no value: expected an IP:port, host:port or a firewall mark"),
        ("virtual=192.168.1.1", "the port is required, as in 192.168.1.1:80 (ldirectord would read '192.168.1.1' as firewall mark 192)"),
        ("virtual=10.0.0.1:", "virtual: invalid port '' in '10.0.0.1:'"),
        ("virtual=10.0.0.1:99999", "virtual: port 99999 is out of range"),
        ("virtual=10.0.0.1:dns", "'dns' is an ldirectord service name, not a port name; its port is 53"),
        ("virtual=[2001:db8::1]:80", "virtual: cannot specify an IPv6 address here ('[2001:db8::1]:80'): use virtual6= instead"),
        ("virtual=0", "virtual: firewall mark 0 is not allowed"),
        ("virtual=99999999999", "virtual: firewall mark '99999999999' is out of range"),
        ("virtual=10.0.0.1:80:90", "virtual: '10.0.0.1:80:90': expected one ':' between the address and the port"),
        ("virtual=2001:db8::1:80", "IPv6 addresses must be written in brackets, as in [2001:db8::1]:80, in a virtual6= section"),
        ("virtual=web server:80", "virtual: expected an IP:port"),
        ("virtual6=2001:db8::1:80", "virtual6: '2001:db8::1:80': IPv6 addresses must be written in brackets"),
        ("virtual6=[2001:db8::zz]:80", "virtual6: invalid IPv6 address '2001:db8::zz'"),
        ("virtual6=10.0.0.1:80", "virtual6: '10.0.0.1' is an IPv4 address, but this is a virtual6 service"),
        ("virtual6=[2001:db8::1]80", "virtual6: '[2001:db8::1]80': expected ':port' after ']'"),
    ];
    for (line, want) in table {
        let e = errs(&format!("{line}\n"));
        assert!(e[0].starts_with("ldirectord.cf:1: "), "{line}: {e:?}");
        assert!(e[0].contains(want), "{line}:\n  got  {e:?}\n  want {want}");
    }
}

#[test]
fn default_service_by_port() {
    for (port, want) in [
        (21, Service::Ftp),
        (25, Service::Smtp),
        (53, Service::Dns),
        (80, Service::Http),
        (110, Service::Pop),
        (119, Service::Nntp),
        (143, Service::Imap),
        (389, Service::Ldap),
        (443, Service::Https),
        (587, Service::Submission),
        (636, Service::Ldaps),
        (993, Service::Imaps),
        (995, Service::Pops),
        (1521, Service::Oracle),
        (1812, Service::Radius),
        (3128, Service::HttpProxy),
        (3306, Service::Mysql),
        (5060, Service::Sip),
        (5432, Service::Pgsql),
        (8080, Service::None),
        (22, Service::None),
    ] {
        let cfg = clean(&format!("virtual=10.0.0.1:{port}\n"));
        let v = &cfg.virtuals[0];
        assert_eq!(v.service, want, "port {port}");
        assert_eq!(v.protocol, if port == 53 { Protocol::Udp } else { Protocol::Tcp }, "port {port}");
        if want != Service::None {
            assert_eq!(want.default_port(), Some(port));
        }
    }
    assert_eq!(Service::None.default_port(), None);
    assert_eq!(Service::Simpletcp.default_port(), None);
    // service= wins over the port, whatever the order.
    assert_eq!(vs("service=simpletcp").service, Service::Simpletcp);
    for s in Service::ALL {
        assert_eq!(Service::from_name(s.name()), Some(s));
        assert_eq!(vs(&format!("service={s}")).service, s);
    }
}

#[test]
fn port_names() {
    assert_eq!(port_by_name("http"), Some(80));
    assert_eq!(port_by_name("www"), Some(80));
    assert_eq!(port_by_name("https"), Some(443));
    assert_eq!(port_by_name("domain"), Some(53));
    assert_eq!(port_by_name("smtp"), Some(25));
    assert_eq!(port_by_name("ftp"), Some(21));
    assert_eq!(port_by_name("mysql"), Some(3306));
    assert_eq!(port_by_name("postgresql"), Some(5432));
    assert_eq!(port_by_name("HTTP"), None);
    assert_eq!(port_by_name("dns"), None);
    // Every service with a default port can be written by its /etc/services name, except
    // those whose ldirectord name is not a port name.
    for (name, port) in PORT_NAMES {
        assert!(!name.is_empty() && *port > 0);
    }
}

#[test]
fn fwmark_virtuals() {
    let cfg = clean("virtual=1\n\treal=192.168.6.2 gate\n\tservice=http\n\tprotocol=fwm\n\tcheckport=80\n");
    let v = &cfg.virtuals[0];
    assert_eq!(v.addr, VirtualAddr::Fwmark(1));
    assert_eq!(v.protocol, Protocol::Fwm);
    assert_eq!(v.service, Service::Http);
    assert_eq!(v.port(), 0);
    assert_eq!(v.id(), "fwm:1");
    assert_eq!(v.reals[0].port, None);
    assert_eq!(v.checkport_for(&v.reals[0]), Some(80));
    // Without service=, a fwmark service has service none.
    assert_eq!(clean("virtual=7\n").virtuals[0].service, Service::None);
    assert_eq!(
        one_err("virtual=1\n\tprotocol=tcp\n"),
        "ldirectord.cf:2: protocol: protocol must be fwm if the virtual service is a fwmark (a number), got 'tcp'"
    );
    // The fallback of a fwmark service has port 0, as in ldirectord.
    let cfg = clean("fallback=127.0.0.1\nvirtual=1\n");
    assert_eq!(cfg.virtuals[0].effective_fallback(&cfg.global).and_then(|f| f.port), Some(0));
}

#[test]
fn ipv6_virtuals() {
    let cfg = clean(
        "fallback6=[::1]:80\n\
         virtual6=[2001:db8::1]:80\n\
         \treal6=[2001:db8::2]:80 masq\n\
         \treal6=[2001:db8::3] gate 2\n\
         \treal6=web6.example.com:80 gate\n\
         \tnetmask=64\n\
         \tpersistent=300\n\
         virtual6=2\n\
         virtual=2\n",
    );
    let v = &cfg.virtuals[0];
    assert!(v.v6);
    assert_eq!(v.addr, VirtualAddr::Ip { ip: "2001:db8::1".parse().unwrap(), port: 80 });
    assert_eq!(v.id(), "tcp:[2001:db8::1]:80");
    assert_eq!(v.reals[0].addr, ip("2001:db8::2"));
    assert_eq!(v.reals[0].port, Some(80));
    assert_eq!(v.reals[0].forward, Forward::Masq);
    assert_eq!(v.reals[0].addr.to_string(), "[2001:db8::2]");
    assert_eq!((v.reals[1].port, v.reals[1].weight), (None, 2));
    assert_eq!(v.reals[2].addr, Host::Name("web6.example.com".into()));
    assert_eq!(v.netmask.as_deref(), Some("64"));
    assert_eq!(v.effective_fallback(&cfg.global).map(|f| f.addr), Some(ip("::1")));
    // fwm6:2 and fwm:2 are different services.
    assert_eq!(cfg.virtuals[1].id(), "fwm6:2");
    assert_eq!(cfg.virtuals[2].id(), "fwm:2");
    let table: &[(&str, &str)] = &[
        ("real=[2001:db8::2]:80 gate", "real: a virtual6 section takes real6=, not real="),
        ("real6=10.0.0.2:80 gate", "real6: '10.0.0.2' is an IPv4 address, but this is a virtual6 service"),
        ("fallback=[::1]:80", "fallback: a virtual6 section takes fallback6=, not fallback="),
        ("netmask=255.255.255.0", "a prefix length between 1 and 128 is required for a virtual6 service"),
        ("netmask=129", "a prefix length between 1 and 128 is required"),
    ];
    for (line, want) in table {
        let e = one_err(&format!("virtual6=[2001:db8::1]:80\n\t{line}\n"));
        assert!(e.contains(want), "{line}:\n  got  {e}\n  want {want}");
    }
}

#[test]
fn duplicate_virtual_services_name_both_lines() {
    let text = "virtual=10.0.0.1:80\n\treal=10.0.0.2 gate\n\nvirtual=10.0.0.1:http\n\treal=10.0.0.3 gate\n";
    assert_eq!(
        one_err(text),
        "ldirectord.cf:4: duplicate virtual service tcp:10.0.0.1:80: it is already defined at line 1 (ldirectord refuses duplicates too)"
    );
    // Same address and port over another protocol is another service.
    let cfg = clean("virtual=10.0.0.1:53\n\tprotocol=tcp\nvirtual=10.0.0.1:53\n");
    assert_eq!(cfg.virtuals.len(), 2);
    assert!(one_err("virtual=5\nvirtual=5\n")
        .contains("duplicate virtual service fwm:5: it is already defined at line 1"));
    assert!(
        one_err("virtual6=[2001:db8::1]:80\nvirtual6=[2001:db8:0::1]:80\n").contains("tcp:[2001:db8::1]:80")
    );
}

// --- timeouts and other resolutions ----------------------------------------------------------

#[test]
fn timeout_resolution_chains() {
    // (global checktimeout, global negotiatetimeout, virtual checktimeout, virtual
    // negotiatetimeout) → (effective checktimeout, effective negotiatetimeout).
    type Row = (Option<u32>, Option<u32>, Option<u32>, Option<u32>, u32, u32);
    let table: &[Row] = &[
        (None, None, None, None, 5, 30),
        (Some(3), None, None, None, 3, 3),
        (None, Some(20), None, None, 20, 20),
        (Some(3), Some(20), None, None, 3, 20),
        (Some(3), Some(20), Some(7), None, 7, 7),
        (Some(3), Some(20), None, Some(9), 9, 9),
        (Some(3), Some(20), Some(7), Some(9), 7, 9),
        (None, None, Some(7), None, 7, 7),
        (None, None, None, Some(9), 9, 9),
        (Some(3), None, None, Some(9), 9, 9),
        (None, Some(20), Some(7), None, 7, 7),
    ];
    for &(gc, gn, vc, vn, want_c, want_n) in table {
        let mut text = String::new();
        if let Some(t) = gc {
            text.push_str(&format!("checktimeout={t}\n"));
        }
        if let Some(t) = gn {
            text.push_str(&format!("negotiatetimeout={t}\n"));
        }
        text.push_str("virtual=10.0.0.1:80\n");
        if let Some(t) = vc {
            text.push_str(&format!("\tchecktimeout={t}\n"));
        }
        if let Some(t) = vn {
            text.push_str(&format!("\tnegotiatetimeout={t}\n"));
        }
        let cfg = clean(&text);
        let v = &cfg.virtuals[0];
        assert_eq!(v.effective_checktimeout(&cfg.global), want_c, "{text}");
        assert_eq!(v.effective_negotiatetimeout(&cfg.global), want_n, "{text}");
    }
}

#[test]
fn per_virtual_overrides_resolve_to_globals() {
    let cfg = clean(
        "failurecount=3\nquiescent=yes\ncleanstop=no\nemailalert=root\nemailalertfreq=60\n\
         emailalertstatus=stopping\nsmtp=mail\nfallback=127.0.0.1\nfallbackcommand=/bin/fb\n\
         virtual=10.0.0.1:80\n\
         virtual=10.0.0.1:443\n\tfailurecount=1\n\tquiescent=no\n\tcleanstop=yes\n\temailalert=ops\n\
         \temailalertfreq=0\n\temailalertstatus=all\n\tsmtp=mail2\n\tfallback=127.0.0.2:8443\n\tfallbackcommand=/bin/fb2\n",
    );
    let g = &cfg.global;
    let (a, b) = (&cfg.virtuals[0], &cfg.virtuals[1]);
    assert_eq!((a.effective_failurecount(g), b.effective_failurecount(g)), (3, 1));
    assert_eq!((a.effective_checkcount(g), b.effective_checkcount(g)), (1, 1));
    assert_eq!((a.effective_quiescent(g), b.effective_quiescent(g)), (true, false));
    assert_eq!((a.effective_cleanstop(g), b.effective_cleanstop(g)), (false, true));
    assert_eq!(
        (a.effective_emailalert(g), b.effective_emailalert(g)),
        (&["root".to_string()][..], &["ops".to_string()][..])
    );
    assert_eq!((a.effective_emailalertfreq(g), b.effective_emailalertfreq(g)), (60, 0));
    assert_eq!(a.effective_emailalertstatus(g), &[DaemonStatus::Stopping]);
    assert_eq!(b.effective_emailalertstatus(g), &DaemonStatus::ALL);
    assert_eq!((a.effective_smtp(g), b.effective_smtp(g)), (Some("mail"), Some("mail2")));
    assert_eq!(
        (a.effective_fallbackcommand(g), b.effective_fallbackcommand(g)),
        (Some("/bin/fb"), Some("/bin/fb2"))
    );
    // The global fallback without a port takes each virtual's port.
    assert_eq!(
        a.effective_fallback(g),
        Some(Fallback { addr: ip("127.0.0.1"), port: Some(80), forward: Forward::Gate })
    );
    assert_eq!(
        b.effective_fallback(g),
        Some(Fallback { addr: ip("127.0.0.2"), port: Some(8443), forward: Forward::Gate })
    );
    // No fallback for a virtual6 when only fallback (IPv4) is set.
    let cfg = clean("fallback=127.0.0.1:80\nvirtual6=[2001:db8::1]:80\n");
    assert_eq!(cfg.virtuals[0].effective_fallback(&cfg.global), None);
}

#[test]
fn checkinterval_per_virtual_needs_fork() {
    let (cfg, w) = ok("virtual=10.0.0.1:80\n\tcheckinterval=3\n");
    assert_eq!(cfg.virtuals[0].checkinterval, Some(3));
    assert_eq!(cfg.virtuals[0].effective_checkinterval(&cfg.global), 10);
    assert_eq!(
        w,
        vec!["ldirectord.cf:2: checkinterval in virtual service tcp:10.0.0.1:80 is ignored when fork=no (as in ldirectord): set fork=yes for one checker per virtual service, or set checkinterval globally"]
    );
    // fork=yes anywhere in the file (ldirectord checks after reading it all).
    let cfg =
        clean("checkinterval=20\nvirtual=10.0.0.1:80\n\tcheckinterval=3\nvirtual=10.0.0.1:443\nfork=yes\n");
    assert_eq!(cfg.virtuals[0].effective_checkinterval(&cfg.global), 3);
    assert_eq!(cfg.virtuals[1].effective_checkinterval(&cfg.global), 20);
}

#[test]
fn checkinterval_without_fork_warns_with_the_files_own_name_and_line() {
    // An executed configuration (execute=web.cf) is read with its own name in messages.
    let (cfg, w) = parse_ldirectord_cf(
        Path::new("/etc/ha.d/conf/web.cf"),
        "checkinterval=7\nvirtual=10.0.0.1:80\n\treal=10.0.0.2:80 gate\n\tcheckinterval=2\n",
    )
    .expect("parses");
    let w: Vec<String> = w.iter().map(ToString::to_string).collect();
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(w[0].starts_with("/etc/ha.d/conf/web.cf:4: checkinterval in virtual service tcp:10.0.0.1:80 is ignored when fork=no"), "{w:?}");
    assert_eq!(cfg.virtuals[0].effective_checkinterval(&cfg.global), 7);
}

// --- the seed as printed ---------------------------------------------------------------------

/// Seed 002's ldirectord.cf exactly as the article prints it (with `$VIP`, `$RIP1`, `$RIP2`
/// replaced). ldirectord refuses it; halo must refuse it too, saying why at each line.
const SEED_AS_PRINTED: &str = r#"checktimeout=10      ; timeout de 10s avant de déclarer un serveur
"mort"
                       ; en cas d'échec de l'établissement de la connexion réseau
checkinterval=10    ; effectue un test de "vie" toutes les 10s

emailalert="root"    ; adresse mail de l'Administrateur
emailalertfreq=0     ; une seule alerte par problème
emailalertstatus=stopping ; seules les situations d'arrêt nous intéressent

virtual=192.168.1.199:80
# Pour vérifier le bon fonctionnement des noeuds du cluster, on
checktype= negotiate ; test par question / réponse
real=192.168.1.61:80 gate 1 "testcluster.html", "N1"
real=192.168.1.62:80 gate 1 "testcluster.html", "N2"

service=http
checkport=80
protocol=rr          ; toujours le Round-Robin
"#;

#[test]
fn the_seed_as_printed_is_refused_line_by_line() {
    let e = errs(SEED_AS_PRINTED);
    let lines: Vec<&str> = e.iter().map(|s| s.split(": ").next().unwrap_or("")).collect();
    assert_eq!(
        lines,
        [
            "ldirectord.cf:2",
            "ldirectord.cf:3",
            "ldirectord.cf:6",
            "ldirectord.cf:8",
            "ldirectord.cf:12",
            "ldirectord.cf:13",
            "ldirectord.cf:14",
            "ldirectord.cf:16",
            "ldirectord.cf:17",
            "ldirectord.cf:18"
        ],
        "{e:#?}"
    );
    assert!(e[0].contains("expected 'name=value', got '\"mort\"'"), "{}", e[0]);
    assert!(e[1].contains("this indented line is outside any virtual section"), "{}", e[1]);
    assert!(e[2].contains("emailalert: invalid address '\"root\"    ; adresse"), "{}", e[2]);
    assert!(e[3].contains("invalid email alert status at 'stopping ; seules"), "{}", e[3]);
    assert!(e[4].contains("'checktype' belongs in a virtual section"), "{}", e[4]);
    assert!(e[9].contains("'protocol' belongs in a virtual section"), "{}", e[9]);
}

#[test]
fn alertcommand_is_a_halo_extension_read_without_warning() {
    let cfg = clean("alertcommand=/usr/local/sbin/lb-alert --quiet\n");
    assert_eq!(cfg.global.alertcommand.as_deref(), Some("/usr/local/sbin/lb-alert --quiet"));
    let cfg = clean("alertcommand=\"/usr/local/sbin/lb alert\"\n");
    assert_eq!(cfg.global.alertcommand.as_deref(), Some("/usr/local/sbin/lb alert"));
    assert_eq!(clean("checkinterval=5\n").global.alertcommand, None);
    let e = one_err("alertcommand=\n");
    assert!(e.starts_with("ldirectord.cf:1: alertcommand: no value: expected a command"), "{e}");
    // A global directive: inside a virtual section it is refused with the reason.
    let e = errs(&section("real=10.0.0.2:80 gate\nalertcommand=/bin/true"));
    assert!(e.iter().any(|m| m.contains("alertcommand")), "{e:?}");
}

#[test]
fn dataplane_is_a_halo_extension_read_without_warning() {
    assert_eq!(clean("checkinterval=5\n").global.dataplane, Dataplane::Auto);
    assert_eq!(clean("dataplane=auto\n").global.dataplane, Dataplane::Auto);
    assert_eq!(clean("dataplane = nftables\n").global.dataplane, Dataplane::Nftables);
    assert_eq!(clean("dataplane=ipvs # the kernel's own\n").global.dataplane, Dataplane::Ipvs);
    assert_eq!(Dataplane::Ipvs.name(), "ipvs");
    let e = one_err("checkinterval=5\ndataplane=lvs\n");
    assert!(e.starts_with("ldirectord.cf:2: dataplane: expected auto, nftables or ipvs, got 'lvs'"), "{e}");
    let e = one_err("dataplane=\n");
    assert!(e.starts_with("ldirectord.cf:1: dataplane: no value: expected auto, nftables or ipvs"), "{e}");
    // ldirectord's words are lowercase; so are halo's.
    let e = one_err("dataplane=IPVS\n");
    assert!(e.contains("got 'IPVS'"), "{e}");
    // A global directive: inside a virtual section it is refused with the reason.
    let e = errs(&section("real=10.0.0.2:80 gate\ndataplane=ipvs"));
    assert!(e.iter().any(|m| m.contains("dataplane")), "{e:?}");
}
