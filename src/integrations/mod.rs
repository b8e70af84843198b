//! Using tokens on outgoing requests: a `reqwest::RequestBuilder` extension, a
//! `reqwest-middleware` middleware (feature `middleware`) and a tower `Layer` (feature `tower`,
//! for hyper and tonic); both retry once on a rejected token.

#[cfg(feature = "metrics")]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
pub mod metrics;
#[cfg(feature = "middleware")]
#[cfg_attr(docsrs, doc(cfg(feature = "middleware")))]
pub mod middleware;
#[cfg(feature = "http-sources")]
mod request;
#[cfg(feature = "tower")]
#[cfg_attr(docsrs, doc(cfg(feature = "tower")))]
pub mod tower;

#[cfg(feature = "http-sources")]
pub use request::RequestBuilderExt;

use http::HeaderValue;

use crate::{Error, Token};

/// The token's `Authorization` value, as the handle's kind of error
/// ([`Error::InvalidHeader`], as `TokenHandle::authorization_header` reports it).
#[cfg_attr(not(any(feature = "middleware", feature = "tower")), allow(dead_code))]
fn authorization(token: &Token) -> Result<HeaderValue, Error> {
    Ok(token.authorization_header()?)
}

/// Whether an answer rejects the token itself: HTTP 401, `WWW-Authenticate: Bearer
/// error="invalid_token"` (RFC 6750 section 3.1), or gRPC status 16 `UNAUTHENTICATED` (sent
/// in the headers of a trailers-only answer).
#[cfg_attr(not(any(feature = "middleware", feature = "tower")), allow(dead_code))]
fn rejects_token(status: http::StatusCode, headers: &http::HeaderMap) -> bool {
    status == http::StatusCode::UNAUTHORIZED
        || headers.get("grpc-status").is_some_and(|v| v == "16")
        || headers
            .get_all(http::header::WWW_AUTHENTICATE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| {
                let v = v.to_ascii_lowercase();
                v.starts_with("bearer") && v.contains("error=\"invalid_token\"")
            })
}
