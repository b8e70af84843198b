//! `AzureManagedIdentity` against emulated IMDS and App Service endpoints, and azure-identity
//! against the same.

use std::time::{Duration, SystemTime};

use tokenwarden::sources::cloud::AzureManagedIdentity;

use super::platform::{AZURE_CLIENT_ID, IDENTITY_HEADER, Platform};
use super::{failure_saying, first_token, sdk, spawn};

const SCOPE: &str = "https://vault.azure.net/.default";
const RESOURCE: &str = "https://vault.azure.net";

#[tokio::test]
async fn imds_tokens_for_a_user_assigned_identity_as_azure_identity_gets_them() {
    let platform = Platform::start().await;
    let source = AzureManagedIdentity::builder(SCOPE)
        .client_id(AZURE_CLIENT_ID)
        .imds_host(platform.url(""))
        .build()
        .unwrap();
    let token = first_token(&spawn(source)).await;
    assert!(token.expose_secret().starts_with("azure-imds-"));
    let left = token.time_left(SystemTime::now()).unwrap();
    assert!(
        left > Duration::from_secs(86000),
        "expires_in as a string: {left:?}"
    );
    let seen = platform.seen_at("/metadata/identity/oauth2/token");
    assert_eq!(seen[0].header("metadata"), Some("true"));
    assert_eq!(seen[0].query["api-version"], "2018-02-01");
    assert_eq!(seen[0].query["resource"], RESOURCE, "the scope's resource");
    assert_eq!(seen[0].query["client_id"], AZURE_CLIENT_ID);

    // Azure's own library, pointed at the same IMDS by AZURE_POD_IDENTITY_AUTHORITY_HOST.
    let env = [("AZURE_POD_IDENTITY_AUTHORITY_HOST", platform.url(""))];
    let Some(theirs) = sdk::python(&["azure", SCOPE, AZURE_CLIENT_ID], &env).await else {
        return;
    };
    assert!(theirs.starts_with("azure-imds-"), "{theirs}");
    let sdk_seen = platform.seen_at("/metadata/identity/oauth2/token");
    let last = sdk_seen.last().unwrap();
    assert_eq!(
        last.query["resource"], RESOURCE,
        "azure-identity asked the same way"
    );
}

#[tokio::test]
async fn app_service_tokens_carry_the_identity_header_and_never_show_it() {
    let platform = Platform::start().await;
    let source = AzureManagedIdentity::builder(RESOURCE)
        .app_service(platform.url("/msi/token"), IDENTITY_HEADER)
        .build()
        .unwrap();
    assert!(!format!("{source:?}").contains(IDENTITY_HEADER));
    let token = first_token(&spawn(source)).await;
    assert!(token.expose_secret().starts_with("azure-app-"));
    let left = token.time_left(SystemTime::now()).unwrap();
    assert!(
        left > Duration::from_secs(86000),
        "expires_on honoured: {left:?}"
    );
    let seen = platform.seen_at("/msi/token");
    assert_eq!(seen[0].header("x-identity-header"), Some(IDENTITY_HEADER));
    assert_eq!(seen[0].query["api-version"], "2019-08-01");

    let env = [
        ("IDENTITY_ENDPOINT", platform.url("/msi/token")),
        ("IDENTITY_HEADER", IDENTITY_HEADER.to_owned()),
    ];
    let Some(theirs) = sdk::python(&["azure", SCOPE], &env).await else {
        return;
    };
    assert!(theirs.starts_with("azure-app-"), "{theirs}");
}

#[tokio::test]
async fn a_wrong_identity_header_fails_without_echoing_it() {
    let platform = Platform::start().await;
    let wrong = "wrong-identity-header-5e1d";
    let source = AzureManagedIdentity::builder(RESOURCE)
        .app_service(platform.url("/msi/token"), wrong)
        .build()
        .unwrap();
    let handle = spawn(source);
    failure_saying(&handle, "401", wrong).await;
}

#[tokio::test]
async fn imds_answering_410_while_it_updates_is_ridden_out() {
    let platform = Platform::start().await;
    platform.fail(410, 2);
    let source = AzureManagedIdentity::builder(RESOURCE)
        .imds_host(platform.url(""))
        .build()
        .unwrap();
    let token = first_token(&spawn(source)).await;
    assert!(token.expose_secret().starts_with("azure-imds-"));
    assert_eq!(platform.seen_at("/metadata/identity/oauth2/token").len(), 3);
}

#[test]
fn an_empty_resource_is_refused() {
    let error = AzureManagedIdentity::builder("/.default")
        .build()
        .unwrap_err();
    assert!(error.to_string().contains("resource"), "{error}");
}
