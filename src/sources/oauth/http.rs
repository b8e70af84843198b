//! The one bounded HTTP exchange every built-in source uses: a time limit, a body-size limit,
//! https (or loopback), errors that name the endpoint and never a secret.

use std::error::Error as _;
use std::fmt;
use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use reqwest::{Client, RequestBuilder, StatusCode, Url};
use secrecy::SecretString;
use zeroize::Zeroizing;

use super::response::{self, OAuthError};
use super::scrub::scrub;
use crate::{ConfigError, FetchError};

/// HTTP settings shared by the built-in sources.
///
/// ```
/// use std::time::Duration;
/// use tokenwarden::sources::HttpOptions;
///
/// let options = HttpOptions::new()
///     .client_builder(reqwest::Client::builder()) // your TLS, proxy and timeout settings
///     .timeout(Duration::from_secs(10))
///     .max_body_bytes(64 * 1024);
/// # let _ = options;
/// ```
#[derive(Clone, Debug)]
pub struct HttpOptions {
    /// The caller's client (built with redirects off), or why it could not be built.
    client: Option<Result<Client, String>>,
    timeout: Duration,
    max_body_bytes: usize,
    allow_insecure_http: bool,
    no_proxy: bool,
    #[cfg(any(feature = "rustls", feature = "native-tls"))]
    identity: Option<reqwest::Identity>,
    #[cfg(any(feature = "rustls", feature = "native-tls"))]
    roots: Vec<reqwest::Certificate>,
}

impl Default for HttpOptions {
    fn default() -> Self {
        HttpOptions {
            client: None,
            timeout: Duration::from_secs(30),
            max_body_bytes: 1024 * 1024,
            allow_insecure_http: false,
            no_proxy: false,
            #[cfg(any(feature = "rustls", feature = "native-tls"))]
            identity: None,
            #[cfg(any(feature = "rustls", feature = "native-tls"))]
            roots: Vec::new(),
        }
    }
}

impl HttpOptions {
    /// The defaults: a client of tokenwarden's own, 30 s per exchange, answers up to 1 MiB,
    /// https only (plain http to loopback addresses is allowed, for tests and local development).
    pub fn new() -> HttpOptions {
        HttpOptions::default()
    }

    /// Sends requests with a client built from `builder`, so its TLS, proxy, timeout and
    /// `User-Agent` settings apply. Its redirect policy is replaced by
    /// `reqwest::redirect::Policy::none()`: a request that carries a credential (a client
    /// secret, a refresh token, an assertion) never follows a redirect, so it never reaches
    /// another origin, whatever the builder said. Without a builder, tokenwarden builds its own
    /// client, which sends `User-Agent: tokenwarden/<version>` and follows no redirect either.
    ///
    /// # Errors
    ///
    /// If the builder cannot build a client, the source's `build()` says why.
    pub fn client_builder(mut self, builder: reqwest::ClientBuilder) -> HttpOptions {
        let built = builder
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| e.to_string());
        self.client = Some(built);
        self
    }

    /// Bound on one whole exchange: connecting, sending, and reading the answer. Default 30 s.
    pub fn timeout(mut self, timeout: Duration) -> HttpOptions {
        self.timeout = timeout;
        self
    }

    /// Largest answer read; a larger one is an error, not an out-of-memory. Default 1 MiB.
    pub fn max_body_bytes(mut self, limit: usize) -> HttpOptions {
        self.max_body_bytes = limit;
        self
    }

    /// Allows plain `http` to hosts other than loopback addresses. Credentials then cross the
    /// network unencrypted: only for networks you trust completely.
    pub fn allow_insecure_http(mut self) -> HttpOptions {
        self.allow_insecure_http = true;
        self
    }

    /// Connects directly, ignoring the proxy environment variables (`HTTPS_PROXY` and the
    /// like) that the client tokenwarden builds otherwise honours. The cloud metadata sources
    /// set it: a metadata server is link-local, and a proxy would answer for another machine.
    /// Applies to the client tokenwarden builds; with
    /// [`client_builder`](HttpOptions::client_builder), set it on your builder instead.
    pub fn no_proxy(mut self) -> HttpOptions {
        self.no_proxy = true;
        self
    }

    /// Presents this client certificate in the TLS handshake: mutual TLS, for
    /// [`Credential::MutualTls`](crate::sources::Credential::MutualTls) (RFC 8705) or any endpoint that
    /// requires a certificate. Build it for the TLS backend in use: with `rustls` (the default),
    /// `reqwest::Identity::from_pem(cert_and_key_pem)`; with only `native-tls`,
    /// `reqwest::Identity::from_pkcs8_pem(cert_pem, key_pem)`. Applies to the client
    /// tokenwarden builds; with [`client_builder`](HttpOptions::client_builder), set it on your
    /// builder instead.
    #[cfg(any(feature = "rustls", feature = "native-tls"))]
    #[cfg_attr(docsrs, doc(cfg(any(feature = "rustls", feature = "native-tls"))))]
    pub fn identity(mut self, identity: reqwest::Identity) -> HttpOptions {
        self.identity = Some(identity);
        self
    }

    /// Also trusts this certificate authority (a private CA in front of an internal identity
    /// provider). Applies to the client tokenwarden builds.
    #[cfg(any(feature = "rustls", feature = "native-tls"))]
    #[cfg_attr(docsrs, doc(cfg(any(feature = "rustls", feature = "native-tls"))))]
    pub fn add_root_certificate(mut self, certificate: reqwest::Certificate) -> HttpOptions {
        self.roots.push(certificate);
        self
    }

    /// Whether requests can carry a client certificate: one was given, or the caller's own
    /// client may have one.
    pub(crate) fn can_present_a_certificate(&self) -> bool {
        #[cfg(any(feature = "rustls", feature = "native-tls"))]
        if self.identity.is_some() {
            return true;
        }
        self.client.is_some()
    }
}

