//! The request journal: a bounded ring of the latest requests on the mock
//! listener, each with the endpoint that answered it (or none), to verify
//! against. Recording takes no lock: a slot is claimed with an atomic
//! counter and its entry swapped in; memory stays flat once the ring is full.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwapOption;
use bytes::Bytes;

/// How a request was answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// An endpoint answered.
    Mocked,
    /// An endpoint or the fallback passed it to an upstream.
    Proxied,
    /// No endpoint matched.
    Unmatched,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Mocked => "mocked",
            Outcome::Proxied => "proxied",
            Outcome::Unmatched => "unmatched",
        }
    }
}

/// One request, as the journal keeps it.
#[derive(Debug, Clone)]
pub struct Entry {
    pub seq: u64,
    pub at_ms: u64,
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub headers: Vec<(String, String)>,
    /// The body, cut at the journal's limit.
    pub body: Bytes,
    /// The body's full length where it is known.
    pub body_len: Option<u64>,
    /// The endpoint that answered, if one did.
    pub endpoint: Option<Arc<str>>,
    pub outcome: Outcome,
    /// The status sent (0 when the connection was closed without one).
    pub status: u16,
}

/// Milliseconds since the Unix epoch, as entries keep the time.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

pub struct Journal {
    slots: Box<[ArcSwapOption<Entry>]>,
    next: AtomicU64,
    /// Entries before this sequence number were cleared.
    cleared_before: AtomicU64,
    pub body_limit: usize,
}

impl Journal {
    pub fn new(capacity: usize, body_limit: usize) -> Journal {
        let slots = (0..capacity.max(1))
            .map(|_| ArcSwapOption::empty())
            .collect();
        Journal {
            slots,
            next: AtomicU64::new(0),
            cleared_before: AtomicU64::new(0),
            body_limit,
        }
    }

    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// Keeps `entry` in place of the oldest one; its `seq` is assigned here.
    pub fn record(&self, mut entry: Entry) {
        let seq = self.next.fetch_add(1, Ordering::Relaxed);
        entry.seq = seq;
        let slot = (seq % self.slots.len() as u64) as usize;
        self.slots[slot].store(Some(Arc::new(entry)));
    }

    /// The entries kept, oldest first.
    pub fn entries(&self) -> Vec<Arc<Entry>> {
        let from = self.cleared_before.load(Ordering::Relaxed);
        let mut list: Vec<Arc<Entry>> = self
            .slots
            .iter()
            .filter_map(|s| s.load_full())
            .filter(|e| e.seq >= from)
            .collect();
        list.sort_by_key(|e| e.seq);
        list
    }

    /// Forgets every entry recorded so far.
    pub fn clear(&self) {
        self.cleared_before
            .store(self.next.load(Ordering::Relaxed), Ordering::Relaxed);
        for s in self.slots.iter() {
            s.store(None);
        }
    }

    /// Requests recorded since the start (including those the ring dropped).
    pub fn recorded(&self) -> u64 {
        self.next.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(path: &str) -> Entry {
        Entry {
            seq: 0,
            at_ms: 0,
            method: "GET".into(),
            path: path.into(),
            query: None,
            headers: vec![],
            body: Bytes::new(),
            body_len: None,
            endpoint: None,
            outcome: Outcome::Unmatched,
            status: 404,
        }
    }

    #[test]
    fn keeps_the_latest_in_order() {
        let j = Journal::new(3, 10);
        for i in 0..5 {
            j.record(entry(&format!("/{i}")));
        }
        let paths: Vec<String> = j.entries().iter().map(|e| e.path.clone()).collect();
        assert_eq!(paths, ["/2", "/3", "/4"]);
        assert_eq!(j.recorded(), 5);
        j.clear();
        assert!(j.entries().is_empty());
        j.record(entry("/5"));
        assert_eq!(j.entries().len(), 1);
        assert_eq!(j.entries()[0].seq, 5);
    }
}
