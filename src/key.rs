//! What a key may be.

use crate::error::{Error, Result};

/// The longest key, in bytes.
pub const MAX_KEY_LEN: usize = 1024;

/// Why `key` is not a valid key, if it is not.
pub(crate) fn check(key: &str) -> std::result::Result<(), &'static str> {
    if key.is_empty() {
        return Err("a key must not be empty");
    }
    if key.len() > MAX_KEY_LEN {
        return Err("a key must be at most 1024 bytes");
    }
    if key.bytes().any(|b| b == 0) {
        return Err("a key must not contain NUL bytes");
    }
    Ok(())
}

/// `check` as a typed error.
pub(crate) fn validate(key: &str) -> Result<()> {
    check(key).map_err(|reason| Error::InvalidKey {
        key: key.chars().take(64).collect(),
        reason,
    })
}
