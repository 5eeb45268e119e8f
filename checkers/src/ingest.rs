//! How a history gets into a [`HistoryIndex`] on all cores, block by block:
//!
//! 1. the block's pieces are parsed in parallel into fixed-size records
//!    ([`Rec`]; the rare lines of other shapes are kept whole beside them);
//! 2. one thread routes the records in file order (the part of indexing that
//!    depends on the order of all lines: which ops and keys exist, and their
//!    numbers), which is short;
//! 3. the shards apply them in parallel, each its own ops' records in file order.
//!
//! The result is the same as adding the lines one by one with
//! [`HistoryIndex::add`], errors included: the first unusable or refused
//! line in file order is reported, with its number.

use crate::check::{HistoryIndex, Rec, K_DELIVER, K_OTHER};
use crate::history::ParsedLine;
use crate::reader::{parse_lines, record_line, split_pieces, BlockSink, PieceLines, ReadSummary};
use crate::HistoryError;
use rayon::prelude::*;

/// Pieces a block is cut into for parallel parsing (a few per core, so
/// uneven pieces even out).
const PIECES_PER_BLOCK: usize = 32;

/// Feeds blocks to a [`HistoryIndex`].
pub(crate) struct IndexSink<'i> {
    index: &'i mut HistoryIndex,
    /// The records of each piece, kept from block to block so their memory
    /// is allocated (and faulted in) once.
    recs: Vec<Vec<Rec>>,
}

impl<'i> IndexSink<'i> {
    /// A sink into `index`.
    pub(crate) fn new(index: &'i mut HistoryIndex) -> Self {
        IndexSink { index, recs: Vec::new() }
    }
}

/// What parsing one piece gave besides its records.
struct Parsed<'a> {
    /// The lines that are not in the common form, in order (each stands
    /// behind a `K_OTHER` record).
    others: Vec<ParsedLine<'a>>,
    lines: PieceLines,
    max_time: i64,
    deliveries: u64,
    committed: u64,
}

/// Parses `piece` into `recs` (emptied first).
fn parse_piece<'a>(piece: &'a [u8], unterminated_tail: bool, recs: &mut Vec<Rec>) -> Parsed<'a> {
    recs.clear();
    let mut others = Vec::new();
    let (mut max_time, mut deliveries, mut committed) = (0i64, 0u64, 0u64);
    let lines = parse_lines(piece, unterminated_tail, |_, line| match Rec::common(piece, &line) {
        Some(r) => {
            // What routing does for other lines, these lines get here (in any order: it is a count and a max).
            if r.kind <= K_DELIVER {
                max_time = max_time.max(r.time);
            }
            deliveries += u64::from(r.kind == K_DELIVER);
            committed += u64::from(r.kind == crate::check::K_COMMITTED);
            recs.push(r);
        }
        None => {
            others.push(line);
            recs.push(Rec {
                kind: K_OTHER,
                ..Rec::SKIP
            });
        }
    });
    Parsed {
        others,
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
        if self.recs.len() < pieces.len() {
            self.recs.resize_with(pieces.len(), Vec::new);
        }
        let recs = &mut self.recs[..pieces.len()];
        let last = pieces.len().saturating_sub(1);
        // 1. Parse, on all cores.
        let parsed: Vec<Parsed<'_>> = pieces
            .par_iter()
            .zip(recs.par_iter_mut())
            .enumerate()
            .map(|(i, (piece, recs))| parse_piece(piece, unterminated_tail && i == last, recs))
            .collect();
        // Reading stops at the first unusable line: later pieces are not taken.
        let taken = parsed
            .iter()
            .position(|p| p.lines.error.is_some())
            .map_or(pieces.len(), |i| i + 1);
        // 2. Route, in file order.
        let mut firsts = Vec::with_capacity(taken);
        let mut first = summary.lines + 1;
        for ((piece, recs), parsed) in pieces.iter().zip(recs.iter_mut()).zip(parsed).take(taken) {
            self.index
                .count_common(parsed.max_time, parsed.deliveries, parsed.committed);
            self.index.route(piece, recs, parsed.others);
            firsts.push((first, parsed.lines));
            first += firsts.last().expect("just pushed").1.lines;
        }
        // 3. Apply, shards in parallel.
        if let Some((p, k, e)) = self.index.apply(&recs[..taken]) {
            // Records come before their piece's unusable line, so this line is the first error.
            let line = firsts[p].0 + u64::from(record_line(pieces[p], k));
            return Err(HistoryError::at(name, line, e.0));
        }
        for (first, lines) in &firsts {
            lines.account(name, *first, summary)?;
        }
        summary.parsed += recs[..taken].iter().map(|r| r.len() as u64).sum::<u64>();
        summary.lines = first - 1;
        Ok(())
    }
}
