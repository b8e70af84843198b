//! Credentials declared in configuration: serde types that describe named credentials and
//! build a [`Registry`] from them, so that a service reads its config file (with whatever
//! config crate it uses) and spawns every credential in one call.
//!
//! A grant names its `token_url`, or its `issuer` (the token endpoint is then discovered at
//! spawn). Secrets are never written in the file: each is named by an environment variable (read once,
//! at [`spawn`](CredentialsConfig::spawn)) or a file (read at every fetch, so a rotated mount is
//! picked up). Durations are human-readable (`"30s"`, `"5m"`). Unknown fields are refused, so a
//! typo is an error, not a silently ignored setting.
//!
//! ```toml
//! max_concurrent_fetches = 16
//!
//! [credentials.orders-api]
//! flow = "client_credentials"
//! token_url = "https://auth.example.com/oauth/token"
//! client_id = "orders-service"
//! client_secret = { env = "ORDERS_CLIENT_SECRET" }
//! auth = "basic"                 # or "body"
//! scopes = ["orders.read", "orders.write"]
//! audience = "https://orders.example.com"
//! policy = { refresh_at = 0.75, fetch_timeout = "10s" }
//!
//! [credentials.gcp]
//! flow = "gce_metadata"
//! scopes = ["https://www.googleapis.com/auth/cloud-platform"]
//!
//! [credentials.vault]
//! flow = "azure_managed_identity"
//! resource = "https://vault.azure.net"
//! ```
//!
//! ```
//! use tokenwarden::config::CredentialsConfig;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // With any serde format; JSON here, TOML in `examples/config.rs`.
//! let config: CredentialsConfig = serde_json::from_str(r#"{
//!     "credentials": {
//!         "static": { "flow": "file", "path": "/run/secrets/api-token" }
//!     }
//! }"#)?;
//! let registry = config.spawn().await?;
//! assert!(registry.get("static").is_some());
//! registry.shutdown();
//! # Ok(()) }
//! ```

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::sources::cloud::{AzureManagedIdentity, GceMetadata, GitHubActionsOidc};
use crate::sources::{
    ApiKeyExchange, ClientAuth, ClientCredentials, FileToken, Issuer, RefreshTokenGrant, Secret,
};
use crate::{ConfigError, FileStore, RefreshPolicy, Refresher, RefresherBuilder, Registry};

/// Every credential of a service, by name, and the registry's settings.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct CredentialsConfig {
    /// How many fetches may run at once across the credentials (default 32).
    #[serde(default)]
    pub max_concurrent_fetches: Option<usize>,
    /// The credentials, by name (the name keys the registry and appears in logs).
    pub credentials: BTreeMap<String, CredentialConfig>,
}

