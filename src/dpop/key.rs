//! [`DpopKey`]: the P-256 key a client proves possession of, its public JWK and thumbprint,
//! and the nonces servers gave it.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use zeroize::Zeroizing;

use crate::ConfigError;

/// A DPoP key (RFC 9449): an ES256 (P-256) key pair a client signs a proof with for every
/// token request and every request that presents a DPoP-bound token.
///
/// [`generate`](DpopKey::generate) makes a new one; a key bound to a long-lived refresh token
/// must be kept with it (the refresh token is useless without it): [`FileStore`](crate::FileStore)
/// and the fleet's sealed record keep it, and
/// [`from_pkcs8_pem`](DpopKey::from_pkcs8_pem) loads one you manage. Cloning is cheap; clones
/// share the key and the nonces servers have handed out (`DPoP-Nonce`), remembered per origin.
/// `Debug` shows the thumbprint, never the private key.
///
/// ```
/// # #[cfg(feature = "dpop")] {
/// use tokenwarden::dpop::DpopKey;
///
/// let key = DpopKey::generate().unwrap();
/// assert_eq!(key.thumbprint().len(), 43); // base64url of a SHA-256
/// let again = DpopKey::from_pkcs8_pem(&key.to_pkcs8_pem()).unwrap();
/// assert_eq!(again.thumbprint(), key.thumbprint());
/// # }
/// ```
#[derive(Clone)]
pub struct DpopKey {
    inner: Arc<Inner>,
}

struct Inner {
    pair: EcdsaKeyPair,
    /// PKCS#8 DER of the private key, for storing it; wiped when dropped.
    pkcs8: Zeroizing<Vec<u8>>,
    /// The public key as a JWK object, members in lexicographic order (RFC 7638).
    jwk: String,
    thumbprint: String,
    rng: SystemRandom,
    /// The last `DPoP-Nonce` each origin (scheme://host:port) sent.
    nonces: Mutex<HashMap<String, String>>,
}

impl DpopKey {
    /// A new random P-256 key.
    ///
    /// # Errors
    ///
    /// If the system's random source fails.
    pub fn generate() -> Result<DpopKey, ConfigError> {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .map_err(|_| ConfigError::new("DPoP key: generating a P-256 key failed"))?;
        DpopKey::from_pkcs8_der(pkcs8.as_ref())
    }

