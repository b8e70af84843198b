//! Behaviour of the refresher actor, on paused tokio time.

mod coalescing;
mod events;
mod expiry;
mod failures;
mod lifecycle;
mod replicas;
mod schedule;
mod support;
