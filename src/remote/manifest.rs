//! The manifest of one scope key: which objects make up the scope, their
//! sizes, the attributes and the times. A small JSON document, replaced as a
//! whole with a conditional put (FORMAT.md, "The remote tier").

use crate::index::BitsRecord;
use crate::remote::layout::ObjectName;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The `format` field of every manifest.
pub(crate) const FORMAT: &str = "scopecache-manifest";
/// The manifest version this build writes and reads.
pub(crate) const VERSION: u32 = 1;
/// The largest manifest a reader accepts: attributes are small.
pub(crate) const MAX_MANIFEST_BYTES: u64 = 16 << 20;
/// The largest mapping object a reader accepts (the format's own bound on
/// u32::MAX ids with long ids lies far beyond any real graph).
pub(crate) const MAX_MAP_BYTES: u64 = 1 << 40;

/// One bitset object: its name, its bytes (`ceil(bits / 64) * 8`) and bits.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct BitsRef {
    pub object: String,
    pub bytes: u64,
    pub bits: u64,
}

/// One id-mapping object: its name, its bytes, its id count and its
/// xxh3-128 digest (32 hex digits), which lets a machine that holds the
/// mapping already skip the download.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct MapRef {
    pub object: String,
    pub bytes: u64,
    pub count: u64,
    pub digest: String,
}

/// The manifest document.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct Manifest {
    pub format: String,
    pub version: u32,
    pub key: String,
    pub created_at: DateTime<Utc>,
    pub pushed_at: DateTime<Utc>,
    pub nodes: BitsRef,
    pub links: BitsRef,
    pub node_ids: MapRef,
    pub link_ids: MapRef,
    pub attributes: Map<String, Value>,
}

/// A manifest whose fields have been checked, with its object names parsed.
#[derive(Clone, Debug)]
pub(crate) struct Checked {
    pub m: Manifest,
    pub nodes: ObjectName,
    pub links: ObjectName,
    pub node_ids: ObjectName,
    pub link_ids: ObjectName,
    pub node_digest: u128,
    pub link_digest: u128,
}

impl Manifest {
    /// Parses and checks a manifest read from the store for `key` (any key
    /// when None).
    pub(crate) fn decode(bytes: &[u8], key: Option<&str>) -> Result<Checked, String> {
        let m: Manifest =
            serde_json::from_slice(bytes).map_err(|e| format!("manifest is not valid JSON: {e}"))?;
        m.check(key)
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        // A Manifest holds only strings, numbers and JSON values: it always encodes.
        serde_json::to_vec_pretty(self).unwrap_or_default()
    }

    /// True when both name the same objects and attributes.
    pub(crate) fn same_version(&self, o: &Manifest) -> bool {
        (
            &self.key,
            &self.nodes,
            &self.links,
            &self.node_ids,
            &self.link_ids,
            &self.attributes,
        ) == (
            &o.key,
            &o.nodes,
            &o.links,
            &o.node_ids,
            &o.link_ids,
            &o.attributes,
        )
    }

    fn check(self, key: Option<&str>) -> Result<Checked, String> {
        if self.format != FORMAT || self.version != VERSION {
            return Err(format!(
                "manifest format {:?} version {}, this build reads {FORMAT:?} version {VERSION}",
                self.format, self.version
            ));
        }
        if let Some(key) = key.filter(|&k| k != self.key) {
            return Err(format!("manifest names key {:?}, expected {key:?}", self.key));
        }
        crate::key::check(&self.key).map_err(|why| format!("manifest key: {why}"))?;
        let name = |what: &str, hex: &str| {
            ObjectName::parse(hex).ok_or_else(|| format!("{what}: {hex:?} is not an object name"))
        };
        for (what, b) in [("nodes", &self.nodes), ("links", &self.links)] {
            if b.bytes != BitsRecord::byte_len(b.bits) {
                return Err(format!(
                    "{what}: {} bytes for {} bits, expected {}",
                    b.bytes,
                    b.bits,
                    BitsRecord::byte_len(b.bits)
                ));
            }
        }
        for (what, b, m) in [
            ("nodes", &self.nodes, &self.node_ids),
            ("links", &self.links, &self.link_ids),
        ] {
            if b.bits != m.count {
                return Err(format!(
                    "{what}: {} bits but its mapping has {} ids",
                    b.bits, m.count
                ));
            }
            if m.bytes < 64 || m.bytes % 64 != 0 || m.bytes > MAX_MAP_BYTES {
                return Err(format!(
                    "{what} mapping: {} bytes is not a mapping region's size",
                    m.bytes
                ));
            }
        }
        let digest = |what: &str, hex: &str| {
            (hex.len() == 32)
                .then(|| u128::from_str_radix(hex, 16).ok())
                .flatten()
                .ok_or_else(|| format!("{what}: {hex:?} is not a 32-digit hex digest"))
        };
        Ok(Checked {
            nodes: name("nodes", &self.nodes.object)?,
            links: name("links", &self.links.object)?,
            node_ids: name("node_ids", &self.node_ids.object)?,
            link_ids: name("link_ids", &self.link_ids.object)?,
            node_digest: digest("node_ids", &self.node_ids.digest)?,
            link_digest: digest("link_ids", &self.link_ids.digest)?,
            m: self,
        })
    }
}

/// A digest as the manifest writes it.
pub(crate) fn digest_hex(d: u128) -> String {
    format!("{d:032x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Manifest {
        let n = ObjectName::of(b"x").to_string();
        Manifest {
            format: FORMAT.into(),
            version: VERSION,
            key: "k".into(),
            created_at: Utc::now(),
            pushed_at: Utc::now(),
            nodes: BitsRef {
                object: n.clone(),
                bytes: 8,
                bits: 3,
            },
            links: BitsRef {
                object: n.clone(),
                bytes: 16,
                bits: 65,
            },
            node_ids: MapRef {
                object: n.clone(),
                bytes: 256,
                count: 3,
                digest: digest_hex(7),
            },
            link_ids: MapRef {
                object: n,
                bytes: 256,
                count: 65,
                digest: digest_hex(u128::MAX),
            },
            attributes: Map::new(),
        }
    }

    #[test]
    fn a_manifest_round_trips_and_inconsistent_ones_are_refused() {
        let m = sample();
        let c = Manifest::decode(&m.encode(), Some("k")).unwrap();
        assert_eq!(c.m, m);
        assert_eq!(c.link_digest, u128::MAX);
        assert!(Manifest::decode(&m.encode(), Some("other"))
            .unwrap_err()
            .contains("expected \"other\""));
        let mut bad = sample();
        bad.links.bytes = 8;
        assert!(Manifest::decode(&bad.encode(), Some("k"))
            .unwrap_err()
            .contains("links"));
        let mut bad = sample();
        bad.node_ids.count = 4;
        assert!(Manifest::decode(&bad.encode(), Some("k")).is_err());
        let mut bad = sample();
        bad.nodes.object = "zz".into();
        assert!(Manifest::decode(&bad.encode(), Some("k")).is_err());
        let mut bad = sample();
        bad.version = 2;
        assert!(Manifest::decode(&bad.encode(), Some("k")).is_err());
        assert!(Manifest::decode(b"{", None).is_err());
    }
}
