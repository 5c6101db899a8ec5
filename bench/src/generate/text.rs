//! Generated prose, entity names and the skewed choice of nodes.

use rand::seq::SliceRandom;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::vocabulary::{ACCENTED, CONNECTIVES, TOPICS};

/// A word of prose: mostly topic words, some connectives, now and then an accented one.
pub fn word(rng: &mut ChaCha8Rng) -> &'static str {
    let roll = rng.random_range(0..100u32);
    if roll < 62 {
        TOPICS[rng.random_range(0..TOPICS.len())]
    } else if roll < 99 {
        CONNECTIVES[rng.random_range(0..CONNECTIVES.len())]
    } else {
        ACCENTED[rng.random_range(0..ACCENTED.len())]
    }
}

/// Appends a sentence of `words` words (capitalised, ending with a full stop) to `out`,
/// preceded by a space unless `out` is empty; returns the number of words.
pub fn sentence(rng: &mut ChaCha8Rng, out: &mut String, words: usize) -> usize {
    if !out.is_empty() {
        out.push(' ');
    }
    for i in 0..words {
        let w = word(rng);
        if i == 0 {
            push_capitalised(out, w);
        } else {
            out.push(' ');
            out.push_str(w);
        }
    }
    out.push('.');
    words
}

/// Appends `w` with its first letter in upper case.
pub fn push_capitalised(out: &mut String, w: &str) {
    let mut chars = w.chars();
    if let Some(first) = chars.next() {
        out.extend(first.to_uppercase());
        out.push_str(chars.as_str());
    }
}

/// How the topic words are ordered in one tenant's entity names: a permutation drawn from the
/// tenant's generator, so that tenants (and seeds) name their entities differently.
pub struct Namer {
    words: Vec<&'static str>,
}

impl Namer {
    /// The names of a tenant whose vocabulary generator is `rng`.
    pub fn new(rng: &mut ChaCha8Rng) -> Namer {
        let mut words = TOPICS.to_vec();
        words.shuffle(rng);
        Namer { words }
    }

    /// The name of node `i`: two topic words for the first n² nodes, three for the next n³,
    /// then three words and a number; distinct for distinct `i`, lower case (its own key). The
    /// words of consecutive nodes differ, and the two words of the first n(n-1) nodes do too.
    pub fn name(&self, i: u64) -> String {
        let n = self.words.len() as u64;
        let w = |d: u64| self.words[(d % n) as usize];
        // Digits of i in base n, each word shifted by the digits below it: still one name per i.
        let digits = |j: u64| (j % n, (j / n) % n, j / (n * n));
        if i < n * n {
            let (r, q, _) = digits(i);
            format!("{} {}", w(r), w(q + r + 1))
        } else if i < n * n + n * n * n {
            let (r, q, h) = digits(i - n * n);
            format!("{} {} {}", w(r), w(q + r + 1), w(h + q + r + 2))
        } else {
            let j = i - n * n - n * n * n;
            let (r, q, h) = digits(j % (n * n * n));
            format!(
                "{} {} {} {}",
                w(r),
                w(q + r + 1),
                w(h + q + r + 2),
                j / (n * n * n) + 2
            )
        }
    }
}

/// The acronym of a name ("graph neural network" → "GNN").
pub fn acronym(name: &str) -> String {
    name.split(' ')
        .filter_map(|w| w.chars().next())
        .flat_map(char::to_uppercase)
        .collect()
}

/// A Zipf-like distribution over `0..n`: index `i` is drawn with a probability proportional to
/// `1 / (i + 1)^s`, so index 0 is the most likely by far.
pub struct Zipf {
    cumulative: Vec<f64>,
}

impl Zipf {
    /// The distribution over `0..n` (n ≥ 1) with exponent `s`.
    pub fn new(n: u64, s: f64) -> Zipf {
        let mut total = 0.0;
        let cumulative = (0..n)
            .map(|i| {
                total += 1.0 / ((i + 1) as f64).powf(s);
                total
            })
            .collect();
        Zipf { cumulative }
    }

    /// An index drawn from the distribution.
    pub fn sample(&self, rng: &mut ChaCha8Rng) -> u64 {
        let total = *self.cumulative.last().expect("a non-empty distribution");
        let u = rng.random::<f64>() * total;
        let i = self.cumulative.partition_point(|&c| c <= u);
        i.min(self.cumulative.len() - 1) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use std::collections::HashSet;

    #[test]
    fn names_are_distinct() {
        let namer = Namer::new(&mut ChaCha8Rng::seed_from_u64(7));
        let n = TOPICS.len() as u64;
        let mut seen = HashSet::new();
        let probes = (0..6000).chain(n * n * n + n * n - 50..n * n * n + n * n + 5000);
        for i in probes {
            assert!(seen.insert(namer.name(i)), "name of {i} repeats");
        }
        assert_eq!(acronym("graph neural network"), "GNN");
    }

    #[test]
    fn zipf_favours_low_indexes() {
        let zipf = Zipf::new(1000, 1.0);
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut counts = vec![0u32; 1000];
        for _ in 0..100_000 {
            counts[zipf.sample(&mut rng) as usize] += 1;
        }
        assert!(
            counts[0] > 10 * counts[99],
            "{} vs {}",
            counts[0],
            counts[99]
        );
        assert!(counts[0] > counts[1] && counts[1] > counts[9]);
    }
}
