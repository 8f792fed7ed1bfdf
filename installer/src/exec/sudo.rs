//! `ansible_become`: a non-root SSH user runs every command as root through
//! passwordless sudo (ferry carries no passwords).

use super::{sh_quote, ExecError};

/// `script` as root: `sudo -n -- sh -c '<script>'`. `-n`: sudo fails at
/// once instead of waiting for a password; stdin passes through to `sh`.
pub(super) fn as_root(script: &str) -> String {
    format!("sudo -n -- sh -c {}", sh_quote(script))
}

/// Whether a command's stderr is sudo refusing it for want of a password.
pub(super) fn wants_password(stderr: &str) -> bool {
    stderr.lines().any(|l| {
        l.starts_with("sudo: a password is required")
            || l.starts_with("sudo: a terminal is required")
    })
}

/// The error for a sudo that cannot run commands for `user` on `host`.
pub(super) fn refused(host: &str, user: &str, code: i32, stderr: &str) -> ExecError {
    let said = stderr.trim().replace('\n', "; ");
    let problem = if code == 127 {
        format!("ansible_become is set but sudo is not installed ({said}); install sudo there or connect as root")
    } else {
        format!(
            "passwordless sudo (NOPASSWD) is required for {user} (ansible_become; ferry carries no passwords): sudo said: {said}. \
             Allow it, e.g. `{user} ALL=(ALL) NOPASSWD: ALL` in /etc/sudoers.d/, or connect as root"
        )
    };
    ExecError::Sudo {
        host: host.to_string(),
        problem,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The wrapped script reaches `sh -c` unchanged, quotes and all.
    #[test]
    fn the_script_survives_the_wrapping() {
        let script = "set -e; echo 'it'\"'\"'s' \"$HOME\" $(printf x)\ncat <<'EOF'\n$x\nEOF";
        let wrapped = as_root(script);
        let quoted = wrapped
            .strip_prefix("sudo -n -- sh -c ")
            .expect("sudo -n -- sh -c prefix");
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("printf %s {quoted}"))
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), script);
    }

    #[test]
    fn a_password_prompt_is_told_from_a_failing_script() {
        assert!(wants_password("sudo: a password is required\n"));
        assert!(!wants_password("grep: sudo: a password is required\n"));
        let err = refused("h3", "deploy", 1, "sudo: a password is required\n").to_string();
        assert!(
            err.starts_with("h3: ")
                && err.contains("passwordless sudo (NOPASSWD) is required for deploy"),
            "{err}"
        );
        let err = refused("h3", "deploy", 127, "sh: 1: sudo: not found").to_string();
        assert!(err.contains("sudo is not installed"), "{err}");
    }
}
