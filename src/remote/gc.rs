//! Remote garbage collection: the one way objects leave the bucket.
//!
//! Local eviction never deletes anything remote. `gc` deletes the manifests
//! older than the retention policy, then the objects no remaining manifest
//! names, once they are older than a grace period (so that the objects of a
//! push whose manifest is not written yet survive).

use crate::error::Result;
use crate::remote::Remote;
use chrono::Utc;
use futures_util::TryStreamExt;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt};
use std::collections::HashSet;
use std::time::Duration;

/// What [`Remote::gc`] deletes.
///
/// ```
/// use scopecache::remote::GcPolicy;
/// use std::time::Duration;
/// let p = GcPolicy::older_than(Duration::from_secs(7 * 86400));
/// assert_eq!(p.grace, Duration::from_secs(3600));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GcPolicy {
    /// Scopes created longer ago than this are deleted.
    pub max_age: Duration,
    /// An object no manifest names is deleted only once it is older than
    /// this: a push writes its objects before its manifest, and an object
    /// younger than the grace may belong to a push under way.
    pub grace: Duration,
}

impl GcPolicy {
    /// Deletes scopes older than `max_age`, with a grace of one hour.
    pub fn older_than(max_age: Duration) -> GcPolicy {
        GcPolicy {
            max_age,
            grace: Duration::from_secs(3600),
        }
    }
}

/// What one [`Remote::gc`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "cli", derive(serde::Serialize))]
pub struct GcReport {
    /// Keys whose manifests were deleted.
    pub deleted_keys: Vec<String>,
    /// Damaged manifests deleted (those older than the policy's age).
    pub deleted_damaged_manifests: u64,
    /// Scopes kept.
    pub kept_keys: u64,
    /// Objects deleted.
    pub deleted_objects: u64,
    /// Their bytes.
    pub deleted_bytes: u64,
    /// Objects kept: named by a kept manifest, or within the grace period.
    pub kept_objects: u64,
}

impl Remote {
    /// Deletes the scopes created longer ago than `policy.max_age`, then the
    /// objects that no remaining scope names and that are older than
    /// `policy.grace`.
    ///
    /// Run it while no machine pushes scopes older than the policy: S3 has
    /// no conditional delete, so a manifest replaced between gc's read and
    /// its delete is lost (its objects survive the grace period, and the
    /// next push of the key restores it).
    ///
    /// Errors: `Remote` on network or server failures; what was deleted
    /// until then stays deleted, and running gc again finishes the work.
    ///
    /// Cost: a LIST of the manifests and of the objects, a GET per manifest,
    /// a DELETE per deleted object.
    pub fn gc(&self, policy: GcPolicy) -> Result<GcReport> {
        self.run(self.gc_async(policy))?
    }

    async fn gc_async(&self, policy: GcPolicy) -> Result<GcReport> {
        let now = Utc::now();
        let age = |d: Duration| chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX);
        let cutoff = now
            .checked_sub_signed(age(policy.max_age))
            .unwrap_or(chrono::DateTime::<Utc>::MIN_UTC);
        let grace_cutoff = now
            .checked_sub_signed(age(policy.grace))
            .unwrap_or(chrono::DateTime::<Utc>::MIN_UTC);
        let mut report = GcReport::default();
        let mut live = HashSet::new();
        for l in self.list_manifests().await? {
            match l.manifest {
                Ok(c) if c.m.created_at < cutoff => {
                    self.delete(&l.meta.location).await?;
                    report.deleted_keys.push(c.m.key);
                }
                Ok(c) => {
                    live.extend([c.nodes, c.links, c.node_ids, c.link_ids]);
                    report.kept_keys += 1;
                }
                Err(why) if l.meta.last_modified < cutoff => {
                    log::warn!(
                        "{}: deleting a damaged manifest: {why}",
                        self.location(&l.meta.location)
                    );
                    self.delete(&l.meta.location).await?;
                    report.deleted_damaged_manifests += 1;
                }
                Err(why) => {
                    log::warn!(
                        "{}: damaged manifest kept for now: {why}",
                        self.location(&l.meta.location)
                    );
                }
            }
        }
        let dir = self.layout.objects();
        let objects: Vec<ObjectMeta> = self
            .store
            .list(Some(&dir))
            .try_collect()
            .await
            .map_err(|e| self.error(&dir, "list", e))?;
        for o in objects {
            let named = self
                .layout
                .object_name(&o.location)
                .is_some_and(|n| live.contains(&n));
            if named || o.last_modified >= grace_cutoff {
                report.kept_objects += 1;
                continue;
            }
            self.delete(&o.location).await?;
            report.deleted_objects += 1;
            report.deleted_bytes += o.size;
        }
        report.deleted_keys.sort();
        log::info!(
            "{}: gc deleted {} scopes and {} objects ({} bytes)",
            self.url,
            report.deleted_keys.len(),
            report.deleted_objects,
            report.deleted_bytes
        );
        Ok(report)
    }

    async fn delete(&self, path: &object_store::path::Path) -> Result<()> {
        match self.store.delete(path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.error(path, "delete", e)),
        }
    }
}
