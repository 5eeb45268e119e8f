//! One table, three renderings: aligned text for the terminal, Markdown for
//! docs and issues, HTML for the pages. Every command that prints or shows a
//! table builds a [`Table`], so the three never drift apart and each escapes
//! what it must in one place.

use maud::{html, Markup};
use unicode_width::UnicodeWidthStr;

/// Where a column's cells sit in their width.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Align {
    /// Text and names: read from the left.
    #[default]
    Left,
    /// Figures: units and decimals line up on the right.
    Right,
}

/// A column: its header, how its cells align, and what the header means.
#[derive(Debug, Clone)]
pub struct Column {
    /// The header, as shown.
    pub header: String,
    /// How the cells (and the header) align.
    pub align: Align,
    /// The narrowest the column is in text, so that tables printed one after
    /// another (bench's sittings in docs/performance.md) keep their columns.
    pub min_width: usize,
    /// A longer description: the HTML header's tooltip.
    pub title: Option<String>,
    /// Spaces before the column in text when it stands further apart than
    /// the table's gap (bench's `valid` after its figures); `None`: the gap.
    pub space_before: Option<usize>,
}

impl Column {
    /// A left-aligned column.
    pub fn left(header: impl Into<String>) -> Column {
        Column {
            header: header.into(),
            align: Align::Left,
            min_width: 0,
            title: None,
            space_before: None,
        }
    }

    /// A right-aligned column (figures).
    pub fn right(header: impl Into<String>) -> Column {
        Column {
            align: Align::Right,
            ..Column::left(header)
        }
    }

    /// The same column, at least `width` characters wide in text.
    pub fn min_width(mut self, width: usize) -> Column {
        self.min_width = width;
        self
    }

    /// The same column, `spaces` apart from the one before it in text.
    pub fn space_before(mut self, spaces: usize) -> Column {
        self.space_before = Some(spaces);
        self
    }

    /// The same column, with a tooltip on its HTML header.
    pub fn title(mut self, title: impl Into<String>) -> Column {
        self.title = Some(title.into());
        self
    }
}

/// One cell: its text (all that text and Markdown show) and, for the pages,
/// a class and richer markup when plain text says less than the page should.
#[derive(Debug, Clone, Default)]
pub struct Cell {
    /// The cell as text.
    pub text: String,
    /// The HTML cell's class (a verdict's colour, a violation's mark).
    pub class: Option<String>,
    /// What the HTML cell holds instead of the escaped text (links, bold).
    pub html: Option<Markup>,
}

impl Cell {
    /// A cell of plain text.
    pub fn new(text: impl Into<String>) -> Cell {
        Cell {
            text: text.into(),
            ..Cell::default()
        }
    }

    /// The same cell with a class on the page.
    pub fn class(mut self, class: impl Into<String>) -> Cell {
        self.class = Some(class.into());
        self
    }

    /// The same cell showing `markup` on the page (the text stays for text and Markdown).
    pub fn html(mut self, markup: Markup) -> Cell {
        self.html = Some(markup);
        self
    }
}

impl From<String> for Cell {
    fn from(text: String) -> Cell {
        Cell::new(text)
    }
}

impl From<&str> for Cell {
    fn from(text: &str) -> Cell {
        Cell::new(text)
    }
}

impl From<&String> for Cell {
    fn from(text: &String) -> Cell {
        Cell::new(text.as_str())
    }
}

/// A row: its cells, and a class for the page's `<tr>`.
#[derive(Debug, Clone, Default)]
pub struct Row {
    /// The cells, one per column (missing ones are empty).
    pub cells: Vec<Cell>,
    /// The HTML row's class (a run inside a group, a fault that never took effect).
    pub class: Option<String>,
}

/// A table: columns, rows, and how it is laid out.
#[derive(Debug, Clone)]
pub struct Table {
    columns: Vec<Column>,
    rows: Vec<Row>,
    gap: usize,
    header_row: bool,
    row_headers: bool,
}

impl Table {
    /// A table with these columns, text columns two spaces apart.
    pub fn new(columns: impl IntoIterator<Item = Column>) -> Table {
        Table {
            columns: columns.into_iter().collect(),
            rows: Vec::new(),
            gap: 2,
            header_row: true,
            row_headers: false,
        }
    }

    /// A table of left-aligned columns named `headers`.
    pub fn left(headers: impl IntoIterator<Item = impl Into<String>>) -> Table {
        Table::new(headers.into_iter().map(Column::left))
    }

    /// A table of names and values, one fact per row: no header row, the
    /// name of each row a header cell (the report's figures and configuration).
    pub fn facts() -> Table {
        Table {
            header_row: false,
            row_headers: true,
            ..Table::left(["", ""])
        }
    }

    /// The same table with text columns `gap` spaces apart.
    pub fn gap(mut self, gap: usize) -> Table {
        self.gap = gap;
        self
    }

    /// Adds a row of cells.
    pub fn push<C: Into<Cell>>(&mut self, cells: impl IntoIterator<Item = C>) {
        self.push_row(Row {
            cells: cells.into_iter().map(Into::into).collect(),
            class: None,
        });
    }

    /// Adds a row with its class.
    pub fn push_row(&mut self, row: Row) {
        self.rows.push(row);
    }

