//! [`ApiKeyExchange`]: trading a long-lived API key for short-lived tokens.

use std::fmt;
use std::time::SystemTime;

use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use tracing::debug;

use super::Secret;
use super::oauth::http::{Endpoint, HttpOptions};
use super::oauth::response::{self, Shape};
use crate::ConfigError;
use crate::token::sensitive_authorization;
use crate::{FetchContext, FetchError, FetchFuture, Token, TokenSource, jwt};

/// Trades a long-lived API key for short-lived tokens (often JWTs): a `POST` to a configurable
/// URL with `Authorization: Bearer <key>` and an optional JSON body.
///
/// - The token is read from `token`, `access_token` or `jwt` (configurable), its lifetime from
///   `expires_in` (seconds) or `expires_at` (RFC 3339 or Unix seconds), else the JWT's `exp`.
/// - If the answer has a `refresh_token` and a [`refresh_url`](ApiKeyExchangeBuilder::refresh_url)
///   is set, later fetches `POST {"refresh_token": ...}` there first, and fall back to a fresh
///   exchange with the key when that fails.
/// - **Pass-through:** a key that already is a JWT (three base64url segments whose header is
///   JSON) is handed out as the token, with its `exp`, and never exchanged.
/// - **Opt-out:** with [`opt_out_env`](ApiKeyExchangeBuilder::opt_out_env), an environment
///   variable set to `1`, `true`, `yes` or `on` (trimmed, any case) when the source is built makes
///   it hand out the key itself, for local development.
/// - A 401 answer says plainly that the key was rejected, with the server's detail; it is
///   permanent.
///
/// ```no_run
/// use serde_json::json;
/// use tokenwarden::Refresher;
/// use tokenwarden::sources::ApiKeyExchange;
///
/// # async fn run(api_key: String) -> Result<(), Box<dyn std::error::Error>> {
/// let source = ApiKeyExchange::builder("https://api.example.com/v1/auth/jwt", api_key)
///     .body(json!({ "client_id": "example-sdk/1.2.0" }))
///     .opt_out_env("EXAMPLE_SDK_NO_TOKEN_EXCHANGE")
///     .build()?;
/// let handle = Refresher::builder(source).name("example-api").spawn();
/// # Ok(()) }
/// ```
pub struct ApiKeyExchange {
    key: Secret,
    mode: Mode,
}

enum Mode {
    /// The key is handed out as the token (a JWT already, or opted out).
    KeyIsToken,
    Exchange(Box<Exchange>),
}

struct Exchange {
    endpoint: Endpoint,
    refresh: Option<Endpoint>,
    body: Option<Value>,
    shape: Shape,
}

impl ApiKeyExchange {
    /// Starts configuring an exchange of `api_key` at `url`.
    pub fn builder(url: impl Into<String>, api_key: impl Into<Secret>) -> ApiKeyExchangeBuilder {
        ApiKeyExchangeBuilder {
            url: url.into(),
            key: api_key.into(),
            body: None,
            token_fields: ["token", "access_token", "jwt"].map(String::from).to_vec(),
            refresh_url: None,
            opt_out_env: None,
            http: HttpOptions::default(),
        }
    }

    /// Whether this source hands out the key itself (a JWT key, or opted out) instead of
    /// exchanging it.
    pub fn passes_key_through(&self) -> bool {
        matches!(self.mode, Mode::KeyIsToken)
    }

    async fn exchange(
        &self,
        key: &SecretString,
        endpoint: &Endpoint,
        body: Option<&Value>,
        shape: &Shape,
    ) -> Result<Token, FetchError> {
        let bearer = sensitive_authorization("Bearer", key.expose_secret()).map_err(|_| {
            FetchError::permanent(format!(
                "{}: the API key has characters that cannot go in an HTTP header",
                endpoint.shown()
            ))
        })?;
        let mut request = endpoint.post().header(AUTHORIZATION, bearer);
        if let Some(body) = body {
            request = request
                .header(CONTENT_TYPE, "application/json")
                .body(body.to_string());
        }
        let answer =
            endpoint
                .exchange(request, &[key])
                .await
                .map_err(|rejection| match rejection.status {
                    Some(StatusCode::UNAUTHORIZED) => FetchError::permanent(format!(
                        "{}; the API key was rejected",
                        rejection.error
                    )),
                    _ => rejection.error,
                })?;
        response::parse_token(&answer.body, endpoint.shown(), shape, SystemTime::now())
    }

