//! Rich (boolean) dependencies such as `(python3 or (perl and perl-libs))`.
//! Only `and` and `or` are understood; `if`, `unless`, `with`, `without`
//! and `else` are refused, naming the operator.

use super::package::{Dep, Evr, Flags};

#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Rich {
    Dep(Dep),
    And(Vec<Rich>),
    Or(Vec<Rich>),
}

/// Parses the text of a rich dependency; the error is the reason.
pub(super) fn parse(text: &str) -> Result<Rich, String> {
    let mut p = Parser { s: text, pos: 0 };
    p.skip_space();
    if !p.eat('(') {
        return Err("a rich dependency starts with '('".into());
    }
    let rich = p.group()?;
    p.skip_space();
    match p.rest() {
        "" => Ok(rich),
        rest => Err(format!("unexpected {rest:?} after the closing ')'")),
    }
}

struct Parser<'a> {
    s: &'a str,
    pos: usize,
}

impl<'a> Parser<'a> {
    fn rest(&self) -> &'a str {
        &self.s[self.pos..]
    }

    fn skip_space(&mut self) {
        let rest = self.rest();
        self.pos += rest.len() - rest.trim_start().len();
    }

    fn eat(&mut self, c: char) -> bool {
        let found = self.rest().starts_with(c);
        if found {
            self.pos += c.len_utf8();
        }
        found
    }

    /// The terms of one parenthesised group, its '(' already read.
    fn group(&mut self) -> Result<Rich, String> {
        let mut terms = vec![self.term()?];
        let mut op: Option<&str> = None;
        loop {
            self.skip_space();
            if self.eat(')') {
                break;
            }
            let word = self.word();
            match word {
                "and" | "or" if op.is_none_or(|op| op == word) => op = Some(word),
                "and" | "or" => return Err("mixing `and` and `or` needs parentheses".into()),
                "if" | "else" | "unless" | "with" | "without" => {
                    return Err(format!(
                        "the `{word}` operator is not supported (only `and` and `or`)"
                    ))
                }
                "" => return Err("missing ')'".into()),
                _ => return Err(format!("expected `and`, `or` or ')', found {word:?}")),
            }
            terms.push(self.term()?);
        }
        Ok(match op {
            None => terms.remove(0),
            Some("and") => Rich::And(terms),
            Some(_) => Rich::Or(terms),
        })
    }

    /// A nested group or a simple `name [op evr]`.
    fn term(&mut self) -> Result<Rich, String> {
        self.skip_space();
        if self.eat('(') {
            return self.group();
        }
        let name = self.word();
        if name.is_empty() {
            return Err("a dependency name is missing".into());
        }
        let before = self.pos;
        self.skip_space();
        let ops = self.rest().len() - self.rest().trim_start_matches(['<', '>', '=']).len();
        if ops == 0 {
            self.pos = before;
            return Ok(Rich::Dep(Dep::any(name)));
        }
        let symbol = &self.s[self.pos..self.pos + ops];
        let flags =
            Flags::from_symbol(symbol).ok_or_else(|| format!("unknown operator {symbol:?}"))?;
        self.pos += ops;
        self.skip_space();
        let evr = self.word();
        if evr.is_empty() {
            return Err(format!("{name} {symbol} lacks a version"));
        }
        Ok(Rich::Dep(Dep::versioned(name, flags, Evr::parse(evr))))
    }

    /// A run up to white space or an unbalanced ')', as rpm reads names:
    /// `libc.so.6()(64bit)` keeps its own parentheses.
    fn word(&mut self) -> &'a str {
        let start = self.pos;
        let mut level = 0usize;
        for (i, c) in self.rest().char_indices() {
            match c {
                c if c.is_whitespace() => break,
                '(' => level += 1,
                ')' if level == 0 => break,
                ')' => level -= 1,
                _ => {}
            }
            self.pos = start + i + c.len_utf8();
        }
        &self.s[start..self.pos]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dep(s: &str) -> Rich {
        match s.split_whitespace().collect::<Vec<_>>()[..] {
            [name] => Rich::Dep(Dep::any(name)),
            [name, op, evr] => Rich::Dep(Dep::versioned(
                name,
                Flags::from_symbol(op).unwrap(),
                Evr::parse(evr),
            )),
            _ => unreachable!(),
        }
    }

    #[test]
    fn parses_nested_and_or() {
        assert_eq!(parse("(a or b)"), Ok(Rich::Or(vec![dep("a"), dep("b")])));
        assert_eq!(
            parse("(python3 >= 3.9 or (perl and perl-libs = 4:5.32-1))"),
            Ok(Rich::Or(vec![
                dep("python3 >= 3.9"),
                Rich::And(vec![dep("perl"), dep("perl-libs = 4:5.32-1")]),
            ]))
        );
        assert_eq!(
            parse("( (a) and libc.so.6()(64bit) and b < 2 )"),
            Ok(Rich::And(vec![
                dep("a"),
                dep("libc.so.6()(64bit)"),
                dep("b < 2")
            ]))
        );
    }

    #[test]
    fn refuses_other_operators_by_name() {
        let err = parse("(timedatex if systemd)").unwrap_err();
        assert_eq!(
            err,
            "the `if` operator is not supported (only `and` and `or`)"
        );
        assert!(parse("(a with b)").unwrap_err().contains("`with`"));
        assert!(parse("(a and b or c)").unwrap_err().contains("mixing"));
        assert!(parse("(a or b").unwrap_err().contains("missing ')'"));
        assert!(parse("(a >=)").unwrap_err().contains("lacks a version"));
        assert!(parse("(a) b").unwrap_err().contains("after the closing"));
    }
}
