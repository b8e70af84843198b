//! [`Commands`]: the queue from the handles to the actor, allocated only when used.
//!
//! tokio's mpsc channel allocates a block of 32 slots when it is created, about 1 KiB per
//! credential that most credentials never use: a refresher is steered by its timer, and
//! commands (`refresh()`, `reject()`, a reader's wake-up) are rare. This queue is a mutex over
//! a `VecDeque` (empty until the first command) and a `Notify`.

use std::collections::VecDeque;
use std::sync::Mutex;

use tokio::sync::Notify;

use super::actor::Command;

/// At most this many wake-ups wait in the queue; more add nothing (a fetch is coming anyway).
const MOST_WAKES: usize = 32;

#[derive(Default)]
pub(crate) struct Commands {
    state: Mutex<State>,
    notify: Notify,
}

#[derive(Default)]
struct State {
    queue: VecDeque<Command>,
    /// Every handle is gone: the actor stops once the queue is empty.
    handles_gone: bool,
    /// The actor has stopped: commands are refused (their callers get `Error::Stopped`).
    actor_gone: bool,
    /// A handle asked the refresher to stop (`TokenHandle::shutdown`).
    shutdown: bool,
}

impl Commands {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // The state is consistent between statements; a panic elsewhere cannot corrupt it.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Queues `command` for the actor, or gives it back if the actor has stopped.
    pub(crate) fn send(&self, command: Command) -> Result<(), Command> {
        let mut state = self.state();
        if state.actor_gone {
            return Err(command);
        }
        state.queue.push_back(command);
        drop(state);
        self.notify.notify_one();
        Ok(())
    }

    /// Tells the actor that a reader found no valid token, unless enough wake-ups wait already.
    pub(crate) fn wake(&self) {
        let mut state = self.state();
        if state.actor_gone || state.queue.len() >= MOST_WAKES {
            return;
        }
        state.queue.push_back(Command::Wake);
        drop(state);
        self.notify.notify_one();
    }

    /// Asks the actor to stop at once, also in the middle of a fetch.
    pub(crate) fn shutdown(&self) {
        self.state().shutdown = true;
        self.notify.notify_one();
    }

    /// Resolves once [`shutdown`](Commands::shutdown) was called: for the phase before the
    /// actor takes commands (loading a stored token).
    pub(crate) async fn shutdown_requested(&self) {
        loop {
            let notified = self.notify.notified();
            if self.state().shutdown {
                return;
            }
            notified.await;
        }
    }

    /// The last handle is gone.
    pub(crate) fn close(&self) {
        self.state().handles_gone = true;
        self.notify.notify_one();
    }

    /// The actor has stopped: queued commands are dropped (their callers get
    /// `Error::Stopped`) and new ones are refused.
    pub(crate) fn stop(&self) {
        let queued = {
            let mut state = self.state();
            state.actor_gone = true;
            std::mem::take(&mut state.queue)
        };
        drop(queued);
    }

    /// The next command; `None` once a handle asked the refresher to stop, or every handle is
    /// gone and the queue is empty.
    pub(crate) async fn recv(&self) -> Option<Command> {
        loop {
            let notified = self.notify.notified();
            {
                let mut state = self.state();
                if state.shutdown {
                    return None;
                }
                if let Some(command) = state.queue.pop_front() {
                    if state.queue.capacity() > 64 && state.queue.is_empty() {
                        // A burst is over: give the memory back.
                        state.queue = VecDeque::new();
                    }
                    return Some(command);
                }
                if state.handles_gone {
                    return None;
                }
            }
            notified.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn commands_arrive_in_order_and_wakes_are_capped() {
        let commands = Commands::default();
        for _ in 0..100 {
            commands.wake();
        }
        assert_eq!(commands.state().queue.len(), MOST_WAKES);
        for _ in 0..MOST_WAKES {
            assert!(matches!(commands.recv().await, Some(Command::Wake)));
        }
        commands.close();
        assert!(
            commands.recv().await.is_none(),
            "no handles and nothing queued"
        );
    }

    #[tokio::test]
    async fn a_stopped_actor_refuses_commands_and_drops_the_queued_ones() {
        let commands = Commands::default();
        let (reply, answer) = tokio::sync::oneshot::channel();
        assert!(commands.send(Command::Refresh { reply }).is_ok());
        commands.stop();
        assert!(answer.await.is_err(), "the queued caller is told");
        let (reply, _answer) = tokio::sync::oneshot::channel();
        assert!(commands.send(Command::Refresh { reply }).is_err());
    }

    #[tokio::test]
    async fn a_shutdown_ends_the_queue_at_once() {
        let commands = Commands::default();
        commands.wake();
        commands.shutdown();
        assert!(
            commands.recv().await.is_none(),
            "queued commands do not delay it"
        );
        commands.shutdown_requested().await;
    }

    #[tokio::test]
    async fn a_waiting_actor_is_woken_by_a_send() {
        let commands = std::sync::Arc::new(Commands::default());
        let receiver = commands.clone();
        let actor = tokio::spawn(async move { receiver.recv().await.is_some() });
        tokio::task::yield_now().await;
        commands.wake();
        assert!(actor.await.unwrap());
    }
}
