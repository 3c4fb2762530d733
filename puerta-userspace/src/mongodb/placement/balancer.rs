//! Smooth weighted round-robin, as nginx does it: weights 5/1/1 give `a a b a c a a`, so a heavy backend
//! gets its share spread out instead of in bursts that would pile new clients onto it at once.

use std::sync::Mutex;

/// The algorithm's state. Not thread-safe on its own; [`Balancer`] wraps it for shared use.
#[derive(Debug, Clone)]
pub struct SmoothWeighted {
    weights: Vec<i64>,
    current: Vec<i64>,
}

impl SmoothWeighted {
    pub fn new(weights: impl IntoIterator<Item = u32>) -> SmoothWeighted {
        let weights: Vec<i64> = weights.into_iter().map(i64::from).collect();
        let current = vec![0; weights.len()];
        SmoothWeighted { weights, current }
    }

    /// Picks the next backend among those for which `eligible(index)` holds; `None` if there is none.
    /// Ineligible backends keep their accumulated weight untouched, so they rejoin fairly.
    pub fn pick(&mut self, eligible: impl Fn(usize) -> bool) -> Option<usize> {
        let mut total = 0;
        let mut best: Option<usize> = None;
        for i in 0..self.weights.len() {
            if !eligible(i) {
                continue;
            }
            self.current[i] += self.weights[i];
            total += self.weights[i];
            if best.is_none_or(|b| self.current[i] > self.current[b]) {
                best = Some(i);
            }
        }
        let chosen = best?;
        self.current[chosen] -= total;
        Some(chosen)
    }
}

/// [`SmoothWeighted`] shared by all accepting tasks. The critical section is a few additions, so a plain
/// mutex is cheaper than anything clever.
#[derive(Debug)]
pub struct Balancer {
    state: Mutex<SmoothWeighted>,
}

impl Balancer {
    pub fn new(weights: impl IntoIterator<Item = u32>) -> Balancer {
        Balancer {
            state: Mutex::new(SmoothWeighted::new(weights)),
        }
    }

    pub fn pick(&self, eligible: impl Fn(usize) -> bool) -> Option<usize> {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pick(eligible)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sequence(weights: &[u32], n: usize, eligible: impl Fn(usize) -> bool) -> Vec<usize> {
        let mut swrr = SmoothWeighted::new(weights.iter().copied());
        (0..n)
            .map(|_| swrr.pick(&eligible).expect("one is eligible"))
            .collect()
    }

    #[test]
    fn weights_5_1_1_give_the_nginx_sequence() {
        let seq = sequence(&[5, 1, 1], 7, |_| true);
        assert_eq!(seq, vec![0, 0, 1, 0, 2, 0, 0]);
        // The sequence repeats exactly every sum-of-weights picks.
        assert_eq!(sequence(&[5, 1, 1], 14, |_| true)[7..], seq[..]);
    }

    #[test]
    fn proportions_follow_weights() {
        let seq = sequence(&[5, 1, 1], 700, |_| true);
        let count = |b| seq.iter().filter(|&&x| x == b).count();
        assert_eq!((count(0), count(1), count(2)), (500, 100, 100));
    }

    #[test]
    fn equal_weights_cycle() {
        assert_eq!(sequence(&[1, 1, 1], 6, |_| true), vec![0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn unhealthy_backends_are_skipped() {
        let seq = sequence(&[5, 1, 1], 100, |i| i != 0);
        assert!(!seq.contains(&0));
        assert_eq!(seq.iter().filter(|&&x| x == 1).count(), 50);
    }

    #[test]
    fn nothing_eligible_gives_none() {
        let mut swrr = SmoothWeighted::new([1, 2]);
        assert_eq!(swrr.pick(|_| false), None);
        let mut empty = SmoothWeighted::new([]);
        assert_eq!(empty.pick(|_| true), None);
    }

    #[test]
    fn shared_balancer_picks() {
        let b = Balancer::new([1, 3]);
        let picks: Vec<_> = (0..4).map(|_| b.pick(|_| true).unwrap()).collect();
        assert_eq!(picks.iter().filter(|&&x| x == 1).count(), 3);
    }
}
