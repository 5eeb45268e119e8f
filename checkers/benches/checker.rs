//! The checker's speed and memory over a generated, shuffled history of
//! 1,000,000 ops (invoke, ok, deliver, committed: 4M lines).
//!
//! Goals: at least 5M lines/s end to end on a 2-core machine, at
//! most 200 bytes of memory per op. Peak heap is measured with a counting
//! allocator and printed once before criterion's timing.

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

/// Writes (once) a shuffled history of `OPS` ops; returns its path and line count.
fn history() -> (PathBuf, u64) {
    let path = std::env::temp_dir().join(format!("dualcheck-bench-{OPS}.jsonl"));
    let lines = OPS * 4;
    if path.exists() {
        return (path, lines);
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(42);
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
    out.shuffle(&mut rng);
    let tmp = path.with_extension("tmp");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&tmp).unwrap());
    for l in &out {
        writeln!(f, "{l}").unwrap();
    }
    f.flush().unwrap();
    drop(f);
    std::fs::rename(&tmp, &path).unwrap();
    (path, lines)
}

fn bench(c: &mut Criterion) {
    let (path, lines) = history();
    let bytes = std::fs::metadata(&path).unwrap().len();

    let before = CURRENT.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);
    let started = std::time::Instant::now();
    let result = check_file(&path, CheckOptions::default()).unwrap();
    let secs = started.elapsed().as_secs_f64();
    let peak = PEAK.load(Ordering::Relaxed) - before;
    assert!(result.valid, "{:?}", result.anomalies);
    assert_eq!(result.ops.invoked, OPS);
    eprintln!(
        "checker: {lines} lines ({:.0} MB) in {secs:.3} s = {:.2} M lines/s; peak heap {:.1} MB = {:.0} bytes/op",
        bytes as f64 / 1e6,
        lines as f64 / secs / 1e6,
        peak as f64 / 1e6,
        peak as f64 / OPS as f64
    );

    let mut group = c.benchmark_group("checker");
    group.sample_size(10);
    group.throughput(Throughput::Elements(lines));
    group.bench_function("check_file_1M_ops_shuffled", |b| {
        b.iter(|| check_file(&path, CheckOptions::default()).unwrap())
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
