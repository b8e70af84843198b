//! Built-in [`TokenSource`](crate::TokenSource)s for the flows real APIs use.
//!
//! | source | flow |
//! |---|---|
//! | [`ApiKeyExchange`] | a long-lived API key traded for short-lived tokens |
//! | [`ClientCredentials`] | OAuth2 client credentials (RFC 6749 section 4.4) |
//! | [`RefreshTokenGrant`] | OAuth2 refresh-token grant with rotation (RFC 6749 section 6) |
//! | [`StaticToken`], [`FileToken`] | a fixed token; a file something else rotates |
//!
//! The HTTP sources share their rules: a caller's `reqwest::Client` or a default one, a bound
//! on each exchange (30 s) and on the answer's size (1 MiB), https except to loopback
//! addresses, RFC 6749 errors parsed and classified (transient or permanent, `Retry-After`
//! honoured), and messages that name the endpoint but never contain the key, the client secret
//! or a token. See [`HttpOptions`].

mod api_key;
mod client_credentials;
#[cfg(fuzzing)]
#[doc(hidden)]
pub mod fuzzing;
mod http;
mod oauth;
mod refresh_token;
mod response;
mod scrub;
mod static_token;

pub use crate::ConfigError;
pub use api_key::{ApiKeyExchange, ApiKeyExchangeBuilder};
pub use client_credentials::{ClientCredentials, ClientCredentialsBuilder};
pub use http::HttpOptions;
pub use oauth::{BodyFormat, ClientAuth};
pub use refresh_token::{RefreshTokenGrant, RefreshTokenGrantBuilder};
pub use static_token::{FileToken, StaticToken};
