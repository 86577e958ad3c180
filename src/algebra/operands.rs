//! Checking that scopes can be combined word by word, and taking their words.

use crate::error::{Error, Result};
use crate::idmap::IdMap;
use crate::scope::Scope;

/// The words of one side (nodes or links) of every input scope, each cut to
/// exactly `words` words.
pub(crate) struct Side<'a> {
    /// One slice per input scope, in input order.
    pub(crate) inputs: Vec<&'a [u64]>,
    /// Bits in each input.
    pub(crate) bits: usize,
    /// `bits.div_ceil(64)`.
    pub(crate) words: usize,
}

/// Both sides of every input scope.
pub(crate) struct Operands<'a> {
    pub(crate) nodes: Side<'a>,
    pub(crate) links: Side<'a>,
}

/// True when two mappings are one mapping: the same ids in the same order,
/// as far as the content digest (xxh3-128) and the length tell.
pub(crate) fn same_mapping(a: &IdMap, b: &IdMap) -> bool {
    a.len() == b.len() && a.digest() == b.digest()
}

/// Checks that `scopes` is not empty, that every scope's bitsets are as
/// long as its mappings, and that all scopes share one node mapping and one
/// link mapping; returns their words.
///
/// Errors: [`Error::NoScopes`], [`Error::LengthMismatch`],
/// [`Error::MappingMismatch`] naming the first scope and the first that
/// differs from it. Cost: O(number of scopes); no word is read.
pub(crate) fn operands<'a>(op: &'static str, scopes: &[&'a Scope]) -> Result<Operands<'a>> {
    if scopes.is_empty() {
        return Err(Error::NoScopes { op });
    }
    Ok(Operands {
        nodes: side(scopes, "nodes", |s| {
            (s.node_ids(), s.nodes().len(), s.node_words())
        })?,
        links: side(scopes, "links", |s| {
            (s.link_ids(), s.links().len(), s.link_words())
        })?,
    })
}

/// One side of `scopes` (not empty), read through `get`: (mapping, bits, words).
fn side<'a>(
    scopes: &[&'a Scope],
    what: &'static str,
    get: impl Fn(&'a Scope) -> (&'a IdMap, usize, &'a [u64]),
) -> Result<Side<'a>> {
    let mut inputs = Vec::with_capacity(scopes.len());
    let mut first: Option<(&'a Scope, &'a IdMap)> = None;
    for &s in scopes {
        let (map, len, raw) = get(s);
        let (s0, map0) = *first.get_or_insert((s, map));
        if !same_mapping(map0, map) {
            return Err(Error::MappingMismatch {
                what,
                left: s0.key().to_owned(),
                right: s.key().to_owned(),
            });
        }
        match raw.get(..len.div_ceil(64)) {
            Some(w) if len == map.len() => inputs.push(w),
            _ => {
                return Err(Error::LengthMismatch {
                    what,
                    bits: len as u64,
                    ids: map.len() as u64,
                })
            }
        }
    }
    let bits = first.map_or(0, |(_, m)| m.len());
    Ok(Side {
        inputs,
        bits,
        words: bits.div_ceil(64),
    })
}