    /// Rows so far.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether there is no row.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    fn cell(row: &Row, i: usize) -> &str {
        row.cells.get(i).map_or("", |c| c.text.as_str())
    }

    /// Aligned text, one line per row (the header first), cells padded to the
    /// display width of the widest (by characters on screen, not bytes: a
    /// `×` or a `→` takes one column), trailing spaces trimmed.
    pub fn text(&self) -> String {
        let widths: Vec<usize> = self
            .columns
            .iter()
            .enumerate()
            .map(|(i, c)| {
                self.rows
                    .iter()
                    .map(|r| Self::cell(r, i).width())
                    .chain([if self.header_row { c.header.width() } else { 0 }, c.min_width])
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let line = |cells: Vec<&str>| -> String {
            let mut out = String::new();
            for (i, ((text, col), &w)) in cells.iter().zip(&self.columns).zip(&widths).enumerate() {
                if i > 0 {
                    out.push_str(&" ".repeat(col.space_before.unwrap_or(self.gap)));
                }
                let pad = " ".repeat(w.saturating_sub(text.width()));
                match col.align {
                    Align::Left => out.push_str(&format!("{text}{pad}")),
                    Align::Right => out.push_str(&format!("{pad}{text}")),
                }
            }
            out.trim_end().to_string() + "\n"
        };
        let mut out = String::new();
        if self.header_row {
            out.push_str(&line(self.columns.iter().map(|c| c.header.as_str()).collect()));
        }
        for r in &self.rows {
            out.push_str(&line((0..self.columns.len()).map(|i| Self::cell(r, i)).collect()));
        }
        out
    }

    /// Markdown: the header row, its alignment row (`---` left, `---:`
    /// right), one row per row; a `|` in a cell is escaped (`\|`) so that it
    /// does not split the cell, and a line break becomes a space.
    pub fn markdown(&self) -> String {
        let md = |s: &str| s.replace('|', "\\|").replace(['\n', '\r'], " ");
        let line = |cells: Vec<String>| format!("| {} |\n", cells.join(" | "));
        let mut out = line(self.columns.iter().map(|c| md(&c.header)).collect());
        out.push('|');
        for c in &self.columns {
            out.push_str(match c.align {
                Align::Left => "---|",
                Align::Right => "---:|",
            });
        }
        out.push('\n');
        for r in &self.rows {
            out.push_str(&line((0..self.columns.len()).map(|i| md(Self::cell(r, i))).collect()));
        }
        out
    }

    /// The HTML table (`id` for the pages' tests and anchors); everything
    /// shown is escaped by the template, except markup a cell was given.
    pub fn html(&self, id: Option<&str>) -> Markup {
        let class = |c: &Column, own: Option<&str>| -> Option<String> {
            let align = (c.align == Align::Right).then_some("num");
            match (align, own) {
                (None, None) => None,
                (Some(a), None) => Some(a.to_string()),
                (None, Some(o)) => Some(o.to_string()),
                (Some(a), Some(o)) => Some(format!("{o} {a}")),
            }
        };
        html! {
            table id=[id] {
                @if self.header_row {
                    thead { tr { @for c in &self.columns {
                        th class=[class(c, None)] title=[c.title.as_deref()] { (c.header) }
                    } } }
                }
                tbody { @for r in &self.rows {
                    tr class=[r.class.as_deref()] {
                        @for (i, c) in self.columns.iter().enumerate() {
                            @let cell = r.cells.get(i);
                            @let own = cell.and_then(|c| c.class.as_deref());
                            @let content = html! { @match cell {
                                Some(Cell { html: Some(m), .. }) => (m),
                                Some(cell) => (cell.text),
                                None => "",
                            } };
                            @if self.row_headers && i == 0 {
                                th class=[class(c, own)] { (content) }
                            } @else {
                                td class=[class(c, own)] { (content) }
                            }
                        }
                    }
                } }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Table {
        let mut t = Table::new([Column::left("name"), Column::right("n")]);
        t.push(["naïve × kafka", "7"]);
        t.push(["a|b <x>", "12"]);
        t
    }

    #[test]
    fn text_aligns_by_characters_not_bytes() {
        let text = sample().text();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "name            n");
        assert_eq!(lines[1], "naïve × kafka   7");
        assert_eq!(lines[2], "a|b <x>        12");
        let widths: Vec<usize> = lines.iter().map(|l| l.chars().count()).collect();
        assert!(widths.iter().all(|w| *w == widths[0]), "{text}");
    }

    #[test]
    fn markdown_escapes_pipes_and_marks_alignment() {
        let md = sample().markdown();
        assert_eq!(
            md,
            "| name | n |\n|---|---:|\n| naïve × kafka | 7 |\n| a\\|b <x> | 12 |\n"
        );
    }

    #[test]
    fn html_escapes_and_keeps_given_markup() {
        let mut t = Table::new([Column::left("k").title("a \"key\""), Column::right("v")]);
        t.push([Cell::new("<script>"), Cell::new("1").class("bad")]);
        t.push_row(Row {
            cells: vec![Cell::new("never").html(html! { b { "never" } })],
            class: Some("failed".into()),
        });
        let h = t.html(Some("x")).into_string();
        assert!(
            h.starts_with("<table id=\"x\"><thead><tr><th title=\"a &quot;key&quot;\">k</th>"),
            "{h}"
        );
        assert!(h.contains("<td>&lt;script&gt;</td><td class=\"bad num\">1</td>"), "{h}");
        assert!(
            h.contains("<tr class=\"failed\"><td><b>never</b></td><td class=\"num\"></td></tr>"),
            "{h}"
        );
    }

    #[test]
    fn facts_have_no_header_row_and_name_each_row() {
        let mut t = Table::facts();
        t.push(["ops", "3 invoked"]);
        let h = t.html(None).into_string();
        assert_eq!(
            h,
            "<table><tbody><tr><th>ops</th><td>3 invoked</td></tr></tbody></table>"
        );
        assert_eq!(t.text(), "ops  3 invoked\n");
    }
}