/// One credential: which flow, and its settings.
#[derive(Clone, Debug, Deserialize)]
#[serde(tag = "flow", rename_all = "snake_case", deny_unknown_fields)]
#[non_exhaustive]
pub enum CredentialConfig {
    /// OAuth2 client credentials ([`ClientCredentials`]).
    ClientCredentials {
        /// The token endpoint (or give `issuer`).
        #[serde(default)]
        token_url: Option<String>,
        /// The issuer, whose token endpoint is discovered at spawn (OpenID discovery, RFC
        /// 8414 fallback), and whose metadata the grant is checked against.
        #[serde(default)]
        issuer: Option<String>,
        /// The client's id.
        client_id: String,
        /// The client's secret.
        client_secret: SecretConfig,
        /// How the client authenticates (default `basic`).
        #[serde(default)]
        auth: AuthConfig,
        /// Scopes asked for.
        #[serde(default)]
        scopes: Vec<String>,
        /// The `audience` parameter.
        #[serde(default)]
        audience: Option<String>,
        /// The `resource` parameter (RFC 8707).
        #[serde(default)]
        resource: Option<String>,
        /// Other request parameters.
        #[serde(default)]
        params: BTreeMap<String, String>,
        /// Refresh policy overrides.
        #[serde(default)]
        policy: PolicyConfig,
    },
    /// OAuth2 refresh-token grant ([`RefreshTokenGrant`]).
    RefreshToken {
        /// The token endpoint (or give `issuer`).
        #[serde(default)]
        token_url: Option<String>,
        /// The issuer, whose token endpoint is discovered at spawn.
        #[serde(default)]
        issuer: Option<String>,
        /// The refresh token to start from.
        refresh_token: SecretConfig,
        /// The client's id, if the server wants one.
        #[serde(default)]
        client_id: Option<String>,
        /// The client's secret, for a confidential client.
        #[serde(default)]
        client_secret: Option<SecretConfig>,
        /// How the client authenticates (default `basic`).
        #[serde(default)]
        auth: AuthConfig,
        /// Scopes asked for.
        #[serde(default)]
        scopes: Vec<String>,
        /// Where rotated refresh tokens are kept across restarts ([`FileStore`]).
        #[serde(default)]
        store: Option<PathBuf>,
        /// Refresh policy overrides.
        #[serde(default)]
        policy: PolicyConfig,
    },
    /// An API key traded for short-lived tokens ([`ApiKeyExchange`]).
    ApiKey {
        /// The exchange endpoint.
        url: String,
        /// The API key.
        api_key: SecretConfig,
        /// Refresh policy overrides.
        #[serde(default)]
        policy: PolicyConfig,
    },
    /// The GCE metadata server ([`GceMetadata`]): an access token, or an ID token when
    /// `audience` is set.
    GceMetadata {
        /// An ID token for this audience instead of an access token.
        #[serde(default)]
        audience: Option<String>,
        /// Scopes of the access token.
        #[serde(default)]
        scopes: Vec<String>,
        /// The service account (default `default`).
        #[serde(default)]
        service_account: Option<String>,
        /// The metadata server's `host:port` (default `GCE_METADATA_HOST` or
        /// `metadata.google.internal`).
        #[serde(default)]
        host: Option<String>,
        /// Refresh policy overrides.
        #[serde(default)]
        policy: PolicyConfig,
    },
    /// Azure managed identity ([`AzureManagedIdentity`]).
    AzureManagedIdentity {
        /// The resource (or a `.../.default` scope).
        resource: String,
        /// A user-assigned identity's client id.
        #[serde(default)]
        client_id: Option<String>,
        /// IMDS's base URL (default `AZURE_POD_IDENTITY_AUTHORITY_HOST` or 169.254.169.254).
        #[serde(default)]
        imds_host: Option<String>,
        /// Refresh policy overrides.
        #[serde(default)]
        policy: PolicyConfig,
    },
    /// The GitHub Actions job's ID token ([`GitHubActionsOidc`]), from the runner's
    /// environment.
    GithubActions {
        /// The audience.
        #[serde(default)]
        audience: Option<String>,
        /// Refresh policy overrides.
        #[serde(default)]
        policy: PolicyConfig,
    },
    /// A token in a file something else rotates ([`FileToken`]).
    File {
        /// The file.
        path: PathBuf,
        /// Refresh policy overrides.
        #[serde(default)]
        policy: PolicyConfig,
    },
}

/// Where a secret comes from: exactly one of `env` (read once, at spawn) or `file` (read at
/// every fetch). A secret written in the configuration as a string is refused, and the
/// refusal does not repeat it.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct SecretConfig {
    /// An environment variable that holds it.
    pub env: Option<String>,
    /// A file that holds it.
    pub file: Option<PathBuf>,
}

impl<'de> Deserialize<'de> for SecretConfig {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Fields {
            #[serde(default)]
            env: Option<String>,
            #[serde(default)]
            file: Option<PathBuf>,
        }

        struct Visitor;

        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = SecretConfig;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("{ env = \"NAME\" } or { file = \"/path\" }")
            }

            // Serde's own message would quote the string: the secret.
            fn visit_str<E: serde::de::Error>(self, _secret: &str) -> Result<SecretConfig, E> {
                Err(E::custom(
                    "a secret is not written in configuration: name an environment variable \
                     ({ env = \"NAME\" }) or a file ({ file = \"/path\" })",
                ))
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<SecretConfig, A::Error> {
                let fields =
                    Fields::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
                Ok(SecretConfig {
                    env: fields.env,
                    file: fields.file,
                })
            }
        }

        deserializer.deserialize_any(Visitor)
    }
}

/// How a client authenticates at the token endpoint.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum AuthConfig {
    /// HTTP Basic (`client_secret_basic`).
    #[default]
    Basic,
    /// In the request body (`client_secret_post`).
    Body,
}

