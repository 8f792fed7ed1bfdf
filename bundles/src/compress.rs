//! Parallel, ordered zstd frame compression: each submitted buffer becomes
//! one independent frame (content size and checksum in the header), written
//! in submission order. At most `in_flight` frames exist at once, so memory
//! stays near `in_flight * frame_size`, and output does not depend on timing.

use crate::seektable::FrameEntry;
use crate::{Error, Result};
use crossbeam_channel::{bounded, Receiver, Sender};
use std::collections::VecDeque;
use std::io::Write;
use std::thread::JoinHandle;

type Done = std::io::Result<(Vec<u8>, Vec<u8>)>; // (frame, input buffer back for reuse)
type Job = (Vec<u8>, Sender<Done>);

pub struct FrameCompressor<W: Write> {
    pending: VecDeque<(usize, Receiver<Done>)>,
    pool: Pool,
    in_flight: usize,
    out: W,
    what: String,
    frames: Vec<FrameEntry>,
    spare: Vec<Vec<u8>>,
}

fn compress_one(
    cctx: &mut zstd::bulk::Compressor<'static>,
    input: &[u8],
) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(zstd::zstd_safe::compress_bound(input.len()));
    cctx.compress_to_buffer(input, &mut out)?;
    Ok(out)
}

impl<W: Write> FrameCompressor<W> {
    /// `what` names the output in errors.
    pub fn new(out: W, level: i32, threads: usize, what: &str) -> Result<Self> {
        let threads = threads.max(1);
        let in_flight = threads + 1;
        let (tx, rx) = bounded::<Job>(in_flight);
        let mut workers = Vec::new();
        for _ in 0..threads {
            let rx = rx.clone();
            let mut cctx = zstd::bulk::Compressor::new(level)
                .map_err(|e| Error::Invalid(format!("zstd level {level}: {e}")))?;
            cctx.include_checksum(true)
                .map_err(|e| Error::Invalid(format!("zstd: {e}")))?;
            cctx.include_contentsize(true)
                .map_err(|e| Error::Invalid(format!("zstd: {e}")))?;
            workers.push(std::thread::spawn(move || {
                for (input, reply) in rx {
                    let done = compress_one(&mut cctx, &input).map(|frame| (frame, input));
                    let _ = reply.send(done);
                }
            }));
        }
        Ok(FrameCompressor {
            pending: VecDeque::new(),
            pool: Pool {
                jobs: Some(tx),
                workers,
            },
            in_flight,
            out,
            what: what.to_string(),
            frames: Vec::new(),
            spare: Vec::new(),
        })
    }

    /// An empty buffer to fill (reused from finished frames when possible).
    pub fn buffer(&mut self, capacity: usize) -> Vec<u8> {
        let mut b = self.spare.pop().unwrap_or_default();
        b.clear();
        b.reserve(capacity);
        b
    }

    /// Queues `data` as the next frame; blocks while `in_flight` frames are pending.
    pub fn submit(&mut self, data: Vec<u8>) -> Result<()> {
        while self.pending.len() >= self.in_flight {
            self.write_oldest()?;
        }
        let (reply_tx, reply_rx) = bounded(1);
        let len = data.len();
        let jobs = self
            .pool
            .jobs
            .as_ref()
            .ok_or_else(|| Error::Invalid("compressor already finished".into()))?;
        jobs.send((data, reply_tx))
            .map_err(|_| Error::Invalid("zstd worker stopped".into()))?;
        self.pending.push_back((len, reply_rx));
        Ok(())
    }

    fn write_oldest(&mut self) -> Result<()> {
        let Some((len, rx)) = self.pending.pop_front() else {
            return Ok(());
        };
        let (frame, input) = rx
            .recv()
            .map_err(|_| Error::Invalid("zstd worker stopped".into()))?
            .map_err(|e| Error::Invalid(format!("{}: zstd compression failed: {e}", self.what)))?;
        self.out
            .write_all(&frame)
            .map_err(|e| Error::from_io(&self.what, e))?;
        let too_big = || {
            Error::Invalid(format!(
                "{}: frame larger than 4 GiB; use a smaller frame size",
                self.what
            ))
        };
        self.frames.push(FrameEntry {
            compressed: u32::try_from(frame.len()).map_err(|_| too_big())?,
            decompressed: u32::try_from(len).map_err(|_| too_big())?,
        });
        if self.spare.len() < self.in_flight {
            self.spare.push(input);
        }
        Ok(())
    }

    /// Writes every pending frame; returns the output and the frame sizes.
    pub fn finish(mut self) -> Result<(W, Vec<FrameEntry>)> {
        while !self.pending.is_empty() {
            self.write_oldest()?;
        }
        Ok((self.out, self.frames))
    }
}

/// The worker threads; dropping closes the queue and joins them.
struct Pool {
    jobs: Option<Sender<Job>>,
    workers: Vec<JoinHandle<()>>,
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.jobs = None;
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}
