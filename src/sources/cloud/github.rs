//! [`GitHubActionsOidc`]: OpenID Connect ID tokens of a GitHub Actions job.

use std::fmt;
use std::time::SystemTime;

use reqwest::header::AUTHORIZATION;
use secrecy::{ExposeSecret, SecretString};

use crate::sources::HttpOptions;
use crate::sources::oauth::http::Endpoint;
use crate::sources::oauth::response::{self, Shape};
use crate::token::sensitive_authorization;
use crate::{ConfigError, FetchContext, FetchError, FetchFuture, Token, TokenSource, jwt};

/// Where the runner says to ask for a token (a URL with a query already).
pub const ACTIONS_ID_TOKEN_REQUEST_URL: &str = "ACTIONS_ID_TOKEN_REQUEST_URL";
/// The bearer token that request needs.
pub const ACTIONS_ID_TOKEN_REQUEST_TOKEN: &str = "ACTIONS_ID_TOKEN_REQUEST_TOKEN";

/// The ID token of the GitHub Actions job this runs in, for one audience: what cloud providers
/// trade for their own credentials (workload identity federation, through
/// [`TokenExchange`](crate::sources::TokenExchange) with
/// [`SubjectToken::source`](crate::sources::SubjectToken::source)).
///
/// The job needs `permissions: id-token: write`; the runner then sets
/// `ACTIONS_ID_TOKEN_REQUEST_URL` and `ACTIONS_ID_TOKEN_REQUEST_TOKEN`, which
/// [`from_env`](GitHubActionsOidc::from_env) reads. The request token is a secret: never in
/// `Debug`, messages or logs. The ID token's expiry is its JWT `exp` (GitHub's live for minutes),
/// so the refresher asks again well before it. Requests are bounded by 10 s each.
///
/// # Example
///
/// ```no_run
/// use tokenwarden::Refresher;
/// use tokenwarden::sources::cloud::GitHubActionsOidc;
///
/// # async fn run() -> Result<(), tokenwarden::Error> {
/// let source = GitHubActionsOidc::from_env()?.audience("sts.amazonaws.com").build()?;
/// let id_token = Refresher::builder(source).name("github-oidc").spawn();
/// # let _ = id_token; Ok(()) }
/// ```
pub struct GitHubActionsOidc {
    endpoint: Endpoint,
    request_token: SecretString,
}

impl GitHubActionsOidc {
    /// The runner's endpoint and request token, from the environment.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming the variable that is missing (the job lacks
    /// `permissions: id-token: write`, or this is not a GitHub Actions job).
    pub fn from_env() -> Result<GitHubActionsOidcBuilder, ConfigError> {
        let read = |name: &str| {
            std::env::var(name).map_err(|_| {
                ConfigError::new(format!(
                    "{name} is not set: not a GitHub Actions job, or the job lacks \
                     `permissions: id-token: write`"
                ))
            })
        };
        let url = read(ACTIONS_ID_TOKEN_REQUEST_URL)?;
        let token = read(ACTIONS_ID_TOKEN_REQUEST_TOKEN)?;
        Ok(GitHubActionsOidc::builder(url, token))
    }

    /// An explicit request URL and request token (what the runner puts in the environment).
    pub fn builder(
        request_url: impl Into<String>,
        request_token: impl Into<String>,
    ) -> GitHubActionsOidcBuilder {
        GitHubActionsOidcBuilder {
            url: request_url.into(),
            request_token: SecretString::from(request_token.into()),
            audience: None,
            http: HttpOptions::new().timeout(std::time::Duration::from_secs(10)),
        }
    }
}

impl TokenSource for GitHubActionsOidc {
    fn fetch(&self, _ctx: FetchContext) -> FetchFuture<'_> {
        Box::pin(async move {
            let shown = self.endpoint.shown();
            let bearer = sensitive_authorization("Bearer", self.request_token.expose_secret())
                .map_err(|_| {
                    FetchError::permanent(format!(
                        "{shown}: the request token has characters that cannot go in a header"
                    ))
                })?;
            let request = self.endpoint.get().header(AUTHORIZATION, bearer);
            let answer = self
                .endpoint
                .exchange(request, &[&self.request_token])
                .await?;
            parse(&answer.body, shown)
        })
    }

    fn origin(&self) -> Option<String> {
        Some(self.endpoint.shown().to_owned())
    }
}

/// The ID token in the runner's answer, `{"value": "<jwt>"}`: read as any token answer is
/// (JSON, the field, header-safe), then held to what an ID token must state, its `exp`.
fn parse(body: &[u8], endpoint: &str) -> Result<Token, FetchError> {
    let shape = Shape {
        token_fields: vec!["value".into()],
        ..Shape::oauth()
    };
    let token = response::parse_token(body, endpoint, &shape, SystemTime::now())?;
    let exp = jwt::claims(token.expose_secret()).and_then(|claims| jwt::expiry(&claims));
    if exp.is_none() {
        return Err(FetchError::transient(format!(
            "{endpoint}: field `value` is not a JWT with an `exp` claim"
        )));
    }
    Ok(token)
}

impl fmt::Debug for GitHubActionsOidc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GitHubActionsOidc")
            .field("endpoint", &self.endpoint.shown())
            .field("request_token", &"[redacted]")
            .finish()
    }
}

/// Configures [`GitHubActionsOidc`]; [`build`](GitHubActionsOidcBuilder::build) checks it.
#[must_use = "a builder does nothing until built"]
pub struct GitHubActionsOidcBuilder {
    url: String,
    request_token: SecretString,
    audience: Option<String>,
    http: HttpOptions,
}

impl GitHubActionsOidcBuilder {
    /// The `aud` the ID token is for (default: the repository owner's URL, GitHub's default).
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audience = Some(audience.into());
        self
    }

    /// HTTP settings (default: 10 s per request).
    pub fn http(mut self, http: HttpOptions) -> Self {
        self.http = http;
        self
    }

    /// Checks the settings.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] if the request URL does not parse or is not https (plain http only to
    /// loopback), or the audience is empty.
    pub fn build(self) -> Result<GitHubActionsOidc, ConfigError> {
        let mut url = self.url.trim().to_owned();
        if let Some(audience) = &self.audience {
            if audience.trim().is_empty() {
                return Err(ConfigError::new(
                    "GitHub Actions OIDC: the audience is empty",
                ));
            }
            url.push(if url.contains('?') { '&' } else { '?' });
            url.push_str(
                &form_urlencoded::Serializer::new(String::new())
                    .append_pair("audience", audience)
                    .finish(),
            );
        }
        let endpoint = Endpoint::named(&url, &self.http, "GitHub Actions OIDC endpoint")?;
        Ok(GitHubActionsOidc {
            endpoint,
            request_token: self.request_token,
        })
    }
}

impl fmt::Debug for GitHubActionsOidcBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GitHubActionsOidcBuilder")
            .field("audience", &self.audience)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_without_a_jwt_value_are_refused_naming_the_field() {
        for (body, says) in [
            (&b"not json"[..], "not JSON"),
            (br#"{"token":"x"}"#, "no `value`"),
            (br#"{"value":7}"#, "field `value` is not a string"),
            (br#"{"value":"opaque"}"#, "field `value` is not a JWT"),
        ] {
            let message = parse(body, "endpoint").unwrap_err().to_string();
            assert!(message.contains(says), "{message}");
        }
    }
}
