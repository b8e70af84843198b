//! [`AzureManagedIdentity`]: tokens of an Azure managed identity, from the Instance Metadata
//! Service (VMs, AKS) or the `IDENTITY_ENDPOINT` of App Service, Functions and Container Apps.

use std::fmt;
use std::time::SystemTime;

use reqwest::StatusCode;
use secrecy::{ExposeSecret, SecretString};

use super::platform_http;
use crate::sources::HttpOptions;
use crate::sources::oauth::http::Endpoint;
use crate::sources::oauth::response::{self, Shape};
use crate::{ConfigError, FetchContext, FetchError, FetchFuture, Token, TokenSource};

/// IMDS, link-local on every Azure VM.
const IMDS_HOST: &str = "http://169.254.169.254";
/// Overrides IMDS's address, as in Azure's own SDKs (AAD pod identity set it).
pub(crate) const IMDS_HOST_ENV: &str = "AZURE_POD_IDENTITY_AUTHORITY_HOST";
const IMDS_PATH: &str = "/metadata/identity/oauth2/token";
const IMDS_API_VERSION: &str = "2018-02-01";
const APP_SERVICE_API_VERSION: &str = "2019-08-01";

/// Tokens of the managed identity of an Azure workload, for one resource (audience).
///
/// [`builder`](AzureManagedIdentity::builder) picks the endpoint as Azure's SDKs do: when
/// `IDENTITY_ENDPOINT` and `IDENTITY_HEADER` are set (App Service, Functions, Container Apps),
/// that endpoint with `X-IDENTITY-HEADER`; otherwise IMDS at `169.254.169.254` (or
/// `AZURE_POD_IDENTITY_AUTHORITY_HOST`) with `Metadata: true`. A user-assigned identity is
/// chosen by [`client_id`](AzureManagedIdentityBuilder::client_id),
/// [`object_id`](AzureManagedIdentityBuilder::object_id) or
/// [`resource_id`](AzureManagedIdentityBuilder::resource_id). Requests go direct (no proxy),
/// bounded by 5 s each.
///
/// IMDS answers 404, 410 and 429 while it is starting or updating; those, 5xx and a refused
/// connection are transient, so a refresher rides them out. The `IDENTITY_HEADER` is a secret:
/// it is never shown in `Debug`, messages or logs.
///
/// # Example
///
/// ```no_run
/// use tokenwarden::Refresher;
/// use tokenwarden::sources::cloud::AzureManagedIdentity;
///
/// # async fn run() -> Result<(), tokenwarden::Error> {
/// // A scope (`.../.default`) or a resource URI: both name the resource.
/// let source = AzureManagedIdentity::builder("https://vault.azure.net/.default").build()?;
/// let vault = Refresher::builder(source).name("key-vault").spawn();
/// # let _ = vault; Ok(()) }
/// ```
pub struct AzureManagedIdentity {
    endpoint: Endpoint,
    /// `Some` for App Service style endpoints: the `X-IDENTITY-HEADER` value.
    identity_header: Option<SecretString>,
}

impl AzureManagedIdentity {
    /// Tokens for `resource`: a resource URI (`https://management.azure.com/`) or a scope
    /// ending in `/.default`, as Azure SDKs take.
    pub fn builder(resource: impl Into<String>) -> AzureManagedIdentityBuilder {
        AzureManagedIdentityBuilder {
            resource: resource.into(),
            identity: None,
            imds_host: None,
            app_service: None,
            http: super::default_http(),
        }
    }
}

