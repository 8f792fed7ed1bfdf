//! The ferry bundle format v1: layout, bundle.json, signing, the framed
//! zstd writer, the streaming verifying reader, and split parts.
//!
//! This crate is the contract between the builder (which writes bundles)
//! and the installer (which reads them); neither side reaches into the other.

pub mod bounded;
mod compress;
mod decode;
pub mod error;
mod hasher;
pub mod manifest;
pub mod reader;
pub mod safepath;
pub mod seektable;
pub mod sign;
pub mod source;
pub mod split;
mod tarfmt;
pub mod writer;

pub use error::{Error, Result};
pub use manifest::{
    BundleManifest, Component, ComponentKind, FileEntry, ImageRecord, LeftOut, LeftOutReason,
    SignatureRecord,
};
pub use reader::{
    read_manifest, verify_and_extract, EntrySink, ManifestRead, NullSink, Trust, VerifiedBundle,
};
pub use sign::{generate_keypair, trusted_comment, SigningKey, TrustedKeys};
pub use source::BundleSource;
pub use writer::{write_bundle, ContentSource, WriteOptions, WriteReport};
