//! `export`: one scope as plain files that any tool can read.

use crate::fmt::{num, size};
use crate::ops::{lib, open_existing};
use crate::{print_json, CmdResult, ConfigArgs, Failure, EXIT_OK};
use clap::Args;
use scopecache::IdMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// The long help of `export`: the formats written.
pub const LONG_ABOUT: &str = "Write one scope out as plain files in DIR (created if missing):

  nodes.u64le, links.u64le   the bitset as raw little-endian u64 words: bit i is
                             bit (i % 64) of word i / 64 (LSB first); bits past
                             the end are zero
  nodes.npy, links.npy       NumPy .npy (version 1.0), dtype |u1 (uint8), shape (N,),
                             one byte per bit: 1 covered, 0 not
                             (numpy.load(\"nodes.npy\").astype(bool))
  node_ids.txt, link_ids.txt one id per line, UTF-8, line i = bit i; ids holding a
                             newline are refused
  attributes.json            the scope's attributes (a JSON object)
  info.json                  the entry's description, as `info --json` prints it

The cache file is opened read-only, so exporting records no access.";

/// Flags of `export`.
#[derive(Args, Debug)]
pub struct ExportArgs {
    /// The cache file.
    pub file: PathBuf,
    /// The scope's key.
    pub key: String,
    /// The directory to write the files into.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    #[command(flatten)]
    pub config: ConfigArgs,
}

/// The header of a NumPy .npy v1.0 file of `n` uint8 values in one dimension.
pub fn npy_header(n: u64) -> Vec<u8> {
    let dict = format!("{{'descr': '|u1', 'fortran_order': False, 'shape': ({n},), }}");
    // magic (6) + version (2) + header length (2) + dict, padded with
    // spaces so that the data starts on a multiple of 64, ending in '\n'.
    let unpadded = 10 + dict.len() + 1;
    let total = unpadded.div_ceil(64) * 64;
    let mut h = Vec::with_capacity(total);
    h.extend_from_slice(b"\x93NUMPY\x01\x00");
    h.extend_from_slice(&((total - 10) as u16).to_le_bytes());
    h.extend_from_slice(dict.as_bytes());
    h.resize(total - 1, b' ');
    h.push(b'\n');
    h
}

fn create(path: &Path) -> Result<BufWriter<File>, Failure> {
    File::create(path)
        .map(|f| BufWriter::with_capacity(1 << 20, f))
        .map_err(|e| Failure::at(path, e))
}

fn finish(path: &Path, mut w: BufWriter<File>) -> Result<(), Failure> {
    w.flush().map_err(|e| Failure::at(path, e))
}

fn write_words(path: &Path, words: &[u64]) -> Result<(), Failure> {
    let mut w = create(path)?;
    for word in words {
        w.write_all(&word.to_le_bytes())
            .map_err(|e| Failure::at(path, e))?;
    }
    finish(path, w)
}

fn write_npy(path: &Path, words: &[u64], bits: u64) -> Result<(), Failure> {
    let mut w = create(path)?;
    let io = |e| Failure::at(path, e);
    w.write_all(&npy_header(bits)).map_err(io)?;
    let mut left = bits;
    let mut buf = [0u8; 64];
    for &word in words {
        let take = left.min(64) as usize;
        for (j, b) in buf.iter_mut().enumerate().take(take) {
            *b = ((word >> j) & 1) as u8;
        }
        w.write_all(&buf[..take]).map_err(io)?;
        left -= take as u64;
    }
    finish(path, w)
}

fn write_ids(path: &Path, map: &IdMap, file: &Path) -> Result<(), Failure> {
    let mut w = create(path)?;
    for (i, id) in map.iter().enumerate() {
        let id = id.map_err(lib(file))?;
        if id.contains('\n') {
            return Err(Failure::at(
                path,
                format!("id {i} ({id:?}) holds a newline and cannot be written one per line"),
            ));
        }
        w.write_all(id.as_bytes()).map_err(|e| Failure::at(path, e))?;
        w.write_all(b"\n").map_err(|e| Failure::at(path, e))?;
    }
    finish(path, w)
}

fn write_json<T: serde::Serialize>(path: &Path, v: &T) -> Result<(), Failure> {
    let mut w = create(path)?;
    serde_json::to_writer_pretty(&mut w, v).map_err(|e| Failure::at(path, e))?;
    w.write_all(b"\n").map_err(|e| Failure::at(path, e))?;
    finish(path, w)
}

/// `export FILE KEY --out DIR`.
pub fn run(a: &ExportArgs, json: bool) -> CmdResult {
    let cache = open_existing(&a.file, &a.config, true)?;
    let scope = cache
        .get(&a.key)
        .map_err(lib(&a.file))?
        .ok_or_else(|| Failure::at(&a.file, format!("no entry {:?} (or it has expired)", a.key)))?;
    std::fs::create_dir_all(&a.out).map_err(|e| Failure::at(&a.out, e))?;
    let p = |name: &str| a.out.join(name);
    let info = scope.info();
    let (n, l) = (info.total_nodes, info.total_links);
    write_words(&p("nodes.u64le"), scope.node_words())?;
    write_words(&p("links.u64le"), scope.link_words())?;
    write_npy(&p("nodes.npy"), scope.node_words(), n)?;
    write_npy(&p("links.npy"), scope.link_words(), l)?;
    write_ids(&p("node_ids.txt"), scope.node_ids(), &a.file)?;
    write_ids(&p("link_ids.txt"), scope.link_ids(), &a.file)?;
    write_json(&p("attributes.json"), scope.attributes())?;
    write_json(&p("info.json"), &info)?;
    let files = [
        "nodes.u64le",
        "links.u64le",
        "nodes.npy",
        "links.npy",
        "node_ids.txt",
        "link_ids.txt",
        "attributes.json",
        "info.json",
    ];
    if json {
        print_json(&serde_json::json!({
            "key": a.key,
            "out": a.out,
            "files": files,
            "total_nodes": n,
            "total_links": l,
        }))?;
    } else {
        let bytes: u64 = files
            .iter()
            .filter_map(|f| std::fs::metadata(p(f)).ok())
            .map(|m| m.len())
            .sum();
        println!(
            "exported {:?} ({} nodes, {} links) to {}: {} files, {}",
            a.key,
            num(n),
            num(l),
            a.out.display(),
            files.len(),
            size(bytes)
        );
    }
    Ok(EXIT_OK)
}

#[cfg(test)]
mod tests {
    use super::npy_header;

    #[test]
    fn npy_header_is_aligned_and_well_formed() {
        for n in [0u64, 7, 1_000_000, u64::MAX] {
            let h = npy_header(n);
            assert_eq!(h.len() % 64, 0);
            assert_eq!(&h[..8], b"\x93NUMPY\x01\x00");
            let len = u16::from_le_bytes([h[8], h[9]]) as usize;
            assert_eq!(len + 10, h.len());
            let dict = std::str::from_utf8(&h[10..]).unwrap();
            assert!(dict.ends_with('\n'));
            assert!(dict.starts_with(&format!(
                "{{'descr': '|u1', 'fortran_order': False, 'shape': ({n},), }}"
            )));
        }
    }
}
