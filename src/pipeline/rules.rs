//! The offline extractor: deterministic rules, no network, no model. It answers the same raw
//! structures as a model would, with verbatim quotes, so that validation keeps what it finds.
//! It is meant for local runs and tests, and as a floor: it finds little, but what it finds is
//! usually right.
//!
//! # Entities
//!
//! Found in this order; a name found again (by key) keeps its first type.
//!
//! 1. Abbreviation definitions ([`acronyms`]): the long form, typed by the short form (a metric
//!    such as `WER`) or by the long form's last word: `network`, `model`, `method`,
//!    `algorithm`, `approach`, `architecture`, … → Method; `dataset`, `corpus`, `benchmark`, …
//!    → Dataset; `accuracy`, `score`, `precision`, `recall`, `error`, `rate`, … → Metric;
//!    `classification`, `detection`, `segmentation`, `translation`, `prediction`,
//!    `recognition`, `answering`, … → Task; any other word → OtherScientificTerm, unless every
//!    word of the long form is capitalised (an organisation, `National Science Foundation
//!    (NSF)`), which is left out.
//! 2. `we propose / introduce / present / develop / design X`: X is the named thing
//!    (`X, a …`), the name after `called / named / dubbed / termed`, or a noun phrase whose
//!    last word is one of the above; a Method unless that word says Dataset, Task or Metric.
//!    The first Method proposed is "the proposed method": `our model`, `our approach`, `the
//!    proposed method` (and the like) refer to it.
//! 3. Datasets: the capitalised name before `dataset(s)`, `benchmark(s)`, `corpus`/`corpora`
//!    (with coordinated names: `the SciERC and DocRED datasets`); capitalised names after `on`
//!    or `across` in a sentence about experiments, results, training or evaluation
//!    (`experiments on QM9 and ZINC`); and a short list of well-known datasets.
//! 4. Metrics from a vocabulary (`accuracy`, `F1 score`, `BLEU`, `word error rate`, `mIoU`, …;
//!    abbreviations match case-sensitively).
//! 5. Tasks: a task word (as above) with one to three modifiers before it
//!    (`document-level relation extraction`, `keyword spotting`).
//! 6. Methods by what is said of them: names that we fine-tune or train (`we fine-tune BERT`),
//!    that are trained or evaluated (`DPCN is trained on`, `the Transformer is evaluated`),
//!    that achieve or outperform (`ViT-B/16 reaches`), and the names compared with
//!    (`outperforms`, `surpasses`, `beats`, `exceeds`, `compared with / to`, `than`).
//!
//! A name here is a token with a capital after its first letter or with a digit (`BERT`,
//! `GraphRel-Lite`, `wav2vec 2.0`), or, where the context says it is a name, capitalised words
//! (`ISPRS Potsdam`, `Common Voice`).
//!
//! # Relations
//!
//! Within one sentence, which is the evidence. Directions follow SciERC's annotation
//! guidelines: USED-FOR goes from what is used to what it is used for ("A is trained on B" is
//! B USED-FOR A); EVALUATE-FOR goes from the evaluating Dataset or Metric to the evaluated
//! Method ("we evaluate our method using F1" is F1 EVALUATE-FOR method); PART-OF from the part
//! to the whole; COMPARE and CONJUNCTION are symmetric and keep the order of the text.
//!
//! | Pattern | Relation | Confidence |
//! |---|---|---|
//! | Method … `for` Task (list) | Method USED-FOR Task | 0.7 |
//! | `apply / use / employ` X `to / for` Y; X `is applied to / used for` Y | X USED-FOR Y | 0.75 |
//! | Method … `trained on` Dataset; `we fine-tune` X `on` Dataset | Dataset USED-FOR X | 0.75 |
//! | `evaluate` X `on` Dataset / `using` Metric | Dataset/Metric EVALUATE-FOR X | 0.8 |
//! | Method `achieves / obtains / reduces / improves …` Metric … `on` Dataset | Metric/Dataset EVALUATE-FOR Method | 0.75 |
//! | `experiments / results on` Dataset … Method | Dataset EVALUATE-FOR Method | 0.7 |
//! | Method `outperforms / surpasses …` Method (list); `compared with` | COMPARE | 0.8 |
//! | Method `combines / integrates / consists of / contains …` Method | part PART-OF Method | 0.65 |
//! | X `and` / `or` Y, same type, side by side (`,` inside a longer list) | CONJUNCTION | 0.6 |
//!
//! The subject of a pattern is the nearest Method before it in the sentence, passing over
//! relative clauses (`X, which uses Y, achieves …` is about X, not Y). A relation whose subject
//! is "the proposed method" through `our model` (and the like) has 0.1 less. Each pair and
//! type is kept once, at its highest confidence.
//!
//! # Mentions
//!
//! Every sentence that names an entity (by any spelling with the same key, or by a defined
//! abbreviation) is one mention, the sentence being the quote.

use std::collections::HashMap;
use std::ops::Range;

use super::model::{Provenance, RawEntity, RawExtraction, RawMention, RawRelation};
use super::resolve::{acronyms, entity_key, AcronymDef};

/// The rules' version, stored as the prompt version of what they produce.
pub const RULES_VERSION: &str = "rules-v1";
/// The agent recorded for the rules.
pub const RULES_AGENT: &str = "offline-rules";
/// The model recorded for the rules.
pub const RULES_MODEL: &str = "offline";

/// The provenance of the rules' output.
pub fn provenance() -> Provenance {
    Provenance {
        agent: RULES_AGENT.to_owned(),
        model: RULES_MODEL.to_owned(),
        prompt_version: RULES_VERSION.to_owned(),
    }
}

const METHOD: &str = "Method";
const TASK: &str = "Task";
const DATASET: &str = "Dataset";
const METRIC: &str = "Metric";
const OTHER: &str = "OtherScientificTerm";

/// Last words (as keys) that make a name a Method.
const METHOD_HEADS: [&str; 33] = [
    "algorithm",
    "analysis",
    "approach",
    "architecture",
    "autoencoder",
    "boosting",
    "classifier",
    "decoder",
    "descent",
    "embedding",
    "encoder",
    "estimator",
    "field",
    "filter",
    "forest",
    "framework",
    "heuristic",
    "learning",
    "machine",
    "mechanism",
    "memory",
    "method",
    "model",
    "module",
    "network",
    "optimization",
    "optimizer",
    "perceptron",
    "process",
    "regression",
    "search",
    "technique",
    "transformer",
];

/// Last words that make a name a Dataset.
const DATASET_HEADS: [&str; 6] = [
    "benchmark",
    "collection",
    "corpus",
    "database",
    "dataset",
    "treebank",
];

/// Last words that make a name a Metric.
const METRIC_HEADS: [&str; 10] = [
    "accuracy",
    "auc",
    "bleu",
    "error",
    "f1",
    "perplexity",
    "precision",
    "rate",
    "recall",
    "score",
];

/// Last words that make a name a Task.
const TASK_HEADS: [&str; 33] = [
    "alignment",
    "answering",
    "captioning",
    "classification",
    "clustering",
    "completion",
    "detection",
    "diarization",
    "disambiguation",
    "estimation",
    "extraction",
    "forecasting",
    "generation",
    "labeling",
    "labelling",
    "localisation",
    "localization",
    "parsing",
    "prediction",
    "processing",
    "reasoning",
    "recognition",
    "recommendation",
    "resolution",
    "retrieval",
    "segmentation",
    "spotting",
    "summarisation",
    "summarization",
    "synthesis",
    "tagging",
    "tracking",
    "translation",
];

