//! What a gRPC request carries for the model, read out of TF Serving's
//! messages: a `PredictRequest`'s one input (encoded images in `string_val`,
//! or preprocessed pixels as `DT_FLOAT`), a `ClassificationRequest`'s
//! `tf.Example` images. Errors are the `INVALID_ARGUMENT` message the
//! client gets; the host adds the status code and sends the rest on.

use std::collections::HashMap;

use crate::proto::tensorflow::serving as tfs;
use crate::proto::tensorflow::{self as tf, DataType, TensorProto};

/// A known-rank shape of unnamed dimensions, as every tensor the server
/// sends (and its tests build) carries.
pub fn shape(dims: impl IntoIterator<Item = i64>) -> tf::TensorShapeProto {
    tf::TensorShapeProto {
        dim: dims
            .into_iter()
            .map(|size| tf::tensor_shape_proto::Dim {
                size,
                name: String::new(),
            })
            .collect(),
        unknown_rank: false,
    }
}

/// The signature's input names, which the component owns.
#[derive(Debug, Clone, Copy)]
pub struct InputNames<'a> {
    /// `DT_STRING`, encoded images.
    pub images: &'a str,
    /// `DT_FLOAT [N,3,H,W]`, preprocessed pixels.
    pub pixels: &'a str,
}

/// A `PredictRequest`'s input, borrowed from it.
#[derive(Debug, PartialEq)]
pub enum PredictInput<'a> {
    /// Encoded images, at least one.
    Images(Vec<&'a [u8]>),
    /// Little-endian f32 pixels and the shape they claim; the component
    /// checks that the two agree.
    Pixels { shape: Vec<usize>, data: Vec<u8> },
}

/// The one input tensor of a `PredictRequest`.
pub fn predict_input<'a>(
    inputs: &'a HashMap<String, TensorProto>,
    names: InputNames<'_>,
) -> Result<PredictInput<'a>, String> {
    let InputNames { images, pixels } = names;
    let mut entries = inputs.iter();
    let (Some((name, tensor)), None) = (entries.next(), entries.next()) else {
        return Err(format!(
            "expected one input, {images} (DT_STRING, encoded images) or {pixels} (DT_FLOAT [N,3,H,W]); got {}",
            inputs.len()
        ));
    };
    let dtype = DataType::try_from(tensor.dtype).unwrap_or(DataType::DtInvalid);
    let dims: Vec<i64> = tensor
        .tensor_shape
        .as_ref()
        .map(|s| s.dim.iter().map(|d| d.size).collect())
        .unwrap_or_default();
    if name == images {
        if dtype != DataType::DtString {
            return Err(format!(
                "input {images} must be DT_STRING (encoded images in string_val), got {}",
                dtype.as_str_name()
            ));
        }
        if tensor.string_val.is_empty() {
            return Err(format!(
                "input {images} holds no images; put each image's bytes in string_val"
            ));
        }
        // Checked: a hostile shape must not overflow the product.
        let declared = dims.iter().try_fold(1i64, |n, d| n.checked_mul(*d));
        if !dims.is_empty() && declared != i64::try_from(tensor.string_val.len()).ok() {
            return Err(format!(
                "input {images} has shape {dims:?} but holds {} images",
                tensor.string_val.len()
            ));
        }
        Ok(PredictInput::Images(
            tensor.string_val.iter().map(Vec::as_slice).collect(),
        ))
    } else if name == pixels {
        if dtype != DataType::DtFloat {
            return Err(format!(
                "input {pixels} must be DT_FLOAT, got {}",
                dtype.as_str_name()
            ));
        }
        let shape: Vec<usize> = dims
            .iter()
            .map(|d| usize::try_from(*d))
            .collect::<Result<_, _>>()
            .map_err(|_| format!("input {pixels} needs a known shape [N,3,H,W], got {dims:?}"))?;
        // tensor_content is already little-endian f32, as v2 wants it.
        let data = if tensor.tensor_content.is_empty() {
            tensor
                .float_val
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect()
        } else {
            tensor.tensor_content.clone()
        };
        Ok(PredictInput::Pixels { shape, data })
    } else {
        Err(format!(
            "input tensor alias not found in signature: {name}. Inputs expected to be in the set {{{images}}} (or {pixels} for preprocessed pixels)"
        ))
    }
}

/// The image in each example of a `ClassificationRequest`'s input: the
/// bytes feature named `input_name`, or an example's only bytes feature;
/// the context is searched too.
pub fn example_images<'a>(
    input: Option<&'a tfs::Input>,
    input_name: &str,
) -> Result<Vec<&'a [u8]>, String> {
    use tfs::input::Kind;
    let (examples, context) = match input.and_then(|i| i.kind.as_ref()) {
        Some(Kind::ExampleList(list)) => (&list.examples, None),
        Some(Kind::ExampleListWithContext(list)) => (&list.examples, list.context.as_ref()),
        None => {
            return Err(
                "input holds no examples; send an example_list whose examples carry the image bytes"
                    .into(),
            );
        }
    };
    if examples.is_empty() {
        return Err("input.example_list is empty".into());
    }
    examples
        .iter()
        .enumerate()
        .map(|(i, example)| {
            example_image(example, input_name)
                .or_else(|| context.and_then(|c| example_image(c, input_name)))
                .ok_or_else(|| {
                    format!(
                        "example {i} has no image: give it one bytes feature \"{input_name}\" holding the encoded image"
                    )
                })
        })
        .collect()
}