    /// A P-256 private key from PKCS#8 DER.
    ///
    /// # Errors
    ///
    /// If the bytes are not a PKCS#8 P-256 private key.
    pub fn from_pkcs8_der(der: &[u8]) -> Result<DpopKey, ConfigError> {
        let pair =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der).map_err(|_| {
                ConfigError::new(
                    "DPoP key: not a PKCS#8 P-256 private key (ES256 is what is supported)",
                )
            })?;
        // The public key is the uncompressed point: 0x04, then X and Y, 32 bytes each.
        let point = pair.public_key().as_ref();
        if point.len() != 65 || point[0] != 4 {
            return Err(ConfigError::new("DPoP key: unexpected public key encoding"));
        }
        let x = URL_SAFE_NO_PAD.encode(&point[1..33]);
        let y = URL_SAFE_NO_PAD.encode(&point[33..65]);
        let jwk = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
        let thumbprint = URL_SAFE_NO_PAD.encode(sha256(jwk.as_bytes()));
        Ok(DpopKey {
            inner: Arc::new(Inner {
                pair,
                pkcs8: Zeroizing::new(der.to_vec()),
                jwk,
                thumbprint,
                rng: SystemRandom::new(),
                nonces: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// A P-256 private key from PEM (`-----BEGIN PRIVATE KEY-----`, PKCS#8).
    ///
    /// # Errors
    ///
    /// If the text is not such a PEM block.
    pub fn from_pkcs8_pem(pem: &str) -> Result<DpopKey, ConfigError> {
        let body: String = pem
            .lines()
            .map(str::trim)
            .skip_while(|line| *line != "-----BEGIN PRIVATE KEY-----")
            .skip(1)
            .take_while(|line| *line != "-----END PRIVATE KEY-----")
            .collect();
        let der =
            Zeroizing::new(STANDARD.decode(body.as_bytes()).map_err(|_| {
                ConfigError::new("DPoP key: not a PEM `PRIVATE KEY` (PKCS#8) block")
            })?);
        DpopKey::from_pkcs8_der(&der)
    }

    /// The private key as PKCS#8 PEM, to store it. Treat it as the secret it is.
    pub fn to_pkcs8_pem(&self) -> String {
        let encoded = Zeroizing::new(STANDARD.encode(self.inner.pkcs8.as_slice()));
        let mut pem = String::from("-----BEGIN PRIVATE KEY-----\n");
        for line in encoded.as_bytes().chunks(64) {
            pem.push_str(std::str::from_utf8(line).unwrap_or_default());
            pem.push('\n');
        }
        pem.push_str("-----END PRIVATE KEY-----\n");
        pem
    }

    /// A proof (the `DPoP` header's value) for a request of `method` to `url`, presenting
    /// `access_token` if given (its hash goes in `ath`), with the nonce `url`'s origin last
    /// sent: for clients other than the reqwest middleware and the tower layer, which add
    /// proofs themselves.
    ///
    /// # Errors
    ///
    /// If signing fails.
    pub fn proof(
        &self,
        method: &str,
        url: &str,
        access_token: Option<&str>,
    ) -> Result<String, crate::FetchError> {
        super::proof_for(self, method, url, access_token)
    }

    /// Remembers the `DPoP-Nonce` a server at `url` sent (a 401 with
    /// `WWW-Authenticate: DPoP error="use_dpop_nonce"`), for the next proof to that origin.
    pub fn remember_nonce(&self, url: &str, nonce: &str) {
        super::remember_nonce(self, url, Some(nonce));
    }

    /// The JWK SHA-256 thumbprint (RFC 7638), base64url: what a bound token's `cnf.jkt`
    /// names.
    pub fn thumbprint(&self) -> &str {
        &self.inner.thumbprint
    }

    /// The public key as a JWK object.
    pub(crate) fn jwk(&self) -> &str {
        &self.inner.jwk
    }

    /// An ES256 signature (r || s) of `message`.
    pub(crate) fn sign(&self, message: &[u8]) -> Result<Vec<u8>, crate::FetchError> {
        self.inner
            .pair
            .sign(&self.inner.rng, message)
            .map(|signature| signature.as_ref().to_vec())
            .map_err(|_| crate::FetchError::transient("DPoP: signing a proof failed"))
    }

    /// Random bytes for a proof's `jti` (which servers use to refuse replays).
    pub(crate) fn random(&self, bytes: &mut [u8]) -> Result<(), crate::FetchError> {
        use aws_lc_rs::rand::SecureRandom;
        self.inner
            .rng
            .fill(bytes)
            .map_err(|_| crate::FetchError::transient("DPoP: the random source failed"))
    }

    /// The nonce `origin` last sent, if any.
    pub(crate) fn nonce(&self, origin: &str) -> Option<String> {
        self.nonces().get(origin).cloned()
    }

    /// Remembers the nonce `origin` sent.
    pub(crate) fn set_nonce(&self, origin: &str, nonce: &str) {
        self.nonces().insert(origin.to_owned(), nonce.to_owned());
    }

    fn nonces(&self) -> std::sync::MutexGuard<'_, HashMap<String, String>> {
        // A map of strings: valid after a panic elsewhere.
        self.inner
            .nonces
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// SHA-256 of `bytes`.
pub(crate) fn sha256(bytes: &[u8]) -> Vec<u8> {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes)
        .as_ref()
        .to_vec()
}

impl PartialEq for DpopKey {
    fn eq(&self, other: &DpopKey) -> bool {
        self.inner.thumbprint == other.inner.thumbprint
    }
}

impl fmt::Debug for DpopKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DpopKey")
            .field("alg", &"ES256")
            .field("thumbprint", &self.inner.thumbprint)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_thumbprint_follows_rfc_7638() {
        // RFC 7638's method on a fixed key: SHA-256 over the required members, sorted, no
        // whitespace.
        let key = DpopKey::generate().unwrap();
        let jwk: serde_json::Value = serde_json::from_str(key.jwk()).unwrap();
        let canonical = format!(
            r#"{{"crv":"{}","kty":"{}","x":"{}","y":"{}"}}"#,
            jwk["crv"].as_str().unwrap(),
            jwk["kty"].as_str().unwrap(),
            jwk["x"].as_str().unwrap(),
            jwk["y"].as_str().unwrap()
        );
        assert_eq!(
            key.thumbprint(),
            URL_SAFE_NO_PAD.encode(sha256(canonical.as_bytes()))
        );
    }

    #[test]
    fn a_key_survives_pem_and_debug_shows_no_private_part() {
        let key = DpopKey::generate().unwrap();
        let pem = key.to_pkcs8_pem();
        let again = DpopKey::from_pkcs8_pem(&pem).unwrap();
        assert_eq!(again, key);
        let shown = format!("{key:?}");
        assert!(shown.contains(key.thumbprint()));
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        assert!(!shown.contains(&body[..20]));
    }

    #[test]
    fn other_keys_are_refused_with_a_reason() {
        let error =
            DpopKey::from_pkcs8_pem("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----")
                .unwrap_err();
        assert!(error.to_string().contains("P-256"), "{error}");
        let error = DpopKey::from_pkcs8_pem("not pem").unwrap_err();
        assert!(error.to_string().contains("DPoP key"), "{error}");
    }
}
