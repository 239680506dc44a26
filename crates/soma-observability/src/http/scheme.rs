//! [`SchemeRule`]: how `url.scheme` is decided (see [`url.scheme`](super#urlscheme)).

use axum::http::{HeaderMap, HeaderName};

use crate::config::ProtoHeader;

/// `url.scheme` values, indexed by [`SchemeRule::index`].
pub(crate) const SCHEMES: [&str; 2] = ["http", "https"];

/// How `url.scheme` is decided: from the connection, never from the request line. A client
/// can write `GET https://host/ HTTP/1.1` or an HTTP/2 `:scheme: https` over plain TCP; what
/// counts is whether the listener terminates TLS, or, when the user trusts a proxy, the
/// header that proxy sets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct SchemeRule {
    pub(crate) tls_listener: bool,
    pub(crate) trusted_header: Option<ProtoHeader>,
}

impl SchemeRule {
    /// The index in [`SCHEMES`] of a request's `url.scheme`.
    pub(crate) fn index(self, headers: &HeaderMap) -> u8 {
        let listener = u8::from(self.tls_listener);
        let forwarded = match self.trusted_header {
            None => None,
            Some(ProtoHeader::XForwardedProto) => headers
                .get_all(X_FORWARDED_PROTO)
                .iter()
                .next_back()
                .and_then(|value| value.to_str().ok())
                .and_then(|value| value.rsplit(',').next()),
            Some(ProtoHeader::Forwarded) => headers
                .get_all(axum::http::header::FORWARDED)
                .iter()
                .next_back()
                .and_then(|value| value.to_str().ok())
                .and_then(|value| value.rsplit(',').next())
                .and_then(forwarded_proto),
        };
        forwarded.and_then(proto_index).unwrap_or(listener)
    }
}

const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

/// The `proto` parameter of one `Forwarded` element (`for=192.0.2.1;proto=https`).
fn forwarded_proto(element: &str) -> Option<&str> {
    element.split(';').find_map(|pair| {
        let (name, value) = pair.split_once('=')?;
        name.trim()
            .eq_ignore_ascii_case("proto")
            .then(|| value.trim().trim_matches('"'))
    })
}

fn proto_index(value: &str) -> Option<u8> {
    let value = value.trim();
    if value.eq_ignore_ascii_case("http") {
        Some(0)
    } else if value.eq_ignore_ascii_case("https") {
        Some(1)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scheme_comes_from_the_listener_or_a_trusted_header_only() {
        fn scheme(rule: SchemeRule, headers: &[(&str, &str)]) -> &'static str {
            let mut map = HeaderMap::new();
            for (name, value) in headers {
                map.append(
                    HeaderName::from_bytes(name.as_bytes()).unwrap(),
                    value.parse().unwrap(),
                );
            }
            SCHEMES[usize::from(rule.index(&map))]
        }
        let plain = SchemeRule::default();
        let tls = SchemeRule {
            tls_listener: true,
            trusted_header: None,
        };
        let xfp = SchemeRule {
            tls_listener: false,
            trusted_header: Some(ProtoHeader::XForwardedProto),
        };
        let forwarded = SchemeRule {
            tls_listener: false,
            trusted_header: Some(ProtoHeader::Forwarded),
        };
        let spoof = [("x-forwarded-proto", "https"), ("forwarded", "proto=https")];
        assert_eq!(scheme(plain, &spoof), "http");
        assert_eq!(scheme(tls, &[]), "https");
        assert_eq!(scheme(tls, &[("x-forwarded-proto", "http")]), "https");
        assert_eq!(scheme(xfp, &[("x-forwarded-proto", "https")]), "https");
        assert_eq!(scheme(xfp, &[("x-forwarded-proto", " HTTPS ")]), "https");
        assert_eq!(scheme(xfp, &[("forwarded", "proto=https")]), "http");
        assert_eq!(scheme(xfp, &[("x-forwarded-proto", "gopher")]), "http");
        // The last value is the one the nearest (trusted) proxy wrote.
        assert_eq!(scheme(xfp, &[("x-forwarded-proto", "https, http")]), "http");
        assert_eq!(
            scheme(
                xfp,
                &[
                    ("x-forwarded-proto", "http"),
                    ("x-forwarded-proto", "https")
                ]
            ),
            "https"
        );
        assert_eq!(
            scheme(forwarded, &[("forwarded", "for=192.0.2.1;proto=https")]),
            "https"
        );
        assert_eq!(
            scheme(
                forwarded,
                &[("forwarded", r#"for="[2001:db8::1]";Proto="https""#)]
            ),
            "https"
        );
        assert_eq!(
            scheme(
                forwarded,
                &[("forwarded", "proto=https;for=a, for=b;proto=http")]
            ),
            "http"
        );
        assert_eq!(scheme(forwarded, &[("forwarded", "for=b")]), "http");
        assert_eq!(scheme(forwarded, &[("x-forwarded-proto", "https")]), "http");
    }
}
