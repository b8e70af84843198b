//! [`Token`]: a short-lived secret plus what the refresher needs to know about it.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use reqwest::header::{HeaderValue, InvalidHeaderValue};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value};

use crate::jwt;

/// A short-lived credential (an access token, often a JWT) and its metadata.
///
/// Cloning is cheap (one reference count), so readers can take a `Token` on every request.
/// The secret is read only through [`expose_secret`](Token::expose_secret) or
/// [`authorization_header`](Token::authorization_header); `Debug` shows metadata and never the
/// secret, the refresh token or the values of [`extra`](Token::extra) fields.
///
/// # Expiry
///
/// - [`expires_in`](Token::expires_in) gives a lifetime relative to when the token was obtained.
///   When a refresher receives such a token it measures the lifetime from the moment it *sent* the
///   request, not from when the answer arrived, so a slow round trip is counted against the token.
/// - [`expires_at`](Token::expires_at) gives an absolute expiry.
/// - Without either, a JWT's `exp` claim is used. An opaque token without either has no known
///   expiry: the refresher then assumes [`RefreshPolicy::default_lifetime`](crate::RefreshPolicy).
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use tokenwarden::Token;
///
/// let token = Token::new("eyJhbGciOi...")
///     .expires_in(Duration::from_secs(3600))
///     .with_scope("read write");
/// assert_eq!(token.scope(), Some("read write"));
/// assert!(!format!("{token:?}").contains("eyJhbGciOi"));
/// let header = token.authorization_header().unwrap();
/// assert!(header.is_sensitive());
/// ```
#[derive(Clone)]
pub struct Token {
    inner: Arc<Inner>,
}

#[derive(Clone)]
struct Inner {
    secret: SecretString,
    token_type: Option<String>,
    issued_at: SystemTime,
    expires_at: Option<SystemTime>,
    /// The relative lifetime, kept so a refresher can re-anchor it at the fetch's start.
    lifetime: Option<Duration>,
    refresh_in: Option<Duration>,
    scope: Option<String>,
    refresh_token: Option<SecretString>,
    extra: Map<String, Value>,
}

impl Token {
    /// A token with the given secret, issued now, of type `Bearer`.
    ///
    /// If the secret is a JWT with an `exp` claim, that is its expiry until one is set explicitly.
    pub fn new(secret: impl Into<SecretString>) -> Token {
        let secret = secret.into();
        let expires_at =
            jwt::claims(secret.expose_secret()).and_then(|claims| jwt::expiry(&claims));
        Token {
            inner: Arc::new(Inner {
                secret,
                token_type: None,
                issued_at: SystemTime::now(),
                expires_at,
                lifetime: None,
                refresh_in: None,
                scope: None,
                refresh_token: None,
                extra: Map::new(),
            }),
        }
    }

    fn edit(mut self, change: impl FnOnce(&mut Inner)) -> Token {
        change(Arc::make_mut(&mut self.inner));
        self
    }

    /// Sets the lifetime, measured from when the token was obtained (see the type's docs).
    pub fn expires_in(self, lifetime: Duration) -> Token {
        self.edit(|inner| {
            inner.lifetime = Some(lifetime);
            inner.expires_at = inner.issued_at.checked_add(lifetime);
        })
    }

    /// Sets an absolute expiry.
    pub fn expires_at(self, at: SystemTime) -> Token {
        self.edit(|inner| {
            inner.lifetime = None;
            inner.expires_at = Some(at);
        })
    }

    /// Sets the token type used as the `Authorization` scheme. Default: `Bearer`.
    pub fn with_token_type(self, token_type: impl Into<String>) -> Token {
        self.edit(|inner| inner.token_type = Some(token_type.into()))
    }

    /// Sets the scope the server granted.
    pub fn with_scope(self, scope: impl Into<String>) -> Token {
        self.edit(|inner| inner.scope = Some(scope.into()))
    }

    /// Attaches a refresh token (an OAuth2 refresh token, kept as secret as the token itself).
    pub fn with_refresh_token(self, refresh_token: impl Into<SecretString>) -> Token {
        self.edit(|inner| inner.refresh_token = Some(refresh_token.into()))
    }

    /// A server's hint to refresh sooner than the lifetime suggests, measured from issue.
    ///
    /// The refresher refreshes at whichever comes first: this hint or its own schedule.
    pub fn with_refresh_in(self, refresh_in: Duration) -> Token {
        self.edit(|inner| inner.refresh_in = Some(refresh_in))
    }

