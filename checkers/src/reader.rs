//! Streaming, parallel reading of a history file.
//!
//! A file is mapped into memory a window of a few MiB at a time (no copy;
//! other sources are read into a buffer), and taken a block of whole lines
//! at a time by a `BlockSink`: the checker's index (`ingest.rs`), or
//! `Streaming`, which cuts each block at line ends into pieces parsed on
//! all cores (rayon) and hands their lines, in file order and with their
//! line numbers, to a `Sink` on the calling thread as soon as each piece
//! is parsed. Memory stays bounded by the window size whatever the file's
//! length.

use crate::history::{parse_line, parse_text_line, LineError, ParsedLine};
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
}

struct Closure<F>(F);

impl<F: FnMut(u64, ParsedLine<'_>) -> Result<(), LineError>> Sink for Closure<F> {
    fn line(&mut self, number: u64, line: ParsedLine<'_>) -> Result<(), LineError> {
        (self.0)(number, line)
    }
}

/// Bytes of a file mapped at a time: enough for the cores to share, little
/// enough that the mapped pages (and what is parsed from them) stay small
/// next to the index.
const WINDOW_BYTES: usize = 16 << 20;

/// Takes the history one block of whole lines at a time, in file order.
pub(crate) trait BlockSink {
    /// Takes `block` (whole lines; the last one unterminated only when
    /// `unterminated_tail`), whose first line is `summary.lines + 1`; counts
    /// its lines and records into `summary`.
    fn block(
        &mut self,
        name: &str,
        block: &[u8],
        unterminated_tail: bool,
        summary: &mut ReadSummary,
    ) -> Result<(), HistoryError>;
}

/// Feeds a [`Sink`] line by line.
struct Streaming<'s, S>(&'s mut S);

/// [`read_file`] into a [`Sink`].
pub(crate) fn read_file_into<S: Sink>(path: &Path, sink: &mut S) -> Result<ReadSummary, HistoryError> {
    read_file_blocks(path, &mut Streaming(sink))
}

/// [`read_from`] into a [`Sink`].
pub(crate) fn read_from_into<R: Read, S: Sink>(
    name: &str,
    input: R,
    sink: &mut S,
) -> Result<ReadSummary, HistoryError> {
    read_blocks(name, input, &mut Streaming(sink))
}

/// Reads the file at `path` block by block into `sink`: mapped into memory
/// a window at a time when it is a regular file (no copy; the pages are
/// faulted in by whichever core parses them), read otherwise.
pub(crate) fn read_file_blocks<B: BlockSink>(path: &Path, sink: &mut B) -> Result<ReadSummary, HistoryError> {
    let name = path.display().to_string();
    let file = std::fs::File::open(path).map_err(|e| {
        let hint = match e.kind() {
            io::ErrorKind::NotFound => " (no such file; check the path)",
            io::ErrorKind::PermissionDenied => " (permission denied)",
            _ => "",
        };
        HistoryError::whole(&name, format!("cannot open: {e}{hint}"))
    })?;
    let len = match file.metadata() {
        Ok(m) if m.is_file() => m.len(),
        // A pipe or a device: no length to map, only bytes to read.
        _ => return read_blocks(&name, file, sink),
    };
    let mut summary = ReadSummary::default();
    let mut start: u64 = 0;
    while start < len {
        let rest = usize::try_from(len - start).unwrap_or(usize::MAX);
        let mut want = rest.min(WINDOW_BYTES);
        loop {
            let Some(window) = map_window(&file, start, want) else {
                // Mapping is refused by some file systems: read the rest instead.
                use std::io::Seek;
                let mut file = &file;
                file.seek(io::SeekFrom::Start(start))
                    .map_err(|e| HistoryError::whole(&name, format!("read failed: {e}")))?;
                return finish_blocks(&name, feed_reader(&name, file, sink, summary)?, len);
            };
            let eof = want == rest;
            // A window ends at its last line end; the rest comes with the next window.
            let cut = if eof {
                want
            } else {
                match memchr::memrchr(b'\n', &window) {
                    Some(i) => i + 1,
                    None => {
                        want = rest.min(want.saturating_mul(2)); // one line longer than a window: map more
                        continue;
                    }
                }
            };
            let block = &window[..cut];
            let unterminated_tail = eof && !block.ends_with(b"\n");
            sink.block(&name, block, unterminated_tail, &mut summary)?;
            start += cut as u64;
            break;
        }
    }
    finish_blocks(&name, summary, len)
}

/// `len` bytes of `file` from `offset`, mapped read-only; `None` when the
/// system refuses to map it.
fn map_window(file: &std::fs::File, offset: u64, len: usize) -> Option<memmap2::Mmap> {
    // SAFETY: the map is only read, through the `&[u8]` memmap2 hands out,
    // and only for as long as this reading lasts. What `unsafe` asks us to
    // rule out is the file changing under the map. A recorder only appends,
    // and bytes appended after the length was taken are simply not read.
    // Truncating or rewriting a history while it is being checked is not
    // guarded against: the check would see the new bytes, or be stopped by
    // SIGBUS when it touches a page past the new end, as any reader of a file
    // cut short under it would fail. A history is checked once it is written.
    unsafe { memmap2::MmapOptions::new().offset(offset).len(len).map(file) }.ok()
}

