//! `KeyedCredential`: one identity, a token per key, refreshers started on first use and
//! stopped when idle or when too many keys are live.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokenwarden::registry::{KeyedCredential, TokenKey};
use tokenwarden::{ConfigError, Error, FetchError, Refresher, Token};

/// How often the factory built a refresher for each key, and how often each fetched.
#[derive(Clone, Default)]
struct Counts {
    built: Arc<Mutex<HashMap<String, u32>>>,
    fetched: Arc<Mutex<HashMap<String, u32>>>,
}

impl Counts {
    fn built(&self, key: &str) -> u32 {
        self.built.lock().unwrap().get(key).copied().unwrap_or(0)
    }
}

/// The token minted for the key shown as `key` (a token has no spaces).
fn minted_for(key: &str) -> String {
    format!("minted-for:{}", key.replace(' ', "+"))
}

/// A keyed credential whose tokens say which key they were minted for.
fn minting(counts: &Counts) -> tokenwarden::registry::KeyedCredentialBuilder<TokenKey> {
    let counts = counts.clone();
    KeyedCredential::builder(move |key: &TokenKey| {
        let name = key.to_string();
        *counts
            .built
            .lock()
            .unwrap()
            .entry(name.clone())
            .or_default() += 1;
        let fetched = counts.fetched.clone();
        Ok(Refresher::builder(tokenwarden::from_fn(move |_ctx| {
            let name = name.clone();
            *fetched.lock().unwrap().entry(name.clone()).or_default() += 1;
            async move {
                // A little latency, so that concurrent first reads overlap the fetch.
                tokio::time::sleep(Duration::from_millis(5)).await;
                Ok::<_, FetchError>(
                    Token::new(minted_for(&name)).expires_in(Duration::from_secs(3600)),
                )
            }
        })))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_token_is_minted_for_its_own_key_under_concurrent_load() {
    let counts = Counts::default();
    let tokens = minting(&counts).build();
    const KEYS: usize = 64;
    const TASKS: usize = 8;
    // The first ask of every key is made by all tasks at once (they meet at the barrier before
    // each), so first asks race each other; later asks are spread.
    let start = Arc::new(tokio::sync::Barrier::new(TASKS));
    let mut tasks = Vec::new();
    for task in 0..TASKS {
        let tokens = tokens.clone();
        let start = start.clone();
        tasks.push(tokio::spawn(async move {
            for n in 0..2_000usize {
                if n < KEYS {
                    start.wait().await;
                }
                let k = if n < KEYS {
                    n
                } else {
                    (n * 7 + task * 13) % KEYS
                };
                // The same scope set in a different order on every other ask: one key.
                let scopes = if n % 2 == 0 {
                    vec![format!("api.{k}"), "openid".to_owned()]
                } else {
                    vec!["openid".to_owned(), format!("api.{k}")]
                };
                let key = TokenKey::new()
                    .scopes(scopes)
                    .audience(format!("https://service-{}.example", k % 5));
                let token = tokens.token(&key).await.unwrap();
                assert_eq!(token.expose_secret(), minted_for(&key.to_string()));
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(tokens.len(), KEYS);
    let built = counts.built.lock().unwrap();
    let fetched = counts.fetched.lock().unwrap();
    assert_eq!(built.len(), KEYS);
    assert!(
        built.values().all(|&n| n == 1),
        "one refresher per key: {built:?}"
    );
    assert!(
        fetched.values().all(|&n| n == 1),
        "one fetch per key: {fetched:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_key_not_asked_for_during_idle_after_is_stopped_and_starts_anew_when_asked_again() {
    let counts = Counts::default();
    let tokens = minting(&counts).idle_after(Duration::from_secs(60)).build();
    let key = TokenKey::new().scopes(["read"]);
    let first = tokens.get(&key).unwrap();
    first.ready().await.unwrap();

    tokio::time::sleep(Duration::from_secs(40)).await;
    tokens.get(&key).unwrap(); // a use: the idle clock starts again
    tokio::time::sleep(Duration::from_secs(40)).await;
    assert_eq!(tokens.len(), 1, "40 s idle of 60: still live");

    tokio::time::sleep(Duration::from_secs(40)).await;
    assert_eq!(tokens.len(), 0, "80 s idle: stopped");
    first.stopped().await;
    assert!(matches!(first.current(), Err(Error::Stopped)));

    let again = tokens.token(&key).await.unwrap();
    assert_eq!(again.expose_secret(), "minted-for:scope=read");
    assert_eq!(counts.built("scope=read"), 2, "a new refresher");
}

#[tokio::test(start_paused = true)]
async fn beyond_max_keys_the_least_recently_used_key_is_stopped_first() {
    let counts = Counts::default();
    let tokens = minting(&counts).max_keys(3).build();
    let key = |scope: &str| TokenKey::new().scopes([scope]);
    for scope in ["a", "b", "c"] {
        tokens.token(&key(scope)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokens.get(&key("a")).unwrap(); // a is now the most recently used
    tokio::time::sleep(Duration::from_millis(10)).await;
    tokens.token(&key("d")).await.unwrap();
    assert_eq!(tokens.len(), 3);
    let live: Vec<String> = tokens
        .registry()
        .handles()
        .into_iter()
        .map(|(key, _)| key.to_string())
        .collect();
    assert!(
        !live.contains(&"scope=b".to_owned()),
        "b went first: {live:?}"
    );
    for scope in ["a", "c", "d"] {
        assert!(live.contains(&format!("scope={scope}")), "{live:?}");
    }
}

#[tokio::test]
async fn a_key_the_factory_refuses_is_an_error_and_nothing_is_started() {
    let tokens = KeyedCredential::builder(|key: &TokenKey| {
        if key.audience.as_deref() == Some("https://elsewhere.example") {
            return Err(ConfigError::new(format!(
                "audience of `{key}` is not allowed"
            )));
        }
        Ok(Refresher::builder(tokenwarden::from_fn(|_ctx| async {
            Ok::<_, FetchError>(Token::new("t"))
        })))
    })
    .build();
    let refused = TokenKey::new().audience("https://elsewhere.example");
    let error = tokens.get(&refused).unwrap_err();
    assert!(matches!(error, Error::Config(_)), "{error}");
    assert!(error.to_string().contains("elsewhere.example"), "{error}");
    assert!(tokens.is_empty());
}

#[tokio::test]
async fn dropping_the_last_clone_stops_every_key() {
    let counts = Counts::default();
    let tokens = minting(&counts).build();
    let handle = tokens.get(&TokenKey::new().scopes(["x"])).unwrap();
    handle.ready().await.unwrap();
    let clone = tokens.clone();
    drop(tokens);
    assert!(handle.current().is_ok(), "a clone still holds it");
    drop(clone);
    tokio::time::timeout(Duration::from_secs(5), handle.stopped())
        .await
        .expect("stopped once the last clone went");
}
