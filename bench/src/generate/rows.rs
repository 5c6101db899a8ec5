//! The rows of every generated table, tenant by tenant.
//!
//! Each tenant and table has a random stream of its own (ChaCha8 keyed by the seed and the
//! tenant, one stream per table), so a tenant's rows do not depend on which other tenants are
//! generated, nor in which order, nor on the other tables. What one table needs of another is a
//! pure function of the tenant: ids (from [`crate::ids`]), node names ([`Namer`]) and creation
//! times of papers (from their ids).

use std::collections::HashSet;

use md5::{Digest, Md5};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use uuid::Uuid;

use super::copy::{Closed, Rows};
use super::text::{acronym, push_capitalised, sentence, word, Namer, Zipf};
use super::time::{Window, DAY, HOUR};
use crate::ids;
use crate::vocabulary::{FAMILY_NAMES, GIVEN_NAMES, SEARCH_TERMS, TOPICS, VENUES};

/// The sizes of one tenant and the shared parameters of a run.
#[derive(Clone, Debug)]
pub struct Sizes {
    pub papers: u64,
    pub sections: u64,
    pub nodes: u64,
    pub edges: u64,
    pub mentions: u64,
    pub insights: u64,
    pub events: u64,
}

/// Everything a generator needs besides the tenant number.
pub struct Plan {
    pub seed: u64,
    pub sizes: Sizes,
    pub window: Window,
    /// The skewed choice of nodes (edges' ends, mentions), when there are nodes.
    pub zipf: Option<Zipf>,
}

/// The random streams of a tenant, one per table.
#[derive(Clone, Copy)]
enum Stream {
    Vocabulary = 1,
    Papers,
    Sections,
    Nodes,
    Edges,
    Events,
}

impl Plan {
    fn rng(&self, t: u64, stream: Stream) -> ChaCha8Rng {
        let mut key = [0u8; 32];
        key[..8].copy_from_slice(&self.seed.to_le_bytes());
        key[8..16].copy_from_slice(&t.to_le_bytes());
        key[16..24].copy_from_slice(b"rg-bench");
        let mut rng = ChaCha8Rng::from_seed(key);
        rng.set_stream(stream as u64);
        rng
    }

    /// The entity names of tenant `t`.
    pub fn namer(&self, t: u64) -> Namer {
        Namer::new(&mut self.rng(t, Stream::Vocabulary))
    }

    /// When paper `i` of tenant `t` was created: spread over the window in paper order.
    fn paper_created(&self, id: &Uuid, i: u64) -> i64 {
        self.window.spread(i, self.sizes.papers, jitter(id))
    }
}

/// A number in [0, 1) read from an id's bytes: a stable per-row jitter that needs no generator.
fn jitter(id: &Uuid) -> f64 {
    let b = id.as_bytes();
    u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f64 / 4_294_967_296.0
}

fn md5_hex(parts: &[&str]) -> String {
    let mut h = Md5::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0u8]);
    }
    h.finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<String>()
}

/// One of `items`, drawn with the given weights.
fn pick<T: Copy>(rng: &mut ChaCha8Rng, items: &[(T, u32)]) -> T {
    let total: u32 = items.iter().map(|(_, w)| w).sum();
    let mut roll = rng.random_range(0..total);
    for &(item, w) in items {
        if roll < w {
            return item;
        }
        roll -= w;
    }
    items[items.len() - 1].0
}

fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

fn id_text(id: &Uuid) -> String {
    id.hyphenated().to_string()
}

/// The ids of a tenant's nodes in text form, formatted once for all the rows that use them.
fn node_ids(t: u64, n: u64) -> Vec<String> {
    (0..n).map(|i| id_text(&ids::row("node", t, i))).collect()
}

/// The time of the run's tenants, users and settings: the window's start.
pub fn tenant(plan: &Plan, t: u64, tenants: &mut Rows) -> Result<(), Closed> {
    let at = plan.window.start;
    tenants
        .uuid(&ids::tenant(t))
        .text(&ids::slug(t))
        .text(&format!("Benchmark tenant {t}"))
        .timestamp(at)
        .timestamp(at);
    tenants.end()
}

/// The owner of tenant `t`.
pub fn tenant_user(plan: &Plan, t: u64, users: &mut Rows) -> Result<(), Closed> {
    users
        .uuid(&ids::tenant(t))
        .uuid(&ids::user(t))
        .text("owner")
        .timestamp(plan.window.start);
    users.end()
}

