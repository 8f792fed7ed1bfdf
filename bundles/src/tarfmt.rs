//! The tar dialect of a bundle: ustar headers for regular files only, with a
//! pax `path` record when a path does not fit ustar's name/prefix fields.
//! Fixed metadata (uid/gid 0, names `root`, one mtime) keeps output stable.

use tar::{EntryType, Header};

pub const BLOCK: usize = 512;
/// Two zero blocks end the archive.
pub const END_OF_ARCHIVE: [u8; 2 * BLOCK] = [0; 2 * BLOCK];
/// Largest pax extended header we accept (a path record is far smaller).
const MAX_PAX: u64 = 64 * 1024;
const PAX_NAME: &str = "././@PaxHeader";

/// Bytes of zero padding after `size` bytes of content.
pub fn padding(size: u64) -> usize {
    ((BLOCK as u64 - size % BLOCK as u64) % BLOCK as u64) as usize
}

fn base_header(kind: EntryType, size: u64, mode: u32, mtime: u64) -> Header {
    let mut h = Header::new_ustar();
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(mode);
    h.set_mtime(mtime);
    h.set_uid(0);
    h.set_gid(0);
    // Both names fit the 32-byte fields, so these cannot fail.
    let _ = h.set_username("root");
    let _ = h.set_groupname("root");
    h
}

/// Header block(s) for a regular file: one ustar block, or a pax header
/// (with its data) followed by the ustar block when the path is long.
pub fn file_header(path: &str, size: u64, mode: u32, mtime: u64) -> Vec<u8> {
    let mut h = base_header(EntryType::Regular, size, mode, mtime);
    let mut out = Vec::with_capacity(BLOCK);
    if h.set_path(path).is_err() {
        let record = pax_record("path", path);
        let mut x = base_header(EntryType::XHeader, record.len() as u64, 0o644, mtime);
        set_name_raw(&mut x, PAX_NAME.as_bytes());
        x.set_cksum();
        out.extend_from_slice(x.as_bytes());
        out.extend_from_slice(&record);
        out.resize(out.len() + padding(record.len() as u64), 0);
        // The ustar name is informational only; readers use the pax path.
        let bytes = path.as_bytes();
        set_name_raw(&mut h, &bytes[bytes.len().saturating_sub(99)..]);
    }
    h.set_cksum();
    out.extend_from_slice(h.as_bytes());
    out
}

fn set_name_raw(h: &mut Header, name: &[u8]) {
    let field = &mut h.as_old_mut().name;
    field.fill(0);
    let n = name.len().min(field.len());
    field[..n].copy_from_slice(&name[..n]);
}

/// One pax record: `<len> <key>=<value>\n`, where len counts the whole record.
fn pax_record(key: &str, value: &str) -> Vec<u8> {
    let body = format!(" {key}={value}\n");
    let mut len = body.len() + 1;
    while len.to_string().len() + body.len() != len {
        len = len.to_string().len() + body.len();
    }
    format!("{len}{body}").into_bytes()
}

/// What one header block says, after the format checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// A zero block (end of archive when two in a row).
    Zero,
    /// A pax extended header of `size` bytes for the next entry.
    Pax {
        size: u64,
    },
    File {
        path: String,
        size: u64,
        mode: u32,
    },
}

/// Checks one header block. Err carries (name shown to the user, reason).
pub fn parse(block: &[u8; BLOCK]) -> Result<Parsed, (String, String)> {
    if block.iter().all(|&b| b == 0) {
        return Ok(Parsed::Zero);
    }
    let h = Header::from_byte_slice(block);
    let name = String::from_utf8_lossy(&h.path_bytes()).into_owned();
    let fail = |reason: String| Err((name.clone(), reason));
    match h.cksum() {
        Ok(sum) if sum == checksum(block) => {}
        _ => return fail("tar header checksum mismatch (damaged or not a tar stream)".into()),
    }
    if &block[257..265] != b"ustar\x0000" {
        return fail("not a ustar header (only ustar/pax tar is accepted)".into());
    }
    let kind = h.entry_type();
    if !matches!(kind, EntryType::XHeader | EntryType::Regular) {
        return fail(format!(
            "{} entry not allowed (only regular files)",
            kind_name(kind)
        ));
    }
    let size = match h.size() {
        Ok(s) => s,
        Err(_) => return fail("unreadable size field".into()),
    };
    match kind {
        EntryType::XHeader => {
            if size > MAX_PAX {
                return fail(format!("pax header of {size} bytes is too large"));
            }
            Ok(Parsed::Pax { size })
        }
        EntryType::Regular => {
            let mode = match h.mode() {
                Ok(m) => m,
                Err(_) => return fail("unreadable mode field".into()),
            };
            let Ok(path) = String::from_utf8(h.path_bytes().into_owned()) else {
                return fail("path is not UTF-8".into());
            };
            Ok(Parsed::File { path, size, mode })
        }
        other => fail(format!(
            "{} entry not allowed (only regular files)",
            kind_name(other)
        )),
    }
}

