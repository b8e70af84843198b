//! [`Token`]: a short-lived secret plus what the refresher needs to know about it.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::header::{HeaderValue, InvalidHeaderValue};
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
/// A token's expiry is the **earliest** of every statement of it, so no statement can make a
/// token outlive what its issuer said:
///
/// - a JWT's `exp` claim, read when the token is created;
/// - [`expires_in`](Token::expires_in), a lifetime relative to when the token was obtained. When a
///   refresher receives such a token it measures the lifetime from the moment it *sent* the
///   request, not from when the answer arrived, so a slow round trip is counted against the token;
/// - [`expires_at`](Token::expires_at), an absolute expiry.
///
/// A token that states none has no known expiry; a refresher then assumes
/// [`RefreshPolicy::default_lifetime`](crate::RefreshPolicy::default_lifetime) and stops serving
/// it after that. A refresher also stops handing a token out a
/// [serve margin](crate::RefreshPolicy::serve_margin) before its expiry: see
/// [`usable_until`](Token::usable_until).
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
    issued_at: SystemTime,
    /// The JWT's `exp` claim, if the secret is a JWT that has one.
    jwt_expiry: Option<SystemTime>,
    /// The relative lifetime, kept so a refresher can re-anchor it at the fetch's start.
    lifetime: Option<Duration>,
    /// An absolute expiry stated by the source (`expires_at`).
    stated_expiry: Option<SystemTime>,
    /// A lifetime a refresher assumes for a token that states no expiry at all.
    assumed_lifetime: Option<Duration>,
    /// How long before expiry a refresher stops handing the token out.
    serve_margin: Duration,
    /// `issued_at` was set by whoever fetched it (a fleet's minter, a stored record), so a
    /// refresher does not move it to its own fetch's start: time spent waiting on a fleet store
    /// is not taken from the token's counted life.
    anchored: bool,
    /// Derived from the fields above by `Inner::settle` (kept for the read path):
    expires_at: Option<SystemTime>,
    usable_until: Option<SystemTime>,
    /// When the refresher means to refresh it, on the wall clock: a reader who finds this
    /// passed tells the refresher (its timers run on the monotonic clock, which a suspended
    /// machine or a wall-clock jump leaves behind).
    refresh_due: Option<SystemTime>,
    /// What many tokens lack, in one box: a million credentials holding API-key or JWT tokens
    /// need not carry room for scopes and refresh tokens (about 100 bytes each).
    details: Option<Box<Details>>,
}

/// A token's less common metadata.
#[derive(Clone, Default)]
struct Details {
    token_type: Option<String>,
    refresh_in: Option<Duration>,
    scope: Option<String>,
    refresh_token: Option<SecretString>,
    extra: Map<String, Value>,
    /// The key a DPoP-bound token is bound to: requests presenting it need a proof by it.
    #[cfg(feature = "dpop")]
    dpop: Option<crate::dpop::DpopKey>,
}

impl Inner {
    fn details(&mut self) -> &mut Details {
        self.details.get_or_insert_with(Box::default)
    }
}

impl Token {
    fn details(&self) -> Option<&Details> {
        self.inner.details.as_deref()
    }

    /// A token with the given secret, issued now, of type `Bearer`.
    ///
    /// If the secret is a JWT with an `exp` claim, that is its expiry until one is set explicitly.
    pub fn new(secret: impl Into<SecretString>) -> Token {
        let secret = secret.into();
        let jwt_expiry =
            jwt::claims(secret.expose_secret()).and_then(|claims| jwt::expiry(&claims));
        let mut inner = Inner {
            secret,
            issued_at: SystemTime::now(),
            jwt_expiry,
            lifetime: None,
            stated_expiry: None,
            assumed_lifetime: None,
            serve_margin: Duration::ZERO,
            anchored: false,
            expires_at: None,
            usable_until: None,
            refresh_due: None,
            details: None,
        };
        inner.settle();
        Token {
            inner: Arc::new(inner),
        }
    }

    fn edit(mut self, change: impl FnOnce(&mut Inner)) -> Token {
        let inner = Arc::make_mut(&mut self.inner);
        change(inner);
        inner.settle();
        self
    }

    /// States the lifetime, measured from when the token was obtained (see the type's docs).
    /// Replaces an earlier `expires_in`; the expiry is still no later than a JWT's `exp` or an
    /// [`expires_at`](Token::expires_at).
    pub fn expires_in(self, lifetime: Duration) -> Token {
        self.edit(|inner| inner.lifetime = Some(lifetime))
    }

    /// States an absolute expiry. Replaces an earlier `expires_at`; the expiry is still no later
    /// than a JWT's `exp` or an [`expires_in`](Token::expires_in).
    pub fn expires_at(self, at: SystemTime) -> Token {
        self.edit(|inner| inner.stated_expiry = Some(at))
    }

    /// Sets the token type used as the `Authorization` scheme. Default: `Bearer`.
    pub fn with_token_type(self, token_type: impl Into<String>) -> Token {
        self.edit(|inner| inner.details().token_type = Some(token_type.into()))
    }

