use std::collections::HashMap;
use std::sync::Arc;

use proptest::prelude::*;
use xxhash_rust::xxh3::{xxh3_128, xxh3_64};

use super::build::place::BUCKET_SLOTS;
use super::layout::{home_slot, slot_count, Header, HEADER_LEN, WIDE_SLOTS_MIN_COUNT};
use super::lookup::{slot_value, stored_index};
use super::{BuildOptions, IdMap};
use crate::source::{AlignedBuf, RegionSource};
use crate::Error;

const ALL_WIDTHS: [BuildOptions; 4] = [
    BuildOptions {
        force_wide_slots: false,
        force_wide_offsets: false,
    },
    BuildOptions {
        force_wide_slots: true,
        force_wide_offsets: false,
    },
    BuildOptions {
        force_wide_slots: false,
        force_wide_offsets: true,
    },
    BuildOptions {
        force_wide_slots: true,
        force_wide_offsets: true,
    },
];

fn source_of(bytes: &[u8], at: usize) -> Arc<dyn RegionSource> {
    let mut buf = AlignedBuf::zeroed(at + bytes.len());
    buf.as_bytes_mut()[at..].copy_from_slice(bytes);
    Arc::new(buf)
}

/// The region of `map` read back through `open`, as the cache file would.
fn reopen(map: &IdMap) -> IdMap {
    let bytes = map.region_bytes();
    IdMap::open(source_of(bytes, 0), 0, bytes.len()).unwrap()
}

fn sample_ids(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| match i % 5 {
            0 => format!("node-{i:08}"),
            1 => format!("ünïcödé-{i}-✓"),
            2 => "x".repeat(i % 37) + &i.to_string(),
            3 => format!("{i}"),
            _ => format!("link-{i:08}-{:08}", i * 7919 % 1000),
        })
        .collect()
}

