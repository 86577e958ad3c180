//! Moving one object: a checked download into an aligned buffer, and a
//! create-only upload that skips what the bucket holds already.

use crate::error::Result;
use crate::remote::layout::ObjectName;
use crate::remote::Remote;
use crate::source::AlignedBuf;
use bytes::Bytes;
use futures_util::StreamExt;
use object_store::{ObjectStoreExt, PutMode, PutOptions, PutPayload};

/// What an upload did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Uploaded {
    /// The object was written.
    Written,
    /// The bucket held it already (found before, or by the create-only put).
    Present,
}

impl Remote {
    /// Downloads object `name`, which must be `len` bytes, into a 64-byte
    /// aligned buffer, and checks that its bytes hash to its name. `progress`
    /// is called with each chunk's size.
    ///
    /// Errors: `RemoteMissing` when absent, `RemoteCorrupt` when of another
    /// size or hash, `Remote` on any request or network failure.
    pub(crate) async fn download(
        &self,
        name: ObjectName,
        len: u64,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<AlignedBuf> {
        let path = self.layout.object(&name);
        let res = self
            .store
            .get(&path)
            .await
            .map_err(|e| self.error(&path, "get", e))?;
        if res.meta.size != len {
            return Err(self.corrupt(
                &path,
                format!("object is {} bytes, its manifest says {len}", res.meta.size),
            ));
        }
        let size =
            usize::try_from(len).map_err(|_| self.corrupt(&path, "object too large for this machine"))?;
        let mut buf = AlignedBuf::zeroed(size);
        let mut hasher = blake3::Hasher::new();
        let mut at = 0usize;
        let mut stream = res.into_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| self.error(&path, "get", e))?;
            let end = at
                .checked_add(chunk.len())
                .filter(|&end| end <= size)
                .ok_or_else(|| {
                    self.corrupt(&path, format!("object is longer than the {len} bytes announced"))
                })?;
            buf.as_bytes_mut()[at..end].copy_from_slice(&chunk);
            hasher.update(&chunk);
            at = end;
            progress(chunk.len() as u64);
        }
        if at != size {
            return Err(self.error(
                &path,
                "get",
                object_store::Error::Generic {
                    store: "S3",
                    source: format!("transfer ended after {at} of {len} bytes").into(),
                },
            ));
        }
        let found = ObjectName::from_hash(hasher.finalize());
        if found != name {
            return Err(self.corrupt(&path, format!("bytes hash to {found}, not to the object's name")));
        }
        Ok(buf)
    }

    /// Uploads `bytes` as object `name` unless the bucket holds it already.
    /// The put is create-only, so an object is never replaced, and two
    /// machines uploading it at once both succeed.
    pub(crate) async fn upload(&self, name: ObjectName, bytes: Bytes) -> Result<Uploaded> {
        let path = self.layout.object(&name);
        match self.store.head(&path).await {
            Ok(meta) if meta.size == bytes.len() as u64 => return Ok(Uploaded::Present),
            Ok(meta) => {
                return Err(self.corrupt(
                    &path,
                    format!(
                        "object is {} bytes, its name was computed over {}",
                        meta.size,
                        bytes.len()
                    ),
                ))
            }
            Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(self.error(&path, "head", e)),
        }
        let opts = PutOptions {
            mode: PutMode::Create,
            ..PutOptions::default()
        };
        match self
            .store
            .put_opts(&path, PutPayload::from_bytes(bytes), opts)
            .await
        {
            Ok(_) => Ok(Uploaded::Written),
            Err(object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. }) => {
                Ok(Uploaded::Present)
            }
            Err(e) => Err(self.error(&path, "put", e)),
        }
    }
}
