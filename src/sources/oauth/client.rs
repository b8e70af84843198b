//! The parts of an OAuth2 token request shared by the grants (RFC 6749 sections 2.3.1 and 4-6).

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use reqwest::RequestBuilder;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};

use crate::FetchError;
use crate::token::sensitive_authorization;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value};

use super::http::Endpoint;
use crate::sources::Secret;

/// How the client authenticates to the token endpoint.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClientAuth {
    /// HTTP Basic with the form-encoded id and secret (`client_secret_basic`, RFC 6749
    /// section 2.3.1). The default, and what the RFC says servers must support.
    #[default]
    Basic,
    /// `client_id` and `client_secret` as request parameters (`client_secret_post`).
    Body,
}

/// How the request's parameters are encoded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum BodyFormat {
    /// `application/x-www-form-urlencoded`, as RFC 6749 specifies. The default.
    #[default]
    Form,
    /// `application/json`, which some services require.
    Json,
}

/// The setters every OAuth2 grant builder shares, written once. The builder needs fields
/// `client: ClientConfig` and `http: HttpOptions`.
macro_rules! oauth_request_setters {
    () => {
        /// How a client with a secret authenticates. Default: [`ClientAuth::Basic`].
        pub fn auth(mut self, auth: ClientAuth) -> Self {
            self.client.auth = auth;
            self
        }

        /// How the request body is encoded. Default: [`BodyFormat::Form`].
        pub fn body_format(mut self, format: BodyFormat) -> Self {
            self.client.format = format;
            self
        }

        /// The `scope` parameter (space-separated scopes).
        pub fn scope(self, scope: impl Into<String>) -> Self {
            self.param("scope", scope)
        }

        /// Any other parameter a service requires (e.g. `provider=client_credentials`).
        pub fn param(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
            self.client.params.push((name.into(), value.into()));
            self
        }

        /// Asks for DPoP-bound tokens (RFC 9449): every token request carries a proof signed
        /// by `key`, and a token the server binds (`token_type: DPoP`) is published with the
        /// key, so requests presenting it carry proofs too. See [`crate::dpop`].
        #[cfg(feature = "dpop")]
        #[cfg_attr(docsrs, doc(cfg(feature = "dpop")))]
        pub fn dpop(mut self, key: $crate::dpop::DpopKey) -> Self {
            self.client.dpop = Some(key);
            self
        }

        /// HTTP client, time and size limits. Default: [`HttpOptions::new`].
        pub fn http(mut self, http: HttpOptions) -> Self {
            self.http = http;
            self
        }

        /// `build()` checks the grant and authentication method against this discovered
        /// metadata.
        pub(crate) fn checked_against(
            mut self,
            metadata: std::sync::Arc<$crate::sources::oauth::discovery::Metadata>,
        ) -> Self {
            self.client.issuer = Some(metadata);
            self
        }
    };
}
pub(crate) use oauth_request_setters;

/// How a confidential client proves who it is at the token endpoint.
///
/// Strings, [`SecretString`]s and [`Secret`]s convert into [`Credential::Secret`]; a
/// [`SigningKey`](crate::sources::SigningKey) (feature `signing`) into [`Credential::PrivateKeyJwt`].
///
/// ```
/// use tokenwarden::sources::{ClientCredentials, Credential, Secret};
///
/// // A secret from memory, one from a file re-read at every fetch, and mutual TLS.
/// let _ = ClientCredentials::builder("https://auth.example.com/token", "svc", "s3cr3t");
/// let _ = ClientCredentials::builder("https://auth.example.com/token", "svc", Secret::file("/run/secrets/svc"));
/// let _ = ClientCredentials::builder("https://auth.example.com/token", "svc", Credential::MutualTls);
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Credential {
    /// A shared secret, sent as [`ClientAuth`] says (`client_secret_basic` or
    /// `client_secret_post`).
    Secret(Secret),
    /// A JWT signed with the client's private key, fresh for every request: `private_key_jwt`
    /// (RFC 7523 section 2.2, OpenID Connect Core section 9). Claims: `iss` and `sub` the
    /// client id, `aud` the token endpoint, a random `jti`, `iat` now, `exp` 5 minutes later.
    #[cfg(feature = "signing")]
    #[cfg_attr(docsrs, doc(cfg(feature = "signing")))]
    PrivateKeyJwt(crate::sources::SigningKey),
    /// Mutual TLS (`tls_client_auth` or `self_signed_tls_client_auth`, RFC 8705 section 2):
    /// the client certificate set with [`HttpOptions::identity`](super::http::HttpOptions::identity)
    /// (or on your own client) proves who the client is; only `client_id` is sent.
    MutualTls,
}

