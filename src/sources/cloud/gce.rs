//! [`GceMetadata`]: access and ID tokens from the Google Compute Engine metadata server (GCE,
//! GKE with Workload Identity, Cloud Run, Cloud Functions).

use std::fmt;
use std::time::SystemTime;

use reqwest::StatusCode;

use super::{answer_from, platform_http};
use crate::sources::HttpOptions;
use crate::sources::oauth::http::Endpoint;
use crate::sources::oauth::response::{self, Shape};
use crate::{ConfigError, FetchContext, FetchError, FetchFuture, Token, TokenSource, jwt};

/// The metadata server's name inside Google Cloud.
const DEFAULT_HOST: &str = "metadata.google.internal";
/// Overrides the host (`host` or `host:port`), as in Google's own client libraries.
pub const GCE_METADATA_HOST: &str = "GCE_METADATA_HOST";
const FLAVOR: &str = "metadata-flavor";

/// Tokens of the service account attached to a Google Cloud workload, from its metadata
/// server: OAuth2 access tokens, or OpenID Connect ID tokens for one audience (what Cloud Run
/// and IAP-protected services accept).
///
/// The server is `metadata.google.internal`, or the host in `GCE_METADATA_HOST` (the same
/// override as Google's libraries), or [`host`](GceMetadataBuilder::host). Requests carry
/// `Metadata-Flavor: Google`, go direct (no proxy) over plain http (the server is link-local),
/// and an answer without that header is refused (something else answered). Each request is
/// bounded by 5 s.
///
/// A metadata server that is not up yet (a pod that just started: connection refused, 5xx)
/// is a transient error: the refresher retries with its backoff, readers waiting cap it at
/// 5 s, and the first token arrives once the server answers. The server caches tokens and
/// hands out the same one until about five minutes before its expiry; the refresher asks
/// again on what is left of it (see RELIABILITY.md, same-token answers).
///
/// # Example
///
/// ```no_run
/// use tokenwarden::Refresher;
/// use tokenwarden::sources::cloud::GceMetadata;
///
/// # async fn run() -> Result<(), tokenwarden::Error> {
/// let access = GceMetadata::access_token()
///     .scopes(["https://www.googleapis.com/auth/cloud-platform"])
///     .build()?;
/// let api = Refresher::builder(access).name("gcp").spawn();
///
/// let id = GceMetadata::id_token("https://my-service-abc123-uc.a.run.app").build()?;
/// let run = Refresher::builder(id).name("cloud-run").spawn();
/// # let _ = (api, run); Ok(()) }
/// ```
pub struct GceMetadata {
    endpoint: Endpoint,
    kind: Kind,
}

#[derive(Clone, Debug)]
enum Kind {
    Access,
    Id,
}

impl GceMetadata {
    /// An OAuth2 access token for the `default` service account, with the scopes the
    /// instance was given unless [`scopes`](GceMetadataBuilder::scopes) says otherwise.
    pub fn access_token() -> GceMetadataBuilder {
        GceMetadataBuilder::new(Kind::Access)
    }

    /// An OpenID Connect ID token whose `aud` is `audience` (`format=full`: it carries the
    /// instance's claims too). Its expiry is the JWT's `exp`.
    pub fn id_token(audience: impl Into<String>) -> GceMetadataBuilder {
        let mut builder = GceMetadataBuilder::new(Kind::Id);
        builder.audience = audience.into();
        builder
    }
}

impl TokenSource for GceMetadata {
    fn fetch(&self, _ctx: FetchContext) -> FetchFuture<'_> {
        Box::pin(async move {
            let request = self.endpoint.get().header(FLAVOR, "Google");
            let answer = self
                .endpoint
                .exchange(request, &[])
                .await
                .map_err(|rejection| match rejection.status {
                    Some(StatusCode::NOT_FOUND) => FetchError::permanent(format!(
                        "{} (no such service account on this instance?)",
                        rejection.error
                    )),
                    _ => rejection.error,
                })?;
            let answer = answer_from(answer, self.endpoint.shown(), FLAVOR, "Google")?;
            match self.kind {
                Kind::Access => response::parse_token(
                    &answer.body,
                    self.endpoint.shown(),
                    &Shape::oauth(),
                    SystemTime::now(),
                ),
                Kind::Id => id_token(&answer.body, self.endpoint.shown()),
            }
        })
    }

    fn origin(&self) -> Option<String> {
        Some(self.endpoint.shown().to_owned())
    }
}

