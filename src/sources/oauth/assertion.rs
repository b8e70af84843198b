//! Signed JWT assertions (RFC 7523): [`SigningKey`], [`ServiceAccountKey`], and the claims
//! every assertion carries. Feature `signing`.

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use secrecy::SecretString;
use serde_json::{Map, Value, json};

use crate::{ConfigError, FetchError};

/// `client_assertion_type` for `private_key_jwt` (RFC 7523 section 2.2).
pub(crate) const CLIENT_ASSERTION_TYPE: &str =
    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// How long an assertion is valid: 5 minutes. Long enough for clock skew between client and
/// server, short enough that a leaked assertion is soon useless (and within the 1 hour that
/// Google and others accept at most).
pub(crate) const ASSERTION_LIFETIME: Duration = Duration::from_secs(300);

/// A private key that signs JWT assertions: RS256 (RSA, PKCS#1 v1.5 with SHA-256) or ES256
/// (ECDSA P-256 with SHA-256), loaded from PEM. Checked when loaded (a test signature), so a
/// wrong key fails at startup, not at the first refresh. `Debug` shows the algorithm and key id
/// only. Cloning is cheap.
///
/// ```no_run
/// use tokenwarden::sources::{ClientCredentials, SigningKey};
///
/// # fn run() -> Result<(), tokenwarden::Error> {
/// let pem = std::fs::read("/etc/myapp/client-key.pem").expect("the key file");
/// let key = SigningKey::rs256_pem(&pem)?.key_id("2026-11");
/// // private_key_jwt client authentication:
/// let source = ClientCredentials::builder("https://idp.example.com/oauth2/token", "my-client", key).build()?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct SigningKey {
    key: Arc<EncodingKey>,
    algorithm: Algorithm,
    key_id: Option<String>,
}

impl SigningKey {
    /// An RSA private key in PEM (`BEGIN PRIVATE KEY` or `BEGIN RSA PRIVATE KEY`), signing
    /// RS256.
    ///
    /// # Errors
    ///
    /// If the PEM holds no usable RSA private key.
    pub fn rs256_pem(pem: impl AsRef<[u8]>) -> Result<SigningKey, ConfigError> {
        let key = EncodingKey::from_rsa_pem(pem.as_ref())
            .map_err(|e| ConfigError::new(format!("the RS256 signing key is unusable: {e}")))?;
        SigningKey::checked(key, Algorithm::RS256)
    }

    /// An EC P-256 private key in PKCS#8 PEM (`BEGIN PRIVATE KEY`), signing ES256.
    /// (`openssl pkcs8 -topk8 -nocrypt` converts a `BEGIN EC PRIVATE KEY` file.)
    ///
    /// # Errors
    ///
    /// If the PEM holds no usable P-256 private key in PKCS#8.
    pub fn es256_pem(pem: impl AsRef<[u8]>) -> Result<SigningKey, ConfigError> {
        let key = EncodingKey::from_ec_pem(pem.as_ref())
            .map_err(|e| ConfigError::new(format!("the ES256 signing key is unusable: {e}")))?;
        SigningKey::checked(key, Algorithm::ES256)
    }

    /// The `kid` header, naming the key among those the server knows (its JWKS).
    pub fn key_id(mut self, key_id: impl Into<String>) -> SigningKey {
        self.key_id = Some(key_id.into());
        self
    }

    fn checked(key: EncodingKey, algorithm: Algorithm) -> Result<SigningKey, ConfigError> {
        let key = SigningKey {
            key: Arc::new(key),
            algorithm,
            key_id: None,
        };
        key.sign(&Map::new()).map_err(|e| {
            ConfigError::new(format!(
                "the {algorithm:?} signing key cannot sign: {}",
                e.message()
            ))
        })?;
        Ok(key)
    }

    /// A compact JWS of `claims`.
    pub(crate) fn sign(&self, claims: &Map<String, Value>) -> Result<SecretString, FetchError> {
        // jsonwebtoken picks its crypto per process; choose aws-lc-rs unless the application
        // chose already (otherwise two crates enabling different backends would panic).
        let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
        let mut header = Header::new(self.algorithm);
        header.kid.clone_from(&self.key_id);
        jsonwebtoken::encode(&header, claims, &self.key)
            .map(SecretString::from)
            .map_err(|e| FetchError::permanent(format!("signing the assertion failed: {e}")))
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("algorithm", &self.algorithm)
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

/// A service-account key file, as Google Cloud and compatible providers issue it: a JSON object
/// with `client_email`, `private_key` (RSA, PEM), `private_key_id` and `token_uri`. Use it with
/// [`JwtBearer::service_account`](crate::sources::JwtBearer::service_account).
///
/// ```no_run
/// use tokenwarden::sources::{JwtBearer, ServiceAccountKey};
///
/// # fn run() -> Result<(), tokenwarden::Error> {
/// let key = ServiceAccountKey::from_file("/var/secrets/google/key.json")?;
/// let source = JwtBearer::service_account(key)
///     .scope("https://www.googleapis.com/auth/cloud-platform")
///     .build()?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct ServiceAccountKey {
    pub(crate) client_email: String,
    pub(crate) token_uri: String,
    pub(crate) key: SigningKey,
}

impl ServiceAccountKey {
    /// Reads and checks a key file.
    ///
    /// # Errors
    ///
    /// If the file cannot be read, or as [`from_json`](ServiceAccountKey::from_json).
    pub fn from_file(path: impl AsRef<Path>) -> Result<ServiceAccountKey, ConfigError> {
        let path = path.as_ref();
        let text = zeroize::Zeroizing::new(std::fs::read_to_string(path).map_err(|e| {
            ConfigError::new(format!(
                "service-account key file {} cannot be read: {e}",
                path.display()
            ))
        })?);
        ServiceAccountKey::from_json(&text)
    }