/// Overrides of [`RefreshPolicy`]'s defaults; what is left out keeps its default.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct PolicyConfig {
    /// [`RefreshPolicy::refresh_at`]: the fraction of the lifetime, in (0, 1].
    #[serde(default)]
    pub refresh_at: Option<f64>,
    /// [`RefreshPolicy::jitter`], in [0, 1).
    #[serde(default)]
    pub jitter: Option<f64>,
    /// [`RefreshPolicy::min_margin`].
    #[serde(default)]
    pub min_margin: Option<String>,
    /// [`RefreshPolicy::serve_margin`].
    #[serde(default)]
    pub serve_margin: Option<String>,
    /// [`RefreshPolicy::fetch_timeout`].
    #[serde(default)]
    pub fetch_timeout: Option<String>,
    /// [`RefreshPolicy::default_lifetime`].
    #[serde(default)]
    pub default_lifetime: Option<String>,
    /// [`RefreshPolicy::max_retry_while_waiting`].
    #[serde(default)]
    pub max_retry_while_waiting: Option<String>,
    /// The first retry's delay ([`Backoff::initial`](crate::Backoff::initial)).
    #[serde(default)]
    pub backoff_initial: Option<String>,
    /// The longest retry delay ([`Backoff::max`](crate::Backoff::max)).
    #[serde(default)]
    pub backoff_max: Option<String>,
}

impl CredentialsConfig {
    /// Builds every credential and spawns it in a new [`Registry`] keyed by name. Credentials
    /// that name an `issuer` ask it for its metadata first (bounded by 30 s each); the others
    /// touch no network here.
    ///
    /// # Errors
    ///
    /// The first credential that cannot be built, as a [`ConfigError`] that names it and the
    /// field (`credential \`orders-api\`: client_secret: environment variable
    /// ORDERS_CLIENT_SECRET is not set`). Nothing is spawned then.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime, like `tokio::spawn`.
    pub async fn spawn(&self) -> Result<Registry<String>, ConfigError> {
        let mut built = Vec::with_capacity(self.credentials.len());
        for (name, credential) in &self.credentials {
            let refresher = credential
                .refresher()
                .await
                .map_err(|e| ConfigError::new(format!("credential `{name}`: {e}")))?;
            built.push((name.clone(), refresher));
        }
        let mut registry = Registry::builder();
        if let Some(limit) = self.max_concurrent_fetches {
            registry = registry.max_concurrent_fetches(limit);
        }
        let registry = registry.build();
        for (name, refresher) in built {
            registry.insert(name, refresher);
        }
        Ok(registry)
    }
}

impl CredentialConfig {
    /// The refresher this credential describes, not yet spawned. Asks the issuer for its
    /// metadata when the credential names an `issuer` rather than a `token_url`.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the field that is wrong.
    pub async fn refresher(&self) -> Result<RefresherBuilder, ConfigError> {
        let (builder, policy) = match self {
            CredentialConfig::ClientCredentials {
                token_url,
                issuer,
                client_id,
                client_secret,
                auth,
                scopes,
                audience,
                resource,
                params,
                policy,
            } => {
                let secret = client_secret.secret("client_secret")?;
                let mut source = match token_endpoint(token_url, issuer).await? {
                    At::Url(url) => ClientCredentials::builder(url, client_id, secret),
                    At::Issuer(issuer) => issuer.client_credentials(client_id, secret),
                }
                .auth(auth.client_auth());
                if !scopes.is_empty() {
                    source = source.scope(scopes.join(" "));
                }
                if let Some(audience) = audience {
                    source = source.audience(audience);
                }
                if let Some(resource) = resource {
                    source = source.resource(resource);
                }
                for (name, value) in params {
                    source = source.param(name, value);
                }
                (Refresher::builder(source.build()?), policy)
            }
            CredentialConfig::RefreshToken {
                token_url,
                issuer,
                refresh_token,
                client_id,
                client_secret,
                auth,
                scopes,
                store,
                policy,
            } => {
                let refresh = refresh_token.value_now("refresh_token")?;
                let mut source = match token_endpoint(token_url, issuer).await? {
                    At::Url(url) => RefreshTokenGrant::builder(url, refresh),
                    At::Issuer(issuer) => issuer.refresh_token_grant(refresh),
                };
                if let Some(id) = client_id {
                    source = source.client_id(id);
                }
                if let Some(secret) = client_secret {
                    source = source.client_secret(secret.secret("client_secret")?);
                }
                source = source.auth(auth.client_auth());
                if !scopes.is_empty() {
                    source = source.scope(scopes.join(" "));
                }
                let mut builder = Refresher::builder(source.build()?);
                if let Some(path) = store {
                    builder = builder.store(FileStore::new(path));
                }
                (builder, policy)
            }
            CredentialConfig::ApiKey {
                url,
                api_key,
                policy,
            } => {
                let key = api_key.secret("api_key")?;
                (
                    Refresher::builder(ApiKeyExchange::builder(url, key).build()?),
                    policy,
                )
            }
            CredentialConfig::GceMetadata {
                audience,
                scopes,
                service_account,
                host,
                policy,
            } => {
                let mut source = match audience {
                    Some(audience) => GceMetadata::id_token(audience),
                    None => GceMetadata::access_token(),
                };
                if !scopes.is_empty() {
                    source = source.scopes(scopes.iter().cloned());
                }
                if let Some(account) = service_account {
                    source = source.service_account(account);
                }
                if let Some(host) = host {
                    source = source.host(host);
                }
                (Refresher::builder(source.build()?), policy)
            }
            CredentialConfig::AzureManagedIdentity {
                resource,
                client_id,
                imds_host,
                policy,
            } => {
                let mut source = AzureManagedIdentity::builder(resource);
                if let Some(id) = client_id {
                    source = source.client_id(id);
                }
                if let Some(host) = imds_host {
                    source = source.imds_host(host);
                }
                (Refresher::builder(source.build()?), policy)
            }
            CredentialConfig::GithubActions { audience, policy } => {
                let mut source = GitHubActionsOidc::from_env()?;
                if let Some(audience) = audience {
                    source = source.audience(audience);
                }
                (Refresher::builder(source.build()?), policy)
            }
            CredentialConfig::File { path, policy } => {
                (Refresher::builder(FileToken::new(path)), policy)
            }
        };
        Ok(builder.policy(policy.apply(RefreshPolicy::default())?))
    }
}

