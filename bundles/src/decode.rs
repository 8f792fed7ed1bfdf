//! The decompressed byte stream of a bundle, produced off the consumer's
//! thread. With a seek table, a reader thread cuts the compressed stream into
//! frames and worker threads decode them in parallel; results come back in
//! order through a bounded queue, so memory stays at a few frames whatever
//! the bundle size. Without a seek table, one thread runs a streaming decoder.
//! Buffers are recycled to avoid page-faulting fresh memory for every frame.

use crate::seektable::{self, FrameEntry};
use crate::source::BundleSource;
use crate::writer::{max_compressed_frame_size, MAX_FRAME_SIZE};
use crate::{Error, Result};
use crossbeam_channel::{bounded, Receiver, Sender};
use std::io::Read;
use std::ops::Range;
use std::sync::Arc;
use std::thread::JoinHandle;

/// Decoded chunks queued ahead of the consumer (each up to one frame).
const QUEUE: usize = 4;
/// Chunk size of the streaming (no seek table) path.
const STREAM_CHUNK: usize = 4 << 20;
/// Decoded bytes the parallel path may hold at once (frames being decoded,
/// queued, the one being consumed and one a hasher may still read); at
/// least 2 frames (see `tokens_for`). Compressed inputs add at most one per
/// worker plus one, so memory does not depend on the core count.
const DECODED_BUDGET: usize = 96 << 20;
/// Most decode threads, whatever the host's core count.
const MAX_WORKERS: usize = 4;

/// A read-only view of decoded bytes that another thread may keep reading
/// (hashing) after the stream moved on. `token` buffers go back to the
/// decoders when the last holder lets go (see `release`).
pub struct SharedChunk {
    pub buf: Arc<Vec<u8>>,
    pub range: Range<usize>,
    token: bool,
}

impl SharedChunk {
    pub fn bytes(&self) -> &[u8] {
        &self.buf[self.range.clone()]
    }

    /// Drops this view; the last view of a decode buffer returns it to the
    /// decoders (`Arc::into_inner` makes exactly one holder do so).
    pub fn release(self, recycle: Option<&Sender<Vec<u8>>>) {
        if let (true, Some(r)) = (self.token, recycle) {
            if let Some(v) = Arc::into_inner(self.buf) {
                let _ = r.try_send(v);
            }
        }
    }
}

type Chunk = Result<Vec<u8>>;

pub struct DecodedStream {
    /// Each item yields the next chunk, in stream order.
    order: Option<Receiver<Receiver<Chunk>>>,
    /// Shared so a hasher thread can read it while the sink copies it out.
    cur: Arc<Vec<u8>>,
    pos: usize,
    /// Consumed buffers go back to the producers. The buffers are also the
    /// tokens that bound memory: a producer needs one to decode into.
    recycle: Option<Sender<Vec<u8>>>,
    cur_is_token: bool,
    /// The first stream error, kept so later reads (and the caller, after a
    /// sink swallowed it) report the same verification error.
    failed: Option<(String, String)>,
    threads: Vec<JoinHandle<()>>,
    what: String,
}

fn damaged(what: &str, reason: impl Into<String>) -> Error {
    Error::verification(what, reason)
}

/// Maps an error from reading the compressed stream: part errors pass
/// through, a short read means truncation.
fn read_error(what: &str, e: std::io::Error, context: &str) -> Error {
    if e.kind() == std::io::ErrorKind::UnexpectedEof {
        return damaged(what, format!("stream is truncated ({context})"));
    }
    Error::from_io(what, e)
}

impl DecodedStream {
    /// An in-memory stream (used for the first frame alone).
    pub fn from_bytes(bytes: Vec<u8>, what: &str) -> Self {
        DecodedStream {
            order: None,
            cur: Arc::new(bytes),
            pos: 0,
            recycle: None,
            cur_is_token: false,
            failed: None,
            threads: Vec::new(),
            what: what.to_string(),
        }
    }

