//! The results table of `bench/run`: reads the JSON lines the load driver and the pgbench steps
//! wrote, and checks every target of the benchmark in the round it was measured in (the machine
//! is noisy, so ratios are taken side by side, never across rounds).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Parser;
use serde_json::Value;

/// Command line of `bench-report`.
#[derive(Parser, Debug)]
#[command(about = "Writes the results table of bench/run")]
struct Args {
    /// The JSON lines written during the run.
    #[arg(long)]
    input: PathBuf,
    /// Where to write the Markdown table.
    #[arg(long)]
    output: PathBuf,
    /// The machine line printed above the table.
    #[arg(long, default_value = "")]
    machine: String,
}

/// One measurement: a system serving one query for a fixed time.
#[derive(Clone, Debug, PartialEq)]
pub struct Measurement {
    /// `rg`, `postgraphile` or `pgbench`.
    pub target: String,
    /// `q1` … `q6`, or a pgbench baseline such as `q4_bare` or `q3_owner`.
    pub query: String,
    /// The round (1-based), or 0 when the line carries none.
    pub round: u32,
    /// Whether the query ran within the mix rather than alone.
    pub mix: bool,
    /// The tenant count of a scaling pass, if it is one.
    pub tenants: Option<u64>,
    /// Requests (or pgbench transactions) per second.
    pub rps: f64,
    /// Latency percentiles in milliseconds (pgbench reports only an average: `p50` holds it).
    pub p50: Option<f64>,
    pub p95: Option<f64>,
    pub p99: Option<f64>,
    /// Peak resident memory of the server processes, MiB.
    pub rss_mib: Option<f64>,
}

impl Measurement {
    /// Reads one line; `None` for a line that is not a measurement.
    pub fn parse(line: &str) -> Option<Measurement> {
        let v: Value = serde_json::from_str(line).ok()?;
        let num = |k: &str| v.get(k).and_then(Value::as_f64);
        let label = v.get("label").and_then(Value::as_str).unwrap_or("");
        let round = v
            .get("round")
            .and_then(Value::as_u64)
            .or_else(|| number_after(label, "round"))
            .unwrap_or(0) as u32;
        Some(Measurement {
            target: v.get("target")?.as_str()?.to_owned(),
            query: v.get("query")?.as_str()?.to_owned(),
            round,
            mix: label.ends_with("-mix"),
            tenants: number_after(label, "tenants-"),
            rps: num("rps")?,
            p50: num("p50_ms").or_else(|| num("avg_ms")),
            p95: num("p95_ms"),
            p99: num("p99_ms"),
            rss_mib: num("peak_rss_mib"),
        })
    }
}

