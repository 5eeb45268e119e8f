//! The history format: one JSON object per line (JSON Lines), as docs/history.md
//! defines it. This module owns both directions: [`HistoryLine`] is what a recorder
//! writes, [`ParsedLine`] is what the checker reads back (borrowing from the line,
//! so parsing allocates nothing for ordinary lines).

use serde::{Deserialize, Deserializer, Serialize};
use std::borrow::Cow;
use std::fmt;

/// How a business operation ended, as recorded by an `ok`, `fail` or `info`
/// line (the `outcome` of results' examples). The word "outcome" means this
/// throughout: how an op ended, seen by the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// It took effect and was acknowledged.
    Ok,
    /// It certainly did not take effect.
    Fail,
    /// Unknown (timeout, crash): the database decides, through `committed`.
    Info,
}

impl Outcome {
    /// The line type that records this outcome.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Fail => "fail",
            Outcome::Info => "info",
        }
    }
}

/// Whether a nemesis line marks a fault starting, stopping, or failing to
/// start (`start` and `stop` are the same two words as a fault schedule's steps).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FaultPhase {
    /// The fault took effect.
    Start,
    /// The fault is healed.
    Stop,
    /// The fault was to start but never took effect (the line's `error` says why):
    /// no window, and no `stop` line follows.
    Failed,
}

impl FaultPhase {
    /// The word of the `phase` field.
    pub fn as_str(self) -> &'static str {
        match self {
            FaultPhase::Start => "start",
            FaultPhase::Stop => "stop",
            FaultPhase::Failed => "failed",
        }
    }
}

/// One line of a history, owned, as a recorder writes it.
///
/// Serializes to exactly the JSON objects of the contract (`type` tag first).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum HistoryLine {
    /// A business operation starts.
    Invoke {
        /// Unique within the run.
        op: u64,
        /// The worker that runs it.
        process: u64,
        /// The business key.
        key: String,
        /// Position of the op among the ops on its key.
        seq: u64,
        /// Nanoseconds since the run started.
        time: i64,
        /// The events the op publishes when it is not one (`None`: one event,
        /// index 0, on `key` at `seq`; the line then has no `events` field).
        #[serde(skip_serializing_if = "Option::is_none")]
        events: Option<OpEvents>,
    },
    /// The operation was acknowledged.
    Ok {
        /// The op that completed.
        op: u64,
        /// The worker that ran it.
        process: u64,
        /// Nanoseconds since the run started.
        time: i64,
    },
    /// The operation certainly did not take effect.
    Fail {
        /// The op that completed.
        op: u64,
        /// The worker that ran it.
        process: u64,
        /// Nanoseconds since the run started.
        time: i64,
        /// Why it failed.
        error: String,
    },
    /// The outcome is unknown.
    Info {
        /// The op that completed.
        op: u64,
        /// The worker that ran it.
        process: u64,
        /// Nanoseconds since the run started.
        time: i64,
        /// Why the outcome is unknown.
        error: String,
    },
    /// One Kafka record read by the observer.
    Deliver {
        /// The op the record names, or `None` when the observer could not attribute it.
        op: Option<u64>,
        /// The event id an idempotent consumer deduplicates on.
        event: String,
        /// The record key.
        key: Option<String>,
        /// The op's seq as carried by the record.
        seq: Option<u64>,
        /// Topic the record was read from.
        topic: String,
        /// Partition of the record.
        partition: i32,
        /// Offset of the record.
        offset: i64,
        /// Nanoseconds since the run started.
        time: i64,
        /// Which of its op's events the record is (`None`: the record names
        /// no index, read as 0; the line then has no `index` field).
        #[serde(skip_serializing_if = "Option::is_none")]
        index: Option<u32>,
    },
    /// A fault starting, stopping, or failing to start.
    Nemesis {
        /// The fault's name (docs/faults.md).
        fault: String,
        /// Start, stop or failed.
        phase: FaultPhase,
        /// Nanoseconds since the run started.
        time: i64,
        /// Why it failed (phase `failed` only).
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// A read through the implementation's read path.
    Read {
        /// The key read.
        key: String,
        /// The newest seq the read saw (`None`: the key was not found).
        seq: Option<u64>,
        /// When the read started.
        invoke_time: i64,
        /// When it returned.
        time: i64,
    },
    /// After healing and draining, the op's business effect is in the database.
    Committed {
        /// The op found in the database.
        op: u64,
    },
    /// The implementation was restarted after the last heal, before the drain
    /// (`--restart-before-drain`, as an operator's deploy would): an op first
    /// delivered after this time was delivered only after a restart.
    Restart {
        /// Nanoseconds since the run started.
        time: i64,
    },
    /// The recorder's first line: the run began, and its history will end with
    /// an `end` line when it is complete.
    Begin {
        /// Nanoseconds since the run started (0).
        time: i64,
    },
    /// The recorder's mark that the history is complete: written once the drain
    /// ended and the `committed` lines are written.
    End {
        /// Nanoseconds since the run started.
        time: i64,
        /// Whether the drain ended with nothing left (`false`: it timed out).
        drained: bool,
    },
}

/// The events one op publishes, as its `invoke` line names them: the
/// `events` field, absent for an op of one event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum OpEvents {
    /// This many events (indexes 0..n), all on the op's `key` at its `seq`.
    Count(u32),
    /// One entry per event, in index order: the key it is published on and
    /// the op's seq on that key.
    Each(Vec<EventPlace>),
}

/// Where one event of an op belongs: its key and the op's seq on that key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventPlace {
    /// The business key the event is published on.
    pub key: String,
    /// The op's position among the ops on that key.
    pub seq: u64,
}

impl HistoryLine {
    /// The line as JSON (without the newline).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("history lines always serialize")
    }
}

