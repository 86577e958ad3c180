//! The commands of the coverage algebra: union, intersection, difference,
//! covered and counts.

use crate::fmt::{num, pairs, secs, table};
use crate::ops::{lib, open_existing};
use crate::{print_json, CmdResult, ConfigArgs, Failure, EXIT_OK};
use clap::Args;
use scopecache::{algebra, Coverage, Scope, ScopeCache};
use serde_json::json;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// `union` and `intersection`: a cache file, the key to store under, the inputs.
#[derive(Args, Debug)]
pub struct SetArgs {
    /// The cache file.
    pub file: PathBuf,
    /// The key the result is stored under (replacing any entry there).
    pub out_key: String,
    /// The input scopes; they must share their node and link id mappings.
    #[arg(required = true, num_args = 1..)]
    pub keys: Vec<String>,
    #[command(flatten)]
    pub config: ConfigArgs,
}

/// `difference`: the result, the scope to start from, the scopes to take away.
#[derive(Args, Debug)]
pub struct DiffArgs {
    /// The cache file.
    pub file: PathBuf,
    /// The key the result is stored under (replacing any entry there).
    pub out_key: String,
    /// The scope whose coverage is kept...
    pub key: String,
    /// ...less what any of these scopes cover.
    #[arg(required = true, num_args = 1..)]
    pub minus: Vec<String>,
    #[command(flatten)]
    pub config: ConfigArgs,
}

/// `covered FILE KEY`.
#[derive(Args, Debug)]
pub struct CoveredArgs {
    /// The cache file.
    pub file: PathBuf,
    /// The scope.
    pub key: String,
    /// List the covered links instead of the covered nodes.
    #[arg(long)]
    pub links: bool,
    /// Print at most this many ids (the first in index order).
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
    #[command(flatten)]
    pub config: ConfigArgs,
}

/// `counts FILE KEY...`.
#[derive(Args, Debug)]
pub struct CountsArgs {
    /// The cache file.
    pub file: PathBuf,
    /// The scopes; they must share their node and link id mappings.
    #[arg(required = true, num_args = 1..)]
    pub keys: Vec<String>,
    /// Print the N least covered ids (by count, then index order).
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub least: usize,
    /// Count links instead of nodes.
    #[arg(long)]
    pub links: bool,
    #[command(flatten)]
    pub config: ConfigArgs,
}

/// Gets every key, or fails naming the first one missing.
fn get_all(cache: &ScopeCache, file: &Path, keys: &[String]) -> Result<Vec<Scope>, Failure> {
    keys.iter()
        .map(|k| {
            cache
                .get(k)
                .map_err(lib(file))?
                .ok_or_else(|| Failure::at(file, format!("no entry {k:?}")))
        })
        .collect()
}

/// Which set operation.
#[derive(Clone, Copy, Debug)]
pub enum SetOp {
    /// Covered by any input.
    Union,
    /// Covered by every input.
    Intersection,
}

impl SetOp {
    fn name(self) -> &'static str {
        match self {
            SetOp::Union => "union",
            SetOp::Intersection => "intersection",
        }
    }
}

/// `union` / `intersection FILE OUT_KEY KEY...`.
pub fn set(op: SetOp, a: &SetArgs, json: bool) -> CmdResult {
    let cache = open_existing(&a.file, &a.config, false)?;
    let scopes = get_all(&cache, &a.file, &a.keys)?;
    let refs: Vec<&Scope> = scopes.iter().collect();
    let t = Instant::now();
    let c = match op {
        SetOp::Union => algebra::union(&refs),
        SetOp::Intersection => algebra::intersection(&refs),
    }
    .map_err(lib(&a.file))?;
    let took = t.elapsed().as_secs_f64();
    store(
        &cache,
        &a.file,
        op.name(),
        &a.out_key,
        &a.keys,
        &c,
        &scopes[0],
        took,
        json,
    )
}

/// `difference FILE OUT_KEY KEY MINUS...`.
pub fn difference(a: &DiffArgs, json: bool) -> CmdResult {
    let cache = open_existing(&a.file, &a.config, false)?;
    let first = get_all(&cache, &a.file, std::slice::from_ref(&a.key))?;
    let minus = get_all(&cache, &a.file, &a.minus)?;
    let refs: Vec<&Scope> = minus.iter().collect();
    let t = Instant::now();
    let c = algebra::difference_all(&first[0], &refs).map_err(lib(&a.file))?;
    let took = t.elapsed().as_secs_f64();
    let mut keys = vec![a.key.clone()];
    keys.extend(a.minus.iter().cloned());
    store(
        &cache,
        &a.file,
        "difference",
        &a.out_key,
        &keys,
        &c,
        &first[0],
        took,
        json,
    )
}