    /// Parses and checks a key file's content.
    ///
    /// # Errors
    ///
    /// If it is not a JSON object with `client_email`, `private_key` and `token_uri` strings,
    /// or the private key is not a usable RSA key. Messages name the field, never the key.
    pub fn from_json(json: &str) -> Result<ServiceAccountKey, ConfigError> {
        let value: Value = serde_json::from_str(json).map_err(|e| {
            ConfigError::new(format!(
                "the service-account key is not JSON (line {}, column {})",
                e.line(),
                e.column()
            ))
        })?;
        let field = |name: &str| {
            value.get(name).and_then(Value::as_str).ok_or_else(|| {
                ConfigError::new(format!(
                    "the service-account key has no `{name}` string field"
                ))
            })
        };
        let client_email = field("client_email")?.to_owned();
        let token_uri = field("token_uri")?.to_owned();
        let private_key = zeroize::Zeroizing::new(field("private_key")?.to_owned());
        let mut key = SigningKey::rs256_pem(private_key.as_bytes()).map_err(|e| {
            ConfigError::new(format!(
                "service account {client_email}: `private_key`: {e}"
            ))
        })?;
        if let Some(id) = value.get("private_key_id").and_then(Value::as_str) {
            key = key.key_id(id);
        }
        Ok(ServiceAccountKey {
            client_email,
            token_uri,
            key,
        })
    }

    /// The account's email (`client_email`), the assertion's issuer.
    pub fn client_email(&self) -> &str {
        &self.client_email
    }
}

impl fmt::Debug for ServiceAccountKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceAccountKey")
            .field("client_email", &self.client_email)
            .field("token_uri", &self.token_uri)
            .field("key", &self.key)
            .finish()
    }
}

/// The registered claims of an assertion (RFC 7523 section 3): who issued it, about whom, for
/// which server, when, until when, and a unique id; `extra` claims are added (and may not
/// replace these).
pub(crate) fn assertion_claims(
    issuer: &str,
    subject: &str,
    audience: &str,
    now: SystemTime,
    lifetime: Duration,
    jti: &str,
    extra: &Map<String, Value>,
) -> Map<String, Value> {
    let iat = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    let mut claims = extra.clone();
    let registered = json!({
        "iss": issuer,
        "sub": subject,
        "aud": audience,
        "iat": iat,
        "exp": iat.saturating_add(lifetime.as_secs().max(1)),
        "jti": jti,
    });
    if let Value::Object(registered) = registered {
        claims.extend(registered);
    }
    claims
}

/// A new assertion id: 128 random bits, hex. Unique is what RFC 7523 asks (servers may refuse
/// a `jti` they have seen).
pub(crate) fn new_jti() -> String {
    format!("{:032x}", fastrand::u128(..))
}

/// A `private_key_jwt` client assertion for `client_id` at `token_endpoint`.
pub(crate) fn client_assertion(
    key: &SigningKey,
    client_id: &str,
    token_endpoint: &str,
) -> Result<SecretString, FetchError> {
    let claims = assertion_claims(
        client_id,
        client_id,
        token_endpoint,
        SystemTime::now(),
        ASSERTION_LIFETIME,
        &new_jti(),
        &Map::new(),
    );
    key.sign(&claims)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registered_claims_win_over_extra_ones_and_expire_after_the_lifetime() {
        let mut extra = Map::new();
        extra.insert("scope".into(), json!("read"));
        extra.insert("iss".into(), json!("forged"));
        let now = UNIX_EPOCH + Duration::from_secs(1_000);
        let claims = assertion_claims(
            "svc@x",
            "user@x",
            "https://t/token",
            now,
            Duration::from_secs(300),
            "id1",
            &extra,
        );
        assert_eq!(claims["iss"], "svc@x");
        assert_eq!(claims["sub"], "user@x");
        assert_eq!(claims["aud"], "https://t/token");
        assert_eq!(claims["iat"], 1_000);
        assert_eq!(claims["exp"], 1_300);
        assert_eq!(claims["jti"], "id1");
        assert_eq!(claims["scope"], "read");
    }

    #[test]
    fn ids_are_unique_and_keys_are_checked() {
        assert_ne!(new_jti(), new_jti());
        assert_eq!(new_jti().len(), 32);
        let err = SigningKey::rs256_pem("not a key").unwrap_err();
        assert!(
            err.to_string().contains("RS256 signing key is unusable"),
            "{err}"
        );
        let err = ServiceAccountKey::from_json(r#"{"client_email":"a@b","token_uri":"https://t"}"#)
            .unwrap_err();
        assert!(err.to_string().contains("`private_key`"), "{err}");
        let err = ServiceAccountKey::from_json("{").unwrap_err();
        assert!(err.to_string().contains("not JSON"), "{err}");
    }
}
