//! How a history gets into a [`HistoryIndex`] on all cores, block by block:
//!
//! 1. the block's pieces are parsed in parallel into fixed-size records
//!    ([`Rec`]; the rare lines of other shapes are kept whole beside them);
//! 2. the calling thread routes the records of each parsed piece in file
//!    order (the part of indexing that depends on the order of all lines:
//!    which ops and keys exist, and their numbers) while later pieces are
//!    still being parsed;
//! 3. the shards apply them in parallel, each its own ops' records in file order.
//!
//! The result is the same as adding the lines one by one with
//! [`HistoryIndex::add`], errors included: the first unusable or refused
//! line in file order is reported, with its number.

use crate::check::{short_key, HistoryIndex, Rec, K_COMMITTED, K_DELIVER, K_FAIL, K_INFO, K_INVOKE, K_OK, K_OTHER};
use crate::event_id::EventId;
use crate::history::{scan_i64, scan_u64, ParsedLine};
use crate::reader::{parse_lines_fast, record_line, split_pieces, BlockSink, LineTaker, PieceLines, ReadSummary};
use crate::HistoryError;
use rustc_hash::FxHashMap;
use std::sync::mpsc;

/// Pieces a block is cut into for parallel parsing (a few per core, so
/// uneven pieces even out).
const PIECES_PER_BLOCK: usize = 16;

/// Feeds blocks to a [`HistoryIndex`].
pub(crate) struct IndexSink<'i> {
    index: &'i mut HistoryIndex,
    /// Record buffers, kept from block to block so their memory is
    /// allocated (and faulted in) once.
    recs: Vec<Vec<Rec>>,
}

impl<'i> IndexSink<'i> {
    /// A sink into `index`.
    pub(crate) fn new(index: &'i mut HistoryIndex) -> Self {
        IndexSink {
            index,
            recs: Vec::new(),
        }
    }
}

/// What parsing one piece gave besides its records.
struct Parsed<'a> {
    /// The lines that are not in the common form, in order (each stands
    /// behind a `K_OTHER` record).
    others: Vec<ParsedLine<'a>>,
    /// The keys of the records, each once, in the order first seen.
    keys: Vec<&'a str>,
    lines: PieceLines,
    max_time: i64,
    deliveries: u64,
    committed: u64,
}

/// Parses `piece` into `recs` (emptied first).
fn parse_piece<'a>(piece: &'a [u8], unterminated_tail: bool, recs: &mut Vec<Rec>) -> Parsed<'a> {
    recs.clear();
    let mut taker = PieceTaker {
        recs,
        others: Vec::new(),
        keys: Vec::new(),
        key_numbers: FxHashMap::default(),
        short_keys: FxHashMap::default(),
        max_time: 0,
        deliveries: 0,
        committed: 0,
    };
    let lines = parse_lines_fast(piece, unterminated_tail, &mut taker);
    Parsed {
        others: taker.others,
        keys: taker.keys,
        lines,
        max_time: taker.max_time,
        deliveries: taker.deliveries,
        committed: taker.committed,
    }
}

/// Takes the lines of one piece into records: those in the form the
/// recorder writes by [`fast_rec`], the others through the general parser.
struct PieceTaker<'a, 'r> {
    recs: &'r mut Vec<Rec>,
    others: Vec<ParsedLine<'a>>,
    keys: Vec<&'a str>,
    key_numbers: FxHashMap<&'a str, u32>,
    /// The numbers of keys of up to 15 bytes, by [`short_key`].
    short_keys: FxHashMap<u128, u32>,
    max_time: i64,
    deliveries: u64,
    committed: u64,
}

impl<'a> PieceTaker<'a, '_> {
    /// The key's number among the keys of the piece, numbered when first seen.
    #[inline]
    fn key_index(&mut self, k: &'a str) -> u32 {
        let keys = &mut self.keys;
        let new = |keys: &mut Vec<&'a str>| {
            keys.push(k);
            keys.len() as u32 - 1
        };
        match short_key(k.as_bytes()) {
            Some(packed) => *self.short_keys.entry(packed).or_insert_with(|| new(keys)),
            None => *self.key_numbers.entry(k).or_insert_with(|| new(keys)),
        }
    }

    /// Takes a record made by [`Rec::common`] or [`fast_rec`].
    #[inline]
    fn push(&mut self, r: Rec) {
        // What routing does for other lines, these lines get here (in any order: it is a count and a max).
        if r.kind <= K_DELIVER {
            self.max_time = self.max_time.max(r.time);
        }
        self.deliveries += u64::from(r.kind == K_DELIVER);
        self.committed += u64::from(r.kind == K_COMMITTED);
        self.recs.push(r);
    }
}