fn check_round_trip(map: &IdMap, ids: &[String]) {
    assert_eq!(map.len(), ids.len());
    assert_eq!(map.is_empty(), ids.is_empty());
    for (i, id) in ids.iter().enumerate() {
        assert_eq!(map.index_of(id), Some(i as u32), "index_of({id:?})");
        assert_eq!(map.try_index_of(id).unwrap(), Some(i as u32));
        assert_eq!(map.id(i as u32), Some(id.as_str()));
        assert_eq!(map.try_id(i as u32).unwrap(), Some(id.as_str()));
    }
    assert_eq!(map.id(ids.len() as u32), None);
    assert_eq!(map.try_id(u32::MAX).unwrap(), None);
    for absent in ["absent", "node-", "\u{0}", "ünïcödé-"] {
        if !ids.iter().any(|id| id == absent) {
            assert_eq!(map.index_of(absent), None);
        }
    }
    let listed: Vec<&str> = map.iter().collect::<crate::Result<_>>().unwrap();
    assert_eq!(listed, ids.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(map.iter().len(), ids.len());
    let mut queries: Vec<&str> = ids.iter().map(String::as_str).collect();
    queries.push("absent-from-every-map");
    let mut out = vec![Some(7); queries.len()];
    map.index_of_batch(&queries, &mut out).unwrap();
    for (k, got) in out.iter().enumerate() {
        let want = (k < ids.len()).then_some(k as u32);
        assert_eq!(*got, want, "batch answer {k}");
    }
    map.verify().unwrap();
    assert!(!map.is_corrupt());
    assert_eq!(map.region_len() as usize, map.region_bytes().len());
    assert_eq!(map.region_len() % 64, 0);
}

#[test]
fn round_trips() {
    for n in [0usize, 1, 2, 3, 17, 1000] {
        let ids = sample_ids(n);
        for options in ALL_WIDTHS {
            let map = IdMap::from_ids_with(&ids, options).unwrap();
            check_round_trip(&map, &ids);
            let opened = reopen(&map);
            check_round_trip(&opened, &ids);
            assert_eq!(opened.digest(), map.digest());
            assert_eq!(opened.region_bytes(), map.region_bytes());
        }
    }
}

/// Large enough that some probe runs outrun the lookup window.
#[test]
fn long_probe_runs() {
    let ids = sample_ids(20_000);
    let map = IdMap::from_ids(&ids).unwrap();
    check_round_trip(&map, &ids);
    check_round_trip(&reopen(&map), &ids);
}

#[test]
fn empty_string_and_unicode() {
    let ids = ["", "é", "日本語", "\u{10FFFF}", " ", "a\u{0}b"];
    let map = IdMap::from_ids(ids).unwrap();
    for (i, id) in ids.iter().enumerate() {
        assert_eq!(map.index_of(id), Some(i as u32));
        assert_eq!(map.id(i as u32), Some(*id));
    }
    let only_empty = IdMap::from_ids([""]).unwrap();
    assert_eq!(only_empty.index_of(""), Some(0));
    assert_eq!(only_empty.id(0), Some(""));
    reopen(&only_empty).verify().unwrap();
}

#[test]
fn empty_map() {
    let map = IdMap::from_ids(Vec::<&str>::new()).unwrap();
    assert!(map.is_empty());
    assert_eq!(map.index_of(""), None);
    assert_eq!(map.id(0), None);
    assert_eq!(map.region_len(), 192);
    let mut out: [Option<u32>; 0] = [];
    map.index_of_batch::<&str>(&[], &mut out).unwrap();
    map.verify().unwrap();
    reopen(&map).verify().unwrap();
}

#[test]
fn digest_depends_on_content_and_order() {
    let a = IdMap::from_ids(["a", "b", "c"]).unwrap();
    let b = IdMap::from_ids(["a", "b", "c"]).unwrap();
    let c = IdMap::from_ids(["a", "c", "b"]).unwrap();
    let d = IdMap::from_ids(["ab", "", "c"]).unwrap();
    assert_eq!(a.digest(), b.digest());
    assert_ne!(a.digest(), c.digest());
    assert_ne!(a.digest(), d.digest());
}

#[test]
fn duplicates_are_refused() {
    for options in ALL_WIDTHS {
        match IdMap::from_ids_with(["a", "b", "c", "b", "a"], options) {
            Err(Error::DuplicateId { id, first, second }) => {
                assert_eq!((id.as_str(), first, second), ("b", 1, 3));
            }
            other => panic!("expected DuplicateId, got {other:?}"),
        }
        match IdMap::from_ids_with(["", "x", ""], options) {
            Err(Error::DuplicateId { id, first, second }) => {
                assert_eq!((id.as_str(), first, second), ("", 0, 2));
            }
            other => panic!("expected DuplicateId, got {other:?}"),
        }
    }
    let mut many = sample_ids(3000);
    many.push(many[1234].clone());
    match IdMap::from_ids(&many) {
        Err(Error::DuplicateId { first, second, .. }) => assert_eq!((first, second), (1234, 3000)),
        other => panic!("expected DuplicateId, got {other:?}"),
    }
}

#[test]
fn batch_length_mismatch() {
    let map = IdMap::from_ids(["a"]).unwrap();
    let mut out = [None; 2];
    assert!(matches!(
        map.index_of_batch(&["a"], &mut out),
        Err(Error::BatchLength { ids: 1, .. })
    ));
}

#[test]
fn open_checks_its_range() {
    let map = IdMap::from_ids(sample_ids(50)).unwrap();
    let bytes = map.region_bytes();
    let len = bytes.len();
    // Shorter and longer lengths than the header gives.
    for cut in [0, 1, 63, 64, 65, 128, len - 64, len - 1] {
        let src = source_of(&bytes[..cut], 0);
        assert!(IdMap::open(src, 0, cut).is_err(), "length {cut}");
    }
    let src = source_of(bytes, 0);
    assert!(IdMap::open(src.clone(), 0, len + 1).is_err());
    assert!(IdMap::open(src.clone(), 64, len).is_err());
    assert!(IdMap::open(src.clone(), usize::MAX, 2).is_err());
    assert!(IdMap::open(src, 0, len).is_ok());
    // At a 64-byte aligned offset inside a larger source.
    let src = source_of(bytes, 128);
    let at = IdMap::open(src.clone(), 128, len).unwrap();
    at.verify().unwrap();
    assert!(matches!(IdMap::open(src, 127, len), Err(Error::Corrupt { .. })));
}

/// Whatever one flipped byte does, the map never panics and never gives a
/// wrong answer: opening fails, or lookups give the right answer or none.
/// And since every byte is covered by a CRC or a zero check, verify fails.
#[test]
fn every_single_byte_flip_is_harmless() {
    let ids = sample_ids(50);
    for options in ALL_WIDTHS {
        let map = IdMap::from_ids_with(&ids, options).unwrap();
        let good = map.region_bytes().to_vec();
        for at in 0..good.len() {
            for mask in [0x01u8, 0x80, 0xFF] {
                let mut bad = good.clone();
                bad[at] ^= mask;
                let Ok(opened) = IdMap::open(source_of(&bad, 0), 0, bad.len()) else {
                    continue;
                };
                for (i, id) in ids.iter().enumerate() {
                    let found = opened.index_of(id);
                    assert!(found.is_none() || found == Some(i as u32), "byte {at}");
                    let back = opened.id(i as u32);
                    assert!(back.is_none() || back == Some(id.as_str()), "byte {at}");
                }
                assert_eq!(opened.index_of("absent"), None);
                let mut out = vec![None; ids.len()];
                if opened.index_of_batch(&ids, &mut out).is_ok() {
                    for (i, got) in out.iter().enumerate() {
                        assert_eq!(*got, Some(i as u32), "byte {at}");
                    }
                }
                assert!(opened.verify().is_err(), "flip at byte {at} went unnoticed");
                assert!(opened.is_corrupt());
            }
        }
    }
}

#[test]
fn damaged_block_is_caught_on_first_touch() {
    let ids = sample_ids(200);
    let map = IdMap::from_ids(&ids).unwrap();
    let mut bad = map.region_bytes().to_vec();
    // The last byte of the strings section belongs to the last id.
    let last = ids.len() - 1;
    let strings_end = bad.len() - (64 - ids.iter().map(String::len).sum::<usize>() % 64) % 64;
    bad[strings_end - 1] ^= 0x20;
    let opened = IdMap::open(source_of(&bad, 0), 0, bad.len()).unwrap();
    assert!(!opened.is_corrupt());
    assert_eq!(opened.index_of(&ids[last]), None);
    assert!(opened.is_corrupt());
    // Everything else is refused from now on.
    assert_eq!(opened.index_of(&ids[0]), None);
    assert_eq!(opened.id(0), None);
    assert!(matches!(opened.try_index_of(&ids[0]), Err(Error::Corrupt { .. })));
    assert!(matches!(opened.try_id(0), Err(Error::Corrupt { .. })));
    let items: Vec<_> = opened.iter().collect();
    assert_eq!(items.len(), ids.len());
    assert!(items.iter().all(Result::is_err));
    assert!(opened.verify().is_err());
}

#[test]
fn hostile_headers_are_refused() {
    let map = IdMap::from_ids(sample_ids(10)).unwrap();
    let good = map.region_bytes().to_vec();
    let reseal = |bytes: &mut Vec<u8>| {
        let crc = crc32fast::hash(&bytes[0..60]);
        bytes[60..64].copy_from_slice(&crc.to_le_bytes());
    };
    let patch = |at: usize, value: &[u8]| {
        let mut bad = good.clone();
        bad[at..at + value.len()].copy_from_slice(value);
        reseal(&mut bad);
        IdMap::open(source_of(&bad, 0), 0, bad.len())
    };
    assert!(patch(8, &u64::MAX.to_le_bytes()).is_err());
    assert!(patch(8, &(u64::from(u32::MAX)).to_le_bytes()).is_err());
    assert!(patch(16, &0u64.to_le_bytes()).is_err());
    assert!(patch(16, &u64::MAX.to_le_bytes()).is_err());
    assert!(patch(24, &u64::MAX.to_le_bytes()).is_err());
    assert!(patch(24, &(u64::MAX - 63).to_le_bytes()).is_err());
    assert!(patch(48, &4u32.to_le_bytes()).is_err());
    assert!(patch(52, &1000u32.to_le_bytes()).is_err());
    assert!(patch(52, &2048u32.to_le_bytes()).is_err());
    assert!(patch(52, &0u32.to_le_bytes()).is_err());
    // Any power-of-two block size is readable; this body is one block either way.
    let big_blocks = patch(52, &(1u32 << 31).to_le_bytes()).unwrap();
    big_blocks.verify().unwrap();
    assert_eq!(big_blocks.index_of("node-00000000"), Some(0));
}

/// Rewrites the CRCs of a region whose body, from `body_start`, is one
/// block: the block's table entry, the table's CRC and the header's CRC.
fn reseal_one_block(bad: &mut [u8], body_start: usize) {
    let crc = crc32fast::hash(&bad[body_start..]);
    bad[HEADER_LEN..HEADER_LEN + 4].copy_from_slice(&crc.to_le_bytes());
    let table_crc = crc32fast::hash(&bad[HEADER_LEN..HEADER_LEN + 4]);
    bad[56..60].copy_from_slice(&table_crc.to_le_bytes());
    let header_crc = crc32fast::hash(&bad[0..60]);
    bad[60..64].copy_from_slice(&header_crc.to_le_bytes());
}

/// A region that passes every CRC but holds nonsense: a slot table with no
/// empty slot and out-of-range offsets. Lookups must end and must not panic.
#[test]
fn consistent_checksums_over_nonsense() {
    let ids = sample_ids(40);
    for options in ALL_WIDTHS {
        let map = IdMap::from_ids_with(&ids, options).unwrap();
        let good = map.region_bytes().to_vec();
        let table_len = 64;
        let body_start = HEADER_LEN + table_len;
        for fill in [0xFFu8, 0x01, 0x00, 0x7F] {
            let mut bad = good.clone();
            for b in &mut bad[body_start..] {
                *b = fill;
            }
            reseal_one_block(&mut bad, body_start);
            let opened = IdMap::open(source_of(&bad, 0), 0, bad.len()).unwrap();
            for id in &ids {
                let _ = opened.index_of(id);
            }
            for i in 0..ids.len() as u32 + 2 {
                let _ = opened.id(i);
            }
            let _ = opened.iter().count();
            let mut out = vec![None; ids.len()];
            let _ = opened.index_of_batch(&ids, &mut out);
            assert!(opened.verify().is_err());
        }
    }
}

#[test]
fn clones_share_state() {
    let map = IdMap::from_ids(["a", "b"]).unwrap();
    let other = map.clone();
    assert_eq!(other.index_of("b"), Some(1));
    assert!(format!("{map:?}").contains("len: 2"));
}

/// The first id that repeats an earlier one, as (earlier, later).
fn first_duplicate(ids: &[String]) -> Option<(usize, usize)> {
    let mut seen = HashMap::new();
    for (i, id) in ids.iter().enumerate() {
        if let Some(&j) = seen.get(id) {
            return Some((j, i));
        }
        seen.insert(id, i);
    }
    None
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn agrees_with_a_hash_map(
        ids in proptest::collection::vec("\\PC{0,6}", 0..120),
        probes in proptest::collection::vec("\\PC{0,6}", 0..20),
        wide_slots: bool,
        wide_offsets: bool,
    ) {
        let options = BuildOptions { force_wide_slots: wide_slots, force_wide_offsets: wide_offsets };
        let built = IdMap::from_ids_with(&ids, options);
        match first_duplicate(&ids) {
            Some((first, second)) => match built {
                Err(Error::DuplicateId { id, first: f, second: s }) => {
                    prop_assert_eq!(&id, &ids[second]);
                    prop_assert_eq!((f, s), (first as u64, second as u64));
                }
                other => prop_assert!(false, "expected DuplicateId, got {:?}", other),
            },
            None => {
                let map = built.unwrap();
                let model: HashMap<&str, u32> =
                    ids.iter().enumerate().map(|(i, s)| (s.as_str(), i as u32)).collect();
                for m in [reopen(&map), map] {
                    prop_assert_eq!(m.len(), ids.len());
                    for (i, id) in ids.iter().enumerate() {
                        prop_assert_eq!(m.index_of(id), Some(i as u32));
                        prop_assert_eq!(m.id(i as u32), Some(id.as_str()));
                    }
                    for p in &probes {
                        prop_assert_eq!(m.index_of(p), model.get(p.as_str()).copied());
                    }
                    let mut out = vec![None; probes.len()];
                    m.index_of_batch(&probes, &mut out).unwrap();
                    for (p, got) in probes.iter().zip(&out) {
                        prop_assert_eq!(*got, model.get(p.as_str()).copied());
                    }
                    prop_assert!(m.verify().is_ok());
                }
            }
        }
    }
}

/// A mapped map checks its blocks as reads first touch them, and once all
/// have passed it is READY: reads skip the block bookkeeping. `verify` gets
/// there in one step.
#[test]
fn lazy_checks_end_in_the_ready_state() {
    use super::{CHECKING, READY};
    use std::sync::atomic::Ordering;
    // About 200 KiB of body: several 64 KiB blocks.
    let ids = sample_ids(8000);
    let map = IdMap::from_ids(&ids).unwrap();
    assert_eq!(
        map.inner.mode.load(Ordering::Relaxed),
        READY,
        "built maps need no checks"
    );
    let opened = reopen(&map);
    assert!(opened.inner.layout.block_count > 2);
    assert_eq!(opened.inner.mode.load(Ordering::Relaxed), CHECKING);
    assert_eq!(opened.index_of(&ids[0]), Some(0));
    assert_eq!(
        opened.inner.mode.load(Ordering::Relaxed),
        CHECKING,
        "one lookup touches few blocks"
    );
    for (i, id) in ids.iter().enumerate() {
        assert_eq!(opened.index_of(id), Some(i as u32));
    }
    assert_eq!(opened.inner.mode.load(Ordering::Relaxed), READY);
    check_round_trip(&opened, &ids);

    let fresh = reopen(&map);
    fresh.verify().unwrap();
    assert_eq!(fresh.inner.mode.load(Ordering::Relaxed), READY);
    check_round_trip(&fresh, &ids);
}

/// Reads of a READY map skip the CRC bookkeeping but not the checks on
/// the values read: offsets that a damaged (or crafted) file holds behind
/// valid CRCs still make the map corrupt, for good, instead of a wrong
/// answer or a panic.
#[test]
fn ready_maps_still_check_what_they_read() {
    use super::{CORRUPT, READY};
    use std::sync::atomic::Ordering;
    let ids = sample_ids(40);
    for options in ALL_WIDTHS {
        let map = IdMap::from_ids_with(&ids, options).unwrap();
        let mut bad = map.region_bytes().to_vec();
        let body_start = HEADER_LEN + 64;
        // The last id's end offset, far past the strings.
        let w = map.inner.layout.offset_width();
        let at = body_start + ids.len() * w;
        bad[at..at + w].fill(0xEE);
        reseal_one_block(&mut bad, body_start);
        let opened = IdMap::open(source_of(&bad, 0), 0, bad.len()).unwrap();
        assert_eq!(opened.inner.layout.block_count, 1);
        assert_eq!(opened.index_of(&ids[0]), Some(0));
        assert_eq!(opened.inner.mode.load(Ordering::Relaxed), READY, "{options:?}");
        let last = ids.len() - 1;
        assert!(
            matches!(opened.try_id(last as u32), Err(Error::Corrupt { .. })),
            "{options:?}"
        );
        assert_eq!(opened.inner.mode.load(Ordering::Relaxed), CORRUPT);
        assert!(opened.is_corrupt());
        assert_eq!(opened.index_of(&ids[0]), None, "corrupt is final");
        assert!(matches!(opened.try_index_of(&ids[0]), Err(Error::Corrupt { .. })));
        assert!(opened.verify().is_err());
    }
}

/// The batch answers a ready map's keys from its first fingerprint match;
/// a match that names another id (1 in 256 probes with narrow slots) must
/// fall back to the full lookup. Thousands of absent keys make hundreds
/// of such matches, and absent keys interleaved with present ones check
/// that no answer leaks between keys of a group.
#[test]
fn batch_falls_back_on_fingerprint_collisions() {
    let ids = sample_ids(5000);
    for options in ALL_WIDTHS {
        let map = IdMap::from_ids_with(&ids, options).unwrap();
        let mut queries = Vec::new();
        let mut want = Vec::new();
        for (i, id) in ids.iter().enumerate() {
            for k in 0..4 {
                queries.push(format!("{id}#absent{k}"));
                want.push(None);
            }
            queries.push(id.clone());
            want.push(Some(i as u32));
        }
        for m in [map.clone(), reopen(&map)] {
            // The first pass checks a reopened map's blocks, the second
            // runs on the ready map.
            for _ in 0..2 {
                let mut out = vec![Some(u32::MAX); queries.len()];
                m.index_of_batch(&queries, &mut out).unwrap();
                assert_eq!(out, want, "{options:?}");
            }
        }
    }
}

// ---------------------------------------------------------------- placement

/// The slot values FORMAT.md §2.5 says a writer stores, computed plainly:
/// (home, index) pairs sorted, each id at max(home, next), the ids that run
/// past the last slot into the lowest empty slots, in order.
fn model_slots(ids: &[String], wide: bool) -> Vec<u64> {
    let s = slot_count(ids.len() as u64) as usize;
    let mut order: Vec<(usize, usize, u64)> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            let h = xxh3_64(id.as_bytes());
            let v = if wide {
                slot_value::<true>(h, i)
            } else {
                slot_value::<false>(h, i)
            };
            (home_slot(h, s), i, v)
        })
        .collect();
    order.sort_unstable();
    let mut slots = vec![0u64; s];
    let mut next = 0;
    let mut wrapped = Vec::new();
    for (home, _, v) in order {
        let p = home.max(next);
        next = p + 1;
        if p < s {
            slots[p] = v;
        } else {
            wrapped.push(v);
        }
    }
    let mut free = 0;
    for v in wrapped {
        while slots[free] != 0 {
            free += 1;
        }
        slots[free] = v;
    }
    slots
}

