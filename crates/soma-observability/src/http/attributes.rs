//! Bounded, allocation-free attribute values derived from a request.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use axum::http::{Method, Version};
use opentelemetry::StringValue;

/// `http.request.method`: the standard methods as themselves, anything else as `_OTHER`, so a
/// client cannot create new label values.
pub(crate) fn method(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => OTHER,
    }
}

/// The value semantic conventions use for anything outside a known set.
pub(crate) const OTHER: &str = "_OTHER";

/// `network.protocol.version`.
pub(crate) fn protocol_version(version: Version) -> &'static str {
    match version {
        Version::HTTP_09 => "0.9",
        Version::HTTP_10 => "1.0",
        Version::HTTP_2 => "2",
        Version::HTTP_3 => "3",
        _ => "1.1",
    }
}

/// `url.scheme`: the request URI's scheme when it has one (absolute-form, HTTP/2), else `http`.
pub(crate) fn scheme(uri: &axum::http::Uri) -> &'static str {
    match uri.scheme_str() {
        Some("https") => "https",
        _ => "http",
    }
}

/// Shares route templates between requests: the first request of a route allocates its
/// template once; every later one clones an `Arc`.
#[derive(Debug, Default)]
pub(crate) struct RouteInterner {
    routes: RwLock<HashMap<Box<str>, Arc<str>>>,
}

/// At most this many distinct templates are kept; a router has far fewer routes.
const MAX_INTERNED_ROUTES: usize = 4096;

impl RouteInterner {
    pub(crate) fn intern(&self, route: &str) -> StringValue {
        if let Ok(routes) = self.routes.read() {
            if let Some(shared) = routes.get(route) {
                return StringValue::from(Arc::clone(shared));
            }
        }
        let shared: Arc<str> = Arc::from(route);
        if let Ok(mut routes) = self.routes.write() {
            if routes.len() < MAX_INTERNED_ROUTES {
                routes.insert(Box::from(route), Arc::clone(&shared));
            }
        }
        StringValue::from(shared)
    }
}

/// Query parameters whose values are replaced by `REDACTED` (compared case-insensitively).
const SENSITIVE_QUERY_KEYS: &[&str] = &[
    "access_token",
    "api_key",
    "apikey",
    "api-key",
    "auth",
    "authorization",
    "client_secret",
    "code",
    "id_token",
    "key",
    "passwd",
    "password",
    "refresh_token",
    "secret",
    "session",
    "sig",
    "signature",
    "token",
    "x-amz-credential",
    "x-amz-security-token",
    "x-amz-signature",
    "awsaccesskeyid",
    "x-goog-signature",
];

/// `url.query` with the values of sensitive parameters replaced by `REDACTED`, as the URL
/// semantic conventions ask.
pub(crate) fn redact_query(query: &str) -> String {
    let mut out = String::with_capacity(query.len());
    for (i, pair) in query.split('&').enumerate() {
        if i > 0 {
            out.push('&');
        }
        let (key, value) = match pair.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (pair, None),
        };
        out.push_str(key);
        if let Some(value) = value {
            out.push('=');
            if is_sensitive(key) {
                out.push_str("REDACTED");
            } else {
                out.push_str(value);
            }
        }
    }
    out
}

fn is_sensitive(key: &str) -> bool {
    let decoded = key.replace("%5F", "_").replace("%5f", "_");
    SENSITIVE_QUERY_KEYS
        .iter()
        .any(|s| s.eq_ignore_ascii_case(&decoded))
}

/// Cuts `value` to at most `limit` bytes, on a character boundary.
pub(crate) fn truncate(value: &str, limit: usize) -> &str {
    if value.len() <= limit {
        return value;
    }
    let mut end = limit;
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    &value[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extension_methods_become_other() {
        let custom = Method::from_bytes(b"PURGE").unwrap();
        assert_eq!(method(&custom), "_OTHER");
        assert_eq!(method(&Method::PATCH), "PATCH");
    }

    #[test]
    fn sensitive_query_values_are_redacted() {
        assert_eq!(
            redact_query("q=rust&token=abc&API_KEY=k&sig=s&x-amz-signature=z&flag"),
            "q=rust&token=REDACTED&API_KEY=REDACTED&sig=REDACTED&x-amz-signature=REDACTED&flag"
        );
    }

    #[test]
    fn truncation_respects_char_boundaries() {
        assert_eq!(truncate("héllo", 2), "h");
        assert_eq!(truncate("hello", 10), "hello");
    }

    #[test]
    fn interned_routes_share_one_allocation() {
        let interner = RouteInterner::default();
        let a = interner.intern("/users/{id}");
        let b = interner.intern("/users/{id}");
        assert_eq!(a.as_str().as_ptr(), b.as_str().as_ptr());
    }
}