    /// Replaces the extra fields the server returned next to the token.
    pub fn with_extra(self, extra: Map<String, Value>) -> Token {
        self.edit(|inner| inner.extra = extra)
    }

    /// The secret value. Handle it with care: don't log it.
    pub fn expose_secret(&self) -> &str {
        self.inner.secret.expose_secret()
    }

    /// The token type, `Bearer` unless the source said otherwise.
    pub fn token_type(&self) -> &str {
        self.inner.token_type.as_deref().unwrap_or("Bearer")
    }

    /// When the token was obtained (for tokens from a refresher: when the request was sent).
    pub fn issued_at(&self) -> SystemTime {
        self.inner.issued_at
    }

    /// When the token expires, if known.
    pub fn expiry(&self) -> Option<SystemTime> {
        self.inner.expires_at
    }

    /// How long the token stays valid after `now`: `Some(ZERO)` once expired, `None` if unknown.
    pub fn time_left(&self, now: SystemTime) -> Option<Duration> {
        self.inner
            .expires_at
            .map(|at| at.duration_since(now).unwrap_or(Duration::ZERO))
    }

    /// Whether the token has expired at `now`. A token without a known expiry never has.
    pub fn is_expired_at(&self, now: SystemTime) -> bool {
        self.inner.expires_at.is_some_and(|at| at <= now)
    }

    /// The server's refresh hint, if any (see [`with_refresh_in`](Token::with_refresh_in)).
    pub fn refresh_in(&self) -> Option<Duration> {
        self.inner.refresh_in
    }

    /// The scope the server granted, if it said.
    pub fn scope(&self) -> Option<&str> {
        self.inner.scope.as_deref()
    }

    /// The refresh token, if the server issued one.
    pub fn refresh_token(&self) -> Option<&SecretString> {
        self.inner.refresh_token.as_ref()
    }

    /// Fields the server returned that tokenwarden does not interpret (endpoints, ids, ...).
    pub fn extra(&self) -> &Map<String, Value> {
        &self.inner.extra
    }

    /// The claims of a JWT, decoded **without verifying** the signature; `None` for opaque tokens.
    ///
    /// ```
    /// # use tokenwarden::Token;
    /// // {"alg":"none"} . {"sub":"acct_42"} . (no signature check)
    /// let token = Token::new("eyJhbGciOiJub25lIn0.eyJzdWIiOiJhY2N0XzQyIn0.sig");
    /// assert_eq!(token.claims().unwrap()["sub"], "acct_42");
    /// assert!(Token::new("opaque").claims().is_none());
    /// ```
    pub fn claims(&self) -> Option<Map<String, Value>> {
        jwt::claims(self.expose_secret())
    }

    /// The `Authorization` header value (`Bearer <secret>`), marked sensitive so HTTP
    /// libraries keep it out of their logs.
    ///
    /// Fails only if the secret or type holds characters that cannot go in a header; tokens
    /// published by a refresher have been checked for that already.
    pub fn authorization_header(&self) -> Result<HeaderValue, InvalidHeaderValue> {
        let scheme = match self.token_type() {
            // Servers often answer `bearer`; some resource servers only accept the RFC 6750 spelling.
            t if t.eq_ignore_ascii_case("bearer") => "Bearer",
            t => t,
        };
        sensitive_authorization(scheme, self.expose_secret())
    }

