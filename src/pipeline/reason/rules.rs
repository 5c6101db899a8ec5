//! The offline reasoner: deterministic insights from the graph's shape and its evidence quotes,
//! for when no model can be called (and for the demo). Its insights are stored with
//! `prompt_version` = [`RULES_REASON_VERSION`].
//!
//! The rules are documented on [`rule_insights`].

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use uuid::Uuid;

use super::{GraphSnapshot, ProposedInsight, SnapEdge, SnapNode};

/// The version of the rules, recorded as the `prompt_version` of their insights.
pub const RULES_REASON_VERSION: &str = "reason-rules-v1";

/// The most insights one rule gives.
const MAX_PER_RULE: usize = 20;

/// Confidence of a "which does better" conflict.
const COMPARE_CONFIDENCE: f64 = 0.6;

/// Confidence of a metric-value conflict (papers often differ in setting).
const METRIC_CONFIDENCE: f64 = 0.5;

/// Confidence of a gap.
const GAP_CONFIDENCE: f64 = 0.5;

/// Confidence of a transitive relation.
const TRANSITIVE_CONFIDENCE: f64 = 0.6;

/// Longest quote repeated in a rationale, in characters.
const MAX_QUOTED_CHARS: usize = 160;

/// Phrases saying that what is named before does better than what is named after.
const BETTER: [&str; 15] = [
    "outperforms",
    "outperformed",
    "outperform",
    "surpasses",
    "surpassed",
    "surpass",
    "beats",
    "better than",
    "superior to",
    "improves over",
    "improves upon",
    "improves on",
    "improved over",
    "improved upon",
    "improved on",
];

/// Phrases saying that what is named before does worse than what is named after.
const WORSE: [&str; 11] = [
    "outperformed by",
    "surpassed by",
    "beaten by",
    "worse than",
    "inferior to",
    "underperforms",
    "underperformed",
    "lags behind",
    "falls behind",
    "falls short of",
    "trails",
];

/// Words that make a quote's claim uncertain.
const NEGATIONS: [&str; 11] = [
    "not", "no", "never", "cannot", "neither", "nor", "fail", "fails", "failed", "without",
    "unlike",
];

/// Insights the rules find in `snapshot`: conflicts, then gaps, then transitive relations, each
/// group in a fixed order. The same snapshot gives the same list, whatever its order.
///
/// The rules, each giving at most 20 insights (the strongest or, for equals, the first by name)
/// at a fixed confidence:
///
/// | rule | type | confidence |
/// |---|---|---|
/// | papers disagree on which of two entities does better | conflict | 0.6 |
/// | papers report different values of a metric for a method on a dataset | conflict | 0.5 |
/// | a task no method is used for or evaluated on | gap | 0.5 |
/// | a dataset no method is evaluated on | gap | 0.5 |
/// | a PART-OF or HYPONYM-OF chain of two edges with no direct edge | transitive | 0.6 |
///
/// Pending, proposed and approved edges count alike (the snapshot has no rejected ones).
///
/// **Gaps** concern only nodes with at least one edge: an isolated node says more about
/// extraction than about research. A task is a gap when no USED-FOR or EVALUATE-FOR edge, in
/// either direction, joins it to a Method; a dataset when no EVALUATE-FOR edge does. The
/// support is the node alone, so the insight keeps its fingerprint as the graph grows.
///
/// **Transitive chains**: A r B and B r C (r the same, PART-OF or HYPONYM-OF) with A ≠ C and no r
/// edge between A and C either way (the reverse would make a cycle). One insight per implied
/// pair, resting on the chain through the intermediate node with the smallest id (stable from
/// run to run); the rationale counts the other chains.
///
/// **Conflicts** are read from evidence quotes and are deliberately conservative: a missed
/// conflict costs less than a false one sent to review. Names are matched as whole words (a
/// hyphen belongs to the word, so "BERT" is not found in "BERT-large"), case ignored, with the
/// node's aliases; names under two characters are ignored. A quote with a negation ("not",
/// "no", "never", "without", "n't", …) gives nothing.
/// - *Which does better*: for COMPARE edges between X and Y (either direction, both edges
///   together), a quote claims "X does better" when it has exactly one comparison phrase
///   ("outperforms", "better than", "superior to", …, or a reversed one such as "outperformed
///   by", "worse than"), one of X and Y is named before it and only the other after it. A paper
///   claiming both ways is ignored. Claims are compared only between quotes naming the same
///   datasets and metrics (nodes of the snapshot), so "X beats Y on A" and "Y beats X on B" do
///   not conflict. A conflict needs one paper for each side.
/// - *Metric values*: read from the quotes of EVALUATE-FOR edges (either direction) joining a
///   Method M to a Dataset or to a Metric. On a Method–Dataset edge the dataset D is the edge's
///   and the metric is the one Metric node of the snapshot the quote names. On a Method–Metric
///   edge (the extractor's "F1 EVALUATE-FOR M") the metric is the edge's, which must be the one
///   Metric node the quote names, and D is the one Dataset node of the snapshot the quote names
///   once the names of M and the metric are set aside (none or several: no value). Either way,
///   a quote gives a value when, once the names of M, D and the metric are set aside, it names
///   no other Method, holds exactly one number (not part of a name such as "GPT-3" or "QM9"),
///   and that number stands next to the metric (at most three plain words between, as in "an
///   F1 of 91.2", "a MAE of 0.041" or "91.2% accuracy"). Values are grouped by method, dataset
///   and metric whichever kind of edge they come from, so a sentence that is evidence for both
///   kinds counts once for its paper. A paper giving two different values (dev and test, say)
///   is ignored. Values are equal when they agree at the coarser precision ("91.2" and
///   "91.24"), also with a fraction read as a percentage ("0.912" and "91.2%" or "91.2"). A
///   conflict needs two papers with values that are not equal; it rests on M, D, the metric and
///   the edges the values were read from.
pub fn rule_insights(snapshot: &GraphSnapshot) -> Vec<ProposedInsight> {
    let graph = Graph::new(snapshot);
    let mut insights = compare_conflicts(&graph);
    insights.extend(metric_conflicts(&graph));
    insights.extend(gaps(&graph, &TASK_GAP));
    insights.extend(gaps(&graph, &DATASET_GAP));
    insights.extend(transitive_chains(&graph));
    let mut seen = HashSet::new();
    insights.retain(|insight| seen.insert(insight.fingerprint()));
    insights
}

/// The snapshot, indexed: distinct nodes (in snapshot order), and the edges whose endpoints are
/// distinct nodes of it (by id, so that no result depends on the snapshot's order).
struct Graph<'a> {
    nodes: Vec<&'a SnapNode>,
    by_id: HashMap<Uuid, &'a SnapNode>,
    edges: Vec<&'a SnapEdge>,
    incident: HashMap<Uuid, Vec<&'a SnapEdge>>,
}