/// Metric names. Entries with a capital letter match case-sensitively, the others ignoring
/// case.
const METRICS: [&str; 52] = [
    "accuracy",
    "top-1 accuracy",
    "top-5 accuracy",
    "F1",
    "F1 score",
    "F1-score",
    "F-score",
    "F-measure",
    "macro-F1",
    "micro-F1",
    "BLEU",
    "BLEU score",
    "ROUGE",
    "ROUGE-1",
    "ROUGE-2",
    "ROUGE-L",
    "METEOR",
    "CIDEr",
    "perplexity",
    "AUC",
    "ROC AUC",
    "AUROC",
    "AUPRC",
    "precision",
    "recall",
    "mean average precision",
    "mAP",
    "error rate",
    "word error rate",
    "character error rate",
    "WER",
    "CER",
    "exact match",
    "mean squared error",
    "root mean squared error",
    "mean absolute error",
    "MSE",
    "RMSE",
    "MAE",
    "IoU",
    "mIoU",
    "intersection over union",
    "mean intersection over union",
    "Dice score",
    "Dice coefficient",
    "PSNR",
    "SSIM",
    "FID",
    "NDCG",
    "MRR",
    "BERTScore",
    "Spearman correlation",
];

/// Well-known datasets, matched case-sensitively.
const DATASETS: [&str; 24] = [
    "ImageNet",
    "MNIST",
    "Fashion-MNIST",
    "CIFAR-10",
    "CIFAR-100",
    "MS COCO",
    "COCO",
    "SQuAD",
    "GLUE",
    "SuperGLUE",
    "Penn Treebank",
    "WikiText-103",
    "CoNLL-2003",
    "OntoNotes",
    "SNLI",
    "MultiNLI",
    "SST-2",
    "Cityscapes",
    "PASCAL VOC",
    "LibriSpeech",
    "Common Voice",
    "PubMed",
    "Wikipedia",
    "KITTI",
];

/// Words that are never part of a name or a task's modifiers.
const STOP: [&str; 141] = [
    "a",
    "an",
    "the",
    "our",
    "their",
    "its",
    "his",
    "her",
    "this",
    "that",
    "these",
    "those",
    "we",
    "it",
    "they",
    "and",
    "or",
    "but",
    "nor",
    "of",
    "for",
    "on",
    "in",
    "to",
    "with",
    "by",
    "from",
    "at",
    "as",
    "into",
    "onto",
    "over",
    "under",
    "than",
    "via",
    "per",
    "is",
    "are",
    "was",
    "were",
    "be",
    "been",
    "being",
    "has",
    "have",
    "had",
    "do",
    "does",
    "did",
    "can",
    "could",
    "may",
    "might",
    "must",
    "shall",
    "should",
    "will",
    "would",
    "which",
    "who",
    "whom",
    "whose",
    "where",
    "when",
    "while",
    "whereas",
    "although",
    "both",
    "each",
    "all",
    "any",
    "some",
    "such",
    "not",
    "no",
    "also",
    "only",
    "more",
    "most",
    "less",
    "further",
    "here",
    "there",
    "then",
    "thus",
    "however",
    "using",
    "based",
    "between",
    "across",
    "within",
    "without",
    "about",
    "after",
    "before",
    "during",
    "against",
    "among",
    "through",
    "unlike",
    "like",
    "show",
    "propose",
    "introduce",
    "present",
    "develop",
    "design",
    "use",
    "apply",
    "achieve",
    "evaluate",
    "compare",
    "outperform",
    "surpass",
    "reduce",
    "improve",
    "other",
    "new",
    "novel",
    "existing",
    "prior",
    "previous",
    "different",
    "same",
    "many",
    "study",
    "address",
    "tackle",
    "consider",
    "investigate",
    "explore",
    "examine",
    "perform",
    "solve",
    "enable",
    "require",
    "learn",
    "train",
    "make",
    "report",
    "observe",
];

/// Words skipped before a name or a list of names (`outperforms strong baselines such as X`).
const FILLERS: [&str; 30] = [
    "a",
    "an",
    "the",
    "our",
    "their",
    "its",
    "this",
    "these",
    "those",
    "both",
    "all",
    "two",
    "three",
    "several",
    "strong",
    "competitive",
    "recent",
    "popular",
    "standard",
    "existing",
    "prior",
    "previous",
    "baseline",
    "baselines",
    "such",
    "as",
    "state-of-the-art",
    "lowest",
    "highest",
    "best",
];

/// Adjectives dropped from the front of a proposed noun phrase.
const PROPOSAL_ADJECTIVES: [&str; 16] = [
    "a",
    "an",
    "the",
    "our",
    "novel",
    "new",
    "simple",
    "lightweight",
    "efficient",
    "effective",
    "general",
    "generic",
    "unified",
    "scalable",
    "robust",
    "principled",
];

const PROPOSE: [&str; 6] = [
    "propose",
    "introduce",
    "present",
    "develop",
    "design",
    "describe",
];
const NAMING: [&str; 5] = ["called", "named", "dubbed", "termed", "coined"];
const DATASET_WORDS: [&str; 6] = [
    "dataset",
    "datasets",
    "benchmark",
    "benchmarks",
    "corpus",
    "corpora",
];
const COMPARE_VERBS: [&str; 11] = [
    "outperforms",
    "outperform",
    "outperformed",
    "outperforming",
    "surpasses",
    "surpass",
    "surpassed",
    "beats",
    "beat",
    "exceeds",
    "exceed",
];
const RESULT_VERBS: [&str; 20] = [
    "achieves", "achieve", "achieved", "obtains", "obtain", "obtained", "attains", "attained",
    "reaches", "reached", "yields", "yielded", "reports", "reported", "reduces", "reduced",
    "improves", "improved", "lowers", "lowered",
];
const EVALUATE_VERBS: [&str; 12] = [
    "evaluate",
    "evaluates",
    "evaluated",
    "evaluating",
    "test",
    "tested",
    "benchmark",
    "benchmarked",
    "assess",
    "assessed",
    "validate",
    "validated",
];
const TRAIN_VERBS: [&str; 6] = [
    "trained",
    "pretrained",
    "pre-trained",
    "fine-tuned",
    "finetuned",
    "learned",
];
const USED_PASSIVE: [&str; 6] = [
    "used", "applied", "employed", "adopted", "utilized", "utilised",
];
const USE_ACTIVE: [&str; 12] = [
    "apply",
    "applies",
    "use",
    "uses",
    "employ",
    "employs",
    "adopt",
    "adopts",
    "utilize",
    "utilizes",
    "leverage",
    "leverages",
];
const PART_VERBS: [&str; 12] = [
    "combines",
    "combine",
    "integrates",
    "integrate",
    "incorporates",
    "incorporate",
    "consists",
    "comprises",
    "comprise",
    "contains",
    "contain",
    "includes",
];
/// Verbs whose object is a trained model (`we fine-tune BERT on …`).
const TRAIN_ACTIVE: [&str; 7] = [
    "fine-tune",
    "finetune",
    "train",
    "pretrain",
    "pre-train",
    "fine-tuned",
    "trained",
];
/// Passive verbs whose subject is a model (`X is trained / evaluated …`).
const MODEL_PASSIVE: [&str; 8] = [
    "trained",
    "pretrained",
    "pre-trained",
    "fine-tuned",
    "finetuned",
    "evaluated",
    "tested",
    "benchmarked",
];
/// Words after which `on X` names a dataset: experiments, results, training, evaluation.
const EVALUATION_CUES: [&str; 9] = [
    "experiments",
    "experiment",
    "results",
    "evaluation",
    "evaluations",
    "evaluate",
    "evaluated",
    "tested",
    "trained",
];
/// Nouns for experiments: `experiments on D show that X …`.
const EXPERIMENT_NOUNS: [&str; 5] = [
    "experiments",
    "experiment",
    "results",
    "evaluation",
    "evaluations",
];
const ANAPHOR_NOUNS: [&str; 9] = [
    "model",
    "method",
    "approach",
    "framework",
    "system",
    "network",
    "architecture",
    "algorithm",
    "technique",
];
const CLAUSE_ENDS: [&str; 9] = [
    ".", ";", "!", "?", "while", "whereas", "but", "although", "though",
];
const ABBREVIATIONS: [&str; 15] = [
    "e.g", "i.e", "al", "Fig", "Figs", "Eq", "Eqs", "vs", "cf", "approx", "Sec", "Tab", "No",
    "resp", "etc",
];

