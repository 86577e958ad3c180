//! The comparison program's default run (every engine, the reader scaling
//! test on) completes at a tiny size.

use std::process::Command;

#[test]
fn every_engine_with_readers_completes() {
    let dir = std::env::temp_dir().join(format!("scopecache-compare-test-{}", std::process::id()));
    let out = Command::new(env!("CARGO_BIN_EXE_scopecache-compare"))
        .args(["--nodes", "200", "--links", "400", "--runs", "1", "--skip-python"])
        .args(["--readers", "2", "--reader-ms", "100"])
        .arg("--dir")
        .arg(&dir)
        .output()
        .expect("the comparison program runs");
    let _ = std::fs::remove_dir_all(&dir);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "exit {:?}\n{stdout}\n{stderr}", out.status);
    // scopecache and LMDB ran the scaling test; redb, which one process
    // at a time can open, is said to have none.
    assert!(stdout.contains("scopecache: 1 reader used"), "{stdout}");
    assert!(stdout.contains("lmdb: 1 reader used"), "{stdout}");
    assert!(stdout.contains("redb: no reader scaling"), "{stdout}");
}
