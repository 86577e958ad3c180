//! Object names in the bucket (FORMAT.md, "The remote tier").
//!
//! - `<prefix>/objects/<hash>`: an immutable object, named by the BLAKE3
//!   hash of its bytes (64 lower-case hex digits): an id mapping's region or
//!   a bitset's words.
//! - `<prefix>/manifests/<hash of the key>`: the manifest of one scope key,
//!   named by the BLAKE3 hash of the key's UTF-8 bytes, so that any key
//!   (up to 1024 bytes, any characters) gives a short, safe object name.

use crate::remote::url::RemoteUrl;
use object_store::path::Path;
use std::fmt;

/// The BLAKE3 hash that names an immutable object.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectName([u8; 32]);

impl ObjectName {
    /// The name of `bytes`: their BLAKE3 hash. Cost: one pass, several GB/s.
    pub fn of(bytes: &[u8]) -> ObjectName {
        ObjectName(*blake3::hash(bytes).as_bytes())
    }

    /// The name from a finished incremental hash.
    pub(crate) fn from_hash(h: blake3::Hash) -> ObjectName {
        ObjectName(*h.as_bytes())
    }

    /// Parses 64 lower-case hex digits; None for anything else.
    pub fn parse(hex: &str) -> Option<ObjectName> {
        if hex.len() != 64
            || !hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, o) in out.iter_mut().enumerate() {
            *o = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        Some(ObjectName(out))
    }
}

impl fmt::Display for ObjectName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for ObjectName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ObjectName({self})")
    }
}

/// Object paths under one URL's prefix.
#[derive(Clone, Debug)]
pub(crate) struct Layout {
    prefix: String,
}

impl Layout {
    pub(crate) fn new(url: &RemoteUrl) -> Layout {
        let prefix = if url.prefix().is_empty() {
            String::new()
        } else {
            format!("{}/", url.prefix())
        };
        Layout { prefix }
    }

    /// The folder of the immutable objects.
    pub(crate) fn objects(&self) -> Path {
        Path::from(format!("{}objects", self.prefix))
    }

    /// The folder of the manifests.
    pub(crate) fn manifests(&self) -> Path {
        Path::from(format!("{}manifests", self.prefix))
    }

    pub(crate) fn object(&self, name: &ObjectName) -> Path {
        Path::from(format!("{}objects/{name}", self.prefix))
    }

    pub(crate) fn manifest(&self, key: &str) -> Path {
        Path::from(format!(
            "{}manifests/{}",
            self.prefix,
            ObjectName::of(key.as_bytes())
        ))
    }

    /// The object name in `path`, if it is an object of this layout.
    pub(crate) fn object_name(&self, path: &Path) -> Option<ObjectName> {
        ObjectName::parse(
            path.as_ref()
                .strip_prefix(&self.prefix)?
                .strip_prefix("objects/")?,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_bad_hex_is_refused() {
        let n = ObjectName::of(b"abc");
        assert_eq!(ObjectName::parse(&n.to_string()), Some(n));
        assert_eq!(
            n.to_string(),
            "6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85"
        );
        assert_eq!(ObjectName::parse(&n.to_string().to_uppercase()), None);
        assert_eq!(ObjectName::parse("00"), None);
        let l = Layout::new(&"s3://bkt/a/b".parse().unwrap());
        assert_eq!(l.object(&n).as_ref(), format!("a/b/objects/{n}"));
        assert_eq!(l.object_name(&l.object(&n)), Some(n));
        assert_eq!(l.object_name(&l.manifest("k")), None);
    }
}
