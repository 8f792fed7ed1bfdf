//! The access log: one line per request, the same for HTTP/1.1 and HTTP/2.

use http::{header, HeaderMap, Method, StatusCode, Uri, Version};
use std::net::SocketAddr;
use std::time::Instant;

pub struct Line<'a> {
    pub peer: SocketAddr,
    pub method: &'a Method,
    pub uri: &'a Uri,
    pub version: Version,
}

impl Line<'_> {
    /// `PEER "METHOD URI VERSION" STATUS BYTES MILLISECONDSms`
    pub fn log(&self, status: StatusCode, headers: &HeaderMap, start: Instant) {
        let bytes = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-");
        tracing::info!(
            target: "access",
            "{} \"{} {} {:?}\" {} {bytes} {:.1}ms",
            self.peer,
            self.method,
            self.uri,
            self.version,
            status.as_u16(),
            start.elapsed().as_secs_f64() * 1000.0
        );
    }
}
