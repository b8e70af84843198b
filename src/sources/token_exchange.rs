//! [`TokenExchange`]: OAuth 2.0 token exchange (RFC 8693), the flow of workload identity
//! federation.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use secrecy::{ExposeSecret, SecretString};

use super::Secret;
use super::oauth::client::{
    self as oauth, BodyFormat, ClientAuth, ClientConfig, Credential, TokenRequest,
};
use super::oauth::http::{Endpoint, HttpOptions};
use super::oauth::response::Shape;
use crate::{ConfigError, FetchContext, FetchFuture, TokenSource};

const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
/// `subject_token_type` of a JWT (a Kubernetes service-account token, an OIDC ID token).
pub const TOKEN_TYPE_JWT: &str = "urn:ietf:params:oauth:token-type:jwt";
/// `subject_token_type` (and `requested_token_type`) of an OAuth2 access token.
pub const TOKEN_TYPE_ACCESS_TOKEN: &str = "urn:ietf:params:oauth:token-type:access_token";
/// `subject_token_type` of an OpenID Connect ID token.
pub const TOKEN_TYPE_ID_TOKEN: &str = "urn:ietf:params:oauth:token-type:id_token";

/// The token a [`TokenExchange`] trades in, obtained afresh at every fetch.
#[derive(Clone)]
pub struct SubjectToken {
    from: From,
    token_type: String,
}

#[derive(Clone)]
enum From {
    Source(Arc<dyn TokenSource>),
    File(Secret, PathBuf),
}

impl SubjectToken {
    /// The token another source gets (another provider's client credentials, say); typed
    /// as an access token unless [`token_type`](SubjectToken::token_type) says otherwise.
    pub fn source(source: impl TokenSource + 'static) -> SubjectToken {
        SubjectToken {
            from: From::Source(Arc::new(source)),
            token_type: TOKEN_TYPE_ACCESS_TOKEN.into(),
        }
    }

    /// The token in a file, read at every fetch (Kubernetes rotates a projected
    /// service-account token in place, hourly by default); typed as a JWT unless
    /// [`token_type`](SubjectToken::token_type) says otherwise.
    pub fn file(path: impl Into<PathBuf>) -> SubjectToken {
        let path = path.into();
        SubjectToken {
            from: From::File(Secret::file(path.clone()), path),
            token_type: TOKEN_TYPE_JWT.into(),
        }
    }

    /// The `subject_token_type` sent (an RFC 8693 token type URI).
    pub fn token_type(mut self, token_type: impl Into<String>) -> SubjectToken {
        self.token_type = token_type.into();
        self
    }

    async fn get(&self, ctx: &FetchContext) -> Result<SecretString, crate::FetchError> {
        match &self.from {
            From::File(secret, _) => secret.read("the subject token").await,
            From::Source(source) => {
                let token = source
                    .fetch(FetchContext::new(ctx.reason()))
                    .await
                    .map_err(|e| e.prefixed("getting the subject token failed: "))?;
                Ok(SecretString::from(token.expose_secret()))
            }
        }
    }
}

impl fmt::Debug for SubjectToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut debug = f.debug_struct("SubjectToken");
        match &self.from {
            From::Source(source) => debug.field("source", &source.origin()),
            From::File(_, path) => debug.field("file", path),
        };
        debug.field("token_type", &self.token_type).finish()
    }
}

/// Gets tokens with OAuth 2.0 token exchange (RFC 8693): each fetch obtains the subject token
/// (from a file or another source) and `POST`s
/// `grant_type=urn:ietf:params:oauth:grant-type:token-exchange` with it.
///
/// The answer is read as an RFC 6749 token answer; `issued_token_type` is kept in
/// [`Token::extra`](crate::Token::extra), and a `token_type` of `N_A` (the issued token is not
/// an access token) is sent as `Bearer`. A client credential is optional. `invalid_grant` (the
/// subject token was refused: expired, wrong audience) is permanent; `invalid_target` too.
///
/// ```no_run
/// use tokenwarden::Refresher;
/// use tokenwarden::sources::{SubjectToken, TokenExchange};
///
/// # fn run() -> Result<(), tokenwarden::Error> {
/// // Workload identity federation from a Kubernetes projected service-account token.
/// let subject = SubjectToken::file("/var/run/secrets/tokens/idp-token");
/// let source = TokenExchange::builder("https://sts.example.com/v1/token", subject)
///     .audience("//iam.example.com/pools/prod/providers/k8s")
///     .scope("https://www.example.com/auth/cloud-platform")
///     .build()?;
/// let handle = Refresher::builder(source).name("federated").spawn();
/// # Ok(()) }
/// ```
pub struct TokenExchange {
    request: TokenRequest,
    subject: SubjectToken,
}