impl<'a> Graph<'a> {
    fn new(snapshot: &'a GraphSnapshot) -> Graph<'a> {
        let mut by_id = HashMap::new();
        let mut nodes = Vec::new();
        for node in &snapshot.nodes {
            if by_id.insert(node.id, node).is_none() {
                nodes.push(node);
            }
        }
        let mut seen = HashSet::new();
        let mut edges: Vec<&SnapEdge> = snapshot
            .edges
            .iter()
            .filter(|e| {
                e.source != e.target
                    && by_id.contains_key(&e.source)
                    && by_id.contains_key(&e.target)
                    && seen.insert(e.id)
            })
            .collect();
        edges.sort_by_key(|edge| edge.id);
        let mut incident: HashMap<Uuid, Vec<&SnapEdge>> = HashMap::new();
        for &edge in &edges {
            incident.entry(edge.source).or_default().push(edge);
            incident.entry(edge.target).or_default().push(edge);
        }
        Graph {
            nodes,
            by_id,
            edges,
            incident,
        }
    }

    fn node(&self, id: Uuid) -> &'a SnapNode {
        self.by_id[&id]
    }

    /// The endpoint of `edge` that is not `id`.
    fn other(&self, edge: &SnapEdge, id: Uuid) -> &'a SnapNode {
        self.node(if edge.source == id {
            edge.target
        } else {
            edge.source
        })
    }

    fn incident(&self, id: Uuid) -> &[&'a SnapEdge] {
        self.incident.get(&id).map_or(&[], Vec::as_slice)
    }

    /// Nodes of a type with their names to match, in snapshot order.
    fn named(&self, node_type: &str) -> Vec<(&'a SnapNode, Vec<String>)> {
        self.nodes
            .iter()
            .filter(|node| node.node_type == node_type)
            .map(|&node| (node, names(node)))
            .filter(|(_, names)| !names.is_empty())
            .collect()
    }

    /// `"A" RELATION "B"`.
    fn describe(&self, edge: &SnapEdge) -> String {
        format!(
            "\"{}\" {} \"{}\"",
            self.node(edge.source).name,
            edge.relation_type,
            self.node(edge.target).name
        )
    }
}

/// Which side of a pair a claim favours.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Side {
    First,
    Second,
}

/// One "which does better" claim.
struct Claim<'a> {
    winner: Side,
    edge: Uuid,
    quote: &'a str,
}

fn compare_conflicts(graph: &Graph) -> Vec<ProposedInsight> {
    let mut pairs: BTreeMap<(Uuid, Uuid), Vec<&SnapEdge>> = BTreeMap::new();
    for &edge in &graph.edges {
        if edge.relation_type == "COMPARE" {
            let key = (edge.source.min(edge.target), edge.source.max(edge.target));
            pairs.entry(key).or_default().push(edge);
        }
    }
    let mut context_nodes = graph.named("Dataset");
    context_nodes.extend(graph.named("Metric"));
    let mut found = Vec::new();
    for ((a, b), edges) in pairs {
        let (first, second) = ordered(graph.node(a), graph.node(b));
        let (first_names, second_names) = (names(first), names(second));
        let mut claims: BTreeMap<BTreeSet<Uuid>, BTreeMap<Uuid, Vec<Claim>>> = BTreeMap::new();
        for edge in edges {
            for quote in &edge.quotes {
                let text = quote.text.to_lowercase();
                let Some(winner) = winner(&text, &first_names, &second_names) else {
                    continue;
                };
                let context: BTreeSet<Uuid> = context_nodes
                    .iter()
                    .filter(|(node, names)| {
                        node.id != first.id && node.id != second.id && mentions(&text, names)
                    })
                    .map(|(node, _)| node.id)
                    .collect();
                claims
                    .entry(context)
                    .or_default()
                    .entry(quote.paper)
                    .or_default()
                    .push(Claim {
                        winner,
                        edge: edge.id,
                        quote: &quote.text,
                    });
            }
        }
        for (context, by_paper) in claims {
            let consistent: Vec<&Vec<Claim>> = by_paper
                .values()
                .filter(|claims| claims.iter().all(|c| c.winner == claims[0].winner))
                .collect();
            let side = |side: Side| -> Vec<&Claim> {
                consistent
                    .iter()
                    .filter(|claims| claims[0].winner == side)
                    .map(|claims| &claims[0])
                    .collect()
            };
            let (firsts, seconds) = (side(Side::First), side(Side::Second));
            if firsts.is_empty() || seconds.is_empty() {
                continue;
            }
            let edges: BTreeSet<Uuid> = consistent
                .iter()
                .flat_map(|claims| claims.iter().map(|c| c.edge))
                .collect();
            let mut nodes = vec![first.id, second.id];
            nodes.extend(context.iter().copied());
            let setting = setting(graph, &context);
            found.push(ProposedInsight {
                insight_type: "conflict".to_owned(),
                statement: format!(
                    "Papers disagree on whether \"{}\" or \"{}\" performs better{setting}.",
                    first.name, second.name
                ),
                rationale: format!(
                    "{} report that \"{}\" does better (e.g. {}); {} report that \"{}\" does \
                     (e.g. {}). The papers may differ in setting; check them.",
                    papers(firsts.len()),
                    first.name,
                    short(firsts[0].quote),
                    papers(seconds.len()),
                    second.name,
                    short(seconds[0].quote)
                ),
                confidence: COMPARE_CONFIDENCE,
                nodes,
                edges: edges.into_iter().collect(),
            });
            break;
        }
    }
    found.sort_by(|x, y| x.statement.cmp(&y.statement));
    found.truncate(MAX_PER_RULE);
    found
}

/// ` on "D" in "M"` for the datasets and metrics a claim names.
fn setting(graph: &Graph, context: &BTreeSet<Uuid>) -> String {
    let list = |node_type: &str| -> Vec<String> {
        let mut names: Vec<String> = context
            .iter()
            .map(|&id| graph.node(id))
            .filter(|node| node.node_type == node_type)
            .map(|node| format!("\"{}\"", node.name))
            .collect();
        names.sort();
        names
    };
    let mut text = String::new();
    let datasets = list("Dataset");
    if !datasets.is_empty() {
        text.push_str(&format!(" on {}", and_list(&datasets)));
    }
    let metrics = list("Metric");
    if !metrics.is_empty() {
        text.push_str(&format!(" in {}", and_list(&metrics)));
    }
    text
}

/// Which side `text` (lowercase) says does better, if it says so plainly: see
/// [`rule_insights`].
fn winner(text: &str, first: &[String], second: &[String]) -> Option<Side> {
    if negated(text) {
        return None;
    }
    let phrases = comparisons(text);
    let [(start, end, better)] = phrases[..] else {
        return None;
    };
    let (left, right) = (&text[..start], &text[end..]);
    let subject = match (mentions(left, first), mentions(left, second)) {
        (true, false) => Side::First,
        (false, true) => Side::Second,
        _ => return None,
    };
    let object_named = match subject {
        Side::First => mentions(right, second) && !mentions(right, first),
        Side::Second => mentions(right, first) && !mentions(right, second),
    };
    if !object_named {
        return None;
    }
    Some(match (subject, better) {
        (side, true) => side,
        (Side::First, false) => Side::Second,
        (Side::Second, false) => Side::First,
    })
}

/// The comparison phrases of `text` (lowercase), as whole words, longest first where they
/// overlap: (start, end, whether the subject does better).
fn comparisons(text: &str) -> Vec<(usize, usize, bool)> {
    let mut found = Vec::new();
    let mut at = 0;
    while at < text.len() {
        let starts_word = !text[..at].chars().next_back().is_some_and(is_word);
        let phrase = starts_word
            .then(|| {
                BETTER
                    .iter()
                    .map(|p| (*p, true))
                    .chain(WORSE.iter().map(|p| (*p, false)))
                    .filter(|(p, _)| {
                        text[at..].starts_with(p)
                            && !text[at + p.len()..].chars().next().is_some_and(is_word)
                    })
                    .max_by_key(|(p, _)| p.len())
            })
            .flatten();
        match phrase {
            Some((p, better)) => {
                found.push((at, at + p.len(), better));
                at += p.len();
            }
            None => at += text[at..].chars().next().map_or(1, char::len_utf8),
        }
    }
    found
}

