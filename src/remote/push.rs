//! Push: a local scope's objects to the bucket (those it lacks), then its
//! manifest, replaced with a conditional put.

use crate::cache::ScopeCache;
use crate::error::{Error, Result};
use crate::idmap::IdMap;
use crate::remote::layout::ObjectName;
use crate::remote::manifest::{digest_hex, BitsRef, Manifest, MapRef, FORMAT, MAX_MANIFEST_BYTES, VERSION};
use crate::remote::transfer::Uploaded;
use crate::remote::{lock, Remote};
use crate::scope::Scope;
use crate::source::words_as_bytes;
use bytes::Bytes;
use futures_util::future::try_join_all;
use object_store::{ObjectStoreExt, PutMode, PutOptions, PutPayload, UpdateVersion};

/// What became of the manifest in a push.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "cli", derive(serde::Serialize))]
#[cfg_attr(feature = "cli", serde(rename_all = "snake_case"))]
pub enum ManifestOutcome {
    /// The manifest now names this version.
    Written,
    /// The manifest named this very version already; nothing was written.
    Unchanged,
    /// The manifest names a version created later than this one (another
    /// machine's), which is kept.
    KeptNewer,
}

/// What one push did.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "cli", derive(serde::Serialize))]
pub struct PushReport {
    /// The key.
    pub key: String,
    /// Objects written to the bucket.
    pub objects_uploaded: u64,
    /// Their bytes.
    pub bytes_uploaded: u64,
    /// Objects the bucket held already, not sent again.
    pub objects_present: u64,
    /// Their bytes.
    pub bytes_present: u64,
    /// What became of the manifest.
    pub manifest: ManifestOutcome,
}

/// One of a scope's four parts, read in place from the mapped file: the
/// upload borrows the bytes without a copy.
struct Part {
    scope: Scope,
    which: u8,
}

impl AsRef<[u8]> for Part {
    fn as_ref(&self) -> &[u8] {
        match self.which {
            0 => words_as_bytes(self.scope.node_words()),
            1 => words_as_bytes(self.scope.link_words()),
            2 => self.scope.node_ids().region_bytes(),
            _ => self.scope.link_ids().region_bytes(),
        }
    }
}

/// The next step with a manifest.
enum Step {
    /// Leave it: the outcome is known.
    Done(ManifestOutcome),
    /// Write it with this (conditional) mode.
    Put(PutMode),
}

/// How many times a push reads and conditionally replaces a manifest that
/// keeps changing under it before it gives up.
const MANIFEST_TRIES: usize = 8;

impl Remote {
    /// Pushes the scope stored under `key` in `cache` (the local file) to the
    /// bucket: uploads the objects the bucket lacks, then replaces the key's
    /// manifest unless it names a newer version. Returns None when the local
    /// file does not hold `key`.
    ///
    /// Safe to run on many machines at once: objects are written create-only,
    /// and the manifest with a conditional put on its ETag, so it always
    /// names one complete version, the one created last.
    ///
    /// Errors: `Remote` on network or server failures (the bucket may then
    /// hold some objects of the scope but never a manifest naming a missing
    /// one), `RemoteCorrupt` when an object of the same name and another
    /// size is in the bucket, local read errors.
    ///
    /// Cost: a BLAKE3 pass over the bitsets (and over each mapping the first
    /// time this handle sees it), a GET of the manifest, one HEAD per object
    /// the current manifest does not name, one PUT per missing object, and a
    /// PUT of the manifest unless it names this version (or a later one)
    /// already: a push that finds everything in place is one request.
    pub fn push(&self, cache: &ScopeCache, key: &str) -> Result<Option<PushReport>> {
        let Some(scope) = cache.get_local(key)? else {
            return Ok(None);
        };
        self.push_scope(&scope).map(Some)
    }

