//! End-to-end checks of the written model directory.

use std::collections::BTreeSet;
use std::path::Path;

use prost::Message;
use tract_onnx::pb::{ModelProto, tensor_shape_proto::dimension::Value as Dim, type_proto};
use tract_onnx::prelude::*;
use vitrine_modelgen::{Progress, VitConfig, imagenet_id2label, write_model};

fn write_tiny(dir: &Path, seed: u64) {
    write_model(dir, &VitConfig::tiny(), seed, &mut |_| {}).expect("write tiny model");
}

fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

#[test]
fn tiny_model_runs_in_tract() {
    let dir = tempfile::tempdir().unwrap();
    write_tiny(dir.path(), 1);
    let model = tract_onnx::onnx()
        .model_for_path(dir.path().join("model.onnx"))
        .unwrap()
        .with_input_fact(0, f32::fact([2, 3, 224, 224]).into())
        .unwrap()
        .into_optimized()
        .unwrap()
        .into_runnable()
        .unwrap();
    let input = Tensor::from_shape(
        &[2, 3, 224, 224],
        &(0..2 * 3 * 224 * 224)
            .map(|i| ((i % 251) as f32 / 125.0) - 1.0)
            .collect::<Vec<_>>(),
    )
    .unwrap();
    let outputs = model.run(tvec!(input.into())).unwrap();
    let logits = outputs[0].to_plain_array_view::<f32>().unwrap();
    assert_eq!(logits.shape(), &[2, 1000]);
    assert!(logits.iter().all(|x| x.is_finite()));
    // Random weights still give input-dependent, non-degenerate logits.
    let spread = logits.iter().fold(0f32, |m, x| m.max(x.abs()));
    assert!(spread > 1e-3, "logits are all ~0");
}

#[test]
fn tiny_model_keeps_a_symbolic_batch_in_tract() {
    let dir = tempfile::tempdir().unwrap();
    write_tiny(dir.path(), 1);
    let model = tract_onnx::onnx()
        .model_for_path(dir.path().join("model.onnx"))
        .unwrap()
        .into_optimized()
        .unwrap()
        .into_runnable()
        .unwrap();
    for batch in [1, 3] {
        let input = Tensor::zero::<f32>(&[batch, 3, 224, 224]).unwrap();
        let outputs = model.run(tvec!(input.into())).unwrap();
        assert_eq!(outputs[0].shape(), &[batch, 1000]);
    }
}

#[test]
fn same_seed_same_bytes_other_seed_other_weights() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    write_tiny(dirs[0].path(), 42);
    write_tiny(dirs[1].path(), 42);
    write_tiny(dirs[2].path(), 43);
    let read = |i: usize, name: &str| std::fs::read(dirs[i].path().join(name)).unwrap();
    for name in ["model.onnx", "config.json", "preprocessor_config.json"] {
        assert!(
            read(0, name) == read(1, name),
            "{name} differs for equal seeds"
        );
    }
    assert!(read(0, "model.onnx") != read(2, "model.onnx"));
    assert_eq!(read(0, "model.onnx").len(), read(2, "model.onnx").len());

    // Only the three files remain: temporaries were renamed away.
    let names: BTreeSet<_> = std::fs::read_dir(dirs[0].path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    let expected: BTreeSet<_> = ["config.json", "model.onnx", "preprocessor_config.json"]
        .map(String::from)
        .into();
    assert_eq!(names, expected);
}

