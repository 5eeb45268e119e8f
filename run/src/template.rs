//! Verifying a service as it is, without an adapter: a **request template**
//! turns each op into the service's own write request (method, path, JSON
//! body, headers with `{op}`, `{key}`, `{seq}`, `{payload}`) and its answer
//! into `ok`, `fail` or `info` by status class; an optional **read template**
//! reads a key back; a **record mapping** finds the op id, the seq and the
//! event id inside the service's own Kafka records (JSON pointers or header
//! names). The keys come from `--template FILE` (TOML: `[request]`, `[read]`,
//! `[records]`) and from flags, which override the file. Every mistake is
//! found here, before any service starts, and named by its flag
//! (docs/http-contract.md#templates).

use anyhow::{bail, Context, Result};
pub use record::TemplateOptions;
use serde::Deserialize;
use std::path::Path;
use workloads::{Op, OpEvent};

/// The placeholders a request template may use.
pub const PLACEHOLDERS: &[&str] = &["op", "key", "seq", "payload"];

/// The placeholders a request body may use besides [`PLACEHOLDERS`]:
/// `{events}` (the JSON array of the op's events) and `{count}` (how many).
const BODY_PLACEHOLDERS: &[&str] = &["op", "key", "seq", "payload", "events", "count"];

/// The placeholders of one event's JSON (`--request-event`): the event's key,
/// seq and index, the op's id and payload.
const EVENT_PLACEHOLDERS: &[&str] = &["op", "key", "seq", "payload", "index"];

