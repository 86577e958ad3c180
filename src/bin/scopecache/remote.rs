//! The remote-tier commands: push, pull, remote-list, remote-gc.

use crate::fmt::{ago, num, size, table};
use crate::ops::{lib, open_existing};
use crate::{print_json, progress, CmdResult, ConfigArgs, Failure, EXIT_ERROR, EXIT_OK};
use chrono::Utc;
use clap::Args;
use scopecache::remote::{GcPolicy, PullReport, PushReport, Remote, RemoteConfig};
use scopecache::ScopeCache;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Help shared by the remote commands.
pub const LONG_ABOUT: &str = "The remote is an S3-compatible bucket and prefix, s3://bucket/prefix. \
The endpoint, region and keys come from the standard AWS environment variables: AWS_ENDPOINT_URL \
(or AWS_ENDPOINT) for an S3-compatible server, AWS_REGION, AWS_ACCESS_KEY_ID, \
AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, and AWS_ALLOW_HTTP=true for a plain-HTTP endpoint.";

/// `push` and `pull`: a cache file, a remote, and keys.
#[derive(Args, Debug)]
pub struct TransferArgs {
    /// The cache file.
    pub file: PathBuf,
    /// The remote, s3://bucket/prefix.
    #[arg(long, value_name = "URL")]
    pub remote: String,
    /// The keys; none: every key (of the file for push, of the bucket for pull).
    pub keys: Vec<String>,
    #[command(flatten)]
    pub config: ConfigArgs,
}

/// `remote-list`.
#[derive(Args, Debug)]
pub struct ListArgs {
    /// The remote, s3://bucket/prefix.
    #[arg(long, value_name = "URL")]
    pub remote: String,
}

/// `remote-gc`.
#[derive(Args, Debug)]
pub struct GcArgs {
    /// The remote, s3://bucket/prefix.
    #[arg(long, value_name = "URL")]
    pub remote: String,
    /// Delete the scopes created more than this many days ago.
    #[arg(long, value_name = "DAYS")]
    pub older_than: f64,
    /// Keep unreferenced objects younger than this many hours (a push
    /// under way writes its objects before its manifest).
    #[arg(long, value_name = "HOURS", default_value_t = 1.0)]
    pub grace_hours: f64,
}

fn connect(url: &str) -> Result<Remote, Failure> {
    Remote::new(RemoteConfig::new(url).map_err(Failure::msg)?).map_err(Failure::msg)
}

#[derive(serde::Serialize)]
struct PushOut {
    remote: String,
    pushed: Vec<PushReport>,
    not_local: Vec<String>,
    seconds: f64,
}

