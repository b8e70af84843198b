//! Workload identity: tokens the platform a service runs on hands out, with no secret in the
//! service's configuration.
//!
//! | source | platform | wire format |
//! |---|---|---|
//! | [`GceMetadata`] | Google Compute Engine, GKE Workload Identity, Cloud Run | the metadata server: `GET /computeMetadata/v1/instance/service-accounts/{account}/token` (access) or `/identity?audience=` (ID token), `Metadata-Flavor: Google` |
//! | [`AzureManagedIdentity`] | Azure VMs and AKS (IMDS); App Service, Functions, Container Apps (`IDENTITY_ENDPOINT`) | `GET /metadata/identity/oauth2/token?api-version=2018-02-01&resource=` with `Metadata: true`; or `IDENTITY_ENDPOINT?api-version=2019-08-01&resource=` with `X-IDENTITY-HEADER` |
//! | [`GitHubActionsOidc`] | GitHub Actions jobs with `id-token: write` | `GET $ACTIONS_ID_TOKEN_REQUEST_URL&audience=` with the request token as bearer; answer `{"value": jwt}` |
//! | [`FileToken::kubernetes`](crate::sources::FileToken::kubernetes) | Kubernetes projected service-account tokens | a file the kubelet rewrites (atomically, by a symlink swap) before the token expires |
//!
//! Every one of them is a [`TokenSource`](crate::TokenSource): spawn a refresher on it, or
//! use it as the subject of a token exchange
//! ([`SubjectToken::source`](crate::sources::SubjectToken::source)), which is how workload
//! identity federation trades a platform's token for another provider's.
//!
//! What they share: the platform's endpoint is plain http on a link-local or loopback address,
//! reached directly (never through a proxy from the environment), each request bounded by 5 s;
//! a platform endpoint that is not up yet (a pod that just started) is a transient error, so
//! the refresher keeps retrying until it answers.

mod azure;
mod gce;
mod github;

use std::time::Duration;

pub use azure::{AzureManagedIdentity, AzureManagedIdentityBuilder};
pub use gce::{GCE_METADATA_HOST, GceMetadata, GceMetadataBuilder};
pub use github::{GitHubActionsOidc, GitHubActionsOidcBuilder};

use crate::FetchError;
use crate::sources::HttpOptions;
use crate::sources::oauth::http::Answer;

/// A platform endpoint answers in milliseconds when it is up; 5 s bounds one that is not.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// The HTTP settings a platform source starts from.
fn default_http() -> HttpOptions {
    HttpOptions::new().timeout(REQUEST_TIMEOUT)
}

/// `options` as a platform endpoint needs them: plain http (it is link-local) and no proxy.
fn platform_http(options: HttpOptions) -> HttpOptions {
    options.allow_insecure_http().no_proxy()
}

/// `answer`, if it carries `header: value`, which the platform's server sets on every answer.
fn answer_from(
    answer: Answer,
    endpoint: &str,
    header: &str,
    value: &str,
) -> Result<Answer, FetchError> {
    let marked = answer
        .headers
        .get(header)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case(value));
    if marked {
        Ok(answer)
    } else {
        Err(FetchError::transient(format!(
            "{endpoint}: the answer has no `{header}: {value}` header, so it did not come from \
             the metadata server"
        )))
    }
}