/// Characters that join letters and digits into one token (`CIFAR-10`, `74.1`, `e.g`).
const CONNECTORS: [char; 8] = ['-', '.', '\'', '\u{2019}', '/', '_', '\u{2010}', '\u{2013}'];

/// Longest name, in tokens, matched in the text.
const MAX_NAME_TOKENS: usize = 8;

const USED_FOR: &str = "USED-FOR";
const EVALUATE_FOR: &str = "EVALUATE-FOR";
const COMPARE: &str = "COMPARE";
const PART_OF: &str = "PART-OF";
const CONJUNCTION: &str = "CONJUNCTION";

/// A word or a punctuation mark, at byte offsets of the section.
#[derive(Clone, Copy, Debug)]
struct Token<'a> {
    text: &'a str,
    start: usize,
    end: usize,
    /// A blank line comes before it.
    paragraph: bool,
}

impl Token<'_> {
    fn is_word(&self) -> bool {
        self.text.chars().next().is_some_and(char::is_alphanumeric)
    }

    fn lower(&self) -> String {
        self.text.to_lowercase()
    }

    /// Has letters and looks like a name: `BERT`, `GraphRel-Lite`, `wav2vec`, `T5`.
    fn name_like(&self) -> bool {
        let rest_upper = self.text.chars().skip(1).any(char::is_uppercase);
        let letters = self.text.chars().any(char::is_alphabetic);
        let digits = self.text.chars().any(|c| c.is_ascii_digit());
        letters && (rest_upper || digits)
    }

    /// `Potsdam`, `Common`: a capital, then lowercase.
    fn title_case(&self) -> bool {
        let mut chars = self.text.chars();
        chars.next().is_some_and(char::is_uppercase) && chars.any(char::is_lowercase)
    }

    /// `2.0`, `2014`.
    fn numeric(&self) -> bool {
        self.is_word() && !self.text.chars().any(char::is_alphabetic)
    }
}

fn tokenize(text: &str) -> Vec<Token<'_>> {
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let byte = |i: usize| chars.get(i).map_or(text.len(), |(b, _)| *b);
    let alnum = |i: usize| chars.get(i).is_some_and(|(_, c)| c.is_alphanumeric());
    let mut tokens = Vec::new();
    let mut newlines = 0;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i].1;
        if c.is_whitespace() {
            newlines += usize::from(c == '\n');
            i += 1;
            continue;
        }
        let paragraph = newlines >= 2;
        newlines = 0;
        let mut j = i + 1;
        if c.is_alphanumeric() {
            loop {
                while alnum(j) {
                    j += 1;
                }
                if j + 1 < chars.len() && CONNECTORS.contains(&chars[j].1) && alnum(j + 1) {
                    j += 2;
                    continue;
                }
                break;
            }
            let mut k = j;
            while chars.get(k).is_some_and(|(_, c)| matches!(c, '+' | '#')) {
                k += 1;
            }
            if k > j && !alnum(k) {
                j = k;
            }
        }
        tokens.push(Token {
            text: &text[byte(i)..byte(j)],
            start: byte(i),
            end: byte(j),
            paragraph,
        });
        i = j;
    }
    tokens
}

/// Sentences as token ranges.
fn sentences(tokens: &[Token<'_>]) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let mut start = 0;
    for i in 0..tokens.len() {
        if i > start && tokens[i].paragraph {
            out.push(start..i);
            start = i;
        }
        if !matches!(tokens[i].text, "." | "!" | "?") {
            continue;
        }
        let abbreviation = i > 0
            && tokens[i].text == "."
            && tokens[i - 1].end == tokens[i].start
            && ABBREVIATIONS.contains(&tokens[i - 1].text);
        let next_starts = tokens.get(i + 1).is_none_or(|n| {
            n.paragraph
                || n.text
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_uppercase() || c.is_ascii_digit())
        });
        if !abbreviation && next_starts {
            out.push(start..i + 1);
            start = i + 1;
        }
    }
    if start < tokens.len() {
        out.push(start..tokens.len());
    }
    out
}

/// The type a name's last word gives it, if any.
fn type_by_head(name: &str) -> Option<&'static str> {
    let key = entity_key(name);
    let head = key.rsplit(' ').next().unwrap_or_default();
    if METHOD_HEADS.contains(&head) {
        Some(METHOD)
    } else if DATASET_HEADS.contains(&head) {
        Some(DATASET)
    } else if METRIC_HEADS.contains(&head) {
        Some(METRIC)
    } else if TASK_HEADS.contains(&head) {
        Some(TASK)
    } else {
        None
    }
}

fn is_metric_name(name: &str) -> bool {
    METRICS.iter().any(|m| {
        if m.chars().any(char::is_uppercase) {
            *m == name
        } else {
            m.eq_ignore_ascii_case(name)
        }
    })
}

/// An entity found by the rules.
struct Found {
    name: String,
    entity_type: &'static str,
    proposed: bool,
}

/// The entities found so far, by key; defined abbreviations stand for their long forms.
struct Store {
    entities: Vec<Found>,
    by_key: HashMap<String, usize>,
    long_of: HashMap<String, String>,
}

impl Store {
    fn new(defs: &[AcronymDef]) -> Store {
        let mut long_of = HashMap::new();
        for def in defs {
            let short = entity_key(&def.short);
            if !short.is_empty() && short != entity_key(&def.long) {
                long_of.entry(short).or_insert_with(|| def.long.clone());
            }
        }
        Store {
            entities: Vec::new(),
            by_key: HashMap::new(),
            long_of,
        }
    }

    /// The entity a span of text names, if any.
    fn lookup(&self, text: &str) -> Option<usize> {
        let key = entity_key(text);
        let key = match self.long_of.get(&key) {
            Some(long) => entity_key(long),
            None => key,
        };
        self.by_key.get(&key).copied()
    }

    /// Adds an entity (or finds it by key) and returns its index.
    fn add(&mut self, name: &str, entity_type: &'static str) -> Option<usize> {
        let name = name.split_whitespace().collect::<Vec<_>>().join(" ");
        let key = entity_key(&name);
        if key.is_empty() {
            return None;
        }
        let (name, key) = match self.long_of.get(&key) {
            Some(long) => (long.clone(), entity_key(long)),
            None => (name, key),
        };
        if let Some(&i) = self.by_key.get(&key) {
            return Some(i);
        }
        self.by_key.insert(key, self.entities.len());
        self.entities.push(Found {
            name,
            entity_type,
            proposed: false,
        });
        Some(self.entities.len() - 1)
    }

    fn proposed(&self) -> Option<usize> {
        self.entities
            .iter()
            .position(|e| e.proposed && e.entity_type == METHOD)
    }
}

/// The section, tokenised.
struct Doc<'a> {
    text: &'a str,
    tokens: Vec<Token<'a>>,
    sentences: Vec<Range<usize>>,
}

impl<'a> Doc<'a> {
    fn new(text: &'a str) -> Doc<'a> {
        let tokens = tokenize(text);
        let sentences = sentences(&tokens);
        Doc {
            text,
            tokens,
            sentences,
        }
    }

    fn span(&self, tokens: Range<usize>) -> &'a str {
        &self.text[self.tokens[tokens.start].start..self.tokens[tokens.end - 1].end]
    }

    fn lower(&self, i: usize) -> String {
        self.tokens.get(i).map(Token::lower).unwrap_or_default()
    }

    fn is_stop(&self, i: usize) -> bool {
        STOP.contains(&self.lower(i).as_str())
    }

    /// A name starting at `i`: name-like tokens (or capitalised ones, with `title`), with the
    /// version numbers after them (`wav2vec 2.0`).
    fn name_from(&self, i: usize, end: usize, title: bool) -> Option<Range<usize>> {
        let mut j = i;
        while j < end && j - i < MAX_NAME_TOKENS {
            let t = &self.tokens[j];
            let fits = (t.name_like() || (title && t.title_case())) && !self.is_stop(j)
                || (j > i && t.numeric());
            if !fits {
                break;
            }
            j += 1;
        }
        (j > i).then_some(i..j)
    }