/// Stores a result with the mappings of `like` and reports it.
#[allow(clippy::too_many_arguments)]
fn store(
    cache: &ScopeCache,
    file: &Path,
    op: &str,
    out_key: &str,
    inputs: &[String],
    c: &Coverage,
    like: &Scope,
    took: f64,
    json: bool,
) -> CmdResult {
    let attrs = json!({ "op": op, "inputs": inputs });
    let attrs = attrs.as_object().cloned().unwrap_or_default();
    cache.put_coverage(out_key, c, like, &attrs).map_err(lib(file))?;
    let (n, l) = (c.nodes.count_ones() as u64, c.links.count_ones() as u64);
    let (tn, tl) = (c.nodes.len() as u64, c.links.len() as u64);
    if json {
        print_json(&json!({
            "key": out_key,
            "op": op,
            "inputs": inputs,
            "nodes_covered": n,
            "links_covered": l,
            "total_nodes": tn,
            "total_links": tl,
            "seconds": took,
        }))?;
    } else {
        print!(
            "{}",
            pairs(&[
                ("stored", format!("{out_key:?} = {op} of {} scopes", inputs.len())),
                ("nodes covered", format!("{} of {}", num(n), num(tn))),
                ("links covered", format!("{} of {}", num(l), num(tl))),
                ("computed in", secs(took)),
            ])
        );
    }
    Ok(EXIT_OK)
}

/// `covered FILE KEY [--links] [--limit N]`.
pub fn covered(a: &CoveredArgs, json: bool) -> CmdResult {
    let cache = open_existing(&a.file, &a.config, true)?;
    let s = &get_all(&cache, &a.file, std::slice::from_ref(&a.key))?[0];
    let (what, total, covered) = if a.links {
        ("links", s.links().len(), s.links().count_ones())
    } else {
        ("nodes", s.nodes().len(), s.nodes().count_ones())
    };
    let limit = a.limit.unwrap_or(usize::MAX);
    let ids = if a.links {
        s.try_covered_link_ids()
    } else {
        s.try_covered_node_ids()
    };
    if json {
        let ids: Vec<&str> = ids.take(limit).collect::<Result<_, _>>().map_err(lib(&a.file))?;
        print_json(&json!({
            "key": a.key,
            "what": what,
            "total": total,
            "covered": covered,
            "ids": ids,
        }))?;
        return Ok(EXIT_OK);
    }
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut shown = 0usize;
    for id in ids.take(limit) {
        let id = id.map_err(lib(&a.file))?;
        if writeln!(out, "{id}").is_err() {
            // A closed pipe (`| head`): stop quietly.
            return Ok(EXIT_OK);
        }
        shown += 1;
    }
    if out.flush().is_err() {
        return Ok(EXIT_OK);
    }
    eprintln!(
        "{} of {} {what} covered{}",
        num(covered as u64),
        num(total as u64),
        if shown < covered {
            format!(" (showing {})", num(shown as u64))
        } else {
            String::new()
        }
    );
    Ok(EXIT_OK)
}

/// `counts FILE KEY... --least N [--links]`.
pub fn counts(a: &CountsArgs, json: bool) -> CmdResult {
    let cache = open_existing(&a.file, &a.config, true)?;
    let scopes = get_all(&cache, &a.file, &a.keys)?;
    let refs: Vec<&Scope> = scopes.iter().collect();
    let t = Instant::now();
    let c = algebra::counts(&refs).map_err(lib(&a.file))?;
    let took = t.elapsed().as_secs_f64();
    let (what, counts, map) = if a.links {
        ("links", &c.links, scopes[0].link_ids())
    } else {
        ("nodes", &c.nodes, scopes[0].node_ids())
    };
    let k = scopes.len() as u32;
    let none = counts.iter().filter(|&&c| c == 0).count() as u64;
    let all = counts.iter().filter(|&&c| c == k).count() as u64;
    let least = algebra::least(counts, a.least);
    let mut rows = Vec::with_capacity(least.len());
    for &(i, n) in &least {
        let id = map
            .try_id(i)
            .map_err(lib(&a.file))?
            .ok_or_else(|| Failure::at(&a.file, format!("{what} id {i} is missing from its mapping")))?;
        rows.push((i, id, n));
    }
    if json {
        let least: Vec<_> = rows
            .iter()
            .map(|(i, id, n)| json!({ "index": i, "id": id, "count": n }))
            .collect();
        print_json(&json!({
            "keys": a.keys,
            "what": what,
            "total": counts.len(),
            "covered_by_none": none,
            "covered_by_all": all,
            "least": least,
            "seconds": took,
        }))?;
        return Ok(EXIT_OK);
    }
    print!(
        "{}",
        pairs(&[
            ("scopes", num(u64::from(k))),
            (what, num(counts.len() as u64)),
            ("covered by none", num(none)),
            ("covered by all", num(all)),
            ("counted in", secs(took)),
        ])
    );
    if !rows.is_empty() {
        println!();
        let body: Vec<Vec<String>> = rows
            .iter()
            .map(|(i, id, n)| vec![(*id).to_owned(), num(u64::from(*i)), num(u64::from(*n))])
            .collect();
        print!(
            "{}",
            table(&["ID", "INDEX", "COUNT"], &[false, true, true], &body)
        );
    }
    Ok(EXIT_OK)
}