/// An example's image: its bytes feature `input_name`, or its only bytes
/// feature holding one value.
pub fn example_image<'a>(example: &'a tf::Example, input_name: &str) -> Option<&'a [u8]> {
    fn single(f: &tf::Feature) -> Option<&[u8]> {
        match &f.kind {
            Some(tf::feature::Kind::BytesList(list)) if list.value.len() == 1 => {
                Some(list.value[0].as_slice())
            }
            _ => None,
        }
    }
    let features = &example.features.as_ref()?.feature;
    if let Some(f) = features.get(input_name) {
        return single(f);
    }
    let mut candidates = features.values().filter_map(single);
    match (candidates.next(), candidates.next()) {
        (Some(image), None) => Some(image),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::tensorflow::serving::{ClassificationRequest, PredictRequest};
    use prost::Message;

    const NAMES: InputNames<'static> = InputNames {
        images: "string_input",
        pixels: "pixel_values",
    };

    fn tensor(dtype: DataType, dims: &[i64]) -> TensorProto {
        TensorProto {
            dtype: dtype as i32,
            tensor_shape: Some(shape(dims.iter().copied())),
            ..Default::default()
        }
    }

    #[test]
    fn reads_images_and_pixels() {
        let mut images = tensor(DataType::DtString, &[2]);
        images.string_val = vec![b"a".to_vec(), b"b".to_vec()];
        let inputs = HashMap::from([("string_input".to_string(), images)]);
        assert_eq!(
            predict_input(&inputs, NAMES),
            Ok(PredictInput::Images(vec![b"a", b"b"]))
        );
        let mut pixels = tensor(DataType::DtFloat, &[1, 3, 1, 1]);
        pixels.float_val = vec![1.0, 2.0, 3.0];
        let inputs = HashMap::from([("pixel_values".to_string(), pixels)]);
        let Ok(PredictInput::Pixels { shape, data }) = predict_input(&inputs, NAMES) else {
            panic!("pixels expected");
        };
        assert_eq!((shape, data.len()), (vec![1, 3, 1, 1], 12));
    }

    /// A shape whose product overflows i64 once panicked in debug builds
    /// and wrapped in release: 3 times 3's inverse mod 2^64 wrapped to 1, so
    /// one image "matched" it. It is refused.
    #[test]
    fn refuses_a_shape_whose_product_overflows() {
        let mut images = tensor(DataType::DtString, &[3, -6_148_914_691_236_517_205]);
        images.string_val = vec![b"a".to_vec()];
        let inputs = HashMap::from([("string_input".to_string(), images)]);
        let e = predict_input(&inputs, NAMES).unwrap_err();
        assert!(e.contains("has shape"), "{e}");
    }

    #[test]
    fn finds_example_images_by_name_alone_or_in_the_context() {
        let example = |features: &[(&str, &[u8])]| tf::Example {
            features: Some(tf::Features {
                feature: features
                    .iter()
                    .map(|(k, v)| {
                        let list = tf::BytesList {
                            value: vec![v.to_vec()],
                        };
                        let kind = tf::feature::Kind::BytesList(list);
                        (k.to_string(), tf::Feature { kind: Some(kind) })
                    })
                    .collect(),
            }),
        };
        let named = example(&[("string_input", b"a"), ("other", b"x")]);
        assert_eq!(example_image(&named, "string_input"), Some(&b"a"[..]));
        assert_eq!(
            example_image(&example(&[("img", b"b")]), "string_input"),
            Some(&b"b"[..])
        );
        assert_eq!(
            example_image(&example(&[("p", b"1"), ("q", b"2")]), "string_input"),
            None
        );
        let input = tfs::Input {
            kind: Some(tfs::input::Kind::ExampleListWithContext(
                tfs::ExampleListWithContext {
                    examples: vec![tf::Example::default()],
                    context: Some(example(&[("img", b"c")])),
                },
            )),
        };
        assert_eq!(
            example_images(Some(&input), "string_input"),
            Ok(vec![&b"c"[..]])
        );
        assert!(example_images(None, "string_input").is_err());
    }

    /// The fuzz seeds (written by fuzz/make_corpus.py with the official
    /// protobuf runtime) are requests the server accepts.
    #[test]
    fn seeds_are_valid() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../fuzz/corpus/grpc_predict");
        let mut seen = 0;
        for entry in std::fs::read_dir(dir).expect("the grpc_predict corpus") {
            let path = entry.expect("entry").path();
            let bytes = std::fs::read(&path).expect("seed");
            let name = path.file_name().unwrap_or_default().to_string_lossy();
            if name.starts_with("refused_") {
                // A fuzzing finding kept as a seed: it must stay refused.
                let req = PredictRequest::decode(&bytes[..]).expect("a PredictRequest");
                assert!(
                    predict_input(&req.inputs, NAMES).is_err(),
                    "{name} was accepted"
                );
            } else if name.starts_with("predict") {
                let req = PredictRequest::decode(&bytes[..]).expect("a PredictRequest");
                predict_input(&req.inputs, NAMES).unwrap_or_else(|e| panic!("{name}: {e}"));
            } else {
                let req = ClassificationRequest::decode(&bytes[..]).expect("a request");
                example_images(req.input.as_ref(), "string_input")
                    .unwrap_or_else(|e| panic!("{name}: {e}"));
            }
            seen += 1;
        }
        assert!(seen >= 4, "{seen} seeds");
    }
}
