//! DPoP (RFC 9449): tokens bound to a key the client holds, so a stolen token is useless
//! without the key. Feature `dpop`.
//!
//! Give an OAuth source a [`DpopKey`] (`ClientCredentials::builder(..).dpop(key)`, and the
//! same on the other OAuth flows): every token request then carries a fresh proof (`DPoP`
//! header: `htm`, `htu`, `iat`, a random `jti`, the server's nonce when it asks for one), and a
//! server that binds the token answers `token_type: DPoP`. Such a token is published with its
//! key ([`Token::dpop_key`](crate::Token::dpop_key)); its
//! [`authorization_header`](crate::Token::authorization_header) is `DPoP <token>`, and the
//! reqwest middleware and the tower layer add a proof for each request (with `ath`, the
//! token's hash), retrying once when a server answers `use_dpop_nonce`.
//!
//! Nonces: a server that requires one answers `use_dpop_nonce` with a `DPoP-Nonce` header; the
//! key remembers the newest nonce per origin and the request is retried once with it. The key
//! must stay with a refresh token bound to it: [`FileStore`](crate::FileStore) and the fleet's
//! sealed record keep both.
//!
//! A proof costs one ES256 signature (see BENCHMARKS.md for the per-request cost).

mod key;
pub(crate) mod proof;

pub use key::DpopKey;

use std::time::{SystemTime, UNIX_EPOCH};

use crate::FetchError;

/// The `DPoP` header value for a request of `method` to `url`, presenting `access_token` if
/// given, with the nonce `url`'s origin last sent.
pub(crate) fn proof_for(
    key: &DpopKey,
    method: &str,
    url: &str,
    access_token: Option<&str>,
) -> Result<String, FetchError> {
    let nonce = key.nonce(proof::origin(url));
    let issued_at = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|since| since.as_secs())
        .unwrap_or_default();
    proof::proof(
        key,
        &proof::ProofFor {
            method,
            url,
            access_token,
            nonce: nonce.as_deref(),
            issued_at,
        },
    )
}

/// Remembers the `DPoP-Nonce` a response from `url` carried, if any; returns whether it did.
pub(crate) fn remember_nonce(key: &DpopKey, url: &str, nonce: Option<&str>) -> bool {
    match nonce.filter(|nonce| !nonce.is_empty() && nonce.bytes().all(|b| b.is_ascii_graphic())) {
        Some(nonce) => {
            key.set_nonce(proof::origin(url), nonce);
            true
        }
        None => false,
    }
}

/// Whether a resource server's `WWW-Authenticate` asks for a DPoP nonce (RFC 9449 section 9).
pub(crate) fn asks_for_nonce(www_authenticate: &str) -> bool {
    www_authenticate.split(',').any(|part| {
        part.trim_start().trim_start_matches("DPoP ").trim() == r#"error="use_dpop_nonce""#
    }) && www_authenticate.trim_start().starts_with("DPoP")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nonce_challenge_is_recognised_in_www_authenticate() {
        assert!(asks_for_nonce(
            r#"DPoP error="use_dpop_nonce", error_description="Resource server requires nonce in DPoP proof""#
        ));
        assert!(asks_for_nonce(
            r#"DPoP algs="ES256", error="use_dpop_nonce""#
        ));
        assert!(!asks_for_nonce(r#"DPoP error="invalid_token""#));
        assert!(!asks_for_nonce(r#"Bearer error="use_dpop_nonce""#));
    }

    #[test]
    fn nonces_are_remembered_per_origin_and_garbage_is_not() {
        let key = DpopKey::generate().unwrap();
        assert!(remember_nonce(&key, "https://rs.example/a?b", Some("n1")));
        assert_eq!(key.nonce("https://rs.example").as_deref(), Some("n1"));
        assert!(!remember_nonce(
            &key,
            "https://rs.example/a",
            Some("bad nonce\n")
        ));
        assert!(!remember_nonce(&key, "https://other.example/", None));
        assert_eq!(key.nonce("https://other.example"), None);
    }
}
