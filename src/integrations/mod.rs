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
#[cfg_attr(docsrs, doc(cfg(any(feature = "rustls", feature = "native-tls"))))]
pub use request::RequestBuilderExt;

use http::HeaderValue;

use crate::{Error, Token};

/// The token's `Authorization` value, as the handle's kind of error
/// ([`Error::InvalidHeader`], as `TokenHandle::authorization_header` reports it).
#[cfg_attr(not(any(feature = "middleware", feature = "tower")), allow(dead_code))]
fn authorization(token: &Token) -> Result<HeaderValue, Error> {
    Ok(token.authorization_header()?)
}

/// Whether requests presenting `token` need a DPoP proof.
#[cfg_attr(not(any(feature = "middleware", feature = "tower")), allow(dead_code))]
fn dpop_bound(token: &Token) -> bool {
    #[cfg(feature = "dpop")]
    return token.dpop_key().is_some();
    #[cfg(not(feature = "dpop"))]
    {
        let _ = token;
        false
    }
}

/// The `DPoP` proof a request of `method` to `url` presenting `token` needs (with `ath`), or
/// `None` for a token that is not DPoP-bound.
#[cfg_attr(not(any(feature = "middleware", feature = "tower")), allow(dead_code))]
fn dpop_proof(token: &Token, method: &str, url: &str) -> Result<Option<HeaderValue>, Error> {
    #[cfg(feature = "dpop")]
    if let Some(key) = token.dpop_key() {
        if !url.starts_with("https://") && !url.starts_with("http://") {
            return Err(Error::Fetch(crate::FetchError::permanent(
                "DPoP: the request's URI is not absolute, so no proof can name it (htu)",
            )));
        }
        let proof = crate::dpop::proof_for(key, method, url, Some(token.expose_secret()))?;
        let mut value = HeaderValue::from_str(&proof).map_err(|_| Error::InvalidHeader)?;
        value.set_sensitive(true);
        return Ok(Some(value));
    }
    let _ = (token, method, url);
    Ok(None)
}

/// Whether the answer to a request presenting `token` at `url` asks for a DPoP nonce (HTTP 401
/// with `WWW-Authenticate: DPoP error="use_dpop_nonce"` and a `DPoP-Nonce`, RFC 9449 section
/// 9); the nonce is remembered, so a request sent again carries it.
#[cfg_attr(not(any(feature = "middleware", feature = "tower")), allow(dead_code))]
fn asks_for_dpop_nonce(
    token: &Token,
    url: &str,
    status: http::StatusCode,
    headers: &http::HeaderMap,
) -> bool {
    #[cfg(feature = "dpop")]
    if let Some(key) = token.dpop_key() {
        let nonce = headers.get("dpop-nonce").and_then(|v| v.to_str().ok());
        let fresh = crate::dpop::remember_nonce(key, url, nonce);
        let asked = headers
            .get_all(http::header::WWW_AUTHENTICATE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(crate::dpop::asks_for_nonce);
        return fresh && asked && status == http::StatusCode::UNAUTHORIZED;
    }
    let _ = (token, url, status, headers);
    false
}

/// The default bound on a rejected request's wait for the new token: 2 s, so that the wait
/// plus a retry fits in a typical client timeout of 5 s (a healthy token endpoint answers in
/// well under a second; a slow or failing one is not waited out per request).
#[cfg_attr(not(any(feature = "middleware", feature = "tower")), allow(dead_code))]
pub(crate) const DEFAULT_REFRESH_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// How long the middleware may still wait, `configured` at most: the time left of the
/// request's own timeout (`own`, counted from `started`), where it has one.
#[cfg_attr(not(any(feature = "middleware", feature = "tower")), allow(dead_code))]
fn wait_budget(
    configured: std::time::Duration,
    own: Option<std::time::Duration>,
    started: tokio::time::Instant,
) -> std::time::Duration {
    match own {
        Some(own) => configured.min(own.saturating_sub(started.elapsed())),
        None => configured,
    }
}

/// A gRPC request's own timeout, from its `grpc-timeout` header (what tonic's
/// `Request::set_timeout` sends): digits and a unit (`H`, `M`, `S`, `m`, `u`, `n`).
#[cfg_attr(not(feature = "tower"), allow(dead_code))]
fn grpc_timeout(headers: &http::HeaderMap) -> Option<std::time::Duration> {
    let value = headers.get("grpc-timeout")?.to_str().ok()?;
    let (digits, unit) = value.split_at(value.len().checked_sub(1)?);
    let amount: u64 = digits.parse().ok()?;
    use std::time::Duration;
    Some(match unit {
        "H" => Duration::from_secs(amount.saturating_mul(3600)),
        "M" => Duration::from_secs(amount.saturating_mul(60)),
        "S" => Duration::from_secs(amount),
        "m" => Duration::from_millis(amount),
        "u" => Duration::from_micros(amount),
        "n" => Duration::from_nanos(amount),
        _ => return None,
    })
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn the_wait_is_bounded_by_what_is_left_of_the_requests_timeout() {
        let started = tokio::time::Instant::now();
        let two = Duration::from_secs(2);
        assert_eq!(wait_budget(two, None, started), two);
        assert_eq!(
            wait_budget(two, Some(Duration::from_secs(10)), started),
            two
        );
        tokio::time::advance(Duration::from_millis(4_500)).await;
        assert_eq!(
            wait_budget(two, Some(Duration::from_secs(5)), started),
            Duration::from_millis(500)
        );
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(
            wait_budget(two, Some(Duration::from_secs(5)), started),
            Duration::ZERO
        );
    }

    #[test]
    fn grpc_timeouts_are_read_in_every_unit() {
        let header = |v: &str| {
            let mut headers = http::HeaderMap::new();
            headers.insert("grpc-timeout", v.parse().unwrap());
            grpc_timeout(&headers)
        };
        assert_eq!(header("5S"), Some(Duration::from_secs(5)));
        assert_eq!(header("250m"), Some(Duration::from_millis(250)));
        assert_eq!(header("2M"), Some(Duration::from_secs(120)));
        assert_eq!(header("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(header("7u"), Some(Duration::from_micros(7)));
        assert_eq!(header("9n"), Some(Duration::from_nanos(9)));
        assert_eq!(header("5X"), None);
        assert_eq!(header("S"), None);
        assert_eq!(grpc_timeout(&http::HeaderMap::new()), None);
    }
}