impl<T: Into<Secret>> From<T> for Credential {
    fn from(secret: T) -> Credential {
        Credential::Secret(secret.into())
    }
}

#[cfg(feature = "signing")]
impl From<crate::sources::SigningKey> for Credential {
    fn from(key: crate::sources::SigningKey) -> Credential {
        Credential::PrivateKeyJwt(key)
    }
}

/// A client's identity at the token endpoint; the credential is optional (public clients).
#[derive(Clone)]
pub(crate) struct Client {
    pub(crate) id: Option<String>,
    pub(crate) credential: Option<Credential>,
    pub(crate) auth: ClientAuth,
}

/// What every OAuth2 grant sends besides its own parameters: where, as which client, how
/// encoded, and the configured extra parameters (scope, audience, ...).
#[derive(Clone)]
pub(crate) struct TokenRequest {
    pub(crate) endpoint: Endpoint,
    pub(crate) client: Client,
    pub(crate) format: BodyFormat,
    pub(crate) params: Vec<(String, String)>,
    /// The DPoP key token requests prove possession of.
    pub(crate) dpop: Option<BoundKey>,
}

/// A DPoP key with feature `dpop`; a type with no values without it, so that the code that
/// passes keys around needs no `cfg` of its own.
#[cfg(feature = "dpop")]
pub(crate) type BoundKey = crate::dpop::DpopKey;
#[cfg(not(feature = "dpop"))]
pub(crate) type BoundKey = std::convert::Infallible;

/// The parts of a client's configuration every grant's builder holds.
#[derive(Default)]
pub(crate) struct ClientConfig {
    pub(crate) id: Option<String>,
    pub(crate) credential: Option<Credential>,
    pub(crate) auth: ClientAuth,
    pub(crate) format: BodyFormat,
    pub(crate) params: Vec<(String, String)>,
    /// The discovered metadata to check the grant and authentication method against.
    pub(crate) issuer: Option<std::sync::Arc<super::discovery::Metadata>>,
    pub(crate) dpop: Option<BoundKey>,
}

impl TokenRequest {
    /// The request of a grant (`grant_type`) at `endpoint`, after checking the credential can
    /// work and, when the endpoint was discovered, that the server offers the grant and
    /// accepts the authentication method.
    pub(crate) fn new(
        endpoint: Endpoint,
        client: ClientConfig,
        http: &super::http::HttpOptions,
        flow: &str,
        grant_type: &str,
    ) -> Result<TokenRequest, crate::ConfigError> {
        if let Some(credential) = &client.credential {
            check_credential(credential, http, &endpoint, flow)?;
        }
        if let Some(issuer) = &client.issuer {
            issuer.check(grant_type, client.credential.as_ref(), client.auth)?;
        }
        Ok(TokenRequest {
            endpoint,
            client: Client {
                id: client.id,
                credential: client.credential,
                auth: client.auth,
            },
            format: client.format,
            params: client.params,
            dpop: client.dpop,
        })
    }
}

/// `token`, bound to `key` if the server bound it (`token_type: DPoP`). A server that answers
/// `Bearer` to a request with a proof does not do DPoP: the token is a plain bearer token.
pub(crate) fn bind(token: crate::Token, key: Option<&BoundKey>) -> crate::Token {
    let Some(key) = key else {
        return token;
    };
    #[cfg(feature = "dpop")]
    {
        if token.token_type().eq_ignore_ascii_case("DPoP") {
            token.with_token_type("DPoP").with_dpop_key(key.clone())
        } else {
            token
        }
    }
    #[cfg(not(feature = "dpop"))]
    match *key {}
}