/// The settings of tenant `t`: defaults, and usage visible to members.
pub fn tenant_settings(plan: &Plan, t: u64, settings: &mut Rows) -> Result<(), Closed> {
    settings
        .uuid(&ids::tenant(t))
        .boolean(true)
        .timestamp(plan.window.start)
        .uuid(&ids::user(t));
    settings.end()
}

pub const TENANT_COLUMNS: &str = "id, slug, name, created_at, updated_at";
pub const TENANT_USER_COLUMNS: &str = "tenant_id, user_id, role, created_at";
pub const TENANT_SETTINGS_COLUMNS: &str =
    "tenant_id, usage_visible_to_members, updated_at, updated_by";

pub const PAPER_COLUMNS: &str = "tenant_id, id, title, authors, abstract, doi, arxiv_id, year, \
    venue, source_kind, content_hash, created_at, updated_at";

/// The papers of tenant `t`. Paper `i`'s title starts with a search term (each term leads the
/// titles of every 20th paper), so that every search term finds many papers.
pub fn papers(plan: &Plan, t: u64, rows: &mut Rows) -> Result<(), Closed> {
    let mut rng = plan.rng(t, Stream::Papers);
    let tenant = id_text(&ids::tenant(t));
    let term_offset = rng.random_range(0..SEARCH_TERMS.len());
    for i in 0..plan.sizes.papers {
        let id = ids::row("paper", t, i);
        let mut title = String::new();
        push_capitalised(
            &mut title,
            SEARCH_TERMS[(i as usize + term_offset) % SEARCH_TERMS.len()],
        );
        for _ in 0..rng.random_range(4..10) {
            title.push(' ');
            title.push_str(TOPICS[rng.random_range(0..TOPICS.len())]);
        }
        let authors: Vec<String> = (0..rng.random_range(1..=6))
            .map(|_| {
                format!(
                    "{} {}",
                    GIVEN_NAMES[rng.random_range(0..GIVEN_NAMES.len())],
                    FAMILY_NAMES[rng.random_range(0..FAMILY_NAMES.len())]
                )
            })
            .collect();
        let mut abstract_ = String::new();
        for _ in 0..rng.random_range(3..=5) {
            let n = rng.random_range(10..=18);
            sentence(&mut rng, &mut abstract_, n);
        }
        let year = 2025 - (rng.random::<f64>().powi(2) * 14.0) as i64;
        let doi = format!("10.{}/rg.{t}.{i}", rng.random_range(1000..10000));
        let arxiv = (rng.random_range(0..10) < 6)
            .then(|| format!("{:02}{:02}.{i:05}", year % 100, rng.random_range(1..=12)));
        let source_kind = if arxiv.is_some() {
            "arxiv"
        } else {
            pick(
                &mut rng,
                &[("pdf", 5), ("manual", 2), ("text", 2), ("markdown", 1)],
            )
        };
        let venue = VENUES[rng.random_range(0..VENUES.len())];
        let hash = md5_hex(&[&title, &abstract_, &doi]);
        let created = plan.paper_created(&id, i);
        rows.uuid_text(&tenant)
            .uuid(&id)
            .text(&title)
            .text_array(&authors)
            .text(&abstract_)
            .text(&doi)
            .opt_text(arxiv.as_deref())
            .int(year)
            .text(venue)
            .text(source_kind)
            .text(&hash)
            .timestamp(created)
            .timestamp(created);
        rows.end()?;
    }
    Ok(())
}

pub const SECTION_COLUMNS: &str =
    "tenant_id, id, paper_id, ordinal, kind, heading, content, content_hash, created_at";
pub const MENTION_COLUMNS: &str = "tenant_id, id, node_id, section_id, quote, start_offset, \
    end_offset, agent, model, prompt_version, created_at";

const MIDDLE_KINDS: &[&str] = &["methods", "results", "discussion", "background", "other"];

fn section_kind(ordinal: u64, sections: u64) -> &'static str {
    if ordinal == 0 {
        "introduction"
    } else if ordinal + 1 == sections {
        "conclusion"
    } else {
        MIDDLE_KINDS[((ordinal - 1) % MIDDLE_KINDS.len() as u64) as usize]
    }
}

/// How a sentence around a mention starts and ends.
const MENTION_FRAMES: &[(&str, &str)] = &[
    ("We apply", "to"),
    ("Results show that", "improves"),
    ("Compared with", "our approach uses"),
    ("Prior work on", "relies on"),
    ("We evaluate", "for"),
];

