//! The service template's keys as a user gives them (`--template FILE` and
//! the template flags), as plain data: what a run records of its template, so
//! that a replay and a printed reproduction line rebuild the same one. The
//! run crate's `template` module resolves them (reads the file, checks them).

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// The template keys as a user gives them (flags of `run` and `sweep`, as
/// plain data): the run crate's `template::ResolveTemplate::resolve` reads
/// `file`, lets every flag given override its key and checks the result.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TemplateOptions {
    /// `--template FILE`: the same keys in TOML.
    pub file: Option<PathBuf>,
    /// `--request-method` (default `POST`).
    pub request_method: Option<String>,
    /// `--request-path`: path (and query) of the write endpoint, with placeholders.
    pub request_path: Option<String>,
    /// `--request-body`: JSON body with placeholders.
    pub request_body: Option<String>,
    /// `--request-event`: JSON of one event of a multi-event op, with
    /// placeholders; the body's `{events}` is the array of these.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_event: Option<String>,
    /// `--request-header NAME: VALUE` (repeatable, with placeholders); when
    /// given, they replace the file's `headers`.
    pub request_headers: Vec<String>,
    /// `--ok-status` (default `2xx`).
    pub ok_status: Option<String>,
    /// `--fail-status` (default `4xx`).
    pub fail_status: Option<String>,
    /// `--rollback`: `none` (default), `header:NAME: VALUE` or `field:/POINTER=JSON`.
    pub rollback: Option<String>,
    /// `--read-path`: path of the read endpoint, with `{key}`.
    pub read_path: Option<String>,
    /// `--read-seq`: JSON pointer to the seq in the read's answer.
    pub read_seq: Option<String>,
    /// `--backlog-path`: an endpoint counting events not yet published.
    pub backlog_path: Option<String>,
    /// `--backlog-count`: JSON pointer to that count in its answer.
    pub backlog_count: Option<String>,
    /// `--backlog-sql`: a query on the run's database counting events not
    /// yet published (for a service without a backlog endpoint).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backlog_sql: Option<String>,
    /// `--record-op`: where the op id is in a record (JSON pointer or `header:NAME`).
    pub record_op: Option<String>,
    /// `--record-seq`: where the seq is.
    pub record_seq: Option<String>,
    /// `--record-event`: where the event id is.
    pub record_event: Option<String>,
    /// `--record-index`: where the event's index among its op's events is
    /// (multi-event ops; absent: the contract's `index` field, else 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record_index: Option<String>,
    /// `--record-key-is-business-key`: whether the record key is the op's key (default true).
    pub record_key_is_business_key: Option<bool>,
}

impl TemplateOptions {
    /// Whether any template key is given (file or flag).
    pub fn is_given(&self) -> bool {
        *self != TemplateOptions::default()
    }

    /// The flags of `dualcheck run` giving these keys (the file, when there
    /// is one, as `--template FILE`): what a reproduction line carries.
    pub fn to_args(&self) -> Vec<String> {
        let mut args = Vec::new();
        if let Some(f) = &self.file {
            args.push("--template".to_string());
            args.push(f.display().to_string());
        }
        let keys: [(&str, &Option<String>); 16] = [
            ("--request-method", &self.request_method),
            ("--request-path", &self.request_path),
            ("--request-body", &self.request_body),
            ("--request-event", &self.request_event),
            ("--ok-status", &self.ok_status),
            ("--fail-status", &self.fail_status),
            ("--rollback", &self.rollback),
            ("--read-path", &self.read_path),
            ("--read-seq", &self.read_seq),
            ("--backlog-path", &self.backlog_path),
            ("--backlog-count", &self.backlog_count),
            ("--backlog-sql", &self.backlog_sql),
            ("--record-op", &self.record_op),
            ("--record-seq", &self.record_seq),
            ("--record-event", &self.record_event),
            ("--record-index", &self.record_index),
        ];
        for (flag, value) in keys {
            if let Some(v) = value {
                args.push(flag.to_string());
                args.push(v.clone());
            }
        }
        for h in &self.request_headers {
            args.push("--request-header".to_string());
            args.push(h.clone());
        }
        if let Some(b) = self.record_key_is_business_key {
            args.push("--record-key-is-business-key".to_string());
            args.push(b.to_string());
        }
        args
    }
}

/// The value a recorded header carries in place of a credential.
pub const REDACTED_VALUE: &str = "***";

impl TemplateOptions {
    /// These keys as a run records them: the value of every header that may
    /// carry a credential (`Authorization`, `Cookie`, names with `token`,
    /// `secret`, `password` or `key`) replaced by [`REDACTED_VALUE`].
    pub fn redacted(&self) -> TemplateOptions {
        let mut out = self.clone();
        for h in &mut out.request_headers {
            if let Some((name, _)) = h.split_once(':') {
                if is_credential_header(name) {
                    *h = format!("{}: {REDACTED_VALUE}", name.trim());
                }
            }
        }
        out
    }

    /// The headers whose value was left out of the record ([`Self::redacted`]).
    pub fn redacted_headers(&self) -> Vec<String> {
        self.request_headers
            .iter()
            .filter_map(|h| h.split_once(':'))
            .filter(|(_, v)| v.trim() == REDACTED_VALUE)
            .map(|(n, _)| n.trim().to_string())
            .collect()
    }
}

/// Whether a header named `name` may carry a credential.
fn is_credential_header(name: &str) -> bool {
    let n = name.trim().to_ascii_lowercase();
    n == "authorization"
        || n == "proxy-authorization"
        || n == "cookie"
        || ["token", "secret", "password", "key"].iter().any(|w| n.contains(w))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_stay_out_of_the_record() {
        let o = TemplateOptions {
            request_headers: vec!["Authorization: Bearer abc".into(), "X-Tenant: t1".into()],
            ..Default::default()
        };
        let r = o.redacted();
        assert_eq!(r.request_headers, ["Authorization: ***", "X-Tenant: t1"]);
        assert_eq!(r.redacted_headers(), ["Authorization"]);
        assert!(o.redacted_headers().is_empty());
    }
}
