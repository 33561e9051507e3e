//! A session's frames turned into results: every object decoded on the frame (a prompt update
//! re-decodes the last processed frame's cached embedding), tracking recorded, and the live
//! automatic mode on its cadence. The session loop sends what comes out.

use std::sync::Arc;
use std::time::Instant;

use tracing::Instrument;

use super::auto_ids::AutoIds;
use super::config::SessionConfig;
use super::io::{AutoOutcome, FrameOutcome, PromptUpdate};
use super::prompts::PromptState;
use crate::engine::{EncodedFrame, EngineError};
use crate::model::prompt::check_inside;
use crate::pipeline::{Pipeline, PipelineError};
use crate::telemetry::StageTimings;
use crate::video::preview::Preview;

pub struct FrameProcessor {
    pipeline: Pipeline,
    config: SessionConfig,
    /// The source's name, for the logs.
    label: String,
    prompts: PromptState,
    /// The newest processed frame: prompt updates re-decode its cached embedding.
    last_frame: Option<Arc<EncodedFrame>>,
    /// The automatic mode's ids, with tracking.
    auto_ids: AutoIds,
    /// Frames processed (prompt updates aside), for the automatic mode's cadence.
    frames_seen: u64,
    /// Results made so far, for the previews' cadence.
    results: u64,
}

impl FrameProcessor {
    pub fn new(pipeline: Pipeline, config: SessionConfig, label: String) -> Self {
        Self {
            pipeline,
            config,
            label,
            prompts: PromptState::default(),
            last_frame: None,
            auto_ids: AutoIds::default(),
            frames_seen: 0,
            results: 0,
        }
    }

    pub fn prompts(&self) -> &PromptState {
        &self.prompts
    }

    pub fn last_frame(&self) -> Option<Arc<EncodedFrame>> {
        self.last_frame.clone()
    }

    /// Applies `update`, or says why not (the text names the field): a prompt outside the last
    /// frame, or more objects than the session may hold.
    pub fn apply(&mut self, update: PromptUpdate) -> Result<(), String> {
        if let Some(frame) = &self.last_frame {
            check_inside("prompts.upsert", &update.upsert, frame.geometry.width, frame.geometry.height).map_err(|e| e.to_string())?;
        }
        let count = self.prompts.count_after(&update);
        if count > self.config.max_objects {
            return Err(format!("prompts.upsert: {count} objects exceed the limit of {}", self.config.max_objects));
        }
        self.prompts.apply(update);
        Ok(())
    }

    /// Decodes every object on `frame`; `update` is set when a prompt update re-decodes an
    /// already processed frame (its cached embedding is reused). None when the decoder's queue
    /// was full and the frame is skipped.
    pub async fn process(
        &mut self,
        frame: Arc<EncodedFrame>,
        update: Option<Instant>,
        frames_dropped: u64,
    ) -> Result<Option<FrameOutcome>, PipelineError> {
        let span = crate::stage_span!("frame", frame_id = frame.origin.seq, objects = self.prompts.len());
        let geometry = frame.geometry;
        let (ids, tokens) = self.prompts.tokens(&geometry, self.config.track, update.is_some());
        let mut timings = if update.is_some() { StageTimings::default() } else { frame.timings };
        let segmented =
            self.pipeline.segment(&frame, ids, tokens, self.config.mask_options, self.config.track).instrument(span.clone()).await;
        let mut objects = match segmented {
            Ok((objects, after)) => {
                timings += after;
                objects
            }
            Err(PipelineError::Engine(EngineError::QueueFull(..))) => {
                tracing::warn!(source = %self.label, "decoder queue full; frame skipped");
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        self.prompts.record(&mut objects, geometry);
        let auto = if update.is_none() { self.segment_everything(&frame).instrument(span.clone()).await? } else { None };
        let preview = self.preview(&frame, &mut timings).await?;
        timings.total = update.unwrap_or(frame.origin.grabbed_at).elapsed();
        timings.report(&span, "stream");
        let outcome = FrameOutcome {
            frame_id: frame.origin.seq,
            timestamp_us: frame.origin.timestamp_us,
            width: geometry.width as u32,
            height: geometry.height as u32,
            objects,
            timings,
            prompt_revision: self.prompts.revision(),
            frames_dropped,
            auto,
            preview,
        };
        self.last_frame = Some(frame);
        Ok(Some(outcome))
    }

    /// The frame's JPEG when the session asked for previews and this result is on their
    /// cadence: the frame the masks were computed on, encoded once whoever else asks.
    async fn preview(&mut self, frame: &Arc<EncodedFrame>, timings: &mut StageTimings) -> Result<Option<Arc<Preview>>, PipelineError> {
        self.results += 1;
        let Some(request) = self.config.preview else { return Ok(None) };
        if !(self.results - 1).is_multiple_of(request.every.max(1)) {
            return Ok(None);
        }
        let (preview, took) = frame.previews.get(&frame.pixels, request.spec).await.map_err(|e| PipelineError::Preview(e.to_string()))?;
        timings.preview += took;
        Ok(Some(preview))
    }

    /// The automatic mode on a newly processed frame, when its cadence says so; after the
    /// prompted objects, which it leaves as they are.
    async fn segment_everything(&mut self, frame: &Arc<EncodedFrame>) -> Result<Option<AutoOutcome>, PipelineError> {
        let Some(mode) = self.config.auto else { return Ok(None) };
        self.frames_seen += 1;
        if !(self.frames_seen - 1).is_multiple_of(mode.every.max(1)) {
            return Ok(None);
        }
        let everything = match self.pipeline.segment_everything_frame(frame, mode.options, self.config.mask_options.format).await {
            Ok(everything) => everything,
            Err(PipelineError::Engine(EngineError::QueueFull(..))) => {
                tracing::warn!(source = %self.label, "decoder queue full; automatic mode skipped this frame");
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        everything.timings.report(&tracing::Span::current(), "stream_auto");
        let (ids, removed) = if self.config.track {
            let runs: Vec<_> = everything.masks.iter().map(|m| &m.runs).collect();
            let assigned = self.auto_ids.assign(&runs);
            (assigned.ids, assigned.removed)
        } else {
            (vec![0; everything.masks.len()], Vec::new())
        };
        Ok(Some(AutoOutcome { masks: everything.masks.into_iter().zip(ids).collect(), removed, timings: everything.timings }))
    }
}
