//! [`TokenSource`]: the one trait a credential flow implements, and [`from_fn`].

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::SystemTime;

use crate::{FetchError, Token};

/// The future a [`TokenSource`] returns.
pub type FetchFuture<'a> = Pin<Box<dyn Future<Output = Result<Token, FetchError>> + Send + 'a>>;

/// Something that can obtain a fresh token: an HTTP token endpoint, a file, a closure.
///
/// The refresher calls [`fetch`](TokenSource::fetch) one at a time, wraps every call in a
/// timeout, and treats a panic as a transient failure, so an implementation only has to get a
/// token or say why it could not. It is object safe: `Arc<dyn TokenSource>` is a source too.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use tokenwarden::{FetchContext, FetchError, FetchFuture, Token, TokenSource};
///
/// struct Fixed;
///
/// impl TokenSource for Fixed {
///     fn fetch(&self, _ctx: FetchContext) -> FetchFuture<'_> {
///         Box::pin(async { Ok(Token::new("abc").expires_in(Duration::from_secs(300))) })
///     }
/// }
/// ```
///
/// For a closure, [`from_fn`] is shorter.
pub trait TokenSource: Send + Sync + 'static {
    /// Obtains a new token.
    ///
    /// Errors say whether retrying can help (see [`FetchError`]); their messages must never
    /// contain a secret.
    fn fetch(&self, ctx: FetchContext) -> FetchFuture<'_>;

    /// Where the tokens come from, for the refresher's own messages about a token it refuses
    /// (a token endpoint's URL, a file's path). It must not contain a secret. Default: `None`.
    fn origin(&self) -> Option<String> {
        None
    }

    /// Whether a fetch spends a secret that can be presented only once: a rotating refresh
    /// token (the server issues a new one with each answer and revokes the whole grant when a
    /// spent one is presented again). Default: `false` (client credentials, API keys and signed
    /// assertions can be presented by any number of replicas at once).
    ///
    /// A refresher in a fleet ([`RefresherBuilder::shared`](crate::RefresherBuilder::shared))
    /// never fetches from a source that says `true` without the fleet's lease: while the fleet
    /// store is out of reach it serves its valid token and waits, rather than risk the grant.
    fn spends_single_use_secret(&self) -> bool {
        false
    }
}

impl<S: TokenSource + ?Sized> TokenSource for Arc<S> {
    fn fetch(&self, ctx: FetchContext) -> FetchFuture<'_> {
        (**self).fetch(ctx)
    }

    fn origin(&self) -> Option<String> {
        (**self).origin()
    }

    fn spends_single_use_secret(&self) -> bool {
        (**self).spends_single_use_secret()
    }
}

impl<S: TokenSource + ?Sized> TokenSource for Box<S> {
    fn fetch(&self, ctx: FetchContext) -> FetchFuture<'_> {
        (**self).fetch(ctx)
    }

    fn origin(&self) -> Option<String> {
        (**self).origin()
    }

    fn spends_single_use_secret(&self) -> bool {
        (**self).spends_single_use_secret()
    }
}

/// Why a fetch happens.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FetchReason {
    /// There has never been a token (or the initial one had expired).
    Initial,
    /// The current token is due for renewal, or expired after failed refreshes.
    Scheduled,
    /// A caller asked with [`TokenHandle::refresh`](crate::TokenHandle::refresh).
    Forced,
    /// A server rejected the current token ([`TokenHandle::reject`](crate::TokenHandle::reject)).
    Rejected,
}

impl fmt::Display for FetchReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FetchReason::Initial => "initial",
            FetchReason::Scheduled => "scheduled",
            FetchReason::Forced => "forced",
            FetchReason::Rejected => "rejected",
        })
    }
}

