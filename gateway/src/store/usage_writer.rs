//! Usage events and charges are written off the request path: requests hand them to a channel,
//! and one task writes them in batches (one transaction per batch), every `flush_every` or when
//! `max_batch` are waiting, whichever comes first. Shutdown drains the channel.
//!
//! Nothing is dropped. A batch that fails is written again row by row, so one bad row (say, an
//! org deleted meanwhile) cannot take other orgs' records with it. A row the database refuses
//! for good is appended to a dead-letter file (JSON Lines, `usage-dead-letter.jsonl` in the
//! data directory) for an operator to replay; a row that fails for a transient reason (the
//! database is down) is retried with backoff until it is written. Meanwhile the bounded
//! channel fills and pushes back on requests instead of growing without limit.

use std::io::Write;
use std::path::PathBuf;
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
    pub fn spawn(
        store: Store,
        max_batch: usize,
        flush_every: Duration,
        dead_letter: PathBuf,
    ) -> UsageWriterHandle {
        let (tx, rx) = mpsc::channel(max_batch * 16);
        let sink = Sink { store, dead_letter };
        tokio::spawn(run(sink, rx, max_batch, flush_every));
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

async fn run(sink: Sink, mut rx: mpsc::Receiver<Msg>, max_batch: usize, flush_every: Duration) {
    let mut events = Vec::with_capacity(max_batch);
    let mut charges = Vec::with_capacity(max_batch);
    let mut waiters: Vec<oneshot::Sender<()>> = Vec::new();
    // When the oldest pending record must be written (set when a batch starts), so steady
    // traffic cannot postpone a flush by resetting a per-message timeout.
    let mut flush_at = tokio::time::Instant::now();
    loop {
        // Wait for the next message; with records pending, only until the next flush is due.
        let (msg, due) = if events.is_empty() {
            let msg = rx.recv().await;
            flush_at = tokio::time::Instant::now() + flush_every;
            (msg, false)
        } else {
            match tokio::time::timeout_at(flush_at, rx.recv()).await {
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
            sink.write_batch(&events, &charges).await;
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

/// Where records go: the database, else (for rows it refuses for good) the dead-letter file.
struct Sink {
    store: Store,
    dead_letter: PathBuf,
}

const BATCH_TRIES: u32 = 3;

impl Sink {
    async fn write_batch(&self, events: &[UsageEvent], charges: &[ChargeEntry]) {
        for attempt in 1..=BATCH_TRIES {
            match self.store.record_usage(events, charges).await {
                Ok(()) => return,
                Err(err) => {
                    tracing::error!(error = %err, attempt, events = events.len(), "writing usage batch failed");
                    if err.is_permanent() {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(100 * u64::from(attempt))).await;
                }
            }
        }
        // Row by row: each event with its own charge, so a bad row fails alone.
        for event in events {
            let charge: Vec<ChargeEntry> = charges
                .iter()
                .filter(|c| c.request_id == event.request_id)
                .cloned()
                .collect();
            self.write_row(event, &charge).await;
        }
        // Charges whose event is not in this batch (none today) are written on their own.
        let orphans: Vec<ChargeEntry> = charges
            .iter()
            .filter(|c| !events.iter().any(|e| e.request_id == c.request_id))
            .cloned()
            .collect();
        if !orphans.is_empty() {
            self.write_charges(&orphans).await;
        }
    }

    async fn write_row(&self, event: &UsageEvent, charge: &[ChargeEntry]) {
        let mut wait = Duration::from_millis(100);
        loop {
            match self
                .store
                .record_usage(std::slice::from_ref(event), charge)
                .await
            {
                Ok(()) => return,
                Err(err) if err.is_permanent() => {
                    tracing::error!(error = %err, request_id = %event.request_id,
                        file = %self.dead_letter.display(), "usage record refused by the database; kept in the dead-letter file");
                    self.dead_letter(&serde_json::json!({
                        "error": err.to_string(), "event": event, "charges": charge}));
                    // Its hold would otherwise stay until the sweep (PostgreSQL) or a restart
                    // (SQLite): the request is over either way.
                    if let Err(e) = self.store.release_hold(&event.request_id).await {
                        tracing::error!(error = %e, "releasing the hold of a dead-lettered record failed");
                    }
                    return;
                }
                Err(err) => {
                    tracing::error!(error = %err, request_id = %event.request_id, "writing a usage record failed; retrying");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    async fn write_charges(&self, charges: &[ChargeEntry]) {
        if let Err(err) = self.store.record_usage(&[], charges).await {
            tracing::error!(error = %err, "writing charges failed; kept in the dead-letter file");
            self.dead_letter(&serde_json::json!({"error": err.to_string(), "charges": charges}));
        }
    }

    fn dead_letter(&self, value: &serde_json::Value) {
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.dead_letter)
            .and_then(|mut f| writeln!(f, "{value}"));
        if let Err(e) = written {
            // Last resort: the record goes to the log, which an operator can still replay.
            tracing::error!(error = %e, record = %value, "could not write the dead-letter file");
        }
    }
}