/// A request ready to send, and the secrets it carries (to scrub from any error).
pub(crate) struct Prepared {
    pub(crate) request: RequestBuilder,
    pub(crate) secrets: Vec<SecretString>,
}

impl TokenRequest {
    /// Sends a grant: its own `params`, the `sent` secrets among them (scrubbed from any
    /// error), and reads the token answer. `invalid_grant` is explained as `refused` (the
    /// assertion, the subject token) having been rejected.
    pub(crate) async fn grant(
        &self,
        params: Vec<(&str, &str)>,
        sent: Vec<SecretString>,
        refused: &str,
        shape: &super::response::Shape,
    ) -> Result<crate::Token, FetchError> {
        let Prepared {
            request,
            mut secrets,
        } = self.build(params).await?;
        secrets.extend(sent);
        let key = self.dpop.as_ref();
        let answer = self
            .send(request, &secrets.iter().collect::<Vec<_>>(), key)
            .await
            .map_err(|rejection| explain_invalid_grant(rejection, refused))?;
        let token = super::response::parse_token(
            &answer.body,
            self.endpoint.shown(),
            shape,
            std::time::SystemTime::now(),
        )?;
        Ok(bind(token, key))
    }

    /// Sends a prepared token request. With a DPoP `key`, it carries a proof, and a server
    /// that answers `use_dpop_nonce` with a `DPoP-Nonce` gets the request once more with a
    /// proof that includes it.
    pub(crate) async fn send(
        &self,
        request: RequestBuilder,
        secrets: &[&SecretString],
        key: Option<&BoundKey>,
    ) -> Result<super::http::Answer, super::http::Rejection> {
        let Some(key) = key else {
            return self.endpoint.exchange(request, secrets).await;
        };
        #[cfg(feature = "dpop")]
        {
            use super::http::Rejection;
            let url = self.endpoint.url().as_str();
            let proof =
                || crate::dpop::proof_for(key, "POST", url, None).map_err(Rejection::transport);
            let again = request.try_clone();
            let first = self
                .endpoint
                .exchange(request.header("DPoP", proof()?), secrets)
                .await;
            let asked = match &first {
                Ok(answer) => {
                    let nonce = answer
                        .headers
                        .get("dpop-nonce")
                        .and_then(|v| v.to_str().ok());
                    crate::dpop::remember_nonce(key, url, nonce);
                    false
                }
                Err(rejection) => {
                    let fresh =
                        crate::dpop::remember_nonce(key, url, rejection.dpop_nonce.as_deref());
                    fresh && rejection.code.as_deref() == Some("use_dpop_nonce")
                }
            };
            match (asked, again) {
                (true, Some(again)) => {
                    let answer = self
                        .endpoint
                        .exchange(again.header("DPoP", proof()?), secrets)
                        .await?;
                    let nonce = answer
                        .headers
                        .get("dpop-nonce")
                        .and_then(|v| v.to_str().ok());
                    crate::dpop::remember_nonce(key, url, nonce);
                    Ok(answer)
                }
                _ => first,
            }
        }
        #[cfg(not(feature = "dpop"))]
        match *key {}
    }