    /// Starts decoding the whole bundle.
    pub fn start(src: &BundleSource) -> Result<Self> {
        let what = format!("bundle {}", src.display());
        let table = find_seek_table(src, &what)?;
        let (order_tx, order_rx) = bounded(QUEUE);
        let tokens = match &table {
            Some((frames, _)) => {
                let largest = frames
                    .iter()
                    .map(|f| f.decompressed as usize)
                    .max()
                    .unwrap_or(1)
                    .max(1);
                tokens_for(largest)
            }
            None => 4,
        };
        let (recycle_tx, recycle_rx) = bounded::<Vec<u8>>(tokens);
        for _ in 0..tokens {
            let _ = recycle_tx.try_send(Vec::new());
        }
        let reader = src.reader()?;
        let threads = match table {
            Some((frames, table_bytes)) => spawn_parallel(
                reader,
                tokens,
                frames,
                table_bytes,
                order_tx,
                recycle_rx,
                what.clone(),
            ),
            None => vec![spawn_streaming(reader, order_tx, recycle_rx, what.clone())],
        };
        Ok(DecodedStream {
            order: Some(order_rx),
            cur: Arc::new(Vec::new()),
            pos: 0,
            recycle: Some(recycle_tx),
            cur_is_token: false,
            failed: None,
            threads,
            what,
        })
    }

    pub fn what(&self) -> &str {
        &self.what
    }

    fn fail(&mut self, e: Error) -> Error {
        if let Error::Verification { what, reason } = &e {
            self.failed
                .get_or_insert_with(|| (what.clone(), reason.clone()));
        }
        e
    }

    /// The stream error seen so far, if any.
    pub fn stream_error(&self) -> Option<Error> {
        self.failed
            .as_ref()
            .map(|(w, r)| Error::verification(w.clone(), r.clone()))
    }

    /// Makes `cur[pos..]` non-empty; false at the end of the stream.
    fn fill(&mut self) -> Result<bool> {
        if let Some(e) = self.stream_error() {
            return Err(e);
        }
        while self.pos == self.cur.len() {
            let Some(order) = &self.order else {
                return Ok(false);
            };
            let next = match order.recv() {
                Ok(rx) => rx
                    .recv()
                    .unwrap_or_else(|_| Err(damaged(&self.what, "decoder stopped unexpectedly"))),
                Err(_) => return Ok(false),
            };
            match next {
                Ok(buf) => {
                    let old = std::mem::replace(&mut self.cur, Arc::new(buf));
                    self.pos = 0;
                    let old = SharedChunk {
                        buf: old,
                        range: 0..0,
                        token: self.cur_is_token,
                    };
                    old.release(self.recycle.as_ref());
                    self.cur_is_token = true;
                }
                Err(e) => return Err(self.fail(e)),
            }
        }
        Ok(true)
    }

