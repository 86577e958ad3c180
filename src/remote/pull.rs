//! Pull: a scope from the bucket into the local file, every object checked
//! against its name before anything is stored.

use crate::cache::{ScopeCache, ScopeData};
use crate::error::{Error, Result};
use crate::idmap::IdMap;
use crate::remote::layout::ObjectName;
use crate::remote::manifest::{Checked, Manifest, MAX_MANIFEST_BYTES};
use crate::remote::{lock, Remote};
use crate::source::{as_words, AlignedBuf};
use bitvec::prelude::{BitSlice, Lsb0};
use futures_util::future::try_join;
use object_store::ObjectStoreExt;
use std::sync::atomic::{AtomicU64, Ordering};

/// What one pull did.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "cli", derive(serde::Serialize))]
pub struct PullReport {
    /// The key.
    pub key: String,
    /// Objects downloaded (and checked).
    pub objects_downloaded: u64,
    /// Their bytes.
    pub bytes_downloaded: u64,
    /// Mappings the local file held already, not downloaded.
    pub objects_local: u64,
    /// True when the local file held this version (or a newer one) already,
    /// so nothing was downloaded or stored.
    pub up_to_date: bool,
}

/// A mapping for the new entry: the local file's, or downloaded.
enum MapSource {
    Local(IdMap),
    Remote(u64),
}

impl Remote {
    /// Pulls the scope under `key` from the bucket into `cache`, unless the
    /// local file holds the same version or a newer one. Returns None when
    /// the bucket has no manifest for `key`.
    ///
    /// Mappings the local file holds already (by content digest) are not
    /// downloaded. Every downloaded object must hash to its name, and every
    /// downloaded mapping pass [`IdMap::verify`] (unless
    /// [`RemoteConfig::verify_mappings`](crate::remote::RemoteConfig::verify_mappings)
    /// is off); otherwise the pull fails and nothing is stored. The entry keeps the scope's creation time; its
    /// last access is now.
    ///
    /// Errors: `RemoteMissing` (an object the manifest names is not in the
    /// bucket), `RemoteCorrupt` (a damaged manifest or object), `Remote`
    /// (network, timeout, server), and the local put's errors.
    ///
    /// Cost: the downloads, at network speed, hashed as they arrive; a full
    /// check of each new mapping (O(ids), on one thread per mapping); one
    /// local put.
    pub fn pull(&self, cache: &ScopeCache, key: &str) -> Result<Option<PullReport>> {
        self.pull_with_progress(cache, key, &|_| {})
    }

