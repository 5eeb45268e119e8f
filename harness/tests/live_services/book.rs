//! The book (`book.toml` at the root, its pages in `docs/`) builds with mdbook
//! 0.5.4 (which `bash ci/setup` installs in `$DUALCHECK_CACHE/mdbook/bin`;
//! else the one on PATH) without a warning, and every link of the HTML it
//! writes reaches a page of the book and, for an anchor, an element with that
//! id. Links out of the book (to the repository's files, written as GitHub
//! addresses) are checked by the offline test `docs_consistency`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::docs::repo;

/// mdbook where `ci/setup` installs it, else on PATH.
fn mdbook() -> PathBuf {
    let installed = dualcheck::env::cache::cache_dir().join("mdbook/bin/mdbook");
    crate::support::tool("mdbook", Some(installed.clone())).unwrap_or_else(|| {
        panic!(
            "mdbook is not installed: not at {} nor on PATH; run `bash ci/setup` (it installs mdbook 0.5.4 there)",
            installed.display()
        )
    })
}

/// The values of one attribute (`href`, `id`) in an HTML text, in order.
fn attributes<'a>(html: &'a str, name: &str) -> Vec<&'a str> {
    let needle = format!(" {name}=\"");
    html.match_indices(&needle)
        .filter_map(|(at, _)| html[at + needle.len()..].split('"').next())
        .collect()
}

fn html_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            html_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "html") {
            out.push(path);
        }
    }
}

#[test]
fn the_book_builds_and_every_link_in_it_reaches_its_target() {
    let dest = std::env::temp_dir().join(format!("dualcheck-book-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dest);
    let bin = mdbook();
    let out = Command::new(&bin)
        .arg("build")
        .arg("--dest-dir")
        .arg(&dest)
        .current_dir(repo())
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", bin.display()));
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "mdbook build failed ({}):\n{log}", out.status);
    let warnings: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("WARN") || l.contains("ERROR"))
        .collect();
    assert!(warnings.is_empty(), "mdbook build warned:\n{}", warnings.join("\n"));

    let mut files = Vec::new();
    html_files(&dest, &mut files);
    assert!(files.len() > 20, "the book has only {} pages: {files:?}", files.len());
    let mut ids: BTreeMap<PathBuf, Vec<String>> = BTreeMap::new();
    let mut broken = Vec::new();
    let mut checked = 0;
    // 404.html is mdBook's own, its links made for a site root (`site-url`) we do not serve.
    for file in files.iter().filter(|f| f.file_name().is_some_and(|n| n != "404.html")) {
        let html = std::fs::read_to_string(file).unwrap();
        for href in attributes(&html, "href") {
            if href.contains("://") || href.starts_with("mailto:") || href.starts_with("javascript:") {
                continue;
            }
            let (path, anchor) = href.split_once('#').unwrap_or((href, ""));
            let target = if path.is_empty() {
                file.clone()
            } else {
                file.parent().unwrap().join(path.split('?').next().unwrap_or(path))
            };
            let shown = file.strip_prefix(&dest).unwrap().display();
            checked += 1;
            let Ok(target) = target.canonicalize() else {
                broken.push(format!("{shown}: `{href}`: no such page in the book"));
                continue;
            };
            if !target.starts_with(dest.canonicalize().unwrap()) {
                broken.push(format!(
                    "{shown}: `{href}`: leaves the book (link a repository file by its GitHub address)"
                ));
                continue;
            }
            if anchor.is_empty() || target.extension().is_none_or(|e| e != "html") {
                continue;
            }
            let known = ids.entry(target.clone()).or_insert_with(|| {
                attributes(&std::fs::read_to_string(&target).unwrap(), "id")
                    .into_iter()
                    .map(str::to_string)
                    .collect()
            });
            if !known.iter().any(|id| id == anchor) {
                broken.push(format!(
                    "{shown}: `{href}`: {} has no element with id `{anchor}`",
                    target.display()
                ));
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dest);
    assert!(checked > 200, "only {checked} links were checked");
    assert!(
        broken.is_empty(),
        "{} broken links in the book:\n{}",
        broken.len(),
        broken.join("\n")
    );
}