/// The TOML file of `--template`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TemplateFile {
    #[serde(default)]
    request: RequestKeys,
    #[serde(default)]
    read: ReadKeys,
    #[serde(default)]
    records: RecordKeys,
    #[serde(default)]
    backlog: BacklogKeys,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct BacklogKeys {
    path: Option<String>,
    count: Option<String>,
    sql: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RequestKeys {
    method: Option<String>,
    path: Option<String>,
    body: Option<String>,
    event: Option<String>,
    #[serde(default)]
    headers: Vec<String>,
    ok: Option<String>,
    fail: Option<String>,
    rollback: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReadKeys {
    path: Option<String>,
    seq: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RecordKeys {
    op: Option<String>,
    seq: Option<String>,
    event: Option<String>,
    index: Option<String>,
    key_is_business_key: Option<bool>,
}

/// How the harness speaks to the service and reads its records: the exec
/// contract (`POST /ops`, `op`/`seq`/`event` in each record) where a part is
/// not given.
#[derive(Debug, Clone, Default)]
pub struct ServiceTemplate {
    /// The write request; `None`: `POST /ops` as the contract says.
    pub request: Option<RequestTemplate>,
    /// The read request; `None`: `GET /ops/{key}`.
    pub read: Option<ReadTemplate>,
    /// Where the op, seq and event id are in a record.
    pub records: RecordMapping,
    /// The service's count of events not yet published; `None`: `GET /backlog`.
    pub backlog: Option<BacklogTemplate>,
    /// The keys this template was resolved from, file and flags merged
    /// ([`ResolveTemplate::resolve`]); `None`: the contract, or a template
    /// built in code. What a run records so that a replay rebuilds it.
    pub source: Option<TemplateOptions>,
}

/// Where the count of events not yet published comes from, in place of
/// `GET /backlog` (the drain waits for 0; the operational series plots it).
#[derive(Debug, Clone, PartialEq)]
pub enum BacklogTemplate {
    /// The service's own endpoint (`--backlog-path`, `--backlog-count`).
    Endpoint {
        /// Path (and query), `GET`.
        path: String,
        /// JSON pointer to the count in the answer.
        count: String,
    },
    /// A query on the run's database yielding one integer (`--backlog-sql`),
    /// e.g. a count of the library's pending outbox rows: for a library that
    /// serves no backlog endpoint.
    Sql(String),
}

impl ServiceTemplate {
    /// What the run was told, for `environment.json` (`null` under the plain
    /// contract); header values are left out (they may be credentials).
    pub fn describe(&self) -> serde_json::Value {
        if self.request.is_none() && self.read.is_none() && self.backlog.is_none() && self.records.is_contract() {
            return serde_json::Value::Null;
        }
        let loc = |l: &Option<Locator>| l.as_ref().map(|l| l.to_string());
        serde_json::json!({
            "request": self.request.as_ref().map(|r| serde_json::json!({
                "method": r.method.as_str(),
                "path": r.path.source(),
                "body": r.body.as_ref().map(Filled::source),
                "event": r.event.as_ref().map(Filled::source),
                "header_names": r.headers.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
                "rollback": format!("{:?}", r.rollback),
            })),
            "read": self.read.as_ref().map(|r| serde_json::json!({"path": r.path.source(), "seq": r.seq})),
            "backlog": self.backlog.as_ref().map(|b| match b {
                BacklogTemplate::Endpoint { path, count } => serde_json::json!({"path": path, "count": count}),
                BacklogTemplate::Sql(sql) => serde_json::json!({"sql": sql}),
            }),
            "records": {
                "op": loc(&self.records.op),
                "seq": loc(&self.records.seq),
                "event": loc(&self.records.event),
                "index": loc(&self.records.index),
                "key_is_business_key": self.records.key_is_business_key,
            },
        })
    }
}

/// A text with placeholders, parsed once.
#[derive(Debug, Clone, PartialEq)]
pub struct Filled {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Text(String),
    Op,
    Key,
    Seq,
    Payload,
    /// The event's index (0 outside an event).
    Index,
    /// How many events the op has.
    Count,
    /// The JSON array of the op's events (bodies only), written as is.
    Events,
}

/// How a placeholder's value is written into the text.
#[derive(Clone, Copy)]
enum Escape {
    /// As is (headers).
    None,
    /// As the inside of a JSON string (bodies).
    Json,
    /// Percent-encoded (paths).
    Url,
}

impl Filled {
    /// Parses `text`; `allowed` are the placeholders this flag may use.
    fn parse(text: &str, allowed: &[&str], flag: &str) -> Result<Filled> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut rest = text;
        while let Some(i) = rest.find('{') {
            literal.push_str(&rest[..i]);
            let after = &rest[i + 1..];
            let name_len = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.'))
                .unwrap_or(after.len());
            let name = &after[..name_len];
            let is_placeholder = !name.is_empty()
                && after[name_len..].starts_with('}')
                && name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_');
            if !is_placeholder {
                literal.push('{');
                rest = after;
                continue;
            }
            if !allowed.contains(&name) {
                let known: Vec<String> = allowed.iter().map(|p| format!("{{{p}}}")).collect();
                bail!(
                    "{flag}: unknown placeholder {{{name}}} in `{text}`; it may use {}",
                    known.join(", ")
                );
            }
            if !literal.is_empty() {
                parts.push(Part::Text(std::mem::take(&mut literal)));
            }
            parts.push(match name {
                "op" => Part::Op,
                "key" => Part::Key,
                "seq" => Part::Seq,
                "index" => Part::Index,
                "count" => Part::Count,
                "events" => Part::Events,
                _ => Part::Payload,
            });
            rest = &after[name_len + 1..];
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            parts.push(Part::Text(literal));
        }
        Ok(Filled { parts })
    }

    /// The text as written, placeholders included.
    fn source(&self) -> String {
        self.parts
            .iter()
            .map(|p| match p {
                Part::Text(t) => t.as_str(),
                Part::Op => "{op}",
                Part::Key => "{key}",
                Part::Seq => "{seq}",
                Part::Payload => "{payload}",
                Part::Index => "{index}",
                Part::Count => "{count}",
                Part::Events => "{events}",
            })
            .collect()
    }

    /// Whether the text uses `{events}`.
    fn has_events(&self) -> bool {
        self.parts.contains(&Part::Events)
    }

    fn render(&self, op: &Op, escape: Escape) -> String {
        self.render_in(op, None, "[]", escape)
    }

    /// The text for `op` — for one of its events when `event` is given (its
    /// key, seq and index) — with `events` (a JSON array) for `{events}`.
    fn render_in(&self, op: &Op, event: Option<&OpEvent>, events: &str, escape: Escape) -> String {
        let mut out = String::new();
        for p in &self.parts {
            let value = match p {
                Part::Text(t) => {
                    out.push_str(t);
                    continue;
                }
                Part::Events => {
                    out.push_str(events);
                    continue;
                }
                Part::Op => op.op.to_string(),
                Part::Seq => event.map_or(op.seq, |e| e.seq).to_string(),
                Part::Key => event.map_or(&op.key, |e| &e.key).clone(),
                Part::Payload => op.payload.clone(),
                Part::Index => event.map_or(0, |e| e.index).to_string(),
                Part::Count => op.event_count().to_string(),
            };
            match escape {
                Escape::None => out.push_str(&value),
                Escape::Json => {
                    let quoted = serde_json::to_string(&value).expect("a string serializes");
                    out.push_str(&quoted[1..quoted.len() - 1]);
                }
                Escape::Url => {
                    for b in value.bytes() {
                        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                            out.push(b as char);
                        } else {
                            out.push_str(&format!("%{b:02X}"));
                        }
                    }
                }
            }
        }
        out
    }
}

/// A set of HTTP status codes: `2xx`, `201`, `200-204`, comma-separated.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusSet(Vec<(u16, u16)>);

impl StatusSet {
    fn parse(text: &str, flag: &str) -> Result<StatusSet> {
        let mut ranges = Vec::new();
        for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let lower = item.to_ascii_lowercase();
            let range = if let Some(d) = lower.strip_suffix("xx") {
                match d.parse::<u16>() {
                    Ok(n) if d.len() == 1 && (1..=5).contains(&n) => (n * 100, n * 100 + 99),
                    _ => bail!("{flag}: `{item}` is not a status class (1xx .. 5xx)"),
                }
            } else if let Some((a, b)) = lower.split_once('-') {
                match (a.trim().parse::<u16>(), b.trim().parse::<u16>()) {
                    (Ok(a), Ok(b)) if (100..=599).contains(&a) && (a..=599).contains(&b) => (a, b),
                    _ => bail!("{flag}: `{item}` is not a range of status codes (e.g. 200-204)"),
                }
            } else {
                match lower.parse::<u16>() {
                    Ok(c) if (100..=599).contains(&c) => (c, c),
                    _ => bail!("{flag}: `{item}` is not a status code, a range or a class (e.g. 201, 200-204, 2xx)"),
                }
            };
            ranges.push(range);
        }
        if ranges.is_empty() {
            bail!("{flag}: no status given (e.g. 2xx, or 200,201)");
        }
        Ok(StatusSet(ranges))
    }

    /// Whether `status` is in the set.
    pub fn contains(&self, status: u16) -> bool {
        self.0.iter().any(|&(a, b)| (a..=b).contains(&status))
    }
}

/// How an op that must roll back (`abort`) is asked for.
#[derive(Debug, Clone, PartialEq)]
pub enum Rollback {
    /// The service cannot be asked: the workload sends no aborts.
    None,
    /// This header is added to the request.
    Header(String, String),
    /// This member of the JSON body (a JSON pointer) is set to this value.
    Field(String, serde_json::Value),
}

/// The service's write request.
#[derive(Debug, Clone)]
pub struct RequestTemplate {
    /// HTTP method.
    pub method: reqwest::Method,
    path: Filled,
    body: Option<Filled>,
    /// One event's JSON, for the body's `{events}` (`None`: the contract's
    /// `{"index":..,"key":..,"seq":..}`).
    event: Option<Filled>,
    headers: Vec<(String, Filled)>,
    /// Statuses meaning the op took effect.
    pub ok: StatusSet,
    /// Statuses meaning it certainly did not (anything else: unknown).
    pub fail: StatusSet,
    /// How a rollback is asked for.
    pub rollback: Rollback,
}