    /// [`Remote::pull`], calling `progress` with the size of each chunk
    /// received, for a progress bar.
    pub fn pull_with_progress(
        &self,
        cache: &ScopeCache,
        key: &str,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<Option<PullReport>> {
        crate::key::validate(key)?;
        let Some(c) = self.run(self.read_manifest(key))?? else {
            return Ok(None);
        };
        let mut report = PullReport {
            key: key.to_owned(),
            objects_downloaded: 0,
            bytes_downloaded: 0,
            objects_local: 0,
            up_to_date: false,
        };
        if cache.contains(key)? {
            if let Some(info) = cache.info(key)? {
                if info.created_at >= c.m.created_at {
                    report.up_to_date = true;
                    return Ok(Some(report));
                }
            }
        }
        let node_src = self.map_source(cache, c.node_digest, c.m.node_ids.count, c.m.node_ids.bytes)?;
        let link_src = if c.link_ids == c.node_ids {
            None
        } else {
            Some(self.map_source(cache, c.link_digest, c.m.link_ids.count, c.m.link_ids.bytes)?)
        };
        let received = AtomicU64::new(0);
        let counted = |n: u64| {
            received.fetch_add(n, Ordering::Relaxed);
            progress(n);
        };
        // A downloaded mapping is checked on a thread of its own as soon as
        // it has arrived, while the other objects are still coming.
        let fetch = |src: &MapSource, name: ObjectName, digest: u128| {
            let wanted = match src {
                MapSource::Local(_) => None,
                MapSource::Remote(len) => Some(*len),
            };
            let counted = &counted;
            async move {
                let Some(len) = wanted else { return Ok(None) };
                let buf = self.download(name, len, counted).await?;
                let (tx, rx) = tokio::sync::oneshot::channel();
                let full = self.verify_mappings;
                std::thread::Builder::new()
                    .name("scopecache-verify".into())
                    .spawn(move || {
                        let _ = tx.send(if full {
                            IdMap::from_buf(buf)
                        } else {
                            IdMap::from_buf_unverified(buf)
                        });
                    })
                    .map_err(|e| Error::Config(format!("cannot start a thread to check a mapping: {e}")))?;
                let checked = rx
                    .await
                    .map_err(|_| Error::Config("the mapping check thread stopped".into()))?;
                self.checked_map(checked, name, digest, len).map(Some)
            }
        };
        let (bits, maps) = self.run(async {
            let bits = try_join(
                self.download(c.nodes, c.m.nodes.bytes, &counted),
                self.download(c.links, c.m.links.bytes, &counted),
            );
            let link_fetch = async {
                match &link_src {
                    Some(src) => fetch(src, c.link_ids, c.link_digest).await,
                    None => Ok(None),
                }
            };
            let maps = try_join(fetch(&node_src, c.node_ids, c.node_digest), link_fetch);
            try_join(bits, maps).await
        })??;
        let (node_buf, link_buf) = bits;
        let (node_map, link_map) = maps;
        for src in std::iter::once(&node_src).chain(link_src.as_ref()) {
            match src {
                MapSource::Local(_) => report.objects_local += 1,
                MapSource::Remote(..) => report.objects_downloaded += 1,
            }
        }
        report.objects_downloaded += 2;
        report.bytes_downloaded = received.load(Ordering::Relaxed);

        let nodes = self.bits_of(&node_buf, c.nodes, c.m.nodes.bits)?;
        let links = self.bits_of(&link_buf, c.links, c.m.links.bits)?;
        let pick = |src: &MapSource, got: Option<IdMap>, name: ObjectName| match (src, got) {
            (MapSource::Local(m), _) => Ok(m.clone()),
            (MapSource::Remote(..), Some(m)) => Ok(m),
            (MapSource::Remote(..), None) => {
                Err(self.corrupt(&self.layout.object(&name), "mapping was not downloaded"))
            }
        };
        let node_ids = pick(&node_src, node_map, c.node_ids)?;
        let link_ids = match &link_src {
            Some(src) => pick(src, link_map, c.link_ids)?,
            None => node_ids.clone(),
        };
        let now = cache.config().clock.now();
        let data = ScopeData {
            nodes,
            links,
            node_ids: &node_ids,
            link_ids: &link_ids,
            attributes: &c.m.attributes,
        };
        cache.put_with_times(key, &data, c.m.created_at, now)?;
        log::info!(
            "{}: pulled {key:?}: {} objects ({} bytes) downloaded, {} mappings local",
            self.url,
            report.objects_downloaded,
            report.bytes_downloaded,
            report.objects_local
        );
        Ok(Some(report))
    }

    /// The checked manifest of `key`, or None when there is none.
    pub(crate) async fn read_manifest(&self, key: &str) -> Result<Option<Checked>> {
        let path = self.layout.manifest(key);
        let res = match self.store.get(&path).await {
            Ok(r) => r,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(self.error(&path, "get", e)),
        };
        if res.meta.size > MAX_MANIFEST_BYTES {
            return Err(self.corrupt(&path, format!("manifest of {} bytes", res.meta.size)));
        }
        let bytes = res.bytes().await.map_err(|e| self.error(&path, "get", e))?;
        Manifest::decode(&bytes, Some(key))
            .map(Some)
            .map_err(|why| self.corrupt(&path, why))
    }

    /// Where a mapping will come from: the local file when it holds one
    /// with this digest, count and size, else the bucket.
    fn map_source(&self, cache: &ScopeCache, digest: u128, count: u64, len: u64) -> Result<MapSource> {
        match cache.stored_map(digest, count, len) {
            Ok(Some(m)) => return Ok(MapSource::Local(m)),
            Ok(None) => {}
            Err(e) => log::warn!(
                "{}: the local copy of a mapping is unusable, downloading it: {e}",
                cache.path().display()
            ),
        }
        Ok(MapSource::Remote(len))
    }

    /// A downloaded mapping after its full check, which must also give the
    /// manifest's digest and size.
    fn checked_map(&self, checked: Result<IdMap>, name: ObjectName, digest: u128, len: u64) -> Result<IdMap> {
        let path = self.layout.object(&name);
        let map = checked.map_err(|e| self.corrupt(&path, format!("not a valid id mapping: {e}")))?;
        if map.digest() != digest || map.region_len() != len {
            return Err(self.corrupt(&path, "the mapping's digest or size differs from its manifest"));
        }
        lock(&self.names).insert((digest, len), name);
        Ok(map)
    }

    /// The bitset in `buf`: `bits` bits, the rest of the last word zero.
    fn bits_of<'b>(
        &self,
        buf: &'b AlignedBuf,
        name: ObjectName,
        bits: u64,
    ) -> Result<&'b BitSlice<u64, Lsb0>> {
        let path = self.layout.object(&name);
        let words = as_words(buf.as_bytes());
        let all = BitSlice::<u64, Lsb0>::from_slice(words);
        let n = usize::try_from(bits)
            .ok()
            .filter(|&n| n <= all.len() && all.len() - n < 64);
        let Some(n) = n else {
            return Err(self.corrupt(
                &path,
                format!("{} bytes do not hold {bits} bits", buf.as_bytes().len()),
            ));
        };
        if all[n..].any() {
            return Err(self.corrupt(&path, "bits past the bitset's length are set"));
        }
        Ok(&all[..n])
    }
}