/// The slot values of a map's region, and whether they are wide.
fn stored_slots(map: &IdMap) -> (Vec<u64>, bool) {
    let region = map.region_bytes();
    let header = Header::decode(region[..HEADER_LEN].try_into().unwrap()).unwrap();
    let l = header.layout;
    let body = &region[l.body_start..];
    let slots = (0..l.slot_count)
        .map(|p| {
            let at = l.slots_start + p * l.slot_width();
            if l.wide_slots {
                u64::from_le_bytes(body[at..at + 8].try_into().unwrap())
            } else {
                u64::from(u32::from_le_bytes(body[at..at + 4].try_into().unwrap()))
            }
        })
        .collect();
    (slots, l.wide_slots)
}

/// Builds `ids` and checks the slot section against the model, `verify`,
/// and a lookup of every id, in the built map and read back.
fn check_placement(ids: &[String], options: BuildOptions) -> IdMap {
    let map = IdMap::from_ids_with(ids, options).unwrap();
    let (slots, wide) = stored_slots(&map);
    assert_eq!(
        wide,
        options.force_wide_slots || ids.len() as u64 >= WIDE_SLOTS_MIN_COUNT
    );
    let model = model_slots(ids, wide);
    if let Some(p) = slots.iter().zip(&model).position(|(a, b)| a != b) {
        panic!(
            "{} ids, {options:?}: slot {p} holds {:#x}, the placement gives {:#x}",
            ids.len(),
            slots[p],
            model[p]
        );
    }
    for m in [reopen(&map), map.clone()] {
        m.verify().unwrap();
        for (i, id) in ids.iter().enumerate() {
            assert_eq!(m.index_of(id), Some(i as u32), "{id:?}");
        }
        let mut out = vec![None; ids.len()];
        m.index_of_batch(ids, &mut out).unwrap();
        assert!(out.iter().enumerate().all(|(i, &o)| o == Some(i as u32)));
    }
    map
}

