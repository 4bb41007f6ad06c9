//! A bound on the bytes in flight between a source and the decoder.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Shared budget of bytes; `acquire` waits while the budget is spent.
#[derive(Debug, Clone)]
pub struct ByteBudget {
    sem: Arc<Semaphore>,
    max: u32,
}

/// Bytes taken from a [`ByteBudget`], given back on drop.
#[derive(Debug)]
pub struct BytePermit(#[allow(dead_code)] Option<OwnedSemaphorePermit>);

impl ByteBudget {
    pub fn new(max_bytes: usize) -> Self {
        let max = u32::try_from(max_bytes).unwrap_or(u32::MAX).max(1);
        Self { sem: Arc::new(Semaphore::new(max as usize)), max }
    }

    /// Waits until `bytes` are free (a request above the whole budget takes the whole budget).
    pub async fn acquire(&self, bytes: usize) -> BytePermit {
        let n = u32::try_from(bytes).unwrap_or(u32::MAX).clamp(1, self.max);
        BytePermit(self.sem.clone().acquire_many_owned(n).await.ok())
    }

    /// Takes `bytes` now if they are free (for sources that must not wait, such as a Kafka poll
    /// loop, which pauses fetching instead).
    pub fn try_acquire(&self, bytes: usize) -> Option<BytePermit> {
        let n = u32::try_from(bytes).unwrap_or(u32::MAX).clamp(1, self.max);
        self.sem.clone().try_acquire_many_owned(n).ok().map(|p| BytePermit(Some(p)))
    }

    /// Bytes currently free.
    pub fn available(&self) -> usize {
        self.sem.available_permits()
    }
}

impl BytePermit {
    /// A permit that holds nothing (for tests and unbounded tools).
    pub fn none() -> Self {
        Self(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn acquire_waits_until_bytes_are_given_back() {
        let b = ByteBudget::new(100);
        let p = b.acquire(80).await;
        assert_eq!(b.available(), 20);
        let waiting = tokio::time::timeout(std::time::Duration::from_millis(50), b.acquire(30)).await;
        assert!(waiting.is_err(), "over budget: waits");
        drop(p);
        let _q = b.acquire(1000).await;
        assert_eq!(b.available(), 0, "a huge request takes the whole budget");
    }
}
