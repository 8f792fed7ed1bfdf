//! Errors of `ferry plan`. Every one names the file (and line) or host at fault.

use std::fmt;
use std::path::PathBuf;

/// A place in an input file, shown as `file:line`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub file: PathBuf,
    /// 1-based; 0 when the value is a built-in default.
    pub line: usize,
}

impl Origin {
    pub fn new(file: impl Into<PathBuf>, line: usize) -> Self {
        Origin {
            file: file.into(),
            line,
        }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{} (default)", self.file.display())
        } else {
            write!(f, "{}:{}", self.file.display(), self.line)
        }
    }
}

/// One problem found in the inventory or config.yml.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub origin: Origin,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.origin, self.message)
    }
}

/// All problems found, one per line.
#[derive(Debug, Clone)]
pub struct Problems(pub Vec<Problem>);

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The inventory or config.yml is invalid; each problem names file:line.
    #[error("the inventory or config is invalid:\n{0}")]
    Invalid(Problems),
    #[error("certificate {name}: {reason}")]
    Pki { name: String, reason: String },
    #[error("rendering template {template}: {reason}")]
    Template { template: String, reason: String },
    /// A rendered file references something the bundle does not carry.
    #[error("closure check failed (the bundle does not carry what these files need; rebuild the bundle with them or change the config):\n{}", .0.join("\n"))]
    Closure(Vec<String>),
    /// An addon object whose kind is neither built in nor defined by an earlier CRD.
    #[error("kind check failed (every addon object must be a kind built into the bundle's Kubernetes or defined by a CRD applied earlier in the same install):\n{}", .0.join("\n"))]
    Kinds(Vec<String>),
    #[error("bundle {bundle}: {reason}")]
    Bundle { bundle: String, reason: String },
    /// An addon could not be rendered from the bundle's release artifact.
    #[error("addon {addon}: {reason}")]
    Addon { addon: String, reason: String },
}

impl PlanError {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        PlanError::Io {
            path: path.into(),
            source,
        }
    }

    pub fn invalid(origin: Origin, message: impl Into<String>) -> Self {
        PlanError::Invalid(Problems(vec![Problem {
            origin,
            message: message.into(),
        }]))
    }
}

pub type Result<T, E = PlanError> = std::result::Result<T, E>;
