//! DPoP proofs (RFC 9449 section 4): a JWT signed with the client's key for one HTTP request.
//! Pure apart from the signature's randomness; the caller supplies the time.

use std::fmt::Write;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::key::{DpopKey, sha256};
use crate::FetchError;

/// What one proof is for.
pub(crate) struct ProofFor<'a> {
    /// The request's method (`htm`).
    pub(crate) method: &'a str,
    /// The request's URL; its query and fragment are left out of `htu`.
    pub(crate) url: &'a str,
    /// The access token the request presents (hashed into `ath`), if any.
    pub(crate) access_token: Option<&'a str>,
    /// The server's last nonce, if it gave one.
    pub(crate) nonce: Option<&'a str>,
    /// Seconds since the Unix epoch (`iat`).
    pub(crate) issued_at: u64,
}

/// `url` as `htu`: without query and fragment (RFC 9449 section 4.2).
pub(crate) fn htu(url: &str) -> &str {
    let end = url.find(['?', '#']).unwrap_or(url.len());
    &url[..end]
}

/// `scheme://host[:port]` of `url`: whom a nonce belongs to.
pub(crate) fn origin(url: &str) -> &str {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    let end = url[after_scheme..]
        .find(['/', '?', '#'])
        .map_or(url.len(), |i| after_scheme + i);
    &url[..end]
}

/// `ath`: base64url of the SHA-256 of the access token.
pub(crate) fn access_token_hash(token: &str) -> String {
    URL_SAFE_NO_PAD.encode(sha256(token.as_bytes()))
}

/// The signed proof JWT.
pub(crate) fn proof(key: &DpopKey, what: &ProofFor<'_>) -> Result<String, FetchError> {
    let header = format!(r#"{{"typ":"dpop+jwt","alg":"ES256","jwk":{}}}"#, key.jwk());
    let mut jti = [0u8; 16];
    key.random(&mut jti)?;
    let mut claims = serde_json::Map::new();
    claims.insert("jti".into(), URL_SAFE_NO_PAD.encode(jti).into());
    claims.insert("htm".into(), what.method.into());
    claims.insert("htu".into(), htu(what.url).into());
    claims.insert("iat".into(), what.issued_at.into());
    if let Some(token) = what.access_token {
        claims.insert("ath".into(), access_token_hash(token).into());
    }
    if let Some(nonce) = what.nonce {
        claims.insert("nonce".into(), nonce.into());
    }
    let mut jwt = String::with_capacity(512);
    let _ = write!(
        jwt,
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(serde_json::Value::Object(claims).to_string())
    );
    let signature = key.sign(jwt.as_bytes())?;
    jwt.push('.');
    jwt.push_str(&URL_SAFE_NO_PAD.encode(signature));
    Ok(jwt)
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED, UnparsedPublicKey};

    fn part(jwt: &str, n: usize) -> serde_json::Value {
        let encoded = jwt.split('.').nth(n).unwrap();
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(encoded).unwrap()).unwrap()
    }

    #[test]
    fn a_proof_carries_what_rfc_9449_asks_and_verifies_with_its_embedded_key() {
        let key = DpopKey::generate().unwrap();
        let jwt = proof(
            &key,
            &ProofFor {
                method: "GET",
                url: "https://api.example.com/v1/orders?page=2#top",
                access_token: Some("the-access-token"),
                nonce: Some("n-1"),
                issued_at: 1_700_000_000,
            },
        )
        .unwrap();
        let header = part(&jwt, 0);
        assert_eq!(header["typ"], "dpop+jwt");
        assert_eq!(header["alg"], "ES256");
        assert_eq!(header["jwk"]["kty"], "EC");
        assert!(header["jwk"].get("d").is_none(), "no private part");
        let claims = part(&jwt, 1);
        assert_eq!(claims["htm"], "GET");
        assert_eq!(claims["htu"], "https://api.example.com/v1/orders");
        assert_eq!(claims["iat"], 1_700_000_000);
        assert_eq!(claims["nonce"], "n-1");
        assert_eq!(claims["ath"], access_token_hash("the-access-token"));
        assert_eq!(claims["jti"].as_str().unwrap().len(), 22, "128 random bits");

        // Verify with the public key in the header, as a server does.
        let x = URL_SAFE_NO_PAD
            .decode(header["jwk"]["x"].as_str().unwrap())
            .unwrap();
        let y = URL_SAFE_NO_PAD
            .decode(header["jwk"]["y"].as_str().unwrap())
            .unwrap();
        let point: Vec<u8> = [vec![4u8], x, y].concat();
        let (signed, signature) = jwt.rsplit_once('.').unwrap();
        let signature = URL_SAFE_NO_PAD.decode(signature).unwrap();
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, point)
            .verify(signed.as_bytes(), &signature)
            .expect("a valid ES256 signature");
    }

    #[test]
    fn proofs_differ_by_jti_and_leave_out_what_is_not_given() {
        let key = DpopKey::generate().unwrap();
        let what = ProofFor {
            method: "POST",
            url: "https://auth.example.com/token",
            access_token: None,
            nonce: None,
            issued_at: 1,
        };
        let (a, b) = (proof(&key, &what).unwrap(), proof(&key, &what).unwrap());
        assert_ne!(part(&a, 1)["jti"], part(&b, 1)["jti"]);
        assert!(part(&a, 1).get("ath").is_none() && part(&a, 1).get("nonce").is_none());
    }

    #[test]
    fn origins_and_htu_are_cut_where_rfc_9449_says() {
        assert_eq!(
            origin("https://a.example:8443/token?x=1"),
            "https://a.example:8443"
        );
        assert_eq!(origin("http://127.0.0.1:9"), "http://127.0.0.1:9");
        assert_eq!(htu("https://a.example/p?q#f"), "https://a.example/p");
    }
}
