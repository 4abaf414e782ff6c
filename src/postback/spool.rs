//! The durable spool: every payload is written to `state_dir/spool` (temporary
//! file, rename) as soon as it is built, so a crash of the agent loses
//! nothing; [`Spool::persist`] makes the written files durable (fsync of each
//! file and of the directory) against a power cut. The delivery task calls it
//! for payloads the receiver has not taken `spool.grace` after they were
//! built, and at shutdown, so a payload delivered at once costs no disk
//! flush. A file is removed only after the receiver took its payload (2xx)
//! or refused it for good (400/413). The newest payload goes first; the
//! backlog drains oldest-first.
//! Bounded by bytes and age; whatever a bound drops, or a corrupt file that is
//! moved aside, is counted and logged. When the disk fails the payload is
//! kept in memory (counted) and the agent goes on.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::payload::Payload;
use crate::store;

/// One waiting payload. Its bytes live in its file, and in memory while it
/// is the freshest or when it could not be written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// File name; sorts in production order.
    pub name: String,
    pub seq: u64,
    /// Sample time, Unix seconds.
    pub time: u64,
    pub size: u64,
    stored: Stored,
    data: Option<Payload>,
}

impl Item {
    /// Whether it waits for [`Spool::persist`].
    pub fn is_pending(&self) -> bool {
        self.stored == Stored::Written
    }

    fn on_disk(&self) -> bool {
        matches!(self.stored, Stored::Written | Stored::Durable)
    }
}

/// Where an item's bytes are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stored {
    /// In its file, not flushed to the disk yet: the next
    /// [`Spool::persist`] does.
    Written,
    /// In its file, flushed.
    Durable,
    /// The disk refused it: kept in memory, lost on restart.
    MemoryOnly,
}

/// What the bounds and checks removed, and what could not be written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpoolStats {
    /// Dropped, oldest first, to stay under `max_bytes`.
    pub dropped_for_size: u64,
    /// Dropped for being older than `max_age`.
    pub dropped_for_age: u64,
    /// Unreadable files moved to `spool/corrupt/`.
    pub corrupt: u64,
    /// Payloads kept in memory only because the disk refused them.
    pub memory_only: u64,
}

/// The spool of one receiver.
#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    fresh: Option<Item>,
    backlog: VecDeque<Item>,
    bytes: u64,
    max_bytes: u64,
    max_age: Duration,
    disk_failing: bool,
    pub stats: SpoolStats,
}

/// `<time>-<run>-<seq>.json`, zero-padded so names sort by time.
pub fn file_name(time: u64, run: &str, seq: u64) -> String {
    format!("{time:011}-{run}-{seq:08}.json")
}

/// `(time, seq)` from a spool file name.
pub fn parse_name(name: &str) -> Option<(u64, u64)> {
    let stem = name.strip_suffix(".json")?;
    let mut parts = stem.split('-');
    let time = parts.next()?.parse().ok()?;
    let _run = parts.next()?;
    let seq = parts.next()?.parse().ok()?;
    parts.next().is_none().then_some((time, seq))
}

