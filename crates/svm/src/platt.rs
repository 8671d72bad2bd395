//! Platt scaling: a sigmoid that maps SVM decision values to probabilities.
//!
//! Fits `P(y = 1 | s) = 1 / (1 + exp(A·s + B))` by maximum likelihood with
//! Platt's smoothed targets, using the Newton method with backtracking of
//! Lin, Lin and Weng ("A note on Platt's probabilistic outputs for support
//! vector machines", Machine Learning 68, 2007), which avoids overflow.

/// The fitted sigmoid.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PlattScaling {
    pub a: f32,
    pub b: f32,
}

impl Default for PlattScaling {
    /// A sigmoid of slope 1 through 0.5 at a decision value of 0.
    fn default() -> PlattScaling {
        PlattScaling { a: -1.0, b: 0.0 }
    }
}

impl PlattScaling {
    /// Fits the sigmoid to decision values and their true labels.
    ///
    /// Returns the default sigmoid when either class is missing, since the
    /// likelihood then has no finite maximum.
    pub fn fit(scores: &[f32], labels: &[bool]) -> PlattScaling {
        let positives = labels.iter().filter(|&&l| l).count() as f64;
        let negatives = labels.len() as f64 - positives;
        if positives == 0.0 || negatives == 0.0 {
            return PlattScaling::default();
        }

        let high_target = (positives + 1.0) / (positives + 2.0);
        let low_target = 1.0 / (negatives + 2.0);
        let targets: Vec<f64> = labels.iter().map(|&l| if l { high_target } else { low_target }).collect();
        let scores: Vec<f64> = scores.iter().map(|&s| s as f64).collect();

        let (mut a, mut b) = (0.0f64, ((negatives + 1.0) / (positives + 1.0)).ln());
        let mut objective = negative_log_likelihood(&scores, &targets, a, b);
        const SIGMA: f64 = 1e-12;

        for _ in 0..100 {
            let (mut h11, mut h22, mut h21, mut g1, mut g2) = (SIGMA, SIGMA, 0.0, 0.0, 0.0);
            for (&s, &t) in scores.iter().zip(&targets) {
                let f = s * a + b;
                let (p, q) = if f >= 0.0 {
                    let e = (-f).exp();
                    (e / (1.0 + e), 1.0 / (1.0 + e))
                } else {
                    let e = f.exp();
                    (1.0 / (1.0 + e), e / (1.0 + e))
                };
                let d2 = p * q;
                h11 += s * s * d2;
                h22 += d2;
                h21 += s * d2;
                let d1 = t - p;
                g1 += s * d1;
                g2 += d1;
            }
            if g1.abs() < 1e-5 && g2.abs() < 1e-5 {
                break;
            }

            let determinant = h11 * h22 - h21 * h21;
            let da = -(h22 * g1 - h21 * g2) / determinant;
            let db = -(-h21 * g1 + h11 * g2) / determinant;
            let slope = g1 * da + g2 * db;

            let mut step = 1.0;
            while step >= 1e-10 {
                let (new_a, new_b) = (a + step * da, b + step * db);
                let new_objective = negative_log_likelihood(&scores, &targets, new_a, new_b);
                if new_objective < objective + 1e-4 * step * slope {
                    (a, b, objective) = (new_a, new_b, new_objective);
                    break;
                }
                step /= 2.0;
            }
            if step < 1e-10 {
                break;
            }
        }

        PlattScaling { a: a as f32, b: b as f32 }
    }

    /// Probability that a decision value `score` belongs to the positive class.
    pub fn probability(&self, score: f32) -> f32 {
        let f = self.a * score + self.b;
        if f >= 0.0 {
            let e = (-f).exp();
            e / (1.0 + e)
        } else {
            1.0 / (1.0 + f.exp())
        }
    }
}

fn negative_log_likelihood(scores: &[f64], targets: &[f64], a: f64, b: f64) -> f64 {
    scores
        .iter()
        .zip(targets)
        .map(|(&s, &t)| {
            let f = s * a + b;
            if f >= 0.0 { t * f + (1.0 + (-f).exp()).ln() } else { (t - 1.0) * f + (1.0 + f.exp()).ln() }
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn separable_scores_give_steep_increasing_sigmoid() {
        let scores = [-2.0, -1.5, -1.0, 1.0, 1.5, 2.0];
        let labels = [false, false, false, true, true, true];
        let platt = PlattScaling::fit(&scores, &labels);

        assert!(platt.a < 0.0, "a = {}", platt.a);
        assert!(platt.probability(2.0) > 0.8);
        assert!(platt.probability(-2.0) < 0.2);
    }

    #[test]
    fn overlapping_scores_stay_moderate() {
        let scores = [-1.0, -0.5, 0.0, 0.5, 1.0, -1.0, -0.5, 0.0, 0.5, 1.0];
        let labels = [false, false, true, true, true, false, true, false, false, true];
        let platt = PlattScaling::fit(&scores, &labels);
        let p = platt.probability(0.0);

        assert!((0.3..0.7).contains(&p), "p(0) = {p}");
    }

    #[test]
    fn single_class_falls_back_to_default() {
        assert_eq!(PlattScaling::fit(&[1.0, 2.0], &[true, true]), PlattScaling::default());
    }
}
