//! Parallel, ordered zstd frame compression: each submitted buffer becomes
//! one independent frame (content size and checksum in the header), written
//! in submission order, so output does not depend on timing or thread count.
//!
//! Memory is bounded whatever the core count or bundle size: at most
//! `in_flight` frames are queued or compressing, each with one input and one
//! output buffer, plus the one input the caller is filling. Buffers come back
//! to a small pool when their frame is written, so steady state allocates
//! nothing (fresh 32 MiB buffers would each be page-faulted in again).

use crate::seektable::FrameEntry;
use crate::{Error, Result};
use crossbeam_channel::{bounded, Receiver, Sender};
use std::collections::VecDeque;
use std::io::Write;
use std::thread::JoinHandle;

/// Most compression threads, whatever the host's core count.
pub const MAX_THREADS: usize = 4;
/// Bytes of frame buffers (inputs and outputs) the compressor may hold.
const BUFFER_BUDGET: usize = 160 << 20;

/// (frame, input buffer back for reuse, output buffer back on error).
type Done = std::result::Result<(Vec<u8>, Vec<u8>), (std::io::Error, Vec<u8>, Vec<u8>)>;
type Job = (Vec<u8>, Vec<u8>, Sender<Done>);

pub struct FrameCompressor<W: Write> {
    pending: VecDeque<(usize, Receiver<Done>)>,
    pool: Pool,
    in_flight: usize,
    out: W,
    what: String,
    frames: Vec<FrameEntry>,
    spare_in: Vec<Vec<u8>>,
    spare_out: Vec<Vec<u8>>,
    /// Buffers ever allocated (inputs, outputs): the pool's bound, for tests.
    allocated: (usize, usize),
}

/// Worker threads for a host with `cores` cores.
pub fn threads_for(cores: usize) -> usize {
    cores.clamp(1, MAX_THREADS)
}

/// Frames allowed in flight: enough to keep `threads` busy, but never more
/// than the buffer budget allows for `frame_size` (at least one).
pub fn in_flight_for(threads: usize, frame_size: usize) -> usize {
    let frame_size = frame_size.max(1);
    // in_flight inputs + in_flight outputs + the one being filled.
    let by_budget = (BUFFER_BUDGET / frame_size).saturating_sub(1) / 2;
    by_budget.clamp(1, threads.max(1) + 1)
}

fn compress_one(
    cctx: &mut zstd::bulk::Compressor<'static>,
    input: &[u8],
    out: &mut Vec<u8>,
) -> std::io::Result<()> {
    out.clear();
    out.reserve(zstd::zstd_safe::compress_bound(input.len()));
    cctx.compress_to_buffer(input, out)?;
    Ok(())
}