    /// Reads up to `buf.len()` bytes; 0 only at the end of the stream.
    pub fn read_some(&mut self, buf: &mut [u8]) -> Result<usize> {
        if buf.is_empty() || !self.fill()? {
            return Ok(0);
        }
        let n = buf.len().min(self.cur.len() - self.pos);
        buf[..n].copy_from_slice(&self.cur[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }

    /// Fills `buf` exactly; the end of the stream first is a truncation error
    /// naming `entry`.
    pub fn read_exact(&mut self, mut buf: &mut [u8], entry: &str) -> Result<()> {
        while !buf.is_empty() {
            let n = self.read_some(buf)?;
            if n == 0 {
                let e = damaged(
                    entry,
                    format!(
                        "{} is truncated: the stream ends inside this entry",
                        self.what
                    ),
                );
                return Err(self.fail(e));
            }
            buf = &mut buf[n..];
        }
        Ok(())
    }

    /// The next up to `max` bytes as a shared view (no copy); None at the end.
    pub fn shared_chunk(&mut self, max: usize) -> Result<Option<SharedChunk>> {
        if max == 0 || !self.fill()? {
            return Ok(None);
        }
        let n = max.min(self.cur.len() - self.pos);
        let chunk = SharedChunk {
            buf: Arc::clone(&self.cur),
            range: self.pos..self.pos + n,
            token: self.cur_is_token,
        };
        self.pos += n;
        Ok(Some(chunk))
    }

    /// Where released shared chunks return their buffers.
    pub fn recycler(&self) -> Option<Sender<Vec<u8>>> {
        self.recycle.clone()
    }

    /// Passes the next up to `max` bytes to `f` without copying.
    pub fn with_chunk<T>(&mut self, max: usize, f: impl FnOnce(&[u8]) -> T) -> Result<Option<T>> {
        if max == 0 || !self.fill()? {
            return Ok(None);
        }
        let n = max.min(self.cur.len() - self.pos);
        let out = f(&self.cur[self.pos..self.pos + n]);
        self.pos += n;
        Ok(Some(out))
    }

    /// True when no byte is left.
    pub fn at_end(&mut self) -> Result<bool> {
        Ok(!self.fill()?)
    }
}

impl Drop for DecodedStream {
    fn drop(&mut self) {
        // Closing the queues makes the producers stop at their next send.
        self.order = None;
        self.recycle = None;
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Said after any seek table that does not fit what the writer makes.
const NOT_FERRY: &str = "the bundle is damaged or was not written by ferry; copy it again";

/// Reads and checks the seek table at the end of the stream: None when the
/// stream has none. A table that does not match the stream is damage. Its
/// size, and every frame size in it, is checked against a cap before any
/// buffer is sized from it: the table is read before the stream is trusted.
fn find_seek_table(src: &BundleSource, what: &str) -> Result<Option<(Vec<FrameEntry>, Vec<u8>)>> {
    let len = src.len()?;
    let footer_len = seektable::FOOTER_LEN as u64;
    if len < footer_len {
        return Ok(None);
    }
    let footer = src.read_range(len - footer_len, seektable::FOOTER_LEN)?;
    let Some(table_len) = seektable::table_len(&footer) else {
        check_no_damaged_table(src, len, what)?;
        return Ok(None);
    };
    if table_len > seektable::MAX_TABLE_LEN {
        return Err(damaged(
            what,
            format!(
                "seek table claims {table_len} bytes, more than the {} bytes ({} frames) ferry reads; {NOT_FERRY}",
                seektable::MAX_TABLE_LEN,
                seektable::MAX_FRAMES
            ),
        ));
    }
    if table_len > len {
        return Err(damaged(
            what,
            "seek table is larger than the stream (damaged or truncated)",
        ));
    }
    let table = src.read_range(len - table_len, table_len as usize)?;
    let frames = seektable::decode(&table).map_err(|e| damaged(what, e))?;
    check_frame_sizes(&frames, what)?;
    let sum = frames
        .iter()
        .try_fold(table_len, |sum, f| sum.checked_add(u64::from(f.compressed)));
    if sum != Some(len) {
        return Err(damaged(
            what,
            "seek table frame sizes do not add up to the stream length (damaged or truncated)",
        ));
    }
    Ok(Some((frames, table)))
}

/// Every frame within what the writer makes (decoded and compressed buffers
/// are sized from these numbers).
fn check_frame_sizes(frames: &[FrameEntry], what: &str) -> Result<()> {
    let max_compressed = max_compressed_frame_size();
    for (index, f) in frames.iter().enumerate() {
        if f.decompressed as usize > MAX_FRAME_SIZE {
            return Err(damaged(
                what,
                format!(
                    "seek table says frame {index} decodes to {} bytes, more than the {MAX_FRAME_SIZE} bytes ferry puts in a frame; {NOT_FERRY}",
                    f.decompressed
                ),
            ));
        }
        if f.compressed as usize > max_compressed {
            return Err(damaged(
                what,
                format!(
                    "seek table says frame {index} is {} bytes compressed, more than zstd's bound of {max_compressed} bytes for a {MAX_FRAME_SIZE}-byte frame; {NOT_FERRY}",
                    f.compressed
                ),
            ));
        }
    }
    Ok(())
}

/// Without a valid footer, the stream must not end in what is plainly a
/// seek-table frame (its footer damaged), or that damage would go unseen.
fn check_no_damaged_table(src: &BundleSource, len: u64, what: &str) -> Result<()> {
    let tail_len = len.min(1 << 20);
    let tail = src.read_range(len - tail_len, tail_len as usize)?;
    let magic = seektable::SKIPPABLE_MAGIC.to_le_bytes();
    for p in 0..tail.len().saturating_sub(8) {
        if tail[p..p + 4] == magic {
            let size =
                u32::from_le_bytes([tail[p + 4], tail[p + 5], tail[p + 6], tail[p + 7]]) as usize;
            if p + 8 + size == tail.len() {
                return Err(damaged(what, "the seek table's footer is damaged"));
            }
        }
    }
    Ok(())
}

/// A reused buffer (or a new one when the pool is empty).
fn reuse(pool: &Receiver<Vec<u8>>, capacity: usize) -> Vec<u8> {
    let mut b = pool.try_recv().unwrap_or_default();
    b.clear();
    b.reserve_exact(capacity);
    b
}

/// Waits for a decode buffer (a token); None when the consumer went away.
fn token(pool: &Receiver<Vec<u8>>, capacity: usize) -> Option<Vec<u8>> {
    let mut b = pool.recv().ok()?;
    b.clear();
    b.reserve_exact(capacity);
    Some(b)
}

/// Decode buffers for frames of at most `largest` bytes: the budget's worth,
/// at least 2 (one consumed, one decoding), at most 16.
fn tokens_for(largest: usize) -> usize {
    (DECODED_BUDGET / largest.max(1)).clamp(2, 16)
}

/// Decode threads: one buffer is always the consumer's, so more workers than
/// `tokens - 1` would only wait. Each worker holds one compressed input (plus
/// one being read), so memory is at most about 2 * tokens frames.
fn workers_for(cores: usize, tokens: usize) -> usize {
    cores
        .clamp(1, MAX_WORKERS)
        .min(tokens.saturating_sub(1).max(1))
}

fn spawn_parallel(
    mut reader: Box<dyn Read + Send>,
    tokens: usize,
    frames: Vec<FrameEntry>,
    table: Vec<u8>,
    order: Sender<Receiver<Chunk>>,
    recycle: Receiver<Vec<u8>>,
    what: String,
) -> Vec<JoinHandle<()>> {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2);
    let workers = workers_for(cores, tokens);
    type Job = (usize, Vec<u8>, Vec<u8>, u32, Sender<Chunk>);
    let (job_tx, job_rx) = bounded::<Job>(0);
    // Spare compressed inputs kept for reuse: one per worker (extras are freed).
    let (spent_tx, spent_rx) = bounded::<Vec<u8>>(workers);
    let mut threads = Vec::new();
    for _ in 0..workers {
        let job_rx = job_rx.clone();
        let spent_tx = spent_tx.clone();
        let what = what.clone();
        threads.push(std::thread::spawn(move || {
            let mut dctx = match zstd::bulk::Decompressor::new() {
                Ok(d) => d,
                Err(e) => {
                    for (_, _, _, _, reply) in job_rx {
                        let _ = reply.send(Err(Error::Invalid(format!("zstd: {e}"))));
                    }
                    return;
                }
            };
            for (index, input, mut out, size, reply) in job_rx {
                let result = match dctx.decompress_to_buffer(&input[..], &mut out) {
                    Ok(n) if n == size as usize => Ok(out),
                    Ok(n) => Err(damaged(
                        &what,
                        format!("frame {index} decodes to {n} bytes, the seek table says {size}"),
                    )),
                    Err(e) => Err(damaged(&what, format!("frame {index} is damaged: {e}"))),
                };
                let _ = spent_tx.try_send(input);
                let _ = reply.send(result);
            }
        }));
    }
    drop(spent_tx);
    threads.push(std::thread::spawn(move || {
        let fail = |e: Error| {
            let (tx, rx) = bounded(1);
            let _ = tx.send(Err(e));
            let _ = order.send(rx);
        };
        for (index, f) in frames.iter().enumerate() {
            let Some(out) = token(&recycle, f.decompressed as usize) else {
                return;
            };
            let mut input = reuse(&spent_rx, f.compressed as usize);
            // Reads into the reserved capacity: no zeroing, no reallocation.
            let want = u64::from(f.compressed);
            match (&mut reader).take(want).read_to_end(&mut input) {
                Ok(n) if n as u64 == want => {}
                Ok(_) => {
                    return fail(damaged(
                        &what,
                        format!("stream is truncated (inside frame {index})"),
                    ))
                }
                Err(e) => return fail(read_error(&what, e, &format!("inside frame {index}"))),
            }
            let (tx, rx) = bounded(1);
            if job_tx
                .send((index, input, out, f.decompressed, tx))
                .is_err()
                || order.send(rx).is_err()
            {
                return; // consumer went away
            }
        }
        let mut again = vec![0u8; table.len()];
        if let Err(e) = reader.read_exact(&mut again) {
            return fail(read_error(&what, e, "inside the seek table"));
        }
        if again != table {
            return fail(damaged(&what, "seek table changed while reading"));
        }
        let mut probe = [0u8; 1];
        match reader.read(&mut probe) {
            Ok(0) => {}
            Ok(_) => fail(damaged(&what, "data after the seek table")),
            Err(e) => fail(read_error(&what, e, "at the end")),
        }
    }));
    threads
}

fn spawn_streaming(
    reader: Box<dyn Read + Send>,
    order: Sender<Receiver<Chunk>>,
    recycle: Receiver<Vec<u8>>,
    what: String,
) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let send = |c: Chunk| {
            let (tx, rx) = bounded(1);
            let _ = tx.send(c);
            order.send(rx).is_ok()
        };
        let mut dec = match zstd::stream::read::Decoder::with_buffer(
            std::io::BufReader::with_capacity(1 << 20, reader),
        ) {
            Ok(d) => d,
            Err(e) => {
                send(Err(Error::Invalid(format!("zstd: {e}"))));
                return;
            }
        };
        loop {
            let Some(mut buf) = token(&recycle, STREAM_CHUNK) else {
                return;
            };
            buf.resize(STREAM_CHUNK, 0);
            let mut filled = 0;
            while filled < STREAM_CHUNK {
                match dec.read(&mut buf[filled..]) {
                    Ok(0) => break,
                    Ok(n) => filled += n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        let e = if e.get_ref().is_some_and(|i| i.is::<Error>()) {
                            Error::from_io(&what, e)
                        } else {
                            damaged(&what, format!("zstd stream is damaged or truncated: {e}"))
                        };
                        send(Err(e));
                        return;
                    }
                }
            }
            buf.truncate(filled);
            if filled == 0 || !send(Ok(buf)) {
                return;
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_memory_does_not_grow_with_cores() {
        for frame in [64 << 10, 1 << 20, 8 << 20, 32 << 20] {
            let tokens = tokens_for(frame);
            for cores in [1, 2, 8, 64, 256] {
                let workers = workers_for(cores, tokens);
                assert!((1..=MAX_WORKERS).contains(&workers));
                // decoded buffers + compressed inputs (at most one frame each)
                let bytes = (tokens + workers + 1) * frame;
                assert!(bytes <= 200 << 20, "{frame} {cores}: {bytes}");
            }
        }
        assert_eq!(workers_for(2, tokens_for(32 << 20)), 2);
        assert_eq!(workers_for(64, tokens_for(1 << 20)), MAX_WORKERS);
    }
}
