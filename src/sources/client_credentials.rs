//! [`ClientCredentials`]: the OAuth2 client credentials grant (RFC 6749 section 4.4).

use std::fmt;
use std::time::Duration;

use super::oauth::client::{
    self as oauth, BodyFormat, ClientAuth, ClientConfig, Credential, TokenRequest,
};
use super::oauth::http::{Endpoint, HttpOptions};
use super::oauth::response::Shape;
use crate::ConfigError;
use crate::{FetchContext, FetchFuture, TokenSource};

/// Gets tokens with the OAuth2 client credentials grant: a `POST` of
/// `grant_type=client_credentials` to the token endpoint, the client authenticated with HTTP
/// Basic (default) or in the body, the body form-encoded (default) or JSON.
///
/// The answer is read per RFC 6749 section 5.1 (`expires_at` is accepted too); fields the
/// server adds (regional endpoints, an environment id) are kept in [`Token::extra`]. Errors
/// per section 5.2: `invalid_client`, `invalid_scope` and other 4xx answers are permanent;
/// 408, 429, 5xx and `temporarily_unavailable` are transient, with `Retry-After` honoured.
///
/// [`Token::extra`]: crate::Token::extra
///
/// ```no_run
/// use tokenwarden::Refresher;
/// use tokenwarden::sources::{BodyFormat, ClientAuth, ClientCredentials};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let source = ClientCredentials::builder("https://auth.example.com/oauth/token", "my-client", "my-secret")
///     .scope("read:things")
///     .audience("https://api.example.com")
///     .build()?;
/// let handle = Refresher::builder(source).name("example-api").spawn();
/// # Ok(()) }
/// ```
pub struct ClientCredentials {
    request: TokenRequest,
    shape: Shape,
}

impl ClientCredentials {
    /// Starts configuring the grant against `token_url` for this client.
    pub fn builder(
        token_url: impl Into<String>,
        client_id: impl Into<String>,
        credential: impl Into<Credential>,
    ) -> ClientCredentialsBuilder {
        ClientCredentialsBuilder {
            token_url: token_url.into(),
            client: ClientConfig {
                id: Some(client_id.into()),
                credential: Some(credential.into()),
                ..ClientConfig::default()
            },
            default_lifetime: None,
            http: HttpOptions::default(),
        }
    }
}

impl TokenSource for ClientCredentials {
    fn fetch(&self, _ctx: FetchContext) -> FetchFuture<'_> {
        Box::pin(async move {
            self.request
                .grant(
                    vec![("grant_type", "client_credentials")],
                    Vec::new(),
                    "the client's grant",
                    &self.shape,
                )
                .await
        })
    }

    fn origin(&self) -> Option<String> {
        Some(self.request.endpoint.shown().to_owned())
    }
}

impl fmt::Debug for ClientCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ClientCredentials")
            .field(&self.request)
            .finish()
    }
}

/// Configures [`ClientCredentials`]; [`build`](ClientCredentialsBuilder::build) checks it.
#[must_use = "a builder does nothing until built"]
pub struct ClientCredentialsBuilder {
    token_url: String,
    client: ClientConfig,
    default_lifetime: Option<Duration>,
    http: HttpOptions,
}

impl ClientCredentialsBuilder {
    oauth::oauth_request_setters!();

    /// The `audience` parameter (Auth0 and others).
    pub fn audience(self, audience: impl Into<String>) -> Self {
        self.param("audience", audience)
    }

    /// The `resource` parameter (RFC 8707).
    pub fn resource(self, resource: impl Into<String>) -> Self {
        self.param("resource", resource)
    }

    /// Lifetime assumed when the answer states none (no `expires_in`/`expires_at`, not a JWT
    /// with `exp`). Without it the refresher's `default_lifetime` (1 h) applies.
    pub fn default_lifetime(mut self, lifetime: Duration) -> Self {
        self.default_lifetime = Some(lifetime);
        self
    }

    /// Checks the configuration.
    ///
    /// # Errors
    ///
    /// If the URL is invalid or not https (loopback excepted), or the client id is empty.
    pub fn build(self) -> Result<ClientCredentials, ConfigError> {
        let endpoint = Endpoint::new(&self.token_url, &self.http)?;
        if self.client.id.as_deref().is_none_or(str::is_empty) {
            return Err(ConfigError::new(format!(
                "client credentials for {}: the client id is empty",
                endpoint.shown()
            )));
        }
        Ok(ClientCredentials {
            request: TokenRequest::new(
                endpoint,
                self.client,
                &self.http,
                "client credentials",
                "client_credentials",
            )?,
            shape: Shape {
                default_lifetime: self.default_lifetime,
                ..Shape::oauth()
            },
        })
    }
}

impl fmt::Debug for ClientCredentialsBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientCredentialsBuilder")
            .field("client_id", &self.client.id)
            .field("auth", &self.client.auth)
            .field("format", &self.client.format)
            .finish_non_exhaustive()
    }
}
