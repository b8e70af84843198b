//! [`Issuer`]: an authorization server found from its issuer URL (OpenID Connect Discovery
//! 1.0, with RFC 8414 as the fallback), and the sources built from it.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Deserialize;

use super::client::{ClientAuth, Credential};
use super::http::{Endpoint, HttpOptions};
use crate::sources::{
    ClientCredentials, ClientCredentialsBuilder, RefreshTokenGrant, RefreshTokenGrantBuilder,
    SubjectToken, TokenExchange, TokenExchangeBuilder,
};
use crate::{ConfigError, FetchError};

/// How long a discovered document is reused: 1 hour. Metadata changes rarely; a registry of a
/// thousand tenants on one identity provider then asks once, and a changed endpoint is picked
/// up within the hour by sources built afterwards.
const CACHED_FOR: Duration = Duration::from_secs(3600);

/// What tokenwarden reads of an authorization server's metadata.
#[derive(Clone, Debug, Deserialize)]
pub(crate) struct Metadata {
    issuer: String,
    token_endpoint: String,
    #[serde(default)]
    grant_types_supported: Option<Vec<String>>,
    #[serde(default)]
    token_endpoint_auth_methods_supported: Option<Vec<String>>,
}

impl Metadata {
    /// Refuses a grant or an authentication method the server says it does not support.
    /// Absent lists are not held against the client: many servers leave them out.
    pub(crate) fn check(
        &self,
        grant_type: &str,
        credential: Option<&Credential>,
        auth: ClientAuth,
    ) -> Result<(), ConfigError> {
        if let Some(grants) = &self.grant_types_supported
            && !grants.iter().any(|g| g == grant_type)
        {
            return Err(ConfigError::new(format!(
                "issuer {} does not offer the grant `{grant_type}` (it offers: {})",
                self.issuer,
                grants.join(", ")
            )));
        }
        let methods: &[&str] = match credential {
            None => &["none"],
            Some(Credential::Secret(_)) if auth == ClientAuth::Basic => &["client_secret_basic"],
            Some(Credential::Secret(_)) => &["client_secret_post"],
            #[cfg(feature = "signing")]
            Some(Credential::PrivateKeyJwt(_)) => &["private_key_jwt"],
            Some(Credential::MutualTls) => &["tls_client_auth", "self_signed_tls_client_auth"],
        };
        if let Some(supported) = &self.token_endpoint_auth_methods_supported
            && !methods.iter().any(|m| supported.iter().any(|s| s == m))
        {
            return Err(ConfigError::new(format!(
                "issuer {} does not accept client authentication `{}` at its token endpoint \
                 (it accepts: {})",
                self.issuer,
                methods[0],
                supported.join(", ")
            )));
        }
        Ok(())
    }
}

/// An authorization server, found from its issuer URL: fetch its metadata once with
/// [`discover`](Issuer::discover), then build any OAuth2 source from it. The sources use the
/// discovered token endpoint, and their `build()` fails with a clear error when the server's
/// metadata says it does not offer the grant or the client authentication method.
///
/// Discovery tries `{issuer}/.well-known/openid-configuration` (OpenID Connect Discovery 1.0)
/// and then `{origin}/.well-known/oauth-authorization-server{path}` (RFC 8414). The document's
/// `issuer` must equal the URL given (both specifications require it: a mismatch is how a
/// mix-up attack shows). Documents are cached for the process, per issuer URL, for 1 hour.
///
/// ```no_run
/// use tokenwarden::Refresher;
/// use tokenwarden::sources::{HttpOptions, Issuer};
///
/// # async fn run() -> Result<(), tokenwarden::Error> {
/// let issuer = Issuer::discover("https://login.example.com/realms/prod", &HttpOptions::new()).await?;
/// let source = issuer.client_credentials("reporting", "s3cr3t").scope("reports").build()?;
/// let handle = Refresher::builder(source).name("reporting").spawn();
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Issuer {
    metadata: Arc<Metadata>,
    http: HttpOptions,
}

