//! `repodata/repomd.xml`: where the primary metadata is and its digests.
//! The caller checks the file's signature before trusting what this returns.

use super::xml::{is_sha256_hex, resolve_ref, xml_error, Attrs};
use super::RpmError;
use quick_xml::events::{BytesStart, Event};
use quick_xml::Reader;

const FILE: &str = "repomd.xml";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Repomd {
    /// `<revision>`, often the creation time.
    pub revision: Option<String>,
    pub primary: RepoFile,
}

/// One `<data>` entry: a metadata file of the repository.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RepoFile {
    /// Relative to the repository root, e.g. `repodata/<sha256>-primary.xml.gz`.
    pub location_href: String,
    /// sha256 of the file as stored (compressed), lowercase hex.
    pub sha256: String,
    pub size: Option<u64>,
    /// sha256 of the decompressed file, when given.
    pub open_sha256: Option<String>,
    pub open_size: Option<u64>,
}

/// The `<data type="primary">` entry of a repomd.xml and its revision.
pub fn parse(xml: &[u8]) -> Result<Repomd, RpmError> {
    let mut reader = Reader::from_reader(xml);
    let (mut stack, mut text) = (Vec::<Vec<u8>>::new(), String::new());
    let mut state = State::default();
    loop {
        let pos = reader.buffer_position();
        match reader.read_event().map_err(|e| xml_error(FILE, pos, e))? {
            Event::Start(e) => {
                state.open(&stack, &e, Attrs::parse(FILE, reader.decoder(), &e)?)?;
                stack.push(e.local_name().as_ref().to_vec());
                text.clear();
            }
            Event::Empty(e) => state.open(&stack, &e, Attrs::parse(FILE, reader.decoder(), &e)?)?,
            Event::Text(t) => text.push_str(&t.decode().map_err(|e| bad(e.to_string()))?),
            Event::GeneralRef(r) => text.push_str(&resolve_ref(FILE, &r)?),
            Event::End(_) => {
                let name = stack.pop().unwrap_or_default();
                state.close(&stack, &name, text.trim())?;
                text.clear();
            }
            Event::Eof => break,
            _ => {}
        }
    }
    let primary = state
        .primary
        .ok_or_else(|| bad("no <data type=\"primary\"> entry".into()))?;
    Ok(Repomd {
        revision: state.revision,
        primary,
    })
}

fn bad(reason: String) -> RpmError {
    RpmError::Xml { file: FILE, reason }
}

/// What was read so far; `entry` is the primary `<data>` being read.
#[derive(Default)]
struct State {
    revision: Option<String>,
    primary: Option<RepoFile>,
    entry: Option<Entry>,
}

#[derive(Default)]
struct Entry {
    file: RepoFile,
    checksum_type: Option<String>,
    open_checksum_type: Option<String>,
}

impl State {
    /// A tag opens under the elements in `stack`.
    fn open(&mut self, stack: &[Vec<u8>], e: &BytesStart, a: Attrs) -> Result<(), RpmError> {
        let name = e.local_name();
        if stack.len() == 1 && name.as_ref() == b"data" && a.get("type") == Some("primary") {
            if self.primary.is_some() || self.entry.is_some() {
                return Err(bad("more than one <data type=\"primary\">".into()));
            }
            self.entry = Some(Entry::default());
            return Ok(());
        }
        let Some(entry) = self.entry.as_mut().filter(|_| stack.len() == 2) else {
            return Ok(());
        };
        match name.as_ref() {
            b"checksum" => entry.checksum_type = Some(a.or_empty("type")),
            b"open-checksum" => entry.open_checksum_type = Some(a.or_empty("type")),
            b"location" => entry.file.location_href = a.or_empty("href"),
            _ => {}
        }
        Ok(())
    }

    /// The element `name` closes, leaving `stack` open; `text` is its content.
    fn close(&mut self, stack: &[Vec<u8>], name: &[u8], text: &str) -> Result<(), RpmError> {
        match (stack.len(), name) {
            (1, b"revision") => self.revision = Some(text.to_string()),
            (1, b"data") => {
                if let Some(entry) = self.entry.take() {
                    self.primary = Some(entry.finish()?);
                }
            }
            (2, _) => {
                if let Some(entry) = self.entry.as_mut() {
                    entry.text(name, text)?;
                }
            }
            _ => {}
        }
        Ok(())
    }
}

