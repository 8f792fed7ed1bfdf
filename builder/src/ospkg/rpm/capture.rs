//! A `BufRead` wrapper that keeps the bytes its reader consumed, so the
//! streaming parser can hand back each `<package>` element byte for byte.
//! quick-xml consumes exactly the bytes of each event, no more.

use std::io::{self, BufRead, Read};

pub(super) struct Capture<R> {
    inner: R,
    seen: Vec<u8>,
    /// The inner reader failed while bytes were being consumed: `seen` is short.
    lost: bool,
}

impl<R: BufRead> Capture<R> {
    pub(super) fn new(inner: R) -> Self {
        Capture {
            inner,
            seen: Vec::new(),
            lost: false,
        }
    }

    /// Drops what was consumed so far.
    pub(super) fn forget(&mut self) {
        self.seen.clear();
    }

    /// Where the last tag seen starts (its `<`).
    pub(super) fn last_tag_start(&self) -> Option<usize> {
        self.seen.iter().rposition(|&b| b == b'<')
    }

    /// The bytes consumed from `start` on; `None` if some were lost.
    pub(super) fn take_from(&mut self, start: usize) -> Option<Vec<u8>> {
        let bytes = self.seen.get(start..).map(<[u8]>::to_vec);
        self.seen.clear();
        if self.lost {
            None
        } else {
            bytes
        }
    }
}

impl<R: BufRead> Read for Capture<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let available = self.fill_buf()?;
        let n = available.len().min(out.len());
        out[..n].copy_from_slice(&available[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl<R: BufRead> BufRead for Capture<R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        self.inner.fill_buf()
    }

    fn consume(&mut self, amt: usize) {
        // A filled buffer is returned again without reading.
        match self.inner.fill_buf() {
            Ok(available) if available.len() >= amt => {
                self.seen.extend_from_slice(&available[..amt])
            }
            _ => self.lost = true,
        }
        self.inner.consume(amt);
    }
}