#[test]
fn config_json_carries_labels_and_random_marker() {
    let dir = tempfile::tempdir().unwrap();
    write_tiny(dir.path(), 77);
    let config = read_json(&dir.path().join("config.json"));
    assert_eq!(config["id2label"]["285"], "Egyptian cat");
    assert_eq!(config["id2label"].as_object().unwrap().len(), 1000);
    assert_eq!(config["label2id"]["Egyptian cat"], 285);
    assert_eq!(config["architectures"][0], "ViTForImageClassification");
    assert_eq!(config["model_type"], "vit");
    assert_eq!(config["hidden_size"], 192);
    assert_eq!(config["num_hidden_layers"], 2);
    assert_eq!(config["layer_norm_eps"], 1e-12);
    assert_eq!(config["initializer_range"], 0.02);
    assert_eq!(config["vitrine"]["random_weights"], true);
    assert_eq!(config["vitrine"]["seed"], 77);
    assert!(
        config["vitrine"]["note"]
            .as_str()
            .unwrap()
            .contains("RANDOM")
    );
    assert_eq!(imagenet_id2label()[285], "Egyptian cat");

    let preprocessor = read_json(&dir.path().join("preprocessor_config.json"));
    let expected = serde_json::json!({
        "do_normalize": true,
        "do_rescale": true,
        "do_resize": true,
        "image_mean": [0.5, 0.5, 0.5],
        "image_processor_type": "ViTImageProcessor",
        "image_std": [0.5, 0.5, 0.5],
        "resample": 2,
        "rescale_factor": 0.00392156862745098,
        "size": {"height": 224, "width": 224}
    });
    assert_eq!(preprocessor, expected);
}