/// How many ids sit at a slot below their home: those that wrapped.
fn wrapped_count(map: &IdMap, ids: &[String]) -> usize {
    let (slots, wide) = stored_slots(map);
    let s = slots.len();
    slots
        .iter()
        .enumerate()
        .filter(|&(_, &v)| v != 0)
        .filter(|&(p, &v)| {
            let i = if wide {
                stored_index::<true>(v)
            } else {
                stored_index::<false>(v)
            } as usize
                - 1;
            p < home_slot(xxh3_64(ids[i].as_bytes()), s)
        })
        .count()
}

/// `count` distinct ids `{prefix}{k}` whose home slot in a map of `n` ids
/// lies in `homes`.
fn ids_homed_in(n: usize, homes: std::ops::Range<usize>, count: usize, prefix: &str) -> Vec<String> {
    let s = slot_count(n as u64) as usize;
    (0u64..)
        .map(|k| format!("{prefix}{k}"))
        .filter(|id| homes.contains(&home_slot(xxh3_64(id.as_bytes()), s)))
        .take(count)
        .collect()
}

/// Interleaves groups deterministically, so that no group's ids are
/// contiguous in index order.
fn interleave(groups: Vec<Vec<String>>) -> Vec<String> {
    let mut iters: Vec<_> = groups.into_iter().map(Vec::into_iter).collect();
    let mut out = Vec::new();
    let mut k = 0usize;
    while !iters.is_empty() {
        let at = (k * 7919) % iters.len();
        match iters[at].next() {
            Some(id) => out.push(id),
            None => {
                iters.remove(at);
            }
        }
        k += 1;
    }
    out
}

