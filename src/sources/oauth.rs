//! The parts of an OAuth2 token request shared by the grants (RFC 6749 sections 2.3.1 and 4-6).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use reqwest::RequestBuilder;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
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

/// A client's identity at the token endpoint; the secret is optional (public clients).
#[derive(Clone)]
pub(crate) struct Client {
    pub(crate) id: Option<String>,
    pub(crate) secret: Option<SecretString>,
    pub(crate) auth: ClientAuth,
}

/// A token request: `params` (grant type, scope, ...) plus the client's authentication,
/// encoded as `format`.
pub(crate) fn token_request<'a>(
    endpoint: &Endpoint,
    client: &'a Client,
    format: BodyFormat,
    mut params: Vec<(&'a str, &'a str)>,
) -> RequestBuilder {
    let mut request = endpoint.post();
    match (client.auth, &client.id, &client.secret) {
        (ClientAuth::Basic, Some(id), Some(secret)) => {
            request = request.header(AUTHORIZATION, basic(id, secret));
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
    match format {
        BodyFormat::Form => {
            let mut form = form_urlencoded::Serializer::new(String::new());
            form.extend_pairs(params);
            request
                .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(form.finish())
        }
        BodyFormat::Json => {
            let object: Map<String, Value> = params
                .into_iter()
                .map(|(k, v)| (k.to_owned(), Value::String(v.to_owned())))
                .collect();
            request
                .header(CONTENT_TYPE, "application/json")
                .body(Value::Object(object).to_string())
        }
    }
}

/// `Basic base64(urlencode(id) ":" urlencode(secret))`, marked sensitive.
fn basic(id: &str, secret: &SecretString) -> HeaderValue {
    let encode = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let credentials = format!("{}:{}", encode(id), encode(secret.expose_secret()));
    let mut value = HeaderValue::try_from(format!("Basic {}", STANDARD.encode(credentials)))
        .expect("base64 is a valid header value");
    value.set_sensitive(true);
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_are_form_encoded_first() {
        let value = basic("my client", &SecretString::from("s3:cr/t"));
        let encoded = value.to_str().unwrap().strip_prefix("Basic ").unwrap();
        let decoded = String::from_utf8(STANDARD.decode(encoded).unwrap()).unwrap();
        assert_eq!(decoded, "my+client:s3%3Acr%2Ft");
        assert!(value.is_sensitive());
    }
}
