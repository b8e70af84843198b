//! The refresher: an actor per credential ([`actor`]), the handle that talks to it, its
//! builder, and the state and events it publishes.

mod actor;
mod board;
mod builder;
mod commands;
mod event;
mod handle;
mod replica;
mod state;
mod timer;

pub(crate) use builder::Joined;
pub use builder::{Refresher, RefresherBuilder};
pub use event::Event;
pub use handle::TokenHandle;
pub use state::TokenState;
