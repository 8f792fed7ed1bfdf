//! Progress: indicatif bars on a TTY, plain lines on stderr otherwise.

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;

#[derive(Clone)]
pub struct Progress {
    multi: Option<MultiProgress>,
}

impl Progress {
    /// Bars when stderr is a terminal (and `quiet_bars` is false).
    pub fn new(quiet_bars: bool) -> Progress {
        let tty = std::io::stderr().is_terminal() && !quiet_bars;
        Progress {
            multi: tty.then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr())),
        }
    }

    /// A line that stays (above the bars on a TTY).
    pub fn line(&self, msg: impl AsRef<str>) {
        match &self.multi {
            Some(m) => {
                let _ = m.println(msg.as_ref());
            }
            None => eprintln!("{}", msg.as_ref()),
        }
    }

    /// A download of `total` bytes (when known).
    pub fn task(&self, label: &str, total: Option<u64>) -> Task {
        let bar = self.multi.as_ref().map(|m| {
            let bar = m.add(ProgressBar::new(total.unwrap_or(0)));
            let style = ProgressStyle::with_template(
                "{spinner} {msg:40!} {bytes:>10}/{total_bytes:<10} {bytes_per_sec:>12}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar());
            bar.set_style(style);
            bar.set_message(label.to_string());
            bar
        });
        Task { bar }
    }
}

pub struct Task {
    bar: Option<ProgressBar>,
}

impl Task {
    pub fn inc(&self, n: u64) {
        if let Some(b) = &self.bar {
            b.inc(n);
        }
    }
}

impl Drop for Task {
    fn drop(&mut self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}
