//! The read-only OCI distribution API over a [`Catalog`].
//!
//! Accept handling: a manifest or index is served exactly as stored (same
//! bytes, same digest). When the client's Accept header lists media types and
//! none of them (nor a wildcard) matches the stored type, the answer is 404
//! MANIFEST_UNKNOWN naming the stored type, as distribution does for OCI
//! content; the mirror never converts or picks a platform on its own.
//! containerd, skopeo and docker all accept indexes.

use super::catalog::{Catalog, Manifest, Repo, Resolve};
use super::reference::{valid_name, valid_tag};
use crate::store::digest_hex;
use axum::body::Body;
use http::{header, HeaderMap, HeaderValue, Method, Response, StatusCode};
use std::sync::Arc;

const API_VERSION: &str = "registry/2.0";

/// What a request path asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Route<'a> {
    Base,
    Catalog,
    Tags(&'a str),
    Manifest(&'a str, &'a str),
    Blob(&'a str, &'a str),
    Upload,
    Unknown,
}

pub fn route(path: &str) -> Route<'_> {
    let Some(rest) = path.strip_prefix("/v2") else {
        return Route::Unknown;
    };
    let rest = match rest {
        "" | "/" => return Route::Base,
        r => match r.strip_prefix('/') {
            Some(r) => r,
            None => return Route::Unknown,
        },
    };
    if rest == "_catalog" {
        return Route::Catalog;
    }
    if let Some(name) = rest.strip_suffix("/tags/list") {
        return Route::Tags(name);
    }
    if let Some((name, _)) = rest.split_once("/blobs/uploads") {
        let _ = name;
        return Route::Upload;
    }
    if let Some((name, reference)) = rest.rsplit_once("/manifests/") {
        return Route::Manifest(name, reference);
    }
    if let Some((name, digest)) = rest.rsplit_once("/blobs/") {
        return Route::Blob(name, digest);
    }
    Route::Unknown
}

/// Answers one request. `query` is the raw query string.
pub async fn handle(
    catalog: &Catalog,
    method: &Method,
    path: &str,
    query: Option<&str>,
    headers: &HeaderMap,
) -> Response<Body> {
    let route = route(path);
    let read = method == Method::GET || method == Method::HEAD;
    if !read || route == Route::Upload {
        let mut resp = error(
            StatusCode::METHOD_NOT_ALLOWED,
            "UNSUPPORTED",
            "this mirror is read-only; push to a writable registry",
        );
        resp.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        resp.headers_mut().insert(
            "Docker-Distribution-API-Version",
            HeaderValue::from_static(API_VERSION),
        );
        return resp;
    }
    let head = method == Method::HEAD;
    let ns = query_param(query, "ns");
    let resp = match route {
        Route::Base => json_response(StatusCode::OK, b"{}".to_vec()),
        Route::Catalog => catalog_list(catalog, query),
        Route::Tags(name) => with_repo(catalog, name, ns.as_deref(), |repo| {
            tags_list(repo, name, query)
        }),
        Route::Manifest(name, reference) => with_repo(catalog, name, ns.as_deref(), |repo| {
            manifest(catalog, repo, reference, headers)
        }),
        Route::Blob(name, digest) => match lookup_blob(catalog, name, ns.as_deref(), digest) {
            Ok(path) => blob(&path, digest, headers, head).await,
            Err(resp) => *resp,
        },
        Route::Upload | Route::Unknown => error(
            StatusCode::NOT_FOUND,
            "NAME_UNKNOWN",
            "no such endpoint under /v2/",
        ),
    };
    let mut resp = if head { strip_body(resp) } else { resp };
    resp.headers_mut().insert(
        "Docker-Distribution-API-Version",
        HeaderValue::from_static(API_VERSION),
    );
    resp
}

fn with_repo(
    catalog: &Catalog,
    name: &str,
    ns: Option<&str>,
    f: impl FnOnce(&Repo) -> Response<Body>,
) -> Response<Body> {
    match find_repo(catalog, name, ns) {
        Ok(repo) => f(repo),
        Err(resp) => *resp,
    }
}