    /// Pushes one scope; see [`Remote::push`].
    pub fn push_scope(&self, scope: &Scope) -> Result<PushReport> {
        let info = scope.info();
        let parts: Vec<Bytes> = (0..4)
            .map(|which| {
                Bytes::from_owner(Part {
                    scope: scope.clone(),
                    which,
                })
            })
            .collect();
        let nodes = ObjectName::of(&parts[0]);
        let links = ObjectName::of(&parts[1]);
        let node_ids = self.map_name(scope.node_ids());
        let link_ids = self.map_name(scope.link_ids());
        let now = chrono::Utc::now();
        let manifest = Manifest {
            format: FORMAT.into(),
            version: VERSION,
            key: info.key.clone(),
            created_at: info.created_at,
            pushed_at: now,
            nodes: BitsRef {
                object: nodes.to_string(),
                bytes: parts[0].len() as u64,
                bits: info.total_nodes,
            },
            links: BitsRef {
                object: links.to_string(),
                bytes: parts[1].len() as u64,
                bits: info.total_links,
            },
            node_ids: MapRef {
                object: node_ids.to_string(),
                bytes: parts[2].len() as u64,
                count: scope.node_ids().len() as u64,
                digest: digest_hex(scope.node_ids().digest()),
            },
            link_ids: MapRef {
                object: link_ids.to_string(),
                bytes: parts[3].len() as u64,
                count: scope.link_ids().len() as u64,
                digest: digest_hex(scope.link_ids().digest()),
            },
            attributes: info.attributes.clone(),
        };
        let mut objects: Vec<(ObjectName, Bytes)> = Vec::new();
        for (name, bytes) in [nodes, links, node_ids, link_ids].into_iter().zip(parts) {
            if !objects.iter().any(|(n, _)| *n == name) {
                objects.push((name, bytes));
            }
        }
        self.run(async {
            // The manifest first: the objects the current version names are
            // in the bucket (a push writes them before its manifest), so
            // they need no HEAD; when it names this very version, or a
            // later one, nothing is sent at all.
            let (first, named) = self.manifest_step(&manifest).await?;
            let (send, skip): (Vec<_>, Vec<_>) = match &first {
                Step::Done(_) => (
                    Vec::new(),
                    objects.iter().filter(|(n, _)| named.contains(n)).collect(),
                ),
                Step::Put(_) => objects.iter().partition(|(n, _)| !named.contains(n)),
            };
            let mut done = try_join_all(send.iter().map(|(name, bytes)| async {
                let up = self.upload(*name, bytes.clone()).await?;
                Ok::<_, Error>((up, bytes.len() as u64))
            }))
            .await?;
            done.extend(skip.iter().map(|(_, b)| (Uploaded::Present, b.len() as u64)));
            let outcome = self.write_manifest(&manifest, first).await?;
            let mut r = PushReport {
                key: manifest.key.clone(),
                objects_uploaded: 0,
                bytes_uploaded: 0,
                objects_present: 0,
                bytes_present: 0,
                manifest: outcome,
            };
            for (up, len) in done {
                match up {
                    Uploaded::Written => {
                        r.objects_uploaded += 1;
                        r.bytes_uploaded += len;
                    }
                    Uploaded::Present => {
                        r.objects_present += 1;
                        r.bytes_present += len;
                    }
                }
            }
            log::info!(
                "{}: pushed {:?}: {} objects ({} bytes) uploaded, {} present, manifest {:?}",
                self.url,
                r.key,
                r.objects_uploaded,
                r.bytes_uploaded,
                r.objects_present,
                r.manifest
            );
            Ok(r)
        })?
    }

    /// The object name of a mapping, hashed once per handle.
    pub(crate) fn map_name(&self, map: &IdMap) -> ObjectName {
        let id = (map.digest(), map.region_len());
        if let Some(n) = lock(&self.names).get(&id) {
            return *n;
        }
        let n = ObjectName::of(map.region_bytes());
        lock(&self.names).insert(id, n);
        n
    }

    /// What to do with the key's manifest: nothing (it names this version or
    /// a later one), or a conditional put on the ETag read just now.
    ///
    /// Also returns the objects the current manifest names.
    async fn manifest_step(&self, m: &Manifest) -> Result<(Step, Vec<ObjectName>)> {
        let path = self.layout.manifest(&m.key);
        match self.store.get(&path).await {
            Ok(res) => {
                let meta = res.meta.clone();
                if meta.size > MAX_MANIFEST_BYTES {
                    return Err(self.corrupt(&path, format!("manifest of {} bytes", meta.size)));
                }
                let bytes = res.bytes().await.map_err(|e| self.error(&path, "get", e))?;
                let mut named = Vec::new();
                match Manifest::decode(&bytes, Some(&m.key)) {
                    Ok(cur) => {
                        named = vec![cur.nodes, cur.links, cur.node_ids, cur.link_ids];
                        if cur.m.created_at > m.created_at {
                            return Ok((Step::Done(ManifestOutcome::KeptNewer), named));
                        }
                        if cur.m.created_at == m.created_at && cur.m.same_version(m) {
                            return Ok((Step::Done(ManifestOutcome::Unchanged), named));
                        }
                    }
                    Err(why) => log::warn!("{}: replacing a damaged manifest: {why}", self.location(&path)),
                }
                let mode = PutMode::Update(UpdateVersion {
                    e_tag: meta.e_tag,
                    version: meta.version,
                });
                Ok((Step::Put(mode), named))
            }
            Err(object_store::Error::NotFound { .. }) => Ok((Step::Put(PutMode::Create), Vec::new())),
            Err(e) => Err(self.error(&path, "get", e)),
        }
    }

    /// Replaces the key's manifest with `m` unless it names a version created
    /// later, by a conditional put on the ETag read just before (`first`,
    /// read while the objects were uploaded); a put that loses a race reads
    /// again.
    async fn write_manifest(&self, m: &Manifest, first: Step) -> Result<ManifestOutcome> {
        let path = self.layout.manifest(&m.key);
        let body = Bytes::from(m.encode());
        let mut step = Some(first);
        for _ in 0..MANIFEST_TRIES {
            let mode = match step.take() {
                Some(s) => s,
                None => self.manifest_step(m).await?.0,
            };
            let mode = match mode {
                Step::Done(outcome) => return Ok(outcome),
                Step::Put(mode) => mode,
            };
            let opts = PutOptions {
                mode,
                ..PutOptions::default()
            };
            match self
                .store
                .put_opts(&path, PutPayload::from_bytes(body.clone()), opts)
                .await
            {
                Ok(_) => return Ok(ManifestOutcome::Written),
                Err(object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. }) => {
                    log::info!(
                        "{}: the manifest changed under a push; reading it again",
                        self.location(&path)
                    );
                }
                Err(e) => return Err(self.error(&path, "put", e)),
            }
        }
        Err(Error::Remote {
            location: self.location(&path),
            op: "put",
            what: format!("the manifest changed under each of {MANIFEST_TRIES} conditional puts"),
        })
    }
}
