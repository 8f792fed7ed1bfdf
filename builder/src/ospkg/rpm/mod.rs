//! The rpm side of OS package sets, as pure functions: read a repository's
//! `repomd.xml` and `primary.xml`, resolve the dependency closure of a few
//! packages over them, and write a repository index (primary only) that dnf
//! reads for exactly that closure. Fetching, signature checks, decompression
//! and writing files belong to the caller.

mod capture;
mod error;
pub mod evr;
pub mod index;
mod package;
pub mod primary;
pub mod repomd;
pub mod resolve;
mod rich;
mod universe;
mod xml;

#[cfg(test)]
mod dnf_test;
#[cfg(test)]
mod index_tests;
#[cfg(test)]
mod primary_tests;
#[cfg(test)]
mod resolve_tests;
#[cfg(test)]
mod testdata;

pub use error::RpmError;
pub use package::{Dep, Evr, Flags, RpmPackage};