/// The sections of tenant `t`'s papers, and the entity mentions in them: mention `k` of paper
/// `p` is in section `k mod S` of the paper, quoting the name of a node drawn with the same skew
/// as edge ends; the section's text is written around its mentions, so every quote is found at
/// its offsets (counted in characters).
pub fn sections(
    plan: &Plan,
    t: u64,
    sections: &mut Rows,
    mentions: &mut Rows,
) -> Result<(), Closed> {
    let sizes = &plan.sizes;
    if sizes.sections == 0 {
        return Ok(());
    }
    let mut rng = plan.rng(t, Stream::Sections);
    let tenant = id_text(&ids::tenant(t));
    let namer = plan.namer(t);
    let mention_nodes = if plan.zipf.is_some() {
        sizes.mentions
    } else {
        0
    };
    let mut content = String::new();
    // (position among the sentences, node) of the current section's mentions.
    let mut placed: Vec<(usize, u64, u64)> = Vec::new();
    for p in 0..sizes.papers {
        let paper = ids::row("paper", t, p);
        let paper_created = plan.paper_created(&paper, p);
        for o in 0..sizes.sections {
            let s = p * sizes.sections + o;
            let id = ids::row("section", t, s);
            let created = paper_created + (o as i64 + 1) * 1000;
            // Plain sentences first, then mentions placed between them.
            let target = rng.random_range(80..=150usize);
            let mut lengths = Vec::new();
            let mut words = 0;
            while words < target {
                let n = rng.random_range(8..=16usize).min(target - words).max(3);
                lengths.push(n);
                words += n;
            }
            placed.clear();
            for k in (o..mention_nodes).step_by(sizes.sections as usize) {
                let zipf = plan.zipf.as_ref().expect("nodes exist");
                let node = zipf.sample(&mut rng);
                placed.push((rng.random_range(0..=lengths.len()), k, node));
            }
            placed.sort_unstable();
            content.clear();
            let mut next = 0;
            for slot in 0..=lengths.len() {
                while next < placed.len() && placed[next].0 == slot {
                    let (_, k, node) = placed[next];
                    next += 1;
                    let name = namer.name(node);
                    let (before, after) = MENTION_FRAMES[rng.random_range(0..MENTION_FRAMES.len())];
                    if !content.is_empty() {
                        content.push(' ');
                    }
                    content.push_str(before);
                    content.push(' ');
                    let start = content.chars().count();
                    content.push_str(&name);
                    let end = start + name.chars().count();
                    content.push(' ');
                    content.push_str(after);
                    for _ in 0..rng.random_range(2..=5) {
                        content.push(' ');
                        content.push_str(word(&mut rng));
                    }
                    content.push('.');
                    let (agent, model, prompt) = if rng.random_range(0..10) < 8 {
                        ("extractor", "gemini-2.5-flash", "extract-v1")
                    } else {
                        ("gleaner", "gemini-2.5-flash", "glean-v1")
                    };
                    mentions
                        .uuid_text(&tenant)
                        .uuid(&ids::row("mention", t, p * sizes.mentions + k))
                        .uuid(&ids::row("node", t, node))
                        .uuid(&id)
                        .text(&name)
                        .int(start as i64)
                        .int(end as i64)
                        .text(agent)
                        .text(model)
                        .text(prompt)
                        .timestamp(created + 1_000_000 + k as i64);
                    mentions.end()?;
                }
                if let Some(&n) = lengths.get(slot) {
                    sentence(&mut rng, &mut content, n);
                }
            }
            let kind = section_kind(o, sizes.sections);
            let mut heading = format!("{} ", o + 1);
            push_capitalised(&mut heading, kind);
            sections
                .uuid_text(&tenant)
                .uuid(&id)
                .uuid(&paper)
                .int(o as i64)
                .text(kind)
                .text(&heading)
                .text(&content)
                .text(&md5_hex(&[&content]))
                .timestamp(created);
            sections.end()?;
        }
    }
    Ok(())
}

pub const NODE_COLUMNS: &str =
    "tenant_id, id, node_type, name, key, aliases, description, created_at, updated_at";

const NODE_TYPES: &[(&str, u32)] = &[
    ("Method", 30),
    ("Task", 20),
    ("Dataset", 15),
    ("Metric", 10),
    ("Material", 10),
    ("OtherScientificTerm", 15),
];

