//! [`TokenState`]: what a credential's watch channel carries, and the rule for reading it.

use std::time::SystemTime;

use crate::{Error, FetchError, Token};

/// The state of one credential, as published on [`TokenHandle::watch`](crate::TokenHandle::watch).
///
/// ```text
///            fetch ok                  refresh due             fetch ok
///  Pending ───────────▶ Fresh ──────────────────────▶ Refreshing ────────▶ Fresh
///   │  ▲ transient        ▲                                 │ fetch failed
///   │  └─ (retry)         │ fetch ok                        ▼
///   │                     ├────────────────────────────── Stale ── token expires ──▶ Expired
///   │                     │                      (retries with backoff)               │
///   │                     └──────────────────────────────────────────── fetch ok ◀────┘
///   └── permanent failure ──▶ Failed ── slow retry, refresh()/reject() ──▶ (fetch again)
///
///  any state ── shutdown / cancel / every handle dropped ──▶ Stopped
/// ```
///
/// # Example: react to every change
///
/// ```
/// use tokenwarden::{TokenHandle, TokenState};
///
/// async fn log_changes(handle: TokenHandle) {
///     let mut states = handle.watch();
///     while states.changed().await.is_ok() {
///         match &*states.borrow_and_update() {
///             TokenState::Fresh(token) => println!("new token, expires {:?}", token.expiry()),
///             TokenState::Stale { last_error, next_attempt, .. } => {
///                 println!("refresh failing: {last_error}; next attempt at {next_attempt:?}")
///             }
///             TokenState::Stopped => break,
///             _ => {}
///         }
///     }
/// }
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum TokenState {
    /// No token yet: the first fetch is under way or being retried.
    Pending {
        /// Why the last try failed, if one has.
        last_error: Option<FetchError>,
        /// When the next try is due, if one is waiting (`None` while one is under way).
        next_attempt: Option<SystemTime>,
    },
    /// A valid token; no refresh under way.
    Fresh(Token),
    /// A valid token, and a refresh is under way.
    Refreshing(Token),
    /// A refresh failed; the token is still valid and still served. Failures are retried with
    /// backoff (permanent ones on the slow
    /// [`permanent_backoff`](crate::RefreshPolicy::permanent_backoff) schedule).
    Stale {
        /// The still-valid token.
        token: Token,
        /// Why the last refresh failed.
        last_error: FetchError,
        /// When the next try is due (`None`: under way, or a permanent failure that is not
        /// retried).
        next_attempt: Option<SystemTime>,
    },
    /// The token expired before a new one could be obtained; retries continue.
    Expired {
        /// Why the last try failed, if one has.
        last_error: Option<FetchError>,
        /// When the next try is due (`None` while one is under way).
        next_attempt: Option<SystemTime>,
    },
    /// Fetching failed permanently and there is no valid token. It is retried on the slow
    /// [`permanent_backoff`](crate::RefreshPolicy::permanent_backoff) schedule, and at once on
    /// `refresh()` or `reject()`.
    Failed {
        /// Why.
        error: FetchError,
        /// When the next try is due (`None`: under way, or slow retries are turned off).
        next_attempt: Option<SystemTime>,
    },
    /// The refresher has stopped.
    Stopped,
}

impl TokenState {
    /// The token held in this state, if any. It may have expired by the wall clock since it was
    /// published: use [`TokenHandle::current`](crate::TokenHandle::current) to get a valid one.
    pub fn token(&self) -> Option<&Token> {
        match self {
            TokenState::Fresh(token)
            | TokenState::Refreshing(token)
            | TokenState::Stale { token, .. } => Some(token),
            _ => None,
        }
    }

    /// The error of the last fetch, when the last fetch failed (for a [`Failed`](TokenState::Failed)
    /// state, the permanent error).
    pub fn last_error(&self) -> Option<&FetchError> {
        match self {
            TokenState::Pending { last_error, .. } | TokenState::Expired { last_error, .. } => {
                last_error.as_ref()
            }
            TokenState::Stale { last_error, .. } => Some(last_error),
            TokenState::Failed { error, .. } => Some(error),
            _ => None,
        }
    }

