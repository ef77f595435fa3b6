//! The table the CLI prints for people: a header row, then one row per item, columns aligned
//! and separated by two spaces; and the formats of its cells (sizes, ages, times, errors).

use std::io::{self, Write};
use std::time::Duration;

use chrono::{DateTime, Utc};

/// What an empty cell shows.
pub(crate) const NONE: &str = "-";

/// Rows of text cells, printed with aligned columns.
///
/// Widths count characters; the last column is never padded, so a long or wide (CJK) last
/// cell does not push the others. Columns marked with [`Table::right_align`] (numbers) are
/// aligned right.
#[derive(Clone, Debug, Default)]
pub(crate) struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
    right: Vec<usize>,
}

impl Table {
    /// A table with these column titles.
    pub fn new<S: Into<String>>(header: impl IntoIterator<Item = S>) -> Self {
        Self {
            header: header.into_iter().map(Into::into).collect(),
            ..Self::default()
        }
    }

    /// A table without a title row (e.g. name and value pairs).
    pub fn headless() -> Self {
        Self::default()
    }

    /// Aligns these columns (from 0) to the right.
    pub(crate) fn right_align(mut self, columns: &[usize]) -> Self {
        self.right = columns.to_vec();
        self
    }

    /// Adds a row.
    pub fn row<S: Into<String>>(&mut self, cells: impl IntoIterator<Item = S>) {
        self.rows.push(cells.into_iter().map(Into::into).collect());
    }

    /// Prints the title row (if any) and the rows.
    pub fn write(&self, out: &mut (impl Write + ?Sized)) -> io::Result<()> {
        let lines = std::iter::once(&self.header)
            .filter(|h| !h.is_empty())
            .chain(&self.rows);
        let columns = lines.clone().map(Vec::len).max().unwrap_or(0);
        let mut widths = vec![0; columns];
        for line in lines.clone() {
            for (i, cell) in line.iter().enumerate() {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
        for line in lines {
            let mut text = String::new();
            for (i, cell) in line.iter().enumerate() {
                if i > 0 {
                    text.push_str("  ");
                }
                let pad = widths[i].saturating_sub(cell.chars().count());
                let last = i + 1 == line.len();
                if self.right.contains(&i) {
                    text.extend(std::iter::repeat_n(' ', pad));
                    text.push_str(cell);
                } else {
                    text.push_str(cell);
                    if !last {
                        text.extend(std::iter::repeat_n(' ', pad));
                    }
                }
            }
            writeln!(out, "{}", text.trim_end())?;
        }
        Ok(())
    }
}

/// A size in bytes for people: `812 B`, `1.5 KiB`, `12.3 MiB`, `2.0 GiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// A duration for people, in its two largest units (a zero second unit left out): `42s`,
/// `5m 3s`, `2h 5m`, `3d 4h`, `1d`.
pub fn age(d: Duration) -> String {
    let s = d.as_secs();
    let (days, hours, minutes, seconds) = (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60);
    let (first, second) = match (days, hours, minutes) {
        (0, 0, 0) => return format!("{seconds}s"),
        (0, 0, _) => ((minutes, 'm'), (seconds, 's')),
        (0, _, _) => ((hours, 'h'), (minutes, 'm')),
        _ => ((days, 'd'), (hours, 'h')),
    };
    match second {
        (0, _) => format!("{}{}", first.0, first.1),
        _ => format!("{}{} {}{}", first.0, first.1, second.0, second.1),
    }
}

/// A time for people, in UTC to the second: `2026-08-21 10:03:12`.
pub fn time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S").to_string()
}

/// An optional time, or [`NONE`].
pub(crate) fn maybe_time(t: Option<DateTime<Utc>>) -> String {
    t.map(time).unwrap_or_else(|| NONE.into())
}

/// Text on one line, cut to `max` characters with an ellipsis, control characters escaped
/// (a stored error may quote an upstream page); `NONE` when empty.
pub fn trimmed(text: Option<&str>, max: usize) -> String {
    let one_line = crate::redact::excerpt(text.unwrap_or_default(), max);
    if one_line.is_empty() {
        return NONE.into();
    }
    one_line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align_and_the_last_is_not_padded() {
        let mut t = Table::new(["ID", "SIZE", "NOTE"]).right_align(&[1]);
        t.row(["a", "1 B", "x"]);
        t.row(["long-id", "12.0 MiB", ""]);
        let mut out = Vec::new();
        t.write(&mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "ID           SIZE  NOTE\n\
             a             1 B  x\n\
             long-id  12.0 MiB\n"
        );
    }

    #[test]
    fn a_headless_table_prints_only_rows() {
        let mut t = Table::headless();
        t.row(["pending", "3"]);
        let mut out = Vec::new();
        t.write(&mut out).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "pending  3\n");
    }

    #[test]
    fn cells_read_well() {
        assert_eq!(bytes(812), "812 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(5 * 1024 * 1024 * 1024), "5.0 GiB");
        assert_eq!(age(Duration::from_secs(42)), "42s");
        assert_eq!(age(Duration::from_secs(303)), "5m 3s");
        assert_eq!(age(Duration::from_secs(7500)), "2h 5m");
        assert_eq!(age(Duration::from_secs(3 * 86_400 + 4 * 3600 + 5)), "3d 4h");
        assert_eq!(age(Duration::from_secs(86_400)), "1d");
        assert_eq!(age(Duration::from_secs(3600)), "1h");
        assert_eq!(trimmed(Some("a\n  b"), 10), "a b");
        assert_eq!(trimmed(Some("abcdefghijkl"), 5), "abcd…");
        assert_eq!(trimmed(None, 5), "-");
    }
}
