//! `haresources` (spec §4.1), read the way ResourceManager's `ipres` pipeline reads it:
//!
//! 1. `s%#.*%%`: drop a comment from the first physical line of each logical line;
//! 2. join lines ending in `\` (backslash and newline removed, nothing inserted). The comment
//!    strip is not repeated on the joined lines, so a `#` on a continuation line survives as
//!    resource words (reported as a warning);
//! 3. split on blanks and tabs; skip empty lines; lower-case the node name.
//!
//! Each logical line is `<node> <resource> [<resource> ...]`: one resource group whose key is
//! its first resource. Keys must be unique. Whether `<node>` is a configured node is checked
//! against ha.cf by [`crate::load_dir`].

use std::collections::HashMap;
use std::path::Path;

use crate::diag::{ConfigError, Diagnostic, Sink};
use crate::model::{Haresources, ResourceGroup, ResourceSpec};

/// Parses haresources text. Warnings are dropped; use [`parse_haresources_with_warnings`] to
/// see them.
pub fn parse_haresources(file: &Path, text: &str) -> Result<Haresources, ConfigError> {
    parse_haresources_with_warnings(file, text).map(|(h, _)| h)
}

/// Parses haresources text and also returns warnings.
pub fn parse_haresources_with_warnings(
    file: &Path,
    text: &str,
) -> Result<(Haresources, Vec<Diagnostic>), ConfigError> {
    let (h, errors, warnings) = parse_haresources_lenient(file, text);
    if errors.is_empty() {
        Ok((h, warnings))
    } else {
        Err(ConfigError::new(errors))
    }
}

