//! Bounded, allocation-free attribute values derived from a request.

use std::borrow::Cow;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Arc, OnceLock, RwLock};

use axum::http::{Method, Version};
use opentelemetry::StringValue;

use super::series::Series;

/// `http.request.method` values, indexed by [`method_index`]; the last one is [`OTHER`].
pub(crate) const METHODS: [&str; 10] = [
    "GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH", "CONNECT", "TRACE", OTHER,
];

/// The index in [`METHODS`] of a request method: the standard methods as themselves, anything
/// else as `_OTHER`, so a client cannot create new label values.
pub(crate) fn method_index(method: &Method) -> u8 {
    match *method {
        Method::GET => 0,
        Method::POST => 1,
        Method::PUT => 2,
        Method::DELETE => 3,
        Method::HEAD => 4,
        Method::OPTIONS => 5,
        Method::PATCH => 6,
        Method::CONNECT => 7,
        Method::TRACE => 8,
        _ => 9,
    }
}

/// `http.request.method` (see [`method_index`]).
#[cfg_attr(not(feature = "client"), allow(dead_code))] // used by HttpClient only
pub(crate) fn method(method: &Method) -> &'static str {
    METHODS[usize::from(method_index(method))]
}

/// The value semantic conventions use for anything outside a known set.
pub(crate) const OTHER: &str = "_OTHER";

/// `url.scheme` values, indexed by [`scheme_index`].
pub(crate) const SCHEMES: [&str; 2] = ["http", "https"];

/// `url.scheme`: the request URI's scheme when it has one (absolute-form, HTTP/2), else `http`.
pub(crate) fn scheme_index(uri: &axum::http::Uri) -> u8 {
    match uri.scheme_str() {
        Some("https") => 1,
        _ => 0,
    }
}

/// `network.protocol.version` values, indexed by [`protocol_version_index`].
pub(crate) const PROTOCOL_VERSIONS: [&str; 5] = ["0.9", "1.0", "1.1", "2", "3"];

/// `network.protocol.version`.
pub(crate) fn protocol_version_index(version: Version) -> u8 {
    match version {
        Version::HTTP_09 => 0,
        Version::HTTP_10 => 1,
        Version::HTTP_2 => 3,
        Version::HTTP_3 => 4,
        _ => 2,
    }
}

/// The bounded labels of a request that do not depend on the route or the outcome, as indexes
/// into [`METHODS`], [`SCHEMES`] and [`PROTOCOL_VERSIONS`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Labels {
    method: u8,
    scheme: u8,
    version: u8,
}

impl Labels {
    pub(crate) fn of<B>(req: &axum::http::Request<B>) -> Self {
        Self {
            method: method_index(req.method()),
            scheme: scheme_index(req.uri()),
            version: protocol_version_index(req.version()),
        }
    }

    pub(crate) fn method(self) -> &'static str {
        METHODS[usize::from(self.method)]
    }

    pub(crate) fn scheme(self) -> &'static str {
        SCHEMES[usize::from(self.scheme)]
    }

    pub(crate) fn version(self) -> &'static str {
        PROTOCOL_VERSIONS[usize::from(self.version)]
    }

    /// A dense index over (method, scheme), for the in-flight gauge's series.
    pub(crate) fn method_scheme(self) -> usize {
        usize::from(self.method) * SCHEMES.len() + usize::from(self.scheme)
    }

    /// A key unique to (method, scheme, version, status).
    pub(crate) fn series_key(self, status: u16) -> u32 {
        u32::from(status)
            | u32::from(self.method) << 16
            | u32::from(self.scheme) << 20
            | u32::from(self.version) << 24
    }
}

/// A fast, non-cryptographic hasher (the Fx multiply-rotate scheme) for keys that clients
/// cannot choose: route templates and packed label indexes.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct FastHasher(u64);

impl FastHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0xf135_7aea_2e62_a9c5);
    }
}