/// One line of a history, read back; strings borrow from the line when they
/// hold no escapes.
#[derive(Debug, Clone, PartialEq)]
pub enum ParsedLine<'a> {
    /// An `invoke` line.
    Invoke {
        /// Op id.
        op: u64,
        /// Business key.
        key: Cow<'a, str>,
        /// Position on the key.
        seq: u64,
        /// Time in ns.
        time: i64,
        /// The events the op publishes (`None`: the line names none, so one
        /// event, index 0, on `key` at `seq`). Never a count of 0 or an empty
        /// list: the parser refuses those.
        events: Option<OpEvents>,
    },
    /// An `ok`, `fail` or `info` line.
    Complete {
        /// Op id.
        op: u64,
        /// Which of the three.
        outcome: Outcome,
        /// Time in ns.
        time: i64,
    },
    /// A `deliver` line.
    Deliver {
        /// Op id, `None` when the record could not be attributed.
        op: Option<u64>,
        /// Event id.
        event: Cow<'a, str>,
        /// Record key.
        key: Option<Cow<'a, str>>,
        /// Seq carried by the record.
        seq: Option<u64>,
        /// Partition.
        partition: i32,
        /// Offset.
        offset: i64,
        /// Time in ns.
        time: i64,
        /// Which of its op's events the record is (0 when the line names none).
        index: u32,
    },
    /// A `nemesis` line.
    Nemesis {
        /// Fault name.
        fault: Cow<'a, str>,
        /// Start, stop or failed.
        phase: FaultPhase,
        /// Time in ns.
        time: i64,
        /// Why the fault failed to start (phase `failed`; `None` when the line gives no reason).
        error: Option<Cow<'a, str>>,
    },
    /// A `read` line.
    Read {
        /// Key read.
        key: Cow<'a, str>,
        /// Newest seq seen (`None`: nothing yet).
        seq: Option<u64>,
        /// When the read started.
        invoke_time: i64,
        /// When it returned.
        time: i64,
    },
    /// A `committed` line.
    Committed {
        /// Op id.
        op: u64,
    },
    /// A `restart` line: the implementation restarted before the drain.
    Restart {
        /// Time in ns.
        time: i64,
    },
    /// A `begin` line: the recorder marks its history's start.
    Begin {
        /// Time in ns.
        time: i64,
    },
    /// An `end` line: the recorder marks its history complete.
    End {
        /// Time in ns.
        time: i64,
    },
}

/// Why one line could not be used. The reader adds the file and line number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct LineError(pub String);

/// A field that may be absent, `null`, or a value — `deliver.op` needs all three.
#[derive(Debug, Default)]
enum Field<T> {
    #[default]
    Absent,
    Null,
    Value(T),
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Field<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(match Option::<T>::deserialize(d)? {
            Some(v) => Field::Value(v),
            None => Field::Null,
        })
    }
}

/// A string that borrows from the line when it holds no escapes (serde's own
/// `Cow` support does not reach through wrappers such as `Option` or [`Field`]).
struct Text<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v.to_owned())))
            }
        }
        d.deserialize_str(V)
    }
}

/// Every field any line type may carry; which ones are required depends on `type`.
#[derive(Deserialize)]
struct RawLine<'a> {
    #[serde(rename = "type", borrow, default)]
    ty: Option<Text<'a>>,
    #[serde(default)]
    op: Field<u64>,
    #[serde(borrow, default)]
    key: Field<Text<'a>>,
    #[serde(default)]
    seq: Field<u64>,
    #[serde(default)]
    time: Option<i64>,
    #[serde(borrow, default)]
    event: Option<Text<'a>>,
    #[serde(default)]
    partition: Option<i32>,
    #[serde(default)]
    offset: Option<i64>,
    #[serde(borrow, default)]
    fault: Option<Text<'a>>,
    #[serde(borrow, default)]
    phase: Option<Text<'a>>,
    #[serde(default)]
    invoke_time: Option<i64>,
    /// Read for `nemesis` lines; any other shape (on `fail`/`info` lines it is free text) is ignored.
    #[serde(borrow, default)]
    error: Option<ErrorField<'a>>,
    /// `invoke`: the op's events when it publishes more than one (`null`: one).
    #[serde(default)]
    events: Option<OpEvents>,
    /// `deliver`: which event of its op the record is (`null`: 0).
    #[serde(default)]
    index: Option<u32>,
}

impl RawLine<'_> {
    fn empty() -> Self {
        RawLine {
            ty: None,
            op: Field::Absent,
            key: Field::Absent,
            seq: Field::Absent,
            time: None,
            event: None,
            partition: None,
            offset: None,
            fault: None,
            phase: None,
            invoke_time: None,
            error: None,
            events: None,
            index: None,
        }
    }
}

/// The `error` field: text, or anything else (ignored, so no line becomes unusable through it).
#[derive(Deserialize)]
#[serde(untagged)]
enum ErrorField<'a> {
    Text(#[serde(borrow)] Text<'a>),
    Other(serde::de::IgnoredAny),
}

fn need<T>(v: Option<T>, ty: &str, field: &str, what: &str) -> Result<T, LineError> {
    v.ok_or_else(|| LineError(format!("`{ty}` line lacks field `{field}` ({what})")))
}

fn need_field<T>(v: Field<T>, ty: &str, field: &str, what: &str) -> Result<T, LineError> {
    match v {
        Field::Value(v) => Ok(v),
        _ => need(None, ty, field, what),
    }
}

/// Parses one history line (without its newline).
///
/// Lines in the shape recorders write (one flat object, no whitespace, no
/// escapes, integers) are read by [`scan_line`]; anything else goes through
/// serde_json, which reads every line the same way, only slower.
pub fn parse_line(line: &[u8]) -> Result<ParsedLine<'_>, LineError> {
    match std::str::from_utf8(line) {
        Ok(text) => parse_text_line(text),
        // Not UTF-8: left to serde_json, as every line the scanner does not read.
        Err(_) => from_raw(parse_raw_serde(line)?),
    }
}

/// [`parse_line`] of a line known to be UTF-8 (the reader checks a whole
/// piece of lines at once, which is much cheaper than line by line).
#[inline]
pub(crate) fn parse_text_line(line: &str) -> Result<ParsedLine<'_>, LineError> {
    let raw = match scan_line(line) {
        Some(raw) => raw,
        None => parse_raw_serde(line.as_bytes())?,
    };
    from_raw(raw)
}

/// The reference reading of a line: serde_json alone (what [`parse_line`]
/// must agree with; kept for the tests that compare the two).
#[cfg(test)]
pub(crate) fn parse_line_serde(line: &[u8]) -> Result<ParsedLine<'_>, LineError> {
    from_raw(parse_raw_serde(line)?)
}