impl TokenSource for AzureManagedIdentity {
    fn fetch(&self, _ctx: FetchContext) -> FetchFuture<'_> {
        Box::pin(async move {
            let shown = self.endpoint.shown();
            let (request, secrets) = match &self.identity_header {
                Some(header) => (
                    self.endpoint
                        .get()
                        .header("X-IDENTITY-HEADER", header.expose_secret()),
                    vec![header],
                ),
                None => (self.endpoint.get().header("Metadata", "true"), Vec::new()),
            };
            let answer = self
                .endpoint
                .exchange(request, &secrets)
                .await
                .map_err(|rejection| match rejection.status {
                    // IMDS says these while it starts or updates: retry (Azure's guidance).
                    Some(
                        StatusCode::NOT_FOUND | StatusCode::GONE | StatusCode::TOO_MANY_REQUESTS,
                    ) if self.identity_header.is_none() => {
                        let error = rejection.error;
                        let retry_after = error.retry_after();
                        let transient = FetchError::transient(format!(
                            "{error} (IMDS may be starting or updating)"
                        ));
                        match retry_after {
                            Some(after) => transient.with_retry_after(after),
                            None => transient,
                        }
                    }
                    _ => rejection.error,
                })?;
            parse(&answer.body, shown)
        })
    }

    fn origin(&self) -> Option<String> {
        Some(self.endpoint.shown().to_owned())
    }
}

/// The token in a managed-identity answer: `access_token` with `expires_in` (IMDS, seconds as
/// a string) and/or `expires_on` (Unix seconds as a string: App Service states only this).
fn parse(body: &[u8], endpoint: &str) -> Result<Token, FetchError> {
    let shape = Shape {
        expires_at_field: "expires_on",
        ..Shape::oauth()
    };
    let token = response::parse_token(body, endpoint, &shape, SystemTime::now())?;
    if token.expiry().is_none() {
        return Err(FetchError::transient(format!(
            "{endpoint}: the answer states no expiry (neither `expires_in` nor `expires_on`)"
        )));
    }
    Ok(token)
}

impl fmt::Debug for AzureManagedIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AzureManagedIdentity")
            .field("endpoint", &self.endpoint.shown())
            .field(
                "identity_header",
                &self.identity_header.as_ref().map(|_| "[redacted]"),
            )
            .finish()
    }
}

/// Which user-assigned identity to use.
#[derive(Clone, Debug)]
enum Identity {
    Client(String),
    Object(String),
    Resource(String),
}

/// Configures [`AzureManagedIdentity`]; [`build`](AzureManagedIdentityBuilder::build) checks
/// it.
#[must_use = "a builder does nothing until built"]
pub struct AzureManagedIdentityBuilder {
    resource: String,
    identity: Option<Identity>,
    imds_host: Option<String>,
    app_service: Option<(String, SecretString)>,
    http: HttpOptions,
}

impl AzureManagedIdentityBuilder {
    /// A user-assigned identity, by its client (application) id.
    pub fn client_id(mut self, id: impl Into<String>) -> Self {
        self.identity = Some(Identity::Client(id.into()));
        self
    }

    /// A user-assigned identity, by its object (principal) id.
    pub fn object_id(mut self, id: impl Into<String>) -> Self {
        self.identity = Some(Identity::Object(id.into()));
        self
    }

    /// A user-assigned identity, by its Azure resource id.
    pub fn resource_id(mut self, id: impl Into<String>) -> Self {
        self.identity = Some(Identity::Resource(id.into()));
        self
    }

    /// IMDS at this base URL (`http://host:port`), instead of `AZURE_POD_IDENTITY_AUTHORITY_HOST`
    /// or `http://169.254.169.254`. Ignored when an App Service endpoint is in use.
    pub fn imds_host(mut self, url: impl Into<String>) -> Self {
        self.imds_host = Some(url.into());
        self
    }

    /// An App Service style endpoint and its header secret, instead of the
    /// `IDENTITY_ENDPOINT` and `IDENTITY_HEADER` environment variables.
    pub fn app_service(
        mut self,
        identity_endpoint: impl Into<String>,
        identity_header: impl Into<String>,
    ) -> Self {
        self.app_service = Some((
            identity_endpoint.into(),
            SecretString::from(identity_header.into()),
        ));
        self
    }

    /// HTTP settings (default: 5 s per request). Plain http and a direct connection are
    /// always used, whatever these say.
    pub fn http(mut self, http: HttpOptions) -> Self {
        self.http = http;
        self
    }

