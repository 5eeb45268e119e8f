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

use crate::check::{HistoryIndex, Rec, K_COMMITTED, K_DELIVER, K_OTHER};
use crate::history::ParsedLine;
use crate::reader::{parse_lines, record_line, split_pieces, BlockSink, PieceLines, ReadSummary};
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
    let mut others = Vec::new();
    let mut keys = Vec::new();
    let mut key_numbers: FxHashMap<&'a str, u32> = FxHashMap::default();
    let (mut max_time, mut deliveries, mut committed) = (0i64, 0u64, 0u64);
    let lines = parse_lines(piece, unterminated_tail, |_, line| {
        let key_index = |k: &'a str| {
            *key_numbers.entry(k).or_insert_with(|| {
                keys.push(k);
                keys.len() as u32 - 1
            })
        };
        match Rec::common(&line, key_index) {
            Some(r) => {
                // What routing does for other lines, these lines get here (in any order: it is a count and a max).
                if r.kind <= K_DELIVER {
                    max_time = max_time.max(r.time);
                }
                deliveries += u64::from(r.kind == K_DELIVER);
                committed += u64::from(r.kind == K_COMMITTED);
                recs.push(r);
            }
            None => {
                others.push(line);
                recs.push(Rec {
                    kind: K_OTHER,
                    ..Rec::SKIP
                });
            }
        }
    });
    Parsed {
        others,
        keys,
        lines,
        max_time,
        deliveries,
        committed,
    }
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
            let key = if k == 5 { r#"k\"5"#.to_string() } else { format!("k{k}") };
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