/// `push FILE --remote URL [KEY...]`.
pub fn push(a: &TransferArgs, json: bool) -> CmdResult {
    let remote = connect(&a.remote)?;
    let cache = open_existing(&a.file, &a.config, true)?;
    let keys = if a.keys.is_empty() {
        cache
            .list()
            .map_err(lib(&a.file))?
            .into_iter()
            .map(|e| e.key)
            .collect()
    } else {
        a.keys.clone()
    };
    let t = Instant::now();
    let bar = progress::bar(keys.len() as u64, "pushing");
    let mut out = PushOut {
        remote: remote.url().to_string(),
        pushed: Vec::new(),
        not_local: Vec::new(),
        seconds: 0.0,
    };
    for k in &keys {
        match remote.push(&cache, k).map_err(lib(&a.file))? {
            Some(r) => out.pushed.push(r),
            None => out.not_local.push(k.clone()),
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    out.seconds = t.elapsed().as_secs_f64();
    if json {
        print_json(&out)?;
    } else {
        let up: u64 = out.pushed.iter().map(|r| r.bytes_uploaded).sum();
        let present: u64 = out.pushed.iter().map(|r| r.bytes_present).sum();
        println!(
            "pushed {} scopes to {} in {:.2} s: {} uploaded, {} already in the bucket",
            out.pushed.len(),
            out.remote,
            out.seconds,
            size(up),
            size(present)
        );
        for k in &out.not_local {
            eprintln!("scopecache: {}: no entry {k:?}", a.file.display());
        }
    }
    Ok(if out.not_local.is_empty() {
        EXIT_OK
    } else {
        EXIT_ERROR
    })
}

#[derive(serde::Serialize)]
struct PullOut {
    remote: String,
    pulled: Vec<PullReport>,
    not_in_bucket: Vec<String>,
    seconds: f64,
}

/// `pull FILE --remote URL [KEY...]`.
pub fn pull(a: &TransferArgs, json: bool) -> CmdResult {
    let remote = connect(&a.remote)?;
    let cache = ScopeCache::open(&a.file, a.config.config(false)).map_err(lib(&a.file))?;
    let keys = if a.keys.is_empty() {
        remote
            .list()
            .map_err(Failure::msg)?
            .into_iter()
            .map(|e| e.key)
            .collect()
    } else {
        a.keys.clone()
    };
    let t = Instant::now();
    let bar = progress::bar(keys.len() as u64, "pulling");
    let received = AtomicU64::new(0);
    let tick = |n: u64| {
        let total = received.fetch_add(n, Ordering::Relaxed) + n;
        bar.set_message(format!("pulling, {} received", size(total)));
    };
    let mut out = PullOut {
        remote: remote.url().to_string(),
        pulled: Vec::new(),
        not_in_bucket: Vec::new(),
        seconds: 0.0,
    };
    for k in &keys {
        match remote
            .pull_with_progress(&cache, k, &tick)
            .map_err(lib(&a.file))?
        {
            Some(r) => out.pulled.push(r),
            None => out.not_in_bucket.push(k.clone()),
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    out.seconds = t.elapsed().as_secs_f64();
    if json {
        print_json(&out)?;
    } else {
        let down: u64 = out.pulled.iter().map(|r| r.bytes_downloaded).sum();
        let fresh = out.pulled.iter().filter(|r| !r.up_to_date).count();
        println!(
            "pulled {fresh} scopes from {} in {:.2} s ({} downloaded); {} were up to date",
            out.remote,
            out.seconds,
            size(down),
            out.pulled.len() - fresh
        );
        for k in &out.not_in_bucket {
            eprintln!("scopecache: {}: no scope {k:?}", out.remote);
        }
    }
    Ok(if out.not_in_bucket.is_empty() {
        EXIT_OK
    } else {
        EXIT_ERROR
    })
}

/// `remote-list --remote URL`.
pub fn list(a: &ListArgs, json: bool) -> CmdResult {
    let remote = connect(&a.remote)?;
    let spin = progress::spinner("listing");
    let entries = remote.list().map_err(Failure::msg);
    spin.finish_and_clear();
    let entries = entries?;
    if json {
        print_json(&entries)?;
        return Ok(EXIT_OK);
    }
    let now = Utc::now();
    let rows: Vec<Vec<String>> = entries
        .iter()
        .map(|e| {
            vec![
                e.key.clone(),
                num(e.total_nodes),
                num(e.total_links),
                size(e.total_bytes),
                ago(e.created_at, now),
                ago(e.pushed_at, now),
            ]
        })
        .collect();
    print!(
        "{}",
        table(
            &["KEY", "NODES", "LINKS", "SIZE", "CREATED", "PUSHED"],
            &[false, true, true, true, false, false],
            &rows
        )
    );
    println!("{} scopes in {}", entries.len(), remote.url());
    Ok(EXIT_OK)
}

/// `remote-gc --remote URL --older-than DAYS`.
pub fn gc(a: &GcArgs, json: bool) -> CmdResult {
    let days = |d: f64, what: &str| {
        if d.is_finite() && d >= 0.0 {
            Ok(Duration::from_secs_f64(d))
        } else {
            Err(Failure {
                code: 2,
                msg: format!("{what} must be a number of at least 0"),
            })
        }
    };
    let policy = GcPolicy {
        max_age: days(a.older_than * 86400.0, "--older-than")?,
        grace: days(a.grace_hours * 3600.0, "--grace-hours")?,
    };
    let remote = connect(&a.remote)?;
    let spin = progress::spinner("collecting");
    let r = remote.gc(policy).map_err(Failure::msg);
    spin.finish_and_clear();
    let r = r?;
    if json {
        print_json(&r)?;
    } else {
        println!(
            "deleted {} scopes and {} objects ({}) from {}; kept {} scopes and {} objects",
            r.deleted_keys.len(),
            num(r.deleted_objects),
            size(r.deleted_bytes),
            remote.url(),
            r.kept_keys,
            num(r.kept_objects)
        );
    }
    Ok(EXIT_OK)
}