/// Where a grant sends its requests.
enum At<'a> {
    Url(&'a str),
    Issuer(Issuer),
}

/// The token endpoint from exactly one of `token_url` and `issuer` (discovered).
async fn token_endpoint<'a>(
    token_url: &'a Option<String>,
    issuer: &Option<String>,
) -> Result<At<'a>, ConfigError> {
    match (token_url, issuer) {
        (Some(url), None) => Ok(At::Url(url)),
        (None, Some(issuer)) => Issuer::discover(issuer, &crate::sources::HttpOptions::new())
            .await
            .map(At::Issuer)
            .map_err(|e| ConfigError::new(format!("issuer: discovery failed: {e}"))),
        _ => Err(ConfigError::new(
            "give exactly one of `token_url` or `issuer`",
        )),
    }
}

impl SecretConfig {
    fn source(&self, field: &str) -> Result<Source<'_>, ConfigError> {
        match (&self.env, &self.file) {
            (Some(env), None) => Ok(Source::Env(env)),
            (None, Some(file)) => Ok(Source::File(file)),
            _ => Err(ConfigError::new(format!(
                "{field}: give exactly one of `env` or `file` (secrets are not written in \
                 configuration)"
            ))),
        }
    }

    /// The secret as a source sends it: a file is read at every fetch.
    fn secret(&self, field: &str) -> Result<Secret, ConfigError> {
        match self.source(field)? {
            Source::Env(name) => Ok(Secret::value(env_var(name, field)?)),
            Source::File(path) => Ok(Secret::file(path)),
        }
    }

    /// The secret's value now (a refresh token to start from).
    fn value_now(&self, field: &str) -> Result<String, ConfigError> {
        match self.source(field)? {
            Source::Env(name) => env_var(name, field),
            Source::File(path) => std::fs::read_to_string(path)
                .map(|text| text.trim().to_owned())
                .map_err(|e| ConfigError::new(format!("{field}: file {}: {e}", path.display()))),
        }
    }
}