/// The nodes of tenant `t`: names from [`Namer`] (their own keys, so keys are distinct).
pub fn nodes(plan: &Plan, t: u64, rows: &mut Rows) -> Result<(), Closed> {
    let mut rng = plan.rng(t, Stream::Nodes);
    let tenant = id_text(&ids::tenant(t));
    let namer = plan.namer(t);
    let no_aliases: [&str; 0] = [];
    for i in 0..plan.sizes.nodes {
        let name = namer.name(i);
        let node_type = pick(&mut rng, NODE_TYPES);
        let alias = (rng.random_range(0..10) < 3).then(|| acronym(&name));
        let description = (rng.random_range(0..2) == 0).then(|| {
            let mut d = format!("A {} of", node_type.to_lowercase());
            for _ in 0..rng.random_range(3..8) {
                d.push(' ');
                d.push_str(word(&mut rng));
            }
            d.push('.');
            d
        });
        let created = plan.window.spread(i, plan.sizes.nodes, rng.random::<f64>());
        rows.uuid_text(&tenant)
            .uuid(&ids::row("node", t, i))
            .text(node_type)
            .text(&name)
            .text(&name);
        match &alias {
            Some(a) => rows.text_array(std::slice::from_ref(a)),
            None => rows.text_array(&no_aliases),
        };
        rows.opt_text(description.as_deref())
            .timestamp(created)
            .timestamp(created);
        rows.end()?;
    }
    Ok(())
}

pub const EDGE_COLUMNS: &str = "tenant_id, id, source_id, target_id, relation_type, description, \
    confidence, weight, review_status, reviewed_by, reviewed_at, review_note, created_at, \
    updated_at";

const RELATION_TYPES: &[(u8, u32)] = &[
    (0, 30),
    (1, 15),
    (2, 10),
    (3, 10),
    (4, 10),
    (5, 10),
    (6, 15),
];
const RELATION_NAMES: &[&str] = &[
    "USED-FOR",
    "EVALUATE-FOR",
    "FEATURE-OF",
    "PART-OF",
    "HYPONYM-OF",
    "COMPARE",
    "CONJUNCTION",
];

/// The most edges `nodes` nodes can carry without a duplicate (half of all ordered pairs and
/// relation types: redrawing duplicates stays cheap up to there).
pub fn max_edges(nodes: u64) -> u64 {
    nodes.saturating_mul(nodes.saturating_sub(1)) * RELATION_NAMES.len() as u64 / 2
}

/// Out-degrees of one tenant's nodes, to check the skew the load driver relies on.
#[derive(Clone, Debug, Default)]
pub struct Degrees {
    /// Out-degree of node 0, the biggest hub.
    pub top: u64,
    /// Out-degree of node M/10, the last of the load driver's hub range.
    pub at_tenth: u64,
    /// Median out-degree.
    pub median: u64,
    /// Share of the hub range [0, M/10) with at least 10 outgoing edges.
    pub hubs_with_10: f64,
}

/// The insight tables written while edges are generated (they rest on the edges).
pub struct InsightRows {
    pub insights: Rows,
    pub nodes: Rows,
    pub edges: Rows,
}

pub const INSIGHT_COLUMNS: &str = "tenant_id, id, insight_type, statement, rationale, confidence, \
    status, model, prompt_version, created_at, updated_at, fingerprint";
pub const INSIGHT_NODE_COLUMNS: &str = "tenant_id, insight_id, node_id";
pub const INSIGHT_EDGE_COLUMNS: &str = "tenant_id, insight_id, edge_id";

