//! Entry points for the fuzz targets in `fuzz/`, built only with `--cfg fuzzing` (which
//! `cargo fuzz` sets): the parsers of what servers send, each checking what must hold for any
//! input. Not part of the API.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use secrecy::SecretString;

use super::oauth::response::{self, OAuthError, Shape};

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_790_000_000)
}

/// A token answer: a usable token or a named error, never a panic.
pub fn token_answer(data: &[u8]) {
    match response::parse_token(data, "https://fuzz.test/token", &Shape::oauth(), now()) {
        Ok(token) => assert!(token.defect().is_none()),
        Err(error) => assert!(error.to_string().starts_with("https://fuzz.test/token: ")),
    }
}

/// An error answer: parsed and classified whatever the status and body.
pub fn error_answer(status: u16, data: &[u8]) {
    let error = OAuthError::parse(data);
    let _ = response::classify(status, &error);
    let _ = error.detail();
}

/// A `Retry-After` header value.
pub fn retry_after(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = response::retry_after(text, now());
    }
}

/// A JWT's claims and expiry.
pub fn jwt(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data)
        && let Some(claims) = crate::jwt::claims(text)
    {
        let _ = crate::jwt::expiry(&claims);
    }
}

/// Scrubbing: the first byte says how long the secret is; the rest is the server's text,
/// with the secret echoed around it. The raw secret never survives.
pub fn scrub(data: &[u8]) {
    let Some((&len, rest)) = data.split_first() else {
        return;
    };
    let Ok(rest) = std::str::from_utf8(rest) else {
        return;
    };
    let split = rest
        .char_indices()
        .nth(usize::from(len % 32) + 1)
        .map_or(rest.len(), |(at, _)| at);
    let (secret, text) = rest.split_at(split);
    if secret.is_empty() {
        return;
    }
    let echoed = format!("{text}{secret}{text}");
    let scrubbed = super::oauth::scrub::scrub(echoed, &[&SecretString::from(secret.to_owned())]);
    // What is left between the redactions is the server's text with no secret in it.
    assert!(
        scrubbed
            .split("[redacted]")
            .all(|piece| !piece.contains(secret))
    );
}
