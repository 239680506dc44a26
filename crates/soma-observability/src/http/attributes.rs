//! Bounded, allocation-free attribute values derived from a request.

use std::borrow::Cow;

use axum::http::{Method, Version};

use super::scheme::{SchemeRule, SCHEMES};

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
    /// Read by [`Route::span_name`](super::routes::Route::span_name) to pick the cached name.
    pub(super) method: u8,
    scheme: u8,
    version: u8,
}

impl Labels {
    pub(crate) fn of<B>(req: &axum::http::Request<B>, scheme: SchemeRule) -> Self {
        Self {
            method: method_index(req.method()),
            scheme: scheme.index(req.headers()),
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

/// `url.query` with the values of sensitive parameters replaced by `REDACTED`, as the URL
/// semantic conventions ask. Pairs are separated by `&` or `;`; a parameter is judged by its
/// name with the rule of [`super::sensitive`] (decoded as the application reads it, normalised,
/// compared with the secret words). The redacted pair keeps the raw name, so the result reads
/// like the request (`to%6Ben=REDACTED`).
///
/// `extra` holds the names the team added (normalised, see [`super::sensitive::normalised`]).
/// Nothing is allocated when no parameter is sensitive.
pub(crate) fn redact_query<'a>(query: &'a str, extra: &[Box<[u8]>]) -> Cow<'a, str> {
    let sensitive_at = |pair: &str| {
        pair.split_once('=')
            .filter(|(name, _)| super::sensitive::is_sensitive_with(name, extra))
            .map(|(name, _)| name.len())
    };
    let separator = |c: char| c == '&' || c == ';';
    let mut pairs = query.split_inclusive(separator);
    let mut offset = 0;
    // Find the first sensitive pair without allocating.
    let (start, first) = loop {
        let Some(piece) = pairs.next() else {
            return Cow::Borrowed(query);
        };
        if sensitive_at(piece.trim_end_matches(separator)).is_some() {
            break (offset, piece);
        }
        offset += piece.len();
    };
    let mut out = String::with_capacity(query.len());
    out.push_str(&query[..start]);
    for piece in std::iter::once(first).chain(pairs) {
        let pair = piece.trim_end_matches(separator);
        match sensitive_at(pair) {
            Some(name_len) => {
                out.push_str(&pair[..name_len]);
                out.push_str("=REDACTED");
                out.push_str(&piece[pair.len()..]);
            }
            None => out.push_str(piece),
        }
    }
    Cow::Owned(out)
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
            redact_query(
                "q=rust&token=abc&API_KEY=k&sig=s&x-amz-signature=z&flag",
                &[]
            ),
            "q=rust&token=REDACTED&API_KEY=REDACTED&sig=REDACTED&x-amz-signature=REDACTED&flag"
        );
    }

    /// Every way of spelling a sensitive name that the application still reads as that name.
    #[test]
    fn encoded_and_decorated_names_are_redacted() {
        let table = [
            // Plain names, as before.
            ("token=S", "token=REDACTED"),
            ("TOKEN=S", "TOKEN=REDACTED"),
            ("api_key=S", "api_key=REDACTED"),
            ("api-key=S", "api-key=REDACTED"),
            // Percent-encoded letters and separators (decoded by axum's `Query`).
            ("to%6Ben=S", "to%6Ben=REDACTED"),
            ("to%6ben=S", "to%6ben=REDACTED"),
            ("%74oken=S", "%74oken=REDACTED"),
            ("%74%6F%6B%65%6E=S", "%74%6F%6B%65%6E=REDACTED"),
            ("api%2Dkey=S", "api%2Dkey=REDACTED"),
            ("api%5Fkey=S", "api%5Fkey=REDACTED"),
            ("api%5fkey=S", "api%5fkey=REDACTED"),
            // Surrounding whitespace, encoded or as `+`.
            ("token%20=S", "token%20=REDACTED"),
            ("%20token=S", "%20token=REDACTED"),
            ("token+=S", "token+=REDACTED"),
            ("token%09=S", "token%09=REDACTED"),
            // Array and map forms.
            ("token[]=S", "token[]=REDACTED"),
            ("token%5B%5D=S", "token%5B%5D=REDACTED"),
            ("token[0]=S", "token[0]=REDACTED"),
            ("user[password]=S", "user[password]=REDACTED"),
            // Other separators.
            ("api.key=S", "api.key=REDACTED"),
            ("Api-Key=S", "Api-Key=REDACTED"),
            ("x-amz-signature=S", "x-amz-signature=REDACTED"),
            ("X%2DAmz%2DSignature=S", "X%2DAmz%2DSignature=REDACTED"),
            // Several pairs; only sensitive values change, the rest is kept byte for byte.
            (
                "q=a%20b&to%6Ben=S&page=2&token[]=T",
                "q=a%20b&to%6Ben=REDACTED&page=2&token[]=REDACTED",
            ),
            ("token=a=b&x=1", "token=REDACTED&x=1"),
            ("&&token=S&", "&&token=REDACTED&"),
            // Not sensitive: left alone.
            // Double-encoded, `;`-separated, and names that hold a secret word.
            ("to%256Ben=S", "to%256Ben=REDACTED"),
            ("%2574oken=S", "%2574oken=REDACTED"),
            ("q=1;token=S;p=2", "q=1;token=REDACTED;p=2"),
            ("tokens=S", "tokens=REDACTED"),
            (
                "auth_token=S&oauth_token=T",
                "auth_token=REDACTED&oauth_token=REDACTED",
            ),
            ("monkey=S", "monkey=S"),
            ("token", "token"),
            ("q=token", "q=token"),
            ("%=S&%4=S&%zz=S", "%=S&%4=S&%zz=S"),
            (
                "averyveryveryveryveryverylongparametername=S",
                "averyveryveryveryveryverylongparametername=S",
            ),
            ("", ""),
        ];
        for (query, expected) in table {
            assert_eq!(redact_query(query, &[]), expected, "{query}");
        }
    }

    #[test]
    fn a_query_without_secrets_is_not_copied() {
        let query = "q=rust&page=2&mon%6Bey=x;lang=en";
        assert!(matches!(redact_query(query, &[]), Cow::Borrowed(q) if q == query));
    }

    #[test]
    fn form_decoding_matches_form_urlencoded() {
        for raw in [
            "to%6Ben",
            "a+b",
            "%",
            "%4",
            "%4g",
            "%41%42",
            "%e2%82%ac",
            "x%2",
        ] {
            let ours: Vec<u8> = crate::http::sensitive::FormDecoded::new(raw.as_bytes()).collect();
            let theirs: Vec<u8> = url::form_urlencoded::parse(format!("{raw}=v").as_bytes())
                .next()
                .map(|(name, _)| name.into_owned().into_bytes())
                .unwrap();
            assert_eq!(ours, theirs, "{raw}");
        }
    }

    #[test]
    fn truncation_respects_char_boundaries() {
        assert_eq!(truncate("héllo", 2), "h");
        assert_eq!(truncate("hello", 10), "hello");
    }
}
