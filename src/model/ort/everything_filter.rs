//! Segment everything on the device data path: the candidates of a decoder call whose
//! predicted IoU passes are upscaled where the decoder left their logits; only their two
//! stability counts come back, then only the masks (and boxes) of those that pass.

use std::time::Instant;

use ndarray::Array2;
use ort::memory::MemoryInfo;
use ort::session::{IoBinding, Session};
use ort::value::{DynTensor, Tensor, TensorRefMut};

use super::graphs::everything_filter::{self as graph, INPUT_LEVELS, INPUT_LOW_RES, INPUT_ORIGINAL, INPUT_PICKED, INPUT_RESIZED};
use super::{stage_session, take_output};
use crate::model::{CandidateFilter, FoundMask, IMAGE_SIZE, ImageGeometry, LOW_RES, MaskGroup, ModelError, RuntimeOptions};
use crate::telemetry::StageTimings;

/// The multimask tokens, the only ones segment everything uses.
const TOKENS: [usize; 3] = [1, 2, 3];

/// Device memory the graphs may take per run; more candidates are run in parts.
const BUDGET: usize = 512 << 20;

/// Candidates per run within `BUDGET`: per candidate, its logits at 1024x1024 and at the
/// crop's size, their comparison and count (or mask) at the crop's size.
fn per_run(geometry: &ImageGeometry) -> usize {
    let per_candidate = IMAGE_SIZE * IMAGE_SIZE * 4 + geometry.width * geometry.height * 10 + LOW_RES * LOW_RES * 4;
    (BUDGET / per_candidate).max(1)
}

struct Stage {
    session: Session,
    binding: IoBinding,
}

impl Stage {
    fn load(options: &RuntimeOptions, model: ort::editor::Model) -> Result<Self, ModelError> {
        let (session, _) = stage_session(options, model)?;
        let binding = session.create_binding()?;
        Ok(Self { session, binding })
    }

    /// Binds the logits and the picked candidates; a run that failed left its bindings, which
    /// are cleared first.
    fn bind_inputs(&mut self, low_res: &DynTensor, picked: &[i64], geometry: &ImageGeometry) -> Result<(), ModelError> {
        self.binding.clear();
        self.binding.bind_input(INPUT_LOW_RES, low_res)?;
        self.binding.bind_input(INPUT_PICKED, &Tensor::from_array(([picked.len()], picked.to_vec()))?)?;
        let resized = vec![geometry.resized_height as i64, geometry.resized_width as i64];
        self.binding.bind_input(INPUT_RESIZED, &Tensor::from_array(([2usize], resized))?)?;
        self.binding.bind_input(INPUT_ORIGINAL, &Tensor::from_array(([2usize], vec![geometry.height as i64, geometry.width as i64]))?)?;
        Ok(())
    }
}

pub struct DeviceCandidates {
    scores: Stage,
    masks: Stage,
    host: MemoryInfo<'static>,
}

impl DeviceCandidates {
    pub fn load(options: &RuntimeOptions) -> Result<Self, ModelError> {
        Ok(Self {
            scores: Stage::load(options, graph::build_scores()?)?,
            masks: Stage::load(options, graph::build_masks()?)?,
            host: MemoryInfo::default(),
        })
    }

