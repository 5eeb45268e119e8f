//! Operational series of a run as the run directory holds them: one JSON
//! line per [`Sample`] in [`crate::run_dir::OPS_SERIES`] (the run's sampler,
//! in the run crate's `ops_series`, writes them every 500 ms), the maxima
//! ([`OpsMaxima`], in `results.json`), and what is judged from them
//! (`wal_retained`: [`judge_retained_wal`]). Pure: reading and judging only.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// One sample; a figure that could not be read (not served, service down) is `None`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// When, ns since the run started (the history's clock).
    pub time: i64,
    /// Events waiting to be published (`GET /backlog`).
    pub backlog: Option<i64>,
    /// Age of the oldest waiting event, ms.
    pub oldest_age_ms: Option<i64>,
    /// Events the implementation parked.
    pub parked: Option<i64>,
    /// WAL retained by each replication slot of the run's database, bytes
    /// (empty: no slot, or the database did not answer).
    #[serde(default)]
    pub slots: BTreeMap<String, i64>,
    /// WAL each slot has not confirmed (`pg_current_wal_lsn() - confirmed_flush_lsn`),
    /// bytes: near 0 while the consumer confirms, even when the slot still
    /// retains WAL up to Postgres's next restart point (docs/faults.md#idle-window).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub unconfirmed: BTreeMap<String, i64>,
    /// Size on disk of the outbox table with its indexes and TOAST, bytes.
    pub outbox_bytes: Option<i64>,
}

/// The largest value of each series over a run (`ops_max` in `results.json`);
/// a series never read is `None`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OpsMaxima {
    /// Samples taken.
    pub samples: usize,
    /// Largest backlog.
    pub backlog: Option<i64>,
    /// Largest oldest pending age, ms.
    pub oldest_age_ms: Option<i64>,
    /// Largest parked count.
    pub parked: Option<i64>,
    /// Largest WAL retained by one slot, bytes.
    pub wal_retained_bytes: Option<i64>,
    /// Largest WAL one slot's consumer had not confirmed, bytes (absent in
    /// older runs' results).
    #[serde(default)]
    pub unconfirmed_bytes: Option<i64>,
    /// Largest outbox table size, bytes.
    pub outbox_bytes: Option<i64>,
}

impl OpsMaxima {
    /// Takes in `other` (another run's maxima): each series' larger value, samples summed.
    pub fn merge(&mut self, other: &OpsMaxima) {
        fn m(a: &mut Option<i64>, b: Option<i64>) {
            *a = match (*a, b) {
                (Some(x), Some(y)) => Some(x.max(y)),
                (x, y) => x.or(y),
            };
        }
        self.samples += other.samples;
        m(&mut self.backlog, other.backlog);
        m(&mut self.oldest_age_ms, other.oldest_age_ms);
        m(&mut self.parked, other.parked);
        m(&mut self.wal_retained_bytes, other.wal_retained_bytes);
        m(&mut self.unconfirmed_bytes, other.unconfirmed_bytes);
        m(&mut self.outbox_bytes, other.outbox_bytes);
    }
}

/// The maxima of `samples`.
pub fn maxima(samples: &[Sample]) -> OpsMaxima {
    fn max(it: impl Iterator<Item = i64>) -> Option<i64> {
        it.max()
    }
    OpsMaxima {
        samples: samples.len(),
        backlog: max(samples.iter().filter_map(|s| s.backlog)),
        oldest_age_ms: max(samples.iter().filter_map(|s| s.oldest_age_ms)),
        parked: max(samples.iter().filter_map(|s| s.parked)),
        wal_retained_bytes: max(samples.iter().flat_map(|s| s.slots.values().copied())),
        unconfirmed_bytes: max(samples.iter().flat_map(|s| s.unconfirmed.values().copied())),
        outbox_bytes: max(samples.iter().filter_map(|s| s.outbox_bytes)),
    }
}