impl Entry {
    fn text(&mut self, name: &[u8], text: &str) -> Result<(), RpmError> {
        let number = |what: &str| {
            text.parse::<u64>()
                .map_err(|_| bad(format!("primary <{what}> {text:?} is not a number")))
        };
        match name {
            b"checksum" => self.file.sha256 = text.to_ascii_lowercase(),
            b"open-checksum" => self.file.open_sha256 = Some(text.to_ascii_lowercase()),
            b"size" => self.file.size = Some(number("size")?),
            b"open-size" => self.file.open_size = Some(number("open-size")?),
            _ => {}
        }
        Ok(())
    }

    fn finish(self) -> Result<RepoFile, RpmError> {
        let file = self.file;
        if file.location_href.is_empty() {
            return Err(bad("primary <data> has no <location href>".into()));
        }
        check_type("primary <checksum>", self.checksum_type.as_deref())?;
        if !is_sha256_hex(&file.sha256) {
            return Err(bad(format!(
                "primary <checksum> {:?} is not sha256 hex",
                file.sha256
            )));
        }
        if let Some(open) = &file.open_sha256 {
            check_type(
                "primary <open-checksum>",
                self.open_checksum_type.as_deref(),
            )?;
            if !is_sha256_hex(open) {
                return Err(bad(format!(
                    "primary <open-checksum> {open:?} is not sha256 hex"
                )));
            }
        }
        Ok(file)
    }
}

fn check_type(what: &str, kind: Option<&str>) -> Result<(), RpmError> {
    match kind {
        Some("sha256") => Ok(()),
        None => Err(bad(format!("{what} is missing"))),
        Some(kind) => Err(RpmError::ChecksumType {
            file: FILE,
            what: what.to_string(),
            kind: kind.to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::super::testdata::REPOMD;
    use super::*;

    #[test]
    fn reads_the_primary_entry() {
        let repomd = parse(REPOMD.as_bytes()).unwrap();
        assert_eq!(repomd.revision.as_deref(), Some("1796228939"));
        let p = repomd.primary;
        assert_eq!(
            p.location_href,
            "repodata/0b2ed33a64bb92a761c83ccff5005c4888b19575cc77a592beaf58d679690f3e-primary.xml.gz"
        );
        assert_eq!(
            p.sha256,
            "0b2ed33a64bb92a761c83ccff5005c4888b19575cc77a592beaf58d679690f3e"
        );
        assert_eq!(p.size, Some(640));
        assert_eq!(
            p.open_sha256.as_deref(),
            Some("97a2e94042211cd05edc491dba080bd113083c75106293ce89e69e63bc813f51")
        );
        assert_eq!(p.open_size, Some(1371));
    }

    #[test]
    fn rejects_a_digest_other_than_sha256() {
        let xml = REPOMD.replacen("<checksum type=\"sha256\">", "<checksum type=\"sha1\">", 1);
        let err = parse(xml.as_bytes()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "repomd.xml: primary <checksum> uses checksum type \"sha1\"; only sha256 is accepted"
        );
        let xml = REPOMD.replacen(
            "<open-checksum type=\"sha256\">",
            "<open-checksum type=\"md5\">",
            1,
        );
        assert!(
            matches!(parse(xml.as_bytes()), Err(RpmError::ChecksumType { kind, .. }) if kind == "md5")
        );
    }

    #[test]
    fn open_checksum_is_optional() {
        let start = REPOMD.find("    <open-checksum").unwrap();
        let end = REPOMD[start..].find('\n').unwrap() + start + 1;
        let xml = format!("{}{}", &REPOMD[..start], &REPOMD[end..]);
        let p = parse(xml.as_bytes()).unwrap().primary;
        assert_eq!(p.open_sha256, None);
        assert_eq!(p.size, Some(640));
    }

    #[test]
    fn a_repomd_without_primary_is_an_error() {
        let xml = REPOMD.replacen("type=\"primary\"", "type=\"primary_zck\"", 1);
        assert_eq!(
            parse(xml.as_bytes()).unwrap_err().to_string(),
            "repomd.xml: no <data type=\"primary\"> entry"
        );
        let twice = REPOMD.replacen("type=\"filelists\"", "type=\"primary\"", 1);
        assert!(parse(twice.as_bytes())
            .unwrap_err()
            .to_string()
            .contains("more than one"));
        assert!(matches!(parse(b"<repomd><data"), Err(RpmError::Xml { .. })));
    }
}
