//! The docs against the code and the binary, so that a reference fact cannot
//! drift: every link and anchor of every page reaches something, every page
//! of `docs/` is in the book, the anomaly kinds the docs name are
//! [`Anomaly::ALL`] in its order, every file a run directory holds is in
//! `docs/results.md`, and every `dualcheck` command line in a page's shell
//! blocks uses a subcommand and flags the binary has. (The flags, defaults and
//! exit codes themselves are stated once, in `docs/cli.md`, generated from the
//! binary and compared with it by `cli_reference.rs`.)

use checkers::Anomaly;
use pulldown_cmark::HeadingLevel;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::docs::{self, heading_anchors, links, pages, read, repo, shell_blocks, shown};

/// How the book's pages link a file of the repository outside `docs/`: the
/// book's HTML has no page there, so a relative link would break in it.
const REPOSITORY: &str = "https://github.com/dualcheck/dualcheck/";

/// A link's target file (absolute) and anchor, when it points into the
/// repository (relatively, or by its GitHub address `REPOSITORY{blob,tree}/main/PATH`).
fn local_target(page: &Path, dest: &str) -> Option<(PathBuf, Option<String>)> {
    let (path, anchor) = match dest.split_once('#') {
        Some((p, a)) => (p, Some(a.to_string())),
        None => (dest, None),
    };
    if let Some(in_repo) = path.strip_prefix(REPOSITORY) {
        let file = in_repo
            .strip_prefix("blob/main/")
            .or_else(|| in_repo.strip_prefix("tree/main/"))
            .map(|p| repo().join(p.trim_end_matches('/')))
            .unwrap_or_else(|| repo().join(format!("(not a blob/main or tree/main address: {dest})")));
        return Some((file, anchor));
    }
    if dest.contains("://") || dest.starts_with("mailto:") {
        return None;
    }
    let file = if path.is_empty() {
        page.to_path_buf()
    } else {
        page.parent().unwrap().join(path)
    };
    Some((file, anchor))
}

/// Whether a relative link of a book page leaves the book (`docs/`).
fn leaves_the_book(page: &Path, dest: &str) -> bool {
    let in_book = |p: &Path| p.starts_with(docs::book_src());
    in_book(page)
        && !dest.contains("://")
        && local_target(page, dest)
            .and_then(|(f, _)| f.canonicalize().ok())
            .is_some_and(|f| !in_book(&f))
}

#[test]
fn every_link_and_anchor_of_the_docs_reaches_something() {
    let mut broken = Vec::new();
    let mut anchors_of: BTreeMap<PathBuf, Vec<String>> = BTreeMap::new();
    for page in pages() {
        let text = read(&page);
        for link in links(&text) {
            let Some((file, anchor)) = local_target(&page, &link.dest) else {
                continue;
            };
            let at = format!("{}:{}: `{}`", shown(&page), link.line, link.dest);
            if !file.exists() {
                broken.push(format!("{at}: no such file {}", shown(&file)));
                continue;
            }
            let book_index = docs::book_src().join("README.md");
            if page.starts_with(docs::book_src())
                && page.file_name().is_some_and(|n| n != "SUMMARY.md")
                && page != book_index
                && file.canonicalize().ok() == book_index.canonicalize().ok()
            {
                broken.push(format!(
                    "{at}: links the book's introduction, which the book renders as index.html (the link would break there): link the page that holds the fact"
                ));
                continue;
            }
            if leaves_the_book(&page, &link.dest) {
                let path = shown(&file.canonicalize().unwrap());
                broken.push(format!(
                    "{at}: leaves the book, whose HTML has no page there: write it {REPOSITORY}{}/main/{path}",
                    if file.is_dir() { "tree" } else { "blob" }
                ));
                continue;
            }
            let Some(anchor) = anchor.filter(|a| !a.is_empty()) else {
                continue;
            };
            if file.extension().is_none_or(|e| e != "md") {
                continue; // an anchor into a source file (a line on GitHub): not checked
            }
            let key = file.canonicalize().unwrap();
            let anchors = anchors_of.entry(key).or_insert_with(|| heading_anchors(&read(&file)));
            if !anchors.contains(&anchor) {
                broken.push(format!(
                    "{at}: {} has no heading with anchor #{anchor} (its anchors: {})",
                    shown(&file),
                    anchors.join(", ")
                ));
            }
        }
    }
    assert!(
        broken.is_empty(),
        "{} broken links (fix the link, or the heading it names):\n{}",
        broken.len(),
        broken.join("\n")
    );
}

