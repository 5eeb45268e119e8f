//! Which backend a command uses, and the external services' addresses: from
//! flags, `DUALCHECK_*` environment variables and a small `dualcheck.toml`
//! (the current directory's, or `--config FILE`), in that precedence
//! (flags > environment > file > defaults).
//!
//! ```toml
//! # dualcheck.toml
//! backend = "external"                       # local (default) | external | testcontainers
//! pg_url = "postgres://dualcheck:secret@db.internal:5432/postgres"   # admin URL
//! kafka_bootstrap = "kafka-1.internal:9092"  # direct
//! toxiproxy_url = "http://127.0.0.1:8474"    # optional
//! ```

use super::external::ExternalConfig;
use super::BackendKind;
use anyhow::{bail, Context, Result};
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// Variable naming the backend.
pub const ENV_BACKEND: &str = "DUALCHECK_BACKEND";
/// Variable with the admin Postgres URL of the external backend.
pub const ENV_PG_URL: &str = "DUALCHECK_PG_URL";
/// Variable with the direct Kafka bootstrap of the external backend.
pub const ENV_KAFKA_BOOTSTRAP: &str = "DUALCHECK_KAFKA_BOOTSTRAP";
/// Variable with the Toxiproxy API URL of the external backend.
pub const ENV_TOXIPROXY_URL: &str = "DUALCHECK_TOXIPROXY_URL";
/// Variable naming the configuration file.
pub const ENV_CONFIG: &str = "DUALCHECK_CONFIG";
/// The configuration file looked for in the current directory.
pub const CONFIG_FILE: &str = "dualcheck.toml";

/// One layer of settings (flags, environment or file); `None`: not set there.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct BackendSettings {
    /// `local`, `external` or `testcontainers`.
    pub backend: Option<String>,
    /// Admin Postgres URL (external).
    pub pg_url: Option<String>,
    /// Direct Kafka bootstrap (external).
    pub kafka_bootstrap: Option<String>,
    /// Toxiproxy API URL (external, optional).
    pub toxiproxy_url: Option<String>,
}

impl BackendSettings {
    /// The layer the `DUALCHECK_*` variables give, read through `var`.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Self {
        let get = |k: &str| var(k).filter(|v| !v.trim().is_empty());
        BackendSettings {
            backend: get(ENV_BACKEND),
            pg_url: get(ENV_PG_URL),
            kafka_bootstrap: get(ENV_KAFKA_BOOTSTRAP),
            toxiproxy_url: get(ENV_TOXIPROXY_URL),
        }
    }

    /// The layer of a `dualcheck.toml`.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        toml::from_str(&text).map_err(|e| {
            anyhow::anyhow!(
                "{}: {} (known keys: backend, pg_url, kafka_bootstrap, toxiproxy_url; see docs/backends.md)",
                path.display(),
                record::redact(&e.to_string())
            )
        })
    }

    /// `self` where set (an empty value counts as not set), else `lower`.
    pub fn over(self, lower: BackendSettings) -> BackendSettings {
        let set = |v: Option<String>| v.filter(|s| !s.trim().is_empty());
        BackendSettings {
            backend: set(self.backend).or(lower.backend),
            pg_url: set(self.pg_url).or(lower.pg_url),
            kafka_bootstrap: set(self.kafka_bootstrap).or(lower.kafka_bootstrap),
            toxiproxy_url: set(self.toxiproxy_url).or(lower.toxiproxy_url),
        }
    }

    /// The backend these (merged) settings describe; `where_` says where to fix a missing value.
    pub fn backend_kind(&self) -> Result<BackendKind> {
        match self.backend.as_deref().unwrap_or("local") {
            "local" => Ok(BackendKind::Local),
            "testcontainers" => Ok(BackendKind::Testcontainers),
            "external" => {
                let missing = |what: &str, flag: &str, var: &str, key: &str| {
                    anyhow::anyhow!(
                        "--backend external needs {what}: give {flag}, set {var} or `{key} = ...` in {CONFIG_FILE} \
                         (`dualcheck env up --env-file F` writes these variables for local services)"
                    )
                };
                let postgres_url = self
                    .pg_url
                    .clone()
                    .ok_or_else(|| missing("an admin Postgres URL", "--pg-url", ENV_PG_URL, "pg_url"))?;
                if !(postgres_url.starts_with("postgres://") || postgres_url.starts_with("postgresql://")) {
                    bail!(
                        "the Postgres URL {} must start with postgres:// (e.g. postgres://user:password@host:5432/postgres)",
                        record::redact(&postgres_url)
                    );
                }
                let kafka_bootstrap = self.kafka_bootstrap.clone().ok_or_else(|| {
                    missing(
                        "a Kafka bootstrap",
                        "--kafka-bootstrap",
                        ENV_KAFKA_BOOTSTRAP,
                        "kafka_bootstrap",
                    )
                })?;
                Ok(BackendKind::External(ExternalConfig {
                    postgres_url,
                    kafka_bootstrap,
                    toxiproxy_url: self.toxiproxy_url.clone(),
                }))
            }
            other => bail!("unknown backend `{other}`: use local, external or testcontainers"),
        }
    }
}

