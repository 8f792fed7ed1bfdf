//! Every template writes its values escaped for its output format, so that a
//! value holding a quote, newline, `$`, `%`, backslash or space can neither
//! close a string nor add a key, line, flag or argument:
//!
//! - lint.rs reads every template and checks each `{{ ... }}` ends in the
//!   filter of its format (or is a typed number, allow-listed with why);
//! - data.rs renders the YAML and TOML templates with hostile strings and
//!   parses them back with the real parsers (serde_norway, toml);
//! - units.rs renders the systemd units with hostile strings, splits their
//!   command lines by systemd's rules and has systemd-analyze verify them.

#[path = "../common/mod.rs"]
mod common;
mod data;
mod lint;
mod units;
mod words;

use ferry_installer::plan::render::Renderer;

/// The renderer of the plan, with the guide fixture's bundle behind `image()`.
pub fn renderer() -> Renderer {
    Renderer::new(&common::bundle()).expect("renderer")
}

/// A string with every character that could end a value early: YAML 1.1
/// line breaks (U+2028, NEL), quotes, a newline starting a shell
/// substitution, a systemd specifier, a backslash, a TOML table header and a
/// YAML key.
pub const HOSTILE: &str =
    "\u{2028}\u{85}q\"'x $(touch /tmp/x) %n ${HOME} \\ \"]\n[x]\nkey: v\n- --flag";

/// The same without control characters, for values that must stay on one
/// line (comments, unit arguments): quotes, `$`, `%`, a space, a backslash.
pub const HOSTILE_LINE: &str = "q\"'x $(touch /tmp/x) %n ${HOME} \\ \"] [x] = 1 # --flag";
