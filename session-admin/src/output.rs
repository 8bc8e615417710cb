//! What a command prints: one JSON document (`--json`) or plain-text tables, and the
//! formats of times and sizes both use.

use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::cli::Exit;

/// A command's result: both renderings, and the exit code it ends with.
#[derive(Debug)]
pub(crate) struct Report {
    /// The `--json` document.
    pub json: Value,
    /// The default rendering.
    pub text: String,
    /// The exit code (0, or 3 or 4 for results that say something is missing or corrupt).
    pub exit: Exit,
}

impl Report {
    pub fn new(json: Value, text: String) -> Self {
        Self {
            json,
            text,
            exit: Exit::Ok,
        }
    }

    pub fn exit(mut self, exit: Exit) -> Self {
        self.exit = exit;
        self
    }
}

/// A table with a header, columns separated by two spaces; columns marked numeric are
/// right-aligned.
#[derive(Debug)]
pub(crate) struct Table {
    header: Vec<&'static str>,
    numeric: Vec<bool>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// Columns named `header`; a name ending in `#` marks a numeric column (the `#` is
    /// not shown).
    pub fn new(header: &[&'static str]) -> Self {
        Self {
            header: header.iter().map(|h| h.trim_end_matches('#')).collect(),
            numeric: header.iter().map(|h| h.ends_with('#')).collect(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn render(&self) -> String {
        let width = |column: usize| {
            self.rows
                .iter()
                .filter_map(|row| row.get(column))
                .map(|cell| cell.chars().count())
                .chain([self.header[column].chars().count()])
                .max()
                .unwrap_or(0)
        };
        let widths: Vec<usize> = (0..self.header.len()).map(width).collect();
        let mut out = String::new();
        let header = self.header.iter().map(|h| (*h).to_owned()).collect();
        for row in std::iter::once(&header).chain(&self.rows) {
            let mut line = String::new();
            for (column, cell) in row.iter().enumerate() {
                let w = widths.get(column).copied().unwrap_or(0);
                if column > 0 {
                    line.push_str("  ");
                }
                if self.numeric.get(column).copied().unwrap_or(false) {
                    line.push_str(&format!("{cell:>w$}"));
                } else {
                    line.push_str(&format!("{cell:<w$}"));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// `name  value` lines, names padded to one width.
pub(crate) fn pairs(pairs: &[(&str, String)]) -> String {
    let width = pairs.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    pairs
        .iter()
        .map(|(k, v)| format!("{k:<width$}  {v}\n"))
        .collect()
}

/// A time for a table: `2026-12-01 10:32:15Z` (UTC, to the second).
pub(crate) fn when(at: OffsetDateTime) -> String {
    let at = at.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}Z",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second()
    )
}

/// A time for JSON: RFC 3339, UTC, with the milliseconds the stores keep.
pub(crate) fn rfc3339(at: OffsetDateTime) -> Value {
    at.to_offset(time::UtcOffset::UTC)
        .format(&Rfc3339)
        .map_or(Value::Null, Value::String)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_text_left_and_numbers_right() {
        let mut table = Table::new(&["name", "n#"]);
        table.row(vec!["a".into(), "5".into()]);
        table.row(vec!["longer".into(), "12345".into()]);
        assert_eq!(
            table.render(),
            "name        n\na           5\nlonger  12345\n"
        );
        assert_eq!(
            pairs(&[("a", "1".into()), ("bcd", "2".into())]),
            "a    1\nbcd  2\n"
        );
    }

    #[test]
    fn times_print_in_utc() {
        let at = time::macros::datetime!(2026-12-01 11:32:15.123 +01:00);
        assert_eq!(when(at), "2026-12-01 10:32:15Z");
        assert_eq!(rfc3339(at), Value::from("2026-12-01T10:32:15.123Z"));
    }
}