pub(crate) fn parse_haresources_lenient(
    file: &Path,
    text: &str,
) -> (Haresources, Vec<Diagnostic>, Vec<Diagnostic>) {
    let mut s = Sink::new(file);
    let mut lines: Vec<&str> = text.split('\n').collect();
    if lines.last() == Some(&"") {
        lines.pop();
    }
    let mut crlf_warned = false;
    let mut strip_cr = |line: usize, l: &'_ str, s: &mut Sink| -> String {
        match l.strip_suffix('\r') {
            Some(t) => {
                if !crlf_warned {
                    crlf_warned = true;
                    s.warn(
                        line,
                        "the file has CRLF line endings; halo drops the '\\r' (ResourceManager would pass it to the last resource script)",
                    );
                }
                t.to_string()
            }
            None => l.to_string(),
        }
    };

    let mut groups = Vec::new();
    let mut keys: HashMap<String, usize> = HashMap::new();
    let mut i = 0;
    while i < lines.len() {
        let start = i + 1;
        let mut logical = strip_cr(start, lines[i], &mut s);
        if let Some(p) = logical.find('#') {
            logical.truncate(p);
        }
        i += 1;
        while logical.ends_with('\\') {
            logical.pop();
            if i >= lines.len() {
                s.warn(i, "the last line ends with '\\' but no line follows; the backslash is ignored");
                break;
            }
            let next = strip_cr(i + 1, lines[i], &mut s);
            if let Some(p) = next.find('#') {
                let words: Vec<&str> = next[p..].split([' ', '\t']).filter(|w| !w.is_empty()).collect();
                s.warn(
                    i + 1,
                    format!(
                        "'#' on a continuation line does not start a comment for ResourceManager: '{}' become resource words; move the comment to its own line",
                        words.join(" ")
                    ),
                );
            }
            logical.push_str(&next);
            i += 1;
        }
        let words: Vec<&str> = logical.split([' ', '\t']).filter(|w| !w.is_empty()).collect();
        let Some((node, resources)) = words.split_first() else {
            continue;
        };
        if resources.is_empty() {
            s.error(
                start,
                format!("expected '<node> <resource> [<resource> ...]', but node '{node}' has no resources"),
            );
            continue;
        }
        let resources: Vec<ResourceSpec> = resources.iter().map(|r| ResourceSpec::parse(r)).collect();
        let mut bad = false;
        for r in &resources {
            if r.agent.is_empty() {
                s.error(start, format!("resource '{}' has no script name before '::'", r.raw));
                bad = true;
            }
        }
        if bad {
            continue;
        }
        let key = resources[0].raw.clone();
        if let Some(first) = keys.get(&key) {
            s.error(
                start,
                format!("duplicate group key '{key}' (first at line {first}): the first resource of each line names its group and must be unique"),
            );
            continue;
        }
        keys.insert(key, start);
        groups.push(ResourceGroup { node: node.to_ascii_lowercase(), line: start, resources });
    }
    (Haresources { groups }, s.errors, s.warnings)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<(Haresources, Vec<Diagnostic>), ConfigError> {
        parse_haresources_with_warnings(Path::new("haresources"), text)
    }

    #[test]
    fn seed_001() {
        let (h, w) = parse("debian1 IPaddr::10.3.2.50/8/eth0:0 apache2\n").unwrap();
        assert!(w.is_empty());
        assert_eq!(h.groups.len(), 1);
        let g = &h.groups[0];
        assert_eq!(g.node, "debian1");
        assert_eq!(g.line, 1);
        assert_eq!(g.key(), "IPaddr::10.3.2.50/8/eth0:0");
        assert_eq!(g.resources[0].agent, "IPaddr");
        assert_eq!(g.resources[0].args, vec!["10.3.2.50/8/eth0:0"]);
        assert_eq!(g.resources[1].agent, "apache2");
    }

    #[test]
    fn node_is_lower_cased_and_comments_dropped() {
        let text = "# header\n\nN1 IPaddr2::192.168.6.240 ldirectord   # trailing\n";
        let (h, _) = parse(text).unwrap();
        assert_eq!(h.groups[0].node, "n1");
        assert_eq!(h.groups[0].line, 3);
        assert_eq!(h.groups[0].resources.len(), 2);
        assert!(h.group("IPaddr2::192.168.6.240").is_some());
    }

    #[test]
    fn bare_ip_means_ipaddr() {
        let (h, _) = parse("node1 10.0.0.170 Filesystem::/dev/sda1::/data1::ext2\n").unwrap();
        let r = &h.groups[0].resources;
        assert_eq!(r[0].agent, "IPaddr");
        assert_eq!(r[0].args, vec!["10.0.0.170"]);
        assert_eq!(r[1].agent, "Filesystem");
        assert_eq!(r[1].args, vec!["/dev/sda1", "/data1", "ext2"]);
    }

    #[test]
    fn continuation_lines_join() {
        let text = "node1 10.0.0.1 \\\n\thttpd \\\n  squid\nnode2 10.0.0.2\n";
        let (h, w) = parse(text).unwrap();
        assert!(w.is_empty());
        assert_eq!(h.groups.len(), 2);
        let raws: Vec<&str> = h.groups[0].resources.iter().map(|r| r.raw.as_str()).collect();
        assert_eq!(raws, vec!["10.0.0.1", "httpd", "squid"]);
        assert_eq!(h.groups[1].line, 4);
    }

    #[test]
    fn backslash_joins_without_a_space() {
        let (h, _) = parse("node1 IPaddr::10.0.0.1\\\nhttpd\n").unwrap();
        assert_eq!(h.groups[0].resources[0].raw, "IPaddr::10.0.0.1httpd");
    }

    #[test]
    fn comment_on_continuation_line_survives_with_warning() {
        let (h, w) = parse("node1 10.0.0.1 \\\n httpd # web\n").unwrap();
        let raws: Vec<&str> = h.groups[0].resources.iter().map(|r| r.raw.as_str()).collect();
        assert_eq!(raws, vec!["10.0.0.1", "httpd", "#", "web"]);
        assert_eq!(w.len(), 1);
        assert!(w[0].to_string().starts_with("haresources:2: '#' on a continuation line"));
    }

    #[test]
    fn duplicate_key_is_an_error() {
        let e = parse("a 10.0.0.1 httpd\nb 10.0.0.1 squid\n").unwrap_err();
        assert_eq!(e.errors.len(), 1);
        assert!(e.errors[0]
            .to_string()
            .starts_with("haresources:2: duplicate group key '10.0.0.1' (first at line 1)"));
    }

    #[test]
    fn node_without_resources_is_an_error() {
        let e = parse("lonely\n").unwrap_err();
        assert_eq!(
            e.errors[0].to_string(),
            "haresources:1: expected '<node> <resource> [<resource> ...]', but node 'lonely' has no resources"
        );
    }

    #[test]
    fn empty_script_name_is_an_error() {
        let e = parse("a ::x\n").unwrap_err();
        assert!(e.errors[0].message.contains("no script name"));
    }

    #[test]
    fn crlf_is_tolerated_with_one_warning() {
        let (h, w) = parse("a 10.0.0.1 httpd\r\nb 10.0.0.2\r\n").unwrap();
        assert_eq!(h.groups[0].resources[1].raw, "httpd");
        assert_eq!(w.len(), 1);
    }

    #[test]
    fn empty_file_has_no_groups() {
        let (h, w) = parse("").unwrap();
        assert!(h.groups.is_empty());
        assert!(w.is_empty());
    }
}
