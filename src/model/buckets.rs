//! Fixed shapes for the graphs whose leading dimension varies (images per encoder call, objects
//! per decoder call). cuDNN keeps one plan per convolution for its last input shape only, so on
//! a GPU every change of shape rebuilds every plan; a count padded up to one of a few bucket
//! sizes, each run by its own session, keeps every convolution on one shape. SAM's images and
//! objects are independent along that dimension, so padding never changes a real result.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Bucket sizes as configured (`--encoder-batch-buckets`, `--decoder-object-buckets`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub enum BucketChoice {
    /// Powers of two up to a graph-specific largest size on a GPU; exact counts on the CPU,
    /// which keeps no per-shape state and would only pay for the padding.
    Auto,
    /// Every count runs as it is, in one session.
    Exact,
    /// These sizes, ascending; a count above the largest runs at its own size.
    Sizes(Vec<usize>),
}

impl BucketChoice {
    /// The buckets on this provider; `gpu_largest` bounds the powers of two of `Auto` on a GPU.
    pub fn resolve(&self, on_gpu: bool, gpu_largest: usize) -> ShapeBuckets {
        match self {
            BucketChoice::Auto if on_gpu => {
                ShapeBuckets::Sizes(std::iter::successors(Some(1usize), |s| Some(s * 2)).take_while(|&s| s <= gpu_largest).collect())
            }
            BucketChoice::Auto | BucketChoice::Exact => ShapeBuckets::Exact,
            BucketChoice::Sizes(sizes) => ShapeBuckets::Sizes(sizes.clone()),
        }
    }
}

impl FromStr for BucketChoice {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim() {
            "auto" => return Ok(BucketChoice::Auto),
            "exact" => return Ok(BucketChoice::Exact),
            _ => {}
        }
        let mut sizes = text
            .split(',')
            .map(|s| s.trim().parse::<usize>().ok().filter(|&n| n > 0))
            .collect::<Option<Vec<usize>>>()
            .ok_or_else(|| format!("{text:?}: expected auto, exact or positive sizes separated by commas (1,2,4,8)"))?;
        sizes.sort_unstable();
        sizes.dedup();
        Ok(BucketChoice::Sizes(sizes))
    }
}

impl fmt::Display for BucketChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BucketChoice::Auto => f.write_str("auto"),
            BucketChoice::Exact => f.write_str("exact"),
            BucketChoice::Sizes(sizes) => f.write_str(&sizes.iter().map(usize::to_string).collect::<Vec<_>>().join(",")),
        }
    }
}

impl From<BucketChoice> for String {
    fn from(choice: BucketChoice) -> Self {
        choice.to_string()
    }
}

impl TryFrom<String> for BucketChoice {
    type Error = String;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        text.parse()
    }
}

/// The shapes a graph really runs at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShapeBuckets {
    Exact,
    /// Ascending, non-empty.
    Sizes(Vec<usize>),
}

impl ShapeBuckets {
    /// The leading dimension `count` items run at: the smallest bucket that holds them, or
    /// `count` itself when none does (or with exact shapes).
    pub fn shape_for(&self, count: usize) -> usize {
        match self {
            ShapeBuckets::Exact => count,
            ShapeBuckets::Sizes(sizes) => sizes.iter().copied().find(|&size| size >= count).unwrap_or(count),
        }
    }

    /// Which session runs `shape`: with fixed shapes each shape has its own (keyed by the
    /// shape), with exact shapes one session runs every size (key 0).
    pub fn session_key(&self, shape: usize) -> usize {
        match self {
            ShapeBuckets::Exact => 0,
            ShapeBuckets::Sizes(_) => shape,
        }
    }

    /// The largest bucket, where counts are padded.
    pub fn largest(&self) -> Option<usize> {
        match self {
            ShapeBuckets::Exact => None,
            ShapeBuckets::Sizes(sizes) => sizes.last().copied(),
        }
    }

    /// The buckets counts up to `most` run at, each with the largest count that runs at it
    /// (what a warm-up runs, so that every bucket's session exists and has run before serving).
    pub fn up_to(&self, most: usize) -> Vec<(usize, usize)> {
        let mut runs: Vec<(usize, usize)> = Vec::new();
        for count in 1..=most.max(1) {
            let shape = self.shape_for(count);
            match runs.last_mut() {
                Some((last, largest)) if *last == shape => *largest = count,
                _ => runs.push((shape, count)),
            }
        }
        runs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_padded_up_to_the_next_bucket() {
        let buckets: BucketChoice = "8, 1,2,4,2".parse().unwrap();
        assert_eq!(buckets.to_string(), "1,2,4,8");
        let buckets = buckets.resolve(false, 8);
        assert_eq!((1..=10).map(|n| buckets.shape_for(n)).collect::<Vec<_>>(), vec![1, 2, 4, 4, 8, 8, 8, 8, 9, 10]);
        assert_eq!(buckets.up_to(5), vec![(1, 1), (2, 2), (4, 4), (8, 5)]);
        assert_eq!(ShapeBuckets::Exact.up_to(3), vec![(1, 1), (2, 2), (3, 3)]);
        assert!("0,2".parse::<BucketChoice>().is_err() && "two".parse::<BucketChoice>().is_err());
    }

    #[test]
    fn auto_pads_on_a_gpu_only() {
        assert_eq!(BucketChoice::Auto.resolve(true, 64), ShapeBuckets::Sizes(vec![1, 2, 4, 8, 16, 32, 64]));
        assert_eq!(BucketChoice::Auto.resolve(false, 64), ShapeBuckets::Exact);
        assert_eq!(BucketChoice::Exact.resolve(true, 8), ShapeBuckets::Exact);
    }
}
