//! Rules on keys and names, shared by the CRD schemas (as CEL) and the Rust code that must
//! check the same things where no API server does (gRPC input, REST input, conversions).

/// CEL rule for class and function keys. Keys such as `Record` and `Record.echo` are
/// accepted; they map to Kubernetes names through [`resource_name`].
pub const KEY_RULE: &str = "self.matches('^[A-Za-z]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?$')";

/// The regular expression of [`KEY_RULE`], for JSON schemas outside the CRDs (REST).
pub const KEY_PATTERN: &str = "^[A-Za-z]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?$";

/// A DNS-1123 subdomain: the names of OPackages.
pub const SUBDOMAIN_PATTERN: &str = "^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$";

/// Message of [`KEY_RULE`], telling the user how to fix a key.
pub const KEY_MESSAGE: &str = "a key must start with a letter, end with a letter or digit, and contain only letters, digits, '.', '_' or '-' (at most 63 characters), e.g. Record or Record.echo";

/// Longest Kubernetes object name that is also a valid DNS-1035 label (Services need one).
pub const MAX_NAME_LEN: usize = 63;

/// Checks a class or function key with the same rule as [`KEY_RULE`].
pub fn check_key(key: &str) -> Result<(), String> {
    let bytes = key.as_bytes();
    let valid_inner = |b: &u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-');
    let ok = !bytes.is_empty()
        && bytes.len() <= MAX_NAME_LEN
        && bytes[0].is_ascii_alphabetic()
        && bytes[bytes.len() - 1].is_ascii_alphanumeric()
        && bytes.iter().all(valid_inner);
    if ok {
        Ok(())
    } else {
        Err(format!("invalid key {key:?}: {KEY_MESSAGE}"))
    }
}

/// CEL rule for a log filter in `RUST_LOG` syntax (the characters it may use; the Rust
/// code checks the whole syntax with [`check_log_filter`]). `]` first in the class needs no
/// escape, which CEL string literals would not pass through.
pub const LOG_FILTER_RULE: &str = "self.matches('^[][A-Za-z0-9_:.,={}-]+$')";

/// Message of [`LOG_FILTER_RULE`].
pub const LOG_FILTER_MESSAGE: &str = "a log filter is a level (error, warn, info, debug, trace, off) or comma-separated target=level directives, e.g. info or debug,h2=info";

/// Checks a log filter in `RUST_LOG` (tracing `EnvFilter`) syntax: comma-separated
/// directives, each a level, a target, or `target=level`; a target may name a span in
/// brackets (`target[span{field=value}]`).
pub fn check_log_filter(filter: &str) -> Result<(), String> {
    const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];
    let is_level = |s: &str| LEVELS.contains(&s.to_ascii_lowercase().as_str());
    let target_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | ':' | '-' | '.');
    let valid_target = |t: &str| {
        let (name, span) = t.split_once('[').unwrap_or((t, ""));
        let span_ok = span.is_empty()
            || (span.ends_with(']')
                && span[..span.len() - 1]
                    .chars()
                    .all(|c| target_char(c) || matches!(c, '{' | '}' | '=' | ',')));
        name.chars().all(target_char) && span_ok && !(name.is_empty() && span.is_empty())
    };
    let bad = |why: String| {
        Err(format!(
            "{filter:?} is not a log filter: {why}; {LOG_FILTER_MESSAGE}"
        ))
    };
    if filter.trim().is_empty() {
        return bad("it is empty".into());
    }
    for directive in outside_brackets(filter, ',') {
        let ok = match outside_brackets(directive, '=').as_slice() {
            [target, level] => is_level(level) && valid_target(target),
            [alone] => is_level(alone) || valid_target(alone),
            _ => false,
        };
        if !ok {
            return bad(format!("directive {directive:?}"));
        }
    }
    Ok(())
}

/// Splits at each `separator` that is not inside a span's `[...]` or `{...}`.
fn outside_brackets(text: &str, separator: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0i32, 0);
    for (i, c) in text.char_indices() {
        match c {
            '[' | '{' => depth += 1,
            ']' | '}' => depth -= 1,
            c if c == separator && depth == 0 => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
}

/// Checks a DNS-1123 label (namespace names): lowercase letters, digits and '-', starting
/// and ending with a letter or digit, at most 63 characters.
pub fn check_dns_label(name: &str) -> Result<(), String> {
    let bytes = name.as_bytes();
    let alnum = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let ok = !bytes.is_empty()
        && bytes.len() <= MAX_NAME_LEN
        && alnum(&bytes[0])
        && alnum(&bytes[bytes.len() - 1])
        && bytes.iter().all(|b| alnum(b) || *b == b'-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{name:?} must be lowercase letters, digits and '-', starting and ending with a letter or digit, at most 63 characters"
        ))
    }
}