impl Spool {
    /// Opens (creating) `dir` and lists what an earlier run left, oldest
    /// first. Left-over temporary files are removed.
    pub fn open(dir: &Path, max_bytes: u64, max_age: Duration, now: u64) -> Self {
        let mut spool = Spool {
            dir: dir.to_path_buf(),
            fresh: None,
            backlog: VecDeque::new(),
            bytes: 0,
            max_bytes,
            max_age,
            disk_failing: false,
            stats: SpoolStats::default(),
        };
        if let Err(e) = std::fs::create_dir_all(dir) {
            spool.disk_failing = true;
            tracing::error!(dir = %dir.display(), "cannot create the spool directory, payloads are kept in memory only: {e}");
            return spool;
        }
        let mut items: Vec<Item> = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|entry| {
                let name = entry.file_name().into_string().ok()?;
                if name.contains(".json.tmp") {
                    let _ = std::fs::remove_file(entry.path());
                    return None;
                }
                let (time, seq) = parse_name(&name)?;
                let size = entry.metadata().ok()?.len();
                Some(Item {
                    name,
                    seq,
                    time,
                    size,
                    stored: Stored::Durable,
                    data: None,
                })
            })
            .collect();
        items.sort_by(|a, b| a.name.cmp(&b.name));
        spool.bytes = items.iter().map(|i| i.size).sum();
        spool.backlog = items.into();
        spool.enforce(now);
        if !spool.is_empty() {
            tracing::info!(
                queued = spool.len(),
                bytes = spool.bytes,
                oldest = ?spool.oldest_time(),
                "spool: payloads left by an earlier run will be delivered"
            );
        }
        spool
    }

    /// Payloads waiting.
    pub fn len(&self) -> usize {
        self.backlog.len() + usize::from(self.fresh.is_some())
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes waiting.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Sample time of the oldest waiting payload.
    pub fn oldest_time(&self) -> Option<u64> {
        self.backlog.front().or(self.fresh.as_ref()).map(|i| i.time)
    }

    /// Applies new bounds.
    pub fn set_bounds(&mut self, max_bytes: u64, max_age: Duration, now: u64) {
        self.max_bytes = max_bytes;
        self.max_age = max_age;
        self.enforce(now);
    }

    /// Writes a new payload (without waiting for the disk) and makes it the
    /// freshest. A payload the disk refuses is kept in memory (counted).
    pub fn push(&mut self, p: Payload, run: &str, now: u64) {
        let name = file_name(p.time, run, p.seq);
        let stored = match store::write_unsynced(&self.dir.join(&name), &p.json) {
            Ok(()) => {
                if self.disk_failing {
                    self.disk_failing = false;
                    tracing::info!(dir = %self.dir.display(), "spool directory writable again");
                }
                Stored::Written
            }
            Err(e) => {
                self.stats.memory_only += 1;
                if !self.disk_failing {
                    self.disk_failing = true;
                    tracing::error!("spool write failed, keeping payloads in memory (lost on restart): {e}");
                }
                Stored::MemoryOnly
            }
        };
        let item = Item {
            name,
            seq: p.seq,
            time: p.time,
            size: p.json.len() as u64,
            stored,
            data: Some(p),
        };
        self.bytes += item.size;
        if let Some(older) = self.fresh.replace(item) {
            self.insert_backlog(older);
        }
        self.enforce(now);
    }

    /// Whether a written payload (besides one in flight) waits for [`Spool::persist`].
    pub fn has_pending(&self) -> bool {
        self.fresh.iter().chain(&self.backlog).any(Item::is_pending)
    }

    /// Flushes every written payload to the disk, `in_flight` (the one being
    /// sent, taken out by [`Spool::pop`]) included. A flush that fails is
    /// logged and tried again at the next call.
    pub fn persist(&mut self, in_flight: Option<&mut Item>) {
        let dir = &self.dir;
        for item in in_flight
            .into_iter()
            .chain(self.fresh.iter_mut())
            .chain(self.backlog.iter_mut())
            .filter(|i| i.is_pending())
        {
            match store::sync(&dir.join(&item.name)) {
                Ok(()) => item.stored = Stored::Durable,
                Err(e) => tracing::warn!("spool flush failed, will retry: {e}"),
            }
        }
    }

    /// The payload to send next (freshest first, then oldest), read back
    /// from disk when needed. Corrupt and expired ones are set aside here.
    pub fn pop(&mut self, now: u64) -> Option<(Item, Payload)> {
        loop {
            let mut item = self.fresh.take().or_else(|| self.backlog.pop_front())?;
            self.bytes -= item.size;
            if self.expired(&item, now) {
                self.stats.dropped_for_age += 1;
                self.discard(&item, "older than spool.max_age");
                continue;
            }
            if let Some(payload) = item.data.take() {
                return Some((item, payload));
            }
            let data = match std::fs::read(self.dir.join(&item.name)) {
                Ok(d) => d,
                Err(e) => {
                    self.stats.corrupt += 1;
                    tracing::error!(file = %item.name, "spool file unreadable, skipped: {e}");
                    continue;
                }
            };
            if serde_json::from_slice::<serde::de::IgnoredAny>(&data).is_err() {
                self.set_aside(&item);
                continue;
            }
            let payload = Payload::new(data, item.seq, item.time);
            return Some((item, payload));
        }
    }

    /// The receiver took (or refused for good) this payload: forget it.
    pub fn ack(&mut self, item: &Item) {
        if item.on_disk() {
            let _ = std::fs::remove_file(self.dir.join(&item.name));
        }
    }

    /// Puts back a payload whose attempt failed: it stays the freshest unless
    /// something newer arrived meanwhile, else it rejoins the backlog in order.
    pub fn requeue(&mut self, mut item: Item, payload: Payload, now: u64) {
        self.bytes += item.size;
        let newest = self.fresh.is_none() && self.backlog.back().is_none_or(|b| b.name < item.name);
        if newest || !item.on_disk() {
            item.data = Some(payload);
        }
        if newest {
            self.fresh = Some(item);
        } else {
            self.insert_backlog(item);
        }
        self.enforce(now);
    }

    fn insert_backlog(&mut self, mut item: Item) {
        if item.on_disk() {
            item.data = None;
        }
        let at = self.backlog.partition_point(|b| b.name < item.name);
        self.backlog.insert(at, item);
    }

    fn expired(&self, item: &Item, now: u64) -> bool {
        now.saturating_sub(item.time) > self.max_age.as_secs()
    }

    /// Drops the oldest backlog payloads beyond the bounds (the freshest is
    /// never dropped for size).
    fn enforce(&mut self, now: u64) {
        while let Some(front) = self.backlog.front() {
            let reason = if self.expired(front, now) {
                self.stats.dropped_for_age += 1;
                "older than spool.max_age"
            } else if self.bytes > self.max_bytes {
                self.stats.dropped_for_size += 1;
                "spool.max_bytes reached"
            } else {
                break;
            };
            let item = self.backlog.pop_front().expect("front exists");
            self.bytes -= item.size;
            self.discard(&item, reason);
        }
    }

    fn discard(&mut self, item: &Item, reason: &str) {
        self.ack(item);
        tracing::warn!(
            file = %item.name,
            reason,
            dropped_for_size = self.stats.dropped_for_size,
            dropped_for_age = self.stats.dropped_for_age,
            "spool: payload dropped"
        );
    }

    /// Moves a corrupt file to `spool/corrupt/` and reports it.
    fn set_aside(&mut self, item: &Item) {
        self.stats.corrupt += 1;
        let aside = self.dir.join("corrupt");
        let moved = std::fs::create_dir_all(&aside)
            .and_then(|()| std::fs::rename(self.dir.join(&item.name), aside.join(&item.name)));
        tracing::error!(
            file = %item.name,
            moved_to = %aside.display(),
            moved = moved.is_ok(),
            corrupt = self.stats.corrupt,
            "spool file is corrupt or truncated; set aside"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    fn payload(seq: u64, time: u64) -> Payload {
        Payload::new(format!("{{\"seq\":{seq}}}").into_bytes(), seq, time)
    }

    fn drain(s: &mut Spool, now: u64) -> Vec<u64> {
        let mut out = Vec::new();
        while let Some((item, p)) = s.pop(now) {
            s.ack(&item);
            out.push(p.seq);
        }
        out
    }

    #[test]
    fn names_sort_by_time_and_parse_back() {
        assert!(file_name(99, "ab12", 3) < file_name(100, "ab12", 1));
        assert_eq!(
            parse_name(&file_name(1_795_600_800, "ab12", 42)),
            Some((1_795_600_800, 42))
        );
        assert_eq!(parse_name("x.json"), None);
        assert_eq!(parse_name("1-a-2.json.tmp5"), None);
    }

    #[test]
    fn freshest_first_then_oldest_first_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), u64::MAX, HOUR, 1000);
        for seq in 1..=4 {
            s.push(payload(seq, 1000 + seq), "r", 1000);
        }
        let (item, p) = s.pop(1000).unwrap();
        assert_eq!(p.seq, 4);
        s.ack(&item);
        // a crash now: a new run finds the rest, oldest first
        drop(s);
        let mut again = Spool::open(dir.path(), u64::MAX, HOUR, 1000);
        assert_eq!(again.len(), 3);
        assert_eq!(drain(&mut again, 1000), [1, 2, 3]);
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            0,
            "acked files are gone"
        );
    }

    #[test]
    fn written_at_once_flushed_by_persist_in_flight_included() {
        let dir = tempfile::tempdir().unwrap();
        let files = || std::fs::read_dir(dir.path()).unwrap().count();
        let mut s = Spool::open(dir.path(), u64::MAX, HOUR, 0);
        s.push(payload(1, 1), "r", 1);
        assert_eq!(files(), 1, "on disk before its first attempt");
        assert!(s.has_pending());
        let (item, _) = s.pop(1).unwrap();
        assert!(item.is_pending() && !s.has_pending());
        s.ack(&item);
        assert_eq!(files(), 0);

        s.push(payload(2, 2), "r", 2);
        s.push(payload(3, 3), "r", 3);
        let (mut item, _) = s.pop(3).unwrap();
        s.persist(Some(&mut item));
        assert!(!s.has_pending() && !item.is_pending());
        s.ack(&item);
        assert_eq!(files(), 1);
        assert_eq!(drain(&mut s, 3), [2]);
        assert_eq!(files(), 0);
    }

    #[test]
    fn a_failed_attempt_keeps_its_place_and_its_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), u64::MAX, HOUR, 0);
        s.push(payload(1, 10), "r", 10);
        let (item, p) = s.pop(10).unwrap();
        let md5 = p.md5.clone();
        s.requeue(item, p, 10);
        s.push(payload(2, 20), "r", 20);
        let order: Vec<(u64, String)> = std::iter::from_fn(|| s.pop(20))
            .map(|(_, p)| (p.seq, p.md5))
            .collect();
        assert_eq!(order[0].0, 2);
        assert_eq!(order[1], (1, md5), "same bytes, same hash when retried");
    }

    #[test]
    fn byte_bound_drops_oldest_first_and_counts() {
        let dir = tempfile::tempdir().unwrap();
        let size = payload(1, 0).json.len() as u64;
        let mut s = Spool::open(dir.path(), size * 3, HOUR, 0);
        for seq in 1..=5 {
            s.push(payload(seq, seq), "r", 5);
        }
        assert_eq!(s.stats.dropped_for_size, 2);
        assert_eq!(s.len(), 3);
        assert_eq!(s.oldest_time(), Some(3));
        assert_eq!(drain(&mut s, 5), [5, 3, 4]);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn age_bound() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), u64::MAX, Duration::from_secs(60), 0);
        s.push(payload(1, 0), "r", 0);
        s.push(payload(2, 50), "r", 50);
        s.push(payload(3, 100), "r", 100);
        assert_eq!(s.stats.dropped_for_age, 1);
        assert_eq!(drain(&mut s, 100), [3, 2]);
    }

    #[test]
    fn corrupt_files_are_set_aside_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), u64::MAX, HOUR, 0);
        for seq in 1..=3 {
            s.push(payload(seq, seq), "r", 3);
        }
        drop(s);
        let truncated = dir.path().join(file_name(2, "r", 2));
        std::fs::write(&truncated, b"{\"seq\":").unwrap();
        std::fs::write(dir.path().join(format!("{}.tmp77", file_name(9, "r", 9))), b"{").unwrap();
        let mut s = Spool::open(dir.path(), u64::MAX, HOUR, 3);
        assert_eq!(drain(&mut s, 3), [1, 3]);
        assert_eq!(s.stats.corrupt, 1);
        assert!(dir.path().join("corrupt").join(file_name(2, "r", 2)).exists());
        assert!(
            !dir.path()
                .join(format!("{}.tmp77", file_name(9, "r", 9)))
                .exists()
        );
    }

    #[test]
    fn an_unwritable_directory_keeps_payloads_in_memory() {
        let mut s = Spool::open(Path::new("/proc/hostbeat-spool"), u64::MAX, HOUR, 0);
        s.push(payload(1, 1), "r", 1);
        s.push(payload(2, 2), "r", 2);
        assert_eq!(s.stats.memory_only, 2);
        assert_eq!(drain(&mut s, 2), [2, 1]);
    }
}