#[test]
fn placement_is_the_sorted_one() {
    // 70,000 and 150,000 ids: several buckets, and more than one thread.
    for n in [0usize, 1, 2, 3, 17, 1000, 70_000, 150_000] {
        let ids = sample_ids(n);
        for options in ALL_WIDTHS {
            check_placement(&ids, options);
        }
    }
}

/// 200 ids, 251 slots: long runs of equal homes, one of them at the last
/// slot, so that a run wraps to slot 0, where another run starts.
fn colliding_ids() -> Vec<String> {
    let n = 200;
    let s = slot_count(n as u64) as usize;
    interleave(vec![
        ids_homed_in(n, s - 1..s, 60, "end-"),
        ids_homed_in(n, s - 2..s - 1, 30, "next-to-end-"),
        ids_homed_in(n, 0..1, 20, "zero-"),
        ids_homed_in(n, 5..6, 10, "five-"),
        ids_homed_in(n, 6..s - 2, 80, "any-"),
    ])
}

#[test]
fn colliding_homes_and_wrap_around() {
    let ids = colliding_ids();
    assert_eq!(ids.len(), 200);
    for options in ALL_WIDTHS {
        let map = check_placement(&ids, options);
        assert!(wrapped_count(&map, &ids) >= 60, "the runs at the end wrap");
    }
}

