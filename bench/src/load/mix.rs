//! The query mix: `q1=1,q3=2` (weights), `q3` (only that query), `q1,q3` (equal weights).

use std::fmt;
use std::str::FromStr;

use anyhow::{bail, Context, Error, Result};
use rand::Rng;

/// Queries and their weights, in the order given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mix {
    entries: Vec<(String, u32)>,
    /// Running sums of the weights, for picking.
    cumulative: Vec<u64>,
}

impl Mix {
    /// The queries and weights, in the order given.
    pub fn entries(&self) -> &[(String, u32)] {
        &self.entries
    }

    /// The index of a query drawn with probability proportional to its weight.
    pub fn pick<R: Rng>(&self, rng: &mut R) -> usize {
        let total = *self.cumulative.last().expect("a mix is never empty");
        let x = rng.random_range(0..total);
        self.cumulative.partition_point(|&c| c <= x)
    }
}

impl FromStr for Mix {
    type Err = Error;

    fn from_str(text: &str) -> Result<Mix> {
        let mut entries: Vec<(String, u32)> = Vec::new();
        for part in text.split(',') {
            let part = part.trim();
            if part.is_empty() {
                bail!("an empty entry in the mix {text:?}");
            }
            let (name, weight) = match part.split_once('=') {
                Some((name, weight)) => {
                    let weight: u32 = weight
                        .trim()
                        .parse()
                        .with_context(|| format!("the weight of {part:?} is not a number"))?;
                    (name.trim(), weight)
                }
                None => (part, 1),
            };
            if name.is_empty()
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            {
                bail!("{name:?} is not a query name (letters, digits, '_' and '-')");
            }
            if weight == 0 {
                bail!("the weight of {name} is 0; leave the query out instead");
            }
            if entries.iter().any(|(n, _)| n == name) {
                bail!("{name} appears twice in the mix");
            }
            entries.push((name.to_owned(), weight));
        }
        let cumulative = entries
            .iter()
            .scan(0u64, |sum, (_, w)| {
                *sum += u64::from(*w);
                Some(*sum)
            })
            .collect();
        Ok(Mix {
            entries,
            cumulative,
        })
    }
}

impl fmt::Display for Mix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (name, weight)) in self.entries.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{name}={weight}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn parse(text: &str) -> Vec<(String, u32)> {
        text.parse::<Mix>().unwrap().entries().to_vec()
    }

    #[test]
    fn parses_weights_single_names_and_lists() {
        assert_eq!(
            parse("q1=1,q3=2"),
            [("q1".to_owned(), 1), ("q3".to_owned(), 2)]
        );
        assert_eq!(parse("q3"), [("q3".to_owned(), 1)]);
        assert_eq!(
            parse(" q1 , q2 = 5 "),
            [("q1".to_owned(), 1), ("q2".to_owned(), 5)]
        );
        assert_eq!("q1=1,q3=2".parse::<Mix>().unwrap().to_string(), "q1=1,q3=2");
    }

    #[test]
    fn rejects_bad_mixes() {
        for bad in [
            "", "q1,", ",q1", "q1=0", "q1=-1", "q1=x", "q1=", "=2", "q1,q1=2", "../q1", "q 1",
        ] {
            assert!(bad.parse::<Mix>().is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn picks_in_proportion_to_the_weights() {
        let mix: Mix = "a=1,b=3".parse().unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let mut counts = [0u32; 2];
        for _ in 0..40_000 {
            counts[mix.pick(&mut rng)] += 1;
        }
        let share = f64::from(counts[1]) / 40_000.0;
        assert!((0.73..0.77).contains(&share), "b drawn {share} of the time");

        let single: Mix = "q3".parse().unwrap();
        assert!((0..100).all(|_| single.pick(&mut rng) == 0));
    }
}
