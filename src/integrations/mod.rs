//! Using tokens on outgoing requests: a `reqwest::RequestBuilder` extension, and (feature
//! `middleware`) a `reqwest-middleware` middleware that retries once on a rejected token.

#[cfg(feature = "middleware")]
pub mod middleware;
mod request;

pub use request::RequestBuilderExt;

use reqwest::header::HeaderValue;

use crate::{Error, FetchError, Token};

/// The token's `Authorization` value, as the handle's kind of error. Published tokens were
/// checked for this already; kept as an error rather than a panic in case a token type slips
/// through.
fn authorization(token: &Token) -> Result<HeaderValue, Error> {
    token.authorization_header().map_err(|_| {
        Error::Failed(FetchError::permanent(
            "the token cannot be used as an Authorization header",
        ))
    })
}