impl<'a> LineTaker<'a> for PieceTaker<'a, '_> {
    #[inline]
    fn fast(&mut self, piece: &'a [u8], start: usize) -> Option<usize> {
        let line = &piece[start..];
        let (mut r, key, len) = fast_rec(line)?;
        if let Some((from, to)) = key {
            let k = &line[from..to];
            r.key = match packed_key(line, from, to).and_then(|packed| self.short_keys.get(&packed).copied()) {
                Some(n) => n,
                // ASCII (the fast path reads no other keys), so UTF-8.
                None => self.key_index(std::str::from_utf8(k).ok()?),
            };
        }
        self.push(r);
        Some(start + len)
    }

    fn line(&mut self, _: u32, line: ParsedLine<'a>) {
        match Rec::common(&line, |k| self.key_index(k)) {
            Some(r) => self.push(r),
            None => {
                self.others.push(line);
                self.recs.push(Rec {
                    kind: K_OTHER,
                    ..Rec::SKIP
                });
            }
        }
    }
}

/// The value of each lowercase hex digit; `0x80` for every other byte.
static HEX: [u8; 256] = {
    let mut t = [0x80u8; 256];
    let mut c = 0;
    while c < 256 {
        t[c] = match c as u8 {
            b @ b'0'..=b'9' => b - b'0',
            b @ b'a'..=b'f' => b - b'a' + 10,
            _ => 0x80,
        };
        c += 1;
    }
    t
};

/// What [`fast_rec`] reads of a line: its record, where its key is in the
/// line (from, to), and the line's length with its line end.
type FastLine = (Rec, Option<(usize, usize)>, usize);

/// [`short_key`] of the key `b[from..to]`, read as one 16-byte word where
/// `b` has 16 bytes from `from` (a key is followed by more of its line).
#[inline(always)]
fn packed_key(b: &[u8], from: usize, to: usize) -> Option<u128> {
    let len = to - from;
    if len > 15 {
        return None;
    }
    match b.get(from..from + 16) {
        Some(word) => {
            let word = u128::from_le_bytes(word.try_into().expect("16 bytes"));
            Some(word & ((1u128 << (8 * len)) - 1) | (len as u128) << 120)
        }
        None => short_key(&b[from..to]),
    }
}

