//! Streaming, parallel reading of a history file.
//!
//! The file is read in blocks of a few MiB; each block is cut at line ends
//! into pieces that are parsed on all cores (rayon) and handed, in file
//! order and with their line numbers, to a sink on the calling thread as soon
//! as each piece is parsed (so the sink works while later pieces are parsed). Memory stays bounded by the
//! block size whatever the file's length.

use crate::history::{parse_line, LineError, ParsedLine};
use std::collections::VecDeque;
use std::io::{self, Read};
use std::sync::mpsc;

use std::path::Path;

/// Bytes read per block; a line longer than this is still read whole.
const BLOCK_BYTES: usize = 8 << 20;
/// Pieces a block is cut into for parallel parsing.
const PIECES_PER_BLOCK: usize = 16;

/// Why a history cannot be used: which source, which line, what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{source_name}: {}{message}", line.map(|l| format!("line {l}: ")).unwrap_or_default())]
pub struct HistoryError {
    /// The file (or other source) being read.
    pub source_name: String,
    /// 1-based line number, when the problem sits on one line.
    pub line: Option<u64>,
    /// What is wrong, in words.
    pub message: String,
}

impl HistoryError {
    /// An error about the source as a whole.
    pub fn whole(source_name: &str, message: impl Into<String>) -> Self {
        HistoryError {
            source_name: source_name.to_string(),
            line: None,
            message: message.into(),
        }
    }

    /// An error about one line.
    pub fn at(source_name: &str, line: u64, message: impl Into<String>) -> Self {
        HistoryError {
            source_name: source_name.to_string(),
            line: Some(line),
            message: message.into(),
        }
    }
}

/// What reading found besides the parsed lines.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadSummary {
    /// Lines read, blank ones included.
    pub lines: u64,
    /// Non-blank lines parsed (handed to the sink).
    pub parsed: u64,
    /// Things worth telling that did not make the history unusable
    /// (an incomplete last line left by a recorder that was killed).
    pub warnings: Vec<String>,
}