/// What a [`TokenSource`] knows about the fetch it is asked for.
///
/// Sources can be called directly in their own tests:
///
/// ```
/// use tokenwarden::{FetchContext, FetchReason, Token, TokenSource};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let source = tokenwarden::from_fn(|ctx| async move {
///     let previous = ctx.previous().map(|t| t.expose_secret().to_owned());
///     Ok(Token::new(format!("after-{}", previous.unwrap_or_default())))
/// });
/// let ctx = FetchContext::new(FetchReason::Rejected).with_previous(Token::new("old"));
/// let token = source.fetch(ctx).await.unwrap();
/// assert_eq!(token.expose_secret(), "after-old");
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct FetchContext {
    reason: FetchReason,
    previous: Option<Token>,
    attempt: u32,
    started_at: SystemTime,
}

impl FetchContext {
    /// A context for a first attempt with no previous token, starting now. For calling a
    /// source directly, e.g. in its tests.
    pub fn new(reason: FetchReason) -> FetchContext {
        FetchContext {
            reason,
            previous: None,
            attempt: 1,
            started_at: SystemTime::now(),
        }
    }

    pub(crate) fn for_attempt(
        reason: FetchReason,
        previous: Option<Token>,
        attempt: u32,
        started_at: SystemTime,
    ) -> FetchContext {
        FetchContext {
            reason,
            previous,
            attempt,
            started_at,
        }
    }

    /// Sets the previous token (builder style, for tests of sources).
    pub fn with_previous(mut self, previous: Token) -> FetchContext {
        self.previous = Some(previous);
        self
    }

    /// Why this fetch happens. Retries keep the reason of the first attempt.
    pub fn reason(&self) -> FetchReason {
        self.reason
    }

    /// The most recent token, even if it has expired (a refresh-token grant needs its refresh
    /// token); `None` before the first success.
    pub fn previous(&self) -> Option<&Token> {
        self.previous.as_ref()
    }

    /// 1 for a first try, 2 for the first retry after a failure, and so on.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// When the refresher started this fetch, by its [`Clock`](crate::Clock). Relative
    /// lifetimes are measured from here.
    pub fn started_at(&self) -> SystemTime {
        self.started_at
    }
}

/// Turns an async closure into a [`TokenSource`].
///
/// ```
/// use std::time::Duration;
/// use tokenwarden::{FetchError, Token};
///
/// let source = tokenwarden::from_fn(|ctx| async move {
///     let _why = ctx.reason();
///     Ok::<_, FetchError>(Token::new("abc").expires_in(Duration::from_secs(60)))
/// });
/// # let _ = tokenwarden::Refresher::builder(source);
/// ```
pub fn from_fn<F, Fut>(fetch: F) -> FnSource<F>
where
    F: Fn(FetchContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Token, FetchError>> + Send + 'static,
{
    FnSource {
        fetch,
        single_use: false,
    }
}

/// A [`TokenSource`] made from a closure by [`from_fn`].
#[derive(Clone)]
pub struct FnSource<F> {
    fetch: F,
    single_use: bool,
}

impl<F> FnSource<F> {
    /// Says that each fetch spends a single-use secret (a rotating refresh token): see
    /// [`TokenSource::spends_single_use_secret`].
    ///
    /// ```
    /// use tokenwarden::{FetchError, Token, TokenSource};
    ///
    /// let source = tokenwarden::from_fn(|_ctx| async {
    ///     Ok::<_, FetchError>(Token::new("abc").with_refresh_token("rotated"))
    /// })
    /// .single_use();
    /// assert!(source.spends_single_use_secret());
    /// ```
    pub fn single_use(mut self) -> FnSource<F> {
        self.single_use = true;
        self
    }
}

impl<F, Fut> TokenSource for FnSource<F>
where
    F: Fn(FetchContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Token, FetchError>> + Send + 'static,
{
    fn fetch(&self, ctx: FetchContext) -> FetchFuture<'_> {
        Box::pin((self.fetch)(ctx))
    }

    fn spends_single_use_secret(&self) -> bool {
        self.single_use
    }
}

impl<F> fmt::Debug for FnSource<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FnSource")
    }
}
