/// Everything the rpm functions can reject; each message names what to fix.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RpmError {
    /// Metadata that is not the XML it should be.
    #[error("{file}: {reason}")]
    Xml { file: &'static str, reason: String },
    /// A digest of a type other than sha256.
    #[error("{file}: {what} uses checksum type {kind:?}; only sha256 is accepted")]
    ChecksumType {
        file: &'static str,
        what: String,
        kind: String,
    },
    /// A name in the wanted or base list that no package of the allowed arches has.
    #[error("{list} package {name:?} is in no repository package of the allowed arches")]
    UnknownPackage { list: &'static str, name: String },
    /// No package of the allowed arches provides what a package requires.
    #[error("{package} requires {requires}, which nothing provides")]
    Unsatisfied { package: String, requires: String },
    /// A rich dependency with an operator the resolver does not implement.
    #[error("{package} requires {dependency}: {reason}")]
    RichDependency {
        package: String,
        dependency: String,
        reason: String,
    },
    /// Several requires pin one name and no version of it satisfies them all.
    #[error("no version of {name} satisfies all of: {}", constraints.join("; "))]
    NoVersion {
        name: String,
        constraints: Vec<String>,
    },
    /// The packages given to the index writer cannot form one repository.
    #[error("index: {0}")]
    Index(String),
}
