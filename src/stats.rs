//! Reports: cache statistics, maintenance and compaction outcomes, and the
//! findings of `verify`.

use crate::cache::ScopeCache;
use crate::error::Result;
use crate::format::{Counter, COUNTERS_OFFSET};
use crate::index::{BitsRecord, MapRecord};
use crate::model::Model;
use chrono::{DateTime, Utc};

/// Statistics of a cache, as `ScopeCache::stats` returns them: everything
/// the original cache manager's `get_cache_stats` reports, plus the file's
/// own accounting and counters summed over every process that used the file.
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "cli", derive(serde::Serialize))]
pub struct CacheStats {
    /// Number of entries (expired ones not yet removed included).
    pub total_entries: u64,
    /// Bytes of all entries' parts, each mapping counted once however many
    /// entries share it: what the cache holds.
    pub total_size_bytes: u64,
    /// `total_size_bytes` in MiB.
    pub total_size_mb: f64,
    /// `total_size_bytes` in GiB.
    pub total_size_gb: f64,
    /// Sum of all entries' node counts.
    pub total_nodes: u64,
    /// Sum of all entries' link counts.
    pub total_links: u64,
    /// `file_bytes / max_size_bytes`.
    pub cache_utilization: f64,
    /// Creation time of the oldest entry.
    pub oldest_entry: Option<DateTime<Utc>>,
    /// Creation time of the newest entry.
    pub newest_entry: Option<DateTime<Utc>>,
    /// `total_nodes / total_entries` (0 when empty).
    pub average_nodes_per_entry: u64,
    /// `total_links / total_entries` (0 when empty).
    pub average_links_per_entry: u64,
    /// The file's committed length.
    pub file_bytes: u64,
    /// Bytes a compaction would keep (header, live regions, index).
    pub live_bytes: u64,
    /// `file_bytes - live_bytes`: what compaction would reclaim.
    pub dead_bytes: u64,
    /// Distinct stored id mappings.
    pub stored_mappings: u64,
    /// The committed generation.
    pub generation: u64,
    /// Deltas the index holds over its base (FORMAT.md §2.7): what a fresh
    /// open reads besides the base. A commit appends one; now and then a
    /// commit writes a new base instead, and this drops to 0.
    pub index_deltas: u64,
    /// Gets that returned a scope, over all processes.
    pub hits: u64,
    /// Gets that returned nothing.
    pub misses: u64,
    /// Entries evicted to respect the limits.
    pub evictions: u64,
    /// Entries removed because their TTL ran out.
    pub expiries: u64,
    /// Entries dropped because their bytes failed a check.
    pub corrupt_dropped: u64,
    /// Successful puts.
    pub puts: u64,
    /// Successful removes.
    pub removes: u64,
    /// Compactions.
    pub compactions: u64,
}

/// What `ScopeCache::maintain` did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "cli", derive(serde::Serialize))]
pub struct MaintainReport {
    /// Entries removed because their TTL ran out.
    pub expired: u64,
    /// Entries evicted to respect `max_entries` and `max_size_bytes`.
    pub evicted: u64,
    /// Entries dropped because this process found them corrupt.
    pub corrupt_dropped: u64,
    /// The compaction run, if one was worth it.
    pub compaction: Option<CompactReport>,
}

/// What a compaction did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "cli", derive(serde::Serialize))]
pub struct CompactReport {
    /// File length before.
    pub bytes_before: u64,
    /// File length after.
    pub bytes_after: u64,
}

/// One problem `verify` found.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "cli", derive(serde::Serialize))]
pub struct Problem {
    /// The entry concerned, if the problem is in one entry's data.
    pub key: Option<String>,
    /// What is wrong.
    pub what: String,
}

/// What `ScopeCache::verify` found. It changes nothing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "cli", derive(serde::Serialize))]
pub struct VerifyReport {
    /// The generation checked.
    pub generation: u64,
    /// Entries checked.
    pub entries: u64,
    /// Distinct id mappings checked.
    pub mappings: u64,
    /// Bytes read and checked.
    pub bytes_checked: u64,
    /// Everything found wrong; empty when the file is sound.
    pub problems: Vec<Problem>,
}

impl VerifyReport {
    /// True when nothing is wrong.
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }
}

impl ScopeCache {
    /// Statistics of the cache and of its use by all processes.
    pub fn stats(&self) -> Result<CacheStats> {
        let snap = self.snapshot()?;
        let model = Model::of(&snap);
        let n = model.len() as u64;
        let total_nodes: u64 = model.iter().map(|e| e.nodes.bits).sum();
        let total_links: u64 = model.iter().map(|e| e.links.bits).sum();
        let live_maps: Vec<&MapRecord> = (model.maps().iter().enumerate())
            .filter(|&(i, _)| model.is_live_map(i))
            .map(|(_, m)| m)
            .collect();
        let total_size_bytes: u64 = model
            .iter()
            .map(|e| {
                BitsRecord::byte_len(e.nodes.bits)
                    + BitsRecord::byte_len(e.links.bits)
                    + e.attributes.len() as u64
            })
            .sum::<u64>()
            + live_maps.iter().map(|m| m.len).sum::<u64>();
        let live_bytes = model.footprint().min(snap.sb.committed_len);
        let file_bytes = snap.sb.committed_len;
        let c = |c: Counter| snap.map.load(COUNTERS_OFFSET + 8 * c as u64);
        let created: Vec<DateTime<Utc>> = model
            .iter()
            .map(|e| crate::clock::from_micros(e.created_us))
            .collect();
        Ok(CacheStats {
            total_entries: n,
            total_size_bytes,
            total_size_mb: total_size_bytes as f64 / (1 << 20) as f64,
            total_size_gb: total_size_bytes as f64 / (1 << 30) as f64,
            total_nodes,
            total_links,
            cache_utilization: file_bytes as f64 / self.config.max_size_bytes as f64,
            oldest_entry: created.iter().min().copied(),
            newest_entry: created.iter().max().copied(),
            average_nodes_per_entry: total_nodes.checked_div(n).unwrap_or(0),
            average_links_per_entry: total_links.checked_div(n).unwrap_or(0),
            file_bytes,
            live_bytes,
            dead_bytes: file_bytes - live_bytes,
            stored_mappings: live_maps.len() as u64,
            generation: snap.generation(),
            index_deltas: u64::from(snap.chain().depth()),
            hits: c(Counter::Hits),
            misses: c(Counter::Misses),
            evictions: c(Counter::Evictions),
            expiries: c(Counter::Expiries),
            corrupt_dropped: c(Counter::CorruptDropped),
            puts: c(Counter::Puts),
            removes: c(Counter::Removes),
            compactions: c(Counter::Compactions),
        })
    }
}
