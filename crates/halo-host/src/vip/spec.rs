//! The haresources argument of `IPaddr` / `IPaddr2` (`spec/heartbeat.md` §4.1).

use std::net::{IpAddr, Ipv4Addr};

use super::{VipError, VipSpec};

/// The longest interface name or address label the kernel takes (`IFNAMSIZ` - 1).
pub(super) const MAX_NAME: usize = 15;

/// Parses Heartbeat's IPaddr/IPaddr2 argument `ip[/bits[/iface[:label]][/broadcast]]`.
///
/// The forms are those of the heartbeat wrappers: `10.0.0.5`, `10.0.0.5/24`,
/// `10.0.0.5/24/eth0`, `10.0.0.5/24/eth0:web`, `10.0.0.5/24/10.0.0.255` (a third part that
/// starts with a digit is the broadcast address, not an interface) and
/// `10.0.0.5/24/eth0/10.0.0.255`. `bits` may also be a dotted netmask (`255.255.255.0`), as
/// the OCF agents accept. IPv6 addresses are accepted too (a halo extension: Heartbeat sends
/// them to `IPv6addr`), without label or broadcast.
///
/// Errors name the input and what was expected there.
pub fn parse_ip_spec(s: &str) -> Result<VipSpec, VipError> {
    let err = |expected: String| VipError::Spec { input: s.to_string(), expected };
    let parts: Vec<&str> = s.split('/').collect();
    if parts.len() > 4 {
        return Err(err("at most 4 parts: ip/bits/iface[:label]/broadcast".into()));
    }
    let ip = parts[0];
    let addr: IpAddr = ip.parse().map_err(|_| err(format!("an IPv4 or IPv6 address first, not {ip:?}")))?;
    let v6 = addr.is_ipv6();
    let mut spec = VipSpec { addr, prefix: None, iface: None, label: None, broadcast: None };

    if let Some(bits) = parts.get(1) {
        spec.prefix = Some(parse_prefix(bits, v6).map_err(err)?);
    }
    let mut rest = &parts[parts.len().min(2)..];
    if let Some(third) = rest.first() {
        if third.starts_with(|c: char| c.is_ascii_digit()) {
            if rest.len() > 1 {
                return Err(err(format!(
                    "nothing after the broadcast address {third:?} (the form is ip/bits/iface/broadcast)"
                )));
            }
        } else {
            let (iface, label) = match third.split_once(':') {
                Some((i, l)) => (i, Some(l)),
                None => (*third, None),
            };
            check_iface(iface).map_err(err)?;
            if let Some(label) = label {
                if v6 {
                    return Err(err("no label: labels (iface:label) are IPv4-only".into()));
                }
                check_label(iface, label).map_err(err)?;
                spec.label = Some(label.to_string());
            }
            spec.iface = Some(iface.to_string());
            rest = &rest[1..];
        }
    }
    if let Some(brd) = rest.first() {
        if v6 {
            return Err(err("no broadcast address: IPv6 has none".into()));
        }
        let b: Ipv4Addr = brd.parse().map_err(|_| err(format!("an IPv4 broadcast address, not {brd:?}")))?;
        spec.broadcast = Some(b);
    }
    Ok(spec)
}

/// `bits`: a prefix length (1..=32 or 1..=128) or, for IPv4, a contiguous dotted netmask.
fn parse_prefix(bits: &str, v6: bool) -> Result<u8, String> {
    let max = if v6 { 128 } else { 32 };
    let expected = || {
        if v6 {
            format!("a prefix length 1..=128, not {bits:?}")
        } else {
            format!("a prefix length 1..=32 or a netmask, not {bits:?}")
        }
    };
    if !bits.is_empty() && bits.len() <= 3 && bits.bytes().all(|b| b.is_ascii_digit()) {
        return match bits.parse::<u8>() {
            Ok(n) if (1..=max).contains(&n) => Ok(n),
            _ => Err(expected()),
        };
    }
    if !v6 {
        if let Ok(mask) = bits.parse::<Ipv4Addr>() {
            let m = u32::from(mask);
            let len = m.leading_ones();
            // Contiguous: the ones are all at the top.
            if len > 0 && m.checked_shl(len).unwrap_or(0) == 0 {
                return u8::try_from(len).map_err(|_| expected());
            }
            return Err(format!("a contiguous netmask, not {bits:?}"));
        }
    }
    Err(expected())
}

