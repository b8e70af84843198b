//! [`JwtBearer`]: the JWT-bearer authorization grant (RFC 7523 section 2.1), the flow of cloud
//! service accounts. Feature `signing`.

use std::fmt;
use std::time::{Duration, SystemTime};

use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value};

use super::oauth::assertion::{self, ASSERTION_LIFETIME, ServiceAccountKey, SigningKey};
use super::oauth::client::{
    self as oauth, BodyFormat, ClientAuth, ClientConfig, Credential, TokenRequest,
};
use super::oauth::http::{Endpoint, HttpOptions};
use super::oauth::response::Shape;
use crate::{ConfigError, FetchContext, FetchFuture, TokenSource};

/// `grant_type` of the JWT-bearer grant.
const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

/// Gets tokens with the JWT-bearer grant: each fetch signs a fresh assertion (new `jti`, `iat`
/// now, `exp` after [`assertion_lifetime`](JwtBearerBuilder::assertion_lifetime), default
/// 5 minutes) and `POST`s `grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer` with it.
///
/// Claims: `iss` the issuer given (a service account's email), `sub` the
/// [`subject`](JwtBearerBuilder::subject) (default: the issuer), `aud` the token endpoint
/// (or [`audience`](JwtBearerBuilder::audience)), plus any [`claim`](JwtBearerBuilder::claim).
/// A client credential is optional (RFC 7523 section 3.1 lets the assertion stand alone).
/// Errors are read as for the other OAuth2 grants; `invalid_grant` (a rejected assertion:
/// wrong key, clock skew, unknown account) is permanent.
///
/// ```no_run
/// use tokenwarden::Refresher;
/// use tokenwarden::sources::{JwtBearer, SigningKey};
///
/// # fn run(pem: &[u8]) -> Result<(), tokenwarden::Error> {
/// let key = SigningKey::es256_pem(pem)?.key_id("key-1");
/// let source = JwtBearer::builder("https://idp.example.com/oauth2/token", "svc-reports", key)
///     .subject("reports@example.com")
///     .scope("reports.read")
///     .build()?;
/// let handle = Refresher::builder(source).name("reports").spawn();
/// # Ok(()) }
/// ```
pub struct JwtBearer {
    request: TokenRequest,
    key: SigningKey,
    issuer: String,
    subject: String,
    audience: String,
    lifetime: Duration,
    claims: Map<String, Value>,
}

impl JwtBearer {
    /// Starts configuring the grant at `token_url`, with assertions issued by `issuer` and
    /// signed by `key`.
    pub fn builder(
        token_url: impl Into<String>,
        issuer: impl Into<String>,
        key: SigningKey,
    ) -> JwtBearerBuilder {
        JwtBearerBuilder {
            token_url: token_url.into(),
            issuer: issuer.into(),
            key,
            subject: None,
            audience: None,
            lifetime: ASSERTION_LIFETIME,
            claims: Map::new(),
            scope_as_claim: false,
            client: ClientConfig::default(),
            http: HttpOptions::default(),
        }
    }

    /// Starts configuring the grant for a service-account key file: its `token_uri`, issued by
    /// and about its `client_email`, the `kid` its `private_key_id`, and the
    /// [`scope`](JwtBearerBuilder::scope) sent as a claim of the assertion, as Google's token
    /// endpoint expects.
    pub fn service_account(key: ServiceAccountKey) -> JwtBearerBuilder {
        let mut builder = JwtBearer::builder(key.token_uri, key.client_email, key.key);
        builder.scope_as_claim = true;
        builder
    }
}

impl TokenSource for JwtBearer {
    fn fetch(&self, _ctx: FetchContext) -> FetchFuture<'_> {
        Box::pin(async move {
            let claims = assertion::assertion_claims(
                &self.issuer,
                &self.subject,
                &self.audience,
                SystemTime::now(),
                self.lifetime,
                &assertion::new_jti(),
                &self.claims,
            );
            let assertion: SecretString = self.key.sign(&claims)?;
            let params = vec![
                ("grant_type", GRANT_TYPE),
                ("assertion", assertion.expose_secret()),
            ];
            self.request
                .grant(
                    params,
                    vec![assertion.clone()],
                    "the assertion",
                    &Shape::oauth(),
                )
                .await
        })
    }

    fn origin(&self) -> Option<String> {
        Some(self.request.endpoint.shown().to_owned())
    }
}