    /// A name ending just before `end`, going back no further than `floor`.
    /// Capitalised words, digits and, after them, lowercase words may be part of it (`the
    /// NCBI disease corpus`); it starts with a capitalised word.
    fn name_before(&self, end: usize, floor: usize) -> Option<Range<usize>> {
        let named = |k: usize| {
            let t = &self.tokens[k];
            t.name_like() || t.title_case()
        };
        let mut i = end;
        while i > floor && end - i < 4 {
            let t = &self.tokens[i - 1];
            if !t.is_word() || self.is_stop(i - 1) {
                break;
            }
            i -= 1;
        }
        while i < end && !named(i) {
            i += 1;
        }
        (i < end).then_some(i..end)
    }
}

/// Finds the entities of a section (see the module documentation, "Entities").
fn discover(doc: &Doc<'_>, store: &mut Store, defs: &[AcronymDef]) {
    for def in defs {
        let entity_type = if is_metric_name(&def.short) {
            Some(METRIC)
        } else {
            type_by_head(&def.long).or_else(|| {
                let proper = def
                    .long
                    .split_whitespace()
                    .all(|w| w.chars().next().is_some_and(char::is_uppercase));
                (!proper).then_some(OTHER)
            })
        };
        if let Some(entity_type) = entity_type {
            store.add(&def.long, entity_type);
        }
    }
    for range in &doc.sentences {
        proposals(doc, range.clone(), store);
    }
    for range in &doc.sentences {
        datasets(doc, range.clone(), store);
    }
    for range in &doc.sentences {
        vocabulary(doc, range.clone(), store, &METRICS, METRIC);
    }
    for range in &doc.sentences {
        tasks(doc, range.clone(), store);
    }
    for range in &doc.sentences {
        models(doc, range.clone(), store);
        compared(doc, range.clone(), store);
    }
}

/// Names that are trained, evaluated or perform: `we fine-tune X`, `X is trained on …`,
/// `X achieves …`, `X outperforms …`.
fn models(doc: &Doc<'_>, range: Range<usize>, store: &mut Store) {
    for i in range.clone() {
        let word = doc.lower(i);
        if TRAIN_ACTIVE.contains(&word.as_str()) && i > range.start && doc.lower(i - 1) == "we" {
            let mut j = skip_fillers(doc, i + 1, range.end);
            while let Some(name) = doc.name_from(j, range.end, false) {
                store.add(doc.span(name.clone()), METHOD);
                let mut k = name.end;
                while k < range.end && matches!(doc.lower(k).as_str(), "," | "and") {
                    k += 1;
                }
                if k == name.end {
                    break;
                }
                j = k;
            }
        }
        let passive = matches!(word.as_str(), "is" | "are" | "was" | "were")
            && MODEL_PASSIVE.contains(&doc.lower(i + 1).as_str());
        let performs =
            RESULT_VERBS.contains(&word.as_str()) || COMPARE_VERBS.contains(&word.as_str());
        if (passive || performs) && i > range.start {
            let before = &doc.tokens[i - 1];
            let mut start = i;
            while start > range.start
                && i - start < 4
                && (doc.tokens[start - 1].name_like()
                    || (doc.tokens[start - 1].numeric()
                        && start >= range.start + 2
                        && doc.tokens[start - 2].name_like()))
                && !doc.is_stop(start - 1)
            {
                start -= 1;
            }
            if start < i {
                store.add(doc.span(start..i), METHOD);
            } else if passive
                && before.title_case()
                && i >= range.start + 2
                && doc.lower(i - 2) == "the"
            {
                store.add(before.text, METHOD);
            }
        }
    }
}

/// `we propose …`.
fn proposals(doc: &Doc<'_>, range: Range<usize>, store: &mut Store) {
    for i in range.clone() {
        if doc.lower(i) != "we" {
            continue;
        }
        let mut j = i + 1;
        while matches!(doc.lower(j).as_str(), "here" | "also" | "further" | "first") {
            j += 1;
        }
        if j >= range.end || !PROPOSE.contains(&doc.lower(j).as_str()) {
            continue;
        }
        j += 1;
        while j < range.end && PROPOSAL_ADJECTIVES.contains(&doc.lower(j).as_str()) {
            j += 1;
        }
        if j >= range.end {
            continue;
        }
        let found = if doc.tokens[j].name_like() {
            doc.name_from(j, range.end, true)
                .map(|name| (doc.span(name), METHOD))
        } else {
            let start = j;
            while j < range.end
                && j - start < 6
                && doc.tokens[j].is_word()
                && !doc.is_stop(j)
                && !NAMING.contains(&doc.lower(j).as_str())
            {
                j += 1;
            }
            let phrase = (j > start).then(|| doc.span(start..j));
            let entity_type = phrase.and_then(type_by_head).unwrap_or(METHOD);
            if NAMING.contains(&doc.lower(j).as_str()) {
                doc.name_from(j + 1, range.end, true)
                    .map(|name| (doc.span(name), entity_type))
            } else {
                phrase
                    .filter(|_| type_by_head(doc.span(start..j)).is_some())
                    .map(|p| (p, entity_type))
            }
        };
        if let Some((name, entity_type)) = found {
            if let Some(e) = store.add(name, entity_type) {
                store.entities[e].proposed = true;
            }
        }
    }
}

/// Names before `dataset`, `benchmark`, `corpus`, and well-known datasets.
fn datasets(doc: &Doc<'_>, range: Range<usize>, store: &mut Store) {
    for i in range.clone() {
        if !DATASET_WORDS.contains(&doc.lower(i).as_str()) {
            continue;
        }
        let mut names = Vec::new();
        let mut end = i;
        while let Some(name) = doc.name_before(end, range.start) {
            names.push(name.clone());
            let mut k = name.start;
            while k > range.start && matches!(doc.lower(k - 1).as_str(), "," | "and" | "or") {
                k -= 1;
            }
            if k == name.start {
                break;
            }
            end = k;
        }
        for name in names.into_iter().rev() {
            store.add(doc.span(name), DATASET);
        }
    }
    for i in range.clone() {
        if !matches!(doc.lower(i).as_str(), "on" | "across") {
            continue;
        }
        let cued = (range.start..i).any(|k| {
            let word = doc.lower(k);
            EVALUATION_CUES.contains(&word.as_str()) || RESULT_VERBS.contains(&word.as_str())
        });
        if !cued {
            continue;
        }
        let mut j = skip_fillers(doc, i + 1, range.end);
        while let Some(mut name) = doc.name_from(j, range.end, true) {
            let limit = (j + MAX_NAME_TOKENS).min(range.end);
            let words = (j..limit)
                .find(|&k| !doc.tokens[k].is_word())
                .unwrap_or(limit);
            let known = (name.end..words)
                .rev()
                .find(|&end| store.lookup(doc.span(j..end + 1)).is_some());
            if let Some(end) = known {
                name = j..end + 1;
            } else if name.clone().any(|k| doc.tokens[k].name_like()) {
                store.add(doc.span(name.clone()), DATASET);
            } else {
                break;
            }
            let mut k = name.end;
            while k < range.end && matches!(doc.lower(k).as_str(), "," | "and" | "or") {
                k += 1;
            }
            if k == name.end {
                break;
            }
            j = skip_fillers(doc, k, range.end);
        }
    }
    vocabulary(doc, range, store, &DATASETS, DATASET);
}