/// The number right after `prefix` in `label` ("round2-mix" → 2 for "round").
fn number_after(label: &str, prefix: &str) -> Option<u64> {
    let rest = &label[label.find(prefix)? + prefix.len()..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// A target of the benchmark, checked in one round.
#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    pub target: String,
    pub round: u32,
    /// The measured figure, in words.
    pub measured: String,
    pub met: bool,
}

/// All measurements of one run.
pub struct Results {
    all: Vec<Measurement>,
}

impl Results {
    pub fn new(all: Vec<Measurement>) -> Results {
        Results { all }
    }

    fn find(&self, target: &str, query: &str, round: u32) -> Option<&Measurement> {
        self.all.iter().find(|m| {
            m.target == target
                && m.query == query
                && m.round == round
                && !m.mix
                && m.tenants.is_none()
        })
    }

    fn rounds(&self) -> Vec<u32> {
        let mut rounds: Vec<u32> = self
            .all
            .iter()
            .filter(|m| m.tenants.is_none())
            .map(|m| m.round)
            .collect();
        rounds.sort_unstable();
        rounds.dedup();
        rounds
    }

    /// Every target of the benchmark, per round, where its figures were measured.
    pub fn checks(&self) -> Vec<Check> {
        let mut checks = Vec::new();
        for round in self.rounds() {
            for q in ["q1", "q2", "q3"] {
                if let (Some(rg), Some(peer)) = (
                    self.find("rg", q, round),
                    self.find("postgraphile", q, round),
                ) {
                    let ratio = rg.rps / peer.rps;
                    let p99 = match (rg.p99, peer.p99) {
                        (Some(a), Some(b)) => Some((a, b)),
                        _ => None,
                    };
                    checks.push(Check {
                        target: format!("{} ≥ 2× PostGraphile, lower p99", q.to_uppercase()),
                        round,
                        measured: match p99 {
                            Some((a, b)) => format!("{ratio:.2}×; p99 {a:.1} vs {b:.1} ms"),
                            None => format!("{ratio:.2}×"),
                        },
                        met: ratio >= 2.0 && p99.is_some_and(|(a, b)| a < b),
                    });
                }
            }
            for (q, base, share, what) in [
                ("q3", "q3", 0.5, "Q3 ≥ 50% of pgbench"),
                ("q2", "q2", 0.4, "Q2 ≥ 40% of pgbench"),
                (
                    "q4",
                    "q4_bare",
                    5.0,
                    "Q4 ≥ 5× the bare aggregate in pgbench",
                ),
                (
                    "q5",
                    "q5_bare",
                    0.5,
                    "Q5 within 2× of the bare recursive CTE",
                ),
            ] {
                if let (Some(rg), Some(pg)) =
                    (self.find("rg", q, round), self.find("pgbench", base, round))
                {
                    let ratio = rg.rps / pg.rps;
                    checks.push(Check {
                        target: what.to_owned(),
                        round,
                        measured: format!("{:.0} / {:.0} = {ratio:.2}×", rg.rps, pg.rps),
                        met: ratio >= share,
                    });
                }
            }
            let mut pairs: Vec<&str> = self
                .all
                .iter()
                .filter(|m| m.target == "pgbench" && m.round == round)
                .filter_map(|m| m.query.strip_suffix("_rls"))
                .collect();
            pairs.sort_unstable();
            pairs.dedup();
            for base in pairs {
                if let (Some(with_rls), Some(owner)) = (
                    self.find("pgbench", &format!("{base}_rls"), round),
                    self.find("pgbench", &format!("{base}_owner"), round),
                ) {
                    let overhead = owner.rps / with_rls.rps - 1.0;
                    checks.push(Check {
                        target: format!("RLS overhead ≤ 10% ({base})"),
                        round,
                        measured: format!(
                            "{:.0} tps under RLS, {:.0} as owner: {:+.1}%",
                            with_rls.rps,
                            owner.rps,
                            overhead * 100.0
                        ),
                        met: overhead <= 0.10,
                    });
                }
            }
        }
        let scale: Vec<&Measurement> = self.all.iter().filter(|m| m.tenants.is_some()).collect();
        let mut by_round: BTreeMap<u32, Vec<&Measurement>> = BTreeMap::new();
        for m in scale {
            by_round.entry(m.round).or_default().push(m);
        }
        for (round, ms) in by_round {
            let few = ms.iter().min_by_key(|m| m.tenants);
            let many = ms.iter().max_by_key(|m| m.tenants);
            if let (Some(few), Some(many)) = (few, many) {
                if let (Some(a), Some(b)) = (few.p50, many.p50) {
                    if few.tenants != many.tenants {
                        checks.push(Check {
                            target: format!(
                                "Q1 p50 within 1.2× from {} to {} tenants",
                                few.tenants.unwrap_or(0),
                                many.tenants.unwrap_or(0)
                            ),
                            round,
                            measured: format!("{a:.2} → {b:.2} ms = {:.2}×", b / a),
                            met: b / a <= 1.2,
                        });
                    }
                }
            }
        }
        let peak = self
            .all
            .iter()
            .filter(|m| m.target == "rg")
            .filter_map(|m| m.rss_mib)
            .fold(None, |acc: Option<f64>, x| {
                Some(acc.map_or(x, |a| a.max(x)))
            });
        if let Some(peak) = peak {
            checks.push(Check {
                target: "research-graph RSS under load < 150 MB".into(),
                round: 0,
                measured: format!("{:.0} MB peak", peak * 1.048_576),
                met: peak * 1.048_576 < 150.0,
            });
        }
        checks
    }

    /// The Markdown report: the raw figures per round, then every target.
    pub fn markdown(&self, machine: &str) -> String {
        let mut out = String::new();
        if !machine.is_empty() {
            let _ = writeln!(out, "Machine: {machine}\n");
        }
        let _ = writeln!(
            out,
            "| round | query | research-graph req/s | p50 / p95 / p99 ms | peak RSS MiB | PostGraphile req/s | p50 / p95 / p99 ms | peak RSS MiB | pgbench tps (same SQL) |"
        );
        let _ = writeln!(
            out,
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"
        );
        let lat = |m: &Measurement| match (m.p50, m.p95, m.p99) {
            (Some(a), Some(b), Some(c)) => format!("{a:.2} / {b:.2} / {c:.2}"),
            _ => "–".into(),
        };
        for round in self.rounds() {
            for q in ["q1", "q2", "q3", "q4", "q5", "q6"] {
                let rg = self.find("rg", q, round);
                let peer = self.find("postgraphile", q, round);
                let pg = self.find("pgbench", q, round);
                if rg.is_none() && peer.is_none() && pg.is_none() {
                    continue;
                }
                let rps =
                    |m: Option<&Measurement>| m.map_or("–".into(), |m| format!("{:.0}", m.rps));
                let rss = |m: Option<&Measurement>| {
                    m.and_then(|m| m.rss_mib)
                        .map_or("–".into(), |v| format!("{v:.0}"))
                };
                let _ = writeln!(
                    out,
                    "| {round} | {} | {} | {} | {} | {} | {} | {} | {} |",
                    q.to_uppercase(),
                    rps(rg),
                    rg.map_or("–".into(), lat),
                    rss(rg),
                    rps(peer),
                    peer.map_or("–".into(), lat),
                    rss(peer),
                    rps(pg),
                );
            }
        }
        let mut extra: Vec<&Measurement> = self
            .all
            .iter()
            .filter(|m| {
                m.mix || m.tenants.is_some() || (m.target == "pgbench" && m.query.contains('_'))
            })
            .collect();
        extra.sort_by(|a, b| (a.round, &a.target, &a.query).cmp(&(b.round, &b.target, &b.query)));
        if !extra.is_empty() {
            let _ = writeln!(
                out,
                "\n| round | run | req/s or tps | p50 ms | p99 ms | peak RSS MiB |"
            );
            let _ = writeln!(out, "| --- | --- | --- | --- | --- | --- |");
            for m in extra {
                let what = match (m.mix, m.tenants) {
                    (true, _) => format!("{} {} in the mix", m.target, m.query),
                    (_, Some(n)) => format!("{} {} at {n} tenants", m.target, m.query),
                    _ => format!("{} {}", m.target, m.query),
                };
                let opt = |v: Option<f64>| v.map_or("–".into(), |v| format!("{v:.2}"));
                let _ = writeln!(
                    out,
                    "| {} | {what} | {:.0} | {} | {} | {} |",
                    m.round,
                    m.rps,
                    opt(m.p50),
                    opt(m.p99),
                    opt(m.rss_mib)
                );
            }
        }
        let _ = writeln!(out, "\n| target | round | measured | met |");
        let _ = writeln!(out, "| --- | --- | --- | --- |");
        for c in self.checks() {
            let round = if c.round == 0 {
                "all".to_owned()
            } else {
                c.round.to_string()
            };
            let _ = writeln!(
                out,
                "| {} | {round} | {} | {} |",
                c.target,
                c.measured,
                if c.met { "yes" } else { "**no**" }
            );
        }
        out
    }
}

/// Entry point of `bench-report`.
pub fn main() -> Result<()> {
    let args = Args::parse();
    let text = std::fs::read_to_string(&args.input)
        .with_context(|| format!("reading {}", args.input.display()))?;
    let results = Results::new(text.lines().filter_map(Measurement::parse).collect());
    std::fs::write(&args.output, results.markdown(&args.machine))
        .with_context(|| format!("writing {}", args.output.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(target: &str, query: &str, label: &str, rps: f64, p50: f64, p99: f64) -> String {
        serde_json::json!({
            "target": target, "query": query, "label": label, "rps": rps,
            "p50_ms": p50, "p95_ms": p99, "p99_ms": p99, "peak_rss_mib": 40.0,
        })
        .to_string()
    }

    fn results(lines: &[String]) -> Results {
        Results::new(lines.iter().filter_map(|l| Measurement::parse(l)).collect())
    }

    #[test]
    fn ratios_are_taken_within_a_round() {
        let r = results(&[
            line("rg", "q1", "round1", 3000.0, 5.0, 9.0),
            line("postgraphile", "q1", "round1", 1000.0, 20.0, 40.0),
            line("rg", "q1", "round2", 1500.0, 5.0, 9.0),
            line("postgraphile", "q1", "round2", 1000.0, 20.0, 40.0),
        ]);
        let checks = r.checks();
        let q1: Vec<&Check> = checks
            .iter()
            .filter(|c| c.target.starts_with("Q1"))
            .collect();
        assert_eq!(q1.len(), 2);
        assert!(q1[0].met, "{:?}", q1[0]);
        assert!(!q1[1].met, "1.5× is not 2×: {:?}", q1[1]);
    }

    #[test]
    fn a_higher_p99_fails_the_peer_target_even_at_twice_the_rate() {
        let r = results(&[
            line("rg", "q2", "round1", 3000.0, 5.0, 50.0),
            line("postgraphile", "q2", "round1", 1000.0, 20.0, 40.0),
        ]);
        assert!(!r.checks()[0].met);
    }

    #[test]
    fn rls_overhead_compares_the_pair_of_a_round() {
        let pg = |q: &str, rps: f64| {
            format!(r#"{{"target":"pgbench","query":"{q}","round":1,"rps":{rps},"avg_ms":1.0}}"#)
        };
        let r = results(&[
            pg("q3_rls", 1000.0),
            pg("q3_owner", 1050.0),
            pg("q1_rls", 1000.0),
            pg("q1_owner", 1200.0),
        ]);
        let checks = r.checks();
        let q3 = checks.iter().find(|c| c.target.contains("(q3)")).unwrap();
        let q1 = checks.iter().find(|c| c.target.contains("(q1)")).unwrap();
        assert!(q3.met && !q1.met, "{checks:?}");
    }

    #[test]
    fn the_tenant_count_check_compares_the_smallest_and_largest_pass() {
        let r = results(&[
            line("rg", "q1", "tenants-10-round1", 3000.0, 4.0, 9.0),
            line("rg", "q1", "tenants-10000-round1", 3000.0, 4.6, 9.0),
        ]);
        let c = r
            .checks()
            .into_iter()
            .find(|c| c.target.contains("tenants"))
            .unwrap();
        assert!(c.met, "{c:?}");
        assert_eq!(c.target, "Q1 p50 within 1.2× from 10 to 10000 tenants");
    }

    #[test]
    fn labels_give_round_mix_and_tenants() {
        let m = Measurement::parse(&line("rg", "q4", "round2-mix", 1.0, 1.0, 1.0)).unwrap();
        assert_eq!((m.round, m.mix, m.tenants), (2, true, None));
        let m =
            Measurement::parse(&line("rg", "q1", "tenants-10000-round1", 1.0, 1.0, 1.0)).unwrap();
        assert_eq!((m.round, m.mix, m.tenants), (1, false, Some(10000)));
        assert!(Measurement::parse("not json").is_none());
    }
}
