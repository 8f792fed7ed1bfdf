//! Per-host log: every command with its exit code and output, every upload
//! with its path and hash (never its content), every step's start and end.

use super::CmdOutput;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

pub struct HostLog {
    path: PathBuf,
    file: Mutex<Option<std::fs::File>>,
}

impl HostLog {
    /// Appends to `path` (creating its directory); logging problems never stop a deploy.
    pub fn open(path: &Path) -> HostLog {
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .ok();
        HostLog {
            path: path.to_path_buf(),
            file: Mutex::new(file),
        }
    }

    /// A log that writes nowhere (for one-off checks).
    pub fn discard() -> HostLog {
        HostLog {
            path: PathBuf::new(),
            file: Mutex::new(None),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn line(&self, text: &str) {
        let stamp = time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        if let Ok(mut guard) = self.file.lock() {
            if let Some(f) = guard.as_mut() {
                let _ = writeln!(f, "{stamp} {text}");
            }
        }
    }

    pub fn command(&self, script: &str, out: &CmdOutput) {
        let mut text = format!("$ {script}\n  exit {}", out.code);
        for (name, s) in [("stdout", &out.stdout), ("stderr", &out.stderr)] {
            let s = s.trim_end();
            if !s.is_empty() {
                text.push_str(&format!("\n  {name}:"));
                for l in s.lines().take(200) {
                    text.push_str("\n    ");
                    text.push_str(l);
                }
            }
        }
        self.line(&text);
    }
}
