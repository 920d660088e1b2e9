//! The live event stream: what `/v1/events` (server-sent events), the web page and the
//! webhooks see. Events are published after they were recorded, so nothing is announced
//! that the ledger does not hold. Slow subscribers miss events (they are told how many);
//! the ledger stays the record.

use std::sync::Arc;

use serde::Serialize;
use serde_json::Value;
use tokio::sync::broadcast;

use crate::error::Result;
use crate::model::EventSink;

/// One published event.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    pub kind: String,
    /// Its ledger sequence number (absent when the ledger is off).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    pub at: String,
    pub data: Value,
}

/// A broadcast channel of events; cheap to clone.
#[derive(Clone)]
pub struct EventBus {
    tx: broadcast::Sender<Arc<Event>>,
}

impl EventBus {
    /// A bus keeping up to `capacity` events for slow subscribers.
    pub fn new(capacity: usize) -> EventBus {
        EventBus {
            tx: broadcast::channel(capacity.max(1)).0,
        }
    }

    /// True when someone listens (publishers skip building events otherwise).
    pub fn has_subscribers(&self) -> bool {
        self.tx.receiver_count() > 0
    }

    /// Publishes an event to the current subscribers.
    pub fn publish(&self, kind: &str, seq: Option<u64>, data: Value) {
        if self.has_subscribers() {
            let _ = self.tx.send(Arc::new(Event {
                kind: kind.to_string(),
                seq,
                at: crate::time::now_rfc3339(),
                data,
            }));
        }
    }

    /// A new subscriber, seeing events published from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.tx.subscribe()
    }
}

/// An [`EventSink`] that records into `inner` (the ledger, if on) and then publishes the
/// event on the bus.
pub struct Published {
    pub inner: Option<Arc<dyn EventSink>>,
    pub bus: EventBus,
}

impl EventSink for Published {
    fn record(&self, kind: &str, data: Value) -> Result<u64> {
        let seq = match &self.inner {
            Some(s) => Some(s.record(kind, data.clone())?),
            None => None,
        };
        self.bus.publish(kind, seq, data);
        Ok(seq.unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Failing;
    impl EventSink for Failing {
        fn record(&self, _: &str, _: Value) -> Result<u64> {
            Err(crate::error::Error::Store("disk full".into()))
        }
    }

    #[tokio::test]
    async fn publishes_only_what_was_recorded() {
        let bus = EventBus::new(8);
        let mut rx = bus.subscribe();
        let ok = Published {
            inner: None,
            bus: bus.clone(),
        };
        ok.record("approval.created", serde_json::json!({"approval": "apr_1"}))
            .unwrap();
        let e = rx.recv().await.unwrap();
        assert_eq!(e.kind, "approval.created");
        assert_eq!(e.data["approval"], "apr_1");
        let failing = Published {
            inner: Some(Arc::new(Failing)),
            bus,
        };
        assert!(failing.record("approval.created", Value::Null).is_err());
        assert!(rx.try_recv().is_err(), "a failed record is not announced");
    }
}