impl Hasher for FastHasher {
    fn finish(&self) -> u64 {
        self.0.rotate_left(26)
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0; 8];
            word.copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(word));
        }
    }

    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    fn write_u32(&mut self, i: u32) {
        self.add(u64::from(i));
    }

    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }

    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }
}

pub(crate) type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<FastHasher>>;

/// A route template (or "no route matched"), shared by every request to it, with the bound
/// series of the request histograms for each (method, scheme, version, status) seen on it.
#[derive(Debug, Default)]
pub(crate) struct Route {
    value: Option<StringValue>,
    /// Whether [`Self::series`] may cache: only for routes the interner keeps, so the cache
    /// lives as long as the layer.
    pub(crate) cached: bool,
    pub(crate) series: RwLock<FastMap<u32, Arc<Series>>>,
    /// The first series bound on this route, found without taking the lock: most routes see one
    /// (method, scheme, version, status) nearly always.
    pub(crate) first_series: OnceLock<(u32, Arc<Series>)>,
    /// The server span names of this route, one per method, made on first use.
    names: [OnceLock<&'static str>; METHODS.len()],
}

impl Route {
    /// `http.route`, or `None` when no route matched.
    pub(crate) fn value(&self) -> Option<&StringValue> {
        self.value.as_ref()
    }

    /// The server span name: `{method} {route}`, `{method}` when no route matched, with `HTTP`
    /// for `_OTHER` methods.
    ///
    /// Span names are `Cow<'static, str>`: a route the interner keeps makes its names once and
    /// keeps them for the life of the process (at most ten per route template, and at most
    /// 4096 templates per layer), so no request formats or allocates its span's name.
    pub(crate) fn span_name(&self, labels: Labels) -> Cow<'static, str> {
        let method = match labels.method() {
            OTHER => "HTTP",
            method => method,
        };
        let Some(route) = &self.value else {
            return Cow::Borrowed(method);
        };
        if !self.cached {
            return Cow::Owned(format!("{method} {}", route.as_str()));
        }
        match self.names.get(usize::from(labels.method)) {
            Some(name) => Cow::Borrowed(name.get_or_init(|| {
                Box::leak(format!("{method} {}", route.as_str()).into_boxed_str())
            })),
            None => Cow::Owned(format!("{method} {}", route.as_str())),
        }
    }
}

/// Shares route templates between requests: the first request of a route allocates its
/// template once; every later one clones an `Arc`.
#[derive(Debug)]
pub(crate) struct RouteInterner {
    routes: RwLock<FastMap<Box<str>, Arc<Route>>>,
    unmatched: Arc<Route>,
}

impl Default for RouteInterner {
    fn default() -> Self {
        Self {
            routes: RwLock::default(),
            unmatched: Arc::new(Route {
                value: None,
                cached: true,
                ..Route::default()
            }),
        }
    }
}

/// At most this many distinct templates are kept; a router has far fewer routes.
const MAX_INTERNED_ROUTES: usize = 4096;

impl RouteInterner {
    /// The shared entry of `route` (`None`: no route matched).
    pub(crate) fn route(&self, route: Option<&str>) -> Arc<Route> {
        let Some(route) = route else {
            return Arc::clone(&self.unmatched);
        };
        if let Ok(routes) = self.routes.read() {
            if let Some(shared) = routes.get(route) {
                return Arc::clone(shared);
            }
        }
        let mut entry = Route {
            value: Some(StringValue::from(Arc::<str>::from(route))),
            ..Route::default()
        };
        if let Ok(mut routes) = self.routes.write() {
            if let Some(shared) = routes.get(route) {
                return Arc::clone(shared);
            }
            if routes.len() < MAX_INTERNED_ROUTES {
                entry.cached = true;
                let shared = Arc::new(entry);
                routes.insert(Box::from(route), Arc::clone(&shared));
                return shared;
            }
        }
        Arc::new(entry)
    }

    #[cfg(test)]
    pub(crate) fn intern(&self, route: &str) -> StringValue {
        self.route(Some(route))
            .value()
            .cloned()
            .unwrap_or_else(|| StringValue::from(""))
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