/// Our JSON files equal HF's for vit-base-patch16-224, apart from our marker and
/// transformers' version stamp (skipped where the shared fixtures are absent).
#[test]
fn json_files_match_hf_originals() {
    let shared = manifest_dir().join("../../shared/models");
    let base_config = shared.join("vit-base-patch16-224/config.json");
    let export = shared.join("vit-tiny-random-torch-export");
    if !base_config.exists() || !export.exists() {
        eprintln!("skipping: {} not present", shared.display());
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    write_tiny(dir.path(), 5);
    let ours = read_json(&dir.path().join("preprocessor_config.json"));
    assert_eq!(ours, read_json(&export.join("preprocessor_config.json")));

    // The tiny model differs from base only in these sizes.
    let mut ours = read_json(&dir.path().join("config.json"));
    let mut theirs = read_json(&base_config);
    let obj = ours.as_object_mut().unwrap();
    assert!(obj.remove("vitrine").is_some());
    for key in [
        "hidden_size",
        "num_hidden_layers",
        "num_attention_heads",
        "intermediate_size",
        "pooler_output_size",
    ] {
        obj.remove(key);
        theirs.as_object_mut().unwrap().remove(key);
    }
    theirs
        .as_object_mut()
        .unwrap()
        .remove("transformers_version");
    assert_eq!(ours, theirs);
}

#[test]
fn onnx_model_is_marked_and_initialised_like_hf() {
    let dir = tempfile::tempdir().unwrap();
    let config = VitConfig::tiny();
    let mut tensors = Vec::new();
    let mut last_bytes = 0;
    write_model(dir.path(), &config, 9, &mut |p| match p {
        Progress::Tensor { name, index, total } => {
            assert_eq!(index, tensors.len());
            tensors.push((name.to_owned(), total));
        }
        Progress::Writing { bytes } => last_bytes = bytes,
    })
    .unwrap();
    let bytes = std::fs::read(dir.path().join("model.onnx")).unwrap();
    // The last report follows the last tensor; only graph I/O and metadata come after.
    let len = bytes.len() as u64;
    assert!(
        last_bytes <= len && len - last_bytes < 1024,
        "{last_bytes} of {len}"
    );

    let model = ModelProto::decode(bytes.as_slice()).unwrap();
    assert_eq!(model.ir_version, 7);
    assert_eq!(model.opset_import.len(), 1);
    assert_eq!(
        (
            model.opset_import[0].domain.as_str(),
            model.opset_import[0].version
        ),
        ("", 14)
    );
    assert_eq!(model.producer_name, "vitrine-modelgen");
    assert!(model.doc_string.contains("RANDOM"));
    let meta = |key: &str| {
        model
            .metadata_props
            .iter()
            .find(|p| p.key == key)
            .map(|p| p.value.as_str())
    };
    assert_eq!(meta("vitrine.random_weights"), Some("true"));
    assert_eq!(meta("vitrine.seed"), Some("9"));

    let graph = model.graph.as_ref().unwrap();
    let shape = |info: &tract_onnx::pb::ValueInfoProto| -> Vec<String> {
        let Some(type_proto::Value::TensorType(t)) = &info.r#type.as_ref().unwrap().value else {
            panic!("not a tensor")
        };
        assert_eq!(t.elem_type, 1, "float32");
        t.shape
            .as_ref()
            .unwrap()
            .dim
            .iter()
            .map(|d| match d.value.as_ref().unwrap() {
                Dim::DimValue(v) => v.to_string(),
                Dim::DimParam(p) => p.clone(),
            })
            .collect()
    };
    assert_eq!(graph.input.len(), 1);
    assert_eq!(graph.input[0].name, "pixel_values");
    assert_eq!(shape(&graph.input[0]), ["batch_size", "3", "224", "224"]);
    assert_eq!(graph.output.len(), 1);
    assert_eq!(graph.output[0].name, "logits");
    assert_eq!(shape(&graph.output[0]), ["batch_size", "1000"]);

    // Only operators a torch opset-14 export of HF ViT uses.
    let vocabulary: BTreeSet<&str> = [
        "Constant",
        "Add",
        "Unsqueeze",
        "Identity",
        "MatMul",
        "Mul",
        "Shape",
        "Concat",
        "Gather",
        "Reshape",
        "ReduceMean",
        "Transpose",
        "Div",
        "Sub",
        "Pow",
        "Sqrt",
        "Softmax",
        "Erf",
        "Conv",
        "Slice",
        "ConstantOfShape",
        "Equal",
        "Where",
        "Expand",
        "Gemm",
    ]
    .into();
    for node in &graph.node {
        assert!(
            vocabulary.contains(node.op_type.as_str()),
            "unexpected op {}",
            node.op_type
        );
        assert!(node.domain.is_empty());
    }

    // Initializers: HF names in state-dict order, HF init statistics.
    let names: Vec<_> = graph.initializer.iter().map(|t| t.name.as_str()).collect();
    let reported: Vec<_> = tensors.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, reported);
    assert!(tensors.iter().all(|(_, total)| *total == names.len()));
    assert_eq!(names[0], "vit.embeddings.cls_token");
    assert!(names.contains(&"vit.encoder.layer.1.attention.attention.query.weight"));
    assert_eq!(*names.last().unwrap(), "classifier.bias");
    let mut count = 0;
    for t in &graph.initializer {
        assert_eq!(t.data_type, 1);
        let values: Vec<f32> = t
            .raw_data
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        assert_eq!(values.len() as i64, t.dims.iter().product::<i64>());
        count += values.len();
        let is_layer_norm = t.name.contains("layernorm");
        if t.name.ends_with(".bias") {
            assert!(values.iter().all(|&v| v == 0.0), "{} is not zero", t.name);
        } else if is_layer_norm {
            assert!(values.iter().all(|&v| v == 1.0), "{} is not one", t.name);
        } else {
            let n = values.len() as f64;
            let mean = values.iter().map(|&v| v as f64).sum::<f64>() / n;
            let std = (values
                .iter()
                .map(|&v| (v as f64 - mean).powi(2))
                .sum::<f64>()
                / n)
                .sqrt();
            let tolerance = 5.0 * 0.02 / n.sqrt();
            assert!(mean.abs() < tolerance + 1e-4, "{}: mean {mean}", t.name);
            assert!(
                (std - 0.02).abs() < 0.02 * (0.05 + 3.0 / n.sqrt()),
                "{}: std {std}",
                t.name
            );
            assert!(values.iter().all(|v| v.abs() <= 2.0));
        }
    }
    assert_eq!(count, config.parameter_count(1000));
}

#[test]
fn failures_are_reported_and_leave_no_files() {
    let dir = tempfile::tempdir().unwrap();
    let bad = VitConfig {
        num_attention_heads: 5,
        ..VitConfig::tiny()
    };
    let err = write_model(dir.path(), &bad, 0, &mut |_| {}).unwrap_err();
    assert!(err.to_string().contains("divisible"), "{err}");

    // A regular file where the directory should be.
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, b"").unwrap();
    assert!(write_model(&file.join("model"), &VitConfig::tiny(), 0, &mut |_| {}).is_err());
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

/// This package's folder: as cargo says when it runs the test, else as it
/// said at build time. A build cache shared between checkouts may hold a
/// test binary compiled in another checkout.
fn manifest_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into())
        .into()
}
