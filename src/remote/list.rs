//! What the bucket holds: one entry per manifest.

use crate::error::Result;
use crate::remote::manifest::{Checked, Manifest, MAX_MANIFEST_BYTES};
use crate::remote::Remote;
use chrono::{DateTime, Utc};
use futures_util::TryStreamExt;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt};

/// One scope in the bucket, as its manifest describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "cli", derive(serde::Serialize))]
pub struct RemoteEntry {
    /// The key.
    pub key: String,
    /// When the scope was first put, on the machine that computed it.
    pub created_at: DateTime<Utc>,
    /// When this version was pushed.
    pub pushed_at: DateTime<Utc>,
    /// Bits in the nodes bitset.
    pub total_nodes: u64,
    /// Bits in the links bitset.
    pub total_links: u64,
    /// Bytes of the four objects (mappings counted in full, though shared).
    pub total_bytes: u64,
}

impl RemoteEntry {
    fn of(c: &Checked) -> RemoteEntry {
        let m = &c.m;
        RemoteEntry {
            key: m.key.clone(),
            created_at: m.created_at,
            pushed_at: m.pushed_at,
            total_nodes: m.nodes.bits,
            total_links: m.links.bits,
            total_bytes: m.nodes.bytes + m.links.bytes + m.node_ids.bytes + m.link_ids.bytes,
        }
    }
}

/// A manifest as listed: its object's metadata, and its checked content or
/// why it failed its checks.
pub(crate) struct Listed {
    pub meta: ObjectMeta,
    pub manifest: std::result::Result<Checked, String>,
}

impl Remote {
    /// Every scope in the bucket, in key order. Damaged manifests are
    /// logged and left out.
    ///
    /// Cost: one LIST request per 1000 manifests and one GET per manifest.
    pub fn list(&self) -> Result<Vec<RemoteEntry>> {
        let mut out: Vec<RemoteEntry> = self
            .run(self.list_manifests())??
            .into_iter()
            .filter_map(|l| match l.manifest {
                Ok(c) => Some(RemoteEntry::of(&c)),
                Err(why) => {
                    log::warn!(
                        "{}: damaged manifest left out: {why}",
                        self.location(&l.meta.location)
                    );
                    None
                }
            })
            .collect();
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    /// Every manifest under the prefix, read and checked.
    pub(crate) async fn list_manifests(&self) -> Result<Vec<Listed>> {
        let dir = self.layout.manifests();
        let metas: Vec<ObjectMeta> = self
            .store
            .list(Some(&dir))
            .try_collect()
            .await
            .map_err(|e| self.error(&dir, "list", e))?;
        let mut out = Vec::with_capacity(metas.len());
        for meta in metas {
            let manifest = if meta.size > MAX_MANIFEST_BYTES {
                Err(format!("manifest of {} bytes", meta.size))
            } else {
                match self.store.get(&meta.location).await {
                    Ok(r) => {
                        let bytes = r
                            .bytes()
                            .await
                            .map_err(|e| self.error(&meta.location, "get", e))?;
                        Manifest::decode(&bytes, None).and_then(|c| {
                            if self.layout.manifest(&c.m.key) == meta.location {
                                Ok(c)
                            } else {
                                Err(format!(
                                    "manifest of key {:?} stored under another key's name",
                                    c.m.key
                                ))
                            }
                        })
                    }
                    // Deleted between the LIST and the GET.
                    Err(object_store::Error::NotFound { .. }) => continue,
                    Err(e) => return Err(self.error(&meta.location, "get", e)),
                }
            };
            out.push(Listed { meta, manifest });
        }
        Ok(out)
    }
}