    /// Why this token cannot be handed out, if it cannot.
    pub(crate) fn defect(&self) -> Option<&'static str> {
        let secret = self.expose_secret();
        if secret.is_empty() {
            return Some("the token is empty");
        }
        if !secret.bytes().all(|b| b.is_ascii_graphic()) {
            return Some("the token has characters that cannot go in an HTTP header");
        }
        if !self.token_type().bytes().all(|b| b.is_ascii_graphic()) || self.token_type().is_empty()
        {
            return Some("the token type is not a valid HTTP authorization scheme");
        }
        None
    }

    /// Marks the token as obtained by a fetch that started at `started`: the issue time, and a
    /// relative lifetime, are measured from there.
    pub(crate) fn anchored_at(self, started: SystemTime) -> Token {
        self.edit(|inner| {
            inner.issued_at = started;
            if let Some(lifetime) = inner.lifetime {
                inner.expires_at = started.checked_add(lifetime);
            }
        })
    }

    /// Whether both hold the same secret (a server rejected "this" token).
    pub(crate) fn same_secret(&self, other: &Token) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner) || self.expose_secret() == other.expose_secret()
    }

    /// Whether both are the very same published token (cheap identity, no secret compared).
    pub(crate) fn ptr_eq(&self, other: &Token) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = &self.inner;
        f.debug_struct("Token")
            .field("secret", &"[redacted]")
            .field("token_type", &self.token_type())
            .field("issued_at", &Rfc3339(Some(inner.issued_at)))
            .field("expires_at", &Rfc3339(inner.expires_at))
            .field("scope", &inner.scope)
            .field("has_refresh_token", &inner.refresh_token.is_some())
            .field("extra_fields", &inner.extra.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// `<scheme> <credentials>` as an `Authorization` value, marked sensitive so HTTP libraries keep
/// it out of their logs: for tokens, API keys and client credentials alike.
pub(crate) fn sensitive_authorization(
    scheme: &str,
    credentials: &str,
) -> Result<HeaderValue, InvalidHeaderValue> {
    let mut value = HeaderValue::try_from(format!("{scheme} {credentials}"))?;
    value.set_sensitive(true);
    Ok(value)
}

/// A time as an RFC 3339 string in `Debug` output (`None` as `never`).
struct Rfc3339(Option<SystemTime>);

impl fmt::Debug for Rfc3339 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(at) => write!(f, "{}", humantime::format_rfc3339_seconds(at)),
            None => f.write_str("never"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn debug_hides_every_secret_part() {
        let mut extra = Map::new();
        extra.insert("id_token".into(), json!("id-token-secret"));
        let token = Token::new("access-secret")
            .with_refresh_token("refresh-secret")
            .with_extra(extra)
            .expires_in(Duration::from_secs(60));
        let debug = format!("{token:?} {token:#?}");
        for secret in ["access-secret", "refresh-secret", "id-token-secret"] {
            assert!(!debug.contains(secret), "{debug}");
        }
        assert!(debug.contains("id_token"), "extra keys are shown: {debug}");
        assert!(
            debug.contains("expires_at: 20"),
            "times are readable: {debug}"
        );
    }

    #[test]
    fn jwt_exp_is_the_default_expiry_and_explicit_expiry_wins() {
        let jwt = jwt::unsigned(&json!({"exp": 2_000_000_000}));
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(2_000_000_000);
        assert_eq!(Token::new(jwt.clone()).expiry(), Some(at));
        let explicit = Token::new(jwt).expires_in(Duration::from_secs(5));
        assert!(explicit.expiry().unwrap() < at);
        assert_eq!(Token::new("opaque").expiry(), None);
    }

    #[test]
    fn anchoring_measures_relative_lifetime_from_the_fetch_start() {
        let started = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        let token = Token::new("t")
            .expires_in(Duration::from_secs(60))
            .anchored_at(started);
        assert_eq!(token.issued_at(), started);
        assert_eq!(token.expiry(), Some(started + Duration::from_secs(60)));

        let absolute = SystemTime::UNIX_EPOCH + Duration::from_secs(5_000);
        let token = Token::new("t").expires_at(absolute).anchored_at(started);
        assert_eq!(token.expiry(), Some(absolute), "absolute expiry is kept");
    }

    #[test]
    fn authorization_header_normalises_bearer_and_is_sensitive() {
        let header = Token::new("abc")
            .with_token_type("bearer")
            .authorization_header()
            .unwrap();
        assert_eq!(header, "Bearer abc");
        assert!(header.is_sensitive());
        let mac = Token::new("abc").with_token_type("MAC");
        assert_eq!(mac.authorization_header().unwrap(), "MAC abc");
        assert!(Token::new("bad\nvalue").authorization_header().is_err());
    }

    #[test]
    fn defects_are_named() {
        assert_eq!(Token::new("").defect(), Some("the token is empty"));
        assert!(Token::new("has space").defect().unwrap().contains("header"));
        assert!(Token::new("ok").with_token_type("").defect().is_some());
        assert_eq!(Token::new("ok-token._~+/=").defect(), None);
    }

    #[test]
    fn expiry_queries() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(100);
        let token = Token::new("t").expires_at(now + Duration::from_secs(10));
        assert_eq!(token.time_left(now), Some(Duration::from_secs(10)));
        assert!(!token.is_expired_at(now));
        assert!(token.is_expired_at(now + Duration::from_secs(10)));
        assert_eq!(
            token.time_left(now + Duration::from_secs(11)),
            Some(Duration::ZERO)
        );
        assert!(!Token::new("t").is_expired_at(now));
    }
}
