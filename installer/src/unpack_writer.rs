//! A file-writing thread for unpack. The bundle reader hashes on the calling
//! thread; moving the write syscalls (the kernel's copy into the page cache)
//! to their own thread lets hashing and writing overlap. Memory is bounded by
//! a fixed pool of buffers that circulate between the two threads.

use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::thread::JoinHandle;

/// Size of each buffer, and how many circulate (8 x 1 MiB in flight at most).
const BUF_SIZE: usize = 1 << 20;
const BUFFERS: usize = 8;

enum Op {
    Create { path: PathBuf, mode: u32 },
    Data(Vec<u8>),
    Close,
}

pub struct FileWriter {
    ops: Option<SyncSender<Op>>,
    pool: Receiver<Vec<u8>>,
    /// A buffer that came back empty at the end of a file (never sent).
    spare: Option<Vec<u8>>,
    thread: Option<JoinHandle<ferry_bundles::Result<()>>>,
}

impl FileWriter {
    pub fn start() -> FileWriter {
        let (ops_tx, ops_rx) = sync_channel::<Op>(BUFFERS + 2);
        let (pool_tx, pool_rx) = sync_channel::<Vec<u8>>(BUFFERS);
        for _ in 0..BUFFERS {
            // Cannot fail: the channel has room for every buffer.
            let _ = pool_tx.send(vec![0u8; BUF_SIZE]);
        }
        let thread = std::thread::Builder::new()
            .name("unpack-writer".into())
            .spawn(move || write_loop(ops_rx, pool_tx))
            .ok();
        FileWriter {
            ops: Some(ops_tx),
            pool: pool_rx,
            spare: None,
            thread,
        }
    }

    /// Streams `content` into a new file at `path` with `mode`.
    pub fn copy(
        &mut self,
        content: &mut dyn Read,
        path: &Path,
        mode: u32,
    ) -> ferry_bundles::Result<()> {
        self.send(Op::Create {
            path: path.to_owned(),
            mode,
        })?;
        loop {
            let mut buf = match self.spare.take() {
                Some(b) => b,
                None => match self.pool.recv() {
                    Ok(b) => b,
                    Err(_) => return Err(self.failure()),
                },
            };
            buf.resize(BUF_SIZE, 0);
            let n = read_full(content, &mut buf).map_err(|e| ferry_bundles::Error::io(path, e))?;
            if n == 0 {
                self.spare = Some(buf);
                break;
            }
            buf.truncate(n);
            self.send(Op::Data(buf))?;
        }
        self.send(Op::Close)
    }

    /// Waits for every write to finish; the first write error, if any.
    pub fn finish(mut self) -> ferry_bundles::Result<()> {
        self.ops.take();
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(result)) => result,
            Some(Err(_)) => Err(ferry_bundles::Error::Invalid(
                "the unpack writer thread panicked".into(),
            )),
            None => Err(ferry_bundles::Error::Invalid(
                "could not start the unpack writer thread".into(),
            )),
        }
    }

    fn send(&mut self, op: Op) -> ferry_bundles::Result<()> {
        let sent = self
            .ops
            .as_ref()
            .map(|tx| tx.send(op).is_ok())
            .unwrap_or(false);
        if sent {
            Ok(())
        } else {
            Err(self.failure())
        }
    }

    /// The writer stopped early: collect its error.
    fn failure(&mut self) -> ferry_bundles::Error {
        self.ops.take();
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(Err(e))) => e,
            _ => ferry_bundles::Error::Invalid("the unpack writer thread stopped".into()),
        }
    }
}

fn write_loop(ops: Receiver<Op>, pool: SyncSender<Vec<u8>>) -> ferry_bundles::Result<()> {
    let mut current: Option<(std::fs::File, PathBuf, u32)> = None;
    for op in ops {
        match op {
            Op::Create { path, mode } => {
                let file = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(mode & 0o777)
                    .open(&path)
                    .map_err(|e| ferry_bundles::Error::io(&path, e))?;
                current = Some((file, path, mode));
            }
            Op::Data(buf) => {
                if let Some((file, path, _)) = current.as_mut() {
                    file.write_all(&buf)
                        .map_err(|e| ferry_bundles::Error::io(&*path, e))?;
                }
                let _ = pool.send(buf);
            }
            Op::Close => {
                if let Some((file, path, mode)) = current.take() {
                    // Exact mode, whatever the umask.
                    file.set_permissions(std::fs::Permissions::from_mode(mode & 0o7777))
                        .map_err(|e| ferry_bundles::Error::io(&path, e))?;
                }
            }
        }
    }
    Ok(())
}

/// Fills `buf` as far as the stream allows (fewer, larger writes).
pub fn read_full(content: &mut dyn Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match content.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}