    /// The request for a grant: its own parameters first, then the configured ones, plus the
    /// client's authentication (a secret read now, or an assertion signed now).
    pub(crate) async fn build(&self, params: Vec<(&str, &str)>) -> Result<Prepared, FetchError> {
        let mut secrets = Vec::new();
        let mut auth_params: Vec<(&str, String)> = Vec::new();
        let mut request = self.endpoint.post();
        let id = self.client.id.as_deref();
        match &self.client.credential {
            Some(Credential::Secret(secret)) => {
                let secret = secret.read("the client secret").await?;
                match (self.client.auth, id) {
                    (ClientAuth::Basic, Some(id)) => {
                        request = request.header(AUTHORIZATION, basic(id, &secret)?);
                    }
                    _ => {
                        auth_params.extend(id.map(|id| ("client_id", id.to_owned())));
                        auth_params.push(("client_secret", secret.expose_secret().to_owned()));
                    }
                }
                secrets.push(secret);
            }
            #[cfg(feature = "signing")]
            Some(Credential::PrivateKeyJwt(key)) => {
                let id = id.unwrap_or_default();
                let assertion = super::assertion::client_assertion(key, id, self.endpoint.shown())?;
                auth_params.extend([
                    ("client_id", id.to_owned()),
                    (
                        "client_assertion_type",
                        super::assertion::CLIENT_ASSERTION_TYPE.to_owned(),
                    ),
                    ("client_assertion", assertion.expose_secret().to_owned()),
                ]);
                secrets.push(assertion);
            }
            Some(Credential::MutualTls) | None => {
                auth_params.extend(id.map(|id| ("client_id", id.to_owned())));
            }
        }
        let mut params = params;
        params.extend(self.params.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        params.extend(auth_params.iter().map(|(k, v)| (*k, v.as_str())));
        match self.format {
            BodyFormat::Form => {
                let mut form = form_urlencoded::Serializer::new(String::new());
                form.extend_pairs(params);
                request = request
                    .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
                    .body(form.finish());
            }
            BodyFormat::Json => {
                let object: Map<String, Value> = params
                    .into_iter()
                    .map(|(k, v)| (k.to_owned(), Value::String(v.to_owned())))
                    .collect();
                request = request
                    .header(CONTENT_TYPE, "application/json")
                    .body(Value::Object(object).to_string());
            }
        }
        // The owned copies of secrets in `auth_params` go now; the body is reqwest's.
        for (_, value) in &mut auth_params {
            zeroize::Zeroize::zeroize(value);
        }
        Ok(Prepared { request, secrets })
    }
}

impl fmt::Debug for TokenRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenRequest")
            .field("endpoint", &self.endpoint.shown())
            .field("client_id", &self.client.id)
            .field("auth", &self.client.auth)
            .field("format", &self.format)
            .finish_non_exhaustive()
    }
}

/// A rejection, with `invalid_grant` explained: `what` (the refresh token, the assertion, the
/// subject token) was refused, and retrying will not help.
pub(crate) fn explain_invalid_grant(
    rejection: super::http::Rejection,
    what: &str,
) -> crate::FetchError {
    match rejection.code.as_deref() {
        Some("invalid_grant") => {
            crate::FetchError::permanent(format!("{}; {what} was rejected", rejection.error))
        }
        _ => rejection.error,
    }
}

/// Refuses a credential that cannot work: an empty secret, mutual TLS without a certificate.
pub(crate) fn check_credential(
    credential: &Credential,
    http: &super::http::HttpOptions,
    endpoint: &Endpoint,
    flow: &str,
) -> Result<(), crate::ConfigError> {
    let problem = match credential {
        Credential::Secret(secret) if secret.is_empty_value() => "the client secret is empty",
        Credential::MutualTls if !http.can_present_a_certificate() => {
            "mutual TLS needs a client certificate: set HttpOptions::identity (or give \
             HttpOptions::client_builder a builder with one)"
        }
        _ => return Ok(()),
    };
    Err(crate::ConfigError::new(format!(
        "{flow} for {}: {problem}",
        endpoint.shown()
    )))
}

/// `Basic base64(urlencode(id) ":" urlencode(secret))`, marked sensitive. (Base64 always fits
/// in a header; the error path exists so nothing here can panic.)
fn basic(id: &str, secret: &SecretString) -> Result<HeaderValue, FetchError> {
    let encode = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let credentials = format!("{}:{}", encode(id), encode(secret.expose_secret()));
    sensitive_authorization("Basic", &STANDARD.encode(credentials))
        .map_err(|_| FetchError::permanent("the client credentials cannot go in a header"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_are_form_encoded_first() {
        let value = basic("my client", &SecretString::from("s3:cr/t")).unwrap();
        let encoded = value.to_str().unwrap().strip_prefix("Basic ").unwrap();
        let decoded = String::from_utf8(STANDARD.decode(encoded).unwrap()).unwrap();
        assert_eq!(decoded, "my+client:s3%3Acr%2Ft");
        assert!(value.is_sensitive());
    }
}