fn parse_raw_serde(line: &[u8]) -> Result<RawLine<'_>, LineError> {
    serde_json::from_slice(line).map_err(|e| explain_json_error(line, e))
}

/// Field names [`scan_line`] reads, in the order of the bits that catch a
/// field given twice (which serde refuses, so the scanner leaves such lines to it).
const KNOWN_FIELDS: [&[u8]; 14] = [
    b"type",
    b"op",
    b"key",
    b"seq",
    b"time",
    b"event",
    b"partition",
    b"offset",
    b"fault",
    b"phase",
    b"invoke_time",
    b"error",
    b"events",
    b"index",
];

/// Reads a line of the common shape into the same [`RawLine`] serde_json
/// would make of it, or returns `None` when the line is anything else (so
/// serde_json decides): whitespace, escapes, floats, nesting, a field given
/// twice, an integer out of range, a value of the wrong kind. The line is
/// UTF-8 already (checked by the caller, a whole piece of lines at a time).
#[inline]
fn scan_line(line: &str) -> Option<RawLine<'_>> {
    let bytes = line.as_bytes();
    let n = bytes.len();
    if n < 2 || bytes[0] != b'{' || bytes[n - 1] != b'}' {
        return None;
    }
    let mut raw = RawLine::empty();
    if n == 2 {
        return Some(raw);
    }
    let mut i = 1;
    let mut seen: u16 = 0;
    loop {
        let field = match known_name(&bytes[i..]) {
            Some((field, len)) => {
                i += len;
                field
            }
            None => {
                // Not `"name":` with a known name: an unknown field (or not
                // JSON the scanner reads), its value skipped.
                let name = scan_str(line, &mut i)?;
                if bytes.get(i) != Some(&b':') {
                    return None;
                }
                i += 1;
                debug_assert!(!KNOWN_FIELDS.contains(&name.as_bytes()), "{name}");
                skip_value(line, &mut i)?;
                match bytes.get(i)? {
                    b',' => i += 1,
                    b'}' if i == n - 1 => return Some(raw),
                    _ => return None,
                }
                continue;
            }
        };
        if seen & (1 << field) != 0 {
            return None;
        }
        seen |= 1 << field;
        let text = |i: &mut usize| scan_str(line, i).map(|s| Text(Cow::Borrowed(s)));
        match field {
            0 => raw.ty = Some(text(&mut i)?),
            1 => raw.op = scan_field(bytes, &mut i, |i| scan_u64(bytes, i))?,
            2 => raw.key = scan_field(bytes, &mut i, text)?,
            3 => raw.seq = scan_field(bytes, &mut i, |i| scan_u64(bytes, i))?,
            4 => raw.time = Some(scan_i64(bytes, &mut i)?),
            5 => raw.event = Some(text(&mut i)?),
            6 => raw.partition = Some(i32::try_from(scan_i64(bytes, &mut i)?).ok()?),
            7 => raw.offset = Some(scan_i64(bytes, &mut i)?),
            8 => raw.fault = Some(text(&mut i)?),
            9 => raw.phase = Some(text(&mut i)?),
            10 => raw.invoke_time = Some(scan_i64(bytes, &mut i)?),
            11 => raw.error = Some(ErrorField::Text(text(&mut i)?)),
            // A count only: a list of places is left to serde_json (rare lines).
            12 => raw.events = scan_null_or(bytes, &mut i, |i| scan_u32(bytes, i).map(OpEvents::Count))?,
            _ => raw.index = scan_null_or(bytes, &mut i, |i| scan_u32(bytes, i))?,
        }
        match bytes.get(i)? {
            b',' => i += 1,
            b'}' if i == n - 1 => return Some(raw),
            _ => return None,
        }
    }
}

/// The bit (in the order of `KNOWN_FIELDS`) of the known field whose name,
/// quoted and followed by `:`, starts `rest`, and that prefix's length.
///
/// Looked for by its first letter and compared whole, instead of cutting the
/// name out as a string first: names are half of a line's strings, and
/// nearly all of them are known.
#[inline(always)]
fn known_name(rest: &[u8]) -> Option<(usize, usize)> {
    let known = |field: usize, quoted: &[u8]| rest.starts_with(quoted).then_some((field, quoted.len()));
    match rest.get(1)? {
        b't' => known(0, b"\"type\":").or_else(|| known(4, b"\"time\":")),
        b'o' => known(1, b"\"op\":").or_else(|| known(7, b"\"offset\":")),
        b'k' => known(2, b"\"key\":"),
        b's' => known(3, b"\"seq\":"),
        b'e' => known(5, b"\"event\":")
            .or_else(|| known(11, b"\"error\":"))
            .or_else(|| known(12, b"\"events\":")),
        b'p' => known(6, b"\"partition\":").or_else(|| known(9, b"\"phase\":")),
        b'f' => known(8, b"\"fault\":"),
        b'i' => known(10, b"\"invoke_time\":").or_else(|| known(13, b"\"index\":")),
        _ => None,
    }
}

/// Skips the value of an unknown field: a string, `true`, `false`, `null`
/// or an integer (anything else is left to serde_json).
fn skip_value(line: &str, i: &mut usize) -> Option<()> {
    let bytes = line.as_bytes();
    match bytes.get(*i)? {
        b'"' => {
            scan_str(line, i)?;
        }
        b't' | b'f' | b'n' => {
            let rest = &bytes[*i..];
            let word: &[u8] = [&b"true"[..], b"false", b"null"]
                .into_iter()
                .find(|w| rest.starts_with(w))?;
            *i += word.len();
        }
        _ => {
            scan_i64(bytes, i)?;
        }
    }
    Some(())
}

/// A string without escapes or control characters at `line[*i]`; moves past it.
#[inline(always)]
fn scan_str<'a>(line: &'a str, i: &mut usize) -> Option<&'a str> {
    let bytes = line.as_bytes();
    if bytes.get(*i) != Some(&b'"') {
        return None;
    }
    let start = *i + 1;
    let end = string_stop(bytes, start)?;
    if bytes[end] != b'"' {
        return None;
    }
    *i = end + 1;
    // Both ends sit next to a `"` byte, so they are character boundaries.
    line.get(start..end)
}