impl TokenExchange {
    /// Starts configuring an exchange of `subject` at `token_url`.
    pub fn builder(token_url: impl Into<String>, subject: SubjectToken) -> TokenExchangeBuilder {
        TokenExchangeBuilder {
            token_url: token_url.into(),
            subject,
            client: ClientConfig::default(),
            http: HttpOptions::default(),
        }
    }
}

impl TokenSource for TokenExchange {
    fn fetch(&self, ctx: FetchContext) -> FetchFuture<'_> {
        Box::pin(async move {
            let subject = self.subject.get(&ctx).await?;
            let params = vec![
                ("grant_type", GRANT_TYPE),
                ("subject_token", subject.expose_secret()),
                ("subject_token_type", &self.subject.token_type),
            ];
            let token = self
                .request
                .grant(
                    params,
                    vec![subject.clone()],
                    "the subject token",
                    &Shape::oauth(),
                )
                .await?;
            Ok(if token.token_type().eq_ignore_ascii_case("N_A") {
                token.with_token_type("Bearer")
            } else {
                token
            })
        })
    }

    fn origin(&self) -> Option<String> {
        Some(self.request.endpoint.shown().to_owned())
    }
}

impl fmt::Debug for TokenExchange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenExchange")
            .field("request", &self.request)
            .field("subject", &self.subject)
            .finish()
    }
}

/// Configures [`TokenExchange`]; [`build`](TokenExchangeBuilder::build) checks it.
#[must_use = "a builder does nothing until built"]
pub struct TokenExchangeBuilder {
    token_url: String,
    subject: SubjectToken,
    client: ClientConfig,
    http: HttpOptions,
}

impl TokenExchangeBuilder {
    oauth::oauth_request_setters!();

    /// The `audience` parameter: the service the new token is for.
    pub fn audience(self, audience: impl Into<String>) -> Self {
        self.param("audience", audience)
    }

    /// The `resource` parameter (a URI of the service the new token is for).
    pub fn resource(self, resource: impl Into<String>) -> Self {
        self.param("resource", resource)
    }

    /// The `requested_token_type` parameter. Default: none (the server's choice, usually an
    /// access token).
    pub fn requested_token_type(self, token_type: impl Into<String>) -> Self {
        self.param("requested_token_type", token_type)
    }

    /// Authenticates the client (optional in RFC 8693; some servers require it). A client
    /// without a credential sends just its id: [`client_id`](TokenExchangeBuilder::client_id).
    pub fn client(
        mut self,
        client_id: impl Into<String>,
        credential: impl Into<Credential>,
    ) -> Self {
        self.client.id = Some(client_id.into());
        self.client.credential = Some(credential.into());
        self
    }

    /// A public client's id.
    pub fn client_id(mut self, client_id: impl Into<String>) -> Self {
        self.client.id = Some(client_id.into());
        self
    }

    /// Checks the configuration.
    ///
    /// # Errors
    ///
    /// If the URL is invalid or not https (loopback excepted), the subject token type is
    /// empty, or the client credential cannot work.
    pub fn build(self) -> Result<TokenExchange, ConfigError> {
        let endpoint = Endpoint::new(&self.token_url, &self.http)?;
        if self.subject.token_type.is_empty() {
            return Err(ConfigError::new(format!(
                "token exchange at {}: the subject token type is empty",
                endpoint.shown()
            )));
        }
        Ok(TokenExchange {
            request: TokenRequest::new(
                endpoint,
                self.client,
                &self.http,
                "token exchange",
                GRANT_TYPE,
            )?,
            subject: self.subject,
        })
    }
}

impl fmt::Debug for TokenExchangeBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenExchangeBuilder")
            .field("token_url", &self.token_url)
            .field("subject", &self.subject)
            .field("client_id", &self.client.id)
            .finish_non_exhaustive()
    }
}
