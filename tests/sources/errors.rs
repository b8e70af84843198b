//! Every class of failure, through the shared exchange.

use std::time::Duration;

use serde_json::json;
use tokenwarden::sources::{ClientCredentials, HttpOptions};
use tokenwarden::{FetchContext, FetchError, FetchReason, TokenSource};

use crate::server::{Reply, Server, assert_no_secret};

const SECRET: &str = "client-secret-XYZ";

async fn fetch_with(server: &Server, http: HttpOptions) -> Result<tokenwarden::Token, FetchError> {
    ClientCredentials::builder(server.url("/token"), "client-1", SECRET)
        .http(http)
        .build()
        .unwrap()
        .fetch(FetchContext::new(FetchReason::Initial))
        .await
}

async fn fetch_answer(reply: Reply) -> FetchError {
    let server = Server::start().await;
    server.reply([reply]);
    fetch_with(&server, HttpOptions::new()).await.unwrap_err()
}

#[tokio::test]
async fn oauth_client_errors_are_permanent_and_shown() {
    for (status, code) in [
        (401, "invalid_client"),
        (400, "invalid_grant"),
        (400, "unauthorized_client"),
        (400, "unsupported_grant_type"),
        (400, "invalid_scope"),
        (403, "access_denied"),
    ] {
        let error = fetch_answer(Reply::json(
            status,
            json!({
                "error": code,
                "error_description": format!("bad credentials for {SECRET}"),
                "error_uri": "https://docs.test/oauth-errors"
            }),
        ))
        .await;
        let text = error.to_string();
        assert!(error.is_permanent(), "{status} {code}: {text}");
        assert!(
            text.starts_with("http://127.0.0.1:"),
            "names the endpoint: {text}"
        );
        assert!(text.contains(&format!("answered {status}")), "{text}");
        assert!(text.contains(code), "{text}");
        assert!(
            text.contains("see https://docs.test/oauth-errors"),
            "{text}"
        );
        assert_no_secret(&text, &[SECRET]);
    }
}

#[tokio::test]
async fn overload_and_server_errors_are_transient_with_retry_after() {
    let error = fetch_answer(
        Reply::json(503, json!({"error": "temporarily_unavailable"})).header("retry-after", "120"),
    )
    .await;
    assert!(error.is_transient());
    assert_eq!(error.retry_after(), Some(Duration::from_secs(120)));

    let in_a_minute =
        httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(61));
    let error =
        fetch_answer(Reply::raw(429, "slow down").header("retry-after", &in_a_minute)).await;
    assert!(error.is_transient());
    let after = error.retry_after().unwrap();
    assert!(
        after > Duration::from_secs(55) && after <= Duration::from_secs(61),
        "{after:?}"
    );

    for status in [408, 500, 502, 504] {
        let error = fetch_answer(Reply::raw(status, "<html>oops</html>")).await;
        assert!(error.is_transient(), "{status}");
        assert!(
            error
                .to_string()
                .ends_with(&format!("answered {status} {}", reason(status)))
        );
    }
    let error = fetch_answer(Reply::json(
        400,
        json!({"error": "temporarily_unavailable"}),
    ))
    .await;
    assert!(error.is_transient());
}

fn reason(status: u16) -> &'static str {
    reqwest::StatusCode::from_u16(status)
        .unwrap()
        .canonical_reason()
        .unwrap()
}

#[tokio::test]
async fn redirects_are_not_followed() {
    let error =
        fetch_answer(Reply::raw(302, "").header("location", "https://elsewhere.test/token?k=v"))
            .await;
    assert!(error.is_permanent());
    let text = error.to_string();
    assert!(text.contains("answered 302 Found"), "{text}");
    assert!(
        text.contains("redirects are not followed; it points to https://elsewhere.test/token"),
        "{text}"
    );
    assert!(!text.contains("k=v"), "queries are not shown: {text}");
}

/// A caller's client builder left with reqwest's default policy (follow up to 10 redirects):
/// a 307 or 308 from the token endpoint to another host:port is not followed, so the other
/// host receives nothing (not the client secret in the body, not the refresh token).
#[tokio::test]
async fn a_callers_client_never_carries_a_credential_to_another_origin() {
    for status in [307, 308] {
        let elsewhere = Server::start().await;
        elsewhere.reply([Reply::token("attacker-token")]);
        let server = Server::start().await;
        server.reply([Reply::raw(status, "").header("location", &elsewhere.url("/steal"))]);
        let error = fetch_with(
            &server,
            HttpOptions::new().client_builder(reqwest::Client::builder()),
        )
        .await
        .unwrap_err();
        assert!(error.is_permanent());
        let text = error.to_string();
        assert!(
            text.contains("redirects are not followed"),
            "{status}: {text}"
        );
        assert_eq!(
            elsewhere.requests().len(),
            0,
            "{status}: the other host received nothing"
        );
    }
}

