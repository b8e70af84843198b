//! Using tokens on outgoing requests: a `reqwest::RequestBuilder` extension, and (feature
//! `middleware`) a `reqwest-middleware` middleware that retries once on a rejected token.

#[cfg(feature = "middleware")]
pub mod middleware;
#[cfg(feature = "http-sources")]
mod request;

#[cfg(feature = "http-sources")]
pub use request::RequestBuilderExt;

use http::HeaderValue;

use crate::{Error, FetchError, Token};

/// The token's `Authorization` value, as the handle's kind of error. Published tokens were
/// checked for this already; kept as an error rather than a panic in case a token type slips
/// through.
#[cfg_attr(not(feature = "http-sources"), allow(dead_code))]
fn authorization(token: &Token) -> Result<HeaderValue, Error> {
    token.authorization_header().map_err(|_| {
        Error::Failed(FetchError::permanent(
            "the token cannot be used as an Authorization header",
        ))
    })
}