/// Reads bytes of a line in the recorder's own form, left to right.
struct Cursor<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Cursor<'a> {
    /// Moves past `s`, which must come next.
    #[inline(always)]
    fn lit<const N: usize>(&mut self, s: &[u8; N]) -> Option<()> {
        let next: &[u8; N] = self.b.get(self.i..self.i + N)?.try_into().ok()?;
        if next != s {
            return None;
        }
        self.i += N;
        Some(())
    }

    /// Whether another field follows (where the recorder writes one
    /// optional field last): one byte looked at, so lines without it pay
    /// next to nothing.
    #[inline(always)]
    fn more(&self) -> bool {
        self.b.get(self.i) == Some(&b',')
    }

    #[inline(always)]
    fn u64(&mut self) -> Option<u64> {
        scan_u64(self.b, &mut self.i)
    }

    #[inline(always)]
    fn i64(&mut self) -> Option<i64> {
        scan_i64(self.b, &mut self.i)
    }

    /// The rest of a string whose opening quote is behind, all ASCII with
    /// no escapes or control characters; moves past its closing quote.
    #[inline(always)]
    fn ascii(&mut self) -> Option<&'a [u8]> {
        const ONES: u64 = u64::from_ne_bytes([1; 8]);
        const HIGH: u64 = ONES * 0x80;
        let b = self.b;
        let start = self.i;
        let mut i = start;
        // As `string_stop`, 8 bytes at a time, also stopping at bytes past ASCII (their high bit).
        let stop = loop {
            let Some(chunk) = b.get(i..i + 8) else {
                break i + b[i..]
                    .iter()
                    .position(|&c| c == b'"' || c == b'\\' || !(0x20..0x80).contains(&c))?;
            };
            let x = u64::from_le_bytes(chunk.try_into().expect("8 bytes"));
            let quote = x ^ (ONES * u64::from(b'"'));
            let backslash = x ^ (ONES * u64::from(b'\\'));
            let found = ((quote.wrapping_sub(ONES) & !quote)
                | (backslash.wrapping_sub(ONES) & !backslash)
                | (x.wrapping_sub(ONES * 0x20) & !x)
                | x)
                & HIGH;
            if found != 0 {
                break i + (found.trailing_zeros() / 8) as usize;
            }
            i += 8;
        };
        if b[stop] != b'"' {
            return None;
        }
        self.i = stop + 1;
        Some(&b[start..stop])
    }

    /// `,"key":"K","seq":N`, as `invoke` and `deliver` lines have them: where
    /// the key's text is in the line (from, to), and the seq.
    #[inline(always)]
    fn key_and_seq(&mut self) -> Option<((usize, usize), u64)> {
        self.lit(b",\"key\":\"")?;
        let from = self.i;
        self.ascii()?;
        let span = (from, self.i - 1);
        self.lit(b",\"seq\":")?;
        Some((span, self.u64()?))
    }

    /// A canonical (lowercase, hyphenated) UUID, then its closing quote.
    #[inline(always)]
    fn uuid(&mut self) -> Option<EventId> {
        let text: &[u8; 37] = self.b.get(self.i..self.i + 37)?.try_into().ok()?;
        if text[8] != b'-' || text[13] != b'-' || text[18] != b'-' || text[23] != b'-' || text[36] != b'"' {
            return None;
        }
        // Each half from 16 digits, looked up without a branch per digit;
        // any byte that is not a lowercase hex digit sets the high bit of `bad`.
        let half = |positions: &[usize; 16]| {
            let (mut v, mut bad) = (0u64, 0u8);
            for &p in positions {
                let d = HEX[usize::from(text[p])];
                bad |= d;
                v = (v << 4) | u64::from(d & 0xf);
            }
            (v, bad)
        };
        let (high, bad_high) = half(&[0, 1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12, 14, 15, 16, 17]);
        let (low, bad_low) = half(&[19, 20, 21, 22, 24, 25, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35]);
        if (bad_high | bad_low) & 0x80 != 0 {
            return None;
        }
        self.i += 37;
        Some([high, low])
    }

    /// The end of the object and of the line: the length of the line with
    /// its line end.
    #[inline(always)]
    fn end(&mut self) -> Option<usize> {
        self.lit(b"}")?;
        match self.b.get(self.i..self.i + 2) {
            None if self.i == self.b.len() => Some(self.i),
            _ if self.b[self.i] == b'\n' => Some(self.i + 1),
            Some([b'\r', b'\n']) => Some(self.i + 2),
            _ => None,
        }
    }
}

/// The record of the line at the start of `b`, when it is written exactly
/// as the recorder writes an `invoke` (naming no `events`, or their count), `ok`, `fail`,
/// `info`, `deliver` (with an op, a key, a seq, a UUID event id and maybe an
/// `index`) or `committed` line: its fields
/// in the recorder's order, no whitespace, no escapes, integers. Returns the
/// record (its key still to number), where its key is in `b`, and the line's length with its
/// line end; `None` for any other line, which the general parser then reads
/// (to the same record, when it is one: the tests hold them to that).
#[inline]
fn fast_rec(b: &[u8]) -> Option<FastLine> {
    let mut c = Cursor { b, i: 0 };
    c.lit(b"{\"type\":\"")?;
    let mut r = Rec::SKIP;
    let mut key = None;
    match b.get(c.i)? {
        b'i' if b.get(c.i + 2) == Some(&b'v') => {
            c.lit(b"invoke\",\"op\":")?;
            r.op = c.u64()?;
            c.lit(b",\"process\":")?;
            c.i64()?;
            let (span, seq) = c.key_and_seq()?;
            key = Some(span);
            r.seq = seq;
            c.lit(b",\"time\":")?;
            r.time = c.i64()?;
            // An op of several events on its key: their count, last (a list
            // of places is the general parser's).
            if c.more() {
                c.lit(b",\"events\":")?;
                let n = u32::try_from(c.u64()?).ok().filter(|&n| n > 0)?;
                r.index = if n > 1 { n } else { 0 };
            }
            r.kind = K_INVOKE;
        }
        b'o' | b'f' | b'i' => {
            r.kind = match b[c.i] {
                b'o' => {
                    c.lit(b"ok\"")?;
                    K_OK
                }
                b'f' => {
                    c.lit(b"fail\"")?;
                    K_FAIL
                }
                _ => {
                    c.lit(b"info\"")?;
                    K_INFO
                }
            };
            c.lit(b",\"op\":")?;
            r.op = c.u64()?;
            c.lit(b",\"process\":")?;
            c.i64()?;
            c.lit(b",\"time\":")?;
            r.time = c.i64()?;
            if c.lit(b",\"error\":\"").is_some() {
                c.ascii()?;
            }
        }
        b'd' => {
            c.lit(b"deliver\",\"op\":")?;
            r.op = c.u64()?;
            c.lit(b",\"event\":\"")?;
            r.event = c.uuid()?;
            let (span, seq) = c.key_and_seq()?;
            key = Some(span);
            r.seq = seq;
            c.lit(b",\"topic\":\"")?;
            c.ascii()?;
            c.lit(b",\"partition\":")?;
            r.partition = i32::try_from(c.i64()?).ok()?;
            c.lit(b",\"offset\":")?;
            r.offset = c.i64()?;
            c.lit(b",\"time\":")?;
            r.time = c.i64()?;
            // The recorder writes an event's index last, only for an op of several events.
            if c.more() {
                c.lit(b",\"index\":")?;
                r.index = u32::try_from(c.u64()?).ok()?;
            }
            r.kind = K_DELIVER;
        }
        b'c' => {
            c.lit(b"committed\",\"op\":")?;
            r.op = c.u64()?;
            r.kind = K_COMMITTED;
        }
        _ => return None,
    }
    let len = c.end()?;
    Some((r, key, len))
}