#[tokio::test]
async fn malformed_answers_name_the_endpoint_and_field() {
    for (body, expected) in [
        (
            Reply::raw(200, "<html>login</html>"),
            "the answer is not JSON",
        ),
        (
            Reply::json(200, json!({"token_type": "bearer"})),
            "no `access_token`",
        ),
        (
            Reply::json(200, json!({"access_token": ""})),
            "field `access_token` is empty",
        ),
        (
            Reply::json(200, json!({"access_token": "a\nb"})),
            "cannot go in an HTTP header",
        ),
        (
            Reply::json(200, json!({"access_token": "a", "expires_in": -1})),
            "negative",
        ),
        (
            Reply::json(200, json!({"access_token": "a", "expires_in": 1e15})),
            "absurd",
        ),
    ] {
        let error = fetch_answer(body).await;
        let text = error.to_string();
        assert!(text.starts_with("http://127.0.0.1:"), "{text}");
        assert!(text.contains(expected), "{expected}: {text}");
    }
}

#[tokio::test]
async fn a_connection_failure_is_transient() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/token", listener.local_addr().unwrap());
    drop(listener); // nothing listens there now
    let error = ClientCredentials::builder(url, "id", SECRET)
        .build()
        .unwrap()
        .fetch(FetchContext::new(FetchReason::Initial))
        .await
        .unwrap_err();
    assert!(error.is_transient());
    assert!(error.to_string().contains("could not connect"), "{error}");
}

#[tokio::test]
async fn a_hung_endpoint_is_bounded_by_the_timeout() {
    let server = Server::start().await;
    server.reply([Reply::token("late").delay(Duration::from_secs(30))]);
    let started = std::time::Instant::now();
    let error = fetch_with(
        &server,
        HttpOptions::new().timeout(Duration::from_millis(200)),
    )
    .await
    .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(error.is_transient());
    assert!(
        error.to_string().ends_with("no answer within 200ms"),
        "{error}"
    );
}

#[tokio::test]
async fn an_oversized_answer_is_refused() {
    let server = Server::start().await;
    let huge = format!(
        r#"{{"access_token": "a", "padding": "{}"}}"#,
        "x".repeat(2 << 20)
    );
    server.reply([Reply::raw(200, huge.clone()), Reply::raw(200, huge)]);
    let error = fetch_with(&server, HttpOptions::new()).await.unwrap_err();
    assert!(
        error
            .to_string()
            .ends_with("the answer is larger than 1048576 bytes"),
        "{error}"
    );
    let error = fetch_with(&server, HttpOptions::new().max_body_bytes(100))
        .await
        .unwrap_err();
    assert!(
        error.to_string().contains("larger than 100 bytes"),
        "{error}"
    );
}

#[tokio::test]
async fn debug_of_sources_and_builders_hides_their_secrets() {
    use tokenwarden::sources::{ApiKeyExchange, RefreshTokenGrant};
    let url = "https://user:pw-SECRET@auth.test/token?key=q-SECRET";
    let printed = [
        format!("{:?}", ClientCredentials::builder(url, "id", "cs-SECRET")),
        format!(
            "{:?}",
            ClientCredentials::builder(url, "id", "cs-SECRET")
                .build()
                .unwrap()
        ),
        format!(
            "{:?}",
            RefreshTokenGrant::builder(url, "rt-SECRET").client_secret("cs-SECRET")
        ),
        format!(
            "{:?}",
            RefreshTokenGrant::builder(url, "rt-SECRET")
                .build()
                .unwrap()
        ),
        format!("{:?}", ApiKeyExchange::builder(url, "key-SECRET")),
        format!(
            "{:?}",
            ApiKeyExchange::builder(url, "key-SECRET").build().unwrap()
        ),
        format!("{:?}", HttpOptions::new()),
    ];
    for text in printed {
        assert_no_secret(&text, &["SECRET"]);
    }
}