    /// Sets the scope the server granted.
    pub fn with_scope(self, scope: impl Into<String>) -> Token {
        self.edit(|inner| inner.details().scope = Some(scope.into()))
    }

    /// Attaches a refresh token (an OAuth2 refresh token, kept as secret as the token itself).
    pub fn with_refresh_token(self, refresh_token: impl Into<SecretString>) -> Token {
        self.edit(|inner| inner.details().refresh_token = Some(refresh_token.into()))
    }

    /// A server's hint to refresh sooner than the lifetime suggests, measured from issue.
    ///
    /// The refresher refreshes at whichever comes first: this hint or its own schedule.
    pub fn with_refresh_in(self, refresh_in: Duration) -> Token {
        self.edit(|inner| inner.details().refresh_in = Some(refresh_in))
    }

    /// Replaces the extra fields the server returned next to the token.
    pub fn with_extra(self, extra: Map<String, Value>) -> Token {
        if extra.is_empty() && self.details().is_none_or(|d| d.extra.is_empty()) {
            return self; // nothing to keep: no box for it
        }
        self.edit(|inner| inner.details().extra = extra)
    }

    /// Binds the token to a DPoP key (RFC 9449): requests that present it carry a proof signed
    /// by `key`. The OAuth sources set it when the server answers `token_type: DPoP`.
    #[cfg(feature = "dpop")]
    #[cfg_attr(docsrs, doc(cfg(feature = "dpop")))]
    pub fn with_dpop_key(self, key: crate::dpop::DpopKey) -> Token {
        self.edit(|inner| inner.details().dpop = Some(key))
    }

    /// The DPoP key the token is bound to, if it is DPoP-bound: what a request presenting it
    /// signs its proof with.
    #[cfg(feature = "dpop")]
    #[cfg_attr(docsrs, doc(cfg(feature = "dpop")))]
    pub fn dpop_key(&self) -> Option<&crate::dpop::DpopKey> {
        self.details().and_then(|d| d.dpop.as_ref())
    }

    /// The secret value. Handle it with care: don't log it.
    pub fn expose_secret(&self) -> &str {
        self.inner.secret.expose_secret()
    }

    /// The token type, `Bearer` unless the source said otherwise.
    pub fn token_type(&self) -> &str {
        self.details()
            .and_then(|d| d.token_type.as_deref())
            .unwrap_or("Bearer")
    }

    /// When the token was obtained (for tokens from a refresher: when the request was sent).
    pub fn issued_at(&self) -> SystemTime {
        self.inner.issued_at
    }

    /// When the token expires: the earliest statement of it (see the type's docs), or for a
    /// token that states none, the lifetime a refresher assumed for it. `None` if unknown.
    pub fn expiry(&self) -> Option<SystemTime> {
        self.inner.expires_at
    }

    /// The last moment a refresher hands this token out: its [`expiry`](Token::expiry) less the
    /// policy's [serve margin](crate::RefreshPolicy::serve_margin), so that a token read just
    /// before then still reaches the resource server alive. The same as `expiry()` for a token
    /// that no refresher has published.
    pub fn usable_until(&self) -> Option<SystemTime> {
        self.inner.usable_until
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
        self.details().and_then(|d| d.refresh_in)
    }

    /// The scope the server granted, if it said.
    pub fn scope(&self) -> Option<&str> {
        self.details().and_then(|d| d.scope.as_deref())
    }

    /// The refresh token, if the server issued one.
    pub fn refresh_token(&self) -> Option<&SecretString> {
        self.details().and_then(|d| d.refresh_token.as_ref())
    }

