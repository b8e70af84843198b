//! [`FetchLimit`]: a cap on concurrent fetches across many credentials, serving the most urgent
//! first.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use tokio::sync::oneshot;

/// A semaphore whose waiters are served by urgency: the earliest `priority` (the expiry of the
/// waiter's current token) first, and in arrival order among equals.
#[derive(Clone, Debug)]
pub(crate) struct FetchLimit {
    queue: Arc<Mutex<Queue>>,
}

#[derive(Debug)]
struct Queue {
    available: usize,
    waiting: BinaryHeap<Waiter>,
    arrivals: u64,
}

#[derive(Debug)]
struct Waiter {
    priority: SystemTime,
    arrival: u64,
    grant: oneshot::Sender<Permit>,
}

// `BinaryHeap` pops the greatest: the greatest waiter is the most urgent one.
impl Ord for Waiter {
    fn cmp(&self, other: &Self) -> Ordering {
        (other.priority, other.arrival).cmp(&(self.priority, self.arrival))
    }
}

impl PartialOrd for Waiter {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Waiter {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Waiter {}

/// The right to fetch; the slot is handed on when it drops.
#[derive(Debug)]
pub(crate) struct Permit {
    limit: Option<FetchLimit>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        if let Some(limit) = self.limit.take() {
            limit.release();
        }
    }
}

impl FetchLimit {
    pub(crate) fn new(slots: usize) -> FetchLimit {
        FetchLimit {
            queue: Arc::new(Mutex::new(Queue {
                available: slots.max(1),
                waiting: BinaryHeap::new(),
                arrivals: 0,
            })),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        // The queue's invariants hold between statements, so a poisoned lock is still usable.
        self.queue
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Waits for a slot. Dropping the future gives up the place in the queue.
    pub(crate) async fn acquire(&self, priority: SystemTime) -> Permit {
        let granted = {
            let mut queue = self.lock();
            if queue.available > 0 {
                queue.available -= 1;
                return Permit {
                    limit: Some(self.clone()),
                };
            }
            let (grant, granted) = oneshot::channel();
            let arrival = queue.arrivals;
            queue.arrivals += 1;
            queue.waiting.push(Waiter {
                priority,
                arrival,
                grant,
            });
            granted
        };
        // The sender lives in the queue, which lives as long as `self`.
        granted.await.unwrap_or(Permit { limit: None })
    }

    fn release(&self) {
        let mut queue = self.lock();
        while let Some(waiter) = queue.waiting.pop() {
            let permit = Permit {
                limit: Some(self.clone()),
            };
            match waiter.grant.send(permit) {
                Ok(()) => return,
                // That waiter gave up; disarm the permit (no release from inside the lock) and
                // offer the slot to the next.
                Err(mut unclaimed) => unclaimed.limit = None,
            }
        }
        queue.available += 1;
    }

    #[cfg(test)]
    fn available(&self) -> usize {
        self.lock().available
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[tokio::test]
    async fn the_token_closest_to_expiry_goes_first_then_arrival_order() {
        let limit = FetchLimit::new(1);
        let held = limit.acquire(at(0)).await;
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut waiters = Vec::new();
        for (name, expiry) in [
            ("late", 900),
            ("soon-a", 100),
            ("never-had-one", 0),
            ("soon-b", 100),
        ] {
            let limit = limit.clone();
            let order = order.clone();
            waiters.push(tokio::spawn(async move {
                let _permit = limit.acquire(at(expiry)).await;
                order.lock().unwrap().push(name);
            }));
            tokio::task::yield_now().await; // queue them in this order
        }
        drop(held);
        for waiter in waiters {
            waiter.await.unwrap();
        }
        assert_eq!(
            *order.lock().unwrap(),
            ["never-had-one", "soon-a", "soon-b", "late"]
        );
        assert_eq!(limit.available(), 1);
    }

    #[tokio::test]
    async fn a_waiter_that_gives_up_does_not_lose_the_slot() {
        let limit = FetchLimit::new(1);
        let held = limit.acquire(at(0)).await;
        let gave_up = tokio::spawn({
            let limit = limit.clone();
            async move { limit.acquire(at(1)).await }
        });
        tokio::task::yield_now().await;
        gave_up.abort();
        let _ = gave_up.await;
        drop(held);
        assert_eq!(limit.available(), 1);
        let _again = limit.acquire(at(2)).await;
        assert_eq!(limit.available(), 0);
    }

    #[tokio::test]
    async fn never_more_than_the_slots_at_once() {
        let limit = FetchLimit::new(3);
        let running = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let most = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let tasks: Vec<_> = (0..50)
            .map(|i| {
                let (limit, running, most) = (limit.clone(), running.clone(), most.clone());
                tokio::spawn(async move {
                    let _permit = limit.acquire(at(i)).await;
                    let now = running.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                    most.fetch_max(now, std::sync::atomic::Ordering::SeqCst);
                    tokio::task::yield_now().await;
                    running.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        assert_eq!(most.load(std::sync::atomic::Ordering::SeqCst), 3);
        assert_eq!(limit.available(), 3);
    }
}
