//! Streaming reader of `primary.xml` (tens of MB for a real repository): one
//! `<package>` at a time, each kept with its original bytes.

use super::capture::Capture;
use super::package::{Dep, Evr, Flags, RpmPackage};
use super::xml::{is_sha256_hex, resolve_ref, xml_error, Attrs};
use super::RpmError;
use quick_xml::events::{BytesStart, Event};
use quick_xml::Reader;
use std::io::BufRead;

const FILE: &str = "primary.xml";
pub(super) const COMMON_NS: &str = "http://linux.duke.edu/metadata/common";
pub(super) const RPM_NS: &str = "http://linux.duke.edu/metadata/rpm";

type Xml<R> = Reader<Capture<R>>;

/// Every package of a (decompressed) primary.xml, in document order.
pub fn parse(reader: impl BufRead) -> Result<Vec<RpmPackage>, RpmError> {
    let mut xml = Reader::from_reader(Capture::new(reader));
    let (mut buf, mut packages) = (Vec::new(), Vec::new());
    let (mut declared, mut closed) = (None, false);
    loop {
        buf.clear();
        let event = read(&mut xml, &mut buf)?;
        let is_package = match &event {
            Event::Start(e) if e.local_name().as_ref() == b"metadata" => {
                declared = Some(check_root(&xml, e)?);
                false
            }
            Event::Start(e) => e.local_name().as_ref() == b"package" && declared.is_some(),
            Event::End(e) => {
                closed |= e.local_name().as_ref() == b"metadata";
                false
            }
            Event::Eof => break,
            _ => false,
        };
        if is_package {
            let start = xml.get_ref().last_tag_start().unwrap_or(0);
            let mut package = read_package(&mut xml, packages.len())?;
            package.xml = xml.get_mut().take_from(start).ok_or_else(|| {
                bad("the reader failed while the parser consumed a package".into())
            })?;
            packages.push(package);
        }
        xml.get_mut().forget();
    }
    match declared {
        None => Err(bad("no <metadata> root element".into())),
        Some(_) if !closed => Err(bad("the file ends before </metadata>".into())),
        Some(Some(n)) if n != packages.len() => Err(bad(format!(
            "<metadata packages=\"{n}\"> but {} <package> elements",
            packages.len()
        ))),
        Some(_) => Ok(packages),
    }
}

fn bad(reason: String) -> RpmError {
    RpmError::Xml { file: FILE, reason }
}

fn read<'b, R: BufRead>(xml: &mut Xml<R>, buf: &'b mut Vec<u8>) -> Result<Event<'b>, RpmError> {
    let pos = xml.buffer_position();
    xml.read_event_into(buf)
        .map_err(|e| xml_error(FILE, pos, e))
}

/// The root must declare the two namespaces createrepo_c writes, and only
/// them: the index writer copies package elements under the same root.
/// Returns the `packages` count it announces.
fn check_root<R: BufRead>(xml: &Xml<R>, e: &BytesStart) -> Result<Option<usize>, RpmError> {
    let mut count = None;
    let (mut common, mut rpm) = (false, false);
    for (key, value) in Attrs::parse(FILE, xml.decoder(), e)?.iter() {
        match key {
            "xmlns" => common = value == COMMON_NS,
            "xmlns:rpm" => rpm = value == RPM_NS,
            "packages" => count = value.parse().ok(),
            k if k.starts_with("xmlns") => {
                return Err(bad(format!(
                    "unexpected namespace declaration {k}=\"{value}\""
                )))
            }
            _ => {}
        }
    }
    if !(common && rpm) {
        return Err(bad(format!(
            "<metadata> must declare xmlns=\"{COMMON_NS}\" and xmlns:rpm=\"{RPM_NS}\""
        )));
    }
    Ok(count)
}

/// Reads up to the `</package>` matching the start tag just read.
fn read_package<R: BufRead>(xml: &mut Xml<R>, index: usize) -> Result<RpmPackage, RpmError> {
    let mut p = Partial::default();
    let mut buf = Vec::new();
    let mut depth = 1;
    loop {
        buf.clear();
        match read(xml, &mut buf)? {
            Event::Start(e) => {
                depth += 1;
                p.open(xml, &e, depth)?;
            }
            Event::Empty(e) => {
                p.open(xml, &e, depth + 1)?;
                p.close(e.local_name().as_ref());
            }
            Event::Text(t) => p.text(&t.decode().map_err(|e| bad(e.to_string()))?),
            Event::CData(t) => p.text(&t.decode().map_err(|e| bad(e.to_string()))?),
            Event::GeneralRef(r) => p.text(&resolve_ref(FILE, &r)?),
            Event::End(_) if depth == 1 => return p.finish(index),
            Event::End(e) => {
                p.close(e.local_name().as_ref());
                depth -= 1;
            }
            Event::Eof => return Err(bad(format!("package #{} is cut short", index + 1))),
            _ => {}
        }
    }
}