/// Entries of a vocabulary, longest first (capitalised entries case-sensitively).
fn vocabulary(
    doc: &Doc<'_>,
    range: Range<usize>,
    store: &mut Store,
    entries: &[&str],
    entity_type: &'static str,
) {
    let mut entries: Vec<(Vec<String>, bool)> = entries
        .iter()
        .map(|e| {
            let exact = e.chars().any(char::is_uppercase);
            let words = tokenize(e).iter().map(|t| t.text.to_owned()).collect();
            (words, exact)
        })
        .collect();
    entries.sort_by_key(|(words, _)| std::cmp::Reverse(words.len()));
    let mut i = range.start;
    while i < range.end {
        let hit = entries.iter().find(|(words, exact)| {
            i + words.len() <= range.end
                && words.iter().enumerate().all(|(k, w)| {
                    let t = doc.tokens[i + k].text;
                    if *exact {
                        t == w
                    } else {
                        t.to_lowercase() == *w
                    }
                })
                && !doc
                    .tokens
                    .get(i + words.len())
                    .is_some_and(|t| t.start == doc.tokens[i + words.len() - 1].end && t.is_word())
        });
        match hit {
            Some((words, _)) => {
                store.add(doc.span(i..i + words.len()), entity_type);
                i += words.len();
            }
            None => i += 1,
        }
    }
}

/// Whether token `i` can modify a task word: a lowercase or capitalised word, not a stop word,
/// not an adverb, not a plural or third-person verb.
fn modifier(doc: &Doc<'_>, i: usize) -> bool {
    let t = &doc.tokens[i];
    let lower = t.lower();
    let camel = t.text.chars().skip(1).any(char::is_uppercase);
    let plural_or_verb = lower.ends_with('s') && !lower.ends_with("ss");
    let excluded = camel
        || plural_or_verb
        || doc.is_stop(i)
        || lower.ends_with("ly")
        || TASK_HEADS.contains(&lower.as_str());
    t.is_word() && t.text.chars().any(char::is_alphabetic) && !excluded
}

/// A task word with one to three modifiers.
fn tasks(doc: &Doc<'_>, range: Range<usize>, store: &mut Store) {
    for i in range.clone() {
        let t = &doc.tokens[i];
        let camel = t.text.chars().skip(1).any(char::is_uppercase);
        if camel || !TASK_HEADS.contains(&t.lower().as_str()) {
            continue;
        }
        let mut start = i;
        while start > range.start && i - start < 3 && modifier(doc, start - 1) {
            start -= 1;
        }
        if start < i {
            store.add(doc.span(start..i + 1), TASK);
        }
    }
}

/// Names after `outperforms`, `compared with`, `than`.
fn compared(doc: &Doc<'_>, range: Range<usize>, store: &mut Store) {
    for i in range.clone() {
        let Some(from) = compare_objects_start(doc, i) else {
            continue;
        };
        let mut j = skip_fillers(doc, from, range.end);
        while let Some(name) = doc.name_from(j, range.end, false) {
            store.add(doc.span(name.clone()), METHOD);
            let mut k = name.end;
            while k < range.end && matches!(doc.lower(k).as_str(), "," | "and" | "or") {
                k += 1;
            }
            if k == name.end {
                break;
            }
            j = skip_fillers(doc, k, range.end);
        }
    }
}

/// Where the compared names start, if token `i` begins a comparison.
fn compare_objects_start(doc: &Doc<'_>, i: usize) -> Option<usize> {
    let word = doc.lower(i);
    if COMPARE_VERBS.contains(&word.as_str()) || word == "than" {
        return Some(i + 1);
    }
    let next = doc.lower(i + 1);
    let compared = (word == "compared" || word == "comparison") && (next == "with" || next == "to");
    compared.then_some(i + 2)
}

fn skip_fillers(doc: &Doc<'_>, mut i: usize, end: usize) -> usize {
    while i < end && FILLERS.contains(&doc.lower(i).as_str()) {
        i += 1;
    }
    i
}

/// An entity named in a sentence, at token offsets.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Occurrence {
    entity: usize,
    start: usize,
    end: usize,
    /// `our model` standing for the proposed method.
    anaphor: bool,
}

/// The entities named in a sentence, longest names first, left to right.
fn occurrences(doc: &Doc<'_>, range: Range<usize>, store: &Store) -> Vec<Occurrence> {
    let proposed = store.proposed();
    let mut found = Vec::new();
    let mut i = range.start;
    while i < range.end {
        if let (Some(entity), Some(length)) = (proposed, anaphor_at(doc, i, range.end)) {
            found.push(Occurrence {
                entity,
                start: i,
                end: i + length,
                anaphor: true,
            });
            i += length;
            continue;
        }
        let mut run = 0;
        while i + run < range.end && run < MAX_NAME_TOKENS && doc.tokens[i + run].is_word() {
            run += 1;
        }
        let hit = (1..=run)
            .rev()
            .find_map(|k| store.lookup(doc.span(i..i + k)).map(|e| (e, k)));
        match hit {
            Some((entity, k)) => {
                found.push(Occurrence {
                    entity,
                    start: i,
                    end: i + k,
                    anaphor: false,
                });
                i += k;
            }
            None => i += 1,
        }
    }
    found
}

/// The length of `our model`, `the proposed method` (and the like) at `i`.
fn anaphor_at(doc: &Doc<'_>, i: usize, end: usize) -> Option<usize> {
    let noun = |k: usize| k < end && ANAPHOR_NOUNS.contains(&doc.lower(k).as_str());
    match doc.lower(i).as_str() {
        "our" if noun(i + 1) => Some(2),
        "the" if doc.lower(i + 1) == "proposed" && noun(i + 2) => Some(3),
        _ => None,
    }
}

/// The relations of one sentence, collected with their confidence.
struct Sentence<'d, 'a> {
    doc: &'d Doc<'a>,
    range: Range<usize>,
    occurrences: Vec<Occurrence>,
    store: &'d Store,
    /// Relative clauses (`, which … ,`): what they name is not the subject of what follows.
    asides: Vec<Range<usize>>,
}

/// The relative clauses of a sentence: from a comma followed by `which`, `who`, `that` or
/// `where` to the next comma or the end of the clause.
fn asides(doc: &Doc<'_>, range: &Range<usize>) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    for i in range.clone() {
        let opens = doc.tokens[i].text == ","
            && matches!(
                doc.lower(i + 1).as_str(),
                "which" | "who" | "that" | "where"
            );
        if opens {
            let end = (i + 2..range.end)
                .find(|&k| matches!(doc.tokens[k].text, "," | "." | ";"))
                .unwrap_or(range.end);
            out.push(i..end);
        }
    }
    out
}

