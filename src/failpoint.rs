//! Named crash points for the fault tests. With the `failpoints` feature, a
//! process whose `SCOPECACHE_CRASH_AT` names a point aborts there (as a
//! kill -9 would stop it); without the feature the calls compile to nothing.

/// Aborts the process if `SCOPECACHE_CRASH_AT` names `point`.
#[inline]
pub(crate) fn hit(point: &'static str) {
    #[cfg(feature = "failpoints")]
    {
        use std::sync::OnceLock;
        static AT: OnceLock<Option<String>> = OnceLock::new();
        let at = AT.get_or_init(|| std::env::var("SCOPECACHE_CRASH_AT").ok());
        if at.as_deref() == Some(point) {
            std::process::abort();
        }
    }
    #[cfg(not(feature = "failpoints"))]
    let _ = point;
}
