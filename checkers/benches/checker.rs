//! The checker's speed and memory over a generated, shuffled history of
//! 1,000,000 ops (invoke, ok, deliver, committed: 4M lines), and over one of
//! 250,000 ops of 5 events each, a quarter of them over two keys (invoke,
//! ok, 5 delivers, committed: 2M lines).
//!
//! Goals: at least 5M lines/s end to end on a 2-core machine, at
//! most 200 bytes of memory per op of one event. Peak heap is measured with
//! a counting allocator and printed once per history before criterion's timing.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use dualcheck_checkers::{check_file, CheckOptions};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

struct Counting;
static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let now = CURRENT.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
        PEAK.fetch_max(now, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        CURRENT.fetch_sub(layout.size(), Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size > layout.size() {
            let now = CURRENT.fetch_add(new_size - layout.size(), Ordering::Relaxed) + new_size - layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        } else {
            CURRENT.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
        }
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

const OPS: u64 = 1_000_000;
const KEYS: u64 = 1_000;

/// Ops of the history of ops of several events.
const MULTI_OPS: u64 = 250_000;
/// Events each of them publishes.
const EVENTS: u64 = 5;

/// Writes `out`, shuffled, to `path` (through a temporary file, so an
/// interrupted bench leaves no half history behind).
fn write_shuffled(path: &PathBuf, mut out: Vec<String>) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(42);
    out.shuffle(&mut rng);
    let tmp = path.with_extension("tmp");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&tmp).unwrap());
    for l in &out {
        writeln!(f, "{l}").unwrap();
    }
    f.flush().unwrap();
    drop(f);
    std::fs::rename(&tmp, path).unwrap();
}

