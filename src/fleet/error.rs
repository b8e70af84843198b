//! [`FleetError`]: why a fleet store could not be used, with its cause as data.

use std::fmt;

/// What kind of trouble a [`FleetError`] is, so that a service (and the refresher) can tell a
/// store that is away for a while from one that is configured wrongly.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FleetErrorKind {
    /// The store could not be reached: connection refused, reset, or no route.
    Unreachable,
    /// The store refused this replica's user or password.
    Authentication,
    /// The store did not answer within its bound.
    Timeout,
    /// The fleet's record cannot be opened with this replica's key (another key, or tampered
    /// with). A configuration error: this replica never mints over that record.
    KeyMismatch,
    /// The store answered with an error to one of the fleet's scripts or commands (a missing
    /// permission, a cluster that cannot run them).
    Script,
    /// The fleet's record is there but cannot be read as a token.
    Corrupt,
    /// Anything else (a custom store's own error).
    Other,
}

impl FleetErrorKind {
    /// A short name for logs and metrics: `unreachable`, `authentication`, `timeout`,
    /// `key_mismatch`, `script`, `corrupt`, `other`.
    pub fn as_str(self) -> &'static str {
        match self {
            FleetErrorKind::Unreachable => "unreachable",
            FleetErrorKind::Authentication => "authentication",
            FleetErrorKind::Timeout => "timeout",
            FleetErrorKind::KeyMismatch => "key_mismatch",
            FleetErrorKind::Script => "script",
            FleetErrorKind::Corrupt => "corrupt",
            FleetErrorKind::Other => "other",
        }
    }
}

impl fmt::Display for FleetErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a fleet store could not be used: its [`kind`](FleetError::kind) and a message that
/// names the store (its address, never a password) and the cause. It holds no secret.
///
/// ```
/// use tokenwarden::fleet::{FleetError, FleetErrorKind};
///
/// let error = FleetError::with_kind(FleetErrorKind::Timeout, "my store did not answer");
/// assert_eq!(error.kind(), FleetErrorKind::Timeout);
/// assert_eq!(error.to_string(), "my store did not answer");
/// ```
#[derive(Clone, Debug)]
pub struct FleetError {
    kind: FleetErrorKind,
    message: String,
}

impl FleetError {
    /// An error of kind [`Other`](FleetErrorKind::Other) with this message.
    pub fn new(message: impl Into<String>) -> FleetError {
        FleetError::with_kind(FleetErrorKind::Other, message)
    }

    /// An error of `kind` with this message (which must hold no secret).
    pub fn with_kind(kind: FleetErrorKind, message: impl Into<String>) -> FleetError {
        FleetError {
            kind,
            message: message.into(),
        }
    }

    /// What kind of trouble it is.
    pub fn kind(&self) -> FleetErrorKind {
        self.kind
    }
}

impl fmt::Display for FleetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for FleetError {}