/// A value of a metric read from a quote.
#[derive(Clone, Debug)]
struct Reading<'a> {
    value: f64,
    decimals: i32,
    /// As written, e.g. `91.2%`.
    text: String,
    edge: Uuid,
    quote: &'a str,
}

fn metric_conflicts(graph: &Graph) -> Vec<ProposedInsight> {
    let known = Known {
        metrics: graph.named("Metric"),
        methods: graph.named("Method"),
        datasets: graph.named("Dataset"),
    };
    let mut readings: BTreeMap<(Uuid, Uuid, Uuid), BTreeMap<Uuid, Vec<Reading>>> = BTreeMap::new();
    for &edge in &graph.edges {
        if edge.relation_type != "EVALUATE-FOR" {
            continue;
        }
        let (source, target) = (graph.node(edge.source), graph.node(edge.target));
        let (method, other) = if source.node_type == "Method" {
            (source, target)
        } else if target.node_type == "Method" {
            (target, source)
        } else {
            continue;
        };
        let joined = match other.node_type.as_str() {
            "Dataset" => Joined::Dataset(other),
            "Metric" => Joined::Metric(other),
            _ => continue,
        };
        for quote in &edge.quotes {
            if let Some(stated) = metric_value(&quote.text, method, joined, &known) {
                readings
                    .entry((method.id, stated.dataset, stated.metric))
                    .or_default()
                    .entry(quote.paper)
                    .or_default()
                    .push(Reading {
                        value: stated.number.value,
                        decimals: stated.number.decimals,
                        text: stated.number.text,
                        edge: edge.id,
                        quote: &quote.text,
                    });
            }
        }
    }
    for readings in readings.values_mut().flat_map(BTreeMap::values_mut) {
        readings.sort_by(|a, b| (a.edge, a.quote, &a.text).cmp(&(b.edge, b.quote, &b.text)));
    }
    let mut found = Vec::new();
    for ((method, dataset, metric), by_paper) in readings {
        let consistent: Vec<&Vec<Reading>> = by_paper
            .values()
            .filter(|readings| readings.iter().all(|r| same(r, &readings[0])))
            .collect();
        if consistent.len() < 2 {
            continue;
        }
        let mut values: Vec<&Reading> = consistent.iter().map(|readings| &readings[0]).collect();
        values.sort_by(|a, b| a.value.total_cmp(&b.value).then(a.text.cmp(&b.text)));
        let mut distinct: Vec<&Reading> = Vec::new();
        for reading in values {
            if !distinct.iter().any(|kept| same(kept, reading)) {
                distinct.push(reading);
            }
        }
        if distinct.len() < 2 {
            continue;
        }
        let (method, dataset, metric) =
            (graph.node(method), graph.node(dataset), graph.node(metric));
        let edges: BTreeSet<Uuid> = consistent
            .iter()
            .flat_map(|readings| readings.iter().map(|r| r.edge))
            .collect();
        let shown: Vec<String> = distinct.iter().map(|r| r.text.clone()).collect();
        let quotes: Vec<String> = distinct.iter().map(|r| short(r.quote)).collect();
        found.push(ProposedInsight {
            insight_type: "conflict".to_owned(),
            statement: format!(
                "Papers report different \"{}\" values for \"{}\" on \"{}\": {}.",
                metric.name,
                method.name,
                dataset.name,
                and_list(&shown)
            ),
            rationale: format!(
                "{} give \"{}\" for \"{}\" on \"{}\" in their evidence: {}. The values may come \
                 from different settings, splits or versions of the dataset; check the papers.",
                papers(consistent.len()),
                metric.name,
                method.name,
                dataset.name,
                quotes.join("; ")
            ),
            confidence: METRIC_CONFIDENCE,
            nodes: vec![method.id, dataset.id, metric.id],
            edges: edges.into_iter().collect(),
        });
    }
    found.sort_by(|x, y| x.statement.cmp(&y.statement));
    found.truncate(MAX_PER_RULE);
    found
}

/// A number in a quote.
#[derive(Clone, Debug, PartialEq)]
struct Number {
    start: usize,
    end: usize,
    value: f64,
    decimals: i32,
    /// As written, with `%` when it has one.
    text: String,
}