/// One request, ready to send.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// Path and query.
    pub path: String,
    /// Headers.
    pub headers: Vec<(String, String)>,
    /// JSON body, if any.
    pub body: Option<String>,
}

impl RequestTemplate {
    /// The request for `op` (with the rollback marker when it aborts).
    pub fn request(&self, op: &Op) -> Request {
        let mut headers: Vec<(String, String)> = self
            .headers
            .iter()
            .map(|(n, v)| (n.clone(), v.render(op, Escape::None)))
            .collect();
        let mut body = self.body.as_ref().map(|b| {
            let events = if b.has_events() {
                self.events_json(op)
            } else {
                String::new()
            };
            b.render_in(op, None, &events, Escape::Json)
        });
        if op.abort {
            match &self.rollback {
                Rollback::None => {}
                Rollback::Header(n, v) => headers.push((n.clone(), v.clone())),
                Rollback::Field(pointer, value) => {
                    if let Some(b) = &body {
                        if let Ok(mut v) = serde_json::from_str::<serde_json::Value>(b) {
                            set_pointer(&mut v, pointer, value.clone());
                            body = Some(v.to_string());
                        }
                    }
                }
            }
        }
        Request {
            path: self.path.render(op, Escape::Url),
            headers,
            body,
        }
    }

    /// The JSON array of `op`'s events for the body's `{events}`: each the
    /// `--request-event` template filled in for it, or the contract's object.
    fn events_json(&self, op: &Op) -> String {
        let items: Vec<String> = op
            .each_event()
            .iter()
            .map(|e| match &self.event {
                Some(t) => t.render_in(op, Some(e), "[]", Escape::Json),
                None => serde_json::to_string(e).expect("an event serializes"),
            })
            .collect();
        format!("[{}]", items.join(","))
    }

    /// Whether the workload may send aborts (the service can be asked to roll back).
    pub fn can_roll_back(&self) -> bool {
        self.rollback != Rollback::None
    }
}

/// The service's read request (`--reads`).
#[derive(Debug, Clone)]
pub struct ReadTemplate {
    path: Filled,
    /// JSON pointer to the seq in the answer.
    pub seq: String,
}

impl ReadTemplate {
    /// The path reading `key`.
    pub fn path(&self, key: &str) -> String {
        let op = Op {
            op: 0,
            key: key.to_string(),
            seq: 0,
            payload: String::new(),
            abort: false,
            hold_ms: 0,
            events: vec![],
            write: Default::default(),
        };
        self.path.render(&op, Escape::Url)
    }
}

/// Where a field is in a record.
#[derive(Debug, Clone, PartialEq)]
pub enum Locator {
    /// A JSON pointer into the value.
    Pointer(String),
    /// A record header.
    Header(String),
}

impl std::fmt::Display for Locator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Locator::Pointer(p) => write!(f, "{p}"),
            Locator::Header(h) => write!(f, "header:{h}"),
        }
    }
}

/// Where the op id, the seq and the event id are in the service's records;
/// a field not given is read as the exec contract says (`op`, `seq`, `event`
/// or the `event_id` header), silently.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordMapping {
    /// `--record-op`.
    pub op: Option<Locator>,
    /// `--record-seq`.
    pub seq: Option<Locator>,
    /// `--record-event`.
    pub event: Option<Locator>,
    /// `--record-index`.
    pub index: Option<Locator>,
    /// Whether the record key is the op's business key (else it is left out
    /// of the `deliver` line and per-key order is not judged).
    pub key_is_business_key: bool,
}

impl Default for RecordMapping {
    fn default() -> Self {
        RecordMapping {
            op: None,
            seq: None,
            event: None,
            index: None,
            key_is_business_key: true,
        }
    }
}

/// What one record yielded under a mapping.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Mapped {
    /// The op id, if readable.
    pub op: Option<u64>,
    /// The seq, if readable.
    pub seq: Option<u64>,
    /// The event id, if readable.
    pub event: Option<String>,
    /// The event's index among its op's events, if the record names one.
    pub index: Option<u32>,
    /// Fields the mapping names that this record lacks: (flag, locator, why).
    pub problems: Vec<(&'static str, String, String)>,
}

impl RecordMapping {
    /// Whether this is the exec contract's reading (no field mapped).
    pub fn is_contract(&self) -> bool {
        self.op.is_none()
            && self.seq.is_none()
            && self.event.is_none()
            && self.index.is_none()
            && self.key_is_business_key
    }