/// Where the first `"`, `\` or control character at or after `from` is.
///
/// Looks at 8 bytes at a time (strings are most of a line's bytes): a byte
/// equal to `c` is a zero byte of `x ^ c…c`, found with the usual
/// `(v - 0x01…01) & !v & 0x80…80` test, which also finds bytes below 0x20
/// with `0x20…20` in place of `0x01…01`. Bits may be set wrongly only above
/// a byte rightly found, so the lowest one is exact.
#[inline(always)]
pub(crate) fn string_stop(bytes: &[u8], from: usize) -> Option<usize> {
    const ONES: u64 = u64::from_ne_bytes([1; 8]);
    const HIGH: u64 = ONES * 0x80;
    let mut i = from;
    while let Some(chunk) = bytes.get(i..i + 8) {
        let x = u64::from_le_bytes(chunk.try_into().expect("8 bytes"));
        let quote = x ^ (ONES * u64::from(b'"'));
        let backslash = x ^ (ONES * u64::from(b'\\'));
        let found = ((quote.wrapping_sub(ONES) & !quote)
            | (backslash.wrapping_sub(ONES) & !backslash)
            | (x.wrapping_sub(ONES * 0x20) & !x))
            & HIGH;
        if found != 0 {
            return Some(i + (found.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    bytes[i..]
        .iter()
        .position(|&b| b == b'"' || b == b'\\' || b < 0x20)
        .map(|p| i + p)
}

/// `null` or a value, as [`Field`] reads it.
#[inline]
fn scan_field<T>(line: &[u8], i: &mut usize, value: impl FnOnce(&mut usize) -> Option<T>) -> Option<Field<T>> {
    if line[*i..].starts_with(b"null") {
        *i += 4;
        return Some(Field::Null);
    }
    value(i).map(Field::Value)
}

/// `null` (`None`) or a value, as serde reads an `Option`.
#[inline]
fn scan_null_or<T>(line: &[u8], i: &mut usize, value: impl FnOnce(&mut usize) -> Option<T>) -> Option<Option<T>> {
    if line[*i..].starts_with(b"null") {
        *i += 4;
        return Some(None);
    }
    value(i).map(Some)
}

/// A JSON integer at `line[*i]` that fits in a `u32`, as serde_json reads it; moves past it.
#[inline]
fn scan_u32(line: &[u8], i: &mut usize) -> Option<u32> {
    u32::try_from(scan_digits(line, i)?).ok()
}

/// The digits of a JSON integer at `line[*i]` as a magnitude, the way
/// serde_json reads them: no leading zero, no fraction or exponent (those
/// make a float), no overflow.
#[inline(always)]
fn scan_digits(line: &[u8], i: &mut usize) -> Option<u64> {
    let start = *i;
    let mut v: u64 = 0;
    while let Some(&b) = line.get(*i) {
        let d = b.wrapping_sub(b'0');
        if d > 9 {
            break;
        }
        // Wraps only past 19 digits, which are counted again below.
        v = v.wrapping_mul(10).wrapping_add(u64::from(d));
        *i += 1;
    }
    let digits = *i - start;
    if digits == 0 || (digits > 1 && line[start] == b'0') {
        return None;
    }
    if digits > 19 {
        v = long_digits(&line[start..*i])?;
    }
    if matches!(line.get(*i), Some(b'.' | b'e' | b'E')) {
        return None;
    }
    Some(v)
}

/// The value of more than 19 digits, if it fits in a `u64`.
#[cold]
fn long_digits(digits: &[u8]) -> Option<u64> {
    digits
        .iter()
        .try_fold(0u64, |v, &b| v.checked_mul(10)?.checked_add(u64::from(b - b'0')))
}

/// A JSON integer at `line[*i]` that fits in a `u64`, as serde_json reads it; moves past it.
#[inline(always)]
pub(crate) fn scan_u64(line: &[u8], i: &mut usize) -> Option<u64> {
    scan_digits(line, i)
}

/// A JSON integer at `line[*i]` that fits in an `i64`, as serde_json reads it; moves past it.
#[inline(always)]
pub(crate) fn scan_i64(line: &[u8], i: &mut usize) -> Option<i64> {
    if line.get(*i) == Some(&b'-') {
        *i += 1;
        let m = scan_digits(line, i)?;
        // serde_json reads `-0` as a float, so it is no i64 to it.
        if m == 0 || m > 1 << 63 {
            return None;
        }
        return Some((m as i64).wrapping_neg());
    }
    i64::try_from(scan_digits(line, i)?).ok()
}

#[inline]
fn from_raw(raw: RawLine<'_>) -> Result<ParsedLine<'_>, LineError> {
    let ty = need(
        raw.ty.map(|t| t.0),
        "?",
        "type",
        "one of invoke, ok, fail, info, deliver, nemesis, read, committed, begin, end",
    )?;
    let ty = ty.as_ref();
    const OP: &str = "an integer op id";
    const TIME: &str = "an integer, nanoseconds since the run started";
    Ok(match ty {
        "invoke" => ParsedLine::Invoke {
            op: need_field(raw.op, ty, "op", OP)?,
            key: need_field(raw.key, ty, "key", "a string")?.0,
            seq: need_field(raw.seq, ty, "seq", "a non-negative integer")?,
            time: need(raw.time, ty, "time", TIME)?,
            events: match raw.events {
                Some(OpEvents::Count(0)) => {
                    return Err(LineError(
                        "`invoke` line has `events` 0; an op publishes at least one event (leave `events` out, or null, for one)"
                            .into(),
                    ))
                }
                Some(OpEvents::Each(places)) if places.is_empty() => {
                    return Err(LineError(
                        "`invoke` line has an empty `events` array; an op publishes at least one event (leave `events` out, or null, for one)"
                            .into(),
                    ))
                }
                events => events,
            },
        },
        "ok" | "fail" | "info" => ParsedLine::Complete {
            op: need_field(raw.op, ty, "op", OP)?,
            outcome: match ty {
                "ok" => Outcome::Ok,
                "fail" => Outcome::Fail,
                _ => Outcome::Info,
            },
            time: need(raw.time, ty, "time", TIME)?,
        },
        "deliver" => ParsedLine::Deliver {
            op: match raw.op {
                Field::Value(op) => Some(op),
                Field::Null => None,
                Field::Absent => need(
                    None,
                    ty,
                    "op",
                    "an integer op id, or null for a record that names no op",
                )?,
            },
            event: need(raw.event, ty, "event", "a string, the event id")?.0,
            key: match raw.key {
                Field::Value(k) => Some(k.0),
                _ => None,
            },
            seq: match raw.seq {
                Field::Value(s) => Some(s),
                _ => None,
            },
            partition: need(raw.partition, ty, "partition", "an integer")?,
            offset: need(raw.offset, ty, "offset", "an integer")?,
            time: need(raw.time, ty, "time", TIME)?,
            index: raw.index.unwrap_or(0),
        },
        "nemesis" => ParsedLine::Nemesis {
            fault: need(raw.fault, ty, "fault", "a fault name")?.0,
            phase: match need(raw.phase, ty, "phase", "\"start\", \"stop\" or \"failed\"")?
                .0
                .as_ref()
            {
                "start" => FaultPhase::Start,
                "stop" => FaultPhase::Stop,
                "failed" => FaultPhase::Failed,
                other => {
                    return Err(LineError(format!(
                        "`nemesis` line has phase \"{other}\"; expected \"start\", \"stop\" or \"failed\""
                    )))
                }
            },
            time: need(raw.time, ty, "time", TIME)?,
            error: match raw.error {
                Some(ErrorField::Text(t)) => Some(t.0),
                _ => None,
            },
        },
        "read" => ParsedLine::Read {
            key: need_field(raw.key, ty, "key", "a string")?.0,
            seq: match raw.seq {
                Field::Value(s) => Some(s),
                _ => None,
            },
            invoke_time: need(raw.invoke_time, ty, "invoke_time", TIME)?,
            time: need(raw.time, ty, "time", TIME)?,
        },
        "committed" => ParsedLine::Committed {
            op: need_field(raw.op, ty, "op", OP)?,
        },
        "restart" => ParsedLine::Restart {
            time: need(raw.time, ty, "time", TIME)?,
        },
        "begin" => ParsedLine::Begin {
            time: need(raw.time, ty, "time", TIME)?,
        },
        "end" => ParsedLine::End {
            time: need(raw.time, ty, "time", TIME)?,
        },
        other => {
            return Err(LineError(format!(
            "unknown line type \"{other}\"; expected one of invoke, ok, fail, info, deliver, nemesis, read, committed, restart, begin, end"
        )))
        }
    })
}

/// Turns serde_json's message into one that names the field and says what was expected.
///
/// Runs only on the error path, so it may re-parse the line as a generic value.
fn explain_json_error(line: &[u8], e: serde_json::Error) -> LineError {
    use serde_json::Value;
    let value: Value = match serde_json::from_slice(line) {
        Ok(v) => v,
        Err(_) => {
            let text = String::from_utf8_lossy(line);
            let shown: String = text.chars().take(80).collect();
            return LineError(format!("not valid JSON ({e}): {shown:?}"));
        }
    };
    let Value::Object(map) = value else {
        return LineError(format!("expected a JSON object, found {}", json_kind(&value)));
    };
    let expectations: [(&str, &str); 12] = [
        ("type", "a string"),
        ("op", "a non-negative integer"),
        ("key", "a string"),
        ("seq", "a non-negative integer"),
        ("time", "an integer (nanoseconds)"),
        ("event", "a string"),
        ("partition", "a 32-bit integer"),
        ("offset", "an integer"),
        ("fault", "a string"),
        ("invoke_time", "an integer (nanoseconds)"),
        (
            "events",
            "a positive integer or an array of {\"key\": string, \"seq\": integer} objects",
        ),
        ("index", "a non-negative 32-bit integer"),
    ];
    for (field, expected) in expectations {
        let Some(v) = map.get(field) else { continue };
        let fits = match field {
            "type" | "key" | "event" | "fault" => v.is_string() || (v.is_null() && field == "key"),
            "op" | "seq" => v.is_u64() || v.is_null(),
            "partition" => v.as_i64().is_some_and(|p| i32::try_from(p).is_ok()),
            "index" => v.is_null() || v.as_u64().is_some_and(|i| u32::try_from(i).is_ok()),
            "events" => v.is_null() || serde_json::from_value::<OpEvents>(v.clone()).is_ok(),
            _ => v.is_i64(),
        };
        if !fits {
            return LineError(format!("field `{field}` should be {expected}, found {}", json_kind(v)));
        }
    }
    LineError(format!("unusable line: {e}"))
}

fn json_kind(v: &serde_json::Value) -> String {
    use serde_json::Value;
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => format!("the boolean {b}"),
        Value::Number(n) => format!("the number {n}"),
        Value::String(s) => format!("the string {s:?}"),
        Value::Array(_) => "an array".into(),
        Value::Object(_) => "an object".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_lines_round_trip_through_the_parser() {
        let written = [
            HistoryLine::Invoke {
                op: 17,
                process: 2,
                key: "k3".into(),
                seq: 5,
                time: 120_000,
                events: None,
            },
            HistoryLine::Ok {
                op: 17,
                process: 2,
                time: 150_000,
            },
            HistoryLine::Fail {
                op: 18,
                process: 2,
                time: 160_000,
                error: "boom".into(),
            },
            HistoryLine::Info {
                op: 19,
                process: 2,
                time: 170_000,
                error: "timeout".into(),
            },
            HistoryLine::Deliver {
                op: Some(17),
                event: "0b9c".into(),
                key: Some("k3".into()),
                seq: Some(5),
                topic: "orders".into(),
                partition: 0,
                offset: 42,
                time: 180_000,
                index: None,
            },
            HistoryLine::Nemesis {
                fault: "kafka-partition".into(),
                phase: FaultPhase::Start,
                time: 100_000,
                error: None,
            },
            HistoryLine::Read {
                key: "k3".into(),
                seq: Some(4),
                invoke_time: 1,
                time: 2,
            },
            HistoryLine::Committed { op: 17 },
        ];
        let lines: Vec<String> = written.iter().map(HistoryLine::to_json).collect();
        assert!(lines[0].starts_with(r#"{"type":"invoke","op":17"#), "{}", lines[0]);
        assert!(matches!(
            parse_line(lines[0].as_bytes()),
            Ok(ParsedLine::Invoke { op: 17, seq: 5, .. })
        ));
        assert!(matches!(
            parse_line(lines[2].as_bytes()),
            Ok(ParsedLine::Complete {
                op: 18,
                outcome: Outcome::Fail,
                ..
            })
        ));
        assert!(matches!(
            parse_line(lines[4].as_bytes()),
            Ok(ParsedLine::Deliver {
                op: Some(17),
                partition: 0,
                offset: 42,
                ..
            })
        ));
        assert!(matches!(
            parse_line(lines[5].as_bytes()),
            Ok(ParsedLine::Nemesis {
                phase: FaultPhase::Start,
                ..
            })
        ));
        assert!(matches!(
            parse_line(lines[6].as_bytes()),
            Ok(ParsedLine::Read { seq: Some(4), .. })
        ));
        assert!(matches!(
            parse_line(lines[7].as_bytes()),
            Ok(ParsedLine::Committed { op: 17 })
        ));
    }

    #[test]
    fn marks_and_failed_faults_round_trip() {
        let begin = HistoryLine::Begin { time: 0 }.to_json();
        assert_eq!(begin, r#"{"type":"begin","time":0}"#);
        assert_eq!(parse_line(begin.as_bytes()), Ok(ParsedLine::Begin { time: 0 }));
        let end = HistoryLine::End { time: 9, drained: true }.to_json();
        assert_eq!(end, r#"{"type":"end","time":9,"drained":true}"#);
        assert_eq!(parse_line(end.as_bytes()), Ok(ParsedLine::End { time: 9 }));
        let restart = HistoryLine::Restart { time: 7 }.to_json();
        assert_eq!(restart, r#"{"type":"restart","time":7}"#);
        assert_eq!(parse_line(restart.as_bytes()), Ok(ParsedLine::Restart { time: 7 }));
        let failed = HistoryLine::Nemesis {
            fault: "pg-pause".into(),
            phase: FaultPhase::Failed,
            time: 5,
            error: Some("cannot pause postgres: it is not running".into()),
        }
        .to_json();
        assert_eq!(
            failed,
            r#"{"type":"nemesis","fault":"pg-pause","phase":"failed","time":5,"error":"cannot pause postgres: it is not running"}"#
        );
        match parse_line(failed.as_bytes()).unwrap() {
            ParsedLine::Nemesis {
                phase: FaultPhase::Failed,
                error: Some(e),
                ..
            } => assert!(e.contains("not running")),
            other => panic!("{other:?}"),
        }
        // A start line has no error; a fail line's error of any shape is ignored.
        let start = r#"{"type":"nemesis","fault":"f","phase":"start","time":1}"#;
        assert!(matches!(
            parse_line(start.as_bytes()),
            Ok(ParsedLine::Nemesis { error: None, .. })
        ));
        let odd = r#"{"type":"fail","op":1,"time":1,"error":{"code":409}}"#;
        assert!(parse_line(odd.as_bytes()).is_ok());
        assert!(parse_line(br#"{"type":"end"}"#)
            .unwrap_err()
            .0
            .contains("lacks field `time`"));
    }

    #[test]
    fn contract_examples_parse() {
        let lines = [
            r#"{"type":"invoke","op":17,"process":2,"key":"k3","seq":5,"time":120000}"#,
            r#"{"type":"ok","op":17,"process":2,"time":150000}"#,
            r#"{"type":"fail","op":18,"process":2,"time":160000,"error":"..."}"#,
            r#"{"type":"info","op":19,"process":2,"time":170000,"error":"timeout"}"#,
            r#"{"type":"deliver","op":17,"event":"0b9c...","key":"k3","seq":5,"topic":"orders","partition":0,"offset":42,"time":180000}"#,
            r#"{"type":"nemesis","fault":"kafka-partition","phase":"start","time":100000}"#,
            r#"{"type":"committed","op":17}"#,
            r#"{"type":"read","key":"k3","seq":4,"invoke_time":1,"time":2}"#,
        ];
        for l in lines {
            parse_line(l.as_bytes()).unwrap_or_else(|e| panic!("{l}: {e}"));
        }
    }

    #[test]
    fn unknown_fields_are_ignored_and_escapes_are_decoded() {
        let r = parse_line(br#"{"extra":[1,{"a":2}],"type":"invoke","op":1,"key":"k\"1","seq":0,"time":5}"#).unwrap();
        assert_eq!(
            r,
            ParsedLine::Invoke {
                op: 1,
                key: Cow::Borrowed("k\"1"),
                seq: 0,
                time: 5,
                events: None,
            }
        );
    }

    #[test]
    fn errors_name_the_field() {
        let e = parse_line(br#"{"type":"invoke","op":"x","key":"k","seq":0,"time":1}"#).unwrap_err();
        assert!(e.0.contains("`op`") && e.0.contains("string"), "{e}");
        let e = parse_line(br#"{"type":"invoke","op":1,"seq":0,"time":1}"#).unwrap_err();
        assert!(e.0.contains("lacks field `key`"), "{e}");
        let e = parse_line(br#"{"type":"frobnicate","op":1}"#).unwrap_err();
        assert!(e.0.contains("unknown line type \"frobnicate\""), "{e}");
        let e = parse_line(br#"{"op":1}"#).unwrap_err();
        assert!(e.0.contains("lacks field `type`"), "{e}");
        let e = parse_line(b"not json").unwrap_err();
        assert!(e.0.contains("not valid JSON"), "{e}");
        let e = parse_line(b"[1,2]").unwrap_err();
        assert!(e.0.contains("expected a JSON object"), "{e}");
        let e = parse_line(br#"{"type":"deliver","event":"e","partition":0,"offset":1,"time":1}"#).unwrap_err();
        assert!(e.0.contains("lacks field `op`"), "{e}");
        let e = parse_line(br#"{"type":"nemesis","fault":"f","phase":"middle","time":1}"#).unwrap_err();
        assert!(e.0.contains("phase \"middle\""), "{e}");
    }

    #[test]
    fn an_invoke_may_name_its_events_and_a_delivery_its_index() {
        let invoke =
            |events: &str| format!(r#"{{"type":"invoke","op":1,"process":0,"key":"k","seq":4,"time":1{events}}}"#);
        let events_of = |line: &str| match parse_line(line.as_bytes()) {
            Ok(ParsedLine::Invoke { events, .. }) => events,
            other => panic!("{line}: {other:?}"),
        };
        assert_eq!(events_of(&invoke("")), None);
        assert_eq!(events_of(&invoke(r#","events":null"#)), None);
        assert_eq!(events_of(&invoke(r#","events":5"#)), Some(OpEvents::Count(5)));
        assert_eq!(events_of(&invoke(r#","events":1"#)), Some(OpEvents::Count(1)));
        assert_eq!(
            events_of(&invoke(
                r#","events":[{"key":"k","seq":4},{"key":"j\"2","seq":0,"x":1}]"#
            )),
            Some(OpEvents::Each(vec![
                EventPlace {
                    key: "k".into(),
                    seq: 4
                },
                EventPlace {
                    key: "j\"2".into(),
                    seq: 0
                },
            ]))
        );
        let deliver = |index: &str| {
            format!(
                r#"{{"type":"deliver","op":1,"event":"e","key":"k","seq":4,"topic":"t","partition":0,"offset":1,"time":2{index}}}"#
            )
        };
        let index_of = |line: &str| match parse_line(line.as_bytes()) {
            Ok(ParsedLine::Deliver { index, .. }) => index,
            other => panic!("{line}: {other:?}"),
        };
        assert_eq!(index_of(&deliver("")), 0);
        assert_eq!(index_of(&deliver(r#","index":null"#)), 0);
        assert_eq!(index_of(&deliver(r#","index":3"#)), 3);
        assert_eq!(index_of(&deliver(r#","index":4294967295"#)), u32::MAX);
        // The scanner (counts and indexes) and serde_json (lists) agree.
        for line in [
            invoke(r#","events":5"#),
            invoke(r#","events":null"#),
            invoke(r#","events":[{"key":"k","seq":4}]"#),
            deliver(r#","index":3"#),
            deliver(r#","index":null"#),
        ] {
            assert_eq!(parse_line(line.as_bytes()), parse_line_serde(line.as_bytes()), "{line}");
        }
        // What a recorder writes reads back as it was written.
        let places = vec![
            EventPlace {
                key: "a".into(),
                seq: 0,
            },
            EventPlace {
                key: "b".into(),
                seq: 9,
            },
        ];
        for events in [OpEvents::Count(5), OpEvents::Each(places)] {
            let line = HistoryLine::Invoke {
                op: 7,
                process: 1,
                key: "a".into(),
                seq: 0,
                time: 3,
                events: Some(events.clone()),
            }
            .to_json();
            assert_eq!(events_of(&line), Some(events), "{line}");
        }
        let line = HistoryLine::Deliver {
            op: Some(7),
            event: "5eed0000-0000-4000-8000-000000000007".into(),
            key: Some("b".into()),
            seq: Some(9),
            topic: "t".into(),
            partition: 1,
            offset: 2,
            time: 4,
            index: Some(1),
        }
        .to_json();
        assert!(line.ends_with(r#","index":1}"#), "{line}");
        assert_eq!(index_of(&line), 1);
    }

    #[test]
    fn no_events_or_an_index_out_of_range_is_refused() {
        let invoke = |events: &str| {
            format!(r#"{{"type":"invoke","op":1,"process":0,"key":"k","seq":4,"time":1,"events":{events}}}"#)
        };
        let e = parse_line(invoke("0").as_bytes()).unwrap_err();
        assert!(e.0.contains("`events` 0") && e.0.contains("at least one event"), "{e}");
        let e = parse_line(invoke("[]").as_bytes()).unwrap_err();
        assert!(e.0.contains("empty `events` array"), "{e}");
        for bad in [
            "-1",
            "1.5",
            "4294967296",
            r#""3""#,
            "true",
            "{}",
            "[1]",
            r#"[{"key":"k"}]"#,
            r#"[{"key":1,"seq":0}]"#,
            r#"[{"key":"k","seq":-1}]"#,
        ] {
            let e = parse_line(invoke(bad).as_bytes()).unwrap_err();
            assert!(
                e.0.contains("field `events` should be a positive integer or an array of"),
                "{bad}: {e}"
            );
        }
        for bad in ["-1", "1.5", "4294967296", r#""3""#, "[0]"] {
            let line =
                format!(r#"{{"type":"deliver","op":1,"event":"e","partition":0,"offset":1,"time":2,"index":{bad}}}"#);
            let e = parse_line(line.as_bytes()).unwrap_err();
            assert!(
                e.0.contains("field `index` should be a non-negative 32-bit integer"),
                "{bad}: {e}"
            );
            assert_eq!(parse_line(line.as_bytes()), parse_line_serde(line.as_bytes()));
        }
    }

    #[test]
    fn a_delivery_may_name_no_op() {
        let r = parse_line(br#"{"type":"deliver","op":null,"event":"e","partition":0,"offset":1,"time":1}"#).unwrap();
        assert!(matches!(
            r,
            ParsedLine::Deliver {
                op: None,
                key: None,
                seq: None,
                ..
            }
        ));
    }

    /// Every JSON line written in the test histories (the checker's tests, the
    /// CLI's tests, the contract), for comparing the two readings of a line.
    fn test_history_lines() -> Vec<String> {
        let sources = [
            include_str!("../tests/anomalies.rs"),
            include_str!("../tests/model.rs"),
            include_str!("../../harness/tests/offline/cli_check.rs"),
            include_str!("../../docs/history.md"),
        ];
        let mut lines = Vec::new();
        for source in sources {
            let mut rest = source;
            while let Some(start) = rest.find("r#\"{") {
                let body = &rest[start + 3..];
                let end = body.find("\"#").expect("raw strings end");
                lines.extend(body[..end].lines().map(render_template));
                rest = &body[end..];
            }
            lines.extend(source.lines().filter(|l| l.starts_with('{')).map(str::to_string));
        }
        lines
    }

    /// A `format!` template's line with `7` for each placeholder (`{{` is `{`).
    fn render_template(line: &str) -> String {
        if !line.starts_with("{{") {
            return line.to_string();
        }
        let mut out = String::new();
        let mut chars = line.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '{' | '}' if chars.peek() == Some(&c) => {
                    chars.next();
                    out.push(c);
                }
                '{' => {
                    for c in chars.by_ref() {
                        if c == '}' {
                            break;
                        }
                    }
                    out.push('7');
                }
                c => out.push(c),
            }
        }
        out
    }

    #[test]
    fn the_scanner_reads_every_test_history_line_as_serde_json_does() {
        let lines = test_history_lines();
        assert!(lines.len() > 60, "{}", lines.len());
        let mut scanned = 0;
        for line in &lines {
            scanned += scan_line(line).is_some() as usize;
            assert_eq!(parse_line(line.as_bytes()), parse_line_serde(line.as_bytes()), "{line}");
        }
        // A few are broken on purpose; the rest must be the scanner's.
        assert!(scanned + 8 > lines.len(), "{scanned} of {}", lines.len());
    }

    #[test]
    fn the_scanner_leaves_unusual_lines_to_serde_json() {
        for line in [
            r#"{"type":"invoke","op":1,"key":"k","seq":0,"time":1,"op":2}"#,
            r#"{"type":"invoke", "op":1,"key":"k","seq":0,"time":1}"#,
            r#"{"type":"invoke","op":01,"key":"k","seq":0,"time":1}"#,
            r#"{"type":"invoke","op":1,"key":"k","seq":0,"time":-0}"#,
            r#"{"type":"invoke","op":1,"key":"k","seq":0,"time":1.0}"#,
            r#"{"type":"invoke","op":1,"key":"k\n","seq":0,"time":1}"#,
            r#"{"type":"invoke","op":1,"key":"k","seq":0,"time":9223372036854775808}"#,
            r#"{"type":"deliver","op":1,"event":"e","partition":2147483648,"offset":1,"time":1}"#,
            r#"{"type":"invoke","op":1,"key":"k","seq":0,"time":1,"x":{"a":1}}"#,
            r#"{"type":"invoke","op":1,"key":"k","seq":0,"time":1,}"#,
            r#"{"type":"invoke","op":1,"key":"k","seq":0,"time":1}x"#,
        ] {
            assert!(scan_line(line).is_none(), "{line}");
            assert_eq!(parse_line(line.as_bytes()), parse_line_serde(line.as_bytes()), "{line}");
        }
        // The common shape, non-ASCII keys included, is the scanner's.
        let line = r#"{"type":"invoke","op":1,"process":0,"key":"kä","seq":0,"time":-5,"x":null,"y":true}"#;
        assert!(scan_line(line).is_some());
        assert_eq!(parse_line(line.as_bytes()), parse_line_serde(line.as_bytes()));
    }

    /// A JSON-ish token a line's field may hold, tricky ones included.
    fn token() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        prop_oneof![
            (0u64..1000).prop_map(|n| n.to_string()),
            any::<i64>().prop_map(|n| n.to_string()),
            any::<u64>().prop_map(|n| n.to_string()),
            Just("-0".to_string()),
            Just("00".to_string()),
            Just("1e3".to_string()),
            Just("2.5".to_string()),
            Just("null".to_string()),
            Just("true".to_string()),
            Just("[1]".to_string()),
            Just("\"k\\\"1\"".to_string()),
            Just("\"\"".to_string()),
            Just("4294967295".to_string()),
            Just("4294967296".to_string()),
            Just("[]".to_string()),
            Just("[{\"key\":\"k\",\"seq\":1}]".to_string()),
            prop_oneof![
                Just("invoke"),
                Just("ok"),
                Just("fail"),
                Just("info"),
                Just("deliver"),
                Just("nemesis"),
                Just("read"),
                Just("committed"),
                Just("begin"),
                Just("end"),
                Just("start"),
                Just("stop"),
                Just("failed"),
                Just("5eed0000-0000-4000-8000-00000009212b"),
            ]
            .prop_map(|s| format!("\"{s}\"")),
        ]
    }

    proptest::proptest! {
        #[test]
        fn a_string_stops_where_a_byte_at_a_time_look_stops(
            bytes in proptest::collection::vec(proptest::prop_oneof![
                proptest::strategy::Just(b'"'), proptest::strategy::Just(b'\\'), proptest::strategy::Just(0x1fu8), proptest::strategy::Just(0x20u8), proptest::strategy::Just(0x7fu8), proptest::strategy::Just(0x80u8), proptest::strategy::Just(0xffu8), proptest::strategy::Just(b'a'),
                proptest::num::u8::ANY,
            ], 0..40),
            from in 0usize..40,
        ) {
            let from = from.min(bytes.len());
            let naive = bytes[from..].iter().position(|&b| b == b'"' || b == b'\\' || b < 0x20).map(|p| from + p);
            proptest::prop_assert_eq!(string_stop(&bytes, from), naive);
        }
    }

    proptest::proptest! {
        #[test]
        fn the_scanner_and_serde_json_agree_on_any_line(
            ty in token(),
            fields in proptest::collection::vec((0usize..18, token()), 0..9),
            cut in proptest::option::of((0usize..200, proptest::num::u8::ANY)),
        ) {
            const NAMES: [&str; 18] = [
                "op", "key", "seq", "time", "event", "partition", "offset", "fault",
                "phase", "invoke_time", "error", "process", "topic", "drained", "type", "",
                "events", "index",
            ];
            let mut line = format!("{{\"type\":{ty}");
            for (name, value) in &fields {
                line.push_str(&format!(",\"{}\":{value}", NAMES[*name]));
            }
            line.push('}');
            let mut bytes = line.into_bytes();
            if let Some((at, b)) = cut {
                let at = at % bytes.len();
                bytes[at] = b;
            }
            proptest::prop_assert_eq!(parse_line(&bytes), parse_line_serde(&bytes));
        }
    }
}