fn find_repo<'c>(
    catalog: &'c Catalog,
    name: &str,
    ns: Option<&str>,
) -> Result<&'c Repo, Box<Response<Body>>> {
    if !valid_name(name) {
        return Err(Box::new(error(
            StatusCode::BAD_REQUEST,
            "NAME_INVALID",
            &format!("invalid repository name {name:?}"),
        )));
    }
    catalog.resolve(name, ns).map_err(|r| Box::new(match r {
        Resolve::Unknown => error(
            StatusCode::NOT_FOUND,
            "NAME_UNKNOWN",
            &format!("repository {name:?}{} is not in any unpacked bundle", ns.map(|n| format!(" (ns={n})")).unwrap_or_default()),
        ),
        Resolve::Ambiguous(names) => error(
            StatusCode::NOT_FOUND,
            "NAME_UNKNOWN",
            &format!("repository {name:?} exists under several registries ({}); ask with ?ns=HOST or HOST/{name}", names.join(", ")),
        ),
    }))
}

fn manifest(
    catalog: &Catalog,
    repo: &Repo,
    reference: &str,
    headers: &HeaderMap,
) -> Response<Body> {
    let digest = if reference.contains(':') {
        if digest_hex(reference).is_err() {
            return error(
                StatusCode::BAD_REQUEST,
                "DIGEST_INVALID",
                &format!("invalid digest {reference:?}"),
            );
        }
        if !repo.manifests.contains(reference) {
            return error(
                StatusCode::NOT_FOUND,
                "MANIFEST_UNKNOWN",
                &not_carried(repo, reference),
            );
        }
        reference
    } else {
        if !valid_tag(reference) {
            return error(
                StatusCode::BAD_REQUEST,
                "TAG_INVALID",
                &format!("invalid tag {reference:?}"),
            );
        }
        match repo.tags.get(reference) {
            Some(d) => d.as_str(),
            None => {
                return error(
                    StatusCode::NOT_FOUND,
                    "MANIFEST_UNKNOWN",
                    &format!("{}:{reference} is not in any unpacked bundle", repo.name()),
                )
            }
        }
    };
    let Some(m) = catalog.manifest(digest) else {
        return error(
            StatusCode::NOT_FOUND,
            "MANIFEST_UNKNOWN",
            &format!("{}@{digest} is not loaded", repo.name()),
        );
    };
    if !accepts(headers, &m.media_type) {
        return error(
            StatusCode::NOT_FOUND,
            "MANIFEST_UNKNOWN",
            &format!(
                "{}@{digest} is stored as {}, which the Accept header does not include",
                repo.name(),
                m.media_type
            ),
        );
    }
    manifest_response(m)
}

/// Why a manifest digest is not served: an index entry the bundle left out
/// names its platform and what the bundle carries instead.
fn not_carried(repo: &Repo, digest: &str) -> String {
    match repo.absent.get(digest) {
        Some(a) => format!(
            "{}@{digest} ({}) is not in bundle {}; it carries {}",
            repo.name(),
            a.platform,
            a.bundle,
            a.carried.join(", ")
        ),
        None => format!("{}@{digest} is not in any unpacked bundle", repo.name()),
    }
}

fn manifest_response(m: &Manifest) -> Response<Body> {
    let mut resp = Response::new(Body::from(m.bytes.clone()));
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, header_value(&m.media_type));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(m.bytes.len()));
    h.insert("Docker-Content-Digest", header_value(&m.digest));
    h.insert(header::ETAG, header_value(&format!("\"{}\"", m.digest)));
    resp
}

/// True when the Accept headers allow `media_type` (no Accept header allows anything).
fn accepts(headers: &HeaderMap, media_type: &str) -> bool {
    let mut any = false;
    for value in headers.get_all(header::ACCEPT) {
        let Ok(value) = value.to_str() else { continue };
        for item in value.split(',') {
            let mt = item.split(';').next().unwrap_or("").trim();
            if mt.is_empty() {
                continue;
            }
            any = true;
            if mt == media_type || mt == "*/*" || mt == "application/*" {
                return true;
            }
        }
    }
    !any
}

fn lookup_blob(
    catalog: &Catalog,
    name: &str,
    ns: Option<&str>,
    digest: &str,
) -> Result<std::path::PathBuf, Box<Response<Body>>> {
    let repo = find_repo(catalog, name, ns)?;
    let Some(path) = catalog.blob_path(digest) else {
        return Err(Box::new(error(
            StatusCode::BAD_REQUEST,
            "DIGEST_INVALID",
            &format!("invalid digest {digest:?}"),
        )));
    };
    if !repo.blobs.contains(digest) {
        return Err(Box::new(error(
            StatusCode::NOT_FOUND,
            "BLOB_UNKNOWN",
            &format!("blob {digest} is not part of {}", repo.name()),
        )));
    }
    Ok(path)
}