/// The edges of tenant `t` and, resting on them, its insights. Both ends of an edge are drawn
/// from the Zipf distribution over node indexes (node 0 is the biggest hub); self edges and
/// repeated (source, target, relation type) triples are drawn again. Edges are created in id
/// order over the window. Returns the out-degrees when `degrees` is asked for.
pub fn edges(
    plan: &Plan,
    t: u64,
    rows: &mut Rows,
    insights: &mut InsightRows,
    degrees: bool,
) -> Result<Option<Degrees>, Closed> {
    let sizes = &plan.sizes;
    let mut rng = plan.rng(t, Stream::Edges);
    let tenant = id_text(&ids::tenant(t));
    let owner = ids::user(t);
    let node_ids = node_ids(t, sizes.nodes);
    let namer = plan.namer(t);
    let m = sizes.nodes;
    let mut list: Vec<(u32, u32, u8)> = Vec::with_capacity(sizes.edges as usize);
    if let Some(zipf) = plan.zipf.as_ref().filter(|_| m >= 2) {
        let mut seen: HashSet<u64> = HashSet::with_capacity(sizes.edges as usize);
        for i in 0..sizes.edges {
            let (source, target, relation) = loop {
                let source = zipf.sample(&mut rng);
                let target = zipf.sample(&mut rng);
                if source == target {
                    continue;
                }
                let relation = pick(&mut rng, RELATION_TYPES);
                if seen.insert((source * m + target) * 7 + u64::from(relation)) {
                    break (source, target, relation);
                }
            };
            list.push((source as u32, target as u32, relation));
            let confidence = round3(rng.random_range(0.3..1.0));
            let weight = 1.0 + (rng.random::<f64>().powi(3) * 4.0).floor();
            let created = plan.window.spread(i, sizes.edges, rng.random::<f64>());
            let status = if confidence < 0.6 {
                "pending"
            } else {
                pick(
                    &mut rng,
                    &[("proposed", 75), ("approved", 20), ("rejected", 5)],
                )
            };
            let reviewed = matches!(status, "approved" | "rejected")
                .then(|| created + rng.random_range(HOUR..3 * DAY));
            let relation_name = RELATION_NAMES[relation as usize];
            let description = (rng.random_range(0..4) == 0).then(|| {
                format!(
                    "{} is {} {}",
                    namer.name(source),
                    relation_name.to_lowercase().replace('-', " "),
                    namer.name(target)
                )
            });
            rows.uuid_text(&tenant)
                .uuid(&ids::row("edge", t, i))
                .uuid_text(&node_ids[source as usize])
                .uuid_text(&node_ids[target as usize])
                .text(relation_name)
                .opt_text(description.as_deref())
                .float(confidence)
                .float(weight)
                .text(status)
                .opt_uuid(reviewed.map(|_| &owner))
                .opt_timestamp(reviewed)
                .opt_text((status == "rejected").then_some("not supported by the quoted text"))
                .timestamp(created)
                .timestamp(reviewed.unwrap_or(created));
            rows.end()?;
        }
    }
    write_insights(plan, t, &tenant, &node_ids, &list, &mut rng, insights)?;
    Ok(degrees.then(|| degree_stats(m, &list)))
}

fn degree_stats(m: u64, list: &[(u32, u32, u8)]) -> Degrees {
    if m == 0 {
        return Degrees::default();
    }
    let mut out = vec![0u64; m as usize];
    for &(s, _, _) in list {
        out[s as usize] += 1;
    }
    let tenth = (m / 10) as usize;
    let hubs = &out[..tenth.max(1).min(out.len())];
    let hubs_with_10 = hubs.iter().filter(|&&d| d >= 10).count() as f64 / hubs.len() as f64;
    let top = out[0];
    let at_tenth = out[tenth.min(out.len() - 1)];
    let mut sorted = out;
    sorted.sort_unstable();
    Degrees {
        top,
        at_tenth,
        median: sorted[sorted.len() / 2],
        hubs_with_10,
    }
}

const INSIGHT_TYPES: &[(&str, u32)] = &[
    ("transitive", 40),
    ("gap", 25),
    ("conflict", 20),
    ("other", 15),
];

