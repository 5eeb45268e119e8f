//! Checks one history file and prints the time taken: `cargo run --release
//! --example check_file -p dualcheck-checkers -- HISTORY.jsonl` (for profiling).
//! With `JSON=1` it prints what `dualcheck check --json` prints instead (the
//! results, or the error), for comparing checkers without building the harness.

fn main() {
    let path = std::env::args().nth(1).expect("usage: check_file HISTORY.jsonl");
    if std::env::var_os("PARSE_ONLY").is_some() {
        return parse_only(&path);
    }
    let started = std::time::Instant::now();
    let result = dualcheck_checkers::check_file(path.as_ref(), dualcheck_checkers::CheckOptions::default());
    if std::env::var_os("JSON").is_some() {
        match result {
            Ok(r) => println!("{}", serde_json::to_string(&r).expect("results serialize")),
            Err(e) => eprintln!("dualcheck check: unusable history: {e}"),
        }
        return;
    }
    let result = result.unwrap_or_else(|e| panic!("{e}"));
    eprintln!(
        "{} lines in {:.3} s, valid={}",
        result.lines,
        started.elapsed().as_secs_f64(),
        result.valid
    );
}

fn parse_only(path: &str) {
    let started = std::time::Instant::now();
    let s = dualcheck_checkers::reader::read_file(path.as_ref(), |_, _| Ok(())).unwrap();
    eprintln!(
        "parse only: {} records in {:.3} s",
        s.parsed,
        started.elapsed().as_secs_f64()
    );
}