/// A table one bucket and 1,000 slots long, with a run that starts 2,000
/// slots before the end of the first bucket and passes the last slot: the
/// wrapped ids come from both buckets.
#[test]
fn wrap_around_from_two_buckets() {
    let s_want = BUCKET_SLOTS + 1_000;
    let n = (s_want - 1) * 4 / 5;
    let s = slot_count(n as u64) as usize;
    assert!(s > BUCKET_SLOTS && s < BUCKET_SLOTS + 1_100);
    let ids = interleave(vec![
        ids_homed_in(n, BUCKET_SLOTS - 2_000..BUCKET_SLOTS - 1_900, 3_500, "early-"),
        ids_homed_in(n, s - 100..s, 300, "late-"),
        ids_homed_in(n, 0..s, n - 3_800, "any-"),
    ]);
    assert_eq!(ids.len(), n);
    let map = check_placement(&ids, BuildOptions::default());
    let (slots, _) = stored_slots(&map);
    let wrapped: Vec<usize> = (0..s)
        .filter(|&p| slots[p] != 0)
        .map(|p| (p, stored_index::<false>(slots[p]) as usize - 1))
        .filter(|&(p, i)| p < home_slot(xxh3_64(ids[i].as_bytes()), s))
        .map(|(_, i)| i)
        .collect();
    let from_first = wrapped.iter().filter(|&&i| ids[i].starts_with("early-")).count();
    assert!(
        from_first > 0 && from_first < wrapped.len(),
        "{from_first} of {}",
        wrapped.len()
    );
}

#[test]
fn tiny_maps_are_placed() {
    for ids in [vec![], vec!["a"], vec!["a", "b"], vec!["", "x"], vec!["b", "a"]] {
        let ids: Vec<String> = ids.into_iter().map(String::from).collect();
        for options in ALL_WIDTHS {
            check_placement(&ids, options);
        }
    }
}

