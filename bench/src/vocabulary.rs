//! The words generated papers, sections and entities are made of. The load driver's search
//! queries (Q6) draw from [`SEARCH_TERMS`], every one of which the generator uses.

/// Topic words: titles, abstracts and section texts are sentences over these.
#[rustfmt::skip]
pub const TOPICS: &[&str] = &[
    "graph",
    "neural",
    "network",
    "attention",
    "transformer",
    "embedding",
    "molecular",
    "property",
    "prediction",
    "contrastive",
    "learning",
    "representation",
    "sparse",
    "message",
    "passing",
    "diffusion",
    "generative",
    "protein",
    "structure",
    "retrieval",
    "language",
    "model",
    "benchmark",
    "robust",
    "adversarial",
    "causal",
    "inference",
    "kernel",
    "spectral",
    "clustering",
    "link",
    "node",
    "classification",
    "regression",
    "optimisation",
    "gradient",
    "pretraining",
    "finetuning",
    "scalable",
    "efficient",
    "uncertainty",
    "calibration",
    "equivariant",
    "symmetry",
    "physics",
    "simulation",
    "quantum",
    "chemistry",
    "material",
    "crystal",
    "reaction",
    "synthesis",
    "knowledge",
    "reasoning",
    "temporal",
    "dynamic",
    "heterogeneous",
    "hypergraph",
    "pooling",
    "readout",
    "positional",
    "encoding",
    "curvature",
    "oversmoothing",
    "expressivity",
    "isomorphism",
    "subgraph",
    "motif",
    "sampling",
    "augmentation",
];

/// What the load driver searches for (Q6): single topic words, each in many generated papers.
#[rustfmt::skip]
pub const SEARCH_TERMS: &[&str] = &[
    "graph",
    "attention",
    "molecular",
    "contrastive",
    "diffusion",
    "protein",
    "retrieval",
    "benchmark",
    "causal",
    "spectral",
    "clustering",
    "equivariant",
    "quantum",
    "reaction",
    "knowledge",
    "temporal",
    "hypergraph",
    "expressivity",
    "subgraph",
    "augmentation",
];

/// Short words between topic words, so that generated sentences read like prose (and give the
/// English text-search configuration stop words to drop).
#[rustfmt::skip]
pub const CONNECTIVES: &[&str] = &[
    "we", "propose", "a", "the", "for", "with", "of", "on", "and", "show", "that", "using",
    "improves", "under", "via", "from", "over", "evaluate", "study", "compare", "across", "novel",
];

/// Words with characters outside ASCII, mixed into section texts now and then: mention offsets
/// count characters, not bytes, and these keep the two apart.
#[rustfmt::skip]
pub const ACCENTED: &[&str] = &[
    "naïve", "Schrödinger", "Hückel", "Fréchet", "Erdős–Rényi", "Poincaré",
];

/// Given names of generated authors.
#[rustfmt::skip]
pub const GIVEN_NAMES: &[&str] = &[
    "Ada", "Alan", "Amara", "Bo", "Chen", "Dara", "Elena", "Farid", "Grace", "Hiro", "Ines",
    "Jonas", "Kofi", "Lena", "Mateo", "Nadia", "Omar", "Priya", "Quinn", "Rosa", "Sven", "Tariq",
    "Uma", "Wei", "Yara", "Zoë",
];

/// Family names of generated authors.
#[rustfmt::skip]
pub const FAMILY_NAMES: &[&str] = &[
    "Adeyemi", "Bianchi", "Chen", "Dubois", "Eriksson", "Fischer", "García", "Haddad", "Ivanova",
    "Jensen", "Kim", "Li", "Müller", "Nakamura", "Okafor", "Patel", "Quispe", "Rossi", "Sørensen",
    "Tanaka", "Usman", "Virtanen", "Wang", "Yilmaz", "Zhang",
];

/// Venues of generated papers.
#[rustfmt::skip]
pub const VENUES: &[&str] = &[
    "NeurIPS", "ICML", "ICLR", "KDD", "WWW", "AAAI", "ACL", "EMNLP", "Nature Communications",
    "Journal of Chemical Information and Modeling", "Bioinformatics", "Physical Review B",
    "Transactions on Machine Learning Research", "arXiv preprint",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_search_term_is_a_topic_word() {
        for term in SEARCH_TERMS {
            assert!(TOPICS.contains(term), "{term} is never generated");
        }
    }

    #[test]
    fn topic_words_are_distinct_lowercase_ascii() {
        // Entity names are made of topic words and are their own keys.
        let mut seen = std::collections::HashSet::new();
        for word in TOPICS {
            assert!(word.bytes().all(|b| b.is_ascii_lowercase()), "{word}");
            assert!(seen.insert(word), "{word} twice");
        }
    }
}