/// [`read_from`] block by block into `sink`.
pub(crate) fn read_blocks<R: Read, B: BlockSink>(
    name: &str,
    input: R,
    sink: &mut B,
) -> Result<ReadSummary, HistoryError> {
    let mut total_bytes = 0;
    let summary = feed_reader(
        name,
        CountingReader(input, &mut total_bytes),
        sink,
        ReadSummary::default(),
    )?;
    finish_blocks(name, summary, total_bytes)
}

/// Counts the bytes read through it.
struct CountingReader<'c, R>(R, &'c mut u64);

impl<R: Read> Read for CountingReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.0.read(buf)?;
        *self.1 += n as u64;
        Ok(n)
    }
}

/// The errors of a history that had no record at all.
fn finish_blocks(name: &str, summary: ReadSummary, total_bytes: u64) -> Result<ReadSummary, HistoryError> {
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

/// Reads `input` to its end in blocks of whole lines, handing each to `sink`.
fn feed_reader<R: Read, B: BlockSink>(
    name: &str,
    mut input: R,
    sink: &mut B,
    mut summary: ReadSummary,
) -> Result<ReadSummary, HistoryError> {
    let mut buf: Vec<u8> = Vec::new();
    let mut eof = false;
    // How full the buffer must be before a block is cut; grows while one line is longer.
    let mut fill_to = BLOCK_BYTES;
    while !eof {
        // Fill the buffer (after what the last block left over) up to `fill_to`.
        let want = fill_to.saturating_sub(buf.len());
        let got = (&mut input)
            .take(want as u64)
            .read_to_end(&mut buf)
            .map_err(|e| HistoryError::whole(name, format!("read failed: {e}")))?;
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
        if !block.is_empty() {
            let unterminated_tail = eof && !block.ends_with(b"\n");
            sink.block(name, block, unterminated_tail, &mut summary)?;
        }
        buf.drain(..cut);
    }
    Ok(summary)
}

impl<S: Sink> BlockSink for Streaming<'_, S> {
    fn block(
        &mut self,
        name: &str,
        block: &[u8],
        unterminated_tail: bool,
        summary: &mut ReadSummary,
    ) -> Result<(), HistoryError> {
        let sink = &mut *self.0;
        let mut next_line = summary.lines + 1;
        let pieces = split_pieces(block, PIECES_PER_BLOCK);
        let last = pieces.len().saturating_sub(1);
        // The pieces are parsed on the pool while this thread hands the ones
        // already parsed to the sink, in order: parsing and the sink overlap.
        let (senders, receivers): (Vec<_>, Vec<_>) = (0..pieces.len()).map(|_| mpsc::sync_channel(1)).unzip();
        let result = rayon::in_place_scope(|scope| -> Result<(), HistoryError> {
            for (i, (piece, tx)) in pieces.iter().zip(senders).enumerate() {
                let tail = unterminated_tail && i == last;
                // A send fails only when an error already ended the reading.
                scope.spawn(move |_| drop(tx.send(parse_piece(piece, tail))));
            }
            for rx in receivers {
                let (parsed, piece) = rx.recv().expect("every piece is parsed and sent");
                for (rel, parsed) in parsed {
                    let line = next_line + rel as u64;
                    sink.line(line, parsed).map_err(|e| HistoryError::at(name, line, e.0))?;
                    summary.parsed += 1;
                }
                piece.account(name, next_line, summary)?;
                next_line += piece.lines;
            }
            Ok(())
        });
        summary.lines = next_line - 1;
        result
    }
}

