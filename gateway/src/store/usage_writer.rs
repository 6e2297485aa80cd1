//! Usage events and charges are written off the request path: requests hand them to a channel,
//! and one task writes them in batches (one transaction per batch), every `flush_every` or when
//! `max_batch` are waiting, whichever comes first. Shutdown drains the channel.

use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::{ChargeEntry, Store, UsageEvent};

enum Msg {
    Record(Box<UsageEvent>, Option<ChargeEntry>),
    Flush(oneshot::Sender<()>),
}

/// Cheap to clone; hands records to the writer task.
#[derive(Clone)]
pub struct UsageWriterHandle {
    tx: mpsc::Sender<Msg>,
}

pub struct UsageWriter;

impl UsageWriter {
    /// Starts the writer task on the current tokio runtime.
    pub fn spawn(store: Store, max_batch: usize, flush_every: Duration) -> UsageWriterHandle {
        let (tx, rx) = mpsc::channel(max_batch * 16);
        tokio::spawn(run(store, rx, max_batch, flush_every));
        UsageWriterHandle { tx }
    }
}

impl UsageWriterHandle {
    /// Queues a usage event with its charge. Waits only when the queue is full (back-pressure
    /// rather than lost records).
    pub async fn record(&self, event: UsageEvent, charge: Option<ChargeEntry>) {
        if self
            .tx
            .send(Msg::Record(Box::new(event), charge))
            .await
            .is_err()
        {
            tracing::error!("usage writer stopped: a usage record was not written");
        }
    }

    /// Waits until everything queued before this call is written.
    pub async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.tx.send(Msg::Flush(done)).await.is_ok() {
            let _ = wait.await;
        }
    }
}

async fn run(store: Store, mut rx: mpsc::Receiver<Msg>, max_batch: usize, flush_every: Duration) {
    let mut events = Vec::with_capacity(max_batch);
    let mut charges = Vec::with_capacity(max_batch);
    let mut waiters: Vec<oneshot::Sender<()>> = Vec::new();
    loop {
        // Wait for the next message; with records pending, only until the next flush is due.
        let (msg, due) = if events.is_empty() {
            (rx.recv().await, false)
        } else {
            match tokio::time::timeout(flush_every, rx.recv()).await {
                Ok(m) => (m, false),
                Err(_) => (None, true),
            }
        };
        let closed = msg.is_none() && !due;
        match msg {
            Some(Msg::Record(event, charge)) => {
                events.push(*event);
                charges.extend(charge);
                if events.len() < max_batch {
                    continue;
                }
            }
            Some(Msg::Flush(done)) => waiters.push(done),
            None => {}
        }
        if !events.is_empty() {
            write_batch(&store, &events, &charges).await;
            events.clear();
            charges.clear();
        }
        for w in waiters.drain(..) {
            let _ = w.send(());
        }
        if closed {
            break;
        }
    }
}

async fn write_batch(store: &Store, events: &[UsageEvent], charges: &[ChargeEntry]) {
    // A failed batch is retried a few times: losing usage would lose billing.
    for attempt in 1..=5u32 {
        match store.record_usage(events, charges).await {
            Ok(()) => return,
            Err(err) => {
                tracing::error!(error = %err, attempt, events = events.len(), "writing usage batch failed");
                tokio::time::sleep(Duration::from_millis(100 * u64::from(attempt))).await;
            }
        }
    }
}