    /// Reads a record's value and headers (name, value).
    pub fn read(&self, value: Option<&[u8]>, headers: &[(String, Option<Vec<u8>>)]) -> Mapped {
        let header_event = || {
            headers
                .iter()
                .find(|(k, _)| k == "event_id")
                .and_then(|(_, v)| v.as_ref())
                .and_then(|v| std::str::from_utf8(v).ok().map(String::from))
        };
        if self.is_contract() {
            // Exactly as the exec contract reads a value: all three fields or none.
            #[derive(Deserialize)]
            struct Envelope {
                op: Option<u64>,
                seq: Option<u64>,
                event: Option<String>,
                index: Option<u32>,
            }
            let e: Option<Envelope> = value.and_then(|p| serde_json::from_slice(p).ok());
            let (op, seq, event, index) = e.map_or((None, None, None, None), |e| (e.op, e.seq, e.event, e.index));
            return Mapped {
                op,
                seq,
                index: op.and(index),
                event: event.or_else(header_event),
                problems: Vec::new(),
            };
        }
        let json: Option<serde_json::Value> = value.and_then(|p| serde_json::from_slice(p).ok());
        let mut out = Mapped::default();
        let header = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k == name)
                .and_then(|(_, v)| v.as_ref())
                .map(|v| String::from_utf8_lossy(v).into_owned())
        };
        let lookup = |flag: &'static str, loc: &Locator, problems: &mut Vec<(&'static str, String, String)>| {
            let found = match loc {
                Locator::Header(h) => header(h).map(serde_json::Value::String),
                Locator::Pointer(p) => json.as_ref().and_then(|j| j.pointer(p)).cloned(),
            };
            if found.is_none() {
                let why = match (loc, &json) {
                    (Locator::Pointer(_), None) => "the value is not JSON",
                    (Locator::Pointer(_), Some(_)) => "no such field",
                    (Locator::Header(_), _) => "no such header",
                };
                problems.push((flag, loc.to_string(), why.to_string()));
            }
            found
        };
        let number = |flag: &'static str,
                      loc: &Option<Locator>,
                      contract: &str,
                      problems: &mut Vec<(&'static str, String, String)>| match loc {
            Some(loc) => {
                let v = lookup(flag, loc, problems)?;
                let n = match &v {
                    serde_json::Value::Number(n) => n.as_u64(),
                    serde_json::Value::String(s) => s.trim().parse::<u64>().ok(),
                    _ => None,
                };
                if n.is_none() {
                    problems.push((
                        flag,
                        loc.to_string(),
                        format!("{v} is not a non-negative integer (nor a string of digits)"),
                    ));
                }
                n
            }
            None => json.as_ref().and_then(|j| j.get(contract)).and_then(|v| v.as_u64()),
        };
        out.op = number("--record-op", &self.op, "op", &mut out.problems);
        out.seq = number("--record-seq", &self.seq, "seq", &mut out.problems);
        out.index =
            number("--record-index", &self.index, "index", &mut out.problems).and_then(|n| u32::try_from(n).ok());
        out.event = match &self.event {
            Some(loc) => lookup("--record-event", loc, &mut out.problems).and_then(|v| match v {
                serde_json::Value::String(s) => Some(s),
                serde_json::Value::Null => None,
                other => Some(other.to_string()),
            }),
            None => json
                .as_ref()
                .and_then(|j| j.get("event"))
                .and_then(|v| v.as_str())
                .map(String::from)
                .or_else(header_event),
        };
        // Without a readable op, the rest names nothing.
        if out.op.is_none() {
            out.seq = None;
            out.index = None;
        }
        out
    }
}

/// Sets the member at `pointer` (its parent must exist and be an object).
fn set_pointer(v: &mut serde_json::Value, pointer: &str, value: serde_json::Value) {
    let (parent, last) = pointer.rsplit_once('/').unwrap_or(("", pointer));
    let last = last.replace("~1", "/").replace("~0", "~");
    if let Some(serde_json::Value::Object(m)) = v.pointer_mut(parent) {
        m.insert(last, value);
    }
}

/// Checks that `text` is a JSON pointer (RFC 6901).
fn pointer(text: &str, flag: &str) -> Result<String> {
    let bad_escape = text
        .match_indices('~')
        .any(|(i, _)| !matches!(text.as_bytes().get(i + 1), Some(b'0' | b'1')));
    if !(text.is_empty() || text.starts_with('/')) || bad_escape {
        bail!(
            "{flag}: `{text}` is not a JSON pointer (RFC 6901: empty, or `/` then the member names, `~0` for `~` and `~1` for `/`; e.g. /orderId or /data/reference)"
        );
    }
    Ok(text.to_string())
}

/// A locator: `header:NAME` or a JSON pointer.
fn locator(text: &str, flag: &str) -> Result<Locator> {
    if let Some(h) = text.strip_prefix("header:") {
        if h.trim().is_empty() {
            bail!("{flag}: `header:` needs a header name (e.g. header:event_id)");
        }
        return Ok(Locator::Header(h.trim().to_string()));
    }
    pointer(text, flag)
        .map(Locator::Pointer)
        .map_err(|e| anyhow::anyhow!("{e}, nor header:NAME"))
}

/// `NAME: VALUE` of a header.
fn header(text: &str, flag: &str) -> Result<(String, String)> {
    match text.split_once(':') {
        Some((n, v))
            if !n.trim().is_empty()
                && n.trim()
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)) =>
        {
            Ok((n.trim().to_string(), v.trim().to_string()))
        }
        _ => bail!("{flag}: `{text}` is not NAME: VALUE (e.g. `Idempotency-Key: {{op}}`)"),
    }
}

/// The flag's name, and where its value came from when it was the file.
fn origin(flag: &str, from_file: Option<(&Path, &str)>) -> String {
    match from_file {
        Some((file, key)) => format!("{flag} ({key} in {})", file.display()),
        None => flag.to_string(),
    }
}

/// The service template the options describe: [`TemplateOptions`] is part of
/// the run record (`dualcheck-record`, plain data), its resolution into a
/// [`ServiceTemplate`] is here.
pub trait ResolveTemplate {
    /// Reads the file (if any), lets the flags override its keys and checks
    /// everything; errors name the flag (and the file's key).
    fn resolve(&self) -> Result<ServiceTemplate>;
}

impl ResolveTemplate for TemplateOptions {
    fn resolve(&self) -> Result<ServiceTemplate> {
        let (file, path) = match &self.file {
            Some(p) => {
                let text =
                    std::fs::read_to_string(p).with_context(|| format!("--template: reading {}", p.display()))?;
                let f: TemplateFile =
                    toml::from_str(&text).with_context(|| format!("--template: {} is not a template", p.display()))?;
                (f, Some(p.as_path()))
            }
            None => (TemplateFile::default(), None),
        };
        let keys = Keys {
            given: self,
            file: &file,
            path,
        };
        let merged = merged_with(self, &file);
        Ok(ServiceTemplate {
            request: keys.request()?,
            read: keys.read()?,
            records: keys.records()?,
            backlog: keys.backlog()?,
            source: merged.is_given().then_some(merged),
        })
    }
}

