//! A map's body cut into its three sections (FORMAT.md §2.5), once, when
//! the map is made: a read then indexes a section directly, with one bounds
//! check per entry, instead of working out byte positions in the body.

use super::layout::Layout;

/// The body and its sections, each cut to exactly its entries (padding
/// left out), so that a bounds check on an entry is also the check that
/// the entry exists: `offsets` has N + 1 entries, `slots` S, `strings` the
/// total id bytes.
///
/// Invariant: only the entries of the layout's width are non-empty; the
/// other width's are empty, so reading a section in the wrong width finds
/// nothing. If the body is shorter than the layout (a damaged source), every
/// section is empty and every read reports it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Sections<'a> {
    /// The whole body, for the block checks and the full verification.
    pub(crate) body: &'a [u8],
    offsets4: &'a [[u8; 4]],
    offsets8: &'a [[u8; 8]],
    slots4: &'a [[u8; 4]],
    slots8: &'a [[u8; 8]],
    strings: &'a [u8],
    wide_offsets: bool,
}

impl<'a> Sections<'a> {
    /// Cuts `body` by `layout`. O(1).
    pub(crate) fn new(body: &'a [u8], l: &Layout) -> Sections<'a> {
        let fits = body.len() == l.body_len;
        let cut = |start: usize, len: Option<usize>| -> &'a [u8] {
            len.and_then(|len| body.get(start..start.checked_add(len)?))
                .filter(|_| fits)
                .unwrap_or(&[])
        };
        let ow = l.offset_width();
        let sw = l.slot_width();
        let offsets = cut(0, l.count.checked_add(1).and_then(|n| n.checked_mul(ow)));
        let slots = cut(l.slots_start, l.slot_count.checked_mul(sw));
        let strings = cut(l.strings_start, Some(l.strings_len));
        let (offsets4, offsets8) = if l.wide_offsets {
            (&[][..], offsets.as_chunks::<8>().0)
        } else {
            (offsets.as_chunks::<4>().0, &[][..])
        };
        let (slots4, slots8) = if l.wide_slots {
            (&[][..], slots.as_chunks::<8>().0)
        } else {
            (slots.as_chunks::<4>().0, &[][..])
        };
        Sections {
            body: if fits { body } else { &[] },
            offsets4,
            offsets8,
            slots4,
            slots8,
            strings,
            wide_offsets: l.wide_offsets,
        }
    }

    /// The value of slot `p` in width `WIDE`, or `None` past the slots.
    #[inline(always)]
    pub(crate) fn slot<const WIDE: bool>(&self, p: usize) -> Option<u64> {
        if WIDE {
            self.slots8.get(p).map(|w| u64::from_le_bytes(*w))
        } else {
            self.slots4.get(p).map(|w| u64::from(u32::from_le_bytes(*w)))
        }
    }

    /// Where id `i` starts in the strings section, and its bytes; `None` if
    /// `i` is not below N or its offsets are not an ordered pair within the
    /// strings. No byte of the id is read.
    #[inline(always)]
    pub(crate) fn id(&self, i: usize) -> Option<(usize, &'a [u8])> {
        let (a, b) = self.offsets(i)?;
        let a = usize::try_from(a).ok()?;
        Some((a, self.strings.get(a..usize::try_from(b).ok()?)?))
    }

    /// The offsets pair of id `i` as stored, `None` if `i` is not below N.
    #[inline(always)]
    pub(crate) fn offsets(&self, i: usize) -> Option<(u64, u64)> {
        if self.wide_offsets {
            let [a, b] = self.offsets8.get(i..)?.first_chunk::<2>()?;
            Some((u64::from_le_bytes(*a), u64::from_le_bytes(*b)))
        } else {
            let [a, b] = self.offsets4.get(i..)?.first_chunk::<2>()?;
            Some((u32::from_le_bytes(*a).into(), u32::from_le_bytes(*b).into()))
        }
    }
}
