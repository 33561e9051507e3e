//! The decoder thread: SAM's prompt encoder and mask decoder for every object of a request, in
//! as many calls as `decode_plan` says, on the embedding the encoder left (on the device, on
//! a GPU).

use tokio::sync::mpsc;

use super::EngineError;
use super::job::DecodeJob;
use crate::model::decode_plan::decoder_calls;
use crate::model::{DecodedObjects, Embedding, MaskDecoder, MaskRequest, ModelError, PromptTokens};
use crate::telemetry::metrics::JOBS_SKIPPED;

pub(super) fn run(mut decoder: Box<dyn MaskDecoder>, mut queue: mpsc::Receiver<DecodeJob>) {
    while let Some(job) = queue.blocking_recv() {
        if job.reply.is_closed() {
            metrics::counter!(JOBS_SKIPPED, "stage" => "decoder").increment(1);
            continue;
        }
        let queue_wait = job.enqueued.elapsed();
        let _span = job.span.enter();
        let result = tracing::info_span!("decoder", objects = job.objects.len())
            .in_scope(|| decode_all(decoder.as_mut(), &job.frame.embedding, &job.objects, &job.request));
        let result = result.map_err(EngineError::from).map(|mut decoded| {
            decoded.timings.queue += queue_wait;
            decoded
        });
        let _ = job.reply.send(result);
    }
}

/// Every object of one request, one decoder call per group of the plan.
pub(super) fn decode_all(
    decoder: &mut dyn MaskDecoder,
    embedding: &Embedding,
    objects: &[PromptTokens],
    request: &MaskRequest,
) -> Result<DecodedObjects, ModelError> {
    let mut decoded = DecodedObjects::with_capacity(objects.len());
    let most_per_call = decoder.object_buckets().largest();
    for call in decoder_calls(objects, request, decoder.makes_masks(), most_per_call) {
        let group: Vec<&PromptTokens> = call.iter().map(|&i| &objects[i]).collect();
        let answer = decoder.decode(embedding, &group, request)?;
        if answer.iou.nrows() != call.len() {
            return Err(ModelError::Shape { name: "iou_predictions", shape: vec![answer.iou.nrows(), call.len()] });
        }
        decoded.push_group(&call, answer);
    }
    Ok(decoded)
}