    /// Fields the server returned that tokenwarden does not interpret (endpoints, ids, ...).
    pub fn extra(&self) -> &Map<String, Value> {
        static NONE: std::sync::LazyLock<Map<String, Value>> = std::sync::LazyLock::new(Map::new);
        self.details().map_or(&NONE, |d| &d.extra)
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
            inner.anchored = true;
        })
    }

    /// [`anchored_at`](Token::anchored_at), unless the token was anchored already.
    pub(crate) fn anchored_unless_already(self, started: SystemTime) -> Token {
        if self.inner.anchored {
            self
        } else {
            self.anchored_at(started)
        }
    }

    /// Which statement decides the expiry, for messages: `the JWT's \`exp\``, ...
    pub(crate) fn expiry_statement(&self) -> &'static str {
        let inner = &self.inner;
        let relative = inner
            .lifetime
            .and_then(|lifetime| inner.issued_at.checked_add(lifetime));
        match inner.expires_at {
            None => "no expiry",
            at if at == inner.jwt_expiry => "the JWT's `exp`",
            at if at == relative => "`expires_in`",
            at if at == inner.stated_expiry => "`expires_at`",
            _ => "the assumed lifetime",
        }
    }

    /// The wall-clock time its refresher means to refresh it, if one does.
    /// A copy with an allocation (and reference count) of its own, secret included: what a
    /// thread keeps so that its reads write no memory another thread reads.
    pub(crate) fn replica(&self) -> Token {
        Token {
            inner: Arc::new(Inner::clone(&self.inner)),
        }
    }

    pub(crate) fn refresh_due(&self) -> Option<SystemTime> {
        self.inner.refresh_due
    }

    /// The same token, to be refreshed at `at` (wall clock).
    pub(crate) fn with_refresh_due(self, at: SystemTime) -> Token {
        self.edit(|inner| inner.refresh_due = Some(at))
    }

    /// The earliest expiry the token's source stated (not an assumed one).
    #[cfg(test)]
    pub(crate) fn stated_expiry(&self) -> Option<SystemTime> {
        self.inner.stated()
    }

    /// Prepares a token for publication by a refresher: a token that states no expiry is given
    /// `assumed_lifetime`, and it is served until `margin(lifetime)` before its expiry.
    ///
    /// The same secret fetched again is taken with what its source states now: an opaque
    /// token whose expiry slides (a later `expires_in` or `expires_at`) is served for its new
    /// life, and a JWT stays bound by its `exp` whatever else is stated.
    pub(crate) fn for_refresher(
        self,
        assumed_lifetime: Duration,
        margin: impl FnOnce(Duration) -> Duration,
    ) -> Token {
        let mut token = self.edit(|inner| inner.assumed_lifetime = Some(assumed_lifetime));
        let lifetime = token
            .inner
            .expires_at
            .and_then(|at| at.duration_since(token.inner.issued_at).ok())
            .unwrap_or_default();
        let margin = margin(lifetime);
        if margin != token.inner.serve_margin {
            token = token.edit(|inner| inner.serve_margin = margin);
        }
        token
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
        let mut debug = f.debug_struct("Token");
        debug
            .field("secret", &"[redacted]")
            .field("token_type", &self.token_type())
            .field("issued_at", &Rfc3339(Some(inner.issued_at)))
            .field("expires_at", &Rfc3339(inner.expires_at))
            .field("scope", &self.scope())
            .field("has_refresh_token", &self.refresh_token().is_some())
            .field("extra_fields", &self.extra().keys().collect::<Vec<_>>());
        #[cfg(feature = "dpop")]
        debug.field("dpop_key", &self.dpop_key().map(|key| key.thumbprint()));
        debug.finish()
    }
}

impl Inner {
    fn stated(&self) -> Option<SystemTime> {
        let relative = self
            .lifetime
            .and_then(|lifetime| self.issued_at.checked_add(lifetime));
        [self.jwt_expiry, relative, self.stated_expiry]
            .into_iter()
            .flatten()
            .min()
    }

    /// Derives the expiry and the end of serving from the statements.
    fn settle(&mut self) {
        self.expires_at = self.stated().or_else(|| {
            self.assumed_lifetime
                .and_then(|lifetime| self.issued_at.checked_add(lifetime))
        });
        self.usable_until = self
            .expires_at
            .map(|at| at.checked_sub(self.serve_margin).unwrap_or(at));
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
    fn the_earliest_statement_of_expiry_wins() {
        let exp = SystemTime::UNIX_EPOCH + Duration::from_secs(2_000_000_000);
        let jwt = jwt::unsigned(&json!({"exp": 2_000_000_000}));
        let issued = exp - Duration::from_secs(100);
        // expires_in says 300 s, the JWT says 100 s: the JWT wins.
        let token = Token::new(jwt.clone())
            .expires_in(Duration::from_secs(300))
            .anchored_at(issued);
        assert_eq!(token.expiry(), Some(exp));
        // An earlier absolute statement wins over both.
        let earlier = exp - Duration::from_secs(50);
        assert_eq!(token.expires_at(earlier).expiry(), Some(earlier));
    }

    #[test]
    fn a_refresher_assumes_a_lifetime_takes_a_repeated_secrets_new_life_and_applies_the_margin() {
        let issued = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        let hour = Duration::from_secs(3600);
        let margin = |_lifetime| Duration::from_secs(10);

        let opaque = Token::new("t")
            .anchored_at(issued)
            .for_refresher(hour, margin);
        assert_eq!(opaque.expiry(), Some(issued + hour), "assumed");
        assert_eq!(opaque.stated_expiry(), None);
        assert_eq!(
            opaque.usable_until(),
            Some(issued + hour - Duration::from_secs(10))
        );

        let again = Token::new("same")
            .expires_in(Duration::from_secs(60))
            .anchored_at(issued + Duration::from_secs(30))
            .for_refresher(hour, margin);
        assert_eq!(
            again.expiry(),
            Some(issued + Duration::from_secs(90)),
            "an opaque token's sliding expiry is taken"
        );
        let other = Token::new("other")
            .expires_in(Duration::from_secs(60))
            .anchored_at(issued + Duration::from_secs(30))
            .for_refresher(hour, margin);
        assert_eq!(
            other.expiry(),
            Some(issued + Duration::from_secs(90)),
            "a new secret has its own expiry"
        );
        // A token nobody published is served until its expiry.
        let plain = Token::new("t").expires_at(issued);
        assert_eq!(plain.usable_until(), plain.expiry());
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
