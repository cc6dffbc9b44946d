//! From logits to answers: softmax, top-k and `id2label` lookup.

/// Numerically stable softmax over one row of logits.
pub fn softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exps: Vec<f32> = logits.iter().map(|&x| (x - max).exp()).collect();
    // Sum in f64: with 1000 nearly equal terms f32 accumulation drifts by ~1e-6.
    let sum: f64 = exps.iter().map(|&e| f64::from(e)).sum();
    exps.iter().map(|&e| (f64::from(e) / sum) as f32).collect()
}

/// The `k` largest probabilities with their class indices, best first; ties
/// keep the lower index first so answers are deterministic.
pub fn top_k(probs: &[f32], k: usize) -> Vec<(usize, f32)> {
    let mut order: Vec<usize> = (0..probs.len()).collect();
    let k = k.min(probs.len());
    let by_prob = |a: &usize, b: &usize| probs[*b].total_cmp(&probs[*a]).then(a.cmp(b));
    if k < order.len() && k > 0 {
        order.select_nth_unstable_by(k - 1, by_prob);
        order.truncate(k);
    }
    order.sort_by(by_prob);
    order.into_iter().map(|i| (i, probs[i])).collect()
}

/// Label of class `index`, falling back to HF's `LABEL_{i}` naming.
pub fn label(id2label: &[String], index: usize) -> String {
    id2label
        .get(index)
        .cloned()
        .unwrap_or_else(|| format!("LABEL_{index}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_sums_to_one_and_is_shift_invariant() {
        let p = softmax(&[1.0, 2.0, 3.0]);
        assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!((p[2] - 0.665_240_9).abs() < 1e-6);
        let q = softmax(&[1001.0, 1002.0, 1003.0]);
        assert_eq!(p, q);
    }

    #[test]
    fn top_k_orders_and_breaks_ties_by_index() {
        let probs = [0.1, 0.4, 0.1, 0.4];
        assert_eq!(top_k(&probs, 3), vec![(1, 0.4), (3, 0.4), (0, 0.1)]);
        assert_eq!(top_k(&probs, 10).len(), 4);
        assert_eq!(top_k(&probs, 1), vec![(1, 0.4)]);
    }

    #[test]
    fn labels_fall_back() {
        let l = vec!["cat".to_string()];
        assert_eq!(label(&l, 0), "cat");
        assert_eq!(label(&l, 3), "LABEL_3");
    }
}
