//! The Markdown of the repository as the docs' tests read it: which pages
//! there are (the book's in `docs/`, the README, the examples' READMEs), their
//! links, their headings' anchors and the command lines in their code blocks.
//! Parsed with pulldown-cmark, so a link in a code span or block is not a
//! link, and a reference-style link is resolved as GitHub and mdBook do.

use pulldown_cmark::{CodeBlockKind, Event, HeadingLevel, Options, Parser, Tag, TagEnd};
use std::path::{Path, PathBuf};

/// The repository's root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// The book's source directory (`src` in `book.toml`).
pub fn book_src() -> PathBuf {
    repo().join("docs")
}

/// Every Markdown page a reader of the repository meets: `README.md`, every
/// `.md` under `docs/`, and each example's `README.md` (not the vendored or
/// built trees under them).
pub fn pages() -> Vec<PathBuf> {
    let mut pages = vec![repo().join("README.md")];
    walk(&book_src(), &mut |p| {
        if p.extension().is_some_and(|e| e == "md") {
            pages.push(p.to_path_buf());
        }
    });
    walk(&repo().join("examples"), &mut |p| {
        if p.file_name().is_some_and(|n| n == "README.md") {
            pages.push(p.to_path_buf());
        }
    });
    pages.sort();
    pages
}

/// Calls `f` on every file under `dir`, skipping build outputs and vendored trees.
fn walk(dir: &Path, f: &mut dyn FnMut(&Path)) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    let mut entries: Vec<_> = entries.flatten().map(|e| e.path()).collect();
    entries.sort();
    for path in entries {
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        if path.is_dir() {
            if !matches!(
                name.as_ref(),
                "target" | "node_modules" | "build" | ".venv" | "venv" | "vendor"
            ) {
                walk(&path, f);
            }
        } else {
            f(&path);
        }
    }
}

/// The text of a page.
pub fn read(page: &Path) -> String {
    std::fs::read_to_string(page).unwrap_or_else(|e| panic!("{}: {e}", page.display()))
}

fn parser(text: &str) -> Parser<'_> {
    Parser::new_ext(
        text,
        Options::ENABLE_TABLES
            | Options::ENABLE_FOOTNOTES
            | Options::ENABLE_STRIKETHROUGH
            | Options::ENABLE_HEADING_ATTRIBUTES,
    )
}

/// One link (or image) of a page: its destination as written and the line it is on.
#[derive(Debug, Clone)]
pub struct Link {
    /// The destination as written (`guide/ci.md#the-action`, `https://...`).
    pub dest: String,
    /// The 1-based line of the page it is on.
    pub line: usize,
}

/// Every link and image of a page, in order.
pub fn links(text: &str) -> Vec<Link> {
    let line_of = |offset: usize| text[..offset].matches('\n').count() + 1;
    parser(text)
        .into_offset_iter()
        .filter_map(|(event, range)| match event {
            Event::Start(Tag::Link { dest_url, .. }) | Event::Start(Tag::Image { dest_url, .. }) => Some(Link {
                dest: dest_url.to_string(),
                line: line_of(range.start),
            }),
            _ => None,
        })
        .collect()
}

/// The anchors GitHub gives a page's headings: the heading's text in lower
/// case, letters, digits, `-` and `_` kept, spaces made `-`, everything else
/// dropped; a repeated anchor gets `-1`, `-2`, ... An explicit `{#id}` wins.
pub fn heading_anchors(text: &str) -> Vec<String> {
    let mut anchors: Vec<String> = Vec::new();
    let mut current: Option<(String, Option<String>)> = None;
    for event in parser(text) {
        match event {
            Event::Start(Tag::Heading { id, .. }) => current = Some((String::new(), id.map(|i| i.to_string()))),
            Event::Text(t) | Event::Code(t) => {
                if let Some((heading, _)) = current.as_mut() {
                    heading.push_str(&t);
                }
            }
            Event::End(TagEnd::Heading(_)) => {
                let (heading, id) = current.take().unwrap_or_default();
                let base = id.unwrap_or_else(|| slug(&heading));
                let mut anchor = base.clone();
                let mut n = 0;
                while anchors.contains(&anchor) {
                    n += 1;
                    anchor = format!("{base}-{n}");
                }
                anchors.push(anchor);
            }
            _ => {}
        }
    }
    anchors
}

/// The first-level and second-level headings of a page, as written (code spans' text included).
pub fn headings(text: &str, max_level: HeadingLevel) -> Vec<String> {
    let mut out = Vec::new();
    let mut current: Option<String> = None;
    for event in parser(text) {
        match event {
            Event::Start(Tag::Heading { level, .. }) if level <= max_level => current = Some(String::new()),
            Event::Text(t) | Event::Code(t) => {
                if let Some(h) = current.as_mut() {
                    h.push_str(&t);
                }
            }
            Event::End(TagEnd::Heading(_)) => out.extend(current.take()),
            _ => {}
        }
    }
    out
}

/// GitHub's anchor of one heading text.
pub fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

/// The contents of a page's fenced code blocks in a shell (`sh`, `bash`,
/// `shell`, `console`) or no language, with the line each starts on.
pub fn shell_blocks(text: &str) -> Vec<(usize, String)> {
    let line_of = |offset: usize| text[..offset].matches('\n').count() + 1;
    let mut blocks = Vec::new();
    let mut current: Option<(usize, String)> = None;
    for (event, range) in parser(text).into_offset_iter() {
        match event {
            Event::Start(Tag::CodeBlock(kind)) => {
                let shell = match &kind {
                    CodeBlockKind::Fenced(lang) => {
                        let lang = lang.split([',', ' ']).next().unwrap_or("");
                        matches!(lang, "" | "sh" | "bash" | "shell" | "console")
                    }
                    CodeBlockKind::Indented => false,
                };
                if shell {
                    current = Some((line_of(range.start) + 1, String::new()));
                }
            }
            Event::Text(t) => {
                if let Some((_, body)) = current.as_mut() {
                    body.push_str(&t);
                }
            }
            Event::End(TagEnd::CodeBlock) => blocks.extend(current.take()),
            _ => {}
        }
    }
    blocks
}

/// A page's path relative to the repository, for messages.
pub fn shown(page: &Path) -> String {
    page.strip_prefix(repo()).unwrap_or(page).display().to_string()
}