/// A token endpoint, checked and ready to receive requests.
#[derive(Clone)]
pub(crate) struct Endpoint {
    url: Url,
    /// The URL as shown in messages: no user info, no query (either may hold a secret).
    shown: String,
    client: Client,
    timeout: Duration,
    max_body_bytes: usize,
}

/// A successful answer.
pub(crate) struct Answer {
    /// Wiped when dropped: it holds the token (and a refresh token) in plain text.
    pub(crate) body: Zeroizing<Vec<u8>>,
    /// The answer's headers (a metadata server marks its answers with one).
    pub(crate) headers: reqwest::header::HeaderMap,
}

/// A failed exchange: what the server said, if it answered, and the error to report.
pub(crate) struct Rejection {
    /// The HTTP status, when the server answered.
    pub(crate) status: Option<StatusCode>,
    /// The RFC 6749 `error` code, when the answer had one.
    pub(crate) code: Option<String>,
    /// The answer's `DPoP-Nonce` header (RFC 9449), if it had one.
    pub(crate) dpop_nonce: Option<String>,
    pub(crate) error: FetchError,
}

impl Rejection {
    pub(crate) fn transport(error: FetchError) -> Rejection {
        Rejection {
            status: None,
            code: None,
            dpop_nonce: None,
            error,
        }
    }
}

impl From<Rejection> for FetchError {
    fn from(rejection: Rejection) -> FetchError {
        rejection.error
    }
}

impl Endpoint {
    pub(crate) fn new(url: &str, options: &HttpOptions) -> Result<Endpoint, ConfigError> {
        Endpoint::named(url, options, "token endpoint")
    }

    /// An endpoint that `what` names in messages ("token endpoint", "discovery document").
    pub(crate) fn named(
        url: &str,
        options: &HttpOptions,
        what: &str,
    ) -> Result<Endpoint, ConfigError> {
        let url =
            Url::parse(url).map_err(|e| ConfigError::new(format!("{what} URL is invalid: {e}")))?;
        let shown = shown(&url);
        match url.scheme() {
            "https" => {}
            "http" if options.allow_insecure_http || is_loopback(&url) => {}
            "http" => {
                return Err(ConfigError::new(format!(
                    "{what} {shown} must use https (plain http is allowed only to \
                     loopback addresses, or with HttpOptions::allow_insecure_http)"
                )));
            }
            other => {
                return Err(ConfigError::new(format!(
                    "{what} {shown} has scheme `{other}`; expected https"
                )));
            }
        }
        let client = match &options.client {
            Some(Ok(client)) => client.clone(),
            Some(Err(why)) => {
                return Err(ConfigError::new(format!(
                    "{what} {shown}: the client builder given to HttpOptions::client_builder \
                     could not build a client: {why}"
                )));
            }
            None => own_client(options)
                .map_err(|e| ConfigError::new(format!("could not build an HTTP client: {e}")))?,
        };
        Ok(Endpoint {
            url,
            shown,
            client,
            timeout: options.timeout,
            max_body_bytes: options.max_body_bytes,
        })
    }