enum Source<'a> {
    Env(&'a str),
    File(&'a PathBuf),
}

fn env_var(name: &str, field: &str) -> Result<String, ConfigError> {
    match std::env::var(name) {
        Ok(value) if !value.trim().is_empty() => Ok(value),
        Ok(_) => Err(ConfigError::new(format!(
            "{field}: environment variable {name} is empty"
        ))),
        Err(_) => Err(ConfigError::new(format!(
            "{field}: environment variable {name} is not set"
        ))),
    }
}

impl AuthConfig {
    fn client_auth(self) -> ClientAuth {
        match self {
            AuthConfig::Basic => ClientAuth::Basic,
            AuthConfig::Body => ClientAuth::Body,
        }
    }
}

impl PolicyConfig {
    /// `policy` with these overrides.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the field: a fraction out of range, a duration that does not
    /// parse.
    pub fn apply(&self, mut policy: RefreshPolicy) -> Result<RefreshPolicy, ConfigError> {
        if let Some(at) = self.refresh_at {
            if !(at > 0.0 && at <= 1.0) {
                return Err(ConfigError::new(format!(
                    "policy.refresh_at: {at} is not in (0, 1]"
                )));
            }
            policy.refresh_at = at;
        }
        if let Some(jitter) = self.jitter {
            if !(0.0..1.0).contains(&jitter) {
                return Err(ConfigError::new(format!(
                    "policy.jitter: {jitter} is not in [0, 1)"
                )));
            }
            policy.jitter = jitter;
        }
        let durations: [(&str, &Option<String>, &mut Duration); 7] = [
            ("min_margin", &self.min_margin, &mut policy.min_margin),
            ("serve_margin", &self.serve_margin, &mut policy.serve_margin),
            (
                "fetch_timeout",
                &self.fetch_timeout,
                &mut policy.fetch_timeout,
            ),
            (
                "default_lifetime",
                &self.default_lifetime,
                &mut policy.default_lifetime,
            ),
            (
                "max_retry_while_waiting",
                &self.max_retry_while_waiting,
                &mut policy.max_retry_while_waiting,
            ),
            (
                "backoff_initial",
                &self.backoff_initial,
                &mut policy.backoff.initial,
            ),
            ("backoff_max", &self.backoff_max, &mut policy.backoff.max),
        ];
        for (field, text, target) in durations {
            if let Some(text) = text {
                *target = humantime::parse_duration(text).map_err(|e| {
                    ConfigError::new(format!(
                        "policy.{field}: `{text}` is not a duration like \"30s\" or \"5m\": {e}"
                    ))
                })?;
            }
        }
        if policy.fetch_timeout.is_zero() {
            return Err(ConfigError::new(
                "policy.fetch_timeout: must be more than 0",
            ));
        }
        Ok(policy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(json: &str) -> Result<RefreshPolicy, ConfigError> {
        let config: PolicyConfig = serde_json::from_str(json).unwrap();
        config.apply(RefreshPolicy::default())
    }

    #[test]
    fn policy_overrides_apply_and_the_rest_keep_their_defaults() {
        let applied =
            policy(r#"{"refresh_at": 0.5, "fetch_timeout": "10s", "backoff_max": "2m"}"#).unwrap();
        let defaults = RefreshPolicy::default();
        assert_eq!(applied.refresh_at, 0.5);
        assert_eq!(applied.fetch_timeout, Duration::from_secs(10));
        assert_eq!(applied.backoff.max, Duration::from_secs(120));
        assert_eq!(applied.serve_margin, defaults.serve_margin);
    }

    #[test]
    fn bad_policy_values_are_refused_naming_the_field() {
        for (json, field) in [
            (r#"{"refresh_at": 1.5}"#, "policy.refresh_at"),
            (r#"{"jitter": -0.1}"#, "policy.jitter"),
            (r#"{"serve_margin": "soon"}"#, "policy.serve_margin"),
            (r#"{"fetch_timeout": "0s"}"#, "policy.fetch_timeout"),
        ] {
            let message = policy(json).unwrap_err().to_string();
            assert!(message.contains(field), "{json}: {message}");
        }
    }

    #[test]
    fn a_secret_needs_exactly_one_source() {
        for json in [r#"{}"#, r#"{"env": "A", "file": "/b"}"#] {
            let secret: SecretConfig = serde_json::from_str(json).unwrap();
            let message = secret.secret("client_secret").unwrap_err().to_string();
            assert!(message.contains("client_secret") && message.contains("exactly one"));
        }
    }

    #[test]
    fn unknown_fields_and_flows_are_refused() {
        let typo = r#"{"flow": "file", "path": "/t", "polcy": {}}"#;
        assert!(serde_json::from_str::<CredentialConfig>(typo).is_err());
        let flow = r#"{"flow": "carrier_pigeon"}"#;
        assert!(serde_json::from_str::<CredentialConfig>(flow).is_err());
    }
}
