//! What subscribers and watchers are told.

use tokenwarden::{Event, FetchError, FetchReason, TokenState};
use tokio::sync::broadcast::error::RecvError;

use crate::support::*;

#[tokio::test(start_paused = true)]
async fn events_arrive_in_order() {
    fn label(event: &Event) -> String {
        match event {
            Event::Rotated { reason, .. } => format!("rotated:{reason}"),
            Event::RefreshFailed { attempt, .. } => format!("failed:{attempt}"),
            Event::Recovered { failed_attempts } => format!("recovered:{failed_attempts}"),
            Event::Expired { .. } => "expired".into(),
            Event::Stopped => "stopped".into(),
            other => format!("{other:?}"),
        }
    }
    let source = Scripted::tokens(secs(600));
    let handle = builder(&source).spawn();
    let mut events = handle.subscribe();
    handle.ready().await.unwrap();
    source.then([
        Step::Fail(FetchError::transient("503")),
        Step::Fail(FetchError::transient("503")),
    ]);
    tokio::time::advance(secs(5)).await;
    let _ = handle.refresh().await; // fails once; the retries follow by themselves

    let mut seen = Vec::new();
    while seen.last().is_none_or(|last| last != "rotated:forced") {
        seen.push(label(&next_event(&mut events).await));
    }
    handle.shutdown();
    seen.push(label(&next_event(&mut events).await));
    assert_eq!(
        seen,
        [
            "rotated:initial",
            "failed:1",
            "failed:2",
            "recovered:2",
            "rotated:forced",
            "stopped"
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn a_lagging_subscriber_is_told_and_never_slows_the_refresher() {
    let source = Scripted::tokens(secs(600));
    let handle = builder(&source).event_capacity(2).spawn();
    let mut slow = handle.subscribe();
    handle.ready().await.unwrap();

    for _ in 0..5 {
        handle.refresh().await.unwrap();
    }
    assert_eq!(source.fetches(), 6, "every refresh went through");
    assert!(matches!(slow.recv().await, Err(RecvError::Lagged(4))));
    // After the gap it reads the newest events.
    assert!(matches!(slow.recv().await, Ok(Event::Rotated { .. })));
}

#[tokio::test(start_paused = true)]
async fn watchers_see_each_state_change() {
    let source = Scripted::tokens(secs(600));
    source.set_latency(secs(1));
    let handle = builder(&source).spawn();
    let mut watch = handle.watch();

    let mut seen = vec![watch.borrow_and_update().label()];
    // The initial fetch, a scheduled one that succeeds, then one that fails.
    while watch.changed().await.is_ok() {
        let state = watch.borrow_and_update().clone();
        seen.push(state.label());
        match seen.len() {
            // The next fetch (the second scheduled one) will fail.
            3 => source.set_default(Step::Fail(FetchError::transient("503"))),
            6 => handle.shutdown(),
            _ => {}
        }
        if matches!(state, TokenState::Stopped) {
            break;
        }
    }
    assert_eq!(
        seen,
        [
            "pending",
            "fresh",
            "refreshing",
            "fresh",
            "refreshing",
            "stale",
            "stopped"
        ]
    );
    assert_eq!(source.contexts()[1].reason(), FetchReason::Scheduled);
}
