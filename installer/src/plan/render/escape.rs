//! Template filters that write a value safely for the format it lands in, so
//! that no value (a quote, newline, `$`, `%`, backslash or space) can close a
//! string or add an argument, key or line. The formats have a filter each:
//!
//! | filter          | where                                                          |
//! |-----------------|----------------------------------------------------------------|
//! | `tojson`        | a YAML, JSON or TOML value: a JSON string is a YAML and TOML   |
//! |                 | string; every control character and YAML 1.1 line break in it  |
//! |                 | (NEL, U+2028, U+2029) is a `\uXXXX` escape                     |
//! | `systemd_arg`   | one word of an `Exec*=` command line (quoted, `%%`, `$$`)      |
//! | `systemd_exec`  | the command of an `Exec*=` line: an absolute path without `$`, |
//! |                 | quotes or backslashes, quoted                                  |
//! | `systemd_env`   | one `Environment=` assignment (quoted, `%%`; `$` is literal)   |
//! | `systemd_path`  | a path setting without quoting (`WorkingDirectory=`): refused  |
//! |                 | unless absolute and of safe characters                         |
//! | `systemd_text`  | free text (`Description=`): one line, `%%`                     |
//! | `comment`       | inside a `#` comment of any format: one line                   |
//! | `conf_token`    | one word of haproxy, keepalived, chrony, Corefile, sysctl and  |
//! |                 | modules-load files: refused unless of safe characters          |
//!
//! Quoting follows systemd.syntax(7) "Quoting" and systemd.service(5)
//! "Command lines": quotes wrap a whole word, C escapes apply inside them,
//! `%` specifiers expand everywhere (and `$` in command lines) unless doubled.

use minijinja::value::Value;
use minijinja::{Environment, Error, ErrorKind};

/// Characters a systemd word or config token may hold bare.
fn is_safe(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-_.,:/=@+".contains(c)
}

/// Registers every filter of this module on `env`.
pub(super) fn register(env: &mut Environment<'static>) {
    env.add_filter("tojson", tojson);
    env.add_filter("systemd_arg", |v: Value| {
        systemd_word(&v, "systemd_arg", true)
    });
    env.add_filter("systemd_env", |v: Value| {
        systemd_word(&v, "systemd_env", false)
    });
    env.add_filter("systemd_exec", systemd_exec);
    env.add_filter("systemd_path", systemd_path);
    env.add_filter("systemd_text", systemd_text);
    env.add_filter("comment", comment);
    env.add_filter("conf_token", conf_token);
}

/// A refused value: names the value and the filter, and what to do.
fn refused(filter: &str, value: &str, why: &str) -> Error {
    Error::new(
        ErrorKind::InvalidOperation,
        format!("{filter}: the value {value:?} {why}; change it in config.yml or the inventory"),
    )
}

/// The value as text: strings as they are, numbers and booleans written out.
fn text(v: &Value, filter: &str) -> Result<String, Error> {
    if let Some(s) = v.as_str() {
        return Ok(s.to_string());
    }
    if v.is_number() || v.kind() == minijinja::value::ValueKind::Bool {
        return Ok(v.to_string());
    }
    Err(refused(filter, &v.to_string(), "is not a string or number"))
}

/// Control characters, and what YAML 1.1 parsers (libyaml, go-yaml) also
/// take for line breaks.
fn breaks_lines(c: char) -> bool {
    c.is_control() || matches!(c, '\u{2028}' | '\u{2029}')
}

fn refuse_control(filter: &str, s: &str) -> Result<(), Error> {
    if s.chars().any(breaks_lines) {
        return Err(refused(
            filter,
            s,
            "holds a control character (newline, tab, ...)",
        ));
    }
    Ok(())
}

/// The value as JSON, every control character and line break escaped
/// (serde_json leaves DEL, C1 characters, U+2028 and U+2029 as they are:
/// YAML parsers refuse the first two and break lines at NEL and the last two).
fn tojson(v: Value) -> Result<String, Error> {
    let json = serde_json::to_string(&v).map_err(|e| {
        Error::new(
            ErrorKind::InvalidOperation,
            format!("tojson: {v:?} cannot be written as JSON: {e}"),
        )
    })?;
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        match c {
            c if breaks_lines(c) || matches!(c, '\u{feff}' | '\u{fffe}' | '\u{ffff}') => {
                out.push_str(&format!("\\u{:04x}", c as u32))
            }
            c => out.push(c),
        }
    }
    Ok(out)
}

/// One systemd word: bare when made of safe characters only, else in double
/// quotes with `\` and `"` escaped; `%` doubled, and `$` too where
/// `dollar` (command lines expand `$VAR`, `Environment=` does not).
fn systemd_word(v: &Value, filter: &str, dollar: bool) -> Result<String, Error> {
    let s = text(v, filter)?;
    refuse_control(filter, &s)?;
    let bare = !s.is_empty() && s.chars().all(is_safe);
    let mut out = String::with_capacity(s.len() + 2);
    if !bare {
        out.push('"');
    }
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '%' => out.push_str("%%"),
            '$' if dollar => out.push_str("$$"),
            c => out.push(c),
        }
    }
    if !bare {
        out.push('"');
    }
    Ok(out)
}