impl fmt::Debug for JwtBearer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtBearer")
            .field("request", &self.request)
            .field("issuer", &self.issuer)
            .field("subject", &self.subject)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

/// Configures [`JwtBearer`]; [`build`](JwtBearerBuilder::build) checks it.
#[must_use = "a builder does nothing until built"]
pub struct JwtBearerBuilder {
    token_url: String,
    issuer: String,
    key: SigningKey,
    subject: Option<String>,
    audience: Option<String>,
    lifetime: Duration,
    claims: Map<String, Value>,
    scope_as_claim: bool,
    client: ClientConfig,
    http: HttpOptions,
}

impl JwtBearerBuilder {
    /// The `sub` claim: whom the token is for (a user to impersonate with domain-wide
    /// delegation, say). Default: the issuer.
    pub fn subject(mut self, subject: impl Into<String>) -> Self {
        self.subject = Some(subject.into());
        self
    }

    /// The `aud` claim. Default: the token endpoint URL.
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audience = Some(audience.into());
        self
    }

    /// Any other claim of the assertion (`target_audience`, say). The registered claims
    /// (`iss`, `sub`, `aud`, `iat`, `exp`, `jti`) are always the builder's.
    pub fn claim(mut self, name: impl Into<String>, value: impl Into<Value>) -> Self {
        self.claims.insert(name.into(), value.into());
        self
    }

    /// How long each assertion is valid. Default 5 minutes; servers cap it (Google at 1 hour).
    pub fn assertion_lifetime(mut self, lifetime: Duration) -> Self {
        self.lifetime = lifetime;
        self
    }

    oauth::oauth_request_setters!();

    /// Authenticates the client too (RFC 7523 section 3.1 makes it optional).
    pub fn client(
        mut self,
        client_id: impl Into<String>,
        credential: impl Into<Credential>,
    ) -> Self {
        self.client.id = Some(client_id.into());
        self.client.credential = Some(credential.into());
        self
    }

    /// Checks the configuration.
    ///
    /// # Errors
    ///
    /// If the URL is invalid or not https (loopback excepted), the issuer is empty, or the
    /// assertion lifetime is zero.
    pub fn build(mut self) -> Result<JwtBearer, ConfigError> {
        let endpoint = Endpoint::new(&self.token_url, &self.http)?;
        let problem = if self.issuer.is_empty() {
            Some("the issuer is empty")
        } else if self.lifetime < Duration::from_secs(1) {
            Some("the assertion lifetime is under a second")
        } else {
            None
        };
        if let Some(problem) = problem {
            return Err(ConfigError::new(format!(
                "JWT-bearer grant for {}: {problem}",
                endpoint.shown()
            )));
        }
        if self.scope_as_claim {
            // Google's token endpoint reads the scopes from the assertion.
            let (scopes, params) = std::mem::take(&mut self.client.params)
                .into_iter()
                .partition::<Vec<_>, _>(|(name, _)| name == "scope");
            self.client.params = params;
            if let Some((_, scope)) = scopes.into_iter().last() {
                self.claims.insert("scope".into(), Value::String(scope));
            }
        }
        let audience = self.audience.unwrap_or_else(|| endpoint.shown().to_owned());
        Ok(JwtBearer {
            subject: self.subject.unwrap_or_else(|| self.issuer.clone()),
            issuer: self.issuer,
            audience,
            key: self.key,
            lifetime: self.lifetime,
            claims: self.claims,
            request: TokenRequest::new(
                endpoint,
                self.client,
                &self.http,
                "JWT-bearer grant",
                GRANT_TYPE,
            )?,
        })
    }
}

impl fmt::Debug for JwtBearerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtBearerBuilder")
            .field("token_url", &self.token_url)
            .field("issuer", &self.issuer)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}