/// `epoch`, `ver` and `rel` of a `<version>` or `<rpm:entry>`.
fn evr(a: &Attrs) -> Evr {
    Evr {
        epoch: a.or_empty("epoch"),
        version: a.or_empty("ver"),
        release: a.or_empty("rel"),
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Field {
    Name,
    Arch,
    Checksum,
    File,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum List {
    Provides,
    Requires,
}

/// A package being read: what was seen so far, and where we are in it.
#[derive(Default)]
struct Partial {
    name: Option<String>,
    arch: Option<String>,
    evr: Option<Evr>,
    checksum: Option<(String, String)>,
    size: Option<u64>,
    href: Option<String>,
    base: Option<String>,
    provides: Vec<Dep>,
    requires: Vec<Dep>,
    files: Vec<String>,
    list: Option<List>,
    text: Option<(Field, String)>,
}

impl Partial {
    /// An element opens at `depth` (the `<package>` itself is 1).
    fn open<R: BufRead>(
        &mut self,
        xml: &Xml<R>,
        e: &BytesStart,
        depth: usize,
    ) -> Result<(), RpmError> {
        let get = || Attrs::parse(FILE, xml.decoder(), e);
        match (depth, e.local_name().as_ref()) {
            (2, b"name") => self.text = Some((Field::Name, String::new())),
            (2, b"arch") => self.text = Some((Field::Arch, String::new())),
            (2, b"checksum") => {
                self.checksum = Some((get()?.or_empty("type"), String::new()));
                self.text = Some((Field::Checksum, String::new()));
            }
            (2, b"version") => {
                self.evr = Some(evr(&get()?));
            }
            (2, b"size") => self.size = get()?.get("package").and_then(|s| s.parse().ok()),
            (2, b"location") => {
                let a = get()?;
                self.href = a.get("href").map(str::to_string);
                self.base = a.get("xml:base").map(str::to_string);
            }
            (3, b"file") => self.text = Some((Field::File, String::new())),
            (3, b"provides") => self.list = Some(List::Provides),
            (3, b"requires") => self.list = Some(List::Requires),
            (4, b"entry") => self.entry(xml, e)?,
            _ => {}
        }
        Ok(())
    }

    fn entry<R: BufRead>(&mut self, xml: &Xml<R>, e: &BytesStart) -> Result<(), RpmError> {
        let Some(list) = self.list else { return Ok(()) };
        let a = Attrs::parse(FILE, xml.decoder(), e)?;
        let name = a
            .get("name")
            .ok_or_else(|| bad("<rpm:entry> without a name".into()))?;
        let constraint = match a.get("flags") {
            None => None,
            Some(f) => Some((
                Flags::from_attr(f)
                    .ok_or_else(|| bad(format!("<rpm:entry name=\"{name}\"> has flags=\"{f}\"")))?,
                evr(&a),
            )),
        };
        let pre = matches!(a.get("pre"), Some("1" | "true"));
        let dep = Dep {
            name: name.to_string(),
            constraint,
            pre,
        };
        match list {
            List::Provides => self.provides.push(dep),
            List::Requires => self.requires.push(dep),
        }
        Ok(())
    }

    fn text(&mut self, s: &str) {
        if let Some((_, text)) = &mut self.text {
            text.push_str(s);
        }
    }

    fn close(&mut self, local_name: &[u8]) {
        match local_name {
            b"provides" | b"requires" => self.list = None,
            b"name" | b"arch" | b"checksum" | b"file" => {}
            _ => return,
        }
        let Some((field, text)) = self.text.take() else {
            return;
        };
        match field {
            Field::Name => self.name = Some(text),
            Field::Arch => self.arch = Some(text),
            Field::Checksum => {
                if let Some((_, hex)) = &mut self.checksum {
                    *hex = text.trim().to_ascii_lowercase();
                }
            }
            Field::File => self.files.push(text),
        }
    }

    fn finish(self, index: usize) -> Result<RpmPackage, RpmError> {
        let missing = |what: &str| bad(format!("package #{} has no {what}", index + 1));
        let name = self.name.ok_or_else(|| missing("<name>"))?;
        let arch = self.arch.ok_or_else(|| missing("<arch>"))?;
        let evr = self.evr.ok_or_else(|| missing("<version>"))?;
        let (kind, sha256) = self.checksum.ok_or_else(|| missing("<checksum>"))?;
        let nevra = format!("{name}-{evr}.{arch}");
        if kind != "sha256" {
            let what = format!("package {nevra}");
            return Err(RpmError::ChecksumType {
                file: FILE,
                what,
                kind,
            });
        }
        if !is_sha256_hex(&sha256) {
            return Err(bad(format!(
                "package {nevra}: checksum {sha256:?} is not sha256 hex"
            )));
        }
        Ok(RpmPackage {
            size: self.size.ok_or_else(|| missing("<size package=..>"))?,
            location_href: self.href.ok_or_else(|| missing("<location href=..>"))?,
            location_base: self.base,
            name,
            arch,
            evr,
            sha256,
            provides: self.provides,
            requires: self.requires,
            files: self.files,
            xml: Vec::new(),
        })
    }
}
