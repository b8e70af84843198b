//! [`TokenAuth`]: a `reqwest-middleware` middleware (feature `middleware`).

use std::time::Duration;

use async_trait::async_trait;
use http::Extensions;
use reqwest::header::AUTHORIZATION;
use reqwest::{Request, Response};
use reqwest_middleware::{Middleware, Next, Result};

use crate::{Token, TokenHandle};

/// Attaches the credential's current token to every request; when the server rejects it (a
/// 401, or `WWW-Authenticate: Bearer error="invalid_token"`), tells the refresher
/// ([`TokenHandle::reject`]) and retries **once** with the new token.
///
/// - Any other answer is handed back untouched, and so is the second answer of a retry.
/// - A request whose body cannot be cloned (a stream) is not retried: its 401 is handed back,
///   but the refresher is still told, so the next request carries a new token.
/// - Many concurrent requests rejected with the same old token cause exactly one refresh. A
///   rejected request waits at most [`max_refresh_wait`](TokenAuth::max_refresh_wait) (default
///   10 s) for the new token; then the server's 401 is handed back.
/// - With no valid token (still starting, or an outage outlived it) the request fails at once
///   with the handle's [`Error`](crate::Error) (as the middleware error), without being sent;
///   [`wait_for_token`](TokenAuth::wait_for_token) lets it wait a bounded time instead.
/// - Every wait ends when the caller drops the request's future (e.g. its own timeout).
///
/// ```no_run
/// use reqwest_middleware::ClientBuilder;
/// use tokenwarden::TokenHandle;
/// use tokenwarden::integrations::middleware::TokenAuth;
///
/// # async fn run(handle: TokenHandle) -> Result<(), Box<dyn std::error::Error>> {
/// let client = ClientBuilder::new(reqwest::Client::new())
///     .with(TokenAuth::new(handle))
///     .build();
/// let response = client.get("https://api.example.com/things").send().await?;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct TokenAuth {
    handle: TokenHandle,
    wait_for_token: Duration,
    max_refresh_wait: Duration,
}

impl TokenAuth {
    /// A middleware that authorises requests with `handle`'s token.
    pub fn new(handle: TokenHandle) -> TokenAuth {
        TokenAuth {
            handle,
            wait_for_token: Duration::ZERO,
            max_refresh_wait: Duration::from_secs(10),
        }
    }

    /// With no valid token, wait up to this long for one before failing the request. Default
    /// zero: fail at once, so a caller's own deadline decides.
    pub fn wait_for_token(mut self, wait: Duration) -> TokenAuth {
        self.wait_for_token = wait;
        self
    }

    /// How long a rejected request waits for the refresher's new token before the server's
    /// 401 is handed back. Default 10 s: the token endpoint may be slow, or have asked us to
    /// wait (`Retry-After`); a caller's request must not hang on it for as long.
    pub fn max_refresh_wait(mut self, wait: Duration) -> TokenAuth {
        self.max_refresh_wait = wait;
        self
    }
}

fn authorize(request: &mut Request, token: &Token) -> Result<()> {
    let header = super::authorization(token).map_err(reqwest_middleware::Error::middleware)?;
    request.headers_mut().insert(AUTHORIZATION, header);
    Ok(())
}

#[async_trait]
impl Middleware for TokenAuth {
    async fn handle(
        &self,
        mut request: Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> Result<Response> {
        let (token, header) = self
            .handle
            .authorized_within(self.wait_for_token)
            .await
            .map_err(reqwest_middleware::Error::middleware)?;
        let retry = request.try_clone();
        request.headers_mut().insert(AUTHORIZATION, header);
        let response = next.clone().run(request, extensions).await?;
        if !super::rejects_token(response.status(), response.headers()) {
            return Ok(response);
        }
        // Refresh even if this request cannot be retried, so the next one succeeds.
        let fresh = tokio::time::timeout(self.max_refresh_wait, self.handle.reject(&token)).await;
        let Ok(Ok(fresh)) = fresh else {
            return Ok(response); // no new token in time: the server's answer stands
        };
        let Some(mut retry) = retry else {
            return Ok(response);
        };
        drop(response);
        authorize(&mut retry, &fresh)?;
        next.run(retry, extensions).await
    }
}
