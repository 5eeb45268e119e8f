//! The one page shell every HTML page of dualcheck is made in: the run
//! report, the sweep / compare / merge / zoo matrix and `dualcheck serve`'s
//! pages. One place for the skeleton and the style, so that a verdict looks
//! the same wherever it is shown, and so that no page grows its own copy.
//!
//! Pages are self-contained: the CSS is inline, nothing is loaded from any
//! network (the report is opened from disk, or behind serve's
//! Content-Security-Policy, which allows nothing else).

use maud::{html, Markup, PreEscaped, DOCTYPE};

/// What kind of page: each has its own width (a report reads as a document,
/// the matrices and the run list are as wide as their tables).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `report.html`: a run's report.
    Report,
    /// `sweep.html`, `compare.html`, `merge.html`, `zoo.html`: one row per cell.
    Matrix,
    /// `dualcheck serve`: the run list and the directory listings.
    Listing,
}

impl Kind {
    fn class(self) -> &'static str {
        match self {
            Kind::Report => "report",
            Kind::Matrix => "matrix",
            Kind::Listing => "listing",
        }
    }
}

/// The shared style. Verdicts have one colour each on every page: green
/// valid, red invalid (and a sweep's `INVALID` / `error`), yellow unknown,
/// grey unreadable.
pub const CSS: &str = "\
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em;color:#222}\
body.report{max-width:1100px}body.listing{margin:1.5em}\
h1{margin-bottom:.2em}h2{margin-top:1.6em;border-bottom:1px solid #ddd}\
table{border-collapse:collapse;margin:.6em 0}\
td,th{border:1px solid #ddd;padding:3px 8px;text-align:left;vertical-align:top;font-size:.92em}\
th{background:#f5f5f5}td.num,th.num{text-align:right}\
.valid{background:#e3f4e3;color:#1a6b1a}.invalid,.INVALID,.error{background:#fbe3e3;color:#a11}\
.unknown{background:#fff2c0;color:#555}.unreadable{background:#e6e6e6}\
td.INVALID,td.error,td.valid{font-weight:bold}\
.verdict{font-weight:bold}\
p .verdict{font-size:1.6em;padding:.4em .8em;border-radius:6px;display:inline-block}\
td.failed,span.failed{color:#a11;font-weight:bold}\
td.bad{background:#fbe3e3;font-weight:bold}td.warn{background:#fff3d6}\
.legend span{display:inline-block;margin-right:1.2em;font-size:.9em}\
.sw{display:inline-block;width:12px;height:12px;border-radius:2px;margin-right:4px;vertical-align:middle}\
pre{background:#f7f7f7;padding:.6em;overflow:auto;max-height:24em;font-size:.85em}\
.plot svg{max-width:100%;height:auto}\
.run-in-group td:first-child{padding-left:1.5em}.problem{color:#933;font-weight:normal}\
code{background:#f3f3f3;padding:0 .2em}";

/// A whole page: the doctype, `title`, the shared style, `body`, and an
/// inline `script` at its end when the page needs one (only serve's filter
/// form does; a report has none).
pub fn page(kind: Kind, title: &str, body: Markup, script: Option<&'static str>) -> String {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                title { (title) }
                style { (PreEscaped(CSS)) }
            }
            body class=(kind.class()) {
                (body)
                @if let Some(s) = script {
                    script { (PreEscaped(s)) }
                }
            }
        }
    }
    .into_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shell_escapes_its_title_and_loads_nothing() {
        let p = page(Kind::Report, "naive <x>", html! { p { "hi" } }, None);
        assert!(p.starts_with(
            "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>naive &lt;x&gt;</title>"
        ));
        assert!(p.contains("<body class=\"report\"><p>hi</p></body>"), "{p}");
        assert!(!p.contains("http") && !p.contains("<script"), "{p}");
    }
}
