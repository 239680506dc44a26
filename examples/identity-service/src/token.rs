//! Compact JWTs signed with HMAC-SHA256 (`HS256`): `header.payload.signature`, each part
//! base64url without padding.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, KeyInit as _, Mac as _};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// `{"alg":"HS256","typ":"JWT"}`, the only header accepted: no algorithm confusion.
const HEADER: &str = r#"{"alg":"HS256","typ":"JWT"}"#;

/// What a token says.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Claims {
    /// The user.
    pub(crate) sub: String,
    /// Issued at, seconds since the Unix epoch.
    pub(crate) iat: u64,
    /// Expires at, seconds since the Unix epoch.
    pub(crate) exp: u64,
}

/// Why a token was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TokenError {
    /// Malformed, another algorithm, or a bad signature.
    Invalid,
    /// Well signed, but past its expiry.
    Expired,
}

/// Signs and verifies tokens with one secret key.
#[derive(Clone)]
pub(crate) struct Signer {
    key: Vec<u8>,
    ttl_secs: u64,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("ttl_secs", &self.ttl_secs)
            .finish_non_exhaustive()
    }
}

impl Signer {
    pub(crate) fn new(key: &[u8], ttl_secs: u64) -> Self {
        Self {
            key: key.to_vec(),
            ttl_secs,
        }
    }

    pub(crate) fn ttl_secs(&self) -> u64 {
        self.ttl_secs
    }

    fn mac(&self) -> Hmac<Sha256> {
        // HMAC accepts keys of any length.
        Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes keys of any length")
    }

    /// A token for `sub`, valid from `now` for the signer's lifetime.
    pub(crate) fn issue(&self, sub: &str, now: u64) -> String {
        let claims = Claims {
            sub: sub.to_owned(),
            iat: now,
            exp: now + self.ttl_secs,
        };
        let payload = serde_json::to_vec(&claims).unwrap_or_default();
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(HEADER),
            URL_SAFE_NO_PAD.encode(payload)
        );
        let mut mac = self.mac();
        mac.update(signing_input.as_bytes());
        let signature = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        format!("{signing_input}.{signature}")
    }

    /// Checks the signature (in constant time), then the expiry against `now`.
    pub(crate) fn verify(&self, token: &str, now: u64) -> Result<Claims, TokenError> {
        let (signing_input, signature) = token.rsplit_once('.').ok_or(TokenError::Invalid)?;
        let (header, payload) = signing_input.split_once('.').ok_or(TokenError::Invalid)?;
        let signature = URL_SAFE_NO_PAD
            .decode(signature)
            .map_err(|_| TokenError::Invalid)?;
        let mut mac = self.mac();
        mac.update(signing_input.as_bytes());
        mac.verify_slice(&signature)
            .map_err(|_| TokenError::Invalid)?;
        if URL_SAFE_NO_PAD.decode(header).ok().as_deref() != Some(HEADER.as_bytes()) {
            return Err(TokenError::Invalid);
        }
        let payload = URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| TokenError::Invalid)?;
        let claims: Claims = serde_json::from_slice(&payload).map_err(|_| TokenError::Invalid)?;
        if claims.exp <= now {
            return Err(TokenError::Expired);
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000;

    #[test]
    fn a_token_verifies_until_it_expires() {
        let signer = Signer::new(b"secret", 60);
        let token = signer.issue("demo", NOW);
        assert_eq!(token.split('.').count(), 3);
        let claims = signer.verify(&token, NOW + 59).unwrap();
        assert_eq!(claims.sub, "demo");
        assert_eq!(claims.exp, NOW + 60);
        assert_eq!(signer.verify(&token, NOW + 60), Err(TokenError::Expired));
    }

    #[test]
    fn tampered_or_foreign_tokens_are_invalid() {
        let signer = Signer::new(b"secret", 60);
        let token = signer.issue("demo", NOW);
        let other = Signer::new(b"another secret", 60).issue("demo", NOW);
        assert_eq!(signer.verify(&other, NOW), Err(TokenError::Invalid));

        let (header, rest) = token.split_once('.').unwrap();
        let (_, signature) = rest.split_once('.').unwrap();
        let forged_claims = URL_SAFE_NO_PAD.encode(format!(
            r#"{{"sub":"admin","iat":{NOW},"exp":{}}}"#,
            NOW + 60
        ));
        let forged = format!("{header}.{forged_claims}.{signature}");
        assert_eq!(signer.verify(&forged, NOW), Err(TokenError::Invalid));

        for garbage in ["", "a.b", "a.b.c", "not a token", &format!("{token}x")] {
            assert_eq!(
                signer.verify(garbage, NOW),
                Err(TokenError::Invalid),
                "{garbage}"
            );
        }
    }
}