impl BlockSink for IndexSink<'_> {
    fn block(
        &mut self,
        name: &str,
        block: &[u8],
        unterminated_tail: bool,
        summary: &mut ReadSummary,
    ) -> Result<(), HistoryError> {
        let pieces = split_pieces(block, PIECES_PER_BLOCK);
        let last = pieces.len().saturating_sub(1);
        let index = &mut *self.index;
        let pool = &mut self.recs;
        // 1 and 2: the pieces are parsed on the pool while this thread
        // routes the ones already parsed, in order, so routing overlaps
        // parsing. Each piece's record buffer goes to its task and back.
        let (senders, receivers): (Vec<_>, Vec<_>) = (0..pieces.len()).map(|_| mpsc::sync_channel(1)).unzip();
        let mut routed: Vec<Vec<Rec>> = Vec::with_capacity(pieces.len());
        let mut firsts: Vec<(u64, PieceLines)> = Vec::with_capacity(pieces.len());
        let mut first = summary.lines + 1;
        rayon::in_place_scope(|scope| {
            for (i, (piece, tx)) in pieces.iter().zip(senders).enumerate() {
                let tail = unterminated_tail && i == last;
                let mut recs = pool.pop().unwrap_or_default();
                scope.spawn(move |_| {
                    let parsed = parse_piece(piece, tail, &mut recs);
                    // A send fails only when an error already ended the reading.
                    drop(tx.send((recs, parsed)));
                });
            }
            for rx in receivers {
                let (mut recs, parsed) = rx.recv().expect("every piece is parsed and sent");
                index.count_common(parsed.max_time, parsed.deliveries, parsed.committed);
                index.route(&parsed.keys, &mut recs, parsed.others);
                routed.push(recs);
                let stop = parsed.lines.error.is_some();
                firsts.push((first, parsed.lines));
                first += firsts.last().expect("just pushed").1.lines;
                // Reading stops at the first unusable line: later pieces are not taken.
                if stop {
                    break;
                }
            }
        });
        // 3. Apply, shards in parallel.
        let refused = index.apply(&routed);
        let records: u64 = routed.iter().map(|r| r.len() as u64).sum();
        pool.append(&mut routed);
        if let Some((p, k, e)) = refused {
            // Records come before their piece's unusable line, so this line is the first error.
            let line = firsts[p].0 + u64::from(record_line(pieces[p], k));
            return Err(HistoryError::at(name, line, e.0));
        }
        for (first, lines) in &firsts {
            lines.account(name, *first, summary)?;
        }
        summary.parsed += records;
        summary.lines = first - 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::parse_line;
    use crate::history::{EventPlace, OpEvents};
    use crate::HistoryLine;
    use crate::{CheckOptions, CheckResult};

    /// A shuffled history with every kind of line and anomaly, and lines
    /// the records cannot hold (escaped keys, non-UUID event ids, records
    /// naming no op, faults, reads), large enough for several blocks' worth
    /// of pieces and for ids that are hashed.
    fn history(ops: u64) -> String {
        let mut lines = vec![r#"{"type":"begin","time":0}"#.to_string()];
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let mut rand = move |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        };
        for i in 0..ops {
            // Every seventh op has a sparse id, past the directly indexed ones.
            let op = if i % 7 == 3 { (1 << 40) + i * 977 } else { i };
            let k = rand(37);
            let key = match k {
                5 => r#"k\"5"#.to_string(),
                // Keys longer than 15 bytes are numbered apart from the short ones.
                k if k % 4 == 1 => format!("a-key-longer-than-15-bytes-{k}"),
                k => format!("k{k}"),
            };
            let t = i as i64 * 1000;
            lines.push(format!(
                r#"{{"type":"invoke","op":{op},"process":1,"key":"{key}","seq":{i},"time":{t}}}"#
            ));
            let outcome = ["ok", "ok", "ok", "fail", "info"][rand(5) as usize];
            if rand(20) != 0 {
                lines.push(format!(
                    r#"{{"type":"{outcome}","op":{op},"process":1,"time":{}}}"#,
                    t + 500
                ));
            }
            for d in 0..rand(3) {
                let event = match rand(4) {
                    0 => format!("no-event-id:orders/0/{i}-{d}"),
                    _ => format!("5eed0000-0000-4000-8000-{:012x}", op % (1 << 40) + d * rand(2)),
                };
                lines.push(format!(
                    r#"{{"type":"deliver","op":{op},"event":"{event}","key":"{key}","seq":{i},"topic":"t","partition":{},"offset":{},"time":{}}}"#,
                    k % 3,
                    rand(1_000_000),
                    t + 900 + rand(5000) as i64
                ));
            }
            if rand(10) != 0 {
                lines.push(format!(r#"{{"type":"committed","op":{op}}}"#));
            }
            if rand(30) == 0 {
                lines.push(format!(
                    r#"{{"type":"read","key":"{key}","seq":{},"invoke_time":{},"time":{}}}"#,
                    i.saturating_sub(rand(3)),
                    t + 600,
                    t + 700
                ));
            }
            if rand(50) == 0 {
                lines.push(format!(
                    r#"{{"type":"deliver","op":null,"event":"e{i}","key":null,"seq":null,"topic":"t","partition":1,"offset":{i},"time":{t}}}"#
                ));
            }
            if rand(200) == 0 {
                lines.push(format!(
                    r#"{{"type":"nemesis","fault":"pg-pause","phase":"start","time":{t}}}"#
                ));
                lines.push(format!(
                    r#"{{"type":"nemesis","fault":"pg-pause","phase":"stop","time":{}}}"#,
                    t + 9000
                ));
            }
        }
        for i in (1..lines.len()).rev() {
            lines.swap(i, 1 + rand(i as u64) as usize);
        }
        lines.push(r#"{"type":"end","time":999999999999,"drained":true}"#.to_string());
        lines.join("\n") + "\n"
    }

    fn check_with(text: &str, shard_bits: u32) -> Result<CheckResult, HistoryError> {
        let mut index = HistoryIndex::with_shard_bits(shard_bits);
        let summary = crate::reader::read_blocks("h", text.as_bytes(), &mut IndexSink::new(&mut index))?;
        let mut result = index.finish(CheckOptions::default());
        result.lines = summary.lines;
        Ok(result)
    }

    /// What the general parser makes of `line`: the record and its key, or
    /// `None` when it is no record of the common form (or no line at all).
    fn general_rec(line: &str) -> Option<(Rec, Option<String>)> {
        let parsed = parse_line(line.as_bytes()).ok()?;
        let mut key = None;
        let r = Rec::common(&parsed, |k| {
            key = Some(k.to_string());
            7
        })?;
        Some((r, key))
    }

    /// Variants of a line: fields swapped, added, repeated, dropped, values
    /// spelled in other ways (escapes, whitespace, exponents, nulls, other
    /// cases, out of range), cut short.
    fn variants(line: &str) -> Vec<String> {
        let inner = &line[1..line.len() - 1];
        let fields: Vec<String> = inner.split(',').map(str::to_string).collect();
        let join = |f: &[String]| format!("{{{}}}", f.join(","));
        let mut out = vec![line.to_string()];
        for i in 0..fields.len() {
            let mut f = fields.clone();
            if i + 1 < f.len() {
                f.swap(i, i + 1);
                out.push(join(&f));
            }
            let mut f = fields.clone();
            f.insert(i + 1, r#""extra":1"#.to_string());
            out.push(join(&f));
            let mut f = fields.clone();
            f.insert(i + 1, fields[i].clone());
            out.push(join(&f));
            let mut f = fields.clone();
            f.remove(i);
            out.push(join(&f));
            let Some((name, value)) = fields[i].split_once(':') else {
                continue;
            };
            let mut swaps: Vec<String> = vec![
                "null".into(),
                "1e3".into(),
                "1.0".into(),
                "-0".into(),
                "-5".into(),
                "01".into(),
                "18446744073709551616".into(),
                "18446744073709551615".into(),
                "9223372036854775808".into(),
                "2147483648".into(),
                r#""k\u00e9""#.into(),
                "\"k\u{e9}\"".into(),
                r#""a\"b""#.into(),
                "\"\"".into(),
                "true".into(),
                format!(" {value}"),
                format!("{value} "),
                value.to_uppercase(),
                format!("{value}0"),
            ];
            if value.len() > 1 && value.starts_with('"') {
                swaps.push(format!("{}\t\"", &value[..value.len() - 1]));
            }
            for v in swaps {
                let mut f = fields.clone();
                f[i] = format!("{name}:{v}");
                out.push(join(&f));
            }
        }
        out.push(format!("{line} "));
        out.push(format!(" {line}"));
        out.push(line[..line.len() - 1].to_string());
        out.push(line.replace(r#""type":"#, r#""type" :"#));
        out
    }

    /// The recorder's own lines of one-event ops, as it writes them: all but
    /// the fail line (whose error has an escape) are the fast path's.
    fn recorders_lines() -> [HistoryLine; 6] {
        [
            HistoryLine::Invoke {
                op: 3,
                process: 1,
                key: "k1".into(),
                seq: 0,
                time: 5,
                events: None,
            },
            HistoryLine::Ok {
                op: 3,
                process: 1,
                time: 6,
            },
            HistoryLine::Fail {
                op: 4,
                process: 2,
                time: 7,
                error: "no \"db\"".into(),
            },
            HistoryLine::Info {
                op: 5,
                process: 2,
                time: 7,
                error: "timeout".into(),
            },
            HistoryLine::Deliver {
                op: Some(3),
                event: "5eed0000-0000-4000-8000-00000000000a".into(),
                key: Some("k1".into()),
                seq: Some(0),
                topic: "orders".into(),
                partition: 2,
                offset: 9,
                time: 8,
                index: None,
            },
            HistoryLine::Committed { op: 3 },
        ]
    }

    /// The lines of an op of several events: a delivery naming its index
    /// and an invoke naming their count are the fast path's, an invoke
    /// naming their places the general parser's.
    fn several_events_lines() -> [HistoryLine; 3] {
        [
            HistoryLine::Deliver {
                op: Some(3),
                event: "5eed0000-0000-4000-8000-00000000000b".into(),
                key: Some("k2".into()),
                seq: Some(4),
                topic: "orders".into(),
                partition: 1,
                offset: 10,
                time: 9,
                index: Some(3),
            },
            HistoryLine::Invoke {
                op: 6,
                process: 1,
                key: "k1".into(),
                seq: 1,
                time: 5,
                events: Some(OpEvents::Count(5)),
            },
            HistoryLine::Invoke {
                op: 7,
                process: 1,
                key: "k1".into(),
                seq: 2,
                time: 5,
                events: Some(OpEvents::Each(vec![
                    EventPlace {
                        key: "k1".into(),
                        seq: 2,
                    },
                    EventPlace {
                        key: "k2".into(),
                        seq: 0,
                    },
                ])),
            },
        ]
    }

    /// Whether the fast path takes `line` followed by `end`. When it does,
    /// asserts that the general parser takes it too and reads the same
    /// record and key, and that the fast path took the line and its line
    /// end (a line ends only at `\n` or `\r\n`), no more.
    fn fast_path_reads_as_general_parser(line: &str, end: &str) -> bool {
        let bytes = format!("{line}{end}");
        let Some((r, key, len)) = fast_rec(bytes.as_bytes()) else {
            return false;
        };
        let (mut expected, expected_key) =
            general_rec(line).unwrap_or_else(|| panic!("the fast path took {line:?}, the general parser not"));
        assert_eq!(
            key.map(|(from, to)| bytes[from..to].to_string()),
            expected_key,
            "{line}"
        );
        if let Some((from, to)) = key {
            let b = bytes.as_bytes();
            assert_eq!(packed_key(b, from, to), short_key(&b[from..to]), "{line}");
            expected.key = r.key;
        }
        assert_eq!(r, expected, "{line}");
        let line_end = match end {
            "" => 0,
            e if e.starts_with("\r\n") => 2,
            e if e.starts_with('\n') => 1,
            e => panic!("the fast path took {line:?} followed by {e:?}"),
        };
        assert_eq!(len, line.len() + line_end, "{line:?}");
        true
    }

    #[test]
    fn the_fast_path_reads_each_line_it_takes_as_the_general_parser_does() {
        let text = history(300);
        let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
        let written = recorders_lines();
        let mut taken_written = 0;
        for line in &written {
            let line = serde_json::to_string(line).unwrap();
            taken_written += usize::from(fast_rec(format!("{line}\n").as_bytes()).is_some());
            lines.push(line);
        }
        // All but the fail line with an escape in its error are taken.
        assert_eq!(taken_written, written.len() - 1);
        let several = several_events_lines();
        let taken: Vec<bool> = several
            .iter()
            .map(|l| fast_rec(format!("{}\n", l.to_json()).as_bytes()).is_some())
            .collect();
        assert_eq!(taken, [true, true, false]);
        lines.extend(several.iter().map(HistoryLine::to_json));
        let all: Vec<String> = lines.iter().flat_map(|l| variants(l)).collect();
        let (mut taken, mut left) = (0, 0);
        for line in &all {
            for end in [
                "",
                "\n",
                "\r\n",
                "\n{\"type\":\"committed\",\"op\":1}\n",
                "\r",
                " \n",
                "x",
            ] {
                if fast_path_reads_as_general_parser(line, end) {
                    taken += 1;
                } else {
                    left += 1;
                }
            }
        }
        assert!(taken > 1000 && left > 10 * taken, "{taken} taken, {left} left");
    }

    #[test]
    fn a_key_packed_from_its_line_is_the_key_packed_alone() {
        let b = b"k1\",\"seq\":0123456789abcdefghij";
        for to in 0..=16 {
            let alone = short_key(&b[..to]);
            assert_eq!(packed_key(b, 0, to), alone, "{to}");
            assert_eq!(packed_key(&b[..to], 0, to), alone, "{to}");
            assert_eq!(alone.is_some(), to <= 15);
        }
        assert_ne!(short_key(b"k1"), short_key(b"k1\0"));
    }

    /// A shuffled history of ops of several events, some over two keys,
    /// with every way their events go wrong (missing, duplicated, with
    /// another id, out of order, indexes the op does not publish), and
    /// one-event ops between them.
    fn several_events_history(ops: u64) -> String {
        let mut lines = Vec::new();
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut rand = move |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        };
        let mut offset = [0i64; 3];
        for i in 0..ops {
            let op = if i % 5 == 2 { (1 << 40) + i * 31 } else { i };
            let (key, other) = (rand(11), rand(11));
            let k = [1, 1, 2, 3, 5, 70][rand(6) as usize];
            let t = i as i64 * 1000;
            let events = match rand(3) {
                _ if k == 1 => String::new(),
                0 => format!(r#","events":{k}"#),
                1 => {
                    let places: Vec<String> = (0..k)
                        .map(|e| {
                            let key = if e % 2 == 0 { key } else { other };
                            format!(r#"{{"key":"k{key}","seq":{i}}}"#)
                        })
                        .collect();
                    format!(r#","events":[{}]"#, places.join(","))
                }
                _ => format!(r#","events":[{{"key":"k{key}","seq":{i}}}]"#),
            };
            lines.push(format!(
                r#"{{"type":"invoke","op":{op},"process":1,"key":"k{key}","seq":{i},"time":{t}{events}}}"#
            ));
            let outcome = ["ok", "ok", "ok", "fail", "info"][rand(5) as usize];
            lines.push(format!(
                r#"{{"type":"{outcome}","op":{op},"process":1,"time":{}}}"#,
                t + 500
            ));
            for index in 0..k + u64::from(rand(20) == 0) {
                for d in 0..[0, 1, 1, 1, 1, 2][rand(6) as usize] {
                    let event = match rand(4) {
                        0 => format!("e{op}-{index}-{}", d * rand(2)),
                        _ => format!("5eed0000-0000-4000-{index:04x}-{:012x}", op % (1 << 40) + d * rand(2)),
                    };
                    let p = rand(3) as usize;
                    let o = offset[p] - rand(3) as i64;
                    offset[p] += 1;
                    // With a key and seq, as the recorder writes them (the fast path's), or without.
                    let place = match rand(2) {
                        0 => String::new(),
                        _ => format!(r#","key":"k{}","seq":{i}"#, if index % 2 == 0 { key } else { other }),
                    };
                    let index = match rand(3) {
                        0 if index == 0 => String::new(),
                        _ => format!(r#","index":{index}"#),
                    };
                    lines.push(format!(
                        r#"{{"type":"deliver","op":{op},"event":"{event}"{place},"topic":"t","partition":{p},"offset":{o},"time":{}{index}}}"#,
                        t + 900 + rand(5000) as i64
                    ));
                }
            }
            if rand(10) != 0 {
                lines.push(format!(r#"{{"type":"committed","op":{op}}}"#));
            }
        }
        for i in (1..lines.len()).rev() {
            lines.swap(i, rand(i as u64 + 1) as usize);
        }
        lines.join("\n") + "\n"
    }

    #[test]
    fn ops_of_several_events_in_shards_give_what_lines_added_one_by_one_give() {
        let text = several_events_history(20_000);
        let mut one_by_one = HistoryIndex::with_shard_bits(0);
        for line in text.lines() {
            one_by_one.add(parse_line(line.as_bytes()).unwrap()).unwrap();
        }
        let mut expected = one_by_one.finish(CheckOptions::default());
        expected.lines = text.lines().count() as u64;
        let a = &expected.anomalies;
        assert!(
            [
                a.lost,
                a.partial,
                a.phantom,
                a.unexpected,
                a.duplicate,
                a.duplicate_beyond_idempotency,
                a.reorder
            ]
            .iter()
            .all(|&n| n > 0),
            "{a:?}"
        );
        assert!(
            expected.multi_event_ops > 0 && expected.interleaved_ops > 0,
            "{expected:?}"
        );
        for bits in [0, 1, 2, 3] {
            assert_eq!(check_with(&text, bits).unwrap(), expected, "{bits} shard bits");
        }
    }

    #[test]
    fn records_in_shards_give_what_lines_added_one_by_one_give() {
        let text = history(60_000);
        let mut one_by_one = HistoryIndex::with_shard_bits(0);
        for line in text.lines() {
            one_by_one.add(parse_line(line.as_bytes()).unwrap()).unwrap();
        }
        let mut expected = one_by_one.finish(CheckOptions::default());
        expected.lines = text.lines().count() as u64;
        assert!(!expected.valid && expected.anomalies.reorder > 0 && expected.anomalies.unexpected > 0);
        for bits in [0, 1, 2, 3] {
            assert_eq!(check_with(&text, bits).unwrap(), expected, "{bits} shard bits");
        }
    }

    #[test]
    fn the_first_refused_line_is_reported_whatever_the_shards() {
        let text = history(20_000);
        let mut lines: Vec<&str> = text.lines().collect();
        let invoke = *lines.iter().find(|l| l.contains(r#""type":"invoke""#)).unwrap();
        let completion = *lines.iter().find(|l| l.contains(r#""type":"ok""#)).unwrap();
        let completion = completion.replace(r#""type":"ok""#, r#""type":"info""#);
        // A second completion (after the op's first, near the start), then
        // (later in the file) a second invoke.
        lines.insert(30_000, &completion);
        lines.insert(50_000, invoke);
        let text = lines.join("\n") + "\n";
        let mut errors = Vec::new();
        for bits in [0, 1, 2, 3] {
            errors.push(check_with(&text, bits).unwrap_err());
        }
        assert!(errors.iter().all(|e| *e == errors[0]), "{errors:?}");
        assert_eq!(errors[0].line, Some(30_001), "{}", errors[0]);
        assert!(
            errors[0]
                .message
                .contains("completes a second time (`info` after `ok`)"),
            "{}",
            errors[0]
        );
    }
}
