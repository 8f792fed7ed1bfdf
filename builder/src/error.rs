use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A catalog or profile file is malformed or refers to something unknown.
    #[error("{file}: {key}: {reason}")]
    Data {
        file: String,
        key: String,
        reason: String,
    },
    #[error("{0}")]
    Usage(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("download {url}: {reason}")]
    Http { url: String, reason: String },
    #[error("checksum file {url}: {reason}")]
    ChecksumFile { url: String, reason: String },
    /// The bytes of an upstream file do not match the digest they must have.
    #[error(
        "{file}: sha256 mismatch for {url}: expected {expected} (from {expected_from}), got {actual}; \
         the upstream or mirror serves a different file: check the mirror, then remove the pin or fix the catalog only if the new digest is trusted"
    )]
    Digest {
        file: String,
        url: String,
        expected: String,
        expected_from: String,
        actual: String,
    },
    #[error(
        "{file}: pinned sha256 {pinned} in catalog {catalog} disagrees with {checksum_url}, \
         which lists {listed}; fix the pin only from a source you trust"
    )]
    PinMismatch {
        /// `<file name> (<upstream URL>)`.
        file: String,
        catalog: String,
        pinned: String,
        checksum_url: String,
        listed: String,
    },
    /// The checksum source lists the file but without a digest (GitHub
    /// computes none for some older release assets): only a pin can vouch for it.
    #[error(
        "{file}: {url} lists the file without a digest; pin its sha256 in the catalog \
         (`sha256 = {{ any = \"<hex>\" }}`) from a source you trust"
    )]
    NoUpstreamDigest { file: String, url: String },
    #[error("{archive}: {reason}")]
    Archive { archive: String, reason: String },
    #[error("image {image}: {reason}")]
    Image { image: String, reason: String },
    #[error("image {image} has no {platform} manifest upstream ({digest}); refusing to carry another architecture")]
    MissingPlatform {
        image: String,
        platform: String,
        digest: String,
    },
    /// An OS package set cannot be built: metadata, signature or closure.
    #[error("OS package set {set}: {reason}")]
    OsPackages { set: String, reason: String },
    #[error("closure lint: {0}")]
    Closure(String),
    #[error("bundle: {0}")]
    Bundle(#[source] ferry_bundles::Error),
}

impl Error {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    pub fn data(
        file: impl Into<String>,
        key: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        Error::Data {
            file: file.into(),
            key: key.into(),
            reason: reason.into(),
        }
    }
}

impl From<ferry_bundles::Error> for Error {
    fn from(e: ferry_bundles::Error) -> Self {
        Error::Bundle(e)
    }
}