impl Issuer {
    /// Fetches (or reuses from the cache) the metadata of the server at `issuer`, with these
    /// HTTP settings; the sources built from it get them too.
    ///
    /// # Errors
    ///
    /// A transient [`FetchError`] if the server could not be reached or answered 5xx; a
    /// permanent one if it has no discovery document at either address, the document is not
    /// valid metadata, its `issuer` differs, or its token endpoint is not https (loopback
    /// excepted). Messages name the URL and the field.
    pub async fn discover(issuer: &str, http: &HttpOptions) -> Result<Issuer, FetchError> {
        let issuer = issuer.trim_end_matches('/');
        if let Some(metadata) = cached(issuer) {
            return Ok(Issuer {
                metadata,
                http: http.clone(),
            });
        }
        let mut last = None;
        for url in discovery_urls(issuer)? {
            let endpoint = Endpoint::named(&url, http, "discovery document")
                .map_err(|e| FetchError::permanent(e.to_string()))?;
            match endpoint.exchange(endpoint.get(), &[]).await {
                Ok(answer) => {
                    let metadata = Arc::new(parse(&answer.body, &url, issuer, http)?);
                    remember(issuer, metadata.clone());
                    return Ok(Issuer {
                        metadata,
                        http: http.clone(),
                    });
                }
                // Not there: try the other address.
                Err(rejection) if rejection.status.is_some_and(|s| s.is_client_error()) => {
                    last = Some(rejection.error);
                }
                Err(rejection) => return Err(rejection.error),
            }
        }
        Err(FetchError::permanent(format!(
            "issuer {issuer} has no discovery document (tried OpenID Connect and RFC 8414 \
             addresses){}",
            last.map_or(String::new(), |e| format!("; last answer: {e}"))
        )))
    }

    /// The issuer identifier.
    pub fn issuer(&self) -> &str {
        &self.metadata.issuer
    }

    /// The token endpoint the sources use.
    pub fn token_endpoint(&self) -> &str {
        &self.metadata.token_endpoint
    }

    /// The client credentials grant at this issuer.
    pub fn client_credentials(
        &self,
        client_id: impl Into<String>,
        credential: impl Into<Credential>,
    ) -> ClientCredentialsBuilder {
        ClientCredentials::builder(self.token_endpoint(), client_id, credential)
            .http(self.http.clone())
            .checked_against(self.metadata.clone())
    }

    /// The refresh-token grant at this issuer.
    pub fn refresh_token_grant(
        &self,
        refresh_token: impl Into<secrecy::SecretString>,
    ) -> RefreshTokenGrantBuilder {
        RefreshTokenGrant::builder(self.token_endpoint(), refresh_token)
            .http(self.http.clone())
            .checked_against(self.metadata.clone())
    }

    /// Token exchange (RFC 8693) at this issuer.
    pub fn token_exchange(&self, subject: SubjectToken) -> TokenExchangeBuilder {
        TokenExchange::builder(self.token_endpoint(), subject)
            .http(self.http.clone())
            .checked_against(self.metadata.clone())
    }

    /// The JWT-bearer grant (RFC 7523) at this issuer.
    #[cfg(feature = "signing")]
    #[cfg_attr(docsrs, doc(cfg(feature = "signing")))]
    pub fn jwt_bearer(
        &self,
        issuer: impl Into<String>,
        key: crate::sources::SigningKey,
    ) -> crate::sources::JwtBearerBuilder {
        crate::sources::JwtBearer::builder(self.token_endpoint(), issuer, key)
            .http(self.http.clone())
            .checked_against(self.metadata.clone())
    }
}

impl fmt::Debug for Issuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Issuer")
            .field("issuer", &self.metadata.issuer)
            .field("token_endpoint", &self.metadata.token_endpoint)
            .finish_non_exhaustive()
    }
}

/// Where the metadata of `issuer` may be: OpenID Connect's address, then RFC 8414's.
fn discovery_urls(issuer: &str) -> Result<[String; 2], FetchError> {
    let url = reqwest::Url::parse(issuer)
        .map_err(|e| FetchError::permanent(format!("issuer URL {issuer:?} is invalid: {e}")))?;
    if url.query().is_some() || url.fragment().is_some() {
        return Err(FetchError::permanent(format!(
            "issuer URL {issuer} has a query or fragment, which issuer identifiers may not"
        )));
    }
    let path = url.path().trim_end_matches('/');
    let origin = url.origin().ascii_serialization();
    Ok([
        format!("{issuer}/.well-known/openid-configuration"),
        format!("{origin}/.well-known/oauth-authorization-server{path}"),
    ])
}