    async fn refresh(
        &self,
        key: &SecretString,
        endpoint: &Endpoint,
        refresh_token: &SecretString,
        shape: &Shape,
    ) -> Result<Token, FetchError> {
        let request = endpoint
            .post()
            .header(CONTENT_TYPE, "application/json")
            .body(json!({ "refresh_token": refresh_token.expose_secret() }).to_string());
        let answer = endpoint.exchange(request, &[refresh_token, key]).await?;
        response::parse_refreshed(
            &answer.body,
            endpoint.shown(),
            shape,
            SystemTime::now(),
            refresh_token,
        )
    }
}

impl TokenSource for ApiKeyExchange {
    fn fetch(&self, ctx: FetchContext) -> FetchFuture<'_> {
        Box::pin(async move {
            let key = self.key.read("the API key").await?;
            let Mode::Exchange(exchange) = &self.mode else {
                return Ok(Token::new(key));
            };
            // A key from a file is looked at as it is read: it may have become a JWT.
            if self.key.in_memory().is_none() && jwt::is_jwt(key.expose_secret()) {
                return Ok(Token::new(key));
            }
            let Exchange {
                endpoint,
                refresh,
                body,
                shape,
            } = exchange.as_ref();
            let previous_refresh = ctx.previous().and_then(|token| token.refresh_token());
            if let (Some(refresh), Some(refresh_token)) = (refresh, previous_refresh) {
                match self.refresh(&key, refresh, refresh_token, shape).await {
                    Ok(token) => return Ok(token),
                    Err(error) => {
                        debug!(%error, "refreshing failed; exchanging the API key instead");
                    }
                }
            }
            self.exchange(&key, endpoint, body.as_ref(), shape).await
        })
    }

    fn origin(&self) -> Option<String> {
        match &self.mode {
            Mode::KeyIsToken => None,
            Mode::Exchange(exchange) => Some(exchange.endpoint.shown().to_owned()),
        }
    }
}

impl fmt::Debug for ApiKeyExchange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut debug = f.debug_struct("ApiKeyExchange");
        match &self.mode {
            Mode::KeyIsToken => debug.field("mode", &"key passed through"),
            Mode::Exchange(exchange) => debug.field("endpoint", &exchange.endpoint.shown()),
        };
        debug.finish_non_exhaustive()
    }
}

/// Configures [`ApiKeyExchange`]; [`build`](ApiKeyExchangeBuilder::build) checks it.
#[must_use = "a builder does nothing until built"]
pub struct ApiKeyExchangeBuilder {
    url: String,
    key: Secret,
    body: Option<Value>,
    token_fields: Vec<String>,
    refresh_url: Option<String>,
    opt_out_env: Option<String>,
    http: HttpOptions,
}

impl ApiKeyExchangeBuilder {
    /// A JSON body to send with each exchange (e.g. `{"client_id": "my-sdk/1.2"}` so server
    /// logs can attribute mints). Default: no body.
    pub fn body(mut self, body: Value) -> Self {
        self.body = Some(body);
        self
    }

