use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The bundle is damaged, unsigned, signed by an untrusted key, or breaks
    /// an entry rule. `what` names the entry, part or file; `reason` says why.
    #[error("verification failed: {what}: {reason}")]
    Verification { what: String, reason: String },
    #[error("{0}")]
    Invalid(String),
}

impl Error {
    /// True when the error means the bundle failed verification (exit code 3).
    pub fn is_verification(&self) -> bool {
        matches!(self, Error::Verification { .. })
    }

    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    pub fn verification(what: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Verification {
            what: what.into(),
            reason: reason.into(),
        }
    }
}

impl Error {
    /// Wraps this error in an io::Error so it can travel through `Read`.
    pub(crate) fn into_io(self) -> std::io::Error {
        std::io::Error::new(std::io::ErrorKind::InvalidData, self)
    }

    /// Unwraps an error made by `into_io`, or names `path` for a plain io::Error.
    pub(crate) fn from_io(path: impl Into<PathBuf>, e: std::io::Error) -> Self {
        if e.get_ref().is_some_and(|inner| inner.is::<Error>()) {
            if let Some(inner) = e.into_inner() {
                if let Ok(ours) = inner.downcast::<Error>() {
                    return *ours;
                }
            }
            unreachable!("checked above")
        }
        Error::io(path, e)
    }
}
