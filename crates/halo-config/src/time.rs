//! Scalar value syntax shared by the legacy files: times (`cl_get_msec`), booleans
//! (`cl_str_to_boolean`) and plain integers.

/// Characters `cl_get_msec` accepts as the number part.
const NUMCHARS: &[char] = &['0', '1', '2', '3', '4', '5', '6', '7', '8', '9', '.'];
/// Heartbeat's `WHITESPACE` set.
pub(crate) const WHITESPACE: &[char] = &[' ', '\t', '\n', '\r', '\x0c'];

/// Parses a Heartbeat time value into milliseconds, with cluster-glue `cl_get_msec` semantics
/// (spec §1.2): leading whitespace, a number made of `[0-9.]` read like `atof`, optional
/// whitespace, then a unit. No unit means seconds; anything starting with `ms` (any case) means
/// milliseconds; anything starting with `us` means microseconds; any other suffix (`s`, `sec`,
/// `m`, ...) is refused. The result is rounded to the nearest millisecond.
///
/// `1` → 1000, `1.5` → 1500, `500ms` → 500, `250msec` → 250, `1500us` → 2, `2s` → `None`.
pub fn parse_time_ms(s: &str) -> Option<u64> {
    let cp = s.trim_start_matches(WHITESPACE);
    if !cp.starts_with(NUMCHARS) {
        return None;
    }
    let num_len = cp.len() - cp.trim_start_matches(NUMCHARS).len();
    let units = cp[num_len..].trim_start_matches(WHITESPACE);
    let lower: String = units.chars().take(2).collect::<String>().to_ascii_lowercase();
    let (multiplier, divisor) = if lower == "ms" {
        (1.0, 1.0)
    } else if lower == "us" {
        (1.0, 1000.0)
    } else if units.is_empty() || units.starts_with(['\n', '\r']) {
        (1000.0, 1.0)
    } else {
        return None;
    };
    let value = atof_prefix(&cp[..num_len]) * multiplier / divisor + 0.5;
    // `(long)dret` truncates; values are never negative here because '-' is not a NUMCHAR.
    Some(value as u64)
}

/// `atof` restricted to what can appear in a `[0-9.]+` span: digits, at most one point, more
/// digits; anything after a second point is ignored (as `atof("1.5.5")` gives 1.5).
fn atof_prefix(s: &str) -> f64 {
    let mut end = 0;
    let mut seen_point = false;
    for (i, c) in s.char_indices() {
        if c == '.' {
            if seen_point {
                break;
            }
            seen_point = true;
        }
        end = i + c.len_utf8();
    }
    let text = &s[..end];
    if text == "." || text.is_empty() {
        return 0.0;
    }
    text.parse::<f64>().unwrap_or(0.0)
}

/// Parses a boolean the way cluster-glue `cl_str_to_boolean` does (spec §1.3), case-insensitive:
/// `true on yes y 1` are true, `false off no n 0` are false, anything else is refused.
pub fn parse_bool(s: &str) -> Option<bool> {
    const TRUE: [&str; 5] = ["true", "on", "yes", "y", "1"];
    const FALSE: [&str; 5] = ["false", "off", "no", "n", "0"];
    if TRUE.iter().any(|t| s.eq_ignore_ascii_case(t)) {
        Some(true)
    } else if FALSE.iter().any(|f| s.eq_ignore_ascii_case(f)) {
        Some(false)
    } else {
        None
    }
}

/// A whole decimal integer with an optional sign and nothing else. Heartbeat uses `atoi`, which
/// would silently read `12abc` as 12 and `abc` as 0; halo refuses such values instead so that
/// a typo is reported rather than guessed.
pub(crate) fn parse_int(s: &str) -> Option<i64> {
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse::<i64>().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_table() {
        let table: &[(&str, Option<u64>)] = &[
            ("1", Some(1000)),
            ("1.5", Some(1500)),
            ("500ms", Some(500)),
            ("250msec", Some(250)),
            ("1500us", Some(2)),
            ("1499us", Some(1)),
            ("1usec", Some(0)),
            ("2s", None),
            ("2sec", None),
            ("1m", None),
            ("", None),
            ("ms", None),
            ("-1", None),
            ("0", Some(0)),
            ("30", Some(30000)),
            ("10MS", Some(10)),
            ("10Us", Some(0)),
            (" 2", Some(2000)),
            ("2 ms", Some(2)),
            (".5", Some(500)),
            (".", Some(0)),
            ("1.5.5", Some(1500)),
            ("0.0004", Some(0)),
            ("0.0005", Some(1)),
            ("2\r", Some(2000)),
            ("1e3", None),
            ("abc", None),
        ];
        for (input, want) in table {
            assert_eq!(parse_time_ms(input), *want, "parse_time_ms({input:?})");
        }
    }

    #[test]
    fn bool_table() {
        for t in ["true", "on", "yes", "y", "1", "TRUE", "On", "YES", "Y"] {
            assert_eq!(parse_bool(t), Some(true), "{t}");
        }
        for f in ["false", "off", "no", "n", "0", "False", "OFF", "No", "N"] {
            assert_eq!(parse_bool(f), Some(false), "{f}");
        }
        for bad in ["", "2", "enable", "yess", "t", "f", "legacy"] {
            assert_eq!(parse_bool(bad), None, "{bad}");
        }
    }

    #[test]
    fn int_is_strict() {
        assert_eq!(parse_int("42"), Some(42));
        assert_eq!(parse_int("+7"), Some(7));
        assert_eq!(parse_int("-3"), Some(-3));
        assert_eq!(parse_int("12abc"), None);
        assert_eq!(parse_int(""), None);
        assert_eq!(parse_int("-"), None);
        assert_eq!(parse_int("1.5"), None);
    }
}
