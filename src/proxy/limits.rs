//! Connection caps: a total (`limits.max_connections`) and one per client address
//! (`limits.max_connections_per_client`). A connection holds a [`ConnPermit`] for its life; the
//! per-client counters live in a dashmap whose guards never outlive the call that takes them.
//! Both caps are atomics, so a reload changes them for new connections without a restart.

use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use dashmap::DashMap;

#[derive(Debug)]
pub struct ConnLimiter {
    total: AtomicUsize,
    max_total: AtomicUsize,
    max_per_client: AtomicUsize,
    per_client: DashMap<IpAddr, usize>,
}

/// Why a connection was turned away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The proxy is full: 503.
    Total,
    /// This client holds too many connections: 429.
    PerClient,
}

impl ConnLimiter {
    pub fn new(max_total: usize, max_per_client: usize) -> Arc<Self> {
        Arc::new(ConnLimiter {
            total: AtomicUsize::new(0),
            max_total: AtomicUsize::new(max_total),
            max_per_client: AtomicUsize::new(max_per_client),
            per_client: DashMap::new(),
        })
    }

    /// New caps from a reloaded configuration; connections already open keep their slots.
    pub fn set_limits(&self, max_total: usize, max_per_client: usize) {
        self.max_total.store(max_total, Ordering::Relaxed);
        self.max_per_client.store(max_per_client, Ordering::Relaxed);
    }

    pub fn active(&self) -> usize {
        self.total.load(Ordering::Relaxed)
    }

    pub fn try_acquire(self: &Arc<Self>, client: IpAddr) -> Result<ConnPermit, Refusal> {
        if self.total.fetch_add(1, Ordering::AcqRel) >= self.max_total.load(Ordering::Relaxed) {
            self.total.fetch_sub(1, Ordering::AcqRel);
            return Err(Refusal::Total);
        }
        {
            let mut n = self.per_client.entry(client).or_insert(0);
            if *n >= self.max_per_client.load(Ordering::Relaxed) {
                drop(n);
                self.total.fetch_sub(1, Ordering::AcqRel);
                return Err(Refusal::PerClient);
            }
            *n += 1;
        }
        Ok(ConnPermit {
            limiter: self.clone(),
            client,
        })
    }
}

/// Held by a connection; releases its slots when dropped.
#[derive(Debug)]
pub struct ConnPermit {
    limiter: Arc<ConnLimiter>,
    client: IpAddr,
}

impl Drop for ConnPermit {
    fn drop(&mut self) {
        self.limiter.total.fetch_sub(1, Ordering::AcqRel);
        // Remove the entry at zero so the map does not grow with every client ever seen.
        self.limiter.per_client.remove_if_mut(&self.client, |_, n| {
            *n -= 1;
            *n == 0
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_and_release() {
        let l = ConnLimiter::new(3, 2);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let p1 = l.try_acquire(a).unwrap();
        let _p2 = l.try_acquire(a).unwrap();
        assert_eq!(l.try_acquire(a).unwrap_err(), Refusal::PerClient);
        let _p3 = l.try_acquire(b).unwrap();
        assert_eq!(l.try_acquire(b).unwrap_err(), Refusal::Total);
        drop(p1);
        assert_eq!(l.active(), 2);
        let _p4 = l.try_acquire(a).unwrap();
        drop(_p4);
        drop(_p2);
        assert!(l.per_client.get(&a).is_none(), "zero counters are removed");
    }
}