#[test]
fn every_page_of_docs_is_in_the_book() {
    let summary_path = docs::book_src().join("SUMMARY.md");
    let summary = read(&summary_path);
    let listed: BTreeSet<PathBuf> = links(&summary)
        .iter()
        .filter_map(|l| local_target(&summary_path, &l.dest))
        .map(|(f, _)| f.canonicalize().unwrap_or(f))
        .collect();
    let missing: Vec<String> = pages()
        .into_iter()
        .filter(|p| p.starts_with(docs::book_src()) && p.file_name().is_some_and(|n| n != "SUMMARY.md"))
        .filter(|p| !listed.contains(&p.canonicalize().unwrap()))
        .map(|p| shown(&p))
        .collect();
    assert!(
        missing.is_empty(),
        "pages of docs/ that the book leaves out (add each to docs/SUMMARY.md, or move it out of docs/): {missing:?}"
    );
}

fn names() -> Vec<&'static str> {
    Anomaly::ALL.iter().map(|a| a.name()).collect()
}

#[test]
fn the_anomaly_kinds_of_the_docs_are_the_checkers() {
    // docs/anomalies.md: one `## `name`` section per kind, in the order of Anomaly::ALL.
    let text = read(&repo().join("docs/anomalies.md"));
    let sections: Vec<String> = docs::headings(&text, HeadingLevel::H2)
        .into_iter()
        .filter(|h| !h.is_empty() && h.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
        .collect();
    assert_eq!(
        sections,
        names(),
        "docs/anomalies.md's sections of the anomaly kinds (`## `name``) are not Anomaly::ALL (checkers/src/anomaly.rs) in its order"
    );

    // docs/results.md: the example's `anomalies` object and the field's list of keys.
    let results = read(&repo().join("docs/results.md"));
    let example = results
        .split("```json")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("docs/results.md has no ```json example");
    let example: serde_json::Value = serde_json::from_str(example)
        .unwrap_or_else(|e| panic!("docs/results.md's first JSON example does not parse: {e}"));
    let keys: Vec<&str> = example["anomalies"]
        .as_object()
        .expect("docs/results.md's example has no `anomalies` object")
        .keys()
        .map(String::as_str)
        .collect();
    let mut expected = names();
    expected.sort();
    let mut keys_sorted = keys.clone();
    keys_sorted.sort();
    assert_eq!(keys_sorted, expected, "docs/results.md's example `anomalies` keys");
    let row = results
        .lines()
        .find(|l| l.starts_with("| `anomalies` |"))
        .expect("docs/results.md has no `anomalies` row");
    let listed: Vec<&str> = row
        .split('`')
        .skip(1)
        .step_by(2)
        .filter(|s| names().contains(s))
        .collect();
    assert_eq!(
        listed,
        names(),
        "docs/results.md's `anomalies` row lists the kinds out of order or incompletely"
    );
}

#[test]
fn every_file_of_a_run_directory_is_in_the_results_doc() {
    // The names are the constants of record/src/run_dir.rs, read from its source so a new one is
    // caught without this test knowing it.
    let source = read(&repo().join("record/src/run_dir.rs"));
    let files: Vec<&str> = source
        .lines()
        .filter_map(|l| l.trim().strip_prefix("pub const "))
        .filter(|l| l.contains(": &str = \""))
        .filter_map(|l| l.split('"').nth(1))
        .collect();
    assert!(files.len() >= 10, "read only {files:?} from record/src/run_dir.rs");
    let results = read(&repo().join("docs/results.md"));
    let missing: Vec<&&str> = files
        .iter()
        .filter(|f| !results.contains(&format!("`{f}`")) && !results.contains(&format!("`{f}/`")))
        .collect();
    assert!(
        missing.is_empty(),
        "files of a run directory (record/src/run_dir.rs) that docs/results.md#the-run-directory does not name: {missing:?}"
    );
}

/// The long flags one command's `--help` lists in its options.
fn flags_of(command: &[&str]) -> Option<BTreeSet<String>> {
    let out = Command::new(env!("CARGO_BIN_EXE_dualcheck"))
        .args(command)
        .arg("--help")
        .output()
        .unwrap();
    if !out.status.success() {
        return None;
    }
    let help = String::from_utf8_lossy(&out.stdout).into_owned();
    Some(
        help.lines()
            .map(str::trim_start)
            .filter(|l| l.starts_with('-'))
            .filter_map(|l| l.split("  ").next())
            .flat_map(|l| {
                l.split([' ', ',', '=', '[', ']', '<'])
                    .map(str::to_string)
                    .collect::<Vec<_>>()
            })
            .filter(|t| t.starts_with("--") && t.len() > 2)
            .collect(),
    )
}

/// The subcommands `dualcheck --help` lists.
fn subcommands() -> BTreeSet<String> {
    let out = Command::new(env!("CARGO_BIN_EXE_dualcheck"))
        .arg("--help")
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect()
}

/// A shell line's words, quotes kept whole (a quoted `--cmd "... --port 1"` is one word).
fn words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut quote: Option<char> = None;
    for c in line.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => {
                quote = None;
                word.push(c)
            }
            (Some(_), c) => word.push(c),
            (None, '"' | '\'') => {
                quote = Some(c);
                word.push(c)
            }
            (None, c) if c.is_whitespace() => words.extend((!word.is_empty()).then(|| std::mem::take(&mut word))),
            (None, c) => word.push(c),
        }
    }
    words.extend((!word.is_empty()).then_some(word));
    words
}

