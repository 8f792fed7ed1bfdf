//! The zstd seekable-format seek table, stored in a skippable frame at the
//! end of the stream (stock zstd skips it):
//! `0x184D2A5E | frame size | (compressed u32, decompressed u32)* |
//!  frame count u32 | descriptor u8 | 0x8F92EAB1`, all little endian.

pub const SKIPPABLE_MAGIC: u32 = 0x184D_2A5E;
pub const SEEKABLE_MAGIC: u32 = 0x8F92_EAB1;
pub const FOOTER_LEN: usize = 9;
const CHECKSUM_FLAG: u8 = 0x80;
/// Bits other than the checksum flag must be zero (reserved or unused).
const RESERVED_BITS: u8 = 0x7F;
/// Most frames a seek table may list: the writer refuses to make more, and
/// the reader refuses a table claiming more before reading it. 1 Mi frames
/// are 32 TiB at the default 32 MiB frame size (64 GiB even at 64 KiB), and
/// bound the table a reader holds to `MAX_TABLE_LEN` (12 MiB).
pub const MAX_FRAMES: u64 = 1 << 20;
/// Largest seek-table frame a reader accepts: `MAX_FRAMES` entries of 12
/// bytes (with per-frame checksums), the frame header and the footer.
pub const MAX_TABLE_LEN: u64 = 8 + MAX_FRAMES * 12 + FOOTER_LEN as u64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameEntry {
    pub compressed: u32,
    pub decompressed: u32,
}

/// The whole skippable frame for these frames (no per-frame checksums: every
/// zstd frame carries its own).
pub fn encode(frames: &[FrameEntry]) -> Vec<u8> {
    let body = frames.len() * 8 + FOOTER_LEN;
    let mut out = Vec::with_capacity(8 + body);
    out.extend_from_slice(&SKIPPABLE_MAGIC.to_le_bytes());
    out.extend_from_slice(&(body as u32).to_le_bytes());
    for f in frames {
        out.extend_from_slice(&f.compressed.to_le_bytes());
        out.extend_from_slice(&f.decompressed.to_le_bytes());
    }
    out.extend_from_slice(&(frames.len() as u32).to_le_bytes());
    out.push(0);
    out.extend_from_slice(&SEEKABLE_MAGIC.to_le_bytes());
    out
}

/// From the last 9 bytes of a stream: the length of the whole seek-table
/// frame, or None when the stream does not end with a seek table.
pub fn table_len(footer: &[u8]) -> Option<u64> {
    let footer: &[u8; FOOTER_LEN] = footer.try_into().ok()?;
    let magic = u32::from_le_bytes(footer[5..9].try_into().ok()?);
    let descriptor = footer[4];
    if magic != SEEKABLE_MAGIC || descriptor & RESERVED_BITS != 0 {
        return None;
    }
    let n = u64::from(u32::from_le_bytes(footer[0..4].try_into().ok()?));
    let entry = if descriptor & CHECKSUM_FLAG != 0 {
        12
    } else {
        8
    };
    Some(8 + n * entry + FOOTER_LEN as u64)
}

/// Parses the whole skippable frame as returned by reading `table_len` bytes.
pub fn decode(table: &[u8]) -> Result<Vec<FrameEntry>, String> {
    let len = table.len();
    if len as u64 > MAX_TABLE_LEN {
        return Err(format!(
            "seek table of {len} bytes is larger than the {MAX_TABLE_LEN} bytes ({MAX_FRAMES} frames) ferry reads"
        ));
    }
    if len < 8 + FOOTER_LEN || table_len(&table[len - FOOTER_LEN..]) != Some(len as u64) {
        return Err("seek table footer does not match its length".into());
    }
    let word =
        |at: usize| u32::from_le_bytes([table[at], table[at + 1], table[at + 2], table[at + 3]]);
    if word(0) != SKIPPABLE_MAGIC || word(4) as usize != len - 8 {
        return Err("seek table is not a well-formed skippable frame".into());
    }
    let entry = if table[len - 5] & CHECKSUM_FLAG != 0 {
        12
    } else {
        8
    };
    let frames = (8..len - FOOTER_LEN)
        .step_by(entry)
        .map(|at| FrameEntry {
            compressed: word(at),
            decompressed: word(at + 4),
        })
        .collect();
    Ok(frames)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let frames = vec![
            FrameEntry {
                compressed: 100,
                decompressed: 2048,
            },
            FrameEntry {
                compressed: 7,
                decompressed: 0,
            },
            FrameEntry {
                compressed: u32::MAX,
                decompressed: 1 << 25,
            },
        ];
        let bytes = encode(&frames);
        assert_eq!(bytes.len(), 8 + 3 * 8 + FOOTER_LEN);
        assert_eq!(
            table_len(&bytes[bytes.len() - FOOTER_LEN..]),
            Some(bytes.len() as u64)
        );
        assert_eq!(decode(&bytes).unwrap(), frames);
    }

    #[test]
    fn layout_matches_the_seekable_format() {
        let bytes = encode(&[FrameEntry {
            compressed: 1,
            decompressed: 2,
        }]);
        assert_eq!(&bytes[0..4], &[0x5E, 0x2A, 0x4D, 0x18]);
        assert_eq!(&bytes[4..8], &17u32.to_le_bytes());
        assert_eq!(&bytes[bytes.len() - 4..], &[0xB1, 0xEA, 0x92, 0x8F]);
    }

    #[test]
    fn a_table_over_the_cap_is_refused() {
        // The footer alone tells the claimed size: u32::MAX entries is ~48 GiB.
        let mut footer = [0u8; FOOTER_LEN];
        footer[0..4].copy_from_slice(&u32::MAX.to_le_bytes());
        footer[4] = CHECKSUM_FLAG;
        footer[5..9].copy_from_slice(&SEEKABLE_MAGIC.to_le_bytes());
        let claimed = table_len(&footer).unwrap();
        assert_eq!(claimed, 8 + u64::from(u32::MAX) * 12 + FOOTER_LEN as u64);
        assert!(claimed > MAX_TABLE_LEN);
        // The largest allowed table is within the cap, one more frame is not.
        let at_cap = vec![
            FrameEntry {
                compressed: 1,
                decompressed: 1
            };
            MAX_FRAMES as usize
        ];
        let bytes = encode(&at_cap);
        assert!(bytes.len() as u64 <= MAX_TABLE_LEN);
        assert_eq!(decode(&bytes).unwrap().len(), MAX_FRAMES as usize);
        let mut over = vec![0u8; MAX_TABLE_LEN as usize + 1];
        let n = over.len();
        over[n - FOOTER_LEN..].copy_from_slice(&footer);
        let err = decode(&over).unwrap_err();
        assert!(err.contains("larger than"), "{err}");
    }

    #[test]
    fn stream_without_table_is_recognised() {
        assert_eq!(table_len(&[0u8; FOOTER_LEN]), None);
        assert_eq!(table_len(&[1, 2, 3]), None);
        let mut bytes = encode(&[FrameEntry {
            compressed: 1,
            decompressed: 2,
        }]);
        bytes[0] ^= 1;
        assert!(decode(&bytes).is_err());
    }
}
