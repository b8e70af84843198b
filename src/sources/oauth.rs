//! The parts of an OAuth2 token request shared by the grants (RFC 6749 sections 2.3.1 and 4-6).

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use reqwest::RequestBuilder;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};

use crate::FetchError;
use crate::token::sensitive_authorization;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value};

use super::http::Endpoint;

/// How the client authenticates to the token endpoint.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClientAuth {
    /// HTTP Basic with the form-encoded id and secret (`client_secret_basic`, RFC 6749
    /// section 2.3.1). The default, and what the RFC says servers must support.
    #[default]
    Basic,
    /// `client_id` and `client_secret` as request parameters (`client_secret_post`).
    Body,
}

/// How the request's parameters are encoded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum BodyFormat {
    /// `application/x-www-form-urlencoded`, as RFC 6749 specifies. The default.
    #[default]
    Form,
    /// `application/json`, which some services require.
    Json,
}

/// The setters every OAuth2 grant builder shares, written once. The builder needs fields
/// `auth: ClientAuth`, `format: BodyFormat`, `params: Vec<(String, String)>` and
/// `http: HttpOptions`.
macro_rules! oauth_request_setters {
    () => {
        /// How a client with a secret authenticates. Default: [`ClientAuth::Basic`].
        pub fn auth(mut self, auth: ClientAuth) -> Self {
            self.auth = auth;
            self
        }

        /// How the request body is encoded. Default: [`BodyFormat::Form`].
        pub fn body_format(mut self, format: BodyFormat) -> Self {
            self.format = format;
            self
        }

        /// The `scope` parameter (space-separated scopes).
        pub fn scope(self, scope: impl Into<String>) -> Self {
            self.param("scope", scope)
        }

        /// Any other parameter a service requires (e.g. `provider=client_credentials`).
        pub fn param(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
            self.params.push((name.into(), value.into()));
            self
        }

        /// HTTP client, time and size limits. Default: [`HttpOptions::new`].
        pub fn http(mut self, http: HttpOptions) -> Self {
            self.http = http;
            self
        }
    };
}
pub(crate) use oauth_request_setters;

/// A client's identity at the token endpoint; the secret is optional (public clients).
#[derive(Clone)]
pub(crate) struct Client {
    pub(crate) id: Option<String>,
    pub(crate) secret: Option<SecretString>,
    pub(crate) auth: ClientAuth,
}

/// What every OAuth2 grant sends besides its own parameters: where, as which client, how
/// encoded, and the configured extra parameters (scope, audience, ...).
#[derive(Clone)]
pub(crate) struct TokenRequest {
    pub(crate) endpoint: Endpoint,
    pub(crate) client: Client,
    pub(crate) format: BodyFormat,
    pub(crate) params: Vec<(String, String)>,
}

impl TokenRequest {
    /// The request for a grant: its own parameters first, then the configured ones, plus the
    /// client's authentication.
    pub(crate) fn build<'a>(
        &'a self,
        mut params: Vec<(&'a str, &'a str)>,
    ) -> Result<RequestBuilder, FetchError> {
        params.extend(self.params.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let mut request = self.endpoint.post();
        match (self.client.auth, &self.client.id, &self.client.secret) {
            (ClientAuth::Basic, Some(id), Some(secret)) => {
                request = request.header(AUTHORIZATION, basic(id, secret)?);
            }
            (_, id, secret) => {
                if let Some(id) = id {
                    params.push(("client_id", id));
                }
                if let Some(secret) = secret {
                    params.push(("client_secret", secret.expose_secret()));
                }
            }
        }
        match self.format {
            BodyFormat::Form => {
                let mut form = form_urlencoded::Serializer::new(String::new());
                form.extend_pairs(params);
                Ok(request
                    .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
                    .body(form.finish()))
            }
            BodyFormat::Json => {
                let object: Map<String, Value> = params
                    .into_iter()
                    .map(|(k, v)| (k.to_owned(), Value::String(v.to_owned())))
                    .collect();
                Ok(request
                    .header(CONTENT_TYPE, "application/json")
                    .body(Value::Object(object).to_string()))
            }
        }
    }
}

impl fmt::Debug for TokenRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenRequest")
            .field("endpoint", &self.endpoint.shown())
            .field("client_id", &self.client.id)
            .field("auth", &self.client.auth)
            .field("format", &self.format)
            .finish_non_exhaustive()
    }
}

/// `Basic base64(urlencode(id) ":" urlencode(secret))`, marked sensitive. (Base64 always fits
/// in a header; the error path exists so nothing here can panic.)
fn basic(id: &str, secret: &SecretString) -> Result<HeaderValue, FetchError> {
    let encode = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let credentials = format!("{}:{}", encode(id), encode(secret.expose_secret()));
    sensitive_authorization("Basic", &STANDARD.encode(credentials))
        .map_err(|_| FetchError::permanent("the client credentials cannot go in a header"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_are_form_encoded_first() {
        let value = basic("my client", &SecretString::from("s3:cr/t")).unwrap();
        let encoded = value.to_str().unwrap().strip_prefix("Basic ").unwrap();
        let decoded = String::from_utf8(STANDARD.decode(encoded).unwrap()).unwrap();
        assert_eq!(decoded, "my+client:s3%3Acr%2Ft");
        assert!(value.is_sensitive());
    }
}