fn expect_duplicate(ids: &[String], options: BuildOptions) {
    let (first, second) = first_duplicate(ids).expect("a duplicate");
    match IdMap::from_ids_with(ids, options) {
        Err(Error::DuplicateId {
            id,
            first: f,
            second: s,
        }) => {
            assert_eq!(id, ids[second]);
            assert_eq!((f, s), (first as u64, second as u64), "{options:?}");
        }
        other => panic!("expected DuplicateId ({first}, {second}), got {other:?}"),
    }
}

/// Duplicates at the ends, across the halves that the threads hash, far
/// apart, and several at once, where the one whose second occurrence comes
/// first must be named, with its first occurrence.
#[test]
fn duplicates_anywhere() {
    let n = 100_000;
    let base = sample_ids(n);
    let cases: &[&[(usize, usize)]] = &[
        &[(0, 1)],
        &[(0, n - 1)],
        &[(n - 2, n - 1)],
        &[(n / 2 - 1, n / 2)],
        &[(17, 99_000)],
        &[(5_000, 6_000), (10, 7_000), (3, 5_999)],
        // The same id three times: (first, second), not (second, third).
        &[(100, 200), (100, 300)],
        &[(100, 300), (200, 250)],
    ];
    for pairs in cases {
        let mut ids = base.clone();
        for &(a, b) in pairs.iter() {
            ids[b] = ids[a].clone();
        }
        expect_duplicate(&ids, BuildOptions::default());
        let small = ids[..3_000].to_vec();
        if first_duplicate(&small).is_some() {
            expect_duplicate(&small, ALL_WIDTHS[1]);
        }
    }
}

/// Duplicates inside long runs of equal home slots, which are searched by
/// sorting rather than pair by pair, and in short runs next to them.
#[test]
fn duplicates_in_long_runs() {
    let ids = colliding_ids();
    let run: Vec<usize> = (0..ids.len()).filter(|&i| ids[i].starts_with("end-")).collect();
    let zero: Vec<usize> = (0..ids.len()).filter(|&i| ids[i].starts_with("zero-")).collect();
    let any: Vec<usize> = (0..ids.len()).filter(|&i| ids[i].starts_with("any-")).collect();
    let cases: Vec<Vec<(usize, usize)>> = vec![
        vec![(run[0], run[1])],
        vec![(run[3], run[59])],
        vec![(run[10], run[40]), (run[5], run[30])],
        vec![(run[0], run[50]), (zero[2], zero[15])],
        vec![(any[3], any[70]), (run[20], run[21])],
        vec![(run[0], run[10]), (run[0], run[20])],
    ];
    for pairs in cases {
        let mut dup = ids.clone();
        for (a, b) in pairs {
            dup[b] = dup[a].clone();
        }
        for options in ALL_WIDTHS {
            expect_duplicate(&dup, options);
        }
    }
}

