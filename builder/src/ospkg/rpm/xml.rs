//! Small helpers shared by the XML readers.

use super::RpmError;
use quick_xml::escape::resolve_predefined_entity;
use quick_xml::events::{BytesRef, BytesStart};
use quick_xml::{Decoder, XmlVersion};

/// A parse error at a byte offset of `file`.
pub(super) fn xml_error(file: &'static str, pos: u64, e: impl std::fmt::Display) -> RpmError {
    RpmError::Xml {
        file,
        reason: format!("at byte {pos}: {e}"),
    }
}

/// The attributes of one tag, decoded and unescaped, keys with their prefix.
pub(super) struct Attrs(Vec<(String, String)>);

impl Attrs {
    pub(super) fn parse(
        file: &'static str,
        decoder: Decoder,
        e: &BytesStart,
    ) -> Result<Self, RpmError> {
        let bad = |reason: String| RpmError::Xml { file, reason };
        let mut out = Vec::new();
        for a in e.attributes() {
            let a = a.map_err(|e| bad(e.to_string()))?;
            let key = decoder
                .decode(a.key.as_ref())
                .map_err(|e| bad(e.to_string()))?;
            let value = a
                .decoded_and_normalized_value(XmlVersion::Implicit1_0, decoder)
                .map_err(|e| bad(e.to_string()))?;
            out.push((key.into_owned(), value.into_owned()));
        }
        Ok(Attrs(out))
    }

    /// One attribute by its full name (e.g. `xml:base`).
    pub(super) fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find_map(|(k, v)| (k == key).then_some(v.as_str()))
    }

    /// An attribute, or "" when absent.
    pub(super) fn or_empty(&self, key: &str) -> String {
        self.get(key).unwrap_or_default().to_string()
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

/// The text an entity or character reference in content stands for.
pub(super) fn resolve_ref(file: &'static str, r: &BytesRef) -> Result<String, RpmError> {
    let bad = |reason: String| RpmError::Xml { file, reason };
    if let Some(c) = r.resolve_char_ref().map_err(|e| bad(e.to_string()))? {
        return Ok(c.to_string());
    }
    let name = r.decode().map_err(|e| bad(e.to_string()))?;
    resolve_predefined_entity(&name)
        .map(str::to_string)
        .ok_or_else(|| bad(format!("unknown entity &{name};")))
}

pub(super) fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}
