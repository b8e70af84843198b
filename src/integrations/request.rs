//! [`RequestBuilderExt`]: the current token on a reqwest request, without awaiting.

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
}

impl RequestBuilderExt for RequestBuilder {
    fn with_token(self, handle: &TokenHandle) -> Result<Self, Error> {
        let header = super::authorization(&handle.current()?)?;
        Ok(self.header(AUTHORIZATION, header))
    }
}
