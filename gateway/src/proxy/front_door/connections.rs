//! Connection accounting: open connections in all and per address, eviction of the oldest
//! idle or half-sent connection at a cap, and giving memory back after a surge.

use super::*;

struct Slot {
    ip: IpAddr,
    /// Set once the slot's counts were given back (by eviction or by the guard's drop).
    released: AtomicBool,
    evict: Notify,
}

#[derive(Default)]
struct Table {
    total: usize,
    /// Most connections open at once since memory was last given back (see `trim_after_surge`).
    peak: usize,
    per_ip: HashMap<IpAddr, usize>,
    /// Connections that may be closed to make room, oldest first.
    idle: BTreeMap<u64, Arc<Slot>>,
    idle_by_ip: HashMap<IpAddr, BTreeSet<u64>>,
    next: u64,
}

impl Table {
    fn release(&mut self, slot: &Slot) {
        if slot.released.swap(true, Ordering::AcqRel) {
            return;
        }
        self.total = self.total.saturating_sub(1);
        if let Some(n) = self.per_ip.get_mut(&slot.ip) {
            *n -= 1;
            if *n == 0 {
                self.per_ip.remove(&slot.ip);
            }
        }
    }

    fn unmark_idle(&mut self, seq: u64, ip: IpAddr) -> Option<Arc<Slot>> {
        let slot = self.idle.remove(&seq)?;
        if let Some(set) = self.idle_by_ip.get_mut(&ip) {
            set.remove(&seq);
            if set.is_empty() {
                self.idle_by_ip.remove(&ip);
            }
        }
        Some(slot)
    }

    /// Closes the oldest idle connection (of `ip` when given); false when there is none.
    fn evict_oldest(&mut self, ip: Option<IpAddr>) -> bool {
        let seq = match ip {
            Some(ip) => self.idle_by_ip.get(&ip).and_then(|s| s.first().copied()),
            None => self.idle.keys().next().copied(),
        };
        let Some(seq) = seq else { return false };
        let Some(slot) = self.idle.get(&seq).cloned() else {
            return false;
        };
        self.unmark_idle(seq, slot.ip);
        self.release(&slot);
        slot.evict.notify_one();
        true
    }
}

/// Open client connections, with the caps and the eviction of idle ones.
pub struct Connections {
    table: Mutex<Table>,
    max_total: usize,
    max_per_ip: usize,
}

/// One admitted connection; gives its place back when dropped.
pub struct ConnGuard<'a> {
    conns: &'a Connections,
    slot: Arc<Slot>,
    idle_seq: Option<u64>,
}

impl Connections {
    pub fn new(max_total: usize, max_per_ip: usize) -> Self {
        Connections {
            table: Mutex::new(Table::default()),
            max_total,
            max_per_ip,
        }
    }

    pub fn open(&self) -> usize {
        self.table.lock().total
    }

    /// After a surge of connections (a flood) has drained, hands the memory they used back to
    /// the operating system: glibc keeps freed heap pages in its arenas otherwise, and a flood
    /// of 18,000 half-open connections left RSS at ~4x its baseline. Cheap to call often; it
    /// only trims when the open count fell below a quarter of a peak of at least `surge`.
    pub fn trim_after_surge(&self, surge: usize) -> bool {
        let mut t = self.table.lock();
        if t.peak < surge || t.total > t.peak / 4 {
            return false;
        }
        t.peak = t.total;
        drop(t);
        release_free_memory();
        true
    }

    /// Admits a connection from `ip`, closing idle ones to make room when at a cap.
    pub fn admit(&self, ip: IpAddr) -> Result<ConnGuard<'_>, Refusal> {
        let mut t = self.table.lock();
        if t.per_ip.get(&ip).copied().unwrap_or(0) >= self.max_per_ip && !t.evict_oldest(Some(ip)) {
            return Err(Refusal::new(
                503,
                "too_many_connections",
                "Too many open connections from your address; try again later.",
            ));
        }
        if t.total >= self.max_total && !t.evict_oldest(None) {
            return Err(Refusal::new(
                503,
                "server_overloaded",
                "The gateway is at its connection limit; try again later.",
            ));
        }
        t.total += 1;
        t.peak = t.peak.max(t.total);
        *t.per_ip.entry(ip).or_default() += 1;
        Ok(ConnGuard {
            conns: self,
            slot: Arc::new(Slot {
                ip,
                released: AtomicBool::new(false),
                evict: Notify::new(),
            }),
            idle_seq: None,
        })
    }
}

impl ConnGuard<'_> {
    /// Whether this connection's counts were given back (it was evicted).
    #[cfg(test)]
    pub(super) fn is_released(&self) -> bool {
        self.slot.released.load(Ordering::Acquire)
    }

    /// Marks the connection as closable to make room (waiting for a request header).
    pub(super) fn set_idle(&mut self) {
        if self.idle_seq.is_some() || self.slot.released.load(Ordering::Acquire) {
            return;
        }
        let mut t = self.conns.table.lock();
        let seq = t.next;
        t.next += 1;
        t.idle.insert(seq, self.slot.clone());
        t.idle_by_ip.entry(self.slot.ip).or_default().insert(seq);
        self.idle_seq = Some(seq);
    }

    /// Marks the connection as serving a request (not closable).
    pub(super) fn set_active(&mut self) {
        if let Some(seq) = self.idle_seq.take() {
            self.conns.table.lock().unmark_idle(seq, self.slot.ip);
        }
    }

    /// Resolves when the connection was chosen to be closed to make room.
    pub(super) async fn evicted(&self) {
        self.slot.evict.notified().await
    }
}

impl Drop for ConnGuard<'_> {
    fn drop(&mut self) {
        let mut t = self.conns.table.lock();
        if let Some(seq) = self.idle_seq.take() {
            t.unmark_idle(seq, self.slot.ip);
        }
        t.release(&self.slot);
    }
}

/// Returns freed heap memory to the operating system (glibc's `malloc_trim`; a no-op elsewhere).
pub(super) fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks and trims the allocator's own free lists; it takes no
    // pointers from us and is safe to call from any thread at any time.
    unsafe {
        libc::malloc_trim(0);
    }
}