/// Reads the history at `path`, handing each parsed line and its number to `sink`.
///
/// The sink may refuse a line (for example an op invoked twice); that
/// becomes an error at that line. Stops at the first error.
pub fn read_file<F>(path: &Path, sink: F) -> Result<ReadSummary, HistoryError>
where
    F: FnMut(u64, ParsedLine<'_>) -> Result<(), LineError>,
{
    read_file_into(path, &mut Closure(sink))
}

/// Reads a history from any byte source; `name` is used in messages.
pub fn read_from<R, F>(name: &str, input: R, sink: F) -> Result<ReadSummary, HistoryError>
where
    R: Read,
    F: FnMut(u64, ParsedLine<'_>) -> Result<(), LineError>,
{
    read_from_into(name, input, &mut Closure(sink))
}

/// Where the reader hands parsed lines, in file order.
pub(crate) trait Sink {
    /// Takes one line and its 1-based number.
    fn line(&mut self, number: u64, line: ParsedLine<'_>) -> Result<(), LineError>;
    /// A hint: `line` comes soon (a few lines later), so its data may be fetched now.
    fn prefetch(&self, _line: &ParsedLine<'_>) {}
}

struct Closure<F>(F);

impl<F: FnMut(u64, ParsedLine<'_>) -> Result<(), LineError>> Sink for Closure<F> {
    fn line(&mut self, number: u64, line: ParsedLine<'_>) -> Result<(), LineError> {
        (self.0)(number, line)
    }
}

/// Lines handed to [`Sink::prefetch`] before their turn.
const PREFETCH_AHEAD: usize = 12;

/// [`read_file`] into a [`Sink`].
pub(crate) fn read_file_into<S: Sink>(path: &Path, sink: &mut S) -> Result<ReadSummary, HistoryError> {
    let name = path.display().to_string();
    let file = std::fs::File::open(path).map_err(|e| {
        let hint = match e.kind() {
            io::ErrorKind::NotFound => " (no such file; check the path)",
            io::ErrorKind::PermissionDenied => " (permission denied)",
            _ => "",
        };
        HistoryError::whole(&name, format!("cannot open: {e}{hint}"))
    })?;
    read_from_into(&name, file, sink)
}

/// [`read_from`] into a [`Sink`].
pub(crate) fn read_from_into<R: Read, S: Sink>(
    name: &str,
    mut input: R,
    sink: &mut S,
) -> Result<ReadSummary, HistoryError> {
    let mut summary = ReadSummary::default();
    let mut buf: Vec<u8> = Vec::new();
    let mut eof = false;
    let mut next_line: u64 = 1;
    let mut total_bytes: u64 = 0;
    // How full the buffer must be before a block is cut; grows while one line is longer.
    let mut fill_to = BLOCK_BYTES;
    while !eof {
        // Fill the buffer (after what the last block left over) up to `fill_to`.
        let want = fill_to.saturating_sub(buf.len());
        let got = (&mut input)
            .take(want as u64)
            .read_to_end(&mut buf)
            .map_err(|e| HistoryError::whole(name, format!("read failed: {e}")))?;
        total_bytes += got as u64;
        eof = got < want;
        // A block ends at the last line end; the rest waits for the next read.
        let cut = if eof {
            buf.len()
        } else {
            match memchr::memrchr(b'\n', &buf) {
                Some(i) => i + 1,
                None => {
                    fill_to = buf.len() + BLOCK_BYTES; // one line longer than a block: keep reading
                    continue;
                }
            }
        };
        fill_to = BLOCK_BYTES;
        let block = &buf[..cut];
        let unterminated_tail = eof && !block.is_empty() && !block.ends_with(b"\n");
        let pieces = split_pieces(block, PIECES_PER_BLOCK);
        let last = pieces.len().saturating_sub(1);
        // The pieces are parsed on the pool while this thread hands the ones
        // already parsed to the sink, in order: parsing and the sink overlap.
        let (senders, receivers): (Vec<_>, Vec<_>) = (0..pieces.len()).map(|_| mpsc::sync_channel(1)).unzip();
        rayon::in_place_scope(|scope| -> Result<(), HistoryError> {
            for (i, (piece, tx)) in pieces.iter().zip(senders).enumerate() {
                let tail = unterminated_tail && i == last;
                // A send fails only when an error already ended the reading.
                scope.spawn(move |_| drop(tx.send(parse_piece(piece, tail))));
            }
            let mut window: VecDeque<(u32, ParsedLine<'_>)> = VecDeque::with_capacity(PREFETCH_AHEAD);
            for rx in receivers {
                let piece = rx.recv().expect("every piece is parsed and sent");
                // Lines enter a short window, announced to the sink, and leave it in order.
                let mut lines = piece.parsed.into_iter();
                loop {
                    while window.len() < PREFETCH_AHEAD {
                        let Some(next) = lines.next() else { break };
                        sink.prefetch(&next.1);
                        window.push_back(next);
                    }
                    let Some((rel, parsed)) = window.pop_front() else { break };
                    let line = next_line + rel as u64;
                    sink.line(line, parsed).map_err(|e| HistoryError::at(name, line, e.0))?;
                    summary.parsed += 1;
                }
                if let Some((rel, e)) = piece.error {
                    return Err(HistoryError::at(name, next_line + rel as u64, e.0));
                }
                if let Some(rel) = piece.truncated_tail {
                    summary.warnings.push(format!(
                        "line {}: the last line is incomplete (the recorder was probably stopped mid-write); it was ignored",
                        next_line + rel as u64
                    ));
                }
                next_line += piece.lines;
            }
            Ok(())
        })?;
        summary.lines = next_line - 1;
        buf.drain(..cut);
    }
    if total_bytes == 0 {
        return Err(HistoryError::whole(
            name,
            "the history is empty (0 bytes); a history has at least one line",
        ));
    }
    if summary.parsed == 0 {
        return Err(HistoryError::whole(
            name,
            "the history holds no records, only blank or incomplete lines",
        ));
    }
    Ok(summary)
}

/// Cuts `block` into about `n` pieces, each ending at a line end.
fn split_pieces(block: &[u8], n: usize) -> Vec<&[u8]> {
    let mut pieces = Vec::with_capacity(n);
    let target = block.len() / n + 1;
    let mut rest = block;
    while !rest.is_empty() {
        if rest.len() <= target {
            pieces.push(rest);
            break;
        }
        let end = match memchr::memchr(b'\n', &rest[target..]) {
            Some(i) => target + i + 1,
            None => rest.len(),
        };
        pieces.push(&rest[..end]);
        rest = &rest[end..];
    }
    pieces
}

/// Whether `text` is one complete JSON value (of any shape).
fn is_json(text: &[u8]) -> bool {
    serde_json::from_slice::<serde::de::IgnoredAny>(text).is_ok()
}

/// The parsed lines of one piece, with line numbers relative to the piece's start.
struct Piece<'a> {
    parsed: Vec<(u32, ParsedLine<'a>)>,
    lines: u64,
    error: Option<(u32, LineError)>,
    truncated_tail: Option<u32>,
}

fn parse_piece(piece: &[u8], unterminated_tail: bool) -> Piece<'_> {
    let mut out = Piece {
        parsed: Vec::with_capacity(piece.len() / 80),
        lines: 0,
        error: None,
        truncated_tail: None,
    };
    let mut rel: u32 = 0;
    let mut start = 0;
    while start < piece.len() {
        let (line, next) = match memchr::memchr(b'\n', &piece[start..]) {
            Some(i) => (&piece[start..start + i], start + i + 1),
            None => (&piece[start..], piece.len()),
        };
        start = next;
        let is_last = start == piece.len();
        let text = line.strip_suffix(b"\r").unwrap_or(line);
        // A record starts with `{`: only other lines need the whole look for blankness.
        if text.first() == Some(&b'{') || !text.iter().all(u8::is_ascii_whitespace) {
            match parse_line(text) {
                Ok(parsed) => out.parsed.push((rel, parsed)),
                // Cut off mid-write: the unterminated last line is not even JSON.
                Err(_) if is_last && unterminated_tail && !is_json(text) => out.truncated_tail = Some(rel),
                Err(e) => {
                    out.error = Some((rel, e));
                    break;
                }
            }
        }
        rel += 1;
    }
    out.lines = u64::from(rel);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(bytes: &[u8]) -> Result<(ReadSummary, Vec<u64>), HistoryError> {
        let mut seen = Vec::new();
        let s = read_from("mem", bytes, |line, _| {
            seen.push(line);
            Ok(())
        })?;
        Ok((s, seen))
    }

    #[test]
    fn line_numbers_count_blank_lines() {
        let h = b"{\"type\":\"committed\",\"op\":1}\n\n{\"type\":\"committed\",\"op\":2}\r\n";
        let (s, seen) = read(h).unwrap();
        assert_eq!(seen, vec![1, 3]);
        assert_eq!(s.lines, 3);
    }

    #[test]
    fn a_bad_line_is_an_error_with_its_number() {
        let h = b"{\"type\":\"committed\",\"op\":1}\n{\"type\":\"committed\"}\n";
        let e = read(h).unwrap_err();
        assert_eq!(e.line, Some(2));
        assert!(
            e.to_string()
                .starts_with("mem: line 2: `committed` line lacks field `op`"),
            "{e}"
        );
    }

    #[test]
    fn an_incomplete_last_line_is_a_warning() {
        let h = b"{\"type\":\"committed\",\"op\":1}\n{\"type\":\"comm";
        let (s, seen) = read(h).unwrap();
        assert_eq!(seen, vec![1]);
        assert_eq!(s.warnings.len(), 1);
        assert!(s.warnings[0].starts_with("line 2:"), "{:?}", s.warnings);
    }

    #[test]
    fn a_complete_but_wrong_last_line_is_an_error_not_a_truncation() {
        let e = read(b"{\"type\":\"committed\",\"op\":1}\n{\"type\":\"committed\"}").unwrap_err();
        assert_eq!(e.line, Some(2));
        assert!(e.message.contains("lacks field `op`"), "{e}");
    }

    #[test]
    fn an_unterminated_but_complete_last_line_counts() {
        let (_, seen) = read(b"{\"type\":\"committed\",\"op\":1}").unwrap();
        assert_eq!(seen, vec![1]);
    }

    #[test]
    fn empty_input_is_an_error() {
        assert!(read(b"").unwrap_err().message.contains("empty"));
        assert!(read(b"\n\n").unwrap_err().message.contains("no records"));
    }

    #[test]
    fn a_missing_file_says_so() {
        let e = read_file(Path::new("/nonexistent/h.jsonl"), |_, _| Ok(())).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/h.jsonl: cannot open"), "{e}");
    }

    #[test]
    fn lines_longer_than_a_block_and_many_blocks_are_read_whole() {
        let mut h = Vec::new();
        let long_key = "k".repeat(BLOCK_BYTES + 10);
        h.extend_from_slice(
            format!("{{\"type\":\"invoke\",\"op\":0,\"key\":\"{long_key}\",\"seq\":0,\"time\":0}}\n").as_bytes(),
        );
        for op in 1..200_000u64 {
            h.extend_from_slice(format!("{{\"type\":\"committed\",\"op\":{op}}}\n").as_bytes());
        }
        let (s, seen) = read(&h).unwrap();
        assert_eq!(s.parsed, 200_000);
        assert!(seen.windows(2).all(|w| w[1] == w[0] + 1));
    }
}