    /// Picks the endpoint and checks the settings.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming the field: an empty resource, an endpoint URL that does not
    /// parse, an empty `IDENTITY_HEADER`.
    pub fn build(self) -> Result<AzureManagedIdentity, ConfigError> {
        let resource = self.resource.trim();
        let resource = resource.strip_suffix("/.default").unwrap_or(resource);
        if resource.is_empty() {
            return Err(ConfigError::new(
                "Azure managed identity: the resource is empty",
            ));
        }
        let from_env = || {
            let endpoint = std::env::var("IDENTITY_ENDPOINT").ok()?;
            let header = std::env::var("IDENTITY_HEADER").ok()?;
            Some((endpoint, SecretString::from(header)))
        };
        let app_service = self.app_service.or_else(from_env);
        let http = platform_http(self.http);
        let mut query = form_urlencoded::Serializer::new(String::new());
        let (base, identity_header) = match app_service {
            Some((endpoint, header)) => {
                if header.expose_secret().trim().is_empty() {
                    return Err(ConfigError::new(
                        "Azure managed identity: IDENTITY_HEADER is empty",
                    ));
                }
                query.append_pair("api-version", APP_SERVICE_API_VERSION);
                (endpoint, Some(header))
            }
            None => {
                let host = self
                    .imds_host
                    .or_else(|| std::env::var(IMDS_HOST_ENV).ok())
                    .unwrap_or_else(|| IMDS_HOST.to_owned());
                query.append_pair("api-version", IMDS_API_VERSION);
                (
                    format!("{}{IMDS_PATH}", host.trim().trim_end_matches('/')),
                    None,
                )
            }
        };
        query.append_pair("resource", resource);
        match (&self.identity, identity_header.is_some()) {
            (Some(Identity::Client(id)), _) => query.append_pair("client_id", id),
            (Some(Identity::Object(id)), _) => query.append_pair("object_id", id),
            // IMDS and App Service name this parameter differently.
            (Some(Identity::Resource(id)), false) => query.append_pair("msi_res_id", id),
            (Some(Identity::Resource(id)), true) => query.append_pair("mi_res_id", id),
            (None, _) => &mut query,
        };
        let separator = if base.contains('?') { '&' } else { '?' };
        let url = format!("{base}{separator}{}", query.finish());
        let what = if identity_header.is_some() {
            "Azure managed identity endpoint (IDENTITY_ENDPOINT)"
        } else {
            "Azure IMDS"
        };
        let endpoint = Endpoint::named(&url, &http, what)?;
        Ok(AzureManagedIdentity {
            endpoint,
            identity_header,
        })
    }
}

impl fmt::Debug for AzureManagedIdentityBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AzureManagedIdentityBuilder")
            .field("resource", &self.resource)
            .field("identity", &self.identity)
            .field("imds_host", &self.imds_host)
            .field(
                "app_service",
                &self.app_service.as_ref().map(|(url, _)| url),
            )
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn app_service_answers_state_only_expires_on_in_unix_seconds() {
        let at = SystemTime::now() + Duration::from_secs(3600);
        let secs = at.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs();
        let body = format!(
            r#"{{"access_token":"tok","expires_on":"{secs}","resource":"r","token_type":"Bearer","client_id":"c"}}"#
        );
        let token = parse(body.as_bytes(), "endpoint").unwrap();
        let left = token.time_left(SystemTime::now()).unwrap();
        assert!(left > Duration::from_secs(3590) && left <= Duration::from_secs(3600));
    }

    #[test]
    fn imds_answers_state_expires_in_as_a_string() {
        let later = SystemTime::now() + Duration::from_secs(90_000);
        let secs = later
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let body = format!(
            r#"{{"access_token":"tok","expires_in":"86399","expires_on":"{secs}","token_type":"Bearer"}}"#
        );
        let token = parse(body.as_bytes(), "endpoint").unwrap();
        let left = token.time_left(SystemTime::now()).unwrap();
        assert!(
            left <= Duration::from_secs(86399),
            "the earlier of the two: {left:?}"
        );
    }

    #[test]
    fn an_answer_without_expiry_is_refused_naming_both_fields() {
        let error = parse(br#"{"access_token":"tok"}"#, "endpoint").unwrap_err();
        let message = error.to_string();
        assert!(
            message.contains("expires_in") && message.contains("expires_on"),
            "{message}"
        );
    }
}