/// The bytes a blob GET answers with, carried as a response extension next
/// to an empty body: the connection sends them itself, with sendfile(2) on
/// plain TCP or in large reads into TLS (see `super::blobsend`).
#[derive(Debug, Clone)]
pub struct BlobFile {
    pub file: Arc<std::fs::File>,
    pub start: u64,
    pub len: u64,
}

async fn blob(
    path: &std::path::Path,
    digest: &str,
    headers: &HeaderMap,
    head: bool,
) -> Response<Body> {
    // Opening and stat are single quick syscalls: not worth a blocking-pool hop.
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) => {
            tracing::error!(path = %path.display(), "blob listed in an index but unreadable: {e}");
            return error(
                StatusCode::NOT_FOUND,
                "BLOB_UNKNOWN",
                &format!("blob {digest} is missing from the store"),
            );
        }
    };
    let size = match file.metadata() {
        Ok(m) => m.len(),
        Err(e) => {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "UNKNOWN",
                &format!("stat {}: {e}", path.display()),
            )
        }
    };
    let range = match headers.get(header::RANGE).and_then(|v| v.to_str().ok()) {
        None => None,
        Some(spec) => match parse_range(spec, size) {
            RangeSpec::Ignore => None,
            RangeSpec::Satisfiable(start, end) => Some((start, end)),
            RangeSpec::Unsatisfiable => {
                let mut resp = error(
                    StatusCode::RANGE_NOT_SATISFIABLE,
                    "BLOB_UNKNOWN",
                    &format!("range {spec:?} outside blob of {size} bytes"),
                );
                resp.headers_mut().insert(
                    header::CONTENT_RANGE,
                    header_value(&format!("bytes */{size}")),
                );
                return resp;
            }
        },
    };
    let (status, start, len) = match range {
        Some((start, end)) => (StatusCode::PARTIAL_CONTENT, start, end - start + 1),
        None => (StatusCode::OK, 0, size),
    };
    let mut resp = Response::new(Body::empty());
    *resp.status_mut() = status;
    if !head && len > 0 {
        resp.extensions_mut().insert(BlobFile {
            file: Arc::new(file),
            start,
            len,
        });
    }
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert("Docker-Content-Digest", header_value(digest));
    h.insert(header::ETAG, header_value(&format!("\"{digest}\"")));
    if status == StatusCode::PARTIAL_CONTENT {
        h.insert(
            header::CONTENT_RANGE,
            header_value(&format!("bytes {}-{}/{size}", start, start + len - 1)),
        );
    }
    resp
}

/// Public only for the fuzz target (fuzz/fuzz_targets/registry_route.rs).
#[doc(hidden)]
#[derive(Debug, PartialEq, Eq)]
pub enum RangeSpec {
    /// Not a single byte range we understand: serve the whole blob (allowed by RFC 9110).
    Ignore,
    /// Inclusive bounds.
    Satisfiable(u64, u64),
    Unsatisfiable,
}

#[doc(hidden)]
pub fn parse_range(spec: &str, size: u64) -> RangeSpec {
    let Some(set) = spec.trim().strip_prefix("bytes=") else {
        return RangeSpec::Ignore;
    };
    if set.contains(',') {
        return RangeSpec::Ignore;
    }
    let Some((a, b)) = set.trim().split_once('-') else {
        return RangeSpec::Ignore;
    };
    let (a, b) = (a.trim(), b.trim());
    if a.is_empty() {
        // Suffix range: the last N bytes.
        return match b.parse::<u64>() {
            Ok(0) => RangeSpec::Unsatisfiable,
            Ok(_) if size == 0 => RangeSpec::Unsatisfiable,
            Ok(n) => RangeSpec::Satisfiable(size.saturating_sub(n), size - 1),
            Err(_) => RangeSpec::Ignore,
        };
    }
    let Ok(start) = a.parse::<u64>() else {
        return RangeSpec::Ignore;
    };
    let end = if b.is_empty() {
        size.saturating_sub(1)
    } else {
        match b.parse::<u64>() {
            Ok(e) if e >= start => e.min(size.saturating_sub(1)),
            _ => return RangeSpec::Ignore,
        }
    };
    if start >= size {
        RangeSpec::Unsatisfiable
    } else {
        RangeSpec::Satisfiable(start, end)
    }
}

fn catalog_list(catalog: &Catalog, query: Option<&str>) -> Response<Body> {
    let names = paginate(catalog.repositories(), query);
    json_response(
        StatusCode::OK,
        serde_json::to_vec(&serde_json::json!({ "repositories": names })).unwrap_or_default(),
    )
}

