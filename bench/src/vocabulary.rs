//! The words generated papers, sections and entities are made of. The load driver's search
//! queries (Q6) draw from [`SEARCH_TERMS`], every one of which the generator uses.

/// Topic words: titles, abstracts and section texts are sentences over these.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_search_term_is_a_topic_word() {
        for term in SEARCH_TERMS {
            assert!(TOPICS.contains(term), "{term} is never generated");
        }
    }
}