/// Cuts `block` into about `n` pieces, each ending at a line end.
pub(crate) fn split_pieces(block: &[u8], n: usize) -> Vec<&[u8]> {
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

/// What parsing one piece found besides its records, with line numbers
/// relative to the piece's start.
pub(crate) struct PieceLines {
    /// Lines in the piece (up to its error), blank ones included.
    pub(crate) lines: u64,
    /// The first unusable line, where parsing the piece stopped.
    pub(crate) error: Option<(u32, LineError)>,
    /// The incomplete last line of the history, ignored.
    pub(crate) truncated_tail: Option<u32>,
}

impl PieceLines {
    /// Adds what the piece (starting at line `first`) found to `summary`:
    /// its error, or the warning about an incomplete last line.
    pub(crate) fn account(&self, name: &str, first: u64, summary: &mut ReadSummary) -> Result<(), HistoryError> {
        if let Some((rel, e)) = &self.error {
            return Err(HistoryError::at(name, first + u64::from(*rel), e.0.clone()));
        }
        if let Some(rel) = self.truncated_tail {
            summary.warnings.push(format!(
                "line {}: the last line is incomplete (the recorder was probably stopped mid-write); it was ignored",
                first + u64::from(rel)
            ));
        }
        Ok(())
    }
}

fn parse_piece(piece: &[u8], unterminated_tail: bool) -> (Vec<(u32, ParsedLine<'_>)>, PieceLines) {
    let mut parsed = Vec::with_capacity(piece.len() / 80);
    let lines = parse_lines(piece, unterminated_tail, |rel, line| parsed.push((rel, line)));
    (parsed, lines)
}

/// Whether a line (without its line end) holds a record: blank lines do not.
fn is_record(text: &[u8]) -> bool {
    // A record starts with `{`: only other lines need the whole look for blankness.
    text.first() == Some(&b'{') || !text.iter().all(u8::is_ascii_whitespace)
}

/// Parses the lines of `piece` in order, handing each record and its line
/// number (relative to the piece) to `f`, up to the first unusable line.
pub(crate) fn parse_lines<'a>(
    piece: &'a [u8],
    unterminated_tail: bool,
    f: impl FnMut(u32, ParsedLine<'a>),
) -> PieceLines {
    let mut taker = Plain(f);
    // UTF-8 is checked for the whole piece at once (far cheaper than line by
    // line); a piece with a line that is not UTF-8 is read line by line.
    match std::str::from_utf8(piece) {
        Ok(text) => parse_lines_with(piece, unterminated_tail, &mut taker, |a, b| {
            parse_text_line(&text[a..b])
        }),
        Err(_) => parse_lines_with(piece, unterminated_tail, &mut taker, |a, b| parse_line(&piece[a..b])),
    }
}

/// What [`parse_lines_fast`] hands lines to.
pub(crate) trait LineTaker<'a> {
    /// Takes the line starting at `piece[start]` whole when it can, and
    /// returns where the next line starts; `None` leaves the line to the
    /// general parser (and [`LineTaker::line`]).
    fn fast(&mut self, piece: &'a [u8], start: usize) -> Option<usize>;
    /// Takes a line the general parser read, and its number relative to the piece.
    fn line(&mut self, rel: u32, line: ParsedLine<'a>);
}

/// A closure as a [`LineTaker`] without a fast path.
struct Plain<F>(F);

impl<'a, F: FnMut(u32, ParsedLine<'a>)> LineTaker<'a> for Plain<F> {
    #[inline(always)]
    fn fast(&mut self, _: &'a [u8], _: usize) -> Option<usize> {
        None
    }
    fn line(&mut self, rel: u32, line: ParsedLine<'a>) {
        (self.0)(rel, line)
    }
}

/// [`parse_lines`] with a fast path: `taker.fast` takes the lines it can
/// whole; the others are parsed (each checked for UTF-8 on its own) and
/// handed to `taker.line`, as [`parse_lines`] does.
pub(crate) fn parse_lines_fast<'a>(
    piece: &'a [u8],
    unterminated_tail: bool,
    taker: &mut impl LineTaker<'a>,
) -> PieceLines {
    parse_lines_with(piece, unterminated_tail, taker, |a, b| parse_line(&piece[a..b]))
}

/// [`parse_lines`], with `taker` as in [`parse_lines_fast`] and `parse`
/// reading the line `piece[a..b]`.
fn parse_lines_with<'a>(
    piece: &'a [u8],
    unterminated_tail: bool,
    taker: &mut impl LineTaker<'a>,
    parse: impl Fn(usize, usize) -> Result<ParsedLine<'a>, LineError>,
) -> PieceLines {
    let mut out = PieceLines {
        lines: 0,
        error: None,
        truncated_tail: None,
    };
    let mut rel: u32 = 0;
    let mut start = 0;
    while start < piece.len() {
        if let Some(next) = taker.fast(piece, start) {
            start = next;
            rel += 1;
            continue;
        }
        let (end, next) = match memchr::memchr(b'\n', &piece[start..]) {
            Some(i) => (start + i, start + i + 1),
            None => (piece.len(), piece.len()),
        };
        let is_last = next == piece.len();
        let end = if end > start && piece[end - 1] == b'\r' {
            end - 1
        } else {
            end
        };
        let text = &piece[start..end];
        if is_record(text) {
            match parse(start, end) {
                Ok(parsed) => taker.line(rel, parsed),
                // Cut off mid-write: the unterminated last line is not even JSON.
                Err(_) if is_last && unterminated_tail && !is_json(text) => out.truncated_tail = Some(rel),
                Err(e) => {
                    out.error = Some((rel, e));
                    break;
                }
            }
        }
        start = next;
        rel += 1;
    }
    out.lines = u64::from(rel);
    out
}

/// The line (relative to the piece) of the `k`-th record of `piece` (counted from 0).
pub(crate) fn record_line(piece: &[u8], k: usize) -> u32 {
    let mut seen = 0;
    for (rel, line) in piece.split(|&b| b == b'\n').enumerate() {
        let text = line.strip_suffix(b"\r").unwrap_or(line);
        if is_record(text) {
            if seen == k {
                return rel as u32;
            }
            seen += 1;
        }
    }
    unreachable!("a piece holds each of its records")
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
