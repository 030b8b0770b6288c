//! Quoting for bash: the templates' `quote` filter, and every command or
//! path ward prints for an operator to paste (`--state PATH` in hints).
//! At the bottom of the crate, so that any layer may quote.

/// Quotes `s` for bash: safe words stay as they are, everything else goes in
/// single quotes with embedded single quotes written as `'\''`.
///
/// ```
/// use ward::shell::quote;
/// assert_eq!(quote("/srv/backup"), "/srv/backup");
/// assert_eq!(quote("my files"), "'my files'");
/// assert_eq!(quote("it's"), r"'it'\''s'");
/// ```
pub fn quote(s: &str) -> String {
    let safe = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_@%+=:,./-".contains(c));
    if safe {
        return s.to_owned();
    }
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        if c == '\'' {
            out.push_str("'\\''");
        } else {
            out.push(c);
        }
    }
    out.push('\'');
    out
}

#[cfg(test)]
mod tests {
    use super::quote;

    #[test]
    fn quotes_only_what_needs_it() {
        assert_eq!(quote("/srv/fossology"), "/srv/fossology");
        assert_eq!(quote("a b"), "'a b'");
        assert_eq!(quote(""), "''");
        assert_eq!(quote("it's"), "'it'\\''s'");
        assert_eq!(quote("$(rm -rf /)"), "'$(rm -rf /)'");
        assert_eq!(quote("/var/lib/ward/ward.db"), "/var/lib/ward/ward.db");
        assert_eq!(quote("/tmp/my state/w.db"), "'/tmp/my state/w.db'");
        assert_eq!(quote("$HOME"), "'$HOME'");
    }

    #[test]
    fn quoted_values_survive_bash() {
        let nasty = "a 'b' \"c\" $d `e` \\f\n; g";
        let out = std::process::Command::new("bash")
            .arg("-c")
            .arg(format!("printf %s {}", quote(nasty)))
            .output()
            .expect("bash runs");
        assert_eq!(String::from_utf8_lossy(&out.stdout), nasty);
    }
}
