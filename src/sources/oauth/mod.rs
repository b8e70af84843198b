//! The OAuth 2.0 and HTTP plumbing the flows share: one bounded request to a token endpoint
//! ([`http`]), client authentication and the token request ([`client`]), reading answers and
//! errors ([`response`]), secrets from files or the environment ([`secret`]), issuer discovery
//! ([`discovery`]), signed assertions ([`assertion`]) and the scrubbing that keeps secrets
//! out of messages ([`scrub`]). The public types here are re-exported from
//! [`sources`](crate::sources); the modules themselves are private.

#[cfg(feature = "signing")]
pub(crate) mod assertion;
pub(crate) mod client;
pub(crate) mod discovery;
pub(crate) mod http;
pub(crate) mod response;
pub(crate) mod scrub;
pub(crate) mod secret;
