//! Reads served from per-thread replicas: never stale after a publication, never past expiry,
//! never another credential's token.

use std::time::Duration;

use tokenwarden::{Error, FetchError};

use crate::support::*;

/// Reads enough times that the thread holds a replica (the second read earns one).
fn read_hot(handle: &tokenwarden::TokenHandle) -> String {
    for _ in 0..3 {
        handle.current().unwrap();
    }
    handle.current().unwrap().expose_secret().to_owned()
}

/// `count` started credentials, each serving `{prefix}-{n}`.
async fn credentials(prefix: &'static str, count: u32) -> Vec<tokenwarden::TokenHandle> {
    let mut handles = Vec::new();
    for n in 0..count {
        let source = tokenwarden::from_fn(move |_ctx| async move {
            Ok::<_, FetchError>(
                tokenwarden::Token::new(format!("{prefix}-{n}")).expires_in(secs(600)),
            )
        });
        let handle = tokenwarden::Refresher::builder(source).spawn();
        handle.ready().await.unwrap();
        handles.push(handle);
    }
    handles
}

/// Every read style on `handle` gives `{prefix}-{n}`.
fn assert_reads(handle: &tokenwarden::TokenHandle, prefix: &str, n: usize) {
    let secret = format!("{prefix}-{n}");
    assert_eq!(handle.current().unwrap().expose_secret(), secret);
    assert_eq!(
        handle.authorization_header().unwrap(),
        format!("Bearer {secret}").as_str()
    );
    handle
        .with_current(|token| assert_eq!(token.expose_secret(), secret))
        .unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_rotation_reaches_a_thread_that_holds_a_replica() {
    let source = Scripted::tokens(secs(600));
    let (handle, _) = started(builder(&source)).await;
    assert_eq!(read_hot(&handle), secret(1));
    handle.refresh().await.unwrap();
    assert_eq!(handle.current().unwrap().expose_secret(), secret(2));
    assert_eq!(
        handle
            .with_current(|t| t.expose_secret().to_owned())
            .unwrap(),
        secret(2)
    );
    let header = handle.authorization_header().unwrap();
    assert_eq!(header, format!("Bearer {}", secret(2)).as_str());
    assert!(header.is_sensitive());

    // A scheduled rotation too.
    let mut events = handle.subscribe();
    next_rotation(&mut events).await;
    assert_eq!(handle.current().unwrap().expose_secret(), secret(3));
}

#[tokio::test(start_paused = true)]
async fn a_replica_is_never_served_past_its_serve_margin() {
    let source = Scripted::tokens(secs(100));
    let (handle, _events) = started(builder(&source)).await;
    read_hot(&handle);
    // The endpoint fails from now on; the token runs out while this thread holds a replica.
    source.set_default(Step::Fail(FetchError::transient("down")));
    tokio::time::sleep(secs(101)).await;
    assert!(matches!(handle.current(), Err(Error::Expired { .. })));
    assert!(matches!(
        handle.with_current(|_| ()),
        Err(Error::Expired { .. })
    ));
    assert!(matches!(
        handle.authorization_header(),
        Err(Error::Expired { .. })
    ));
}

#[tokio::test(start_paused = true)]
async fn a_machine_that_slept_gets_no_replica() {
    let source = Scripted::tokens(secs(600));
    let clock = tokenwarden::Clock::tokio();
    let (handle, _events) = started(builder(&source).clock(clock.clone())).await;
    read_hot(&handle);
    clock.skip(secs(3600));
    assert!(matches!(handle.current(), Err(Error::Expired { .. })));
}

#[tokio::test(start_paused = true)]
async fn after_shutdown_a_replica_is_not_served() {
    let source = Scripted::tokens(secs(600));
    let (handle, _events) = started(builder(&source)).await;
    read_hot(&handle);
    handle.shutdown();
    handle.stopped().await;
    assert!(matches!(handle.current(), Err(Error::Stopped)));
    assert!(matches!(handle.authorization_header(), Err(Error::Stopped)));
}

#[tokio::test(start_paused = true)]
async fn many_credentials_on_one_thread_each_read_their_own_token() {
    // More than a thread keeps replicas of, read round-robin and repeatedly.
    let handles = credentials("credential", 40).await;
    for _ in 0..5 {
        for (n, handle) in handles.iter().enumerate() {
            assert_reads(handle, "credential", n);
        }
        // A few hot ones among them.
        for _ in 0..3 {
            assert_eq!(
                handles[7].current().unwrap().expose_secret(),
                "credential-7"
            );
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_read_inside_with_current_is_served_too() {
    let source = Scripted::tokens(secs(600));
    let (handle, _events) = started(builder(&source)).await;
    read_hot(&handle);
    let nested = handle
        .with_current(|outer| {
            let inner = handle.current().unwrap();
            (
                outer.expose_secret().to_owned(),
                inner.expose_secret().to_owned(),
            )
        })
        .unwrap();
    assert_eq!(nested, (secret(1), secret(1)));
}

#[tokio::test(start_paused = true)]
async fn a_with_current_closure_keeps_its_token_while_it_reads_everything_else() {
    // The outer read holds its thread's replica; inside it, reads of more credentials than a
    // thread keeps replicas of (each read twice, which would earn each a replica and evict the
    // outer one) and of the outer credential after a rotation. None may change what the
    // closure holds, and every read must still be right.
    let source = Scripted::tokens(secs(600));
    let (outer, _events) = started(builder(&source)).await;
    read_hot(&outer);
    let others = credentials("other", 40).await;
    let rotated = outer.refresh().await.unwrap();
    assert_eq!(rotated.expose_secret(), secret(2));
    // The thread still holds the replica of secret 1's version; copy the new one first.
    read_hot(&outer);
    outer.refresh().await.unwrap();

    let seen = outer
        .with_current(|held| {
            let before = held.expose_secret().to_owned();
            for _ in 0..2 {
                for (n, other) in others.iter().enumerate() {
                    assert_reads(other, "other", n);
                }
            }
            assert_eq!(outer.current().unwrap().expose_secret(), secret(3));
            (before, held.expose_secret().to_owned())
        })
        .unwrap();
    assert_eq!(
        seen,
        (secret(3), secret(3)),
        "the held token did not change"
    );

    // Once nothing is held, the table changes again: reads still right, replicas earned.
    for (n, other) in others.iter().enumerate().take(20) {
        for _ in 0..3 {
            assert_reads(other, "other", n);
        }
    }
    assert_eq!(read_hot(&outer), secret(3));
}

#[test]
fn threads_reading_during_rotations_never_see_an_older_token_after_a_newer_one() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let counter = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let issued = counter.clone();
    let handle = runtime.block_on(async move {
        let source = tokenwarden::from_fn(move |_ctx| {
            let n = issued.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
            async move {
                Ok::<_, FetchError>(
                    tokenwarden::Token::new(format!("{n:08}")).expires_in(Duration::from_secs(600)),
                )
            }
        });
        let mut policy = tokenwarden::RefreshPolicy::default();
        policy.min_interval = Duration::from_millis(1);
        let handle = tokenwarden::Refresher::builder(source)
            .policy(policy)
            .spawn();
        handle.ready().await.unwrap();
        handle
    });
    // Set once the rotations are over: the newest token's number.
    let newest = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let readers: Vec<_> = (0..4)
        .map(|_| {
            let (handle, newest) = (handle.clone(), newest.clone());
            std::thread::spawn(move || {
                let mut last = String::new();
                for _ in 0..50_000_000u64 {
                    let now = handle.current().unwrap().expose_secret().to_owned();
                    assert!(now >= last, "{now} after {last}");
                    last = now;
                    let newest = newest.load(std::sync::atomic::Ordering::SeqCst);
                    if newest != 0 && last == format!("{newest:08}") {
                        return last;
                    }
                }
                panic!("the newest token never reached this thread (last read {last})");
            })
        })
        .collect();
    for _ in 0..50 {
        runtime.block_on(handle.refresh()).unwrap();
    }
    newest.store(
        counter.load(std::sync::atomic::Ordering::SeqCst),
        std::sync::atomic::Ordering::SeqCst,
    );
    for reader in readers {
        reader.join().unwrap();
    }
}

/// One step of [`any_interleaving_of_reads_rotations_and_nested_reads_serves_current_tokens`].
#[derive(Clone, Debug)]
enum Op {
    /// Read credential `k` in read style `style` (0: `current`, 1: header, 2: `with_current`).
    Read { k: usize, style: u8 },
    /// Inside a `with_current` of credential `k`, these reads.
    Nested { k: usize, inner: Vec<(usize, u8)> },
    /// A refresh of credential `k`: its next token.
    Rotate { k: usize },
}

/// More credentials than a thread keeps replicas of, so that steps copy, evict and miss.
const KEYS: usize = 24;

fn any_op() -> impl proptest::strategy::Strategy<Value = Op> {
    use proptest::prelude::*;
    let read = (0..KEYS, 0..3u8);
    prop_oneof![
        4 => read.clone().prop_map(|(k, style)| Op::Read { k, style }),
        2 => (0..KEYS, proptest::collection::vec(read, 0..24))
            .prop_map(|(k, inner)| Op::Nested { k, inner }),
        1 => (0..KEYS).prop_map(|k| Op::Rotate { k }),
    ]
}

/// Reads `handle` in `style` and checks the token is `expected`.
fn read_as(handle: &tokenwarden::TokenHandle, style: u8, expected: &str) {
    match style {
        0 => assert_eq!(handle.current().unwrap().expose_secret(), expected),
        1 => assert_eq!(
            handle.authorization_header().unwrap(),
            format!("Bearer {expected}").as_str()
        ),
        _ => handle
            .with_current(|token| assert_eq!(token.expose_secret(), expected))
            .unwrap(),
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

    // The per-thread table changes under reads (copies, evictions, rotations) but never under a
    // `with_current` closure: whatever the order, every read gives the credential's current
    // token, and a held token stays what it was.
    #[test]
    fn any_interleaving_of_reads_rotations_and_nested_reads_serves_current_tokens(
        ops in proptest::collection::vec(any_op(), 1..120)
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .unwrap();
        runtime.block_on(async {
            let mut handles = Vec::new();
            for k in 0..KEYS {
                let issued = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
                let source = tokenwarden::from_fn(move |_ctx| {
                    let n = issued.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    async move {
                        Ok::<_, FetchError>(
                            tokenwarden::Token::new(format!("c{k}-{n}")).expires_in(secs(600)),
                        )
                    }
                });
                let handle = tokenwarden::Refresher::builder(source).spawn();
                handle.ready().await.unwrap();
                handles.push(handle);
            }
            let mut generation = [0u32; KEYS];
            let expected = |generation: &[u32; KEYS], k: usize| format!("c{k}-{}", generation[k]);
            for op in ops {
                match op {
                    Op::Read { k, style } => read_as(&handles[k], style, &expected(&generation, k)),
                    Op::Nested { k, inner } => {
                        let outer = expected(&generation, k);
                        handles[k]
                            .with_current(|held| {
                                for &(j, style) in &inner {
                                    read_as(&handles[j], style, &expected(&generation, j));
                                }
                                assert_eq!(held.expose_secret(), outer, "the held token changed");
                            })
                            .unwrap();
                    }
                    Op::Rotate { k } => {
                        handles[k].refresh().await.unwrap();
                        generation[k] += 1;
                    }
                }
            }
            for handle in &handles {
                handle.shutdown();
            }
        });
    }
}