fn tags_list(repo: &Repo, name: &str, query: Option<&str>) -> Response<Body> {
    let tags = paginate(repo.tags.keys().cloned().collect(), query);
    json_response(
        StatusCode::OK,
        serde_json::to_vec(&serde_json::json!({ "name": name, "tags": tags })).unwrap_or_default(),
    )
}

/// `n` (page size) and `last` (exclusive start) as in the distribution spec; input is sorted.
fn paginate(items: Vec<String>, query: Option<&str>) -> Vec<String> {
    let last = query_param(query, "last");
    let n = query_param(query, "n")
        .and_then(|n| n.parse::<usize>().ok())
        .unwrap_or(usize::MAX);
    items
        .into_iter()
        .filter(|i| last.as_ref().is_none_or(|l| i.as_str() > l.as_str()))
        .take(n)
        .collect()
}

fn query_param(query: Option<&str>, key: &str) -> Option<String> {
    query?.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (k == key).then(|| percent_decode(v))
    })
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Some(b) = std::str::from_utf8(&bytes[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(if bytes[i] == b'+' { b' ' } else { bytes[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn json_response(status: StatusCode, body: Vec<u8>) -> Response<Body> {
    let len = body.len();
    let mut resp = Response::new(Body::from(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp.headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    resp
}

/// An OCI distribution error body: `{"errors":[{"code":..,"message":..}]}`.
pub fn error(status: StatusCode, code: &str, message: &str) -> Response<Body> {
    let body =
        serde_json::json!({ "errors": [{ "code": code, "message": message, "detail": null }] });
    json_response(status, serde_json::to_vec(&body).unwrap_or_default())
}

/// HEAD: same status and headers (Content-Length included), no body.
fn strip_body(resp: Response<Body>) -> Response<Body> {
    let (parts, _) = resp.into_parts();
    Response::from_parts(parts, Body::empty())
}

fn header_value(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_paths() {
        assert_eq!(route("/v2/"), Route::Base);
        assert_eq!(route("/v2"), Route::Base);
        assert_eq!(route("/v2/_catalog"), Route::Catalog);
        assert_eq!(
            route("/v2/registry.k8s.io/pause/manifests/3.9"),
            Route::Manifest("registry.k8s.io/pause", "3.9")
        );
        assert_eq!(
            route("/v2/a/b/blobs/sha256:00"),
            Route::Blob("a/b", "sha256:00")
        );
        assert_eq!(route("/v2/a/tags/list"), Route::Tags("a"));
        assert_eq!(route("/v2/a/blobs/uploads/"), Route::Upload);
        assert_eq!(route("/v2x"), Route::Unknown);
        assert_eq!(route("/v2/a/b"), Route::Unknown);
    }

    #[test]
    fn parses_ranges() {
        assert_eq!(parse_range("bytes=0-9", 100), RangeSpec::Satisfiable(0, 9));
        assert_eq!(
            parse_range("bytes=90-", 100),
            RangeSpec::Satisfiable(90, 99)
        );
        assert_eq!(
            parse_range("bytes=90-500", 100),
            RangeSpec::Satisfiable(90, 99)
        );
        assert_eq!(
            parse_range("bytes=-10", 100),
            RangeSpec::Satisfiable(90, 99)
        );
        assert_eq!(parse_range("bytes=100-", 100), RangeSpec::Unsatisfiable);
        assert_eq!(parse_range("bytes=5-1", 100), RangeSpec::Ignore);
        assert_eq!(parse_range("bytes=0-1,5-6", 100), RangeSpec::Ignore);
        assert_eq!(parse_range("items=0-1", 100), RangeSpec::Ignore);
    }

    #[test]
    fn accept_header_matching() {
        let mut h = HeaderMap::new();
        assert!(accepts(&h, "application/vnd.oci.image.index.v1+json"));
        h.append(
            header::ACCEPT,
            HeaderValue::from_static("application/vnd.oci.image.manifest.v1+json"),
        );
        assert!(!accepts(&h, "application/vnd.oci.image.index.v1+json"));
        h.append(
            header::ACCEPT,
            HeaderValue::from_static("application/vnd.oci.image.index.v1+json;q=0.5, text/plain"),
        );
        assert!(accepts(&h, "application/vnd.oci.image.index.v1+json"));
    }

    #[test]
    fn query_params() {
        assert_eq!(
            query_param(Some("ns=registry.k8s.io&n=2"), "ns").as_deref(),
            Some("registry.k8s.io")
        );
        assert_eq!(
            query_param(Some("last=a%2Fb"), "last").as_deref(),
            Some("a/b")
        );
        assert_eq!(query_param(None, "ns"), None);
    }
}