#[test]
fn commands_in_the_docs_use_flags_the_binary_has() {
    let subcommands = subcommands();
    assert!(
        subcommands.contains("run") && subcommands.contains("gate"),
        "read {subcommands:?}"
    );
    let mut helps: BTreeMap<Vec<String>, Option<BTreeSet<String>>> = BTreeMap::new();
    let mut wrong = Vec::new();
    let mut checked = 0;
    for page in pages() {
        for (first_line, block) in shell_blocks(&read(&page)) {
            let joined = block.replace("\\\n", " ");
            for (i, line) in joined.lines().enumerate() {
                let line = line.split(" #").next().unwrap_or(line);
                let words = words(line);
                for (at, w) in words.iter().enumerate() {
                    if !(w == "dualcheck" || w.ends_with("/dualcheck")) {
                        continue;
                    }
                    let mut rest = words[at + 1..]
                        .iter()
                        .map(String::as_str)
                        .skip_while(|w| *w == "--")
                        .peekable();
                    let Some(sub) = rest.next().filter(|s| subcommands.contains(*s)) else {
                        continue;
                    };
                    let mut command = vec![sub.to_string()];
                    if let Some(next) = rest
                        .peek()
                        .filter(|n| !n.starts_with('-') && ["up", "down"].contains(n))
                    {
                        command.push(next.to_string());
                    }
                    let command_refs: Vec<&str> = command.iter().map(String::as_str).collect();
                    let known = helps.entry(command.clone()).or_insert_with(|| flags_of(&command_refs));
                    let Some(known) = known else { continue };
                    checked += 1;
                    for word in rest.take_while(|w| !matches!(*w, "|" | "||" | "&&" | ";" | ">" | "2>&1")) {
                        let flag = word.trim_start_matches('[').trim_end_matches([']', ',', '.', ')']);
                        let flag = flag.split('=').next().unwrap_or(flag);
                        if flag.starts_with("--") && flag.len() > 2 && !known.contains(flag) {
                            wrong.push(format!(
                                "{}:{}: `dualcheck {}` has no flag {flag} (see `dualcheck {} --help`)",
                                shown(&page),
                                first_line + i,
                                command.join(" "),
                                command.join(" ")
                            ));
                        }
                    }
                }
            }
        }
    }
    assert!(
        checked > 20,
        "only {checked} command lines were found in the docs' shell blocks"
    );
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
