//! Fixed shapes (`--encoder-batch-buckets`, `--decoder-object-buckets`), on the CPU provider:
//! a batch or an object count padded up to its bucket, run by that bucket's own session, must
//! return exactly (bit for bit) what the same images or objects give unpadded, on both data
//! paths and on both decoder graphs (shared image side, and per object with mask inputs).
//! (Batching itself is not bit-exact against one at a time on the CPU: MLAS multiplies a single
//! row another way than several. The tests print that difference; padding adds none.)

mod common;

use std::sync::Arc;

use common::parity::read_rgb;
use opencv::prelude::*;
use ort::value::DynTensor;
use samstream::model::postprocess::binary_mask;
use samstream::model::prompt::PromptTokens;
use samstream::model::{
    DataPath, DecodedObjects, Embedding, EncoderInput, ImageGeometry, LOW_RES, LoadedModel, MaskRequest, Preprocessor, RgbFrame,
    RuntimeOptions,
};

const IMAGES: [&str; 3] = ["landscape.png", "portrait.png", "square.png"];

fn load(data_path: DataPath, encoder_buckets: &str, decoder_buckets: &str) -> LoadedModel {
    let options = RuntimeOptions {
        ort_lib: common::ort_lib(),
        data_path,
        encoder_batch_buckets: encoder_buckets.parse().unwrap(),
        decoder_object_buckets: decoder_buckets.parse().unwrap(),
        ..Default::default()
    };
    samstream::model::load(&common::model_dir(), &options).expect("model loads")
}

fn input(data_path: DataPath, rgb: &opencv::core::Mat) -> EncoderInput {
    match data_path {
        DataPath::Device => EncoderInput::Pixels(RgbFrame::new(Arc::new(rgb.clone())).unwrap()),
        _ => EncoderInput::Preprocessed(Arc::new(Preprocessor::default().run(rgb).unwrap())),
    }
}

fn values(embedding: &Embedding) -> Vec<f32> {
    embedding.downcast_ref::<DynTensor>().unwrap().try_extract_tensor::<f32>().unwrap().1.to_vec()
}

fn embeddings(model: &mut LoadedModel, data_path: DataPath, images: &[opencv::core::Mat]) -> Vec<Vec<f32>> {
    let inputs = images.iter().map(|rgb| input(data_path, rgb)).collect();
    model.encoder.encode(inputs).expect("encoder").iter().map(|(embedding, _)| values(embedding)).collect()
}

