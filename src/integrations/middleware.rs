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
///   2 s) for the new token; then the server's 401 is handed back.
/// - With no valid token (still starting, or an outage outlived it) the request fails at once
///   with the handle's [`Error`](crate::Error) (as the middleware error), without being sent;
///   [`wait_for_token`](TokenAuth::wait_for_token) lets it wait a bounded time instead.
/// - **No wait outlasts the request's own timeout** (`RequestBuilder::timeout`): both waits
///   are cut to what is left of it. A timeout set only on the `reqwest::Client` is not visible
///   to a middleware: it bounds each send, not the waits, which is why the defaults are short
///   (0 s and 2 s: a retry after a 2 s wait still fits a 5 s client timeout).
/// - Every wait ends when the caller drops the request's future.
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
            max_refresh_wait: super::DEFAULT_REFRESH_WAIT,
        }
    }

    /// With no valid token, wait up to this long for one before failing the request (never
    /// longer than the request's own timeout). Default zero: fail at once.
    pub fn wait_for_token(mut self, wait: Duration) -> TokenAuth {
        self.wait_for_token = wait;
        self
    }

    /// How long a rejected request waits for the refresher's new token before the server's
    /// 401 is handed back (never longer than what is left of the request's own timeout).
    /// Default 2 s: a healthy token endpoint answers well within it, and a slow or failing one
    /// (or one that asked for a long `Retry-After`) must not hold every request; a retry after
    /// the whole wait still fits in a 5 s client timeout.
    pub fn max_refresh_wait(mut self, wait: Duration) -> TokenAuth {
        self.max_refresh_wait = wait;
        self
    }
}

/// Sets `Authorization` (and, for a DPoP-bound token, a fresh `DPoP` proof) on `request`.
fn authorize(request: &mut Request, token: &Token) -> Result<()> {
    let header = super::authorization(token).map_err(reqwest_middleware::Error::middleware)?;
    let proof = super::dpop_proof(token, request.method().as_str(), request.url().as_str())
        .map_err(reqwest_middleware::Error::middleware)?;
    request.headers_mut().insert(AUTHORIZATION, header);
    if let Some(proof) = proof {
        request.headers_mut().insert("dpop", proof);
    }
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
        let started = tokio::time::Instant::now();
        let own_timeout = request.timeout().copied();
        let budget = |configured| super::wait_budget(configured, own_timeout, started);
        let (token, header) = self
            .handle
            .authorized_within(budget(self.wait_for_token))
            .await
            .map_err(reqwest_middleware::Error::middleware)?;
        let retry = request.try_clone();
        let response = if !super::dpop_bound(&token) {
            request.headers_mut().insert(AUTHORIZATION, header);
            next.clone().run(request, extensions).await?
        } else {
            let url = request.url().as_str().to_owned();
            // DPoP-bound: a proof per request, and once more with the nonce a server asks for.
            let again = request.try_clone();
            authorize(&mut request, &token)?;
            let response = next.clone().run(request, extensions).await?;
            match again {
                Some(mut again)
                    if super::asks_for_dpop_nonce(
                        &token,
                        &url,
                        response.status(),
                        response.headers(),
                    ) =>
                {
                    drop(response);
                    authorize(&mut again, &token)?;
                    next.clone().run(again, extensions).await?
                }
                _ => response,
            }
        };
        if !super::rejects_token(response.status(), response.headers()) {
            return Ok(response);
        }
        // Refresh even if this request cannot be retried, so the next one succeeds.
        let wait = budget(self.max_refresh_wait);
        let fresh = tokio::time::timeout(wait, self.handle.reject(&token)).await;
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