    /// The endpoint's URL (it may hold a secret in its query: never show it).
    #[cfg_attr(not(feature = "dpop"), allow(dead_code))]
    pub(crate) fn url(&self) -> &Url {
        &self.url
    }

    /// The endpoint as it may appear in messages.
    pub(crate) fn shown(&self) -> &str {
        &self.shown
    }

    /// A GET of this endpoint, asking for JSON.
    pub(crate) fn get(&self) -> RequestBuilder {
        self.client
            .get(self.url.clone())
            .header(reqwest::header::ACCEPT, "application/json")
    }

    /// A POST to this endpoint, asking for JSON.
    pub(crate) fn post(&self) -> RequestBuilder {
        self.client
            .post(self.url.clone())
            .header(reqwest::header::ACCEPT, "application/json")
    }

    /// Sends `request` and reads the answer, within the time and size limits. A non-success
    /// answer becomes a [`FetchError`] per RFC 6749 section 5.2; `secrets` are scrubbed from
    /// anything the server or the transport said.
    pub(crate) async fn exchange(
        &self,
        request: RequestBuilder,
        secrets: &[&SecretString],
    ) -> Result<Answer, Rejection> {
        let scrub = |text: String| scrub(text, secrets);
        let exchange = async {
            let mut response = request.send().await.map_err(|e| {
                Rejection::transport(FetchError::transient(scrub(format!(
                    "{}: {}",
                    self.shown,
                    transport(&e)
                ))))
            })?;
            // No client here follows redirects; should one ever answer for another URL, that
            // answer is never taken for the token endpoint's (it may be an attacker's token).
            if !same_endpoint(response.url(), &self.url) {
                return Err(Rejection {
                    status: Some(response.status()),
                    code: None,
                    dpop_nonce: None,
                    error: FetchError::permanent(scrub(format!(
                        "{}: the answer came from {}, and is refused",
                        self.shown,
                        shown(response.url())
                    ))),
                });
            }
            let status = response.status();
            let headers = response.headers().clone();
            let retry_after = response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| response::retry_after(v, SystemTime::now()));
            let location = response
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| Url::parse(v).ok().map(|url| shown(&url)));

            let too_large = || {
                Rejection::transport(FetchError::transient(format!(
                    "{}: the answer is larger than {} bytes",
                    self.shown, self.max_body_bytes
                )))
            };
            if response
                .content_length()
                .is_some_and(|len| len > self.max_body_bytes as u64)
            {
                return Err(too_large());
            }
            let mut body = Zeroizing::new(Vec::new());
            while let Some(chunk) = response.chunk().await.map_err(|e| {
                Rejection::transport(FetchError::transient(scrub(format!(
                    "{}: reading the answer failed: {}",
                    self.shown,
                    transport(&e)
                ))))
            })? {
                if body.len() + chunk.len() > self.max_body_bytes {
                    return Err(too_large());
                }
                body.extend_from_slice(&chunk);
            }

            if status.is_success() {
                return Ok(Answer { body, headers });
            }
            let mut rejection = self.failure(status, &body, retry_after, location, secrets);
            rejection.dpop_nonce = headers
                .get("dpop-nonce")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            Err(rejection)
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .unwrap_or_else(|_| {
                Err(Rejection::transport(FetchError::transient(format!(
                    "{}: no answer within {}",
                    self.shown,
                    crate::duration_format::Readable(self.timeout)
                ))))
            })
    }

    fn failure(
        &self,
        status: StatusCode,
        body: &[u8],
        retry_after: Option<Duration>,
        location: Option<String>,
        secrets: &[&SecretString],
    ) -> Rejection {
        let error = OAuthError::parse(body);
        let mut message = format!("{} answered {status}", self.shown);
        // Scrubbed whole, then shortened: a secret cut in two would no longer be recognised.
        let detail = shortened(scrub(error.detail(), secrets), LONGEST_DETAIL);
        if !detail.is_empty() {
            message.push_str(": ");
            message.push_str(&detail);
        }
        if status.is_redirection() {
            message.push_str(&format!(
                " (redirects are not followed{})",
                location.map_or(String::new(), |to| format!("; it points to {to}"))
            ));
        }
        let message = scrub(message, secrets);
        let failure = match response::classify(status.as_u16(), &error) {
            crate::FetchErrorKind::Permanent => FetchError::permanent(message),
            _ => FetchError::transient(message),
        };
        Rejection {
            status: Some(status),
            code: error.error,
            dpop_nonce: None,
            error: match retry_after {
                Some(after) => failure.with_retry_after(after),
                None => failure,
            },
        }
    }
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Endpoint")
            .field("url", &self.shown)
            .field("timeout", &self.timeout)
            .field("max_body_bytes", &self.max_body_bytes)
            .finish_non_exhaustive()
    }
}

