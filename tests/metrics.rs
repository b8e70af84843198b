//! The `metrics` feature: a recorder installed, a credential's life read back from it.
#![cfg(feature = "metrics")]

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use tokenwarden::{FetchError, Refresher, Token};

/// Every metric as `name{label=value,...}` (labels sorted) and its value.
fn read(snapshotter: &Snapshotter) -> HashMap<String, DebugValue> {
    snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, _, value)| {
            let key = key.key();
            let mut labels: Vec<String> = key
                .labels()
                .map(|l| format!("{}={}", l.key(), l.value()))
                .collect();
            labels.sort();
            (format!("{}{{{}}}", key.name(), labels.join(",")), value)
        })
        .collect()
}

fn counter(metrics: &HashMap<String, DebugValue>, key: &str) -> u64 {
    match metrics.get(key) {
        Some(DebugValue::Counter(n)) => *n,
        other => panic!("{key}: {other:?} in {:#?}", metrics.keys()),
    }
}

fn gauge(metrics: &HashMap<String, DebugValue>, key: &str) -> f64 {
    match metrics.get(key) {
        Some(DebugValue::Gauge(v)) => v.into_inner(),
        other => panic!("{key}: {other:?} in {:#?}", metrics.keys()),
    }
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn refreshes_durations_expiry_and_state_are_recorded() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    // The runtime is this thread's: the refresher's task records into this recorder.
    let _guard = metrics::set_default_local_recorder(&recorder);

    let calls = Arc::new(AtomicU32::new(0));
    let counted = calls.clone();
    let source = tokenwarden::from_fn(move |_ctx| {
        let n = counted.fetch_add(1, Ordering::SeqCst) + 1;
        async move {
            tokio::time::sleep(Duration::from_millis(250)).await;
            match n {
                2 => Err(FetchError::transient(
                    "https://auth.test/token answered 503",
                )),
                3 => Err(FetchError::permanent(
                    "https://auth.test/token answered 401",
                )),
                _ => Ok(Token::new(format!("t{n}")).expires_in(Duration::from_secs(600))),
            }
        }
    });
    let handle = Refresher::builder(source).name("billing").spawn();
    let token = handle.ready().await.unwrap();

    let m = read(&snapshotter);
    let c = "credential=billing";
    assert_eq!(
        counter(
            &m,
            &format!("tokenwarden_refreshes_total{{{c},outcome=success,reason=initial}}")
        ),
        1
    );
    match &m[&format!("tokenwarden_fetch_duration_seconds{{{c},outcome=success}}")] {
        DebugValue::Histogram(values) => {
            assert_eq!(values.len(), 1);
            assert!((values[0].into_inner() - 0.25).abs() < 0.01, "{values:?}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        gauge(&m, &format!("tokenwarden_state{{{c},state=fresh}}")),
        1.0
    );
    assert_eq!(
        gauge(&m, &format!("tokenwarden_state{{{c},state=pending}}")),
        0.0
    );
    let expires_at = token
        .expiry()
        .unwrap()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert_eq!(
        gauge(&m, &format!("tokenwarden_token_expires_at_seconds{{{c}}}")),
        expires_at
    );
    let left = gauge(
        &m,
        &format!("tokenwarden_token_seconds_until_expiry{{{c}}}"),
    );
    let expected = token.time_left(SystemTime::now()).unwrap().as_secs_f64();
    assert!((left - expected).abs() < 2.0, "{left} vs {expected}");

    // A forced refresh that fails (transient), then one that fails permanently: the token is
    // still served, so the state is stale.
    assert!(handle.refresh().await.is_err());
    assert!(handle.refresh().await.is_err());
    let m = read(&snapshotter);
    assert_eq!(
        counter(
            &m,
            &format!("tokenwarden_refreshes_total{{{c},outcome=transient_error,reason=forced}}")
        ),
        1
    );
    assert_eq!(
        counter(
            &m,
            &format!("tokenwarden_refreshes_total{{{c},outcome=permanent_error,reason=forced}}")
        ),
        1
    );
    assert_eq!(
        gauge(&m, &format!("tokenwarden_state{{{c},state=stale}}")),
        1.0
    );
    assert_eq!(
        gauge(&m, &format!("tokenwarden_state{{{c},state=fresh}}")),
        0.0
    );

    handle.shutdown();
    handle.stopped().await;
    let m = read(&snapshotter);
    assert_eq!(
        gauge(&m, &format!("tokenwarden_state{{{c},state=stopped}}")),
        1.0
    );
    assert_eq!(
        gauge(&m, &format!("tokenwarden_state{{{c},state=stale}}")),
        0.0
    );
}
