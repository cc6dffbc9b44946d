//! The ImageNet-1k label set shipped with `google/vit-base-patch16-224`.

use std::collections::BTreeMap;

const ID2LABEL_JSON: &str = include_str!("../data/imagenet1k_id2label.json");

/// The 1000 ImageNet-1k class names in index order (HF's `id2label`).
pub fn imagenet_id2label() -> Vec<String> {
    // The JSON is embedded at compile time and checked by tests, so failure here
    // is a build defect rather than a runtime condition.
    let map: BTreeMap<usize, String> =
        serde_json::from_str(ID2LABEL_JSON).expect("embedded id2label JSON is valid");
    assert!(
        map.keys().copied().eq(0..1000),
        "embedded id2label must hold classes 0..1000"
    );
    map.into_values().collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn labels_are_dense_and_known() {
        let labels = super::imagenet_id2label();
        assert_eq!(labels[0], "tench, Tinca tinca");
        assert_eq!(labels[285], "Egyptian cat");
        assert_eq!(labels[999], "toilet tissue, toilet paper, bathroom tissue");
    }
}