/// What an EVALUATE-FOR edge joins a Method to.
#[derive(Clone, Copy)]
enum Joined<'a> {
    /// A Dataset: the quote names the metric.
    Dataset(&'a SnapNode),
    /// A Metric: the quote names the dataset.
    Metric(&'a SnapNode),
}

/// The snapshot's named metrics, methods and datasets.
struct Known<'a> {
    metrics: Vec<(&'a SnapNode, Vec<String>)>,
    methods: Vec<(&'a SnapNode, Vec<String>)>,
    datasets: Vec<(&'a SnapNode, Vec<String>)>,
}

/// A value of a metric on a dataset, as a quote states it.
struct Stated {
    dataset: Uuid,
    metric: Uuid,
    number: Number,
}

/// The value a quote of an EVALUATE-FOR edge joining `method` to `joined` gives, with its
/// dataset and metric, if it gives exactly one plainly: see [`rule_insights`].
fn metric_value(quote: &str, method: &SnapNode, joined: Joined, known: &Known) -> Option<Stated> {
    let text = quote.to_lowercase();
    if negated(&text) {
        return None;
    }
    let at = |node: &SnapNode| -> Vec<(usize, usize)> {
        names(node)
            .iter()
            .flat_map(|name| occurrences(&text, name))
            .collect()
    };
    let mut hidden = at(method);
    let mut metric_at: Vec<(usize, usize)> = Vec::new();
    let mut named: BTreeSet<Uuid> = BTreeSet::new();
    for (metric, names) in &known.metrics {
        for name in names {
            let at = occurrences(&text, name);
            if !at.is_empty() {
                named.insert(metric.id);
                metric_at.extend(at);
            }
        }
    }
    let [metric] = named.iter().copied().collect::<Vec<_>>()[..] else {
        return None;
    };
    hidden.extend(&metric_at);
    let dataset = match joined {
        Joined::Dataset(dataset) => dataset,
        Joined::Metric(edge_metric) => {
            if edge_metric.id != metric {
                return None;
            }
            let masked = mask(&text, &hidden);
            let named: Vec<&SnapNode> = known
                .datasets
                .iter()
                .filter(|(_, names)| mentions(&masked, names))
                .map(|&(node, _)| node)
                .collect();
            let [dataset] = named[..] else {
                return None;
            };
            dataset
        }
    };
    hidden.extend(at(dataset));
    let masked = mask(&text, &hidden);
    let other_method = known
        .methods
        .iter()
        .any(|(node, names)| node.id != method.id && mentions(&masked, names));
    if other_method {
        return None;
    }
    let [number] = numbers(&masked).try_into().ok()?;
    let next_to_metric = metric_at.iter().any(|&(start, end)| {
        beside(&masked, end, number.start) || beside(&masked, number.end, start)
    });
    next_to_metric.then_some(Stated {
        dataset: dataset.id,
        metric,
        number,
    })
}

/// Whether `text[from..to]` is at most three plain words (letters only, `:` and `=` allowed).
fn beside(text: &str, from: usize, to: usize) -> bool {
    if from > to {
        return false;
    }
    let gap = &text[from..to];
    gap.chars()
        .all(|c| c.is_alphabetic() || c.is_whitespace() || c == ':' || c == '=')
        && gap.split_whitespace().count() <= 3
}

/// The numbers of `text` that are not part of a name: digits right after a letter ("v2"), or
/// after a hyphen right after a letter ("GPT-3"), are a name's.
fn numbers(text: &str) -> Vec<Number> {
    let bytes = text.as_bytes();
    let mut found = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if !bytes[i].is_ascii_digit() {
            i += 1;
            continue;
        }
        let start = i;
        let before = text[..start].chars().next_back();
        let in_name = match before {
            Some('-') => text[..start - 1]
                .chars()
                .next_back()
                .is_some_and(char::is_alphanumeric),
            Some(c) => c.is_alphanumeric() || c == '_',
            None => false,
        };
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        let mut decimals = 0;
        if i + 1 < bytes.len() && bytes[i] == b'.' && bytes[i + 1].is_ascii_digit() {
            i += 1;
            while i < bytes.len() && bytes[i].is_ascii_digit() {
                i += 1;
                decimals += 1;
            }
        }
        let digits = &text[start..i];
        let mut end = i;
        let mut percent = false;
        if text[i..].starts_with('%') {
            end = i + 1;
            percent = true;
        } else if text[i..].starts_with(" %") {
            end = i + 2;
            percent = true;
        }
        i = end;
        if in_name {
            continue;
        }
        if let Ok(value) = digits.parse::<f64>() {
            found.push(Number {
                start,
                end,
                value,
                decimals,
                text: format!("{digits}{}", if percent { "%" } else { "" }),
            });
        }
    }
    found
}

/// Whether two readings could be the same value: equal at the coarser precision, directly or
/// with a fraction read as a percentage.
fn same(a: &Reading, b: &Reading) -> bool {
    let close = |(a_value, a_decimals): (f64, i32), (b_value, b_decimals): (f64, i32)| {
        let tolerance = 0.5 * 10f64.powi(-a_decimals.min(b_decimals)) + 1e-9;
        (a_value - b_value).abs() <= tolerance
    };
    let as_percent = |r: &Reading| (r.value * 100.0, (r.decimals - 2).max(0));
    let (a_read, b_read) = ((a.value, a.decimals), (b.value, b.decimals));
    close(a_read, b_read)
        || (a.value <= 1.0 && close(as_percent(a), b_read))
        || (b.value <= 1.0 && close(a_read, as_percent(b)))
}

/// What a kind of gap looks for and how it reads.
struct GapRule {
    node_type: &'static str,
    kind: &'static str,
    relations: &'static [&'static str],
    verb: &'static str,
}

const TASK_GAP: GapRule = GapRule {
    node_type: "Task",
    kind: "task",
    relations: &["USED-FOR", "EVALUATE-FOR"],
    verb: "used for or evaluated on",
};

const DATASET_GAP: GapRule = GapRule {
    node_type: "Dataset",
    kind: "dataset",
    relations: &["EVALUATE-FOR"],
    verb: "evaluated on",
};

fn gaps(graph: &Graph, rule: &GapRule) -> Vec<ProposedInsight> {
    let mut found: Vec<&SnapNode> = graph
        .nodes
        .iter()
        .copied()
        .filter(|node| node.node_type == rule.node_type)
        .filter(|node| {
            let incident = graph.incident(node.id);
            !incident.is_empty()
                && !incident.iter().any(|edge| {
                    rule.relations.contains(&edge.relation_type.as_str())
                        && graph.other(edge, node.id).node_type == "Method"
                })
        })
        .collect();
    found.sort_by_key(|node| name_key(node));
    found.truncate(MAX_PER_RULE);
    found
        .into_iter()
        .map(|node| {
            let mut incident: Vec<&SnapEdge> = graph.incident(node.id).to_vec();
            incident.sort_by(|a, b| b.weight.total_cmp(&a.weight).then(a.id.cmp(&b.id)));
            let mut examples: Vec<String> =
                incident.iter().take(3).map(|e| graph.describe(e)).collect();
            if incident.len() > 3 {
                examples.push("…".to_owned());
            }
            ProposedInsight {
                insight_type: "gap".to_owned(),
                statement: format!(
                    "No method in the graph is {} the {} \"{}\".",
                    rule.verb, rule.kind, node.name
                ),
                rationale: format!(
                    "\"{}\" takes part in {} ({}), but none joins it to a method through {}.",
                    node.name,
                    count(incident.len(), "relation", "relations"),
                    examples.join(", "),
                    rule.relations.join(" or ")
                ),
                confidence: GAP_CONFIDENCE,
                nodes: vec![node.id],
                edges: Vec::new(),
            }
        })
        .collect()
}

/// A chain A r B r C implying A r C.
struct Chain<'a> {
    first: &'a SnapEdge,
    second: &'a SnapEdge,
    others: usize,
}

fn transitive_chains(graph: &Graph) -> Vec<ProposedInsight> {
    let mut chains: Vec<Chain> = Vec::new();
    for relation in ["PART-OF", "HYPONYM-OF"] {
        let of_type: Vec<&SnapEdge> = graph
            .edges
            .iter()
            .copied()
            .filter(|e| e.relation_type == relation)
            .collect();
        let direct: HashSet<(Uuid, Uuid)> = of_type.iter().map(|e| (e.source, e.target)).collect();
        let mut outgoing: HashMap<Uuid, Vec<&SnapEdge>> = HashMap::new();
        for &edge in &of_type {
            outgoing.entry(edge.source).or_default().push(edge);
        }
        let mut implied: BTreeMap<(Uuid, Uuid), Vec<(&SnapEdge, &SnapEdge)>> = BTreeMap::new();
        for &first in &of_type {
            for &second in outgoing.get(&first.target).map_or(&[][..], Vec::as_slice) {
                let (a, c) = (first.source, second.target);
                if a == c || direct.contains(&(a, c)) || direct.contains(&(c, a)) {
                    continue;
                }
                implied.entry((a, c)).or_default().push((first, second));
            }
        }
        for (_, mut list) in implied {
            list.sort_by_key(|(first, second)| (first.target, first.id, second.id));
            let (first, second) = list[0];
            chains.push(Chain {
                first,
                second,
                others: list.len() - 1,
            });
        }
    }
    let strength = |chain: &Chain| chain.first.weight.min(chain.second.weight);
    chains.sort_by(|x, y| {
        strength(y)
            .total_cmp(&strength(x))
            .then_with(|| {
                name_key(graph.node(x.first.source)).cmp(&name_key(graph.node(y.first.source)))
            })
            .then_with(|| {
                name_key(graph.node(x.second.target)).cmp(&name_key(graph.node(y.second.target)))
            })
            .then(x.first.relation_type.cmp(&y.first.relation_type))
    });
    chains.truncate(MAX_PER_RULE);
    chains
        .into_iter()
        .map(|chain| {
            let a = graph.node(chain.first.source);
            let b = graph.node(chain.first.target);
            let c = graph.node(chain.second.target);
            let what = if chain.first.relation_type == "PART-OF" {
                "part of"
            } else {
                "a kind of"
            };
            let mut rationale = format!(
                "\"{}\" is {what} \"{}\" and \"{}\" is {what} \"{}\", but no edge states that \"{}\" is \
                 {what} \"{}\".",
                a.name, b.name, b.name, c.name, a.name, c.name
            );
            if chain.others > 0 {
                rationale.push_str(&format!(
                    " {} imply the same.",
                    count(chain.others, "other chain", "other chains")
                ));
            }
            ProposedInsight {
                insight_type: "transitive".to_owned(),
                statement: format!("\"{}\" is likely {what} \"{}\".", a.name, c.name),
                rationale,
                confidence: TRANSITIVE_CONFIDENCE,
                nodes: vec![a.id, b.id, c.id],
                edges: vec![chain.first.id, chain.second.id],
            }
        })
        .collect()
}

