//! Where the remote tier lives: an `s3://bucket/prefix` URL, and how to
//! reach and sign for the store that holds it.

use crate::error::{Error, Result};
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// A bucket and a prefix inside it, parsed from `s3://bucket/prefix`.
///
/// The prefix may be empty and may hold `/`; leading and trailing slashes
/// are dropped. Bucket names follow S3's rules: 3 to 63 characters of
/// lower-case letters, digits, `.` and `-`.
///
/// ```
/// use scopecache::remote::RemoteUrl;
/// let url: RemoteUrl = "s3://team-cache/graphs/v1/".parse()?;
/// assert_eq!(url.bucket(), "team-cache");
/// assert_eq!(url.prefix(), "graphs/v1");
/// assert_eq!(url.to_string(), "s3://team-cache/graphs/v1");
/// assert!("http://team-cache".parse::<RemoteUrl>().is_err());
/// # Ok::<(), scopecache::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteUrl {
    bucket: String,
    prefix: String,
}

impl RemoteUrl {
    /// The bucket.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The prefix every object name starts with, without leading or trailing `/`.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }
}

impl FromStr for RemoteUrl {
    type Err = Error;

    fn from_str(s: &str) -> Result<RemoteUrl> {
        let bad = |why: &str| Error::Config(format!("remote URL {s:?}: {why}"));
        let rest = s
            .strip_prefix("s3://")
            .ok_or_else(|| bad("expected s3://bucket/prefix"))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let valid = (3..=63).contains(&bucket.len())
            && bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
            && !bucket.starts_with(['.', '-'])
            && !bucket.ends_with(['.', '-']);
        if !valid {
            return Err(bad(
                "the bucket name must be 3 to 63 lower-case letters, digits, '.' or '-'",
            ));
        }
        let prefix = prefix.trim_matches('/');
        if prefix
            .split('/')
            .any(|seg| seg.is_empty() || seg == "." || seg == "..")
            && !prefix.is_empty()
        {
            return Err(bad("the prefix must not hold empty, '.' or '..' segments"));
        }
        if prefix.chars().any(char::is_control) {
            return Err(bad("the prefix must not hold control characters"));
        }
        Ok(RemoteUrl {
            bucket: bucket.to_owned(),
            prefix: prefix.to_owned(),
        })
    }
}

impl fmt::Display for RemoteUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.prefix.is_empty() {
            write!(f, "s3://{}", self.bucket)
        } else {
            write!(f, "s3://{}/{}", self.bucket, self.prefix)
        }
    }
}

/// How to reach the store: the URL, and settings that override the
/// standard AWS environment variables.
///
/// [`RemoteConfig::new`] leaves every override unset, so the store is
/// configured from the environment alone: `AWS_ENDPOINT_URL` (or
/// `AWS_ENDPOINT`) for an S3-compatible server, `AWS_REGION`,
/// `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, and
/// `AWS_ALLOW_HTTP=true` for a plain-HTTP endpoint such as a local test
/// server.
///
/// ```
/// use scopecache::remote::RemoteConfig;
/// let mut config = RemoteConfig::new("s3://scopes/team")?;
/// config.endpoint = Some("http://127.0.0.1:9000".into());
/// config.allow_http = Some(true);
/// assert_eq!(config.url.bucket(), "scopes");
/// # Ok::<(), scopecache::Error>(())
/// ```
#[derive(Clone)]
pub struct RemoteConfig {
    /// The bucket and prefix.
    pub url: RemoteUrl,
    /// The endpoint, e.g. `http://127.0.0.1:9000`; `None`: the environment's, else AWS.
    pub endpoint: Option<String>,
    /// The region; `None`: the environment's, else `us-east-1`.
    pub region: Option<String>,
    /// The access key id; `None`: the environment's.
    pub access_key_id: Option<String>,
    /// The secret access key; `None`: the environment's.
    pub secret_access_key: Option<String>,
    /// Allow a plain-HTTP endpoint; `None`: the environment's, else no.
    pub allow_http: Option<bool>,
    /// Bound on one request, transfer included (default 120 s).
    pub timeout: Duration,
    /// Bound on opening a connection (default 5 s).
    pub connect_timeout: Duration,
    /// Retries of a failed request, with exponential backoff (default 2).
    pub max_retries: usize,
    /// No retry starts after this long since the first try (default 15 s).
    pub retry_timeout: Duration,
    /// Check every pulled mapping in full ([`crate::IdMap::verify`]) before
    /// it is stored (default true). Every pulled object is checked against
    /// its BLAKE3 name either way, which catches any damage in the bucket or
    /// on the way; the full check also refuses a mapping that is consistent
    /// with its hash but inconsistent in itself, as a hostile writer could
    /// push. Turning it off (when every machine writing to the bucket is
    /// trusted) leaves the header and block table checks at open and the
    /// per-block CRC checks on first read, which the cache makes of every
    /// mapping in its file, and saves about a third of a cold pull's time.
    pub verify_mappings: bool,
}

impl RemoteConfig {
    /// The configuration of `url` with every setting from the environment
    /// and the default timeouts.
    ///
    /// Errors: [`Error::Config`] when `url` is not an `s3://bucket/prefix` URL.
    pub fn new(url: &str) -> Result<RemoteConfig> {
        Ok(RemoteConfig {
            url: url.parse()?,
            endpoint: None,
            region: None,
            access_key_id: None,
            secret_access_key: None,
            allow_http: None,
            timeout: Duration::from_secs(120),
            connect_timeout: Duration::from_secs(5),
            max_retries: 2,
            retry_timeout: Duration::from_secs(15),
            verify_mappings: true,
        })
    }
}

impl fmt::Debug for RemoteConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteConfig")
            .field("url", &self.url.to_string())
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("allow_http", &self.allow_http)
            .field("timeout", &self.timeout)
            .field("max_retries", &self.max_retries)
            .field("verify_mappings", &self.verify_mappings)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::RemoteUrl;

    #[test]
    fn urls_parse_and_bad_ones_are_refused() {
        let u: RemoteUrl = "s3://abc".parse().unwrap();
        assert_eq!((u.bucket(), u.prefix()), ("abc", ""));
        let u: RemoteUrl = "s3://abc//x/y//".parse().unwrap();
        assert_eq!(u.prefix(), "x/y");
        for bad in [
            "s3://",
            "s3://ab",
            "s3://Upper",
            "s3://a_b_c",
            "s3://abc/x//y",
            "s3://abc/../x",
            "gs://abc",
        ] {
            assert!(bad.parse::<RemoteUrl>().is_err(), "{bad}");
        }
    }
}