fn max_difference(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

#[test]
fn padded_encoder_batches_return_the_unpadded_embeddings_bit_for_bit() {
    let images: Vec<_> = IMAGES.iter().map(|name| read_rgb(name)).collect();
    for data_path in [DataPath::Host, DataPath::Device] {
        let mut exact = load(data_path, "exact", "exact");
        let mut padded = load(data_path, "1,2,4", "exact");
        let alone: Vec<Vec<f32>> = images.iter().flat_map(|rgb| embeddings(&mut exact, data_path, std::slice::from_ref(rgb))).collect();
        let unpadded = embeddings(&mut exact, data_path, &images);
        // Three images run as the bucket of four; then two (its own bucket) and one again.
        let three = embeddings(&mut padded, data_path, &images);
        let two = embeddings(&mut padded, data_path, &images[1..]);
        let one = embeddings(&mut padded, data_path, &images[2..]);
        assert_eq!(three.len(), 3, "{data_path}: one embedding per real image, none for the padding");
        for (i, name) in IMAGES.iter().enumerate() {
            assert!(three[i] == unpadded[i], "{data_path} {name}: padded batch of 3 (shape 4) differs from the unpadded batch of 3");
        }
        let unpadded_two = embeddings(&mut exact, data_path, &images[1..]);
        assert!(two == unpadded_two && one[0] == alone[2], "{data_path}: the later batches (shapes 2 and 1) equal their unpadded runs");
        assert!(alone[0] != alone[1], "the images differ, so the comparison can fail");
        eprintln!(
            "{data_path}: a batch of 3 padded to 4 equals the unpadded batch of 3 bit for bit; batching itself (vs one at a time) moves \
             embeddings by at most {:e}",
            max_difference(&three.concat(), &alone.concat())
        );
    }
}

/// IoU, low-res logits of every token (host data path) or the masks and kept low-res logits
/// (device data path) of each object, decoded in one call.
fn decode(
    model: &mut LoadedModel,
    embedding: &Embedding,
    objects: &[PromptTokens],
    geometry: ImageGeometry,
) -> Vec<(Vec<f32>, Vec<f32>, Vec<u8>)> {
    let request = MaskRequest::objects(geometry, true, true);
    let group: Vec<&PromptTokens> = objects.iter().collect();
    let answer = model.decoder.decode(embedding, &group, &request).expect("decoder");
    assert_eq!(answer.iou.nrows(), objects.len(), "one IoU row per real object");
    let mut decoded = DecodedObjects::with_capacity(objects.len());
    decoded.push_group(&(0..objects.len()).collect::<Vec<_>>(), answer);
    (0..objects.len())
        .map(|i| {
            let iou = decoded.iou.row(i).to_vec();
            let mut low_res = Vec::new();
            let mut masks = Vec::new();
            for &token in request.tokens() {
                low_res.extend_from_slice(decoded.low_res(i, token).unwrap().expect("low-res logits kept"));
                masks.extend_from_slice(binary_mask(&decoded, i, token, &geometry).unwrap().bytes().unwrap());
            }
            (iou, low_res, masks)
        })
        .collect()
}

#[test]
fn padded_object_counts_return_the_unpadded_masks_bit_for_bit() {
    let rgb = read_rgb(IMAGES[0]);
    let geometry = ImageGeometry::new(rgb.cols() as usize, rgb.rows() as usize);
    let point =
        |x: f32, y: f32| PromptTokens { coords: vec![geometry.to_input(x, y), [0.0, 0.0]], labels: vec![1.0, -1.0], mask_input: None };
    let spots = [(60.0, 40.0), (200.0, 120.0), (330.0, 200.0), (100.0, 220.0), (280.0, 60.0)];
    let untracked: Vec<PromptTokens> = spots.iter().map(|&(x, y)| point(x, y)).collect();
    // Tracked objects carry the previous frame's logits: they run on decoder.onnx.
    let tracked: Vec<PromptTokens> = untracked
        .iter()
        .enumerate()
        .map(|(i, o)| PromptTokens {
            mask_input: Some((0..LOW_RES * LOW_RES).map(|p| ((p % 97) as f32 - 48.0) * (i + 1) as f32 * 0.1).collect::<Vec<_>>().into()),
            ..o.clone()
        })
        .collect();
    for data_path in [DataPath::Host, DataPath::Device] {
        let mut exact = load(data_path, "exact", "exact");
        let mut padded = load(data_path, "exact", "1,2,4,8");
        let embedding = exact.encoder.encode(vec![input(data_path, &rgb)]).unwrap().pop().unwrap().0;
        for (kind, objects) in [("untracked", &untracked), ("tracked", &tracked)] {
            let alone: Vec<_> = objects.iter().flat_map(|o| decode(&mut exact, &embedding, std::slice::from_ref(o), geometry)).collect();
            let mut batching = 0f32;
            for count in [3, 5] {
                let unpadded = decode(&mut exact, &embedding, &objects[..count], geometry);
                let bucketed = decode(&mut padded, &embedding, &objects[..count], geometry);
                for i in 0..count {
                    assert!(bucketed[i] == unpadded[i], "{data_path} {kind}: object {i} of {count} padded differs from unpadded");
                    batching = batching.max(max_difference(&bucketed[i].1, &alone[i].1));
                }
            }
            assert!(alone[0] != alone[1], "the objects differ, so the comparison can fail");
            eprintln!(
                "{data_path} {kind}: 3 and 5 objects padded to 4 and 8 equal the unpadded calls bit for bit (IoU, low-res logits, \
                 masks); batching itself moves low-res logits by at most {batching:e}"
            );
        }
        assert!(decode(&mut exact, &embedding, &tracked[..1], geometry) != decode(&mut exact, &embedding, &untracked[..1], geometry));
    }
}