/// A node's names to look for in text: its name and aliases, lowercase, trimmed, at least two
/// characters, longest first.
fn names(node: &SnapNode) -> Vec<String> {
    let mut names: Vec<String> = std::iter::once(&node.name)
        .chain(&node.aliases)
        .map(|name| name.trim().to_lowercase())
        .filter(|name| name.chars().count() >= 2)
        .collect();
    names.sort_by(|a, b| b.len().cmp(&a.len()).then(a.cmp(b)));
    names.dedup();
    names
}

/// Letters, digits, hyphens and underscores make up a word.
fn is_word(c: char) -> bool {
    c.is_alphanumeric() || c == '-' || c == '_'
}

/// Byte ranges of the whole-word occurrences of `name` in `text` (both lowercase).
fn occurrences(text: &str, name: &str) -> Vec<(usize, usize)> {
    let mut found = Vec::new();
    let mut from = 0;
    while let Some(at) = text[from..].find(name) {
        let (start, end) = (from + at, from + at + name.len());
        let before = text[..start].chars().next_back().is_some_and(is_word);
        let after = text[end..].chars().next().is_some_and(is_word);
        if !before && !after {
            found.push((start, end));
        }
        from = start + text[start..].chars().next().map_or(1, char::len_utf8);
    }
    found
}

fn mentions(text: &str, names: &[String]) -> bool {
    names.iter().any(|name| !occurrences(text, name).is_empty())
}

/// `text` with the byte ranges blanked out (byte offsets kept).
fn mask(text: &str, ranges: &[(usize, usize)]) -> String {
    text.char_indices()
        .map(|(at, c)| {
            if ranges.iter().any(|&(start, end)| at >= start && at < end) {
                " ".repeat(c.len_utf8())
            } else {
                c.to_string()
            }
        })
        .collect()
}

fn negated(text: &str) -> bool {
    text.contains("n't")
        || text.contains("n’t")
        || text
            .split(|c: char| !c.is_alphanumeric())
            .any(|word| NEGATIONS.contains(&word))
}

/// Two nodes by name (case ignored), then id.
fn ordered<'a>(a: &'a SnapNode, b: &'a SnapNode) -> (&'a SnapNode, &'a SnapNode) {
    if name_key(a) <= name_key(b) {
        (a, b)
    } else {
        (b, a)
    }
}

fn name_key(node: &SnapNode) -> (String, Uuid) {
    (node.name.to_lowercase(), node.id)
}

/// A quote for a rationale: one line, cut, in double quotes.
fn short(quote: &str) -> String {
    let text = quote.split_whitespace().collect::<Vec<_>>().join(" ");
    match text.char_indices().nth(MAX_QUOTED_CHARS) {
        Some((cut, _)) => format!("\"{}…\"", &text[..cut]),
        None => format!("\"{text}\""),
    }
}

/// `a`, `a and b`, `a, b and c`.
fn and_list(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [rest @ .., last] => format!("{} and {last}", rest.join(", ")),
    }
}