impl<W: Write> FrameCompressor<W> {
    /// `threads` is clamped to 1..=MAX_THREADS; `frame_size` (the largest
    /// buffer the caller submits) sets how many frames may be in flight.
    /// `what` names the output in errors.
    pub fn new(out: W, level: i32, threads: usize, frame_size: usize, what: &str) -> Result<Self> {
        let threads = threads_for(threads);
        let in_flight = in_flight_for(threads, frame_size);
        // Jobs wait in `pending`'s replies, not in this queue: submit blocks
        // before more than `in_flight` exist.
        let (tx, rx) = bounded::<Job>(in_flight);
        let mut workers = Vec::new();
        for _ in 0..threads.min(in_flight) {
            let rx = rx.clone();
            let mut cctx = zstd::bulk::Compressor::new(level)
                .map_err(|e| Error::Invalid(format!("zstd level {level}: {e}")))?;
            cctx.include_checksum(true)
                .map_err(|e| Error::Invalid(format!("zstd: {e}")))?;
            cctx.include_contentsize(true)
                .map_err(|e| Error::Invalid(format!("zstd: {e}")))?;
            workers.push(std::thread::spawn(move || {
                for (input, mut out, reply) in rx {
                    let done = match compress_one(&mut cctx, &input, &mut out) {
                        Ok(()) => Ok((out, input)),
                        Err(e) => Err((e, input, out)),
                    };
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
            spare_in: Vec::new(),
            spare_out: Vec::new(),
            allocated: (0, 0),
        })
    }

    /// An empty buffer to fill (reused from written frames when possible).
    /// Call it after submitting the previous buffer, so the pool stays at
    /// `in_flight + 1` inputs.
    pub fn buffer(&mut self, capacity: usize) -> Vec<u8> {
        let mut b = match self.spare_in.pop() {
            Some(b) => b,
            None => {
                self.allocated.0 += 1;
                Vec::new()
            }
        };
        b.clear();
        b.reserve(capacity);
        b
    }

    /// Queues `data` as the next frame; blocks while `in_flight` frames are pending.
    pub fn submit(&mut self, data: Vec<u8>) -> Result<()> {
        while self.pending.len() >= self.in_flight {
            self.write_oldest()?;
        }
        let out = match self.spare_out.pop() {
            Some(b) => b,
            None => {
                self.allocated.1 += 1;
                Vec::new()
            }
        };
        let (reply_tx, reply_rx) = bounded(1);
        let len = data.len();
        let jobs = self
            .pool
            .jobs
            .as_ref()
            .ok_or_else(|| Error::Invalid("compressor already finished".into()))?;
        jobs.send((data, out, reply_tx))
            .map_err(|_| Error::Invalid("zstd worker stopped".into()))?;
        self.pending.push_back((len, reply_rx));
        Ok(())
    }

    fn write_oldest(&mut self) -> Result<()> {
        let Some((len, rx)) = self.pending.pop_front() else {
            return Ok(());
        };
        let (frame, input) = match rx
            .recv()
            .map_err(|_| Error::Invalid("zstd worker stopped".into()))?
        {
            Ok(done) => done,
            Err((e, _, _)) => {
                return Err(Error::Invalid(format!(
                    "{}: zstd compression failed: {e}",
                    self.what
                )))
            }
        };
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
        self.spare_in.push(input);
        self.spare_out.push(frame);
        Ok(())
    }

    /// Input and output buffers allocated so far (never freed and
    /// reallocated: they cycle through the pool).
    pub fn allocated_buffers(&self) -> (usize, usize) {
        self.allocated
    }

    /// Frames that may be queued or compressing at once.
    pub fn in_flight(&self) -> usize {
        self.in_flight
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threads_and_frames_in_flight_are_capped_by_cores_and_budget() {
        assert_eq!(threads_for(64), MAX_THREADS);
        assert_eq!(threads_for(0), 1);
        for cores in [1, 2, 4, 16, 128] {
            for frame in [64 << 10, 1 << 20, 8 << 20, 16 << 20, 32 << 20] {
                let n = in_flight_for(threads_for(cores), frame);
                assert!(
                    n >= 1 && n <= threads_for(cores) + 1,
                    "{cores} {frame}: {n}"
                );
                assert!((2 * n + 1) * frame <= BUFFER_BUDGET, "{cores} {frame}: {n}");
            }
        }
        // Small frames keep every thread busy.
        assert_eq!(in_flight_for(4, 1 << 20), 5);
    }

    /// Many frames, fed the way the writer feeds them: the buffer pool never
    /// grows past its bound, and the output is the same for any thread count.
    #[test]
    fn buffer_pool_is_bounded_and_output_does_not_depend_on_threads() {
        let frame = 64 << 10;
        let data: Vec<u8> = (0..(300 * frame + 1234) as u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8 & 0x3f)
            .collect();
        let mut outputs = Vec::new();
        for threads in [1, 2, 4, 16] {
            let mut comp = FrameCompressor::new(Vec::new(), 3, threads, frame, "test").unwrap();
            let mut buf = comp.buffer(frame);
            for piece in data.chunks(frame) {
                buf.extend_from_slice(piece);
                comp.submit(std::mem::take(&mut buf)).unwrap();
                buf = comp.buffer(frame);
            }
            let (ins, outs) = comp.allocated_buffers();
            let limit = comp.in_flight();
            assert!(
                ins <= limit + 1,
                "{threads} threads: {ins} input buffers > {limit} + 1"
            );
            assert!(
                outs <= limit,
                "{threads} threads: {outs} output buffers > {limit}"
            );
            let (out, frames) = comp.finish().unwrap();
            assert_eq!(frames.len(), data.len().div_ceil(frame));
            outputs.push(out);
        }
        assert!(outputs.windows(2).all(|w| w[0] == w[1]));
        let back = zstd::stream::decode_all(&outputs[0][..]).unwrap();
        assert!(back == data, "round trip differs");
    }
}