/// A relation found: source, target, type, confidence.
type FoundRelation = (usize, usize, &'static str, f64);

impl Sentence<'_, '_> {
    fn type_of(&self, o: &Occurrence) -> &'static str {
        self.store.entities[o.entity].entity_type
    }

    fn at(&self, i: usize) -> Option<Occurrence> {
        self.occurrences.iter().find(|o| o.start == i).copied()
    }

    /// The last entity of a type before `i`, passing over relative clauses that `i` is not in.
    fn nearest_before(&self, i: usize, entity_type: &str) -> Option<Occurrence> {
        let aside = |o: &Occurrence| {
            self.asides
                .iter()
                .any(|a| a.contains(&o.start) && !a.contains(&i))
        };
        self.occurrences
            .iter()
            .rev()
            .find(|o| o.end <= i && self.type_of(o) == entity_type && !aside(o))
            .copied()
    }

    /// The entity at `i`, or after the filler words from `i`.
    fn after(&self, mut i: usize) -> Option<Occurrence> {
        loop {
            if let Some(o) = self.at(i) {
                return Some(o);
            }
            if i >= self.range.end || !FILLERS.contains(&self.doc.lower(i).as_str()) {
                return None;
            }
            i += 1;
        }
    }

    fn clause_end(&self, from: usize) -> usize {
        (from..self.range.end)
            .find(|&k| CLAUSE_ENDS.contains(&self.doc.lower(k).as_str()))
            .unwrap_or(self.range.end)
    }

    /// Coordinated entities from `i` (`X`, `X and Y`, `X, Y, and Z`), all of one type.
    fn list(&self, i: usize) -> Vec<Occurrence> {
        let mut out: Vec<Occurrence> = Vec::new();
        let mut at = i;
        while let Some(o) = self.after(at) {
            if out
                .first()
                .is_some_and(|f| self.type_of(f) != self.type_of(&o))
            {
                break;
            }
            out.push(o);
            let mut k = o.end;
            let mut conjunction = false;
            while k < self.range.end && matches!(self.doc.lower(k).as_str(), "," | "and" | "or") {
                conjunction |= self.doc.lower(k) != ",";
                k += 1;
            }
            if k == o.end {
                break;
            }
            let continues = self.after(k).is_some_and(|n| {
                conjunction || matches!(self.doc.lower(n.end).as_str(), "," | "and" | "or")
            });
            if !continues {
                break;
            }
            at = k;
        }
        out
    }

    fn relations(&self) -> Vec<FoundRelation> {
        let mut out = Vec::new();
        let add =
            |out: &mut Vec<FoundRelation>, s: Occurrence, t: Occurrence, kind, confidence: f64| {
                if s.entity != t.entity {
                    let confidence = if s.anaphor || t.anaphor {
                        confidence - 0.1
                    } else {
                        confidence
                    };
                    out.push((s.entity, t.entity, kind, confidence));
                }
            };
        for i in self.range.clone() {
            let word = self.doc.lower(i);
            let next = self.doc.lower(i + 1);
            if word == "for" {
                if let Some(x) = self.nearest_before(i, METHOD).filter(|x| i - x.end <= 10) {
                    for y in self
                        .list(i + 1)
                        .into_iter()
                        .filter(|y| self.type_of(y) == TASK)
                    {
                        add(&mut out, x, y, USED_FOR, 0.7);
                    }
                }
            }
            if TRAIN_VERBS.contains(&word.as_str()) && (next == "on" || next == "from") {
                if let Some(x) = self.nearest_before(i, METHOD) {
                    for d in self.list(i + 2) {
                        if matches!(self.type_of(&d), DATASET | "Material") {
                            add(&mut out, d, x, USED_FOR, 0.75);
                        }
                    }
                }
            }
            let usable = |y: &Occurrence| matches!(self.type_of(y), TASK | METHOD | OTHER);
            if USED_PASSIVE.contains(&word.as_str()) && (next == "for" || next == "to") {
                if let Some(x) = self.nearest_before(i, METHOD) {
                    for y in self.list(i + 2).into_iter().filter(usable) {
                        add(&mut out, x, y, USED_FOR, 0.75);
                    }
                }
            }
            if USE_ACTIVE.contains(&word.as_str()) {
                if let Some(x) = self.after(i + 1).filter(|x| self.type_of(x) == METHOD) {
                    if matches!(self.doc.lower(x.end).as_str(), "to" | "for") {
                        for y in self.list(x.end + 1).into_iter().filter(usable) {
                            add(&mut out, x, y, USED_FOR, 0.75);
                        }
                    }
                }
            }
            if TRAIN_ACTIVE.contains(&word.as_str()) && i > 0 && self.doc.lower(i - 1) == "we" {
                let models: Vec<Occurrence> = self
                    .list(i + 1)
                    .into_iter()
                    .filter(|x| self.type_of(x) == METHOD)
                    .collect();
                let on = models.last().map(|x| x.end);
                if let Some(on) =
                    on.filter(|&k| matches!(self.doc.lower(k).as_str(), "on" | "from"))
                {
                    for d in self.list(on + 1) {
                        if matches!(self.type_of(&d), DATASET | "Material") {
                            for x in &models {
                                add(&mut out, d, *x, USED_FOR, 0.75);
                            }
                        }
                    }
                }
            }
            if EXPERIMENT_NOUNS.contains(&word.as_str()) && matches!(next.as_str(), "on" | "across")
            {
                let data: Vec<Occurrence> = self
                    .list(i + 2)
                    .into_iter()
                    .filter(|d| self.type_of(d) == DATASET)
                    .collect();
                let after = data.last().map_or(i + 2, |d| d.end);
                let x = self
                    .occurrences
                    .iter()
                    .find(|o| o.start >= after && self.type_of(o) == METHOD)
                    .copied()
                    .or_else(|| self.nearest_before(i, METHOD));
                if let Some(x) = x {
                    for d in data {
                        add(&mut out, d, x, EVALUATE_FOR, 0.7);
                    }
                }
            }
            if EVALUATE_VERBS.contains(&word.as_str()) {
                let x = self
                    .after(i + 1)
                    .filter(|x| self.type_of(x) == METHOD)
                    .or_else(|| self.nearest_before(i, METHOD));
                if let Some(x) = x {
                    let end = self.clause_end(i + 1);
                    for o in self
                        .occurrences
                        .iter()
                        .filter(|o| o.start > i && o.end <= end)
                    {
                        if matches!(self.type_of(o), DATASET | METRIC) {
                            add(&mut out, *o, x, EVALUATE_FOR, 0.8);
                        }
                    }
                }
            }
            if RESULT_VERBS.contains(&word.as_str()) {
                if let Some(x) = self.nearest_before(i, METHOD) {
                    let stop = (i + 1..self.range.end)
                        .find(|&k| {
                            let w = self.doc.lower(k);
                            RESULT_VERBS.contains(&w.as_str())
                                || COMPARE_VERBS.contains(&w.as_str())
                        })
                        .unwrap_or(self.range.end)
                        .min(self.clause_end(i + 1));
                    for o in self
                        .occurrences
                        .iter()
                        .filter(|o| o.start > i && o.end <= stop)
                    {
                        if matches!(self.type_of(o), DATASET | METRIC) {
                            add(&mut out, *o, x, EVALUATE_FOR, 0.75);
                        }
                    }
                }
            }
            if let Some(from) = compare_objects_start(self.doc, i) {
                let others: Vec<Occurrence> = self
                    .list(from)
                    .into_iter()
                    .filter(|y| self.type_of(y) == METHOD)
                    .collect();
                let subject = self.nearest_before(i, METHOD).or_else(|| {
                    let after = others.last().map_or(from, |o| o.end);
                    self.occurrences
                        .iter()
                        .find(|o| o.start >= after && self.type_of(o) == METHOD)
                        .copied()
                });
                if let Some(x) = subject {
                    for y in others.into_iter().filter(|y| y.entity != x.entity) {
                        add(&mut out, x, y, COMPARE, 0.8);
                    }
                }
            }
            if PART_VERBS.contains(&word.as_str()) {
                if let Some(x) = self.nearest_before(i, METHOD) {
                    let end = self.clause_end(i + 1);
                    for o in self
                        .occurrences
                        .iter()
                        .filter(|o| o.start > i && o.end <= end)
                    {
                        if matches!(self.type_of(o), METHOD | OTHER) && !o.anaphor {
                            add(&mut out, *o, x, PART_OF, 0.65);
                        }
                    }
                }
            }
        }
        for pair in self.occurrences.windows(2) {
            let (a, b) = (pair[0], pair[1]);
            let between: Vec<String> = (a.end..b.start).map(|k| self.doc.lower(k)).collect();
            let listed = matches!(self.doc.lower(b.end).as_str(), "," | "and" | "or");
            let joined = match between
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>()
                .as_slice()
            {
                ["and"] | [",", "and"] | ["or"] => true,
                [","] => listed,
                _ => false,
            };
            let after_between = a.start > 0 && self.doc.lower(a.start - 1) == "between";
            if joined
                && !after_between
                && !a.anaphor
                && !b.anaphor
                && self.type_of(&a) == self.type_of(&b)
            {
                add(&mut out, a, b, CONJUNCTION, 0.6);
            }
        }
        out
    }
}

