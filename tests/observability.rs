//! What operators run the crate with: the Prometheus alert rules pass `promtool check rules`
//! and their unit tests (`promtool test rules`), and every series the Grafana dashboard and the
//! rules query is served, with the labels they use, by the example service's `/metrics`
//! (metrics-exporter-prometheus), scraped over HTTP while credentials succeed, fail and share a
//! fleet on a real Redis.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::post;
use serde_json::json;
use tokenwarden::{ClientCredentials, FetchError, Refresher, Registry, Token};

#[path = "../examples/service/app.rs"]
mod app;
#[path = "common/redis.rs"]
mod redis_servers;
#[path = "common/required.rs"]
mod required;

fn contrib(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("contrib")
        .join(path)
}

#[test]
fn the_alert_rules_pass_promtool_and_their_unit_tests() {
    if Command::new("promtool").arg("--version").output().is_err() {
        required::server_missing("promtool", "Debian: apt-get install prometheus");
        return;
    }
    for args in [
        ["check", "rules", "tokenwarden.rules.yml"],
        ["test", "rules", "tokenwarden.rules.test.yml"],
    ] {
        let output = Command::new("promtool")
            .args(args)
            .current_dir(contrib("prometheus"))
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "promtool {}: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

/// Labels Prometheus adds at scrape time, not the exporter.
const TARGET_LABELS: [&str; 2] = ["job", "instance"];

/// The series names in `text` (PromQL in YAML or JSON), each with the labels it is selected or
/// grouped by in that expression.
fn queried(text: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut found: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let bytes = text.as_bytes();
    let mut at = 0;
    while let Some(offset) = text[at..].find("tokenwarden_") {
        let start = at + offset;
        let end = start
            + text[start..]
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(text.len() - start);
        let name = text[start..end].to_owned();
        let labels = found.entry(name).or_default();
        // A selector right after the name: {label="..", label=~".."}.
        if bytes.get(end) == Some(&b'{') {
            let close = text[end..].find('}').map_or(text.len(), |i| end + i);
            for matcher in text[end + 1..close].split(',') {
                let label = matcher.split(['=', '!']).next().unwrap_or_default().trim();
                if !label.is_empty() {
                    labels.insert(label.to_owned());
                }
            }
        }
        at = end;
    }
    // Grouping clauses, `by (..)` and `on (..)`, name labels of the series around them: each
    // must exist on some tokenwarden series (checked below as "any").
    for keyword in [" by (", " on ("] {
        let mut at = 0;
        while let Some(offset) = text[at..].find(keyword) {
            let start = at + offset + keyword.len();
            let close = text[start..].find(')').map_or(text.len(), |i| start + i);
            for label in text[start..close].split(',').map(str::trim) {
                if !label.is_empty() && !TARGET_LABELS.contains(&label) {
                    found
                        .entry("(grouping)".into())
                        .or_default()
                        .insert(label.to_owned());
                }
            }
            at = close;
        }
    }
    found
}

/// Series names in a Prometheus text exposition, with every label name each carries.
fn exposed(text: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut series: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
    {
        let name_end = line.find(['{', ' ']).unwrap_or(line.len());
        let labels = series.entry(line[..name_end].to_owned()).or_default();
        if line[name_end..].starts_with('{') {
            let close = line.find('}').unwrap_or(line.len());
            for pair in line[name_end + 1..close].split("\",") {
                if let Some((label, _)) = pair.split_once('=') {
                    labels.insert(label.trim().to_owned());
                }
            }
        }
    }
    series
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_series_the_dashboard_and_alerts_query_is_served_with_its_labels() {
    let Some(redis) = redis_servers::RedisServer::start() else {
        return;
    };
    let metrics = app::install_metrics();

    // A token endpoint that answers one client and refuses another.
    let endpoint = Router::new().route(
        "/token",
        post(|body: String| async move {
            if body.contains("client_id=refused") {
                (
                    StatusCode::UNAUTHORIZED,
                    axum::Json(json!({"error": "invalid_client"})),
                )
            } else {
                (
                    StatusCode::OK,
                    axum::Json(
                        json!({"access_token": "t", "token_type": "Bearer", "expires_in": 300}),
                    ),
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let token_url = format!("http://{}/token", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, endpoint).await });

    let registry: Registry<String> = Registry::new();
    for client in ["orders", "refused"] {
        let source = ClientCredentials::builder(&token_url, client, "s3cret")
            .auth(tokenwarden::sources::ClientAuth::Body)
            .build()
            .unwrap();
        registry.insert(client.to_owned(), Refresher::builder(source));
    }
    let shared = tokenwarden::from_fn(|_ctx| async {
        Ok::<_, FetchError>(Token::new("fleet-token").expires_in(Duration::from_secs(300)))
    });
    registry.insert(
        "fleet".to_owned(),
        Refresher::builder(shared).shared(redis.fleet("observability")),
    );
    for (name, handle) in registry.handles() {
        let outcome = tokio::time::timeout(Duration::from_secs(20), handle.ready()).await;
        assert!(outcome.is_ok(), "{name} settled");
    }

    let operations = app::operations(&registry, metrics);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, operations).await });
    let scraped = reqwest::get(format!("{base}/metrics")).await.unwrap();
    assert_eq!(scraped.status(), 200);
    let exposed = exposed(&scraped.text().await.unwrap());

    let rules = std::fs::read_to_string(contrib("prometheus/tokenwarden.rules.yml")).unwrap();
    let dashboard = std::fs::read_to_string(contrib("grafana/tokenwarden.json")).unwrap();
    let mut checked = 0;
    for (file, text) in [("rules", &rules), ("dashboard", &dashboard)] {
        for (name, labels) in queried(text) {
            if name == "(grouping)" {
                for label in &labels {
                    assert!(
                        exposed
                            .iter()
                            .any(|(series, have)| series.starts_with("tokenwarden_")
                                && have.contains(label)),
                        "{file} groups by `{label}`, which no tokenwarden series carries"
                    );
                }
                continue;
            }
            let have = exposed
                .get(&name)
                .unwrap_or_else(|| panic!("{file} queries {name}, which /metrics does not serve"));
            for label in labels
                .iter()
                .filter(|l| !TARGET_LABELS.contains(&l.as_str()))
            {
                assert!(
                    have.contains(label),
                    "{file}: {name} has no label `{label}` ({have:?})"
                );
            }
            checked += 1;
        }
    }
    assert!(
        checked >= 8,
        "the files query the series ({checked} checked)"
    );
    // Grafana's own structure: every panel has a query and the credential variable exists.
    let dashboard: serde_json::Value = serde_json::from_str(&dashboard).unwrap();
    let panels = dashboard["panels"].as_array().unwrap();
    assert!(panels.iter().all(|p| p["targets"][0]["expr"].is_string()));
    assert_eq!(dashboard["templating"]["list"][1]["name"], "credential");
    registry.shutdown();
}
