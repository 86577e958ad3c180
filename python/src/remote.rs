//! The remote tier's settings, as given to `ScopeCache(remote=...)`.
//!
//! The `Remote` handle is built again each time the cache file is opened
//! (at construction, and in a child after `os.fork()`), since its I/O
//! runtime must not be shared across a fork; building it makes no request.

use pyo3::prelude::*;

use crate::errors::new_err;

/// The remote arguments of the constructor.
#[derive(Clone, Debug, Default)]
pub struct RemoteSettings {
    /// `s3://bucket/prefix`, or None for no remote tier.
    pub url: Option<String>,
    /// The endpoint (e.g. `http://127.0.0.1:9000`); None: `AWS_ENDPOINT_URL`, else AWS.
    pub endpoint: Option<String>,
    /// The region; None: `AWS_REGION` / `AWS_DEFAULT_REGION`, else us-east-1.
    pub region: Option<String>,
    /// Allow plain HTTP; None: `AWS_ALLOW_HTTP`, else no.
    pub allow_http: Option<bool>,
}

#[cfg(feature = "remote")]
impl RemoteSettings {
    /// The remote handle, or None when no URL was given. Keys come from the
    /// standard AWS environment variables.
    pub fn build(&self, py: Python<'_>) -> PyResult<Option<std::sync::Arc<scopecache::remote::Remote>>> {
        use scopecache::remote::{Remote, RemoteConfig};
        let Some(url) = &self.url else {
            return Ok(None);
        };
        let mut c = RemoteConfig::new(url).map_err(crate::errors::py_err(py))?;
        c.endpoint = self.endpoint.clone();
        c.region = self.region.clone();
        c.allow_http = self.allow_http;
        Ok(Some(std::sync::Arc::new(
            Remote::new(c).map_err(crate::errors::py_err(py))?,
        )))
    }
}

#[cfg(not(feature = "remote"))]
impl RemoteSettings {
    /// Without the `remote` feature, a URL is a ConfigError.
    pub fn build(&self, py: Python<'_>) -> PyResult<()> {
        match &self.url {
            None => Ok(()),
            Some(u) => Err(new_err(
                py,
                "ConfigError",
                format!("remote={u:?}: this build of scopecache has no remote tier (cargo feature `remote`)"),
            )),
        }
    }
}

/// True when this build has the remote tier.
#[pyfunction]
pub fn has_remote() -> bool {
    cfg!(feature = "remote")
}

/// A ConfigError for a remote option given without `remote`.
pub fn check(py: Python<'_>, s: &RemoteSettings) -> PyResult<()> {
    if s.url.is_none() && (s.endpoint.is_some() || s.region.is_some() || s.allow_http.is_some()) {
        return Err(new_err(
            py,
            "ConfigError",
            "remote_endpoint, remote_region and remote_allow_http need remote=\"s3://bucket/prefix\"".into(),
        ));
    }
    Ok(())
}
