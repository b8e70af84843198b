//! [`RequestBuilderExt`]: the current token on a reqwest request, without awaiting.

use std::future::Future;
use std::time::Duration;

use reqwest::RequestBuilder;
use reqwest::header::AUTHORIZATION;

use crate::{Error, TokenHandle};

/// Sets `Authorization` on a reqwest request from a [`TokenHandle`].
///
/// ```no_run
/// use tokenwarden::{RequestBuilderExt, TokenHandle};
///
/// # async fn call(client: reqwest::Client, handle: TokenHandle) -> Result<(), Box<dyn std::error::Error>> {
/// let response = client
///     .get("https://api.example.com/things")
///     .with_token(&handle)? // synchronous: fails fast when there is no valid token
///     .send()
///     .await?;
/// # Ok(()) }
/// ```
pub trait RequestBuilderExt: Sized {
    /// Adds `Authorization: <type> <token>` (marked sensitive) with the handle's current token.
    ///
    /// # Errors
    ///
    /// The handle's error when it has no valid token (see [`TokenHandle::current`]).
    fn with_token(self, handle: &TokenHandle) -> Result<Self, Error>;

    /// Like [`with_token`](RequestBuilderExt::with_token), but with no valid token waits up to
    /// `wait` for one ([`TokenHandle::ready_within`]): for requests that arrive while a service
    /// starts, or just as an outage ends.
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use tokenwarden::{RequestBuilderExt, TokenHandle};
    ///
    /// # async fn call(client: reqwest::Client, handle: TokenHandle) -> Result<(), Box<dyn std::error::Error>> {
    /// let response = client
    ///     .get("https://api.example.com/things")
    ///     .with_token_within(&handle, Duration::from_secs(2))
    ///     .await?
    ///     .send()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// The handle's error when there is still no valid token after `wait`.
    fn with_token_within(
        self,
        handle: &TokenHandle,
        wait: Duration,
    ) -> impl Future<Output = Result<Self, Error>> + Send;
}

impl RequestBuilderExt for RequestBuilder {
    fn with_token(self, handle: &TokenHandle) -> Result<Self, Error> {
        #[cfg(feature = "dpop")]
        return match handle.authorization_or_bound()? {
            Ok(header) => Ok(self.header(AUTHORIZATION, header)),
            Err(bound) => with_dpop(self, &bound),
        };
        #[cfg(not(feature = "dpop"))]
        Ok(self.header(AUTHORIZATION, handle.authorization_header()?))
    }

    async fn with_token_within(self, handle: &TokenHandle, wait: Duration) -> Result<Self, Error> {
        let (token, header) = handle.authorized_within(wait).await?;
        #[cfg(feature = "dpop")]
        if token.dpop_key().is_some() {
            return with_dpop(self, &token);
        }
        let _ = token;
        Ok(self.header(AUTHORIZATION, header))
    }
}

/// `builder` with `Authorization: DPoP <token>` and a proof for its method and URL.
#[cfg(feature = "dpop")]
fn with_dpop(builder: RequestBuilder, token: &crate::Token) -> Result<RequestBuilder, Error> {
    let (client, request) = builder.build_split();
    let mut request = request.map_err(|e| {
        Error::Fetch(crate::FetchError::permanent(format!(
            "DPoP: the request could not be built to sign a proof for it: {e}"
        )))
    })?;
    let proof = super::dpop_proof(token, request.method().as_str(), request.url().as_str())?;
    request
        .headers_mut()
        .insert(AUTHORIZATION, token.authorization_header()?);
    if let Some(proof) = proof {
        request.headers_mut().insert("dpop", proof);
    }
    Ok(RequestBuilder::from_parts(client, request))
}
