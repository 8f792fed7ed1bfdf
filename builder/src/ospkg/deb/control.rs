//! Debian control data (deb822): paragraphs separated by blank lines, fields
//! `Name: value` with continuation lines that start with a space or tab.

/// One paragraph: its raw text and its fields, borrowed from the input.
pub struct Paragraph<'a> {
    pub raw: &'a str,
    fields: Vec<(&'a str, &'a str)>,
}

impl<'a> Paragraph<'a> {
    /// The value of a field (case-insensitive name), trimmed; continuation
    /// lines are kept as written.
    pub fn get(&self, name: &str) -> Option<&'a str> {
        self.fields
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim())
    }
}

/// The paragraphs of `text`, in order.
pub fn paragraphs(text: &str) -> impl Iterator<Item = Paragraph<'_>> {
    let mut rest = text;
    std::iter::from_fn(move || loop {
        rest = rest.trim_start_matches(['\n', '\r']);
        if rest.is_empty() {
            return None;
        }
        let end = rest.find("\n\n").map(|i| i + 1).unwrap_or(rest.len());
        let (raw, tail) = rest.split_at(end);
        rest = tail;
        let p = parse(raw);
        if !p.fields.is_empty() {
            return Some(p);
        }
    })
}

fn parse(raw: &str) -> Paragraph<'_> {
    let mut fields: Vec<(&str, &str)> = Vec::new();
    let mut start: Option<(&str, usize)> = None;
    let mut offset = 0;
    for line in raw.split_inclusive('\n') {
        let continuation = line.starts_with([' ', '\t']);
        if !continuation {
            if let Some((name, from)) = start.take() {
                fields.push((name, &raw[from..offset]));
            }
            if let Some((name, _)) = line.split_once(':') {
                if !line.starts_with('#') {
                    start = Some((name.trim(), offset + name.len() + 1));
                }
            }
        }
        offset += line.len();
    }
    if let Some((name, from)) = start {
        fields.push((name, &raw[from..offset]));
    }
    Paragraph { raw, fields }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paragraphs_and_continuations() {
        let text = "Package: a\nDepends: b,\n c (>= 1)\nDescription: x\n more\n\n\nPackage: b\nVersion: 2\n";
        let ps: Vec<_> = paragraphs(text).collect();
        assert_eq!(ps.len(), 2);
        assert_eq!(ps[0].get("package"), Some("a"));
        assert_eq!(ps[0].get("Depends"), Some("b,\n c (>= 1)"));
        assert_eq!(ps[1].get("Version"), Some("2"));
        assert!(ps[1].raw.starts_with("Package: b\n"));
        assert_eq!(ps[0].get("Missing"), None);
    }
}
