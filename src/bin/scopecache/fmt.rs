//! Human-readable output: sizes, counts, times and aligned tables.

use chrono::{DateTime, SecondsFormat, Utc};

/// A byte count in B, KB, MB, GB or TB (powers of 1024, as the original's
/// `total_size_mb`).
pub fn size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KB", "MB", "GB", "TB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if v < 10.0 {
        format!("{v:.2} {}", UNITS[u])
    } else if v < 100.0 {
        format!("{v:.1} {}", UNITS[u])
    } else {
        format!("{v:.0} {}", UNITS[u])
    }
}

/// A count with thousands separators: `1,234,567`.
pub fn num(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A duration in nanoseconds, seconds or minutes, to three significant-ish digits.
pub fn secs(s: f64) -> String {
    if s < 1e-6 {
        format!("{:.0} ns", s * 1e9)
    } else if s < 1e-3 {
        format!("{:.1} µs", s * 1e6)
    } else if s < 1.0 {
        format!("{:.1} ms", s * 1e3)
    } else {
        format!("{s:.2} s")
    }
}

/// How long ago `t` was, seen from `now`: "just now", "42 s ago",
/// "3 min ago", "5 h ago", "2 days ago"; "in 3 min" for a time to come.
pub fn ago(t: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let d = now.signed_duration_since(t).num_seconds();
    let (future, s) = (d < 0, d.unsigned_abs());
    let span = if s < 60 {
        format!("{s} s")
    } else if s < 3600 {
        format!("{} min", s / 60)
    } else if s < 48 * 3600 {
        format!("{} h", s / 3600)
    } else {
        format!("{} days", s / 86400)
    };
    if s < 2 {
        "just now".into()
    } else if future {
        format!("in {span}")
    } else {
        format!("{span} ago")
    }
}

/// An instant as RFC 3339 (UTC, whole seconds).
pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// An instant both ways: "2026-11-24T19:02:08Z (3 min ago)".
pub fn when(t: DateTime<Utc>, now: DateTime<Utc>) -> String {
    format!("{} ({})", rfc3339(t), ago(t, now))
}

/// Lines of "label  value" with the values aligned.
pub fn pairs(rows: &[(&str, String)]) -> String {
    let w = rows.iter().map(|(k, _)| k.chars().count()).max().unwrap_or(0);
    let mut out = String::new();
    for (k, v) in rows {
        out.push_str(&format!("{k:<w$}  {v}\n"));
    }
    out
}

/// A table with a header row; columns flagged in `right` are right-aligned.
pub fn table(headers: &[&str], right: &[bool], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(c.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| -> String {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            let w = widths.get(i).copied().unwrap_or(0);
            let pad = w.saturating_sub(c.chars().count());
            if i > 0 {
                s.push_str("  ");
            }
            if right.get(i).copied().unwrap_or(false) {
                s.push_str(&" ".repeat(pad));
                s.push_str(c);
            } else {
                s.push_str(c);
                if i + 1 < cells.len() {
                    s.push_str(&" ".repeat(pad));
                }
            }
        }
        s.push('\n');
        s
    };
    let mut out = line(headers.to_vec());
    for r in rows {
        out.push_str(&line(r.iter().map(String::as_str).collect()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn sizes_and_counts() {
        assert_eq!(size(0), "0 B");
        assert_eq!(size(1023), "1023 B");
        assert_eq!(size(1536), "1.50 KB");
        assert_eq!(size(50 << 20), "50.0 MB");
        assert_eq!(size(300 << 30), "300 GB");
        assert_eq!(num(0), "0");
        assert_eq!(num(999), "999");
        assert_eq!(num(1000), "1,000");
        assert_eq!(num(1234567), "1,234,567");
    }

    #[test]
    fn relative_times() {
        let now = Utc.with_ymd_and_hms(2026, 1, 10, 12, 0, 0).unwrap();
        let at = |s: i64| now - chrono::Duration::seconds(s);
        assert_eq!(ago(at(0), now), "just now");
        assert_eq!(ago(at(42), now), "42 s ago");
        assert_eq!(ago(at(180), now), "3 min ago");
        assert_eq!(ago(at(5 * 3600), now), "5 h ago");
        assert_eq!(ago(at(3 * 86400), now), "3 days ago");
        assert_eq!(ago(at(-600), now), "in 10 min");
        assert_eq!(rfc3339(now), "2026-01-10T12:00:00Z");
    }

    #[test]
    fn tables_align() {
        let t = table(
            &["KEY", "N"],
            &[false, true],
            &[vec!["a".into(), "1".into()], vec!["bbb".into(), "100".into()]],
        );
        assert_eq!(t, "KEY    N\na      1\nbbb  100\n");
    }
}
