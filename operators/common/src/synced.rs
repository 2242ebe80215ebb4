//! Readiness of reflector caches that any number of tasks can wait for.
//!
//! kube-runtime's `Store::wait_until_ready` keeps a oneshot receiver inside, which remembers
//! only the last task that polled it: with two tasks waiting on one store, the other never
//! wakes (a PM whose controllers waited for its caches never reported /health). So each set
//! of caches gets exactly one waiter, here, and everyone else watches its flag.
use std::future::Future;

use tokio::sync::watch;

#[derive(Clone)]
pub struct Synced(watch::Receiver<bool>);

impl Synced {
    /// Runs `all_ready` (the one wait on the caches, true once they are filled) in a task.
    pub fn after(all_ready: impl Future<Output = bool> + Send + 'static) -> Self {
        let (done, flag) = watch::channel(false);
        tokio::spawn(async move {
            if all_ready.await {
                let _ = done.send(true);
            }
            // Keep the sender until every receiver is gone, so waiters never see it closed.
            done.closed().await;
        });
        Self(flag)
    }

    /// Whether the caches are filled.
    pub fn now(&self) -> bool {
        *self.0.borrow()
    }

    /// Waits until the caches are filled (forever when their watches died).
    pub async fn wait(&self) {
        let mut flag = self.0.clone();
        let _ = flag.wait_for(|ready| *ready).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_waiter_wakes_when_the_caches_are_filled() {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let synced = Synced::after(async move { rx.await.is_ok() });
        let waiters: Vec<_> = (0..3)
            .map(|_| {
                let synced = synced.clone();
                tokio::spawn(async move { synced.wait().await })
            })
            .collect();
        tokio::task::yield_now().await;
        assert!(!synced.now());
        tx.send(()).unwrap();
        for waiter in waiters {
            tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
                .await
                .expect("every waiter wakes")
                .unwrap();
        }
        assert!(synced.now());
    }
}
