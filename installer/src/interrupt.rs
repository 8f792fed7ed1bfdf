//! An interrupted run (SIGINT, SIGTERM or SIGHUP) removes the work areas it
//! was filling before it exits, so Ctrl-C never leaves a half-unpacked
//! bundle behind. The handler is installed by the first registration: long
//! running commands that never register (`ferry registry serve`) keep their
//! own signal handling.
//!
//! On a signal, work that checks [`requested`] stops and its guards remove
//! their work areas; the handler waits for that (a bounded time), removes
//! whatever is still registered and exits with 128 + the signal.

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// What to do with a registered path on an interrupt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Removal {
    /// Remove the directory and everything in it.
    Tree,
    /// Remove the directory only if it is empty.
    IfEmpty,
}

static REGISTERED: Mutex<BTreeMap<PathBuf, Removal>> = Mutex::new(BTreeMap::new());
static HANDLER: OnceLock<()> = OnceLock::new();
/// The signal received, 0 before any.
static SIGNAL: AtomicI32 = AtomicI32::new(0);
/// How long the handler lets running work stop and clean up after itself.
const GRACE: Duration = Duration::from_secs(10);

/// Whether an interrupt arrived: work stops at its next check.
pub fn requested() -> bool {
    SIGNAL.load(Ordering::SeqCst) != 0
}

/// Keeps a path registered until dropped.
#[must_use = "the path is unregistered when this is dropped"]
pub struct OnInterrupt {
    path: PathBuf,
}

impl Drop for OnInterrupt {
    fn drop(&mut self) {
        if let Ok(mut r) = REGISTERED.lock() {
            r.remove(&self.path);
        }
    }
}

/// Remove `path` as `removal` says if the process is interrupted before the
/// returned guard is dropped.
pub fn remove_on_interrupt(path: &Path, removal: Removal) -> OnInterrupt {
    HANDLER.get_or_init(spawn_handler);
    if let Ok(mut r) = REGISTERED.lock() {
        r.insert(path.to_owned(), removal);
    }
    OnInterrupt {
        path: path.to_owned(),
    }
}

fn spawn_handler() {
    let mut signals = match signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP]) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!("cannot watch for interrupts ({e}); an interrupted unpack leaves its staging directory for the next one to sweep");
            return;
        }
    };
    std::thread::spawn(move || {
        if let Some(signal) = signals.forever().next() {
            SIGNAL.store(signal, Ordering::SeqCst);
            let working = !nothing_registered();
            let started = Instant::now();
            while !nothing_registered() && started.elapsed() < GRACE {
                std::thread::sleep(Duration::from_millis(20));
            }
            remove_registered();
            match working {
                true => eprintln!(
                    "interrupted: the unfinished unpack was removed; nothing was moved into place"
                ),
                false => eprintln!("interrupted"),
            }
            std::process::exit(128 + signal);
        }
    });
}

fn nothing_registered() -> bool {
    REGISTERED.lock().map(|r| r.is_empty()).unwrap_or(true)
}

/// Called where a run ends with an error: after an interrupt the error is
/// the interrupt's doing, and the handler (cleaning up) ends the process.
pub fn wait_if_requested() {
    while requested() {
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Removes every registered path, trees first (deepest paths first), and
/// returns how many trees were removed.
fn remove_registered() -> usize {
    let paths: Vec<(PathBuf, Removal)> = match REGISTERED.lock() {
        Ok(r) => r.iter().rev().map(|(p, k)| (p.clone(), *k)).collect(),
        Err(_) => return 0,
    };
    let mut removed = 0;
    for (path, removal) in &paths {
        if *removal == Removal::Tree && std::fs::remove_dir_all(path).is_ok() {
            removed += 1;
        }
    }
    for (path, removal) in &paths {
        if *removal == Removal::IfEmpty {
            let _ = std::fs::remove_dir(path);
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registered_trees_are_removed_and_nonempty_dirs_kept() {
        let dir = tempfile::tempdir().unwrap();
        let keep = dir.path().join("data");
        let tree = keep.join("staging/unpack-1");
        std::fs::create_dir_all(tree.join("blobs")).unwrap();
        std::fs::write(keep.join("other"), "x").unwrap();
        let _a = remove_on_interrupt(&tree, Removal::Tree);
        let _b = remove_on_interrupt(&keep, Removal::IfEmpty);
        let dropped = remove_on_interrupt(&dir.path().join("gone"), Removal::Tree);
        drop(dropped);
        assert!(remove_registered() >= 1);
        assert!(!tree.exists());
        assert!(
            keep.join("other").exists(),
            "a data dir with content is kept"
        );
    }
}