    /// The state's name, as the metrics' `state` label and health reports show it: `pending`,
    /// `fresh`, `refreshing`, `stale`, `expired`, `failed` or `stopped`. For log lines and
    /// dashboards of your own that should read the same.
    ///
    /// ```
    /// use tokenwarden::TokenState;
    ///
    /// assert_eq!(TokenState::Stopped.label(), "stopped");
    /// ```
    pub fn label(&self) -> &'static str {
        match self {
            TokenState::Pending { .. } => "pending",
            TokenState::Fresh(_) => "fresh",
            TokenState::Refreshing(_) => "refreshing",
            TokenState::Stale { .. } => "stale",
            TokenState::Expired { .. } => "expired",
            TokenState::Failed { .. } => "failed",
            TokenState::Stopped => "stopped",
        }
    }

    /// The token if it has not expired, else why there is none; and whether the refresher
    /// should be woken (no valid token, or a refresh overdue by the wall clock). `has_passed`
    /// tells whether a point in time is past (the read path's clock).
    pub(crate) fn read(
        &self,
        has_passed: impl Fn(SystemTime) -> bool,
    ) -> (Result<Token, Error>, bool) {
        let valid = |token: &Token| !token.usable_until().is_some_and(&has_passed);
        if let TokenState::Fresh(token) = self
            && let Some(due) = token.refresh_due()
        {
            // One clock comparison on the common path: the refresher never sets the refresh
            // later than the end of serving, so "not due" means "valid" too.
            if !has_passed(due) {
                return (Ok(token.clone()), false);
            }
            if valid(token) {
                return (Ok(token.clone()), true);
            }
        }
        let result = self.read_slow(valid);
        let wake = matches!(result, Err(Error::Pending { .. } | Error::Expired { .. }));
        (result, wake)
    }

    fn read_slow(&self, valid: impl Fn(&Token) -> bool) -> Result<Token, Error> {
        match self {
            TokenState::Fresh(token) | TokenState::Refreshing(token) if valid(token) => {
                Ok(token.clone())
            }
            TokenState::Stale { token, .. } if valid(token) => Ok(token.clone()),
            // Published as valid, but the wall clock says otherwise (e.g. the machine slept).
            TokenState::Fresh(_) | TokenState::Refreshing(_) => {
                Err(Error::Expired { last_error: None })
            }
            TokenState::Stale { last_error, .. } => Err(Error::Expired {
                last_error: Some(last_error.clone()),
            }),
            TokenState::Pending { last_error, .. } => Err(Error::Pending {
                last_error: last_error.clone(),
            }),
            TokenState::Expired { last_error, .. } => Err(Error::Expired {
                last_error: last_error.clone(),
            }),
            TokenState::Failed { error, .. } => Err(Error::Failed(error.clone())),
            TokenState::Stopped => Err(Error::Stopped),
        }
    }

    /// When the next fetch is due after a failure, if one is scheduled.
    pub fn next_attempt(&self) -> Option<SystemTime> {
        match self {
            TokenState::Pending { next_attempt, .. }
            | TokenState::Stale { next_attempt, .. }
            | TokenState::Expired { next_attempt, .. }
            | TokenState::Failed { next_attempt, .. } => *next_attempt,
            _ => None,
        }
    }

    /// Same variant, same token, same error and same next attempt: publishing it again would
    /// tell watchers nothing.
    pub(crate) fn same_as(&self, other: &TokenState) -> bool {
        fn same_error(a: &Option<FetchError>, b: &Option<FetchError>) -> bool {
            match (a, b) {
                (Some(a), Some(b)) => a.ptr_eq(b),
                (None, None) => true,
                _ => false,
            }
        }
        use TokenState::*;
        if self.next_attempt() != other.next_attempt() {
            return false;
        }
        match (self, other) {
            (Pending { last_error: a, .. }, Pending { last_error: b, .. })
            | (Expired { last_error: a, .. }, Expired { last_error: b, .. }) => same_error(a, b),
            (Fresh(a), Fresh(b)) | (Refreshing(a), Refreshing(b)) => a.ptr_eq(b),
            (
                Stale {
                    token: a,
                    last_error: e,
                    ..
                },
                Stale {
                    token: b,
                    last_error: f,
                    ..
                },
            ) => a.ptr_eq(b) && e.ptr_eq(f),
            (Failed { error: a, .. }, Failed { error: b, .. }) => a.ptr_eq(b),
            (Stopped, Stopped) => true,
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const NOW: SystemTime = SystemTime::UNIX_EPOCH;

    fn at_now(at: SystemTime) -> bool {
        at <= NOW
    }

    #[test]
    fn valid_tokens_are_read_and_expired_ones_are_not() {
        let valid = Token::new("t").expires_at(NOW + Duration::from_secs(1));
        let expired = Token::new("t").expires_at(NOW);
        assert!(TokenState::Fresh(valid.clone()).read(at_now).0.is_ok());
        assert!(TokenState::Refreshing(valid.clone()).read(at_now).0.is_ok());
        assert!(matches!(
            TokenState::Fresh(expired.clone()).read(at_now).0,
            Err(Error::Expired { last_error: None })
        ));
        let error = FetchError::transient("down");
        let stale = TokenState::Stale {
            token: expired,
            last_error: error.clone(),
            next_attempt: None,
        };
        assert!(
            matches!(stale.read(at_now).0, Err(Error::Expired { last_error: Some(e) }) if e.ptr_eq(&error))
        );
    }

    #[test]
    fn a_fresh_token_past_its_refresh_time_wakes_the_refresher() {
        let token = Token::new("t")
            .expires_at(NOW + Duration::from_secs(10))
            .with_refresh_due(NOW);
        let (result, wake) = TokenState::Fresh(token.clone()).read(at_now);
        assert!(result.is_ok() && wake, "served, and the refresher told");
        let later = token.with_refresh_due(NOW + Duration::from_secs(5));
        let (result, wake) = TokenState::Fresh(later.clone()).read(at_now);
        assert!(result.is_ok() && !wake);
        // Refreshing already: no need to wake.
        let (result, wake) = TokenState::Refreshing(later.with_refresh_due(NOW)).read(at_now);
        assert!(result.is_ok() && !wake);
    }

    #[test]
    fn tokenless_states_say_why() {
        let error = FetchError::permanent("revoked");
        let failed = TokenState::Failed {
            error,
            next_attempt: None,
        };
        assert!(matches!(failed.read(at_now).0, Err(Error::Failed(_))));
        assert!(matches!(
            TokenState::Stopped.read(at_now).0,
            Err(Error::Stopped)
        ));
        assert!(matches!(
            TokenState::Pending {
                last_error: None,
                next_attempt: None
            }
            .read(at_now)
            .0,
            Err(Error::Pending { .. })
        ));
    }

    #[test]
    fn sameness_is_identity_not_equality() {
        let a = Token::new("same");
        let b = Token::new("same");
        assert!(TokenState::Fresh(a.clone()).same_as(&TokenState::Fresh(a.clone())));
        assert!(!TokenState::Fresh(a.clone()).same_as(&TokenState::Fresh(b)));
        assert!(!TokenState::Fresh(a.clone()).same_as(&TokenState::Refreshing(a)));
    }
}