/// Writes (once) a shuffled history of `MULTI_OPS` ops of `EVENTS` events
/// each, in the recorder's form (`events` on the invoke, `index` on each
/// delivery): three ops in four publish all their events on their key,
/// the fourth its first three on its key and the last two on another.
/// Returns its path and line count.
fn multi_history() -> (PathBuf, u64) {
    let path = std::env::temp_dir().join(format!("dualcheck-bench-multi-{MULTI_OPS}x{EVENTS}.jsonl"));
    let lines = MULTI_OPS * (3 + EVENTS);
    if path.exists() {
        return (path, lines);
    }
    let mut out: Vec<String> = Vec::with_capacity(lines as usize);
    let mut offset = [0i64; 8];
    let mut next_seq = vec![0u64; KEYS as usize];
    for op in 0..MULTI_OPS {
        let key = op % KEYS;
        let other = (key + 1 + op / KEYS % (KEYS - 1)) % KEYS;
        let two_keys = op % 4 == 3;
        let seq = next_seq[key as usize];
        next_seq[key as usize] += 1;
        // The op's seq on its second key: its place among that key's ops.
        let other_seq = two_keys.then(|| {
            next_seq[other as usize] += 1;
            next_seq[other as usize] - 1
        });
        let t = op as i64 * 40_000;
        let events = match other_seq {
            None => EVENTS.to_string(),
            Some(other_seq) => {
                let places: Vec<String> = (0..EVENTS)
                    .map(|i| {
                        if i < 3 {
                            format!(r#"{{"key":"k{key}","seq":{seq}}}"#)
                        } else {
                            format!(r#"{{"key":"k{other}","seq":{other_seq}}}"#)
                        }
                    })
                    .collect();
                format!("[{}]", places.join(","))
            }
        };
        out.push(format!(
            r#"{{"type":"invoke","op":{op},"process":{key},"key":"k{key}","seq":{seq},"time":{t},"events":{events}}}"#
        ));
        out.push(format!(
            r#"{{"type":"ok","op":{op},"process":{key},"time":{}}}"#,
            t + 3_000_000
        ));
        for index in 0..EVENTS {
            let (k, s) = match other_seq {
                Some(other_seq) if index >= 3 => (other, other_seq),
                _ => (key, seq),
            };
            let partition = (k % 8) as usize;
            let event = uuid::Uuid::from_u128(
                0x5eed_0000_0000_4000_8000_0000_0000_0000 | (u128::from(index) << 64) | op as u128,
            )
            .hyphenated();
            out.push(format!(
                r#"{{"type":"deliver","op":{op},"event":"{event}","key":"k{k}","seq":{s},"topic":"orders","partition":{partition},"offset":{},"time":{},"index":{index}}}"#,
                offset[partition],
                t + 9_000_000
            ));
            offset[partition] += 1;
        }
        out.push(format!(r#"{{"type":"committed","op":{op}}}"#));
    }
    write_shuffled(&path, out);
    (path, lines)
}

/// Writes (once) a shuffled history of `OPS` ops; returns its path and line count.
fn history() -> (PathBuf, u64) {
    let path = std::env::temp_dir().join(format!("dualcheck-bench-{OPS}.jsonl"));
    let lines = OPS * 4;
    if path.exists() {
        return (path, lines);
    }
    let mut out: Vec<String> = Vec::with_capacity(lines as usize);
    let mut offset = [0i64; 8];
    for op in 0..OPS {
        let key = op % KEYS;
        let seq = op / KEYS;
        let partition = (key % 8) as usize;
        let t = op as i64 * 10_000;
        let event = uuid::Uuid::from_u128(0x5eed_0000_0000_4000_8000_0000_0000_0000 | op as u128).hyphenated();
        out.push(format!(
            r#"{{"type":"invoke","op":{op},"process":{key},"key":"k{key}","seq":{seq},"time":{t}}}"#
        ));
        out.push(format!(
            r#"{{"type":"ok","op":{op},"process":{key},"time":{}}}"#,
            t + 3_000_000
        ));
        out.push(format!(
            r#"{{"type":"deliver","op":{op},"event":"{event}","key":"k{key}","seq":{seq},"topic":"orders","partition":{partition},"offset":{},"time":{}}}"#,
            offset[partition],
            t + 9_000_000
        ));
        offset[partition] += 1;
        out.push(format!(r#"{{"type":"committed","op":{op}}}"#));
    }
    write_shuffled(&path, out);
    (path, lines)
}

/// Checks `path` once, measuring its peak heap, and prints the figures.
fn measure_once(name: &str, path: &PathBuf, lines: u64, ops: u64) -> dualcheck_checkers::CheckResult {
    let bytes = std::fs::metadata(path).unwrap().len();
    let before = CURRENT.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);
    let started = std::time::Instant::now();
    let result = check_file(path, CheckOptions::default()).unwrap();
    let secs = started.elapsed().as_secs_f64();
    let peak = PEAK.load(Ordering::Relaxed) - before;
    assert!(result.valid, "{:?}", result.anomalies);
    assert_eq!(result.ops.invoked, ops);
    eprintln!(
        "{name}: {lines} lines ({:.0} MB) in {secs:.3} s = {:.2} M lines/s; peak heap {:.1} MB = {:.0} bytes/op",
        bytes as f64 / 1e6,
        lines as f64 / secs / 1e6,
        peak as f64 / 1e6,
        peak as f64 / ops as f64
    );
    result
}

fn bench(c: &mut Criterion) {
    let (path, lines) = history();
    measure_once("checker", &path, lines, OPS);
    let (multi_path, multi_lines) = multi_history();
    let result = measure_once("checker, 5 events per op", &multi_path, multi_lines, MULTI_OPS);
    assert_eq!(result.multi_event_ops, MULTI_OPS);
    assert_eq!(result.events_expected, MULTI_OPS * EVENTS);
    assert_eq!(result.interleaved_ops, 0, "each op's events are next to each other");

    let mut group = c.benchmark_group("checker");
    group.sample_size(10);
    group.throughput(Throughput::Elements(lines));
    group.bench_function("check_file_1M_ops_shuffled", |b| {
        b.iter(|| check_file(&path, CheckOptions::default()).unwrap())
    });
    group.throughput(Throughput::Elements(multi_lines));
    group.bench_function("check_file_250k_ops_of_5_events_shuffled", |b| {
        b.iter(|| check_file(&multi_path, CheckOptions::default()).unwrap())
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
