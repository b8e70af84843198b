//! [`TokenAuth`]: a `reqwest-middleware` middleware (feature `middleware`).

use async_trait::async_trait;
use http::Extensions;
use reqwest::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use reqwest::{Request, Response, StatusCode};
use reqwest_middleware::{Middleware, Next, Result};

use crate::{Token, TokenHandle};

/// Attaches the credential's current token to every request; when the server rejects it (a
/// 401, or `WWW-Authenticate: Bearer error="invalid_token"`), tells the refresher
/// ([`TokenHandle::reject`]) and retries **once** with the new token.
///
/// - Any other answer is handed back untouched, and so is the second answer of a retry.
/// - A request whose body cannot be cloned (a stream) is not retried: its 401 is handed back,
///   but the refresher is still told, so the next request carries a new token.
/// - Many concurrent requests rejected with the same old token cause exactly one refresh.
/// - With no valid token (still starting, or an outage outlived it) the request fails at once
///   with the handle's [`Error`](crate::Error) (as the middleware error), without being sent.
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
}

impl TokenAuth {
    /// A middleware that authorises requests with `handle`'s token.
    pub fn new(handle: TokenHandle) -> TokenAuth {
        TokenAuth { handle }
    }
}

fn authorize(request: &mut Request, token: &Token) -> Result<()> {
    let header = super::authorization(token).map_err(reqwest_middleware::Error::middleware)?;
    request.headers_mut().insert(AUTHORIZATION, header);
    Ok(())
}

/// Whether the server rejected the token itself (RFC 6750 section 3.1).
fn rejects_token(response: &Response) -> bool {
    response.status() == StatusCode::UNAUTHORIZED
        || response
            .headers()
            .get_all(WWW_AUTHENTICATE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| {
                let v = v.to_ascii_lowercase();
                v.starts_with("bearer") && v.contains("error=\"invalid_token\"")
            })
}

#[async_trait]
impl Middleware for TokenAuth {
    async fn handle(
        &self,
        mut request: Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> Result<Response> {
        let token = self
            .handle
            .current()
            .map_err(reqwest_middleware::Error::middleware)?;
        let retry = request.try_clone();
        authorize(&mut request, &token)?;
        let response = next.clone().run(request, extensions).await?;
        if !rejects_token(&response) {
            return Ok(response);
        }
        // Refresh even if this request cannot be retried, so the next one succeeds.
        let Ok(fresh) = self.handle.reject(&token).await else {
            return Ok(response); // no new token: the server's answer stands
        };
        let Some(mut retry) = retry else {
            return Ok(response);
        };
        drop(response);
        authorize(&mut retry, &fresh)?;
        next.run(retry, extensions).await
    }
}