    /// Field names that may hold the token, tried in order. Default: `token`, `access_token`,
    /// `jwt`.
    pub fn token_fields<I, S>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.token_fields = names.into_iter().map(Into::into).collect();
        self
    }

    /// Where to use a `refresh_token` from an earlier answer. Without it, refresh tokens in
    /// answers are kept on the token but every fetch exchanges the key.
    pub fn refresh_url(mut self, url: impl Into<String>) -> Self {
        self.refresh_url = Some(url.into());
        self
    }

    /// The environment variable that, set to an affirmative value when the source is built,
    /// makes it hand out the key itself (for local development against a server that takes
    /// keys directly).
    pub fn opt_out_env(mut self, name: impl Into<String>) -> Self {
        self.opt_out_env = Some(name.into());
        self
    }

    /// HTTP client, time and size limits. Default: [`HttpOptions::new`].
    pub fn http(mut self, http: HttpOptions) -> Self {
        self.http = http;
        self
    }

    /// Checks the configuration and decides between exchanging and passing the key through.
    ///
    /// # Errors
    ///
    /// If the key is empty, no token field is named, or a URL is invalid or not https
    /// (loopback excepted).
    pub fn build(self) -> Result<ApiKeyExchange, ConfigError> {
        if self.key.is_empty_value() {
            return Err(ConfigError::new("API key exchange: the API key is empty"));
        }
        let opted_out = self
            .opt_out_env
            .as_deref()
            .and_then(|name| std::env::var(name).ok())
            .is_some_and(|value| is_affirmative(&value));
        let is_jwt = self
            .key
            .in_memory()
            .is_some_and(|key| jwt::is_jwt(key.expose_secret()));
        if opted_out || is_jwt {
            return Ok(ApiKeyExchange {
                key: self.key,
                mode: Mode::KeyIsToken,
            });
        }
        if self.token_fields.is_empty() {
            return Err(ConfigError::new(
                "API key exchange: no field names to read the token from",
            ));
        }
        let endpoint = Endpoint::new(&self.url, &self.http)?;
        let refresh = self
            .refresh_url
            .map(|url| Endpoint::new(&url, &self.http))
            .transpose()?;
        Ok(ApiKeyExchange {
            key: self.key,
            mode: Mode::Exchange(Box::new(Exchange {
                endpoint,
                refresh,
                body: self.body,
                shape: Shape {
                    token_fields: self.token_fields,
                    ..Shape::oauth()
                },
            })),
        })
    }
}

impl fmt::Debug for ApiKeyExchangeBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKeyExchangeBuilder")
            .field("token_fields", &self.token_fields)
            .field("opt_out_env", &self.opt_out_env)
            .finish_non_exhaustive()
    }
}

/// `1`, `true`, `yes` or `on`, trimmed and in any case; anything else is not an opt-out.
pub(crate) fn is_affirmative(value: &str) -> bool {
    let value = value.trim();
    ["1", "true", "yes", "on"]
        .iter()
        .any(|yes| value.eq_ignore_ascii_case(yes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn affirmative_values() {
        for yes in ["1", "true", "TRUE", " yes ", "On", "\tYES\n"] {
            assert!(is_affirmative(yes), "{yes:?}");
        }
        for no in ["", "0", "false", "no", "off", "y", "enabled", "2", "truee"] {
            assert!(!is_affirmative(no), "{no:?}");
        }
    }

    #[test]
    fn a_jwt_key_is_passed_through_and_an_opaque_one_exchanged() {
        let jwt = jwt::unsigned(&json!({"exp": 2_000_000_000}));
        let source = ApiKeyExchange::builder("https://api.test/jwt", jwt)
            .build()
            .unwrap();
        assert!(source.passes_key_through());
        let source = ApiKeyExchange::builder("https://api.test/jwt", "sk-opaque")
            .build()
            .unwrap();
        assert!(!source.passes_key_through());
        assert!(!format!("{source:?}").contains("sk-opaque"));
    }

    #[test]
    fn configuration_errors_are_named() {
        let err = ApiKeyExchange::builder("https://api.test/jwt", " ")
            .build()
            .unwrap_err();
        assert_eq!(err.to_string(), "API key exchange: the API key is empty");
        let err = ApiKeyExchange::builder("http://api.test/jwt", "k")
            .build()
            .unwrap_err();
        assert!(err.to_string().contains("must use https"), "{err}");
    }
}
