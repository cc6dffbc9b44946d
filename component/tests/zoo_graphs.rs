//! Every zoo fixture's graph through tract, the guest path's engine (and
//! today the host path's): each loads and runs, except the exports tract
//! 0.23 cannot take, whose refusal must name the node so the operator
//! knows what to change.

use std::path::PathBuf;

use vitrine_component::inference::Classifier;

/// Exports tract 0.23 refuses, and the node kind its error names:
/// LeViT's attention subsampling (a Slice over a Reshape, in declutter) and
/// BiT's weight standardisation (BatchNormalization in training mode).
const TRACT_REFUSES: [(&str, &str); 2] = [
    ("bit", "BatchNormalization"),
    ("levit", "queries_subsample/Slice"),
];

#[test]
fn zoo_graphs_load_in_tract_or_name_the_node() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/zoo");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
        .expect("tests/fixtures/zoo")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.join("model.onnx").is_file())
        .collect();
    dirs.sort();
    assert!(dirs.len() >= 10, "{dirs:?}");
    for dir in dirs {
        let name = dir.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        let mut onnx = std::fs::File::open(dir.join("model.onnx")).expect("model.onnx");
        let side = if name == "mobilevit" { 256 } else { 224 };
        let refused = TRACT_REFUSES.iter().find(|(n, _)| *n == name);
        match (
            Classifier::from_onnx(&mut onnx, 3, side, side, 1000),
            refused,
        ) {
            (Ok(classifier), None) => {
                let logits = classifier
                    .run(2, vec![0.25; 2 * classifier.image_len()])
                    .expect("run");
                assert_eq!(logits.shape(), [2, 1000], "{name}");
                eprintln!("{name}: loads and runs");
            }
            (Err(e), Some((_, node))) => {
                let text = format!("{e:#}");
                assert!(
                    text.contains("node #") && text.contains(node),
                    "{name}: the refusal does not name the node {node:?}: {text}"
                );
                eprintln!("{name}: refused, naming the node: {text}");
            }
            (Ok(_), Some(_)) => {
                panic!("{name} now loads in tract: take it off TRACT_REFUSES (and the README)")
            }
            (Err(e), None) => panic!("{name}: {e:#}"),
        }
    }
}
