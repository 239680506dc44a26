//! The one rule that says which names hold secrets: query parameters (`url.query`) and captured
//! headers (`http.*.header.*`) alike.
//!
//! A name is first read as the application reads it: percent-escapes and `+` decoded as
//! `form_urlencoded` decodes them, again while that changes it (at most three times, so a
//! double-encoded `%2574oken` is `token` too). It is then normalised: ASCII case folded, and
//! whitespace, `-`, `_`, `.`, `[` and `]` left out (`X-Api-Key`, `api_key`, `token[]` and
//! `user[password]` read `xapikey`, `apikey`, `token`, `userpassword`). It is sensitive when
//! - it **contains** one of [`SECRET_PARTS`] (`auth_token`, `oauth_token`, `private_token`,
//!   `session_id`, `secret_key`, `x-amz-security-token`, `X-Goog-Credential`, `PHPSESSID`, ...);
//! - or it **is** one of [`SECRET_NAMES`], words too short to look for inside other names
//!   (`code`, `key`, `sig`, `pwd`, `pass`, `jwt`, ...), or has a bracketed part that is one
//!   (`user[pwd]`).
//!
//! Both lists cover the parameters of OAuth 2.0 and `OpenID` Connect (`access_token`, `refresh_token`,
//! `id_token`, `code`, `client_secret`, `client_assertion`, `code_verifier`), the signed URLs of
//! AWS (`X-Amz-Signature`, `X-Amz-Credential`, `X-Amz-Security-Token`, `AWSAccessKeyId`), Google
//! Cloud (`X-Goog-Signature`, `X-Goog-Credential`) and Azure (SAS `sig`), and the usual session
//! and API-key names. Redacting a name that held nothing secret costs a value in a trace;
//! missing one leaks it, so the rule errs on the side of redacting. Names of your own are added
//! with `OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SANITIZE_FIELDS` (or
//! `HeaderCapture::sanitize`), for headers and query parameters alike: each is normalised the
//! same way and compared with the whole name and its bracketed parts (`x-tenant-key` redacts
//! the header `X-Tenant-Key` and the query parameters `x_tenant_key`, `X-Tenant-Key` and
//! `x%2Dtenant%2Dkey`).

/// Redacted wherever they appear inside a normalised name.
pub(crate) const SECRET_PARTS: &[&str] = &[
    "token",
    "secret",
    "password",
    "passwd",
    "apikey",
    "credential",
    "signature",
    "session",
    "sessid",
    "authorization",
    "cookie",
    "privatekey",
    "accesskey",
    "assertion",
    "codeverifier",
];

/// Redacted when the whole normalised name, or one bracketed part of it, is one of them.
pub(crate) const SECRET_NAMES: &[&str] = &[
    "auth", "code", "key", "sig", "pwd", "pass", "jwt", "sid", "otp",
];

/// How many times a name is decoded, at most.
const DECODINGS: usize = 3;

/// Whether `name` (a raw, possibly percent-encoded, query parameter name or a header name) holds
/// a secret (see the [module docs](self)).
pub(crate) fn is_sensitive(name: &str) -> bool {
    is_sensitive_with(name, &[])
}

/// `name` normalised as the rule compares it: for the names a team adds.
pub(crate) fn normalised(name: &str) -> Box<[u8]> {
    name.bytes()
        .filter(|b| !matches!(b, b'-' | b'_' | b'.' | b'[' | b']') && !b.is_ascii_whitespace())
        .map(|b| b.to_ascii_lowercase())
        .collect()
}

/// [`is_sensitive`], with `extra` (already [`normalised`]) names the team added.
pub(crate) fn is_sensitive_with(name: &str, extra: &[Box<[u8]>]) -> bool {
    let is_secret_name = |name: &[u8]| is_secret_name(name) || extra.iter().any(|e| **e == *name);
    let mut decoded = std::borrow::Cow::Borrowed(name.as_bytes());
    for _ in 0..DECODINGS {
        if !decoded.iter().any(|b| matches!(b, b'%' | b'+')) {
            break;
        }
        let next: Vec<u8> = FormDecoded::new(&decoded).collect();
        if next == *decoded {
            break;
        }
        decoded = std::borrow::Cow::Owned(next);
    }
    // The normalised name; `part` is where its current bracketed part starts.
    let mut whole = Vec::with_capacity(decoded.len());
    let mut part = 0;
    let mut sensitive = false;
    for &byte in decoded.iter() {
        match byte {
            b'[' | b']' => {
                sensitive |= is_secret_name(&whole[part..]);
                part = whole.len();
            }
            b'-' | b'_' | b'.' => {}
            byte if byte.is_ascii_whitespace() => {}
            byte => whole.push(byte.to_ascii_lowercase()),
        }
    }
    sensitive
        || is_secret_name(&whole[part..])
        || is_secret_name(&whole)
        || SECRET_PARTS
            .iter()
            .any(|secret| contains(&whole, secret.as_bytes()))
}

fn is_secret_name(name: &[u8]) -> bool {
    SECRET_NAMES.iter().any(|secret| secret.as_bytes() == name)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

/// The bytes of an `application/x-www-form-urlencoded` string decoded as `form_urlencoded`
/// decodes them: `+` is a space, `%XX` a byte, and a `%` not followed by two hex digits is
/// kept as it is.
pub(crate) struct FormDecoded<'a> {
    bytes: std::slice::Iter<'a, u8>,
}

impl<'a> FormDecoded<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The names the issue found in clear, and the clouds' and OAuth's.
    #[test]
    fn common_secret_names_are_sensitive() {
        for name in [
            "auth_token",
            "oauth_token",
            "session_id",
            "sessionid",
            "private_token",
            "x-api-key",
            "jwt",
            "secret_key",
            "pwd",
            "pass",
            "credential",
            "%2574oken",
            "%252574oken",
            "access_token",
            "client_secret",
            "client_assertion",
            "code_verifier",
            "code",
            "X-Amz-Signature",
            "X-Amz-Credential",
            "X-Amz-Security-Token",
            "AWSAccessKeyId",
            "X-Goog-Signature",
            "X-Goog-Credential",
            "sig",
            "PHPSESSID",
            "JSESSIONID",
            "user[pwd]",
            "authorization",
            "proxy-authorization",
            "cookie",
            "set-cookie",
        ] {
            assert!(is_sensitive(name), "{name}");
        }
        for name in [
            "q",
            "page",
            "monkey",
            "accept",
            "user-agent",
            "x-request-id",
            "content-type",
            "passenger",
            "keyboard",
        ] {
            assert!(!is_sensitive(name), "{name}");
        }
    }
}
