//! Using tokens on outgoing requests: a `reqwest::RequestBuilder` extension, and (feature
//! `middleware`) a `reqwest-middleware` middleware that retries once on a rejected token.

#[cfg(feature = "middleware")]
pub mod middleware;
mod request;

pub use request::RequestBuilderExt;