/// The command of an `Exec*=` line: absolute (a leading `-`, `@`, `+`, `!`
/// or `:` would be read as a prefix changing how it runs), without quotes or
/// backslashes (systemd refuses those in an executable's name) nor `$`
/// (systemd leaves `$$` doubled there, unlike in arguments); then one word.
fn systemd_exec(v: Value) -> Result<String, Error> {
    let s = text(&v, "systemd_exec")?;
    if !s.starts_with('/') || s.contains(['$', '"', '\'', '\\']) {
        return Err(refused(
            "systemd_exec",
            &s,
            "is not an absolute path without $, quotes or backslashes",
        ));
    }
    systemd_word(&v, "systemd_exec", false)
}

/// A path in a setting systemd does not unquote: only absolute paths of safe
/// characters pass (so no `%` specifier, space or quote reaches it).
fn systemd_path(v: Value) -> Result<String, Error> {
    let s = text(&v, "systemd_path")?;
    if !s.starts_with('/') || !s.chars().all(is_safe) {
        return Err(refused(
            "systemd_path",
            &s,
            "is not an absolute path of letters, digits and -_.,:/=@+",
        ));
    }
    Ok(s)
}

/// Free text of a unit (`Description=`): one line, not ending in a
/// backslash (which would join the next line), `%` doubled.
fn systemd_text(v: Value) -> Result<String, Error> {
    let s = one_line(&v, "systemd_text")?;
    Ok(s.replace('%', "%%"))
}

/// Text inside a `#` comment: one line, not ending in a backslash.
fn comment(v: Value) -> Result<String, Error> {
    one_line(&v, "comment")
}

fn one_line(v: &Value, filter: &str) -> Result<String, Error> {
    let s = text(v, filter)?;
    refuse_control(filter, &s)?;
    if s.ends_with('\\') {
        return Err(refused(filter, &s, "ends in a backslash"));
    }
    Ok(s)
}

/// One word of a config file with no quoting ferry relies on (haproxy,
/// keepalived, which runs scripts as root, chrony, Corefile, sysctl,
/// modules-load): letters, digits and `-_.:/` only, not starting with `-`.
fn conf_token(v: Value) -> Result<String, Error> {
    let s = text(&v, "conf_token")?;
    let ok = !s.is_empty()
        && !s.starts_with('-')
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.:/".contains(c));
    if !ok {
        return Err(refused(
            "conf_token",
            &s,
            "is not one word of letters, digits and -_.:/ (not starting with -)",
        ));
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arg(s: &str) -> String {
        systemd_word(&Value::from(s), "systemd_arg", true).expect("quoted")
    }

    #[test]
    fn safe_words_stay_bare_and_others_are_quoted() {
        assert_eq!(arg("--data-dir=/var/lib/etcd"), "--data-dir=/var/lib/etcd");
        assert_eq!(arg("a b"), "\"a b\"");
        assert_eq!(arg("50%"), "\"50%%\"");
        assert_eq!(arg("$(id)"), "\"$$(id)\"");
        assert_eq!(arg("a\"b\\"), "\"a\\\"b\\\\\"");
        assert_eq!(arg(""), "\"\"");
        let env = systemd_word(&Value::from("P=$x %n"), "systemd_env", false).expect("env");
        assert_eq!(env, "\"P=$x %%n\"");
    }

    #[test]
    fn json_escapes_every_line_break() {
        let s = tojson(Value::from("a\u{85}b\u{2028}c\u{7f}\n\"")).expect("json");
        assert_eq!(s, r#""a\u0085b\u2028c\u007f\n\"""#);
        let back: String = serde_json::from_str(&s).expect("JSON");
        assert_eq!(back, "a\u{85}b\u{2028}c\u{7f}\n\"");
    }

    #[test]
    fn control_characters_and_bad_tokens_are_refused() {
        let e = systemd_word(&Value::from("a\nb"), "systemd_arg", true).unwrap_err();
        assert!(e.to_string().contains("\"a\\nb\""), "{e}");
        assert!(systemd_exec(Value::from("-/bin/sh")).is_err());
        assert!(systemd_exec(Value::from("/opt/$x/etcd")).is_err());
        assert!(systemd_exec(Value::from("/opt/\"x/etcd")).is_err());
        let exec = systemd_exec(Value::from("/opt/a b%/etcd")).expect("exec");
        assert_eq!(exec, "\"/opt/a b%%/etcd\"");
        assert!(systemd_path(Value::from("/var/lib/a b")).is_err());
        assert!(conf_token(Value::from("eth0 {")).is_err());
        assert!(conf_token(Value::from("-x")).is_err());
        assert_eq!(
            conf_token(Value::from("10.0.0.0/24")).expect("ok"),
            "10.0.0.0/24"
        );
        assert!(comment(Value::from("x\\")).is_err());
        assert!(comment(Value::from("x\u{2028}y")).is_err());
        assert_eq!(systemd_text(Value::from("a %n")).expect("ok"), "a %%n");
    }
}