/// Turns keys into a DNS-1035 label: lowercase, every character other than `[a-z0-9-]`
/// becomes `-`, runs of `-` collapse, no leading digit or `-`, no trailing `-`. Names longer
/// than 63 characters keep a readable prefix and end with a hash of the whole input, so two
/// different long inputs do not collide.
pub fn resource_name(parts: &[&str]) -> String {
    let joined = parts.join("-");
    let mut name = String::with_capacity(joined.len());
    for c in joined.chars() {
        let c = c.to_ascii_lowercase();
        let c = if c.is_ascii_lowercase() || c.is_ascii_digit() {
            c
        } else {
            '-'
        };
        if c == '-' && (name.is_empty() || name.ends_with('-')) {
            continue;
        }
        name.push(c);
    }
    if name.starts_with(|c: char| c.is_ascii_digit()) {
        name.insert(0, 'x');
    }
    let name = name.trim_end_matches('-').to_string();
    if name.len() <= MAX_NAME_LEN {
        return if name.is_empty() { "x".into() } else { name };
    }
    let hash = format!("{:08x}", fnv1a(joined.as_bytes()) as u32);
    let prefix = name[..MAX_NAME_LEN - hash.len() - 1].trim_end_matches('-');
    format!("{prefix}-{hash}")
}

/// FNV-1a: a stable hash (unlike `DefaultHasher`, which may change between Rust releases).
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325_u64, |hash, b| {
        (hash ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_from_existing_packages_are_accepted() {
        for key in [
            "Record",
            "Record.echo",
            "image_resize",
            "a",
            "A1",
            "x-y.z_0",
        ] {
            assert_eq!(check_key(key), Ok(()), "{key}");
        }
    }

    #[test]
    fn keys_that_cannot_become_names_are_rejected_with_the_rule() {
        let long = "a".repeat(64);
        for key in ["", "1abc", ".a", "a.", "a b", "a/b", "ключ", long.as_str()] {
            let err = check_key(key).unwrap_err();
            assert!(err.contains("must start with a letter"), "{key}: {err}");
        }
    }

    #[test]
    fn the_key_pattern_is_the_one_in_the_cel_rule() {
        assert!(KEY_RULE.contains(KEY_PATTERN));
    }

    #[test]
    fn dns_labels_are_checked() {
        for good in ["default", "a", "team-1", "9lives"] {
            assert!(check_dns_label(good).is_ok(), "{good}");
        }
        for bad in ["", "Default", "-a", "a-", "a.b", &"a".repeat(64)] {
            assert!(check_dns_label(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn log_filters_follow_rust_log_syntax() {
        for good in [
            "info",
            "DEBUG",
            "debug,h2=info",
            "oprc_odgm=trace,info",
            "a::b[span{x=1}]=warn",
            "a[span{x=1,y=2}]",
            "off",
        ] {
            assert_eq!(check_log_filter(good), Ok(()), "{good}");
        }
        for bad in [
            "",
            "debug,h2=loud",
            "a=b=c",
            "info,,debug",
            "x y",
            "=info",
            "info, debug",
        ] {
            let error = check_log_filter(bad).expect_err(bad);
            assert!(error.contains("e.g. info or debug,h2=info"), "{error}");
        }
    }

    #[test]
    fn resource_names_are_lowercase_dns_labels() {
        assert_eq!(resource_name(&["Record"]), "record");
        assert_eq!(
            resource_name(&["Record", "Record.echo"]),
            "record-record-echo"
        );
        assert_eq!(resource_name(&["my_class", "odgm"]), "my-class-odgm");
        assert_eq!(resource_name(&["a..b"]), "a-b");
        assert_eq!(resource_name(&["9lives"]), "x9lives");
        assert_eq!(resource_name(&["-"]), "x");
    }

    #[test]
    fn long_names_are_truncated_with_a_hash_that_tells_them_apart() {
        let a = resource_name(&[&"a".repeat(70), "one"]);
        let b = resource_name(&[&"a".repeat(70), "two"]);
        assert_eq!(a.len(), MAX_NAME_LEN);
        assert_ne!(a, b);
        assert!(
            a.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        );
    }
}