/// These keys with the file's merged in, as flags alone (no file): a flag
/// wins over the file's key, and headers given as flags replace the
/// file's — the same template [`ResolveTemplate::resolve`] builds.
fn merged_with(given: &TemplateOptions, file: &TemplateFile) -> TemplateOptions {
    let or = |flag: &Option<String>, key: &Option<String>| flag.clone().or_else(|| key.clone());
    let (r, rd, bk, rc) = (&file.request, &file.read, &file.backlog, &file.records);
    TemplateOptions {
        file: None,
        request_method: or(&given.request_method, &r.method),
        request_path: or(&given.request_path, &r.path),
        request_body: or(&given.request_body, &r.body),
        request_event: or(&given.request_event, &r.event),
        request_headers: if given.request_headers.is_empty() {
            r.headers.clone()
        } else {
            given.request_headers.clone()
        },
        ok_status: or(&given.ok_status, &r.ok),
        fail_status: or(&given.fail_status, &r.fail),
        rollback: or(&given.rollback, &r.rollback),
        read_path: or(&given.read_path, &rd.path),
        read_seq: or(&given.read_seq, &rd.seq),
        backlog_path: or(&given.backlog_path, &bk.path),
        backlog_count: or(&given.backlog_count, &bk.count),
        backlog_sql: or(&given.backlog_sql, &bk.sql),
        record_op: or(&given.record_op, &rc.op),
        record_seq: or(&given.record_seq, &rc.seq),
        record_event: or(&given.record_event, &rc.event),
        record_index: or(&given.record_index, &rc.index),
        record_key_is_business_key: given.record_key_is_business_key.or(rc.key_is_business_key),
    }
}

/// The keys [`ResolveTemplate::resolve`] reads: the flags given, the
/// `--template` file's, and the file's path (for errors naming the key).
struct Keys<'a> {
    given: &'a TemplateOptions,
    file: &'a TemplateFile,
    path: Option<&'a Path>,
}

/// A key's value and, when it came from the file, the file and the key's name.
type Picked<'a> = Option<(&'a str, Option<(&'a Path, &'a str)>)>;