fn count(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn papers(n: usize) -> String {
    count(n, "paper", "papers")
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::Builder;
    use super::*;

    /// A graph with one task gap, one PART-OF chain and one metric conflict, and nothing else
    /// a rule would report.
    struct Sample {
        builder: Builder,
        bilstm: Uuid,
        conll: Uuid,
        f1: Uuid,
        ner: Uuid,
        re: Uuid,
        layer: Uuid,
        encoder: Uuid,
        transformer: Uuid,
        evaluate: Uuid,
        layer_of_encoder: Uuid,
        encoder_of_transformer: Uuid,
    }

    fn sample() -> Sample {
        let mut b = Builder::default();
        let bilstm = b.node("BiLSTM-CRF", "Method");
        let conll = b.node("CoNLL-2003", "Dataset");
        let f1 = b.node("F1", "Metric");
        let ner = b.node("named entity recognition", "Task");
        let re = b.node("relation extraction", "Task");
        let layer = b.node("encoder layer", "Method");
        let encoder = b.node("Transformer encoder", "Method");
        let transformer = b.node("Transformer", "Method");
        let evaluate = b.edge(
            conll,
            "EVALUATE-FOR",
            bilstm,
            &[
                ("p1", "BiLSTM-CRF achieves an F1 of 91.2 on CoNLL-2003."),
                (
                    "p2",
                    "On CoNLL-2003, the BiLSTM-CRF tagger reaches 89.5 F1.",
                ),
            ],
        );
        b.edge(f1, "EVALUATE-FOR", bilstm, &[("p1", "we report F1")]);
        b.edge(bilstm, "USED-FOR", ner, &[("p1", "BiLSTM-CRF for NER")]);
        b.edge(
            re,
            "CONJUNCTION",
            ner,
            &[("p2", "NER and relation extraction")],
        );
        let layer_of_encoder = b.edge(layer, "PART-OF", encoder, &[("p3", "each layer")]);
        let encoder_of_transformer =
            b.edge(encoder, "PART-OF", transformer, &[("p3", "the encoder")]);
        b.edge(
            transformer,
            "USED-FOR",
            ner,
            &[("p3", "Transformers for NER")],
        );
        Sample {
            builder: b,
            bilstm,
            conll,
            f1,
            ner,
            re,
            layer,
            encoder,
            transformer,
            evaluate,
            layer_of_encoder,
            encoder_of_transformer,
        }
    }

    #[test]
    fn finds_exactly_the_expected_insights() {
        let s = sample();
        let insights = rule_insights(&s.builder.snapshot);
        assert_eq!(
            insights,
            vec![
                ProposedInsight {
                    insight_type: "conflict".into(),
                    statement: "Papers report different \"F1\" values for \"BiLSTM-CRF\" on \
                                \"CoNLL-2003\": 89.5 and 91.2."
                        .into(),
                    rationale: "2 papers give \"F1\" for \"BiLSTM-CRF\" on \"CoNLL-2003\" in \
                                their evidence: \"On CoNLL-2003, the BiLSTM-CRF tagger reaches \
                                89.5 F1.\"; \"BiLSTM-CRF achieves an F1 of 91.2 on CoNLL-2003.\". \
                                The values may come from different settings, splits or versions \
                                of the dataset; check the papers."
                        .into(),
                    confidence: METRIC_CONFIDENCE,
                    nodes: vec![s.bilstm, s.conll, s.f1],
                    edges: vec![s.evaluate],
                },
                ProposedInsight {
                    insight_type: "gap".into(),
                    statement: "No method in the graph is used for or evaluated on the task \
                                \"relation extraction\"."
                        .into(),
                    rationale: "\"relation extraction\" takes part in 1 relation (\"relation \
                                extraction\" CONJUNCTION \"named entity recognition\"), but none \
                                joins it to a method through USED-FOR or EVALUATE-FOR."
                        .into(),
                    confidence: GAP_CONFIDENCE,
                    nodes: vec![s.re],
                    edges: vec![],
                },
                ProposedInsight {
                    insight_type: "transitive".into(),
                    statement: "\"encoder layer\" is likely part of \"Transformer\".".into(),
                    rationale: "\"encoder layer\" is part of \"Transformer encoder\" and \
                                \"Transformer encoder\" is part of \"Transformer\", but no edge \
                                states that \"encoder layer\" is part of \"Transformer\"."
                        .into(),
                    confidence: TRANSITIVE_CONFIDENCE,
                    nodes: vec![s.layer, s.encoder, s.transformer],
                    edges: vec![s.layer_of_encoder, s.encoder_of_transformer],
                },
            ]
        );
        let _ = s.ner;
    }

    #[test]
    fn a_clean_graph_gives_nothing() {
        let mut s = sample();
        let b = &mut s.builder;
        // Agreeing values (at the coarser precision, and as a fraction), the chain closed, the
        // task linked to a method.
        b.snapshot.edges[0].quotes[1].text =
            "On CoNLL-2003, the BiLSTM-CRF tagger reaches 91.24 F1.".into();
        let p4 = b.paper("p4");
        b.snapshot.edges[0].quotes.push(super::super::SnapQuote {
            paper: p4,
            text: "BiLSTM-CRF: F1 = 0.912 on CoNLL-2003".into(),
        });
        b.edge(
            s.layer,
            "PART-OF",
            s.transformer,
            &[("p3", "layers of the Transformer")],
        );
        b.edge(
            s.bilstm,
            "USED-FOR",
            s.re,
            &[("p2", "BiLSTM-CRF for relation extraction")],
        );
        assert_eq!(rule_insights(&b.snapshot), vec![]);
    }

    #[test]
    fn the_output_does_not_depend_on_snapshot_order() {
        let mut s = sample();
        // A conflict with two claims of the same paper in two edges, whose first quote could
        // depend on the order of the edges.
        let b = &mut s.builder;
        let (x, y) = (b.node("LSTM", "Method"), b.node("GRU", "Method"));
        b.edge(x, "COMPARE", y, &[("p1", "LSTM outperforms GRU")]);
        b.edge(y, "COMPARE", x, &[("p1", "GRU is worse than the LSTM")]);
        b.edge(y, "COMPARE", x, &[("p2", "GRU beats LSTM")]);
        b.edge(x, "USED-FOR", s.re, &[]);
        let forward = rule_insights(&b.snapshot);
        assert_eq!(forward.len(), 3, "{forward:?}");
        let mut reversed = b.snapshot.clone();
        reversed.nodes.reverse();
        reversed.edges.reverse();
        assert_eq!(rule_insights(&reversed), forward);
    }

    /// Two methods compared by papers p1 and p2, one quote each.
    fn compared(first: (&str, &str), second: (&str, &str)) -> Vec<ProposedInsight> {
        let mut b = Builder::default();
        let x = b.node("LSTM", "Method");
        let y = b.node("GRU", "Method");
        b.node("SQuAD", "Dataset");
        b.node("WMT", "Dataset");
        b.node("accuracy", "Metric");
        b.edge(x, "COMPARE", y, &[first]);
        b.edge(y, "COMPARE", x, &[second]);
        rule_insights(&b.snapshot)
            .into_iter()
            .filter(|i| i.insight_type == "conflict")
            .collect()
    }

    #[test]
    fn opposite_claims_from_two_papers_conflict() {
        let found = compared(
            ("p1", "The LSTM outperforms the GRU on SQuAD."),
            ("p2", "On SQuAD, our GRU is superior to an LSTM."),
        );
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(
            found[0].statement,
            "Papers disagree on whether \"GRU\" or \"LSTM\" performs better on \"SQuAD\"."
        );
        assert_eq!(found[0].edges.len(), 2);
        assert_eq!(found[0].nodes.len(), 3);
        assert_eq!(found[0].confidence, COMPARE_CONFIDENCE);
        // A reversed phrase is read the right way round.
        let reversed = compared(
            ("p1", "LSTM is outperformed by GRU"),
            ("p2", "the GRU lags behind the LSTM"),
        );
        assert_eq!(reversed.len(), 1, "{reversed:?}");
    }

    #[test]
    fn claims_that_do_not_plainly_disagree_are_not_conflicts() {
        let cases = [
            // Both papers agree.
            (
                ("p1", "LSTM outperforms GRU"),
                ("p2", "GRU is worse than LSTM"),
            ),
            // One paper.
            (
                ("p1", "LSTM outperforms GRU"),
                ("p1", "GRU outperforms LSTM"),
            ),
            // Different datasets, or a metric named on one side only.
            (
                ("p1", "LSTM outperforms GRU on SQuAD"),
                ("p2", "GRU outperforms LSTM on WMT"),
            ),
            (
                ("p1", "LSTM outperforms GRU in accuracy"),
                ("p2", "GRU outperforms LSTM"),
            ),
            // Negated, hedged or ambiguous.
            (
                ("p1", "LSTM outperforms GRU"),
                ("p2", "GRU does not outperform LSTM"),
            ),
            (
                ("p1", "LSTM outperforms GRU"),
                ("p2", "GRU isn't better than LSTM"),
            ),
            (
                ("p1", "LSTM outperforms GRU"),
                ("p2", "GRU and LSTM outperform CNNs"),
            ),
            (
                ("p1", "LSTM outperforms GRU"),
                ("p2", "GRU is better than LSTM but worse than LSTM"),
            ),
            (
                ("p1", "LSTM outperforms GRU"),
                ("p2", "we compare GRU with LSTM"),
            ),
            // A name inside a longer word is not the name.
            (
                ("p1", "LSTM outperforms GRU"),
                ("p2", "GRU-based models outperform LSTM-CRF"),
            ),
        ];
        for (first, second) in cases {
            assert_eq!(compared(first, second), vec![], "{first:?} / {second:?}");
        }
    }

    /// The sample's metric edge with these two quotes (papers p1 and p2 unless given).
    fn metric_quotes(quotes: &[(&str, &str)]) -> Vec<ProposedInsight> {
        let mut s = sample();
        let b = &mut s.builder;
        b.node("CRF", "Method");
        b.snapshot.edges[0].quotes = quotes
            .iter()
            .map(|(paper, text)| super::super::SnapQuote {
                paper: b.paper(paper),
                text: (*text).to_owned(),
            })
            .collect();
        rule_insights(&b.snapshot)
            .into_iter()
            .filter(|i| i.insight_type == "conflict")
            .collect()
    }

    #[test]
    fn metric_values_are_read_conservatively() {
        let base = ("p1", "BiLSTM-CRF achieves an F1 of 91.2 on CoNLL-2003.");
        assert_eq!(
            metric_quotes(&[base, ("p2", "BiLSTM-CRF: 93.0% F1 on CoNLL-2003")]).len(),
            1
        );
        assert_eq!(
            metric_quotes(&[base, ("p2", "an F1 score of 0.88")])[0].statement,
            "Papers report different \"F1\" values for \"BiLSTM-CRF\" on \"CoNLL-2003\": 0.88 \
             and 91.2."
        );
        let quiet = [
            // Equal at the coarser precision, or as a fraction of a percentage.
            ("p2", "BiLSTM-CRF reaches 91.20 F1"),
            ("p2", "BiLSTM-CRF reaches 91 F1"),
            ("p3", "F1: 91.2% for BiLSTM-CRF"),
            // Two numbers, or a number away from the metric.
            ("p2", "BiLSTM-CRF reaches 89.5 F1, up from 85.0"),
            ("p2", "over 5 runs, BiLSTM-CRF gets a high F1"),
            // Another method named, or a negation.
            ("p2", "CRF reaches 85.0 F1 on CoNLL-2003"),
            ("p2", "BiLSTM-CRF does not reach 95.0 F1"),
            // No metric node named.
            ("p2", "BiLSTM-CRF reaches 85.0 accuracy"),
            // The same paper.
            ("p1", "BiLSTM-CRF reaches 89.5 F1 on the test set"),
        ];
        for quote in quiet {
            assert_eq!(metric_quotes(&[base, quote]), vec![], "{quote:?}");
        }
        // A paper giving two values is ignored; two others agreeing leave nothing.
        assert_eq!(
            metric_quotes(&[
                base,
                ("p2", "BiLSTM-CRF reaches 89.5 F1 on dev"),
                ("p2", "BiLSTM-CRF reaches 88.1 F1 on test"),
                ("p3", "an F1 of 91.2 for BiLSTM-CRF"),
            ]),
            vec![]
        );
    }

    /// The demo papers' evaluation of the Sparse Graph Transformer on QM9, as the offline
    /// extractor and entity resolution leave it: the values are on the metric's edges.
    struct Molecules {
        builder: Builder,
        sgt: Uuid,
        qm9: Uuid,
        mae: Uuid,
        mae_of_sgt: Uuid,
        qm9_of_sgt: Uuid,
    }

    const SGT_P1: &str = "On the QM9 dataset, SGT achieves a MAE of 0.041.";
    const SGT_P3: &str = "On the QM9 dataset, the Sparse Graph Transformer (SGT) achieves a MAE \
                          of 0.055 in our reproduction.";

    /// Gives `node` another name.
    fn alias(b: &mut Builder, node: Uuid, alias: &str) {
        let node = b.snapshot.nodes.iter_mut().find(|n| n.id == node);
        node.expect("a node of the snapshot")
            .aliases
            .push(alias.to_owned());
    }

    /// The example, with `sgt_quotes` the evidence of "mean absolute error" EVALUATE-FOR
    /// "Sparse Graph Transformer".
    fn molecules(sgt_quotes: &[(&str, &str)]) -> Molecules {
        let mut b = Builder::default();
        let sgt = b.node("Sparse Graph Transformer", "Method");
        alias(&mut b, sgt, "SGT");
        let lma = b.node("Local Message Attention", "Method");
        alias(&mut b, lma, "LMA");
        let qm9 = b.node("QM9", "Dataset");
        let zinc = b.node("ZINC", "Dataset");
        let mae = b.node("mean absolute error", "Metric");
        alias(&mut b, mae, "MAE");
        let rmse = b.node("root mean square error", "Metric");
        alias(&mut b, rmse, "RMSE");
        let mae_of_sgt = b.edge(mae, "EVALUATE-FOR", sgt, sgt_quotes);
        let evaluated = "We evaluate SGT on the QM9 dataset and the ZINC dataset.";
        let qm9_of_sgt = b.edge(qm9, "EVALUATE-FOR", sgt, &[("p1", evaluated)]);
        b.edge(zinc, "EVALUATE-FOR", sgt, &[("p1", evaluated)]);
        b.edge(
            mae,
            "EVALUATE-FOR",
            lma,
            &[("p3", "LMA achieves a MAE of 0.048 on the QM9 dataset.")],
        );
        Molecules {
            builder: b,
            sgt,
            qm9,
            mae,
            mae_of_sgt,
            qm9_of_sgt,
        }
    }

    #[test]
    fn values_on_metric_edges_are_read_with_the_dataset_the_quote_names() {
        let m = molecules(&[
            ("p1", SGT_P1),
            // Another dataset, one paper only.
            ("p1", "On the ZINC dataset, SGT achieves a MAE of 0.072."),
            ("p3", SGT_P3),
        ]);
        assert_eq!(
            rule_insights(&m.builder.snapshot),
            vec![ProposedInsight {
                insight_type: "conflict".into(),
                statement: "Papers report different \"mean absolute error\" values for \"Sparse \
                            Graph Transformer\" on \"QM9\": 0.041 and 0.055."
                    .into(),
                rationale: "2 papers give \"mean absolute error\" for \"Sparse Graph \
                            Transformer\" on \"QM9\" in their evidence: \"On the QM9 dataset, \
                            SGT achieves a MAE of 0.041.\"; \"On the QM9 dataset, the Sparse \
                            Graph Transformer (SGT) achieves a MAE of 0.055 in our \
                            reproduction.\". The values may come from different settings, \
                            splits or versions of the dataset; check the papers."
                    .into(),
                confidence: METRIC_CONFIDENCE,
                nodes: vec![m.sgt, m.qm9, m.mae],
                edges: vec![m.mae_of_sgt],
            }]
        );
    }

    fn molecule_conflicts(sgt_quotes: &[(&str, &str)]) -> Vec<ProposedInsight> {
        rule_insights(&molecules(sgt_quotes).builder.snapshot)
    }

    #[test]
    fn values_on_metric_edges_are_read_conservatively() {
        let base = ("p1", SGT_P1);
        assert_eq!(molecule_conflicts(&[base, ("p3", SGT_P3)]).len(), 1);
        let quiet = [
            // Equal at the coarser precision.
            ("p3", "On the QM9 dataset, SGT achieves a MAE of 0.0410."),
            // The same paper.
            ("p1", SGT_P3),
            // Two datasets, or none.
            (
                "p3",
                "On the QM9 and ZINC datasets, SGT achieves a MAE of 0.055.",
            ),
            (
                "p3",
                "The Sparse Graph Transformer achieves a MAE of 0.055 in our reproduction.",
            ),
            // Negated.
            (
                "p3",
                "On the QM9 dataset, SGT does not achieve a MAE of 0.055.",
            ),
            // The value away from the metric.
            (
                "p3",
                "On the QM9 dataset, SGT achieves 0.055 in our reproduction, in MAE.",
            ),
            (
                "p3",
                "On the QM9 dataset, SGT has a MAE that we measured, in our setting, as 0.055.",
            ),
            // Another metric, another method, or a second number.
            ("p3", "On the QM9 dataset, SGT achieves an RMSE of 0.055."),
            (
                "p3",
                "On the QM9 dataset, SGT and LMA achieve a MAE of 0.055.",
            ),
            (
                "p3",
                "On the QM9 dataset, SGT achieves a MAE of 0.055 after 300 epochs.",
            ),
        ];
        for quote in quiet {
            assert_eq!(molecule_conflicts(&[base, quote]), vec![], "{quote:?}");
        }
        // One paper only.
        assert_eq!(molecule_conflicts(&[base]), vec![]);
        // Values of another metric than the edge's.
        assert_eq!(
            molecule_conflicts(&[
                ("p1", "On the QM9 dataset, SGT achieves an RMSE of 0.061."),
                ("p3", "On the QM9 dataset, SGT achieves an RMSE of 0.07."),
            ]),
            vec![]
        );
    }

    /// The evidence of an edge of the snapshot.
    fn quotes_of(b: &mut Builder, edge: Uuid) -> &mut Vec<super::super::SnapQuote> {
        let edge = b.snapshot.edges.iter_mut().find(|e| e.id == edge);
        &mut edge.expect("an edge of the snapshot").quotes
    }

    #[test]
    fn a_claim_on_both_kinds_of_edge_counts_once() {
        // Paper 1's sentence is evidence for both of its edges: one paper, so no conflict.
        let mut m = molecules(&[("p1", SGT_P1)]);
        let (p1, p3) = (m.builder.paper("p1"), m.builder.paper("p3"));
        let quote = |paper: Uuid, text: &str| super::super::SnapQuote {
            paper,
            text: text.to_owned(),
        };
        quotes_of(&mut m.builder, m.qm9_of_sgt).push(quote(p1, SGT_P1));
        assert_eq!(rule_insights(&m.builder.snapshot), vec![]);
        // Paper 3 disagreeing: one conflict between two papers, resting on both edges.
        quotes_of(&mut m.builder, m.mae_of_sgt).push(quote(p3, SGT_P3));
        let found = rule_insights(&m.builder.snapshot);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(
            found[0].statement,
            "Papers report different \"mean absolute error\" values for \"Sparse Graph \
             Transformer\" on \"QM9\": 0.041 and 0.055."
        );
        assert!(
            found[0].rationale.starts_with("2 papers give "),
            "{found:?}"
        );
        assert_eq!(found[0].nodes, vec![m.sgt, m.qm9, m.mae]);
        assert_eq!(found[0].edges, vec![m.mae_of_sgt, m.qm9_of_sgt]);
        // Paper 1 giving another value on its other edge is ignored.
        quotes_of(&mut m.builder, m.qm9_of_sgt)[1].text =
            "On the QM9 dataset, SGT achieves a MAE of 0.045.".into();
        assert_eq!(rule_insights(&m.builder.snapshot), vec![]);
    }

    #[test]
    fn metric_edge_values_do_not_depend_on_snapshot_order() {
        let m = molecules(&[
            ("p1", SGT_P1),
            ("p1", "On the QM9 dataset, SGT achieves a MAE of 4.1%."),
            ("p3", SGT_P3),
            ("p3", "SGT achieves a MAE of 0.055 on QM9."),
        ]);
        let forward = rule_insights(&m.builder.snapshot);
        assert_eq!(forward.len(), 1, "{forward:?}");
        let mut reversed = m.builder.snapshot.clone();
        reversed.nodes.reverse();
        reversed.edges.reverse();
        for edge in &mut reversed.edges {
            edge.quotes.reverse();
        }
        assert_eq!(rule_insights(&reversed), forward);
    }

    #[test]
    fn numbers_in_names_are_not_values() {
        let found: Vec<(String, f64)> =
            numbers("gpt-3 and v2 get 91.2% (5-fold) at 0.5 %, 3d 1,5 -2 x9")
                .into_iter()
                .map(|n| (n.text, n.value))
                .collect();
        assert_eq!(
            found,
            vec![
                ("91.2%".into(), 91.2),
                ("5".into(), 5.0),
                ("0.5%".into(), 0.5),
                ("3".into(), 3.0),
                ("1".into(), 1.0),
                ("5".into(), 5.0),
                ("2".into(), 2.0),
            ]
        );
    }

    #[test]
    fn transitive_chains_skip_existing_and_cyclic_relations() {
        let mut b = Builder::default();
        let [a, c, d, e, f] = ["a", "c", "d", "e", "f"].map(|name| b.node(name, "Method"));
        let (b1, b2) = (b.node("b1", "Method"), b.node("b2", "Method"));
        // Two chains imply a PART-OF c: one insight, through the intermediate with the
        // smaller id.
        b.edge(a, "PART-OF", b1, &[]);
        b.edge(b1, "PART-OF", c, &[]);
        b.edge(a, "PART-OF", b2, &[]);
        b.edge(b2, "PART-OF", c, &[]);
        // Implied but already stated (the reverse direction too), or a cycle.
        b.edge(d, "HYPONYM-OF", e, &[]);
        b.edge(e, "HYPONYM-OF", f, &[]);
        b.edge(f, "HYPONYM-OF", d, &[]);
        // Different relations do not chain.
        let g = b.node("g", "Method");
        b.edge(b1, "HYPONYM-OF", g, &[]);
        let found = rule_insights(&b.snapshot);
        let transitive: Vec<&ProposedInsight> = found
            .iter()
            .filter(|i| i.insight_type == "transitive")
            .collect();
        assert_eq!(transitive.len(), 1, "{found:?}");
        assert_eq!(transitive[0].nodes, vec![a, b1, c]);
        assert_eq!(transitive[0].statement, "\"a\" is likely part of \"c\".");
        assert!(transitive[0]
            .rationale
            .ends_with(" 1 other chain imply the same."));
    }

    #[test]
    fn hyponym_chains_are_found_and_each_rule_is_capped() {
        let mut b = Builder::default();
        let root = b.node("neural network", "Method");
        let mid = b.node("recurrent network", "Method");
        b.edge(mid, "HYPONYM-OF", root, &[]);
        for i in 0..(MAX_PER_RULE + 5) {
            let leaf = b.node(&format!("variant {i:02}"), "Method");
            b.edge(leaf, "HYPONYM-OF", mid, &[]);
            let task = b.node(&format!("task {i:02}"), "Task");
            b.edge(task, "CONJUNCTION", leaf, &[]);
        }
        let found = rule_insights(&b.snapshot);
        let count = |kind: &str| found.iter().filter(|i| i.insight_type == kind).count();
        assert_eq!(count("transitive"), MAX_PER_RULE);
        assert_eq!(count("gap"), MAX_PER_RULE);
        assert_eq!(
            found
                .iter()
                .find(|i| i.insight_type == "transitive")
                .map(|i| i.statement.as_str()),
            Some("\"variant 00\" is likely a kind of \"neural network\".")
        );
        assert_eq!(
            found
                .iter()
                .find(|i| i.insight_type == "gap")
                .map(|i| i.statement.as_str()),
            Some("No method in the graph is used for or evaluated on the task \"task 00\".")
        );
    }

    #[test]
    fn dataset_gaps_need_an_evaluation_and_isolated_nodes_are_skipped() {
        let mut b = Builder::default();
        let method = b.node("ResNet", "Method");
        let used = b.node("ImageNet", "Dataset");
        let evaluated = b.node("CIFAR-10", "Dataset");
        b.node("MNIST", "Dataset");
        b.node("image retrieval", "Task");
        b.edge(used, "USED-FOR", method, &[]);
        b.edge(method, "EVALUATE-FOR", evaluated, &[]);
        let found = rule_insights(&b.snapshot);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(
            found[0].statement,
            "No method in the graph is evaluated on the dataset \"ImageNet\"."
        );
        assert_eq!(found[0].nodes, vec![used]);
    }
}
