//! `dualcheck serve` in a real headless browser (Debian's `chromium`, installed
//! by ci/setup): run directories made with `dualcheck check --json` and
//! `dualcheck report` on hand-written histories; no services needed.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const S: i64 = 1_000_000_000;
const BIN: &str = env!("CARGO_BIN_EXE_dualcheck");

fn root(name: &str) -> PathBuf {
    let parent = std::env::temp_dir().join(format!("dualcheck-serve-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&parent);
    let d = parent.join("runs");
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Ops 1 and 2 acknowledged during a `kafka-partition` window from 1 s to
/// 2 s; op 1 delivered at 2.5 s (0.5 s after the stop), op 2 only when `lose_op_2` is false.
fn history(lose_op_2: bool) -> String {
    let mut lines = vec![
        format!(r#"{{"type":"nemesis","fault":"kafka-partition","phase":"start","time":{S}}}"#),
        format!(
            r#"{{"type":"invoke","op":1,"process":0,"key":"k1","seq":0,"time":{}}}"#,
            S + S / 10
        ),
        format!(r#"{{"type":"ok","op":1,"process":0,"time":{}}}"#, S + S / 5),
        format!(
            r#"{{"type":"invoke","op":2,"process":1,"key":"k2","seq":0,"time":{}}}"#,
            S + S / 10
        ),
        format!(r#"{{"type":"ok","op":2,"process":1,"time":{}}}"#, S + S / 5),
        format!(
            r#"{{"type":"nemesis","fault":"kafka-partition","phase":"stop","time":{}}}"#,
            2 * S
        ),
        format!(
            r#"{{"type":"deliver","op":1,"event":"e1","key":"k1","seq":0,"topic":"orders","partition":0,"offset":0,"time":{}}}"#,
            2 * S + S / 2
        ),
    ];
    if !lose_op_2 {
        lines.push(format!(
            r#"{{"type":"deliver","op":2,"event":"e2","key":"k2","seq":0,"topic":"orders","partition":1,"offset":0,"time":{}}}"#,
            2 * S + S * 3 / 4
        ));
    }
    lines.push(r#"{"type":"committed","op":1}"#.into());
    lines.push(r#"{"type":"committed","op":2}"#.into());
    lines.join("\n") + "\n"
}

/// A run directory as `dualcheck run` leaves it: the history, `results.json`
/// (`dualcheck check --json` plus the run fields) and the reports.
fn make_run(dir: &Path, implementation: &str, seed: u64, lose: bool) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("history.jsonl"), history(lose)).unwrap();
    let out = Command::new(BIN)
        .args(["check", "--json"])
        .arg(dir.join("history.jsonl"))
        .output()
        .unwrap();
    let mut results: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    results["implementation"] = implementation.into();
    results["seed"] = seed.into();
    results["fault_names"] = serde_json::json!(["kafka-partition"]);
    results["duration_s"] = 3.0.into();
    results["ops_max"] = serde_json::json!({"samples": 6, "wal_retained_bytes": 3 * 1048576});
    std::fs::write(dir.join("results.json"), results.to_string()).unwrap();
    std::fs::write(dir.join("app.log"), "app started\n").unwrap();
    let status = Command::new(BIN).arg("report").arg(dir).output().unwrap().status;
    assert_eq!(
        status.code(),
        Some(if lose { 1 } else { 0 }),
        "dualcheck report {}",
        dir.display()
    );
}

/// A `dualcheck serve` process, killed (by its PID) and reaped when dropped.
struct Server {
    child: Child,
    base: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(dir: &Path) -> Server {
    let mut child = Command::new(BIN)
        .arg("serve")
        .arg(dir)
        .args(["--port", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let base = line
        .split_whitespace()
        .find(|w| w.starts_with("http://127.0.0.1:"))
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .trim_end_matches('/')
        .to_string();
    Server { child, base }
}

/// The DOM of `url` after its scripts ran, from headless chromium (killed after 40 s).
fn dom(url: &str) -> String {
    let profile = std::env::temp_dir().join(format!("dualcheck-serve-chromium-{}", std::process::id()));
    let mut child = Command::new("chromium")
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(["--dump-dom", url])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromium is needed for this test (Debian: apt-get install chromium; ci/setup installs it)");
    let mut out = String::new();
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let _ = stdout.read_to_string(&mut out);
        out
    });
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > Duration::from_secs(40) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium took more than 40 s on {url}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    reader.join().unwrap()
}

/// A raw HTTP/1.1 GET (the path as written, unnormalised): status code and body.
fn raw_get(base: &str, path: &str) -> (u16, String) {
    let (code, _, body) = raw_request(base, path, base.trim_start_matches("http://"));
    (code, body)
}

/// A raw HTTP/1.1 GET with `host` as its `Host` header: status code, the
/// header lines (lowercase) and the body.
fn raw_request(base: &str, path: &str, host: &str) -> (u16, String, String) {
    let addr = base.trim_start_matches("http://");
    let mut s = TcpStream::connect(addr).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let code = resp.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let (head, body) = resp.split_once("\r\n\r\n").unwrap_or((resp.as_str(), ""));
    (code, head.to_lowercase(), body.to_string())
}

fn rows(dom: &str) -> Vec<&str> {
    dom.split("<tr").skip(2).collect()
}

#[test]
fn serve_lists_runs_filters_them_and_links_reports_in_a_browser() {
    let dir = root("runs");
    make_run(&dir.join("run-1700000000-1-0-naive-seed3"), "naive", 3, true);
    make_run(
        &dir.join("sweep-1700000100-2/run-1700000100-2-0-outbox-poll-seed1"),
        "outbox-poll",
        1,
        false,
    );
    std::fs::write(dir.join("sweep-1700000100-2/sweep.html"), "<html>sweep</html>").unwrap();
    // A partial run: a history and no results (interrupted, or still going).
    std::fs::create_dir_all(dir.join("run-1700000200-3-0-cdc-outbox-seed9")).unwrap();
    std::fs::write(dir.join("run-1700000200-3-0-cdc-outbox-seed9/history.jsonl"), "").unwrap();
    // An older version's results: no verdict.
    std::fs::create_dir_all(dir.join("run-1700000300-4-0-two-phase-seed2")).unwrap();
    std::fs::write(
        dir.join("run-1700000300-4-0-two-phase-seed2/results.json"),
        "{\"ok\":1}",
    )
    .unwrap();

    let server = serve(&dir);
    let pid = server.child.id();
    let all = dom(&format!("{}/", server.base));
    let r = rows(&all);
    assert_eq!(r.len(), 5, "two runs, one sweep, one partial, one unreadable:\n{all}");
    let naive = r
        .iter()
        .find(|r| r.contains("run-1700000000-1-0-naive-seed3"))
        .expect("the naive run");
    assert!(
        naive.contains("class=\"verdict invalid\"") && naive.contains("lost 1"),
        "{naive}"
    );
    assert!(naive.contains("<b>never</b>"), "op 2 was never delivered: {naive}");
    assert!(naive.contains("3.0 MiB"), "the slot's most retained WAL: {naive}");
    let outbox = r
        .iter()
        .find(|r| r.contains("outbox-poll-seed1"))
        .expect("the outbox-poll run");
    assert!(outbox.contains("class=\"verdict valid\""), "{outbox}");
    assert!(
        outbox.contains("worst 0.75 s"),
        "op 2 delivered 0.75 s after the stop: {outbox}"
    );
    assert!(
        r.iter().any(|r| r.contains("<b>sweep</b>") && r.contains("1 run")),
        "{all}"
    );
    let partial = r.iter().find(|r| r.contains("cdc-outbox-seed9")).unwrap();
    assert!(partial.contains("no results.json"), "{partial}");
    let older = r.iter().find(|r| r.contains("two-phase-seed2")).unwrap();
    assert!(older.contains("has no `verdict`"), "{older}");
    assert!(!all.contains("src=\"http"), "no script from any network");

    // The filter hides the valid ones.
    let invalid = dom(&format!("{}/?verdict=invalid", server.base));
    assert!(invalid.contains("naive-seed3"), "{invalid}");
    assert!(
        !invalid.contains("outbox-poll-seed1"),
        "a valid run is hidden: {invalid}"
    );
    assert!(!invalid.contains("cdc-outbox-seed9"), "{invalid}");
    let by_impl = dom(&format!("{}/?impl=outbox-poll", server.base));
    assert!(
        by_impl.contains("outbox-poll-seed1") && !by_impl.contains("naive-seed3"),
        "{by_impl}"
    );

    // The linked report opens and its plots render (inline SVG with drawn paths).
    let link = naive
        .split("href=\"")
        .map(|h| h.split('"').next().unwrap())
        .find(|h| h.ends_with("/report.html"))
        .expect("a link to report.html");
    let report = dom(&format!("{}{link}", server.base));
    assert!(
        report.contains("<svg") && (report.contains("<path") || report.contains("<polyline")),
        "{report}"
    );
    let history = naive
        .split("href=\"")
        .map(|h| h.split('"').next().unwrap())
        .find(|h| h.ends_with("/history.jsonl"))
        .expect("a link to history.jsonl");
    assert!(raw_get(&server.base, history).1.contains("\"kafka-partition\""));

    // A new run shows up without a restart.
    make_run(&dir.join("run-1700000400-5-0-naive-seed4"), "naive", 4, false);
    assert!(dom(&format!("{}/", server.base)).contains("naive-seed4"));

    // Nothing outside the directory is served.
    std::fs::write(dir.parent().unwrap().join("secret.txt"), "secret").unwrap();
    for p in [
        "/files/../secret.txt",
        "/files/%2e%2e/secret.txt",
        "/files/run-1700000000-1-0-naive-seed3/../../secret.txt",
    ] {
        let (code, body) = raw_get(&server.base, p);
        assert!(code == 404 || code == 400, "{p}: {code}");
        assert!(!body.contains("secret"), "{p}: {body}");
    }

    // A port in use exits 2 saying so.
    let port = server.base.rsplit(':').next().unwrap();
    let taken = Command::new(BIN)
        .arg("serve")
        .arg(&dir)
        .args(["--port", port])
        .output()
        .unwrap();
    assert_eq!(taken.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&taken.stderr).contains("in use"), "{taken:?}");

    drop(server);
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists()
            || std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| s.contains(") Z")),
        "the server is gone"
    );
    let _ = std::fs::remove_dir_all(dir.parent().unwrap());
    let _ =
        std::fs::remove_dir_all(std::env::temp_dir().join(format!("dualcheck-serve-chromium-{}", std::process::id())));
}

#[test]
fn serve_of_an_empty_directory_says_how_to_make_a_run() {
    let dir = root("empty");
    let server = serve(&dir);
    let (code, page) = raw_get(&server.base, "/");
    assert_eq!(code, 200);
    assert!(
        page.contains("No runs here yet") && page.contains("dualcheck run --impl"),
        "{page}"
    );
    drop(server);
    let _ = std::fs::remove_dir_all(dir.parent().unwrap());
}

#[test]
fn serve_answers_only_its_loopback_name_and_says_nosniff() {
    let dir = root("hosts");
    make_run(&dir.join("run-1700000000-1-0-naive-seed3"), "naive", 3, true);
    let server = serve(&dir);
    let port = server.base.rsplit(':').next().unwrap().to_string();
    let history = "/files/run-1700000000-1-0-naive-seed3/history.jsonl";

    // A page elsewhere whose name resolves to 127.0.0.1 (DNS rebinding) sends its own name.
    for path in ["/", history, "/files/"] {
        let (code, head, body) = raw_request(&server.base, path, &format!("evil.example:{port}"));
        assert_eq!(code, 421, "{path}: {head}\n{body}");
        assert!(head.contains("content-type: text/plain"), "{path}: {head}");
        assert!(head.contains("x-content-type-options: nosniff"), "{path}: {head}");
        assert!(
            body.contains("evil.example") && body.contains(&format!("127.0.0.1:{port}")),
            "the refusal says why and where to go: {body}"
        );
        assert!(!body.contains("kafka-partition"), "nothing of the run leaks: {body}");
    }
    // The right name on another port is another server.
    let other = format!("127.0.0.1:{}", port.parse::<u16>().unwrap().wrapping_add(1));
    assert_eq!(raw_request(&server.base, "/", &other).0, 421);

    // The loopback names with the port are answered, each answer with nosniff.
    for host in [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        format!("[::1]:{port}"),
    ] {
        for path in [
            "/",
            history,
            "/files/run-1700000000-1-0-naive-seed3/",
            "/files/no-such-file",
        ] {
            let (code, head, _) = raw_request(&server.base, path, &host);
            assert!(
                code == 200 || path.ends_with("no-such-file") && code == 404,
                "{host}{path}: {code}"
            );
            assert!(head.contains("x-content-type-options: nosniff"), "{host}{path}: {head}");
        }
    }
    let (_, _, body) = raw_request(&server.base, history, &format!("localhost:{port}"));
    assert!(body.contains("\"kafka-partition\""), "{body}");
    drop(server);
    let _ = std::fs::remove_dir_all(dir.parent().unwrap());
}