fn kind_name(kind: EntryType) -> String {
    match kind {
        EntryType::Symlink => "symbolic link".into(),
        EntryType::Link => "hard link".into(),
        EntryType::Char => "character device".into(),
        EntryType::Block => "block device".into(),
        EntryType::Fifo => "fifo".into(),
        EntryType::Directory => "directory".into(),
        EntryType::GNULongName | EntryType::GNULongLink => "GNU long name".into(),
        EntryType::GNUSparse => "GNU sparse".into(),
        EntryType::XGlobalHeader => "pax global header".into(),
        other => format!("type `{}`", other.as_byte() as char),
    }
}

/// Sum of the header bytes with the checksum field counted as spaces.
fn checksum(block: &[u8; BLOCK]) -> u32 {
    block
        .iter()
        .enumerate()
        .map(|(i, &b)| {
            if (148..156).contains(&i) {
                u32::from(b' ')
            } else {
                u32::from(b)
            }
        })
        .sum()
}

/// The `path` of a pax extended header's data; any other key is rejected.
pub fn pax_path(data: &[u8]) -> Result<String, String> {
    let mut path = None;
    for ext in tar::PaxExtensions::new(data) {
        let ext = ext.map_err(|_| "malformed pax record".to_string())?;
        match ext.key() {
            Ok("path") => {
                let v = ext
                    .value()
                    .map_err(|_| "pax path is not UTF-8".to_string())?;
                path = Some(v.to_string());
            }
            Ok(k) => return Err(format!("pax key `{k}` not allowed (only `path`)")),
            Err(_) => return Err("pax key is not UTF-8".into()),
        }
    }
    path.ok_or_else(|| "pax header without a path".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(bytes: &[u8]) -> &[u8; BLOCK] {
        bytes[..BLOCK].try_into().unwrap()
    }

    #[test]
    fn short_path_is_one_ustar_block() {
        let h = file_header("bin/linux-amd64/kubelet", 1234, 0o755, 1_700_000_000);
        assert_eq!(h.len(), BLOCK);
        let p = parse(block(&h)).unwrap();
        assert_eq!(
            p,
            Parsed::File {
                path: "bin/linux-amd64/kubelet".into(),
                size: 1234,
                mode: 0o755
            }
        );
    }

    #[test]
    fn long_path_uses_pax_record() {
        let long = format!("manifests/{}/file.yaml", "d".repeat(300));
        let h = file_header(&long, 7, 0o644, 0);
        assert_eq!(h.len() % BLOCK, 0);
        let Parsed::Pax { size } = parse(block(&h)).unwrap() else {
            panic!("expected pax")
        };
        let data = &h[BLOCK..BLOCK + size as usize];
        assert_eq!(pax_path(data).unwrap(), long);
        let last = &h[h.len() - BLOCK..];
        assert!(matches!(
            parse(block(last)).unwrap(),
            Parsed::File { size: 7, .. }
        ));
    }

    #[test]
    fn pax_record_length_counts_itself() {
        for n in [1, 5, 90, 95, 96, 97, 990, 995, 1000] {
            let r = pax_record("path", &"x".repeat(n));
            let text = String::from_utf8(r.clone()).unwrap();
            let (len, _) = text.split_once(' ').unwrap();
            assert_eq!(len.parse::<usize>().unwrap(), r.len(), "{n}");
        }
    }

    #[test]
    fn damaged_header_and_links_are_rejected() {
        let mut h = file_header("a", 1, 0o644, 0);
        h[10] ^= 1;
        assert!(parse(block(&h)).unwrap_err().1.contains("checksum"));

        let mut l = Header::new_ustar();
        l.set_entry_type(EntryType::Symlink);
        l.set_path("evil").unwrap();
        l.set_link_name("/etc/shadow").unwrap();
        l.set_cksum();
        let (name, why) = parse(l.as_bytes()).unwrap_err();
        assert_eq!(name, "evil");
        assert!(why.contains("symbolic link"), "{why}");

        let mut g = Header::new_gnu();
        g.set_path("gnu").unwrap();
        g.set_cksum();
        assert!(parse(g.as_bytes()).unwrap_err().1.contains("ustar"));
    }

    #[test]
    fn pax_rejects_other_keys() {
        let mut data = pax_record("path", "a/b");
        data.extend(pax_record("linkpath", "x"));
        assert!(pax_path(&data).unwrap_err().contains("linkpath"));
    }
}