fn write_insights(
    plan: &Plan,
    t: u64,
    tenant: &str,
    node_ids: &[String],
    edges: &[(u32, u32, u8)],
    rng: &mut ChaCha8Rng,
    out: &mut InsightRows,
) -> Result<(), Closed> {
    let sizes = &plan.sizes;
    let namer = plan.namer(t);
    let mut fingerprints = HashSet::new();
    for i in 0..sizes.insights {
        let id = ids::row("insight", t, i);
        let kind = pick(rng, INSIGHT_TYPES);
        let wanted = match kind {
            "transitive" | "conflict" => 2,
            "gap" => 1,
            _ => rng.random_range(1..=3),
        };
        // Distinct edges (as many as exist), or nodes alone when there are no edges.
        let mut chosen: Vec<u64> = Vec::new();
        let mut nodes: Vec<u64> = Vec::new();
        let mut fingerprint = String::new();
        for attempt in 0..100 {
            chosen.clear();
            nodes.clear();
            if !edges.is_empty() {
                while chosen.len() < wanted.min(edges.len()) {
                    let e = rng.random_range(0..edges.len() as u64);
                    if !chosen.contains(&e) {
                        chosen.push(e);
                    }
                }
                chosen.sort_unstable();
                for &e in &chosen {
                    let (s, d, _) = edges[e as usize];
                    for n in [u64::from(s), u64::from(d)] {
                        if !nodes.contains(&n) {
                            nodes.push(n);
                        }
                    }
                }
            } else if sizes.nodes > 0 {
                nodes.push(rng.random_range(0..sizes.nodes));
            }
            let support: Vec<String> = chosen
                .iter()
                .map(|&e| format!("e{e}"))
                .chain(nodes.iter().map(|&n| format!("n{n}")))
                .collect();
            let mut parts = [kind, &support.join(",")].join("|");
            if attempt == 99 {
                parts.push_str(&format!("|{i}"));
            }
            fingerprint = md5_hex(&[&parts]);
            if fingerprints.insert(fingerprint.clone()) {
                break;
            }
        }
        let names: Vec<String> = nodes.iter().map(|&n| namer.name(n)).collect();
        let statement = match (kind, names.as_slice()) {
            ("transitive", [a, b, c, ..]) => format!("{a} may relate to {c} through {b}."),
            ("conflict", [a, b, ..]) => format!("Sources disagree on how {a} relates to {b}."),
            ("gap", [a, b, ..]) => format!("No paper evaluates {a} beyond {b}."),
            (_, [a, ..]) => format!("{a} recurs across unrelated papers."),
            _ => "The graph is too small for an insight.".to_owned(),
        };
        let mut rationale = String::new();
        let n = rng.random_range(8..=14);
        sentence(rng, &mut rationale, n);
        let confidence = round3(rng.random_range(0.5..0.99));
        let status = pick(rng, &[("proposed", 70), ("accepted", 20), ("rejected", 10)]);
        let created = plan.window.spread(i, sizes.insights, rng.random::<f64>());
        out.insights
            .uuid_text(tenant)
            .uuid(&id)
            .text(kind)
            .text(&statement)
            .text(&rationale)
            .float(confidence)
            .text(status)
            .text("gemini-2.5-pro")
            .text("reason-v1")
            .timestamp(created)
            .timestamp(created)
            .text(&fingerprint);
        out.insights.end()?;
        for &n in &nodes {
            out.nodes
                .uuid_text(tenant)
                .uuid(&id)
                .uuid_text(&node_ids[n as usize]);
            out.nodes.end()?;
        }
        for &e in &chosen {
            out.edges
                .uuid_text(tenant)
                .uuid(&id)
                .uuid(&ids::row("edge", t, e));
            out.edges.end()?;
        }
    }
    Ok(())
}

pub const EVENT_COLUMNS: &str = "tenant_id, id, occurred_at, stage, agent, provider, model, \
    input_tokens, cached_tokens, output_tokens, thinking_tokens, base_cost_micros, \
    billed_cost_micros, execution_mode, latency_ms, outcome, error_kind, idempotency_key";

/// A model's prices in micro-dollars per million tokens, as in the shipped pricing.toml.
struct Price {
    model: &'static str,
    provider: &'static str,
    input: i64,
    output: i64,
    cache_read: i64,
    thinks: bool,
}

const FLASH: Price = Price {
    model: "gemini-2.5-flash",
    provider: "gemini",
    input: 300_000,
    output: 2_500_000,
    cache_read: 30_000,
    thinks: true,
};
const FLASH_LITE: Price = Price {
    model: "gemini-2.5-flash-lite",
    provider: "gemini",
    input: 100_000,
    output: 400_000,
    cache_read: 10_000,
    thinks: false,
};
const PRO: Price = Price {
    model: "gemini-2.5-pro",
    provider: "gemini",
    input: 1_250_000,
    output: 10_000_000,
    cache_read: 125_000,
    thinks: true,
};
const GPT_4O_MINI: Price = Price {
    model: "gpt-4o-mini",
    provider: "openai",
    input: 150_000,
    output: 600_000,
    cache_read: 75_000,
    thinks: false,
};

/// The hosted markup, in basis points (20 %).
const MARKUP_BP: i64 = 2_000;

fn round_div(n: i64, d: i64) -> i64 {
    (n + d / 2) / d
}