/// The configuration file to read: `explicit` (which must exist), else
/// `$DUALCHECK_CONFIG`, else `./dualcheck.toml` when there is one.
pub fn config_file(explicit: Option<&Path>, var: impl Fn(&str) -> Option<String>) -> Result<Option<PathBuf>> {
    if let Some(p) = explicit
        .map(Path::to_path_buf)
        .or_else(|| var(ENV_CONFIG).map(PathBuf::from))
    {
        if !p.is_file() {
            bail!("configuration file {} not found (--config / {ENV_CONFIG})", p.display());
        }
        return Ok(Some(p));
    }
    let here = PathBuf::from(CONFIG_FILE);
    Ok(here.is_file().then_some(here))
}

/// Resolves the backend: `flags` over the environment (`var`) over the file over the defaults.
pub fn resolve(
    flags: BackendSettings,
    config: Option<&Path>,
    var: impl Fn(&str) -> Option<String> + Copy,
) -> Result<BackendKind> {
    let file = match config_file(config, var)? {
        Some(p) => BackendSettings::from_file(&p)?,
        None => BackendSettings::default(),
    };
    flags
        .over(BackendSettings::from_vars(var))
        .over(file)
        .over(BackendSettings::default())
        .backend_kind()
}

/// The lines of an env file `--backend external` reads (`KEY=VALUE`, values single-quoted).
pub fn env_file(pg_url: &str, kafka_bootstrap: &str, toxiproxy_url: Option<&str>) -> String {
    // Shell-quoted: a password may hold `'`, `$` or spaces.
    let q = record::quote;
    let mut s = format!(
        "{ENV_PG_URL}={}\n{ENV_KAFKA_BOOTSTRAP}={}\n",
        q(pg_url),
        q(kafka_bootstrap)
    );
    if let Some(t) = toxiproxy_url {
        s.push_str(&format!("{ENV_TOXIPROXY_URL}={}\n", q(t)));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> + Copy {
        move |k| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string())
    }

    #[test]
    fn flags_beat_the_environment_which_beats_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("dualcheck.toml");
        std::fs::write(
            &file,
            "backend = \"external\"\npg_url = \"postgres://file@h/db\"\nkafka_bootstrap = \"file:1\"\ntoxiproxy_url = \"http://file:2\"\n",
        )
        .unwrap();
        let env = vars(&[
            ("DUALCHECK_PG_URL", "postgres://env@h/db"),
            ("DUALCHECK_KAFKA_BOOTSTRAP", "env:1"),
        ]);
        let flags = BackendSettings {
            pg_url: Some("postgres://flag@h/db".into()),
            ..Default::default()
        };
        let BackendKind::External(cfg) = resolve(flags, Some(&file), env).unwrap() else {
            panic!("external from the file")
        };
        assert_eq!(cfg.postgres_url, "postgres://flag@h/db");
        assert_eq!(cfg.kafka_bootstrap, "env:1");
        assert_eq!(cfg.toxiproxy_url.as_deref(), Some("http://file:2"));
        // The defaults: local, whatever the external settings.
        assert!(matches!(
            resolve(BackendSettings::default(), None, vars(&[("DUALCHECK_PG_URL", "x")])).unwrap(),
            BackendKind::Local
        ));
    }

    #[test]
    fn missing_and_unknown_settings_say_how_to_fix_them() {
        let e = resolve(
            BackendSettings {
                backend: Some("external".into()),
                ..Default::default()
            },
            None,
            vars(&[]),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("--pg-url") && e.contains("DUALCHECK_PG_URL"), "{e}");
        let e = BackendSettings {
            backend: Some("cloud".into()),
            ..Default::default()
        }
        .backend_kind()
        .unwrap_err()
        .to_string();
        assert!(e.contains("local, external or testcontainers"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("x.toml");
        std::fs::write(&file, "pg_ulr = \"postgres://u:hunter2@h/db\"\n").unwrap();
        let e = BackendSettings::from_file(&file).unwrap_err().to_string();
        assert!(e.contains("pg_ulr") && !e.contains("hunter2"), "{e}");
        assert!(resolve(
            BackendSettings::default(),
            Some(&dir.path().join("none.toml")),
            vars(&[])
        )
        .is_err());
    }

    #[test]
    fn the_env_file_sets_what_the_backend_reads() {
        // Read back by a shell, as `. FILE` does: a password with a quote, a
        // dollar and a space survives.
        let url = "postgres://p:it's $HOME x@h:1/postgres";
        let text = env_file(url, "h:2", Some("http://h:3"));
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("env");
        std::fs::write(&file, &text).unwrap();
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!(
                ". {}; printf '%s\\n%s\\n%s' \"$DUALCHECK_PG_URL\" \"$DUALCHECK_KAFKA_BOOTSTRAP\" \"$DUALCHECK_TOXIPROXY_URL\"",
                file.display()
            ))
            .output()
            .unwrap();
        let stdout = String::from_utf8(out.stdout).unwrap();
        let lines: Vec<(String, String)> = [ENV_PG_URL, ENV_KAFKA_BOOTSTRAP, ENV_TOXIPROXY_URL]
            .iter()
            .map(|k| k.to_string())
            .zip(stdout.lines().map(str::to_string))
            .collect();
        let read = BackendSettings::from_vars(|k| lines.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()));
        assert_eq!(read.pg_url.as_deref(), Some(url), "{text}");
        assert_eq!(read.kafka_bootstrap.as_deref(), Some("h:2"));
        assert_eq!(read.toxiproxy_url.as_deref(), Some("http://h:3"));
    }
}
