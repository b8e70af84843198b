//! `GitHubActionsOidc` against an emulated runner endpoint, GitHub's `@actions/core` against
//! the same, and the ID token traded by token exchange (workload identity federation).

use tokenwarden::sources::cloud::GitHubActionsOidc;
use tokenwarden::sources::{SubjectToken, TOKEN_TYPE_JWT, TokenExchange};

use super::platform::{GITHUB_REQUEST_TOKEN, Platform};
use super::{claim, failure_saying, first_token, sdk, spawn};

/// The runner's URL comes with a query of its own; the audience is appended to it.
fn request_url(platform: &Platform) -> String {
    platform.url("/_apis/token?api-version=2.0")
}

#[tokio::test]
async fn id_tokens_for_an_audience_as_the_actions_toolkit_gets_them() {
    let platform = Platform::start().await;
    let source = GitHubActionsOidc::builder(request_url(&platform), GITHUB_REQUEST_TOKEN)
        .audience("sts.example.com")
        .build()
        .unwrap();
    assert!(!format!("{source:?}").contains(GITHUB_REQUEST_TOKEN));
    let token = first_token(&spawn(source)).await;
    assert_eq!(claim(&token, "aud"), "sts.example.com");
    assert!(token.expiry().is_some(), "the JWT's exp");
    let seen = platform.seen_at("/_apis/token");
    assert_eq!(seen[0].query["api-version"], "2.0");
    assert_eq!(seen[0].query["audience"], "sts.example.com");

    let env = [
        ("ACTIONS_ID_TOKEN_REQUEST_URL", request_url(&platform)),
        (
            "ACTIONS_ID_TOKEN_REQUEST_TOKEN",
            GITHUB_REQUEST_TOKEN.to_owned(),
        ),
    ];
    let Some(theirs) = sdk::github_toolkit("sts.example.com", &env).await else {
        return;
    };
    let theirs = tokenwarden::Token::new(theirs);
    assert_eq!(
        claim(&theirs, "aud"),
        "sts.example.com",
        "the toolkit read the same answer"
    );
}

#[tokio::test]
async fn the_id_token_is_the_subject_of_a_token_exchange() {
    let platform = Platform::start().await;
    let github = GitHubActionsOidc::builder(request_url(&platform), GITHUB_REQUEST_TOKEN)
        .audience("sts.example.com")
        .build()
        .unwrap();
    let exchange = TokenExchange::builder(
        platform.url("/sts/token"),
        SubjectToken::source(github).token_type(TOKEN_TYPE_JWT),
    )
    .build()
    .unwrap();
    let token = first_token(&spawn(exchange)).await;
    assert!(
        token.expose_secret().starts_with("federated-"),
        "the platform recognised its JWT"
    );
    assert_eq!(platform.seen_at("/_apis/token").len(), 1);
}

#[tokio::test]
async fn a_rejected_request_token_is_a_permanent_failure_that_never_shows_it() {
    let platform = Platform::start().await;
    let wrong = "not-the-runner-token-0c4f";
    let source = GitHubActionsOidc::builder(request_url(&platform), wrong)
        .build()
        .unwrap();
    let handle = spawn(source);
    let error = failure_saying(&handle, "401", wrong).await;
    assert!(matches!(error, tokenwarden::Error::Failed(_)), "{error}");
}