/// Base and billed cost in micro-dollars, the way the server's pricing computes them: exact
/// micro-dollars × tokens divided by a million once, rounded half up; billed = base × 1.2,
/// rounded half up.
pub fn cost(price_input: i64, price_cache: i64, price_output: i64, tokens: [i64; 4]) -> (i64, i64) {
    let [input, cached, output, thinking] = tokens;
    let cached = cached.min(input);
    let exact =
        (input - cached) * price_input + cached * price_cache + (output + thinking) * price_output;
    let base = round_div(exact, 1_000_000);
    (base, round_div(base * (10_000 + MARKUP_BP), 10_000))
}

/// The usage events of tenant `t`, at uniformly random times of the window.
pub fn events(plan: &Plan, t: u64, rows: &mut Rows) -> Result<(), Closed> {
    let mut rng = plan.rng(t, Stream::Events);
    let tenant = id_text(&ids::tenant(t));
    for i in 0..plan.sizes.events {
        let stage = pick(
            &mut rng,
            &[("extract", 65), ("resolve", 15), ("reason", 20)],
        );
        let (agent, price, input, output) = match stage {
            "extract" => (
                pick(&mut rng, &[("extractor", 85), ("gleaner", 15)]),
                pick(
                    &mut rng,
                    &[(&FLASH, 55), (&FLASH_LITE, 20), (&GPT_4O_MINI, 25)],
                ),
                rng.random_range(1_500..9_000i64),
                rng.random_range(200..2_500i64),
            ),
            "resolve" => (
                "resolver",
                pick(&mut rng, &[(&FLASH_LITE, 60), (&GPT_4O_MINI, 40)]),
                rng.random_range(400..3_000i64),
                rng.random_range(50..600i64),
            ),
            _ => (
                "reasoner",
                pick(&mut rng, &[(&PRO, 70), (&FLASH, 30)]),
                rng.random_range(3_000..30_000i64),
                rng.random_range(500..4_000i64),
            ),
        };
        let outcome = pick(&mut rng, &[("ok", 96), ("error", 3), ("blocked", 1)]);
        let cached = if rng.random_range(0..10) < 3 {
            (input as f64 * rng.random_range(0.2..0.8)) as i64
        } else {
            0
        };
        let thinking = if price.thinks && rng.random_range(0..2) == 0 {
            rng.random_range(100..3_000i64)
        } else {
            0
        };
        let tokens = match outcome {
            "ok" => [input, cached, output, thinking],
            "error" => [input, cached, 0, 0],
            _ => [0, 0, 0, 0],
        };
        let (base, billed) = cost(price.input, price.cache_read, price.output, tokens);
        let error_kind = match outcome {
            "error" => Some(pick(
                &mut rng,
                &[
                    ("timeout", 3),
                    ("rate_limited", 3),
                    ("invalid_output", 2),
                    ("server_error", 2),
                ],
            )),
            "blocked" => Some("limit_exceeded"),
            _ => None,
        };
        let latency = if outcome == "blocked" {
            0
        } else {
            300 + output * rng.random_range(2..12)
        };
        let at = plan.window.start + rng.random_range(0..plan.window.duration());
        rows.uuid_text(&tenant)
            .uuid(&ids::row("event", t, i))
            .timestamp(at)
            .text(stage)
            .text(agent)
            .text(price.provider)
            .text(price.model)
            .int(tokens[0])
            .int(tokens[1])
            .int(tokens[2])
            .int(tokens[3])
            .int(base)
            .int(billed)
            .text("hosted")
            .int(latency)
            .text(outcome)
            .opt_text(error_kind)
            .text(&format!("bench:{t}:event:{i}"));
        rows.end()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn costs_round_like_the_server() {
        // 1,000 uncached input tokens of gemini-2.5-flash: 0.3 $/M → 300 micro-dollars.
        assert_eq!(
            cost(300_000, 30_000, 2_500_000, [1_000, 0, 0, 0]),
            (300, 360)
        );
        // 1 token: 0.3 micro-dollars rounds to 0; 2 tokens: 0.6 rounds to 1, billed 1.2 → 1.
        assert_eq!(cost(300_000, 30_000, 2_500_000, [1, 0, 0, 0]), (0, 0));
        assert_eq!(cost(300_000, 30_000, 2_500_000, [2, 0, 0, 0]), (1, 1));
        // Billed rounds half up: base 3 → 3.6 → 4.
        assert_eq!(cost(1_000_000, 0, 0, [3, 0, 0, 0]), (3, 4));
    }
}