/// Readers accept the slot placement of older writers, in-order insertion:
/// a region holding it opens, verifies and answers every lookup. Its digest
/// differs from the same ids built now.
#[test]
fn the_in_order_placement_still_reads() {
    for ids in [colliding_ids(), sample_ids(5_000)] {
        for options in ALL_WIDTHS {
            let map = IdMap::from_ids_with(&ids, options).unwrap();
            let mut region = map.region_bytes().to_vec();
            let header = Header::decode(region[..HEADER_LEN].try_into().unwrap()).unwrap();
            let l = header.layout;
            let s = l.slot_count;
            let mut slots = vec![0u64; s];
            for (i, id) in ids.iter().enumerate() {
                let h = xxh3_64(id.as_bytes());
                let mut p = home_slot(h, s);
                while slots[p] != 0 {
                    p = (p + 1) % s;
                }
                slots[p] = if l.wide_slots {
                    slot_value::<true>(h, i)
                } else {
                    slot_value::<false>(h, i)
                };
            }
            let (head, body) = region.split_at_mut(l.body_start);
            for (p, &v) in slots.iter().enumerate() {
                let at = l.slots_start + p * l.slot_width();
                if l.wide_slots {
                    body[at..at + 8].copy_from_slice(&v.to_le_bytes());
                } else {
                    body[at..at + 4].copy_from_slice(&(v as u32).to_le_bytes());
                }
            }
            // Seal again: block CRCs, table CRC, digest, header CRC.
            for (k, block) in body.chunks(l.block_size).enumerate() {
                let at = HEADER_LEN + 4 * k;
                head[at..at + 4].copy_from_slice(&crc32fast::hash(block).to_le_bytes());
            }
            let resealed = Header {
                layout: l,
                digest: xxh3_128(body),
                table_crc: crc32fast::hash(&head[HEADER_LEN..HEADER_LEN + l.table_entries_len()]),
            };
            head[..HEADER_LEN].copy_from_slice(&resealed.encode());
            assert_ne!(slots, stored_slots(&map).0, "the placements differ");
            assert_ne!(resealed.digest, map.digest());
            let old = IdMap::open(source_of(&region, 0), 0, region.len()).unwrap();
            assert_eq!(old.digest(), resealed.digest);
            old.verify().unwrap();
            for (i, id) in ids.iter().enumerate() {
                assert_eq!(old.index_of(id), Some(i as u32));
                assert_eq!(old.id(i as u32), Some(id.as_str()));
            }
            assert_eq!(old.index_of("absent"), None);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Distinct random ids, small enough tables that homes collide and
    /// runs wrap: the slot section is exactly the placement of FORMAT.md.
    #[test]
    fn placement_agrees_with_the_model(
        raw in proptest::collection::vec("\\PC{0,5}", 0..400),
        wide_slots: bool,
        wide_offsets: bool,
    ) {
        let mut seen = std::collections::HashSet::new();
        let ids: Vec<String> = raw.into_iter().filter(|id| seen.insert(id.clone())).collect();
        let options = BuildOptions { force_wide_slots: wide_slots, force_wide_offsets: wide_offsets };
        check_placement(&ids, options);
    }

    /// Random ids of a small alphabet with duplicates placed anywhere in up
    /// to 5,000 ids.
    #[test]
    fn the_first_duplicate_is_named(
        n in 2usize..5_000,
        dups in proptest::collection::vec((any::<u32>(), any::<u32>()), 1..4),
        wide_slots: bool,
    ) {
        let mut ids = sample_ids(n);
        for (a, b) in dups {
            let (a, b) = (a as usize % n, b as usize % n);
            if a != b {
                ids[a.max(b)] = ids[a.min(b)].clone();
            }
        }
        let options = BuildOptions { force_wide_slots: wide_slots, force_wide_offsets: false };
        match first_duplicate(&ids) {
            Some(_) => expect_duplicate(&ids, options),
            None => {
                check_placement(&ids, options);
            }
        }
    }
}

#[test]
fn the_short_ascii_test_agrees_with_the_standard_one() {
    // Every length up to past the word-wise cases, all ASCII, and with one
    // byte of 0x80 or more at each position in turn.
    for len in 0..40usize {
        let clean: Vec<u8> = (0..len).map(|k| b'a' + (k % 26) as u8).collect();
        assert!(super::lookup::is_ascii(&clean), "len {len}");
        for at in 0..len {
            for high in [0x80u8, 0xC3, 0xFF] {
                let mut dirty = clean.clone();
                dirty[at] = high;
                assert_eq!(
                    super::lookup::is_ascii(&dirty),
                    dirty.is_ascii(),
                    "len {len}, byte {at}"
                );
                assert!(!super::lookup::is_ascii(&dirty), "len {len}, byte {at}");
            }
        }
    }
}

#[test]
fn a_non_ascii_id_is_read_whole() {
    // Ids of 1 to 20 bytes with a multi-byte character at either end or in
    // the middle: each goes through the full UTF-8 check and comes back whole.
    let mut ids = Vec::new();
    for n in 0..18 {
        let body = "x".repeat(n);
        ids.push(format!("é{body}"));
        ids.push(format!("{body}é"));
        ids.push(format!("{}ü{}", &body[..n / 2], &body[n / 2..]));
    }
    ids.sort();
    ids.dedup();
    let map = IdMap::from_ids(&ids).unwrap();
    for (i, id) in ids.iter().enumerate() {
        assert_eq!(map.id(i as u32), Some(id.as_str()));
        assert_eq!(map.try_id(i as u32).unwrap(), Some(id.as_str()));
        assert_eq!(map.index_of(id), Some(i as u32));
    }
}

#[test]
fn the_short_comparison_agrees_with_the_standard_one() {
    // Equal slices of every length up to past the word-wise cases, and for
    // each a copy differing in one byte at each position, or one byte
    // shorter: the word-wise comparison must see every byte.
    for len in 0..48usize {
        let a: Vec<u8> = (0..len).map(|k| (k * 37 + 11) as u8).collect();
        assert!(super::lookup::same_bytes(&a, &a.clone()), "len {len}");
        for at in 0..len {
            let mut b = a.clone();
            b[at] ^= 0x01;
            assert!(!super::lookup::same_bytes(&a, &b), "len {len}, byte {at}");
            b[at] ^= 0x81;
            assert!(!super::lookup::same_bytes(&b, &a), "len {len}, byte {at}");
        }
        if len > 0 {
            assert!(!super::lookup::same_bytes(&a, &a[..len - 1]), "len {len}");
            let (x, y) = (&a[1..], &a[..len - 1]);
            assert_eq!(super::lookup::same_bytes(x, y), x == y, "len {len}");
        }
    }
}
