//! A scripted token source and helpers shared by the refresher tests.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokenwarden::{
    Clock, Event, FetchContext, FetchError, FetchFuture, RefreshPolicy, Refresher,
    RefresherBuilder, Token, TokenHandle, TokenSource,
};
use tokio::sync::broadcast;

/// What the scripted source does on one fetch.
#[derive(Clone, Debug)]
pub enum Step {
    /// Return `SECRET-token-<n>` (n = fetch number) valid for this long.
    Token(Duration),
    Fail(FetchError),
    Panic,
}

/// A source that follows a script, then repeats its default step, counting fetches.
#[derive(Clone)]
pub struct Scripted {
    inner: Arc<Inner>,
}

struct Inner {
    fetches: AtomicU32,
    script: Mutex<VecDeque<Step>>,
    default: Mutex<Step>,
    latency: Mutex<Duration>,
    contexts: Mutex<Vec<FetchContext>>,
    /// When each fetch started, measured from the source's creation (tokio time).
    started_at: Mutex<Vec<Duration>>,
    created: tokio::time::Instant,
}

impl Scripted {
    pub fn new(default: Step) -> Scripted {
        Scripted {
            inner: Arc::new(Inner {
                fetches: AtomicU32::new(0),
                script: Mutex::new(VecDeque::new()),
                default: Mutex::new(default),
                latency: Mutex::new(Duration::ZERO),
                contexts: Mutex::new(Vec::new()),
                started_at: Mutex::new(Vec::new()),
                created: tokio::time::Instant::now(),
            }),
        }
    }

    /// Tokens valid for `lifetime`, every time.
    pub fn tokens(lifetime: Duration) -> Scripted {
        Scripted::new(Step::Token(lifetime))
    }

    /// Queues steps to run before the default.
    pub fn then(&self, steps: impl IntoIterator<Item = Step>) -> &Scripted {
        self.inner.script.lock().unwrap().extend(steps);
        self
    }

    pub fn set_default(&self, step: Step) {
        *self.inner.default.lock().unwrap() = step;
    }

    /// Every fetch takes this long (in tokio time) before answering.
    pub fn set_latency(&self, latency: Duration) {
        *self.inner.latency.lock().unwrap() = latency;
    }

    pub fn fetches(&self) -> u32 {
        self.inner.fetches.load(Ordering::SeqCst)
    }

    pub fn contexts(&self) -> Vec<FetchContext> {
        self.inner.contexts.lock().unwrap().clone()
    }

    /// When each fetch started, from the source's creation.
    pub fn started_at(&self) -> Vec<Duration> {
        self.inner.started_at.lock().unwrap().clone()
    }

    pub fn strong_count(&self) -> usize {
        Arc::strong_count(&self.inner)
    }
}

impl TokenSource for Scripted {
    fn fetch(&self, ctx: FetchContext) -> FetchFuture<'_> {
        let n = self.inner.fetches.fetch_add(1, Ordering::SeqCst) + 1;
        self.inner.contexts.lock().unwrap().push(ctx);
        self.inner
            .started_at
            .lock()
            .unwrap()
            .push(self.inner.created.elapsed());
        let step = self
            .inner
            .script
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or_else(|| self.inner.default.lock().unwrap().clone());
        let latency = *self.inner.latency.lock().unwrap();
        Box::pin(async move {
            if !latency.is_zero() {
                tokio::time::sleep(latency).await;
            }
            match step {
                Step::Token(lifetime) => Ok(Token::new(secret(n)).expires_in(lifetime)),
                Step::Fail(error) => Err(error),
                Step::Panic => panic!("scripted panic while holding {}", secret(n)),
            }
        })
    }
}

/// The secret of the n-th token a [`Scripted`] source hands out.
pub fn secret(n: u32) -> String {
    format!("SECRET-token-{n}")
}

pub fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// A policy without jitter or serve margin, so tests can name exact times.
pub fn exact_policy() -> RefreshPolicy {
    let mut policy = RefreshPolicy::default();
    policy.jitter = 0.0;
    policy.backoff.jitter = 0.0;
    if let Some(permanent) = &mut policy.permanent_backoff {
        permanent.jitter = 0.0;
    }
    // Schedules are stated against the expiry; the serve margin has tests of its own.
    policy.serve_margin = Duration::ZERO;
    policy
}

/// A builder on a paused-time-following clock with an exact policy.
pub fn builder(source: &Scripted) -> RefresherBuilder {
    Refresher::builder(source.clone())
        .name("test-api")
        .policy(exact_policy())
        .clock(Clock::tokio())
}

/// Spawns `builder`, waits for its first token, and subscribes to what follows.
pub async fn started(builder: RefresherBuilder) -> (TokenHandle, broadcast::Receiver<Event>) {
    let handle = builder.spawn();
    handle.ready().await.expect("a first token");
    let events = handle.subscribe();
    (handle, events)
}

/// How long after the spawn the first refresh (the second token) arrives.
pub async fn first_refresh_after(builder: RefresherBuilder) -> Duration {
    let start = tokio::time::Instant::now();
    let (_handle, mut events) = started(builder).await;
    next_rotation(&mut events).await;
    start.elapsed()
}

/// The next event; fails rather than hangs if none comes within a (virtual) day.
pub async fn next_event(events: &mut broadcast::Receiver<Event>) -> Event {
    tokio::time::timeout(secs(24 * 3600), events.recv())
        .await
        .expect("no event within a day")
        .expect("event channel closed or lagged")
}

/// Waits for the next `Rotated` event (skipping others) and returns its token.
pub async fn next_rotation(events: &mut broadcast::Receiver<Event>) -> Token {
    loop {
        if let Event::Rotated { token, .. } = next_event(events).await {
            return token;
        }
    }
}

/// Lets spawned tasks run until they block, without moving time.
pub async fn settle() {
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
}

/// Asserts that `actual` is within 5 ms of `expected` (tokio timers tick in milliseconds).
#[track_caller]
pub fn assert_near(actual: Duration, expected: Duration) {
    let slack = Duration::from_millis(5);
    assert!(
        actual.abs_diff(expected) <= slack,
        "expected about {expected:?}, got {actual:?}"
    );
}
