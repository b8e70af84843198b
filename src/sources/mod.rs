//! Built-in [`TokenSource`](crate::TokenSource)s for the flows real APIs use.
//!
//! | source | flow |
//! |---|---|
//! | [`ApiKeyExchange`] | a long-lived API key traded for short-lived tokens |
//! | [`ClientCredentials`] | OAuth2 client credentials (RFC 6749 section 4.4) |
//! | [`RefreshTokenGrant`] | OAuth2 refresh-token grant with rotation (RFC 6749 section 6) |
//! | [`StaticToken`], [`FileToken`] | a fixed token; a file something else rotates (a Kubernetes projected service-account token: [`FileToken::kubernetes`]) |
//! | [`cloud`] | workload identity: the GCE metadata server, Azure managed identity, GitHub Actions OIDC |
//!
//! The HTTP sources share their rules: a client from the caller's `reqwest::ClientBuilder` or
//! a default one (neither follows redirects), a bound
//! on each exchange (30 s) and on the answer's size (1 MiB), https except to loopback
//! addresses, RFC 6749 errors parsed and classified (transient or permanent, `Retry-After`
//! honoured), and messages that name the endpoint but never contain the key, the client secret
//! or a token. See [`HttpOptions`].

#[cfg(feature = "http-sources")]
mod api_key;
#[cfg(feature = "http-sources")]
mod client_credentials;
#[cfg(feature = "http-sources")]
#[cfg_attr(docsrs, doc(cfg(any(feature = "rustls", feature = "native-tls"))))]
pub mod cloud;
#[cfg(all(fuzzing, feature = "http-sources"))]
#[doc(hidden)]
pub mod fuzzing;
#[cfg(feature = "signing")]
mod jwt_bearer;
#[cfg(feature = "http-sources")]
mod oauth;
#[cfg(feature = "http-sources")]
mod refresh_token;
mod static_token;
#[cfg(feature = "http-sources")]
mod token_exchange;

pub use crate::ConfigError;
#[cfg(feature = "http-sources")]
#[cfg_attr(docsrs, doc(cfg(any(feature = "rustls", feature = "native-tls"))))]
pub use api_key::{ApiKeyExchange, ApiKeyExchangeBuilder};
#[cfg(feature = "http-sources")]
#[cfg_attr(docsrs, doc(cfg(any(feature = "rustls", feature = "native-tls"))))]
pub use client_credentials::{ClientCredentials, ClientCredentialsBuilder};
#[cfg(feature = "signing")]
#[cfg_attr(docsrs, doc(cfg(feature = "signing")))]
pub use jwt_bearer::{JwtBearer, JwtBearerBuilder};
#[cfg(feature = "signing")]
#[cfg_attr(docsrs, doc(cfg(feature = "signing")))]
pub use oauth::assertion::{ServiceAccountKey, SigningKey};
#[cfg(feature = "http-sources")]
#[cfg_attr(docsrs, doc(cfg(any(feature = "rustls", feature = "native-tls"))))]
pub use oauth::client::{BodyFormat, ClientAuth, Credential};
#[cfg(feature = "http-sources")]
#[cfg_attr(docsrs, doc(cfg(any(feature = "rustls", feature = "native-tls"))))]
pub use oauth::discovery::Issuer;
#[cfg(feature = "http-sources")]
#[cfg_attr(docsrs, doc(cfg(any(feature = "rustls", feature = "native-tls"))))]
pub use oauth::http::HttpOptions;
#[cfg(feature = "http-sources")]
#[cfg_attr(docsrs, doc(cfg(any(feature = "rustls", feature = "native-tls"))))]
pub use oauth::secret::Secret;
#[cfg(feature = "http-sources")]
#[cfg_attr(docsrs, doc(cfg(any(feature = "rustls", feature = "native-tls"))))]
pub use refresh_token::{RefreshTokenGrant, RefreshTokenGrantBuilder};
pub use static_token::{FileToken, StaticToken};
#[cfg(feature = "http-sources")]
#[cfg_attr(docsrs, doc(cfg(any(feature = "rustls", feature = "native-tls"))))]
pub use token_exchange::{
    SubjectToken, TOKEN_TYPE_ACCESS_TOKEN, TOKEN_TYPE_ID_TOKEN, TOKEN_TYPE_JWT, TokenExchange,
    TokenExchangeBuilder,
};
