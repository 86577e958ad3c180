use std::collections::HashMap;
use std::sync::Arc;

use proptest::prelude::*;

use super::layout::HEADER_LEN;
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
            // Re-seal: block CRCs, table CRC, header CRC.
            let body = bad[body_start..].to_vec();
            let crc = crc32fast::hash(&body);
            bad[HEADER_LEN..HEADER_LEN + 4].copy_from_slice(&crc.to_le_bytes());
            let table_crc = crc32fast::hash(&bad[HEADER_LEN..HEADER_LEN + 4]);
            bad[56..60].copy_from_slice(&table_crc.to_le_bytes());
            let header_crc = crc32fast::hash(&bad[0..60]);
            bad[60..64].copy_from_slice(&header_crc.to_le_bytes());
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
        // Re-seal the one block, the table and the header.
        let crc = crc32fast::hash(&bad[body_start..]);
        bad[HEADER_LEN..HEADER_LEN + 4].copy_from_slice(&crc.to_le_bytes());
        let table_crc = crc32fast::hash(&bad[HEADER_LEN..HEADER_LEN + 4]);
        bad[56..60].copy_from_slice(&table_crc.to_le_bytes());
        let header_crc = crc32fast::hash(&bad[0..60]);
        bad[60..64].copy_from_slice(&header_crc.to_le_bytes());
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