/// The metadata in `body`, checked: an object with `issuer` equal to the one asked for and
/// a usable `token_endpoint`.
fn parse(body: &[u8], url: &str, issuer: &str, http: &HttpOptions) -> Result<Metadata, FetchError> {
    let metadata: Metadata = serde_json::from_slice(body).map_err(|e| {
        FetchError::permanent(format!(
            "{url}: not valid authorization server metadata: {e}"
        ))
    })?;
    if metadata.issuer.trim_end_matches('/') != issuer {
        return Err(FetchError::permanent(format!(
            "{url}: field `issuer` is {:?}, not the issuer asked for ({issuer}); refusing \
             metadata that names another server",
            metadata.issuer
        )));
    }
    Endpoint::new(&metadata.token_endpoint, http)
        .map_err(|e| FetchError::permanent(format!("{url}: field `token_endpoint`: {e}")))?;
    Ok(metadata)
}

type Cache = Mutex<HashMap<String, (Instant, Arc<Metadata>)>>;

fn cache() -> &'static Cache {
    static CACHE: std::sync::OnceLock<Cache> = std::sync::OnceLock::new();
    CACHE.get_or_init(Cache::default)
}

fn cached(issuer: &str) -> Option<Arc<Metadata>> {
    let cache = cache().lock().unwrap_or_else(|p| p.into_inner());
    cache
        .get(issuer)
        .filter(|(at, _)| at.elapsed() < CACHED_FOR)
        .map(|(_, metadata)| metadata.clone())
}

fn remember(issuer: &str, metadata: Arc<Metadata>) {
    let mut cache = cache().lock().unwrap_or_else(|p| p.into_inner());
    cache.insert(issuer.to_owned(), (Instant::now(), metadata));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metadata(grants: Option<&[&str]>, methods: Option<&[&str]>) -> Metadata {
        let list = |l: Option<&[&str]>| l.map(|l| l.iter().map(|s| s.to_string()).collect());
        Metadata {
            issuer: "https://idp.test".into(),
            token_endpoint: "https://idp.test/token".into(),
            grant_types_supported: list(grants),
            token_endpoint_auth_methods_supported: list(methods),
        }
    }

    #[test]
    fn discovery_addresses_follow_both_specifications() {
        assert_eq!(
            discovery_urls("https://idp.test/realms/prod").unwrap(),
            [
                "https://idp.test/realms/prod/.well-known/openid-configuration",
                "https://idp.test/.well-known/oauth-authorization-server/realms/prod",
            ]
        );
        assert_eq!(
            discovery_urls("https://idp.test").unwrap()[1],
            "https://idp.test/.well-known/oauth-authorization-server"
        );
        assert!(discovery_urls("https://idp.test?tenant=a").is_err());
    }

    #[test]
    fn unsupported_grants_and_methods_are_named_and_absent_lists_allow_all() {
        let secret = Credential::from("s");
        let m = metadata(Some(&["authorization_code"]), None);
        let err = m
            .check("client_credentials", Some(&secret), ClientAuth::Basic)
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "issuer https://idp.test does not offer the grant `client_credentials` (it offers: authorization_code)"
        );
        let m = metadata(None, Some(&["client_secret_basic"]));
        assert!(m.check("x", Some(&secret), ClientAuth::Basic).is_ok());
        let err = m.check("x", Some(&secret), ClientAuth::Body).unwrap_err();
        assert!(err.to_string().contains("`client_secret_post`"), "{err}");
        let err = m
            .check("x", Some(&Credential::MutualTls), ClientAuth::Basic)
            .unwrap_err();
        assert!(err.to_string().contains("`tls_client_auth`"), "{err}");
        assert!(
            metadata(None, None)
                .check("anything", None, ClientAuth::Basic)
                .is_ok()
        );
    }
}