impl<'a> Keys<'a> {
    /// Each key: the flag if given, else the file's, with where it came from.
    fn pick(&self, flag: &'a Option<String>, file: &'a Option<String>, key: &'a str) -> Picked<'a> {
        match (flag, file, self.path) {
            (Some(v), _, _) => Some((v.as_str(), None)),
            (None, Some(v), Some(p)) => Some((v.as_str(), Some((p, key)))),
            _ => None,
        }
    }

    /// The write request's body and the one-event template of its
    /// `{events}`, each checked filled in for an op of two events over two keys.
    fn body_and_event(&self) -> Result<(Option<Filled>, Option<Filled>)> {
        let r = &self.file.request;
        let body = match self.pick(&self.given.request_body, &r.body, "request.body") {
            Some((b, from)) => {
                let flag = origin("--request-body", from);
                Some(Filled::parse(b, BODY_PLACEHOLDERS, &flag)?)
            }
            None => None,
        };
        let event = match self.pick(&self.given.request_event, &r.event, "request.event") {
            Some((e, from)) => {
                let flag = origin("--request-event", from);
                if !body.as_ref().is_some_and(Filled::has_events) {
                    bail!("{flag}: one event's JSON goes into the body's {{events}}: put {{events}} in --request-body (request.body) where the service takes its array of events");
                }
                Some(Filled::parse(e, EVENT_PLACEHOLDERS, &flag)?)
            }
            None => None,
        };
        if let Some(t) = &body {
            // Checked filled in for an op of two events over two keys,
            // so `{events}` and `--request-event` are checked too.
            let sample = Op {
                op: 17,
                key: "k3".into(),
                seq: 5,
                payload: "x\"y".into(),
                abort: false,
                hold_ms: 0,
                events: vec![
                    OpEvent {
                        index: 0,
                        key: "k3".into(),
                        seq: 5,
                    },
                    OpEvent {
                        index: 1,
                        key: "k4".into(),
                        seq: 2,
                    },
                ],
                write: Default::default(),
            };
            let probe = RequestTemplate {
                method: reqwest::Method::POST,
                path: Filled { parts: vec![] },
                body: Some(t.clone()),
                event: event.clone(),
                headers: vec![],
                ok: StatusSet(vec![]),
                fail: StatusSet(vec![]),
                rollback: Rollback::None,
            };
            let filled = probe.request(&sample).body.unwrap_or_default();
            if let Err(e) = serde_json::from_str::<serde_json::Value>(&filled) {
                let flag = match (&event, self.pick(&self.given.request_body, &r.body, "request.body")) {
                    (Some(_), _) => "--request-body with --request-event".to_string(),
                    (None, Some((_, from))) => origin("--request-body", from),
                    (None, None) => "--request-body".to_string(),
                };
                bail!("{flag}: not JSON once filled in ({e}): {filled}");
            }
        }
        Ok((body, event))
    }

    /// The write request's template, if any.
    fn request(&self) -> Result<Option<RequestTemplate>> {
        let r = &self.file.request;
        let request_path = self.pick(&self.given.request_path, &r.path, "request.path");
        Ok(match request_path {
            None => {
                let stray = [
                    (&self.given.request_method, &r.method, "--request-method"),
                    (&self.given.request_body, &r.body, "--request-body"),
                    (&self.given.request_event, &r.event, "--request-event"),
                    (&self.given.ok_status, &r.ok, "--ok-status"),
                    (&self.given.fail_status, &r.fail, "--fail-status"),
                    (&self.given.rollback, &r.rollback, "--rollback"),
                ]
                .into_iter()
                .find(|(a, b, _)| a.is_some() || b.is_some())
                .map(|(_, _, f)| f)
                .or((!self.given.request_headers.is_empty() || !r.headers.is_empty()).then_some("--request-header"));
                if let Some(flag) = stray {
                    bail!("{flag} is part of a request template: give --request-path (or request.path in the --template file) too");
                }
                None
            }
            Some((p, from)) => {
                let flag = origin("--request-path", from);
                if !p.starts_with('/') {
                    bail!("{flag}: `{p}` must start with `/` (e.g. /orders)");
                }
                let path_t = Filled::parse(p, PLACEHOLDERS, &flag)?;
                let method = match self.pick(&self.given.request_method, &r.method, "request.method") {
                    Some((m, from)) => {
                        reqwest::Method::from_bytes(m.trim().to_ascii_uppercase().as_bytes()).map_err(|_| {
                            anyhow::anyhow!("{}: `{m}` is not an HTTP method", origin("--request-method", from))
                        })?
                    }
                    None => reqwest::Method::POST,
                };
                let (body, event) = self.body_and_event()?;
                let (header_texts, header_from): (Vec<String>, Option<(&Path, &str)>) =
                    if !self.given.request_headers.is_empty() {
                        (self.given.request_headers.clone(), None)
                    } else {
                        (r.headers.clone(), self.path.map(|p| (p, "request.headers")))
                    };
                let mut headers = Vec::new();
                for h in &header_texts {
                    let flag = origin("--request-header", header_from);
                    let (n, v) = header(h, &flag)?;
                    headers.push((n, Filled::parse(&v, PLACEHOLDERS, &flag)?));
                }
                let ok = match self.pick(&self.given.ok_status, &r.ok, "request.ok") {
                    Some((s, from)) => StatusSet::parse(s, &origin("--ok-status", from))?,
                    None => StatusSet(vec![(200, 299)]),
                };
                let fail = match self.pick(&self.given.fail_status, &r.fail, "request.fail") {
                    Some((s, from)) => StatusSet::parse(s, &origin("--fail-status", from))?,
                    None => StatusSet(vec![(400, 499)]),
                };
                let rollback = match self.pick(&self.given.rollback, &r.rollback, "request.rollback") {
                    None => Rollback::None,
                    Some((text, from)) => {
                        let flag = origin("--rollback", from);
                        if text.trim() == "none" {
                            Rollback::None
                        } else if let Some(h) = text.strip_prefix("header:") {
                            let (n, v) = header(h, &flag)?;
                            Rollback::Header(n, v)
                        } else if let Some(f) = text.strip_prefix("field:") {
                            let Some((p, v)) = f.split_once('=') else {
                                bail!("{flag}: `{text}` is not field:/POINTER=JSON (e.g. field:/dryRun=true)");
                            };
                            let p = pointer(p.trim(), &flag)?;
                            if p.is_empty() {
                                bail!("{flag}: the pointer must name a member of the body (e.g. /dryRun)");
                            }
                            let v: serde_json::Value = serde_json::from_str(v.trim())
                                .with_context(|| format!("{flag}: the value after `=` must be JSON (e.g. true)"))?;
                            if body.is_none() {
                                bail!("{flag}: field: sets a member of the body; give --request-body too");
                            }
                            Rollback::Field(p, v)
                        } else {
                            bail!("{flag}: `{text}` is not `none`, `header:NAME: VALUE` or `field:/POINTER=JSON`");
                        }
                    }
                };
                Some(RequestTemplate {
                    method,
                    path: path_t,
                    body,
                    event,
                    headers,
                    ok,
                    fail,
                    rollback,
                })
            }
        })
    }

    /// The read request's template, if any.
    fn read(&self) -> Result<Option<ReadTemplate>> {
        let rd = &self.file.read;
        Ok(
            match (
                self.pick(&self.given.read_path, &rd.path, "read.path"),
                self.pick(&self.given.read_seq, &rd.seq, "read.seq"),
            ) {
                (None, None) => None,
                (Some((p, from)), seq) => {
                    let flag = origin("--read-path", from);
                    if !p.starts_with('/') {
                        bail!("{flag}: `{p}` must start with `/` (e.g. /customers/{{key}}/orders/latest)");
                    }
                    let path_t = Filled::parse(p, &["key"], &flag)?;
                    let seq = match seq {
                        Some((s, from)) => pointer(s, &origin("--read-seq", from))?,
                        None => {
                            bail!("--read-path needs --read-seq: the JSON pointer to the seq in its answer (e.g. /lineNo)")
                        }
                    };
                    Some(ReadTemplate { path: path_t, seq })
                }
                (None, Some(_)) => bail!("--read-seq goes with --read-path (the read endpoint)"),
            },
        )
    }

    /// Where the backlog comes from, if the template says.
    fn backlog(&self) -> Result<Option<BacklogTemplate>> {
        let bk = &self.file.backlog;
        let endpoint = (
            self.pick(&self.given.backlog_path, &bk.path, "backlog.path"),
            self.pick(&self.given.backlog_count, &bk.count, "backlog.count"),
        );
        if let Some((sql, from)) = self.pick(&self.given.backlog_sql, &bk.sql, "backlog.sql") {
            if endpoint != (None, None) {
                bail!(
                    "{} and --backlog-path/--backlog-count both say where the backlog is: give one",
                    origin("--backlog-sql", from)
                );
            }
            if sql.trim().is_empty() {
                bail!(
                    "{}: empty; give a query yielding one integer, e.g. `SELECT count(*) FROM outbox WHERE sent_at IS NULL`",
                    origin("--backlog-sql", from)
                );
            }
            return Ok(Some(BacklogTemplate::Sql(sql.to_string())));
        }
        Ok(match endpoint {
            (None, None) => None,
            (Some((p, from)), Some((c, cfrom))) => {
                if !p.starts_with('/') {
                    bail!("{}: `{p}` must start with `/`", origin("--backlog-path", from));
                }
                Filled::parse(p, &[], &origin("--backlog-path", from))?;
                Some(BacklogTemplate::Endpoint {
                    path: p.to_string(),
                    count: pointer(c, &origin("--backlog-count", cfrom))?,
                })
            }
            (Some(_), None) => bail!(
                "--backlog-path needs --backlog-count: the JSON pointer to the count in its answer (e.g. /pending)"
            ),
            (None, Some(_)) => bail!("--backlog-count goes with --backlog-path"),
        })
    }

    /// Where the op, seq and event id are in a record.
    fn records(&self) -> Result<RecordMapping> {
        let rc = &self.file.records;
        let loc =
            |flag: &str, given: &Option<String>, in_file: &Option<String>, key: &str| -> Result<Option<Locator>> {
                match self.pick(given, in_file, key) {
                    Some((t, from)) => locator(t, &origin(flag, from)).map(Some),
                    None => Ok(None),
                }
            };
        Ok(RecordMapping {
            op: loc("--record-op", &self.given.record_op, &rc.op, "records.op")?,
            seq: loc("--record-seq", &self.given.record_seq, &rc.seq, "records.seq")?,
            event: loc("--record-event", &self.given.record_event, &rc.event, "records.event")?,
            index: loc("--record-index", &self.given.record_index, &rc.index, "records.index")?,
            key_is_business_key: self
                .given
                .record_key_is_business_key
                .or(rc.key_is_business_key)
                .unwrap_or(true),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(abort: bool) -> Op {
        Op {
            op: 17,
            key: "k3".into(),
            seq: 5,
            payload: "p\"q".into(),
            abort,
            hold_ms: 0,
            events: vec![],
            write: Default::default(),
        }
    }

    fn opts() -> TemplateOptions {
        TemplateOptions {
            request_path: Some("/customers/{key}/orders".into()),
            request_body: Some(r#"{"ref":"{op}","line":{seq},"note":"{payload}","meta":{}}"#.into()),
            request_headers: vec!["Idempotency-Key: op-{op}".into()],
            rollback: Some("field:/meta/dryRun=true".into()),
            ..TemplateOptions::default()
        }
    }

    #[test]
    fn a_template_fills_in_the_op() {
        let t = opts().resolve().unwrap();
        let req = t.request.clone().unwrap();
        let r = req.request(&op(false));
        assert_eq!(r.path, "/customers/k3/orders");
        assert_eq!(r.headers, vec![("Idempotency-Key".to_string(), "op-17".to_string())]);
        let body: serde_json::Value = serde_json::from_str(r.body.as_deref().unwrap()).unwrap();
        assert_eq!(body["ref"], "17");
        assert_eq!(body["line"], 5);
        assert_eq!(body["note"], "p\"q");
        assert!(body["meta"].get("dryRun").is_none());
        let r = req.request(&op(true));
        let body: serde_json::Value = serde_json::from_str(r.body.as_deref().unwrap()).unwrap();
        assert_eq!(body["meta"]["dryRun"], true);
        assert!(req.ok.contains(201) && !req.ok.contains(409) && req.fail.contains(409) && !req.fail.contains(503));
        let d = t.describe();
        assert_eq!(d["request"]["body"].as_str(), opts().request_body.as_deref());
        assert_eq!(d["request"]["path"], "/customers/{key}/orders");
        assert!(!d.to_string().contains("op-{op}"), "header values stay out: {d}");
        assert!(ServiceTemplate::default().describe().is_null());
    }

    #[test]
    fn a_backlog_query_stands_for_the_backlog_endpoint_and_is_recorded_as_a_flag() {
        let sql = "SELECT count(*) FROM outbox WHERE sent_at IS NULL";
        let o = TemplateOptions {
            backlog_sql: Some(sql.into()),
            ..TemplateOptions::default()
        };
        let t = o.resolve().unwrap();
        assert_eq!(t.backlog, Some(BacklogTemplate::Sql(sql.into())));
        assert_eq!(t.describe()["backlog"]["sql"], sql);
        // What a run records gives the same flag back (a replay's template).
        let recorded = t.source.clone().unwrap();
        assert_eq!(recorded.to_args(), vec!["--backlog-sql".to_string(), sql.to_string()]);
        assert_eq!(recorded.resolve().unwrap().backlog, t.backlog);
        // From the file's [backlog] too.
        let dir = std::env::temp_dir().join(format!("dualcheck-backlog-sql-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("t.toml");
        std::fs::write(&file, format!("[backlog]\nsql = \"{sql}\"\n")).unwrap();
        let from_file = TemplateOptions {
            file: Some(file.clone()),
            ..TemplateOptions::default()
        };
        assert_eq!(from_file.resolve().unwrap().backlog, t.backlog);
        // With the endpoint, or empty: an error naming the flag.
        let both = TemplateOptions {
            backlog_path: Some("/admin/outbox".into()),
            backlog_count: Some("/pending".into()),
            ..o.clone()
        };
        let e = format!("{:#}", both.resolve().unwrap_err());
        assert!(e.contains("--backlog-sql") && e.contains("--backlog-path"), "{e}");
        let empty = TemplateOptions {
            backlog_sql: Some("  ".into()),
            ..TemplateOptions::default()
        };
        let e = format!("{:#}", empty.resolve().unwrap_err());
        assert!(e.contains("--backlog-sql") && e.contains("empty"), "{e}");
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn mistakes_name_their_flag() {
        let mut o = opts();
        o.request_body = Some(r#"{"customer":"{customer}"}"#.into());
        let e = o.resolve().unwrap_err().to_string();
        assert!(e.starts_with("--request-body: unknown placeholder {customer}"), "{e}");
        let mut o = opts();
        o.request_headers = vec!["X-Run: {run}".into()];
        assert!(o.resolve().unwrap_err().to_string().starts_with("--request-header"));
        let mut o = opts();
        o.read_path = Some("/orders/{op}".into());
        o.read_seq = Some("/seq".into());
        assert!(o.resolve().unwrap_err().to_string().starts_with("--read-path"));
        let mut o = opts();
        o.record_op = Some("orderRef".into());
        let e = o.resolve().unwrap_err().to_string();
        assert!(e.starts_with("--record-op: `orderRef` is not a JSON pointer"), "{e}");
        let mut o = opts();
        o.record_event = Some("/a~2b".into());
        assert!(o.resolve().unwrap_err().to_string().starts_with("--record-event"));
        let mut o = opts();
        o.ok_status = Some("2xy".into());
        assert!(o.resolve().unwrap_err().to_string().starts_with("--ok-status"));
        let mut o = opts();
        o.request_body = Some(r#"{"ref":{op}"#.into());
        assert!(o.resolve().unwrap_err().to_string().contains("not JSON once filled in"));
        let o = TemplateOptions {
            request_body: Some("{}".into()),
            ..TemplateOptions::default()
        };
        assert!(o.resolve().unwrap_err().to_string().contains("--request-path"));
    }

    #[test]
    fn flags_override_the_file() {
        let dir = std::env::temp_dir().join(format!("dualcheck-template-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("t.toml");
        std::fs::write(
            &file,
            "[request]\npath = \"/orders\"\nbody = '{\"ref\":\"{op}\"}'\nok = \"201\"\n[records]\nop = \"/ref\"\nevent = \"header:event_id\"\nkey_is_business_key = false\n",
        )
        .unwrap();
        let o = TemplateOptions {
            file: Some(file.clone()),
            ok_status: Some("2xx".into()),
            ..TemplateOptions::default()
        };
        let t = o.resolve().unwrap();
        assert!(t.request.as_ref().unwrap().ok.contains(200));
        assert_eq!(t.records.op, Some(Locator::Pointer("/ref".into())));
        assert_eq!(t.records.event, Some(Locator::Header("event_id".into())));
        assert!(!t.records.key_is_business_key);
        std::fs::write(&file, "[records]\nop = \"ref\"\n").unwrap();
        let e = TemplateOptions {
            file: Some(file.clone()),
            ..TemplateOptions::default()
        }
        .resolve()
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("--record-op (records.op in "), "{e}");
    }

    #[test]
    fn the_mapping_reads_records_or_says_what_is_missing() {
        let m = RecordMapping {
            op: Some(Locator::Pointer("/data/ref".into())),
            seq: Some(Locator::Pointer("/data/line".into())),
            event: Some(Locator::Header("ce_id".into())),
            index: None,
            key_is_business_key: true,
        };
        let headers = vec![("ce_id".to_string(), Some(b"e-1".to_vec()))];
        let r = m.read(Some(br#"{"data":{"ref":"17","line":5}}"#), &headers);
        assert_eq!((r.op, r.seq, r.event.as_deref()), (Some(17), Some(5), Some("e-1")));
        assert!(r.problems.is_empty());
        let r = m.read(Some(br#"{"data":{"line":5}}"#), &[]);
        assert_eq!(r.op, None);
        assert_eq!(r.problems[0].0, "--record-op");
        assert_eq!(r.problems[0].2, "no such field");
        assert!(r.problems.iter().any(|p| p.0 == "--record-event"));
        let contract = RecordMapping::default();
        let r = contract.read(Some(br#"{"op":3,"seq":1,"event":"x"}"#), &[]);
        assert_eq!((r.op, r.seq, r.event.as_deref()), (Some(3), Some(1), Some("x")));
        assert!(contract.is_contract());
    }

    #[test]
    fn the_index_of_an_event_is_read_from_the_contract_field_or_where_it_is_mapped() {
        let contract = RecordMapping::default();
        let r = contract.read(Some(br#"{"op":3,"seq":1,"event":"x","index":4}"#), &[]);
        assert_eq!(r.index, Some(4));
        let r = contract.read(Some(br#"{"op":3,"seq":1,"event":"x"}"#), &[]);
        assert_eq!(r.index, None, "no index: the op's only event");
        let m = RecordMapping {
            op: Some(Locator::Pointer("/ref".into())),
            index: Some(Locator::Header("line".into())),
            ..RecordMapping::default()
        };
        let r = m.read(Some(br#"{"ref":9}"#), &[("line".to_string(), Some(b"2".to_vec()))]);
        assert_eq!((r.op, r.index), (Some(9), Some(2)));
        let r = m.read(Some(br#"{"ref":9}"#), &[]);
        assert_eq!(r.index, None);
        assert!(r.problems.iter().any(|p| p.0 == "--record-index"));
    }

    #[test]
    fn a_body_carries_the_events_of_an_op_as_an_array() {
        let mut multi = op(false);
        multi.events = vec![
            OpEvent {
                index: 0,
                key: "k3".into(),
                seq: 5,
            },
            OpEvent {
                index: 1,
                key: "k9".into(),
                seq: 2,
            },
        ];
        // Without an event template: the contract's objects.
        let o = TemplateOptions {
            request_path: Some("/orders".into()),
            request_body: Some(r#"{"ref":"{op}","n":{count},"lines":{events}}"#.into()),
            ..TemplateOptions::default()
        };
        let req = o.resolve().unwrap().request.unwrap();
        let body: serde_json::Value = serde_json::from_str(&req.request(&multi).body.unwrap()).unwrap();
        assert_eq!(body["n"], 2);
        assert_eq!(body["lines"][1], serde_json::json!({"index": 1, "key": "k9", "seq": 2}));
        let body: serde_json::Value = serde_json::from_str(&req.request(&op(false)).body.unwrap()).unwrap();
        assert_eq!(body["lines"], serde_json::json!([{"index": 0, "key": "k3", "seq": 5}]));
        // With one: each item filled in for its event.
        let o = TemplateOptions {
            request_event: Some(r#"{"lineNo":{index},"customer":"{key}","at":{seq},"ref":"{op}"}"#.into()),
            ..o
        };
        let t = o.resolve().unwrap();
        let req = t.request.clone().unwrap();
        let body: serde_json::Value = serde_json::from_str(&req.request(&multi).body.unwrap()).unwrap();
        assert_eq!(
            body["lines"][1],
            serde_json::json!({"lineNo": 1, "customer": "k9", "at": 2, "ref": "17"})
        );
        assert!(t.describe()["request"]["event"].as_str().unwrap().contains("{index}"));
        assert!(o.to_args().contains(&"--request-event".to_string()));
        // An event template needs {events} in the body; a body not JSON filled in is refused.
        let e = TemplateOptions {
            request_body: Some(r#"{"ref":"{op}"}"#.into()),
            ..o.clone()
        }
        .resolve()
        .unwrap_err()
        .to_string();
        assert!(e.contains("--request-event") && e.contains("{events}"), "{e}");
        let e = TemplateOptions {
            request_event: Some(r#"{"lineNo":{index}"#.into()),
            ..o
        }
        .resolve()
        .unwrap_err()
        .to_string();
        assert!(e.contains("not JSON once filled in"), "{e}");
    }
}