/// Parses a byte count: a bare number of bytes or a number with a unit,
/// decimal (`kB`, `MB`, `GB`) or binary (`KiB`, `MiB`, `GiB`; `K`, `M`, `G`
/// are binary too), e.g. `64MiB`, `1.5GB`, `1048576`.
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let i = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (num, unit) = (&t[..i], t[i..].trim());
    let n: f64 = num
        .parse()
        .map_err(|_| format!("bad size `{s}`: write it like 64MiB, 500MB, 1GiB or a number of bytes"))?;
    let mult: f64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "kb" => 1e3,
        "mb" => 1e6,
        "gb" => 1e9,
        "tb" => 1e12,
        "k" | "kib" => 1024.0,
        "m" | "mib" => 1024.0 * 1024.0,
        "g" | "gib" => 1024.0 * 1024.0 * 1024.0,
        "t" | "tib" => 1024f64.powi(4),
        _ => {
            return Err(format!(
                "bad size unit in `{s}`: use B, kB, MB, GB (powers of 1000) or KiB, MiB, GiB (powers of 1024)"
            ))
        }
    };
    let bytes = n * mult;
    if !(bytes.is_finite() && bytes >= 1.0 && bytes < u64::MAX as f64) {
        return Err(format!("size `{s}` must be at least 1 byte"));
    }
    Ok(bytes.round() as u64)
}

/// A byte count for people: `512 B`, `3.2 KiB`, `64.0 MiB`, `1.5 GiB`.
pub fn format_bytes(b: i64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if b.abs() < 1024 {
        return format!("{b} B");
    }
    let mut v = b as f64 / 1024.0;
    let mut unit = UNITS[0];
    for u in &UNITS[1..] {
        if v.abs() < 1024.0 {
            break;
        }
        v /= 1024.0;
        unit = u;
    }
    format!("{v:.1} {unit}")
}

/// What `--max-retained-wal` found in a run's samples: how many slot samples
/// were over the limit, and the first of them.
#[derive(Debug, Clone, PartialEq)]
pub struct WalOverLimit {
    /// Samples (one per slot and sampling time) above the limit.
    pub count: u64,
    /// When the first one was taken, ns since the run started.
    pub time: i64,
    /// Its slot.
    pub slot: String,
    /// Its retained WAL, bytes.
    pub bytes: i64,
    /// The largest retained WAL of any sample, bytes.
    pub max_bytes: i64,
}

impl WalOverLimit {
    /// The explanation the results and the report show (time, value, limit, slot).
    pub fn explanation(&self, limit: u64) -> String {
        format!(
            "at {:.1} s slot {} retained {} of WAL ({} bytes), over --max-retained-wal {} ({limit} bytes); {} sample(s) over the limit, largest {}",
            self.time as f64 / 1e9,
            self.slot,
            format_bytes(self.bytes),
            self.bytes,
            format_bytes(limit as i64),
            self.count,
            format_bytes(self.max_bytes),
        )
    }
}

/// Judges `samples` against `limit` bytes: `None` when no sample of any slot
/// exceeds it (equal is within).
pub fn wal_over_limit(samples: &[Sample], limit: u64) -> Option<WalOverLimit> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let mut found: Option<WalOverLimit> = None;
    for s in samples {
        for (slot, &bytes) in &s.slots {
            if bytes <= limit {
                continue;
            }
            match &mut found {
                None => {
                    found = Some(WalOverLimit {
                        count: 1,
                        time: s.time,
                        slot: slot.clone(),
                        bytes,
                        max_bytes: bytes,
                    })
                }
                Some(f) => {
                    f.count += 1;
                    f.max_bytes = f.max_bytes.max(bytes);
                    if s.time < f.time {
                        (f.time, f.slot, f.bytes) = (s.time, slot.clone(), bytes);
                    }
                }
            }
        }
    }
    found
}

/// `--max-retained-wal`: adds to `result` one `wal_retained` occurrence per
/// slot sample of `samples` above `limit` bytes, its example explaining the
/// first (time, slot, value). The run's judge and the report (which rechecks
/// the history) both judge this way, so they agree.
pub fn judge_retained_wal(result: &mut checkers::CheckResult, samples: &[Sample], limit: u64) {
    if let Some(over) = wal_over_limit(samples, limit) {
        let example = checkers::Example {
            detail: Some(over.explanation(limit)),
            ..checkers::Example::default()
        };
        result.add_finding(checkers::Anomaly::WalRetained, over.count, over.time, example);
    }
}