    /// The candidates of one decoder call (`low_res` `[N, 4, 256, 256]` in device memory, `iou`
    /// `[N, 4]`) that pass `filter`, points in order and tokens 1..3 within a point, with their
    /// masks at the crop's size in host memory.
    pub fn run(
        &mut self,
        low_res: &DynTensor,
        iou: &Array2<f32>,
        filter: &CandidateFilter,
        geometry: &ImageGeometry,
    ) -> Result<(MaskGroup, StageTimings), ModelError> {
        let started = Instant::now();
        let picked: Vec<(usize, usize)> = (0..iou.nrows())
            .flat_map(|row| TOKENS.map(|token| (row, token)))
            .filter(|&(row, token)| filter.keeps_iou(iou[[row, token]]))
            .collect();
        let per_run = per_run(geometry);
        let mut survivors = Vec::new();
        for part in picked.chunks(per_run) {
            let (inside, union) = self.counts(low_res, part, filter, geometry)?;
            for ((&(row, token), inside), union) in part.iter().zip(inside).zip(union) {
                let stability = inside / union;
                if filter.keeps_stability(stability) {
                    survivors.push(FoundMask { row, token, iou: iou[[row, token]], stability, inclusive_box: [0; 4] });
                }
            }
        }
        let plane = geometry.width * geometry.height;
        let mut masks = vec![0u8; survivors.len() * plane];
        for (part, part_masks) in survivors.chunks_mut(per_run).zip(masks.chunks_mut(per_run * plane)) {
            let boxes = self.masks(low_res, part, part_masks, geometry)?;
            for (found, b) in part.iter_mut().zip(boxes.chunks_exact(4)) {
                // An empty mask's last pixel comes before its first; the reference's box is zeros.
                found.inclusive_box = if b[2] < b[0] { [0; 4] } else { [b[0] as u32, b[1] as u32, b[2] as u32, b[3] as u32] };
            }
        }
        let timings = StageTimings { postprocess: started.elapsed(), ..Default::default() };
        Ok((MaskGroup::Candidates { found: survivors, masks: Box::new(masks), passed_iou: picked.len() }, timings))
    }

    /// The counts of logits above each stability level, per candidate.
    fn counts(
        &mut self,
        low_res: &DynTensor,
        part: &[(usize, usize)],
        filter: &CandidateFilter,
        geometry: &ImageGeometry,
    ) -> Result<(Vec<f32>, Vec<f32>), ModelError> {
        let stage = &mut self.scores;
        let flat: Vec<i64> = part.iter().map(|&(row, token)| (row * 4 + token) as i64).collect();
        stage.bind_inputs(low_res, &flat, geometry)?;
        let (high, low) = filter.stability_levels();
        stage.binding.bind_input(INPUT_LEVELS, &Tensor::from_array(([2usize], vec![high, low]))?)?;
        stage.binding.bind_output_to_device(graph::OUTPUT_INSIDE, &self.host)?;
        stage.binding.bind_output_to_device(graph::OUTPUT_UNION, &self.host)?;
        let counts = {
            let mut outputs = stage.session.run_binding(&stage.binding)?;
            let inside = take_output(&mut outputs, graph::OUTPUT_INSIDE)?;
            let union = take_output(&mut outputs, graph::OUTPUT_UNION)?;
            (inside.try_extract_tensor::<f32>()?.1.to_vec(), union.try_extract_tensor::<f32>()?.1.to_vec())
        };
        stage.binding.clear();
        Ok(counts)
    }

    /// Writes the candidates' masks into `masks` (`[part, H, W]`) and returns their boxes.
    fn masks(
        &mut self,
        low_res: &DynTensor,
        part: &[FoundMask],
        masks: &mut [u8],
        geometry: &ImageGeometry,
    ) -> Result<Vec<i64>, ModelError> {
        let stage = &mut self.masks;
        let flat: Vec<i64> = part.iter().map(|f| (f.row * 4 + f.token) as i64).collect();
        stage.bind_inputs(low_res, &flat, geometry)?;
        let shape = [part.len(), geometry.height, geometry.width];
        stage.binding.bind_output(graph::OUTPUT_MASKS, TensorRefMut::from_array_view_mut((shape, &mut *masks))?)?;
        stage.binding.bind_output_to_device(graph::OUTPUT_BOXES, &self.host)?;
        let result = stage.session.run_binding(&stage.binding).map_err(ModelError::from).and_then(|mut outputs| {
            let boxes = take_output(&mut outputs, graph::OUTPUT_BOXES)?;
            Ok(boxes.try_extract_tensor::<i64>()?.1.to_vec())
        });
        // The masks' view must not outlive this call inside the binding.
        stage.binding.clear();
        result
    }
}
