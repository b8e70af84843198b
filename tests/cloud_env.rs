//! The workload identity sources find their platform through the environment, as the
//! platforms set it: `GCE_METADATA_HOST`, `IDENTITY_ENDPOINT` and `IDENTITY_HEADER`,
//! `ACTIONS_ID_TOKEN_REQUEST_URL` and `ACTIONS_ID_TOKEN_REQUEST_TOKEN`.
//!
//! `std::env::set_var` is sound only while no other thread reads the environment, so this
//! binary has no test harness: it binds its port and sets its variables first,
//! single-threaded, then starts a runtime and checks.

#[path = "cloud/platform.rs"]
mod platform;

use platform::{GITHUB_REQUEST_TOKEN, IDENTITY_HEADER, Platform};
use tokenwarden::Refresher;
use tokenwarden::sources::cloud::{AzureManagedIdentity, GceMetadata, GitHubActionsOidc};

fn main() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let variables = [
        ("GCE_METADATA_HOST", addr.to_string()),
        ("IDENTITY_ENDPOINT", format!("http://{addr}/msi/token")),
        ("IDENTITY_HEADER", IDENTITY_HEADER.to_owned()),
        (
            "ACTIONS_ID_TOKEN_REQUEST_URL",
            format!("http://{addr}/_apis/token?api-version=2.0"),
        ),
        (
            "ACTIONS_ID_TOKEN_REQUEST_TOKEN",
            GITHUB_REQUEST_TOKEN.to_owned(),
        ),
    ];
    for (name, value) in &variables {
        // SAFETY: no other thread exists yet (no harness, no runtime started).
        unsafe { std::env::set_var(name, value) };
    }

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let platform = Platform::start_on(listener);
        let gce = first(GceMetadata::access_token().build().unwrap()).await;
        check(
            "gce_metadata_host_names_the_server",
            gce.expose_secret().starts_with("ya29."),
        );

        let azure = AzureManagedIdentity::builder("https://vault.azure.net")
            .build()
            .unwrap();
        let azure = first(azure).await;
        check(
            "identity_endpoint_and_header_choose_the_app_service_endpoint",
            azure.expose_secret().starts_with("azure-app-")
                && platform.seen_at("/msi/token")[0].header("x-identity-header")
                    == Some(IDENTITY_HEADER),
        );

        let github = GitHubActionsOidc::from_env()
            .unwrap()
            .audience("sts.example.com");
        let github = first(github.build().unwrap()).await;
        check(
            "the_runner_variables_give_the_url_and_the_request_token",
            github.claims().unwrap()["aud"] == "sts.example.com",
        );
    });
    println!("\ntest result: ok. 3 passed; 0 failed");
}

async fn first(source: impl tokenwarden::TokenSource + 'static) -> tokenwarden::Token {
    let handle = Refresher::builder(source).spawn();
    tokio::time::timeout(std::time::Duration::from_secs(20), handle.ready())
        .await
        .expect("a token within 20 s")
        .expect("a token")
}

fn check(name: &str, ok: bool) {
    println!("test {name} ... {}", if ok { "ok" } else { "FAILED" });
    assert!(ok, "{name}");
}