/// Extracts entities, relations and mentions from a section with the rules above.
pub fn extract_rules(section_text: &str) -> RawExtraction {
    let doc = Doc::new(section_text);
    let defs = acronyms(section_text);
    let mut store = Store::new(&defs);
    discover(&doc, &mut store, &defs);

    let mut mentions = Vec::new();
    let mut relations: Vec<RawRelation> = Vec::new();
    let mut seen: HashMap<(usize, usize, &'static str), usize> = HashMap::new();
    for range in &doc.sentences {
        let quote = doc.span(range.clone());
        let sentence = Sentence {
            doc: &doc,
            range: range.clone(),
            occurrences: occurrences(&doc, range.clone(), &store),
            store: &store,
            asides: asides(&doc, range),
        };
        let mut named: Vec<usize> = Vec::new();
        for o in sentence.occurrences.iter().filter(|o| !o.anaphor) {
            if !named.contains(&o.entity) {
                named.push(o.entity);
                mentions.push(RawMention {
                    entity: store.entities[o.entity].name.clone(),
                    evidence: quote.to_owned(),
                });
            }
        }
        for (s, t, kind, confidence) in sentence.relations() {
            let slot = if matches!(kind, COMPARE | CONJUNCTION) {
                (s.min(t), s.max(t), kind)
            } else {
                (s, t, kind)
            };
            match seen.get(&slot) {
                Some(&k) => {
                    if relations[k].confidence < confidence {
                        relations[k].confidence = confidence;
                        relations[k].evidence = quote.to_owned();
                    }
                }
                None => {
                    seen.insert(slot, relations.len());
                    relations.push(RawRelation {
                        source: store.entities[s].name.clone(),
                        target: store.entities[t].name.clone(),
                        relation_type: kind.to_owned(),
                        description: None,
                        confidence: (confidence * 100.0).round() / 100.0,
                        evidence: quote.to_owned(),
                    });
                }
            }
        }
    }
    RawExtraction {
        entities: store
            .entities
            .iter()
            .map(|e| RawEntity {
                name: e.name.clone(),
                entity_type: e.entity_type.to_owned(),
                description: None,
            })
            .collect(),
        relations,
        mentions,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::pipeline::model::Dropped;
    use crate::pipeline::validate::validate;

    const RELATION_EXTRACTION: &str = "Relation extraction from scientific text remains \
        difficult when labelled data are scarce. We propose GraphRel-Lite, a lightweight graph \
        attention network for document-level relation extraction. Unlike prior work, it encodes \
        each document as a heterogeneous graph (HG) whose nodes are mentions and sentences. We \
        evaluate GraphRel-Lite on the SciERC and DocRED datasets. GraphRel-Lite achieves an F1 \
        score of 48.2 on SciERC and outperforms BERT and SciBERT by a wide margin. Ablation \
        studies show that the heterogeneous graph contributes most of the gain.";

    const SEGMENTATION: &str = "Semantic segmentation of aerial images requires both local \
        detail and global context.\n\nIn this paper we introduce Dual-Path Context Network \
        (DPCN), which combines a convolutional neural network (CNN) branch with a vision \
        transformer (ViT) branch. DPCN is trained on the ISPRS Potsdam dataset and evaluated on \
        the LoveDA benchmark. Our model achieves a mean intersection over union (mIoU) of 74.1% \
        on LoveDA, and it surpasses SegFormer and UperNet while using fewer parameters. We \
        further apply DPCN to building extraction and observe consistent gains in precision and \
        recall.";

    const SPEECH: &str = "Automatic speech recognition (ASR) for low-resource languages \
        suffers from limited transcribed audio. We present a self-supervised pre-training \
        approach called PhonoMix that learns phonetic representations from untranscribed \
        speech. PhonoMix is applied to keyword spotting and speech recognition on the Common \
        Voice corpus. Compared with wav2vec 2.0, PhonoMix reduces the word error rate (WER) by \
        12% relative, and it achieves the lowest character error rate on the FLEURS benchmark. \
        These results suggest that phonetic pre-training is a practical alternative to purely \
        acoustic objectives.";

    fn entities(raw: &RawExtraction) -> BTreeSet<(String, String)> {
        raw.entities
            .iter()
            .map(|e| (e.name.clone(), e.entity_type.clone()))
            .collect()
    }

    fn relations(raw: &RawExtraction) -> BTreeSet<(String, String, String, u32)> {
        raw.relations
            .iter()
            .map(|r| {
                (
                    r.source.clone(),
                    r.relation_type.clone(),
                    r.target.clone(),
                    (r.confidence * 100.0).round() as u32,
                )
            })
            .collect()
    }

    fn set<const N: usize>(items: [(&str, &str); N]) -> BTreeSet<(String, String)> {
        items
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    fn rel<const N: usize>(
        items: [(&str, &str, &str, u32); N],
    ) -> BTreeSet<(String, String, String, u32)> {
        items
            .iter()
            .map(|(s, k, t, c)| (s.to_string(), k.to_string(), t.to_string(), *c))
            .collect()
    }

    /// Validation keeps every item: no quote, type or name the rules produce is rejected.
    fn assert_validation_keeps_everything(raw: &RawExtraction, text: &str) {
        let out = validate(raw, text, 0.6);
        assert_eq!(out.dropped, Dropped::default());
        assert_eq!(out.entities.len(), raw.entities.len());
        assert_eq!(out.relations.len(), raw.relations.len());
        assert_eq!(out.mentions.len(), raw.mentions.len());
        for m in &out.mentions {
            let at: String = text
                .chars()
                .skip(m.quote.start as usize)
                .take((m.quote.end - m.quote.start) as usize)
                .collect();
            assert_eq!(at, m.quote.text);
        }
    }

    #[test]
    fn relation_extraction_abstract() {
        let raw = extract_rules(RELATION_EXTRACTION);
        assert_eq!(
            entities(&raw),
            set([
                ("heterogeneous graph", "OtherScientificTerm"),
                ("GraphRel-Lite", "Method"),
                ("SciERC", "Dataset"),
                ("DocRED", "Dataset"),
                ("F1 score", "Metric"),
                ("Relation extraction", "Task"),
                ("document-level relation extraction", "Task"),
                ("BERT", "Method"),
                ("SciBERT", "Method"),
            ])
        );
        assert_eq!(
            relations(&raw),
            rel([
                (
                    "GraphRel-Lite",
                    "USED-FOR",
                    "document-level relation extraction",
                    70
                ),
                ("SciERC", "EVALUATE-FOR", "GraphRel-Lite", 80),
                ("DocRED", "EVALUATE-FOR", "GraphRel-Lite", 80),
                ("SciERC", "CONJUNCTION", "DocRED", 60),
                ("F1 score", "EVALUATE-FOR", "GraphRel-Lite", 75),
                ("GraphRel-Lite", "COMPARE", "BERT", 80),
                ("GraphRel-Lite", "COMPARE", "SciBERT", 80),
                ("BERT", "CONJUNCTION", "SciBERT", 60),
            ])
        );
        assert_validation_keeps_everything(&raw, RELATION_EXTRACTION);
    }

    #[test]
    fn segmentation_abstract() {
        let raw = extract_rules(SEGMENTATION);
        assert_eq!(
            entities(&raw),
            set([
                ("Dual-Path Context Network", "Method"),
                ("convolutional neural network", "Method"),
                ("vision transformer", "Method"),
                ("mean intersection over union", "Metric"),
                ("ISPRS Potsdam", "Dataset"),
                ("LoveDA", "Dataset"),
                ("precision", "Metric"),
                ("recall", "Metric"),
                ("Semantic segmentation", "Task"),
                ("building extraction", "Task"),
                ("SegFormer", "Method"),
                ("UperNet", "Method"),
            ])
        );
        let dpcn = "Dual-Path Context Network";
        assert_eq!(
            relations(&raw),
            rel([
                ("convolutional neural network", "PART-OF", dpcn, 65),
                ("vision transformer", "PART-OF", dpcn, 65),
                ("ISPRS Potsdam", "USED-FOR", dpcn, 75),
                ("LoveDA", "EVALUATE-FOR", dpcn, 80),
                ("mean intersection over union", "EVALUATE-FOR", dpcn, 65),
                (dpcn, "COMPARE", "SegFormer", 70),
                (dpcn, "COMPARE", "UperNet", 70),
                ("SegFormer", "CONJUNCTION", "UperNet", 60),
                (dpcn, "USED-FOR", "building extraction", 75),
                ("precision", "CONJUNCTION", "recall", 60),
            ])
        );
        assert_validation_keeps_everything(&raw, SEGMENTATION);
    }

    #[test]
    fn speech_abstract() {
        let raw = extract_rules(SPEECH);
        assert_eq!(
            entities(&raw),
            set([
                ("Automatic speech recognition", "Task"),
                ("word error rate", "Metric"),
                ("PhonoMix", "Method"),
                ("Common Voice", "Dataset"),
                ("FLEURS", "Dataset"),
                ("character error rate", "Metric"),
                ("keyword spotting", "Task"),
                ("speech recognition", "Task"),
                ("wav2vec 2.0", "Method"),
            ])
        );
        assert_eq!(
            relations(&raw),
            rel([
                ("PhonoMix", "USED-FOR", "keyword spotting", 75),
                ("PhonoMix", "USED-FOR", "speech recognition", 75),
                ("keyword spotting", "CONJUNCTION", "speech recognition", 60),
                ("PhonoMix", "COMPARE", "wav2vec 2.0", 80),
                ("word error rate", "EVALUATE-FOR", "PhonoMix", 75),
                ("character error rate", "EVALUATE-FOR", "PhonoMix", 75),
                ("FLEURS", "EVALUATE-FOR", "PhonoMix", 75),
            ])
        );
        assert_validation_keeps_everything(&raw, SPEECH);
    }

    #[test]
    fn experiments_training_and_relative_clauses() {
        let molecules = "Graph neural networks (GNNs) have been applied to molecular property \
            prediction. We present MolGraph, a message passing network that combines edge \
            features and 3D coordinates. Experiments on QM9 and ZINC show that MolGraph reduces \
            the mean absolute error (MAE) compared with SchNet and DimeNet.";
        let raw = extract_rules(molecules);
        assert_eq!(
            entities(&raw),
            set([
                ("Graph neural networks", "Method"),
                ("mean absolute error", "Metric"),
                ("MolGraph", "Method"),
                ("QM9", "Dataset"),
                ("ZINC", "Dataset"),
                ("molecular property prediction", "Task"),
                ("SchNet", "Method"),
                ("DimeNet", "Method"),
            ])
        );
        assert_eq!(
            relations(&raw),
            rel([
                (
                    "Graph neural networks",
                    "USED-FOR",
                    "molecular property prediction",
                    75
                ),
                ("QM9", "EVALUATE-FOR", "MolGraph", 70),
                ("ZINC", "EVALUATE-FOR", "MolGraph", 70),
                ("QM9", "CONJUNCTION", "ZINC", 60),
                ("mean absolute error", "EVALUATE-FOR", "MolGraph", 75),
                ("MolGraph", "COMPARE", "SchNet", 80),
                ("MolGraph", "COMPARE", "DimeNet", 80),
                ("SchNet", "CONJUNCTION", "DimeNet", 60),
            ])
        );
        assert_validation_keeps_everything(&raw, molecules);

        let entities_text = "In this work, we introduce a new benchmark called BioNER-X for \
            biomedical entity recognition. We fine-tune BERT and RoBERTa on BioNER-X. Our \
            approach, which uses conditional random fields (CRFs) on top of an encoder, achieves \
            89.3 micro-F1 on the NCBI disease corpus, outperforming BioBERT.";
        let raw = extract_rules(entities_text);
        assert_eq!(
            entities(&raw),
            set([
                ("conditional random fields", "Method"),
                ("BioNER-X", "Dataset"),
                ("NCBI disease", "Dataset"),
                ("micro-F1", "Metric"),
                ("biomedical entity recognition", "Task"),
                ("BERT", "Method"),
                ("RoBERTa", "Method"),
                ("BioBERT", "Method"),
            ])
        );
        assert_eq!(
            relations(&raw),
            rel([
                ("BioNER-X", "USED-FOR", "BERT", 75),
                ("BioNER-X", "USED-FOR", "RoBERTa", 75),
                ("BERT", "CONJUNCTION", "RoBERTa", 60),
            ]),
            "the conditional random fields are in a relative clause: not the subject"
        );
        assert_validation_keeps_everything(&raw, entities_text);
    }

    #[test]
    fn versioned_names_that_perform_are_methods() {
        let text = "On LibriSpeech, wav2vec 2.0 achieves a WER of 1.8. The Transformer is \
            evaluated on the same data.";
        let raw = extract_rules(text);
        assert_eq!(
            entities(&raw),
            set([
                ("LibriSpeech", "Dataset"),
                ("WER", "Metric"),
                ("wav2vec 2.0", "Method"),
                ("Transformer", "Method"),
            ])
        );
        assert_eq!(
            relations(&raw),
            rel([("WER", "EVALUATE-FOR", "wav2vec 2.0", 75)])
        );
        assert_validation_keeps_everything(&raw, text);
    }

    #[test]
    fn organisations_defined_by_acronym_are_left_out() {
        let raw = extract_rules(
            "This work was supported by the National Science Foundation (NSF). Runs used \
             8 NVIDIA A100 GPUs.",
        );
        assert_eq!(raw, RawExtraction::default());
    }

    #[test]
    fn every_sentence_naming_an_entity_is_a_mention() {
        let raw = extract_rules(SEGMENTATION);
        let of = |name: &str| -> Vec<&str> {
            raw.mentions
                .iter()
                .filter(|m| m.entity == name)
                .map(|m| m.evidence.as_str())
                .collect()
        };
        let dpcn = of("Dual-Path Context Network");
        assert_eq!(dpcn.len(), 3, "{dpcn:?}");
        assert!(dpcn[1].starts_with("DPCN is trained on"));
        assert!(dpcn[2].starts_with("We further apply DPCN"));
        assert_eq!(of("LoveDA").len(), 2);
        assert_eq!(
            of("Semantic segmentation"),
            ["Semantic segmentation of aerial images requires both local detail and global context."]
        );
        let out = validate(&raw, SEGMENTATION, 0.6);
        let dpcn = out
            .entities
            .iter()
            .find(|e| e.name == "Dual-Path Context Network")
            .expect("kept");
        assert_eq!(dpcn.aliases, ["DPCN"]);
    }

    #[test]
    fn output_is_deterministic_and_empty_for_plain_text() {
        assert_eq!(extract_rules(SPEECH), extract_rules(SPEECH));
        assert_eq!(
            extract_rules("We thank the reviewers for their helpful comments."),
            RawExtraction::default()
        );
        assert_eq!(extract_rules(""), RawExtraction::default());
    }

    #[test]
    fn tokens_and_sentences() {
        let text = "We use e.g. CIFAR-10 (74.1%) and C++.\n\nNext, GPT-2 wins. 3 runs.";
        let doc = Doc::new(text);
        let words: Vec<&str> = doc.tokens.iter().map(|t| t.text).collect();
        assert_eq!(
            words,
            [
                "We", "use", "e.g", ".", "CIFAR-10", "(", "74.1", "%", ")", "and", "C++", ".",
                "Next", ",", "GPT-2", "wins", ".", "3", "runs", "."
            ]
        );
        let spans: Vec<&str> = doc.sentences.iter().map(|r| doc.span(r.clone())).collect();
        assert_eq!(
            spans,
            [
                "We use e.g. CIFAR-10 (74.1%) and C++.",
                "Next, GPT-2 wins.",
                "3 runs."
            ]
        );
    }

    #[test]
    fn provenance_names_the_rules() {
        let p = provenance();
        assert_eq!(
            (
                p.agent.as_str(),
                p.model.as_str(),
                p.prompt_version.as_str()
            ),
            ("offline-rules", "offline", "rules-v1")
        );
    }
}
