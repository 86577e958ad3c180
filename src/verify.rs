//! `verify`: a read-only pass over every byte of the newest generation.

use crate::bitset;
use crate::cache::ScopeCache;
use crate::error::Result;
use crate::format::{SlotError, Superblock};
use crate::index::BitsRecord;
use crate::stats::{Problem, VerifyReport};
use serde_json::{Map, Value};

impl ScopeCache {
    /// Checks every byte the newest generation holds: superblocks, index,
    /// every bitset's CRC, every mapping's blocks and structure. Changes
    /// nothing, and reports every problem rather than stopping at the first.
    ///
    /// Cost: one pass over the live data.
    pub fn verify(&self) -> Result<VerifyReport> {
        let snap = self.snapshot()?;
        let fh = &snap.file;
        let mut report = VerifyReport {
            generation: snap.generation(),
            ..VerifyReport::default()
        };
        let slots = snap.map.read_superblocks();
        let current = (snap.generation() % 2) as usize;
        for (i, s) in slots.iter().enumerate() {
            match Superblock::decode(s) {
                Ok(_) => {}
                // A commit interrupted by a crash or a failed write leaves a
                // torn superblock in the spare slot; it belongs to no
                // committed generation and the next commit overwrites it.
                Err(SlotError::BadCrc { .. }) if i != current => {
                    log::debug!(
                        "{}: spare superblock slot {i} is torn (an interrupted commit)",
                        self.path.display()
                    );
                }
                Err(e) => {
                    report.problems.push(Problem {
                        key: None,
                        what: format!("superblock slot {i}: {e:?}"),
                    });
                }
            }
        }
        let maps: Vec<_> = snap.chain().maps().collect();
        let mut map_ok = vec![None; maps.len()];
        for (_, e) in snap.entries() {
            report.entries += 1;
            let key = Some(e.key.as_str().to_owned());
            for b in [&e.nodes, &e.links] {
                let rec = b.to_record();
                let bytes = snap.map.region(rec.offset, BitsRecord::byte_len(rec.bits));
                report.bytes_checked += bytes.map_or(0, |b| b.len() as u64);
                if let Err(e) = bitset::check(&self.path, bytes, &rec) {
                    report.problems.push(Problem {
                        key: key.clone(),
                        what: e.to_string(),
                    });
                }
            }
            for m in [e.node_map.to_native(), e.link_map.to_native()] {
                let i = m as usize;
                if map_ok[i].is_none() {
                    let rec = maps[i];
                    let res = fh
                        .idmap(&snap.map, rec.offset.to_native(), rec.len.to_native())
                        .and_then(|m| m.verify());
                    report.mappings += 1;
                    report.bytes_checked += rec.len.to_native();
                    map_ok[i] = Some(res.map_err(|e| e.to_string()));
                }
                if let Some(Err(what)) = &map_ok[i] {
                    report.problems.push(Problem {
                        key: key.clone(),
                        what: format!("id mapping {m}: {what}"),
                    });
                }
            }
            if serde_json::from_str::<Map<String, Value>>(e.attributes.as_str()).is_err() {
                report.problems.push(Problem {
                    key,
                    what: "attributes are not a JSON object".into(),
                });
            }
        }
        Ok(report)
    }
}