/// Reads a series file; lines that do not parse are skipped (a partial last line).
pub fn read(path: &Path) -> std::io::Result<Vec<Sample>> {
    Ok(std::fs::read_to_string(path)?
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(time: i64, slots: &[(&str, i64)]) -> Sample {
        Sample {
            time,
            slots: slots.iter().map(|(n, b)| (n.to_string(), *b)).collect(),
            ..Sample::default()
        }
    }

    #[test]
    fn the_wal_verdict_names_the_first_sample_over_the_limit_of_any_slot() {
        let samples = [
            at(0, &[]),
            at(500_000_000, &[("a", 100), ("b", 1000)]),
            at(1_000_000_000, &[("a", 2_000_000), ("b", 1001)]),
            at(1_500_000_000, &[("a", 3_000_000)]),
        ];
        assert_eq!(
            wal_over_limit(&samples, 3_000_000),
            None,
            "equal to the limit is within"
        );
        let f = wal_over_limit(&samples, 1000).unwrap();
        assert_eq!(
            f,
            WalOverLimit {
                count: 3,
                time: 1_000_000_000,
                slot: "a".into(),
                bytes: 2_000_000,
                max_bytes: 3_000_000
            }
        );
        let text = f.explanation(1000);
        assert!(
            text.contains("at 1.0 s slot a retained 1.9 MiB") && text.contains("(1000 bytes)"),
            "{text}"
        );
        assert!(
            text.contains("3 sample(s)") && text.contains("largest 2.9 MiB"),
            "{text}"
        );
        assert_eq!(wal_over_limit(&[], 1), None);
        assert_eq!(
            wal_over_limit(&samples[..2], 999).map(|f| (f.slot, f.count)),
            Some(("b".into(), 1))
        );
    }

    #[test]
    fn sizes_parse_with_decimal_and_binary_units_and_explain_mistakes() {
        assert_eq!(parse_bytes("64MiB"), Ok(64 << 20));
        assert_eq!(parse_bytes("64M"), Ok(64 << 20));
        assert_eq!(parse_bytes("500MB"), Ok(500_000_000));
        assert_eq!(parse_bytes("1.5 GiB"), Ok(3 << 29));
        assert_eq!(parse_bytes("1048576"), Ok(1_048_576));
        assert_eq!(parse_bytes("2kb"), Ok(2000));
        assert!(parse_bytes("64 parsecs").unwrap_err().contains("unit"));
        assert!(parse_bytes("lots").unwrap_err().contains("64MiB"));
        assert!(parse_bytes("0").is_err());
        assert_eq!(format_bytes(512), "512 B");
        assert_eq!(format_bytes(64 << 20), "64.0 MiB");
        assert_eq!(format_bytes(3 << 29), "1.5 GiB");
    }

    #[test]
    fn maxima_take_the_largest_of_each_series_and_none_when_never_read() {
        let a = Sample {
            time: 0,
            backlog: Some(3),
            oldest_age_ms: Some(10),
            parked: Some(0),
            slots: [("s1".to_string(), 100), ("s2".to_string(), 700)].into(),
            unconfirmed: [("s1".to_string(), 40)].into(),
            outbox_bytes: None,
        };
        let b = Sample {
            time: 500_000_000,
            backlog: Some(9),
            oldest_age_ms: Some(4),
            slots: [("s1".to_string(), 300)].into(),
            ..Sample::default()
        };
        let m = maxima(&[a, b]);
        assert_eq!(
            m,
            OpsMaxima {
                samples: 2,
                backlog: Some(9),
                oldest_age_ms: Some(10),
                parked: Some(0),
                wal_retained_bytes: Some(700),
                unconfirmed_bytes: Some(40),
                outbox_bytes: None
            }
        );
        assert_eq!(maxima(&[]).backlog, None);
        let mut merged = maxima(&[]);
        merged.merge(&m);
        merged.merge(&OpsMaxima {
            samples: 1,
            outbox_bytes: Some(8192),
            backlog: Some(1),
            ..OpsMaxima::default()
        });
        assert_eq!(
            (merged.samples, merged.backlog, merged.outbox_bytes),
            (3, Some(9), Some(8192))
        );
    }
}