/// The ID token in the identity endpoint's answer (the JWT as plain text).
fn id_token(body: &[u8], endpoint: &str) -> Result<Token, FetchError> {
    let bad = |what: &str| FetchError::transient(format!("{endpoint}: {what}"));
    let text = std::str::from_utf8(body).map_err(|_| bad("the answer is not text"))?;
    let text = text.trim();
    let claims = jwt::claims(text).ok_or_else(|| bad("the answer is not a JWT"))?;
    if jwt::expiry(&claims).is_none() {
        return Err(bad("the ID token has no `exp` claim"));
    }
    Ok(Token::new(text.to_owned()))
}

impl fmt::Debug for GceMetadata {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GceMetadata")
            .field("endpoint", &self.endpoint.shown())
            .field("kind", &self.kind)
            .finish()
    }
}

/// Configures [`GceMetadata`]; [`build`](GceMetadataBuilder::build) checks it.
#[must_use = "a builder does nothing until built"]
#[derive(Debug)]
pub struct GceMetadataBuilder {
    kind: Kind,
    audience: String,
    account: String,
    scopes: Vec<String>,
    host: Option<String>,
    http: HttpOptions,
}

impl GceMetadataBuilder {
    fn new(kind: Kind) -> GceMetadataBuilder {
        GceMetadataBuilder {
            kind,
            audience: String::new(),
            account: "default".into(),
            scopes: Vec::new(),
            host: None,
            http: super::default_http(),
        }
    }

    /// The service account: `default` (the default) or its email address.
    pub fn service_account(mut self, account: impl Into<String>) -> GceMetadataBuilder {
        self.account = account.into();
        self
    }

    /// Asks for an access token with these scopes (access tokens only).
    pub fn scopes<S: Into<String>>(
        mut self,
        scopes: impl IntoIterator<Item = S>,
    ) -> GceMetadataBuilder {
        self.scopes = scopes.into_iter().map(Into::into).collect();
        self
    }

    /// The metadata server's `host` or `host:port`, instead of `GCE_METADATA_HOST` or
    /// `metadata.google.internal`.
    pub fn host(mut self, host: impl Into<String>) -> GceMetadataBuilder {
        self.host = Some(host.into());
        self
    }

    /// HTTP settings (default: 5 s per request). Plain http and a direct connection are
    /// always used, whatever these say, since that is how a metadata server is reached.
    pub fn http(mut self, http: HttpOptions) -> GceMetadataBuilder {
        self.http = http;
        self
    }

    /// Checks the settings.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming the field: an empty audience, scopes on an ID token, a
    /// service account or host that cannot go in a URL.
    pub fn build(self) -> Result<GceMetadata, ConfigError> {
        let host = match self.host {
            Some(host) => host,
            None => std::env::var(GCE_METADATA_HOST)
                .ok()
                .filter(|host| !host.trim().is_empty())
                .unwrap_or_else(|| DEFAULT_HOST.to_owned()),
        };
        let host = host.trim().trim_end_matches('/');
        if host.is_empty() || host.contains(['/', '?', '#', '@']) {
            return Err(ConfigError::new(format!(
                "GCE metadata host `{host}` is not a host or host:port"
            )));
        }
        let account = &self.account;
        if account.is_empty() || !account.chars().all(|c| c.is_ascii_graphic() && c != '/') {
            return Err(ConfigError::new(format!(
                "GCE service account `{account}` is not `default` or an email address"
            )));
        }
        let base = format!("http://{host}/computeMetadata/v1/instance/service-accounts/{account}");
        let url = match self.kind {
            Kind::Access => {
                let mut url = format!("{base}/token");
                if !self.scopes.is_empty() {
                    let scopes = self.scopes.join(",");
                    url.push('?');
                    url.push_str(
                        &form_urlencoded::Serializer::new(String::new())
                            .append_pair("scopes", &scopes)
                            .finish(),
                    );
                }
                url
            }
            Kind::Id => {
                if !self.scopes.is_empty() {
                    return Err(ConfigError::new(
                        "GCE ID token: scopes apply to access tokens only",
                    ));
                }
                if self.audience.trim().is_empty() {
                    return Err(ConfigError::new("GCE ID token: the audience is empty"));
                }
                let query = form_urlencoded::Serializer::new(String::new())
                    .append_pair("audience", &self.audience)
                    .append_pair("format", "full")
                    .finish();
                format!("{base}/identity?{query}")
            }
        };
        let endpoint = Endpoint::named(&url, &platform_http(self.http), "GCE metadata server")?;
        Ok(GceMetadata {
            endpoint,
            kind: self.kind,
        })
    }
}
