//! [`RefreshTokenGrant`]: the OAuth2 refresh-token grant (RFC 6749 section 6), with rotation.

use std::fmt;
use std::time::SystemTime;

use secrecy::{ExposeSecret, SecretString};

use super::oauth::client::{
    self as oauth, BodyFormat, ClientAuth, ClientConfig, Credential, Prepared, TokenRequest,
};
use super::oauth::http::{Endpoint, HttpOptions};
use super::oauth::response::{self, Shape};
use crate::ConfigError;
use crate::{FetchContext, FetchError, FetchFuture, TokenSource};

/// Gets access tokens with the OAuth2 refresh-token grant, starting from a stored refresh token.
///
/// Each fetch `POST`s `grant_type=refresh_token` with the newest refresh token: the one on the
/// previous token if there is one (so a token restored from a
/// [`TokenStore`](crate::store::TokenStore) carries on), else the one given here. When the
/// server rotates the refresh token, the new one replaces the old; when it does not, the old
/// one is carried over onto the new token. Give the refresher a store
/// ([`RefresherBuilder::store`](crate::RefresherBuilder::store)) and each rotated refresh token
/// is saved **before** the new access token is published, so a crash never loses the only
/// valid refresh token.
///
/// `invalid_grant` (expired or revoked refresh token) is permanent and says that a new login is
/// needed. Its fetches spend a single-use secret
/// ([`spends_single_use_secret`](TokenSource::spends_single_use_secret)): in a fleet they are
/// made only under the fleet's lease. Claims in the access token (an account id) are readable with
/// [`Token::claims`](crate::Token::claims).
///
/// ```no_run
/// use tokenwarden::Refresher;
/// use tokenwarden::sources::RefreshTokenGrant;
/// use tokenwarden::store::FileStore;
///
/// # async fn run(refresh_token_from_login: String) -> Result<(), Box<dyn std::error::Error>> {
/// let source = RefreshTokenGrant::builder("https://auth.example.com/oauth/token", refresh_token_from_login)
///     .client_id("desktop-app")
///     .build()?;
/// let handle = Refresher::builder(source)
///     .store(FileStore::new("/var/lib/myapp/token.json"))
///     .spawn();
/// # Ok(()) }
/// ```
pub struct RefreshTokenGrant {
    request: TokenRequest,
    refresh_token: SecretString,
}

impl RefreshTokenGrant {
    /// Starts configuring the grant against `token_url`, from `refresh_token`.
    pub fn builder(
        token_url: impl Into<String>,
        refresh_token: impl Into<SecretString>,
    ) -> RefreshTokenGrantBuilder {
        RefreshTokenGrantBuilder {
            token_url: token_url.into(),
            refresh_token: refresh_token.into(),
            client: ClientConfig::default(),
            http: HttpOptions::default(),
        }
    }
}

impl TokenSource for RefreshTokenGrant {
    fn fetch(&self, ctx: FetchContext) -> FetchFuture<'_> {
        Box::pin(async move {
            let refresh_token = ctx
                .previous()
                .and_then(|token| token.refresh_token())
                .unwrap_or(&self.refresh_token)
                .clone();
            let endpoint = &self.request.endpoint;
            let Prepared { request, secrets } = self
                .request
                .build(vec![
                    ("grant_type", "refresh_token"),
                    ("refresh_token", refresh_token.expose_secret()),
                ])
                .await?;
            let mut secrets: Vec<&SecretString> = secrets.iter().collect();
            secrets.push(&refresh_token);

            // A refresh token bound to a DPoP key is presented with a proof by that key: the
            // one the previous token (from the store, the fleet) was bound to, else this grant's.
            #[cfg(feature = "dpop")]
            let key = ctx
                .previous()
                .and_then(|token| token.dpop_key())
                .or(self.request.dpop.as_ref());
            #[cfg(not(feature = "dpop"))]
            let key = self.request.dpop.as_ref();
            let answer =
                self.request.send(request, &secrets, key).await.map_err(
                    |rejection| match rejection.code.as_deref() {
                        Some("invalid_grant") => FetchError::permanent(format!(
                            "{}; the refresh token was rejected: a new login is needed",
                            rejection.error
                        )),
                        _ => rejection.error,
                    },
                )?;
            let token = response::parse_refreshed(
                &answer.body,
                endpoint.shown(),
                &Shape::oauth(),
                SystemTime::now(),
                &refresh_token,
            )?;
            Ok(oauth::bind(token, key))
        })
    }

    fn origin(&self) -> Option<String> {
        Some(self.request.endpoint.shown().to_owned())
    }

    /// `true`: servers may rotate the refresh token at every use (OAuth 2.0 Security BCP) and
    /// revoke the grant when a spent one is presented again.
    fn spends_single_use_secret(&self) -> bool {
        true
    }
}

impl fmt::Debug for RefreshTokenGrant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("RefreshTokenGrant")
            .field(&self.request)
            .finish()
    }
}

/// Configures [`RefreshTokenGrant`]; [`build`](RefreshTokenGrantBuilder::build) checks it.
#[must_use = "a builder does nothing until built"]
pub struct RefreshTokenGrantBuilder {
    token_url: String,
    refresh_token: SecretString,
    client: ClientConfig,
    http: HttpOptions,
}

impl RefreshTokenGrantBuilder {
    /// The client id (sent in the body for public clients, or with the secret per `auth`).
    pub fn client_id(mut self, id: impl Into<String>) -> Self {
        self.client.id = Some(id.into());
        self
    }

    /// The client secret, for confidential clients: a value, or a [`Secret::file`] read at
    /// every fetch. Same as `client_credential(secret)`.
    ///
    /// [`Secret::file`]: super::Secret::file
    pub fn client_secret(self, secret: impl Into<super::Secret>) -> Self {
        self.client_credential(Credential::Secret(secret.into()))
    }

    /// How a confidential client proves who it is: a secret, a signed assertion
    /// (`private_key_jwt`), or mutual TLS. Public clients set none (the default).
    pub fn client_credential(mut self, credential: impl Into<Credential>) -> Self {
        self.client.credential = Some(credential.into());
        self
    }

    oauth::oauth_request_setters!();

    /// Checks the configuration.
    ///
    /// # Errors
    ///
    /// If the URL is invalid or not https (loopback excepted), or the refresh token is empty.
    pub fn build(self) -> Result<RefreshTokenGrant, ConfigError> {
        let endpoint = Endpoint::new(&self.token_url, &self.http)?;
        if self.refresh_token.expose_secret().is_empty() {
            return Err(ConfigError::new(format!(
                "refresh-token grant for {}: the refresh token is empty",
                endpoint.shown()
            )));
        }
        Ok(RefreshTokenGrant {
            request: TokenRequest::new(
                endpoint,
                self.client,
                &self.http,
                "refresh-token grant",
                "refresh_token",
            )?,
            refresh_token: self.refresh_token,
        })
    }
}

impl fmt::Debug for RefreshTokenGrantBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RefreshTokenGrantBuilder")
            .field("client_id", &self.client.id)
            .field("auth", &self.client.auth)
            .field("format", &self.client.format)
            .finish_non_exhaustive()
    }
}
