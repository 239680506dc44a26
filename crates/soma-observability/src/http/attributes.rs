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
///
/// A parameter is judged by its name as the application reads it: percent-escapes and `+` are
/// decoded as `form_urlencoded` (axum's `Query`) decodes them, so `to%6Ben`, `%74oken`,
/// `api%2Dkey` and `token%20` count as `token` / `api-key`. The decoded name is then normalised
/// (ASCII case folded; whitespace, `-`, `_` and `.` ignored) and split at brackets, so that
/// `token[]`, `token[0]` and `user[password]` are sensitive too: the name or any bracketed part
/// of it is compared with the sensitive list. The redacted pair keeps the raw name, so the
/// result reads like the request (`to%6Ben=REDACTED`).
///
/// Nothing is allocated when no parameter is sensitive.
pub(crate) fn redact_query(query: &str) -> Cow<'_, str> {
    let mut pairs = query.split('&');
    let mut offset = 0;
    // Find the first sensitive pair without allocating.
    let first = loop {
        let Some(pair) = pairs.next() else {
            return Cow::Borrowed(query);
        };
        if let Some((name, _)) = pair.split_once('=') {
            if is_sensitive(name) {
                break (offset, name);
            }
        }
        offset += pair.len() + 1;
    };
    let mut out = String::with_capacity(query.len());
    out.push_str(&query[..first.0]);
    push_redacted(&mut out, first.1);
    for pair in pairs {
        out.push('&');
        match pair.split_once('=') {
            Some((name, _)) if is_sensitive(name) => push_redacted(&mut out, name),
            _ => out.push_str(pair),
        }
    }
    Cow::Owned(out)
}

fn push_redacted(out: &mut String, name: &str) {
    out.push_str(name);
    out.push_str("=REDACTED");
}

/// The longest normalised name part that is compared; longer parts are never sensitive.
const MAX_NAME_PART: usize = 32;

/// Whether the raw (still encoded) parameter name `name` is sensitive (see [`redact_query`]).
fn is_sensitive(name: &str) -> bool {
    let mut part = [0_u8; MAX_NAME_PART];
    let mut len = 0;
    let mut too_long = false;
    let mut sensitive = false;
    let mut end_part = |part: &[u8], too_long: bool| {
        sensitive |= !too_long && !part.is_empty() && is_sensitive_part(part);
    };
    for byte in FormDecoded::new(name.as_bytes()) {
        match byte {
            b'[' | b']' => {
                end_part(&part[..len], too_long);
                len = 0;
                too_long = false;
            }
            b'-' | b'_' | b'.' => {}
            byte if byte.is_ascii_whitespace() => {}
            byte => match part.get_mut(len) {
                Some(slot) => {
                    *slot = byte.to_ascii_lowercase();
                    len += 1;
                }
                None => too_long = true,
            },
        }
    }
    end_part(&part[..len], too_long);
    sensitive
}

/// Whether a normalised name part (lower case, no separators) is one of
/// [`SENSITIVE_QUERY_KEYS`], normalised the same way.
fn is_sensitive_part(part: &[u8]) -> bool {
    SENSITIVE_QUERY_KEYS.iter().any(|key| {
        key.bytes()
            .filter(|b| !matches!(b, b'-' | b'_' | b'.'))
            .eq(part.iter().copied())
    })
}

/// The bytes of an `application/x-www-form-urlencoded` string decoded as `form_urlencoded`
/// decodes them: `+` is a space, `%XX` a byte, and a `%` not followed by two hex digits is
/// kept as it is.
struct FormDecoded<'a> {
    bytes: std::slice::Iter<'a, u8>,
}

impl<'a> FormDecoded<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Self {
            bytes: bytes.iter(),
        }
    }
}

impl Iterator for FormDecoded<'_> {
    type Item = u8;

    fn next(&mut self) -> Option<u8> {
        let byte = *self.bytes.next()?;
        match byte {
            b'+' => Some(b' '),
            b'%' => {
                let rest = self.bytes.as_slice();
                let digit = |i: usize| rest.get(i).and_then(|b| char::from(*b).to_digit(16));
                match (digit(0), digit(1)) {
                    (Some(high), Some(low)) => {
                        self.bytes.nth(1);
                        u8::try_from(high * 16 + low).ok()
                    }
                    _ => Some(b'%'),
                }
            }
            byte => Some(byte),
        }
    }
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
            ("tokens=S", "tokens=S"),
            ("monkey=S", "monkey=S"),
            ("token", "token"),
            ("q=token", "q=token"),
            ("%=S&%4=S&%zz=S", "%=S&%4=S&%zz=S"),
            ("to%256Ben=S", "to%256Ben=S"), // decodes to `to%6Ben`, not `token`
            (
                "averyveryveryveryveryverylongparametername=S",
                "averyveryveryveryveryverylongparametername=S",
            ),
            ("", ""),
        ];
        for (query, expected) in table {
            assert_eq!(redact_query(query), expected, "{query}");
        }
    }

    #[test]
    fn a_query_without_secrets_is_not_copied() {
        let query = "q=rust&page=2&to%6Bens=x";
        assert!(matches!(redact_query(query), Cow::Borrowed(q) if q == query));
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
            let ours: Vec<u8> = FormDecoded::new(raw.as_bytes()).collect();
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
