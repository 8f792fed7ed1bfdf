//! systemd's reading of a unit's values, after systemd.syntax(7) "Quoting"
//! and systemd.service(5) "Command lines": words split on whitespace, a
//! quote wraps a whole word, C escapes, `%%` and (in arguments) `$$`.
//! A lone `%` or `$`, which systemd would expand, reads as `⟪%⟫` or `⟪$⟫`.

/// The logical lines of a unit: `\` at a line's end joins the next line.
pub fn logical_lines(unit: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for line in unit.lines() {
        if cur.is_empty() && line.trim_start().starts_with(['#', ';']) {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(head) => {
                cur.push_str(head);
                cur.push(' ');
            }
            None => {
                cur.push_str(line);
                out.push(std::mem::take(&mut cur));
            }
        }
    }
    out
}

/// The values of `key=` in a unit, in order.
pub fn values<'a>(lines: &'a [String], key: &str) -> Vec<&'a str> {
    lines
        .iter()
        .filter_map(|l| l.strip_prefix(key)?.strip_prefix('='))
        .collect()
}

/// A command line's words, unquoted and with `%%` and `$$` undone (not `$$`
/// in the command itself, which systemd leaves as written).
pub fn command(value: &str) -> Result<Vec<String>, String> {
    let raw = split(value)?;
    let mut out = Vec::new();
    for (i, w) in raw.iter().enumerate() {
        let w = specifiers(w);
        out.push(if i == 0 { w } else { dollars(&w) });
    }
    Ok(out)
}

/// `Environment=`'s assignments: unquoted, `%%` undone; `$` is literal.
pub fn environment(value: &str) -> Result<Vec<String>, String> {
    Ok(split(value)?.iter().map(|w| specifiers(w)).collect())
}

/// Free text (`Description=`): `%%` undone.
pub fn text(value: &str) -> String {
    specifiers(value.trim())
}

fn split(value: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut chars = value.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let Some(&first) = chars.peek() else {
            return Ok(words);
        };
        let mut word = String::new();
        if first == '"' || first == '\'' {
            chars.next();
            loop {
                match chars.next() {
                    None => return Err(format!("unbalanced quoting in {value:?}")),
                    Some(c) if c == first => break,
                    Some('\\') => word.push(unescape(chars.next(), value)?),
                    Some(c) => word.push(c),
                }
            }
            if chars.peek().is_some_and(|c| !c.is_whitespace()) {
                return Err(format!("a quote closes inside a word in {value:?}"));
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                match c {
                    '\\' => word.push(unescape(chars.next(), value)?),
                    c => word.push(c),
                }
            }
        }
        words.push(word);
    }
}

fn unescape(c: Option<char>, value: &str) -> Result<char, String> {
    Ok(match c {
        Some('\\') => '\\',
        Some('"') => '"',
        Some('\'') => '\'',
        Some('n') => '\n',
        Some('t') => '\t',
        Some('s') => ' ',
        other => return Err(format!("escape \\{other:?} in {value:?}")),
    })
}

fn specifiers(w: &str) -> String {
    undouble(w, '%')
}

fn dollars(w: &str) -> String {
    undouble(w, '$')
}

/// `mark` doubled is the character itself; alone it starts an expansion,
/// shown as `⟪mark⟫` so that it never equals the character written literally.
fn undouble(w: &str, mark: char) -> String {
    let mut out = String::new();
    let mut chars = w.chars().peekable();
    while let Some(c) = chars.next() {
        if c != mark {
            out.push(c);
        } else if chars.next_if_eq(&mark).is_some() {
            out.push(mark);
        } else {
            out.push_str(&format!("⟪{mark}⟫"));
        }
    }
    out
}

#[test]
fn the_reading_of_systemd_words() {
    let words = command(r#"/bin/x "a b\"$$%%\\" plain 'c d' "#).expect("words");
    assert_eq!(words, ["/bin/x", "a b\"$%\\", "plain", "c d"]);
    assert_eq!(command("/bin/x $HOME").expect("words")[1], "⟪$⟫HOME");
    assert_eq!(command("/bin/x %n").expect("words")[1], "⟪%⟫n");
    assert!(command("/bin/x \"a\"b").is_err());
    assert_eq!(environment("\"P=$x %%n\"").expect("env"), ["P=$x %n"]);
}