/// An interface name the kernel would accept (`dev_valid_name`).
pub(super) fn check_iface(iface: &str) -> Result<(), String> {
    if iface.is_empty() {
        return Err("an interface name, not an empty one".into());
    }
    if iface.len() > MAX_NAME {
        return Err(format!("an interface name of at most {MAX_NAME} bytes, not {iface:?}"));
    }
    if iface == "." || iface == ".." || iface.contains(|c: char| c == ':' || c == '/' || c.is_whitespace()) {
        return Err(format!("a valid interface name, not {iface:?}"));
    }
    Ok(())
}

/// The label suffix: the full label `iface:label` must fit the kernel's 15 bytes.
fn check_label(iface: &str, label: &str) -> Result<(), String> {
    if label.is_empty() || label.contains(|c: char| c.is_whitespace() || c == '/' || c.is_control()) {
        return Err(format!("a label after {iface}:, not {label:?}"));
    }
    let full = iface.len() + 1 + label.len();
    if full > MAX_NAME {
        return Err(format!(
            "a label of at most {MAX_NAME} bytes in all, not {iface}:{label} ({full} bytes)"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> VipSpec {
        parse_ip_spec(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn bad(s: &str) -> String {
        match parse_ip_spec(s) {
            Ok(v) => panic!("{s}: expected an error, got {v:?}"),
            Err(e) => e.to_string(),
        }
    }

    fn v4(s: &str) -> IpAddr {
        IpAddr::V4(s.parse().expect("v4"))
    }

    #[test]
    fn every_form_of_the_grammar() {
        let base = VipSpec { addr: v4("10.0.0.5"), prefix: None, iface: None, label: None, broadcast: None };
        assert_eq!(ok("10.0.0.5"), base);
        assert_eq!(ok("10.0.0.5/24"), VipSpec { prefix: Some(24), ..base.clone() });
        assert_eq!(
            ok("10.0.0.5/24/eth0"),
            VipSpec { prefix: Some(24), iface: Some("eth0".into()), ..base.clone() }
        );
        assert_eq!(
            ok("10.0.0.5/24/eth0:web"),
            VipSpec {
                prefix: Some(24),
                iface: Some("eth0".into()),
                label: Some("web".into()),
                ..base.clone()
            }
        );
        assert_eq!(
            ok("10.0.0.5/24/10.0.0.255"),
            VipSpec { prefix: Some(24), broadcast: Some("10.0.0.255".parse().expect("b")), ..base.clone() }
        );
        assert_eq!(
            ok("10.0.0.5/24/eth0/10.0.0.255"),
            VipSpec {
                prefix: Some(24),
                iface: Some("eth0".into()),
                broadcast: Some("10.0.0.255".parse().expect("b")),
                ..base.clone()
            }
        );
        assert_eq!(
            ok("10.0.0.5/24/eth0:0/10.0.0.127"),
            VipSpec {
                prefix: Some(24),
                iface: Some("eth0".into()),
                label: Some("0".into()),
                broadcast: Some("10.0.0.127".parse().expect("b")),
                ..base.clone()
            }
        );
        assert_eq!(ok("10.0.0.5/255.255.255.0").prefix, Some(24));
        assert_eq!(ok("10.0.0.5/255.255.255.255").prefix, Some(32));
        assert_eq!(ok("10.0.0.5/128.0.0.0").prefix, Some(1));
        assert_eq!(ok("10.0.0.5/32").prefix, Some(32));
        assert_eq!(ok("10.0.0.5/1").prefix, Some(1));
        assert_eq!(ok("10.0.0.5/024").prefix, Some(24));
        assert_eq!(ok("10.0.0.5/24/enp0s31f6").iface.as_deref(), Some("enp0s31f6"));
        assert_eq!(ok("10.0.0.5/24/bond0.100").iface.as_deref(), Some("bond0.100"));
        assert_eq!(ok("10.0.0.5/24/eth0:a:b").label.as_deref(), Some("a:b"));
    }

    #[test]
    fn ipv6_forms() {
        let a: IpAddr = "2001:db8::5".parse().expect("v6");
        assert_eq!(ok("2001:db8::5").addr, a);
        let s = ok("2001:db8::5/64/eth1");
        assert_eq!((s.addr, s.prefix, s.iface.as_deref()), (a, Some(64), Some("eth1")));
        assert_eq!(ok("2001:db8::5/128").prefix, Some(128));
        assert!(bad("2001:db8::5/129").contains("a prefix length 1..=128"));
        assert!(bad("2001:db8::5/64/eth1:x").contains("IPv4-only"));
        assert!(bad("2001:db8::5/64/eth1/10.0.0.255").contains("IPv6 has none"));
        assert!(bad("2001:db8::5/64/10.0.0.255").contains("IPv6 has none"));
        assert!(bad("2001:db8::5/ffff:ffff::").contains("a prefix length 1..=128"));
    }

    #[test]
    fn bad_input_names_input_and_expectation() {
        assert_eq!(bad(""), "IP spec \"\": an IPv4 or IPv6 address first, not \"\"");
        assert_eq!(bad("10.0.0/24"), "IP spec \"10.0.0/24\": an IPv4 or IPv6 address first, not \"10.0.0\"");
        assert_eq!(bad("nodea"), "IP spec \"nodea\": an IPv4 or IPv6 address first, not \"nodea\"");
        assert_eq!(
            bad("10.0.0.5/33"),
            "IP spec \"10.0.0.5/33\": a prefix length 1..=32 or a netmask, not \"33\""
        );
        assert!(bad("10.0.0.5/0").contains("a prefix length 1..=32"));
        assert!(bad("10.0.0.5/").contains("not \"\""));
        assert!(bad("10.0.0.5/-1").contains("not \"-1\""));
        assert!(bad("10.0.0.5/eth0").contains("a prefix length 1..=32 or a netmask, not \"eth0\""));
        assert!(bad("10.0.0.5/255.0.255.0").contains("a contiguous netmask"));
        assert!(bad("10.0.0.5/0.0.0.0").contains("a contiguous netmask"));
        assert!(bad("10.0.0.5/24//10.0.0.255").contains("an interface name, not an empty one"));
        assert!(bad("10.0.0.5/24/eth0/").contains("an IPv4 broadcast address, not \"\""));
        assert!(bad("10.0.0.5/24/eth0/bcast").contains("an IPv4 broadcast address, not \"bcast\""));
        assert!(bad("10.0.0.5/24/eth0/10.0.0.256").contains("not \"10.0.0.256\""));
        assert!(bad("10.0.0.5/24/10.0.0.255/eth0").contains("nothing after the broadcast address"));
        assert!(bad("10.0.0.5/24/10.0.0.x").contains("an IPv4 broadcast address, not \"10.0.0.x\""));
        assert!(bad("10.0.0.5/24/eth0/10.0.0.255/x").contains("at most 4 parts"));
        assert!(bad("10.0.0.5/24/averyveryverylongname").contains("at most 15 bytes"));
        assert!(bad("10.0.0.5/24/eth0:").contains("a label after eth0:"));
        assert!(bad("10.0.0.5/24/:web").contains("an interface name, not an empty one"));
        assert!(bad("10.0.0.5/24/enp0s31f6:toolong").contains("at most 15 bytes in all"));
        assert!(bad("10.0.0.5/24/et h0").contains("a valid interface name"));
        assert!(bad(" 10.0.0.5").contains("an IPv4 or IPv6 address first"));
    }
}
