//! The local cache (`$DUALCHECK_CACHE`, default `~/.cache/dualcheck`): where
//! `ci/setup` puts the services, and the templates runs copy to start faster
//! (a fresh `initdb`, formatted Kafka storage). A leaf of `env`: every service
//! module reads it, it reads none of them.

use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

/// The cache directory `ci/setup` fills: `$DUALCHECK_CACHE`, else `$HOME/.cache/dualcheck`.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("DUALCHECK_CACHE") {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
    Path::new(&home).join(".cache/dualcheck")
}

/// Copies a directory tree of plain files, each directory with its
/// permissions, every entry owned by `owner` (uid, gid) when given.
pub fn copy_tree(from: &Path, to: &Path, owner: Option<(u32, u32)>) -> Result<()> {
    std::fs::create_dir_all(to).with_context(|| format!("creating {}", to.display()))?;
    let meta = std::fs::metadata(from).with_context(|| format!("reading {}", from.display()))?;
    std::fs::set_permissions(to, meta.permissions())
        .with_context(|| format!("setting the mode of {}", to.display()))?;
    let own = |path: &Path| -> Result<()> {
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(path, Some(uid), Some(gid))
                .with_context(|| format!("chown {}", path.display()))?;
        }
        Ok(())
    };
    own(to)?;
    for entry in std::fs::read_dir(from).with_context(|| format!("reading {}", from.display()))? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_tree(&entry.path(), &target, owner)?;
        } else {
            std::fs::copy(entry.path(), &target)
                .with_context(|| format!("copying {} to {}", entry.path().display(), target.display()))?;
            own(&target)?;
        }
    }
    Ok(())
}

/// Keeps a template in the cache: each `(from, rel)` copied to `template/rel`
/// with a `complete` marker, written beside it and renamed into place, so
/// concurrent runs never see half of one (the first to finish keeps its own).
pub fn keep_template(template: &Path, parts: &[(PathBuf, PathBuf)]) -> Result<()> {
    let parent = template.parent().context("a template has a parent")?;
    std::fs::create_dir_all(parent)?;
    let staging = parent.join(format!(".staging-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    for (from, rel) in parts {
        copy_tree(from, &staging.join(rel), None)?;
    }
    std::fs::write(staging.join("complete"), "")?;
    if std::fs::rename(&staging, template).is_err() {
        // Another run kept one first.
        let _ = std::fs::remove_dir_all(&staging);
    }
    Ok(())
}
