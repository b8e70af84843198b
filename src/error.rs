//! The two error types: [`FetchError`] (a source failed to get a token) and [`Error`] (a
//! handle has no token to give).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// Whether retrying a failed fetch can help.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FetchErrorKind {
    /// Worth retrying with backoff: a timeout, a connection error, a 5xx or 429 answer.
    Transient,
    /// Retrying won't help until something changes: bad credentials, a revoked grant, a
    /// misconfigured request. The refresher retries on the slow
    /// [`permanent_backoff`](crate::RefreshPolicy::permanent_backoff) schedule, and at once on
    /// `refresh()` or `reject()`.
    Permanent,
}

/// Why a [`TokenSource`](crate::TokenSource) could not produce a token.
///
/// It says whether the failure is [transient or permanent](FetchErrorKind), may carry a
/// server-requested [`retry_after`](FetchError::retry_after), and has a message that names
/// what failed (the endpoint, the field, what the server said). Messages must never contain a
/// secret: the refresher logs them. Cloning is cheap.
///
/// ```
/// use std::time::Duration;
/// use tokenwarden::FetchError;
///
/// let err = FetchError::transient("https://auth.example.com/token answered 503")
///     .with_retry_after(Duration::from_secs(30));
/// assert!(err.is_transient());
/// assert_eq!(err.retry_after(), Some(Duration::from_secs(30)));
/// assert_eq!(err.to_string(), "https://auth.example.com/token answered 503");
/// ```
#[derive(Clone)]
pub struct FetchError {
    inner: Arc<FetchErrorInner>,
}

struct FetchErrorInner {
    kind: FetchErrorKind,
    message: String,
    retry_after: Option<Duration>,
    /// The fleet's lease holder failed: it alone probes the endpoint for the fleet, so it may
    /// retry sooner while readers wait (`RefreshPolicy::fleet_retry_while_waiting`).
    fleet_probe: bool,
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl FetchError {
    fn new(kind: FetchErrorKind, message: String) -> FetchError {
        FetchError {
            inner: Arc::new(FetchErrorInner {
                kind,
                message,
                retry_after: None,
                fleet_probe: false,
                source: None,
            }),
        }
    }

    /// A failure worth retrying with backoff.
    pub fn transient(message: impl Into<String>) -> FetchError {
        FetchError::new(FetchErrorKind::Transient, message.into())
    }

    /// A failure retrying won't fix.
    pub fn permanent(message: impl Into<String>) -> FetchError {
        FetchError::new(FetchErrorKind::Permanent, message.into())
    }

    fn edit(mut self, change: impl FnOnce(&mut FetchErrorInner)) -> FetchError {
        match Arc::get_mut(&mut self.inner) {
            Some(inner) => change(inner),
            None => {
                // Shared already: rebuild rather than require `Clone` of the boxed source.
                let mut copy = FetchErrorInner {
                    kind: self.inner.kind,
                    message: self.inner.message.clone(),
                    retry_after: self.inner.retry_after,
                    fleet_probe: self.inner.fleet_probe,
                    source: None,
                };
                change(&mut copy);
                self.inner = Arc::new(copy);
            }
        }
        self
    }

    /// Asks the refresher to wait at least this long before the next try (e.g. `Retry-After`).
    pub fn with_retry_after(self, after: Duration) -> FetchError {
        self.edit(|inner| inner.retry_after = Some(after))
    }

    /// Attaches the underlying error, reachable through [`std::error::Error::source`].
    /// Its `Display` must not contain secrets either.
    pub fn with_source(self, source: impl std::error::Error + Send + Sync + 'static) -> FetchError {
        self.edit(|inner| inner.source = Some(Box::new(source)))
    }

    /// Transient or permanent.
    pub fn kind(&self) -> FetchErrorKind {
        self.inner.kind
    }

    /// Whether retrying can help.
    pub fn is_transient(&self) -> bool {
        self.inner.kind == FetchErrorKind::Transient
    }

    /// Whether retrying won't help.
    pub fn is_permanent(&self) -> bool {
        self.inner.kind == FetchErrorKind::Permanent
    }

    /// How long the server asked us to wait, if it did.
    pub fn retry_after(&self) -> Option<Duration> {
        self.inner.retry_after
    }

    /// The message, without the source chain.
    pub fn message(&self) -> &str {
        &self.inner.message
    }

    /// The same failure, its message prefixed (what it was part of).
    #[cfg_attr(not(feature = "http-sources"), allow(dead_code))]
    pub(crate) fn prefixed(self, prefix: &str) -> FetchError {
        self.edit(|inner| inner.message.insert_str(0, prefix))
    }

    /// Marks the failure as the fleet lease holder's (see `fleet_probe`).
    pub(crate) fn probed_for_fleet(self) -> FetchError {
        self.edit(|inner| inner.fleet_probe = true)
    }

    pub(crate) fn is_fleet_probe(&self) -> bool {
        self.inner.fleet_probe
    }

    pub(crate) fn ptr_eq(&self, other: &FetchError) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }
}