/// The most of a server's error text a message keeps, in characters.
const LONGEST_DETAIL: usize = 300;

/// `text` cut to `limit` characters, marked with `...` when cut.
fn shortened(text: String, limit: usize) -> String {
    match text.char_indices().nth(limit) {
        Some((at, _)) => format!("{}...", &text[..at]),
        None => text,
    }
}

/// Whether an answer came from the URL that was asked (ignoring a fragment).
fn same_endpoint(answered: &Url, asked: &Url) -> bool {
    answered.as_str().trim_end_matches('#') == asked.as_str().trim_end_matches('#')
        || (answered.scheme() == asked.scheme()
            && answered.host() == asked.host()
            && answered.port_or_known_default() == asked.port_or_known_default()
            && answered.path() == asked.path()
            && answered.query() == asked.query())
}

/// The client tokenwarden builds when the caller gives none: a `User-Agent` of its own, no
/// redirects, rustls whenever the `rustls` feature is on (also when `native-tls` is too, so
/// that the documented default holds), and the caller's client identity for mutual TLS.
fn own_client(options: &HttpOptions) -> reqwest::Result<Client> {
    let builder = Client::builder()
        .user_agent(concat!("tokenwarden/", env!("CARGO_PKG_VERSION")))
        .redirect(reqwest::redirect::Policy::none());
    let builder = if options.no_proxy {
        builder.no_proxy()
    } else {
        builder
    };
    #[cfg(feature = "rustls")]
    let builder = builder.tls_backend_rustls();
    #[cfg(any(feature = "rustls", feature = "native-tls"))]
    let builder = {
        let mut builder = builder;
        if let Some(identity) = &options.identity {
            builder = builder.identity(identity.clone());
        }
        for root in &options.roots {
            builder = builder.add_root_certificate(root.clone());
        }
        builder
    };
    #[cfg(not(any(feature = "rustls", feature = "native-tls")))]
    let _ = options;
    builder.build()
}

/// The URL without user info or query, either of which may carry a secret.
fn shown(url: &Url) -> String {
    let mut url = url.clone();
    let _ = url.set_username("");
    let _ = url.set_password(None);
    url.set_query(None);
    url.set_fragment(None);
    url.to_string()
}

fn is_loopback(url: &Url) -> bool {
    match url.host_str() {
        Some(host) if host.eq_ignore_ascii_case("localhost") => true,
        Some(host) => host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback()),
        None => false,
    }
}

/// What went wrong on the wire, from the error's chain (which carries no URL).
fn transport(error: &reqwest::Error) -> String {
    let what = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "could not connect"
    } else {
        "the request failed"
    };
    let mut text = what.to_string();
    let mut source = error.source();
    let mut last = None;
    while let Some(cause) = source {
        last = Some(cause.to_string());
        source = cause.source();
    }
    if let Some(cause) = last {
        text.push_str(": ");
        text.push_str(&cause);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn https_is_required_except_for_loopback() {
        let options = HttpOptions::new();
        for ok in [
            "https://auth.example.com/token",
            "http://127.0.0.1:8080/token",
            "http://127.1.2.3/token",
            "http://localhost/token",
            "http://[::1]:9000/token",
        ] {
            assert!(Endpoint::new(ok, &options).is_ok(), "{ok}");
        }
        let err = Endpoint::new("http://auth.example.com/token", &options).unwrap_err();
        assert!(err.to_string().contains("must use https"), "{err}");
        assert!(
            Endpoint::new(
                "http://auth.example.com/token",
                &options.clone().allow_insecure_http()
            )
            .is_ok()
        );
        let err = Endpoint::new("ftp://auth.example.com/token", &options).unwrap_err();
        assert!(err.to_string().contains("scheme `ftp`"), "{err}");
        let err = Endpoint::new("not a url", &options).unwrap_err();
        assert!(
            err.to_string().starts_with("token endpoint URL is invalid"),
            "{err}"
        );
    }

    #[test]
    fn shown_urls_drop_user_info_and_query() {
        let options = HttpOptions::new();
        let endpoint =
            Endpoint::new("https://user:pw@auth.test/token?api_key=k#frag", &options).unwrap();
        assert_eq!(endpoint.shown(), "https://auth.test/token");
        assert!(!format!("{endpoint:?}").contains("pw"));
    }
}