impl fmt::Display for FetchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.inner.message)
    }
}

impl fmt::Debug for FetchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut debug = f.debug_struct("FetchError");
        debug
            .field("kind", &self.inner.kind)
            .field("message", &self.inner.message);
        if let Some(after) = self.inner.retry_after {
            debug.field("retry_after", &humantime::format_duration(after));
        }
        if let Some(source) = &self.inner.source {
            debug.field("source", &format_args!("{source}"));
        }
        debug.finish()
    }
}

impl std::error::Error for FetchError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.inner
            .source
            .as_deref()
            .map(|source| source as &(dyn std::error::Error + 'static))
    }
}

/// Why a [`TokenHandle`](crate::TokenHandle) has no token to give.
///
/// ```
/// use tokenwarden::{Error, TokenHandle};
///
/// fn authorize(handle: &TokenHandle) -> Result<String, String> {
///     match handle.current() {
///         Ok(token) => Ok(format!("Bearer {}", token.expose_secret())),
///         // Worth retrying the request soon: the refresher is on it.
///         Err(e @ (Error::Pending { .. } | Error::Expired { .. })) => Err(format!("try later: {e}")),
///         // Needs an operator: bad credentials, revoked grant, or shut down.
///         Err(e) => Err(format!("giving up: {e}")),
///     }
/// }
/// ```
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No token has been obtained yet; the first fetch is under way or being retried.
    #[error("no token yet{}", cause(.last_error))]
    Pending {
        /// Why the last try failed, if one has.
        last_error: Option<FetchError>,
    },
    /// The last token expired and no new one could be obtained yet; retries continue.
    #[error("the token expired{}", cause(.last_error))]
    Expired {
        /// Why the last try failed, if one has.
        last_error: Option<FetchError>,
    },
    /// Fetching failed permanently and there is no valid token; `refresh()` or `reject()`
    /// tries again.
    #[error("fetching a token failed permanently: {0}")]
    Failed(FetchError),
    /// The fetch this call waited for failed (any valid token is still served by `current()`).
    #[error("refreshing the token failed: {0}")]
    Fetch(FetchError),
    /// The refresher has stopped (shut down, cancelled, or every handle dropped).
    #[error("the refresher has stopped")]
    Stopped,
    /// The token cannot be sent in an HTTP header (it holds a control character). The token
    /// endpoint's answer is at fault; the message never shows the token.
    #[error("the token cannot be sent in an HTTP header (it holds characters a header forbids)")]
    InvalidHeader,
    /// A source or store was misconfigured (from [`ConfigError`] with `?`).
    #[error("configuration: {0}")]
    Config(ConfigError),
}

/// The header a token would make, refused: [`Token::authorization_header`] returns
/// `Err(InvalidHeaderValue)`, and `?` turns it into this. Never shows the token.
///
/// [`Token::authorization_header`]: crate::Token::authorization_header
impl From<http::header::InvalidHeaderValue> for Error {
    fn from(_: http::header::InvalidHeaderValue) -> Error {
        Error::InvalidHeader
    }
}

impl From<FetchError> for Error {
    fn from(error: FetchError) -> Error {
        Error::Fetch(error)
    }
}

impl From<ConfigError> for Error {
    fn from(error: ConfigError) -> Error {
        Error::Config(error)
    }
}

/// A configuration mistake found when building a source or a store: names the setting and the
/// problem (and never a secret).
///
/// ```
/// # #[cfg(feature = "http-sources")] {
/// use tokenwarden::ClientCredentials;
///
/// let err = ClientCredentials::builder("http://auth.example.com/token", "id", "secret")
///     .build()
///     .unwrap_err();
/// assert!(err.to_string().contains("must use https"));
/// # }
/// ```
#[derive(Clone, Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(String);

impl ConfigError {
    /// A configuration error that says `message`: for code of your own that refuses a setting
    /// (a [`KeyedCredential`](crate::registry::KeyedCredential) factory refusing a key, say).
    /// Name the setting and why.
    pub fn new(message: impl Into<String>) -> ConfigError {
        ConfigError(message.into())
    }
}

fn cause(last_error: &Option<FetchError>) -> String {
    match last_error {
        Some(error) => format!("; last error: {error}"),
        None => String::new(),
    }
}
