//! A stream's objects: the client's prompts with their revision, each object's track, and
//! the tokens last used (so that a prompt update re-decodes only what changed).

use std::collections::BTreeMap;

use super::io::PromptUpdate;
use super::tracking::{self, Track};
use crate::model::{ImageGeometry, ObjectPrompt, PromptTokens};
use crate::pipeline::ObjectResult;

struct StreamObject {
    prompt: ObjectPrompt,
    track: Option<Track>,
    /// Tokens this object was decoded with on the last processed frame.
    last_tokens: Option<PromptTokens>,
}

#[derive(Default)]
pub struct PromptState {
    objects: BTreeMap<u32, StreamObject>,
    revision: u64,
}

impl PromptState {
    pub fn revision(&self) -> u64 {
        self.revision
    }

    pub fn len(&self) -> usize {
        self.objects.len()
    }

    /// Objects there would be after `update`, for the objects-per-stream limit.
    pub fn count_after(&self, update: &PromptUpdate) -> usize {
        let mut ids: std::collections::BTreeSet<u32> =
            if update.clear { Default::default() } else { self.objects.keys().copied().collect() };
        for id in &update.remove {
            ids.remove(id);
        }
        ids.extend(update.upsert.iter().map(|p| p.object_id));
        ids.len()
    }

    /// Clear, then remove, then upsert; an upserted object starts over from its new prompt.
    pub fn apply(&mut self, update: PromptUpdate) {
        if update.clear {
            self.objects.clear();
        }
        for id in &update.remove {
            self.objects.remove(id);
        }
        for prompt in update.upsert {
            self.objects.insert(prompt.object_id, StreamObject { prompt, track: None, last_tokens: None });
        }
        self.revision = update.revision;
    }

    /// Object ids and decoder tokens for a frame. `again` re-decodes the last processed frame
    /// after an update: unchanged objects reuse their tokens, so their masks stay the same.
    pub fn tokens(&mut self, geometry: &ImageGeometry, track: bool, again: bool) -> (Vec<u32>, Vec<PromptTokens>) {
        let mut ids = Vec::with_capacity(self.objects.len());
        let mut all = Vec::with_capacity(self.objects.len());
        for (&id, object) in &mut self.objects {
            let tokens = match (&object.last_tokens, again) {
                (Some(last), true) => last.clone(),
                _ => {
                    let tracked = if track { object.track.as_ref().and_then(|t| tracking::reprompt(id, t, geometry)) } else { None };
                    PromptTokens::new(tracked.as_ref().unwrap_or(&object.prompt), geometry)
                }
            };
            object.last_tokens = Some(tokens.clone());
            ids.push(id);
            all.push(tokens);
        }
        (ids, all)
    }

    /// Updates tracks from a frame's results; lost objects are reported with score/area 0.
    pub fn record(&mut self, results: &mut [ObjectResult], geometry: ImageGeometry) {
        for result in results.iter_mut() {
            let Some(object) = self.objects.get_mut(&result.object_id) else { continue };
            // Logits are kept only with tracking on; without them there is nothing to track.
            object.track = result.low_res.take().and_then(|low_res| tracking::track_from(result, low_res, geometry));
            if result.area == 0 {
                tracking::mark_lost(result);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{PointPrompt, PromptLabel};

    fn prompt(id: u32, x: f32) -> ObjectPrompt {
        ObjectPrompt { object_id: id, points: vec![PointPrompt { x, y: 5.0, label: PromptLabel::Positive }], bbox: None, mask_input: None }
    }

    #[test]
    fn updates_clear_remove_then_upsert_and_carry_the_revision() {
        let mut state = PromptState::default();
        state.apply(PromptUpdate { upsert: vec![prompt(1, 1.0), prompt(2, 2.0)], remove: vec![], clear: false, revision: 4 });
        assert_eq!((state.len(), state.revision()), (2, 4));
        let update = PromptUpdate { upsert: vec![prompt(3, 3.0)], remove: vec![1], clear: false, revision: 5 };
        assert_eq!(state.count_after(&update), 2);
        state.apply(update);
        let (ids, _) = state.tokens(&ImageGeometry::new(100, 100), false, false);
        assert_eq!(ids, vec![2, 3]);
        state.apply(PromptUpdate { upsert: vec![prompt(9, 1.0)], remove: vec![], clear: true, revision: 6 });
        assert_eq!(state.tokens(&ImageGeometry::new(100, 100), false, false).0, vec![9]);
    }

    #[test]
    fn a_redecode_reuses_unchanged_tokens_and_takes_new_prompts() {
        let geometry = ImageGeometry::new(100, 100);
        let mut state = PromptState::default();
        state.apply(PromptUpdate { upsert: vec![prompt(1, 10.0), prompt(2, 20.0)], remove: vec![], clear: false, revision: 1 });
        let (_, first) = state.tokens(&geometry, true, false);
        state.apply(PromptUpdate { upsert: vec![prompt(2, 60.0)], remove: vec![], clear: false, revision: 2 });
        let (_, again) = state.tokens(&geometry, true, true);
        assert_eq!(again[0], first[0], "object 1 is decoded exactly as before");
        assert_eq!(again[1].coords[0], [614.4, 51.2], "object 2 takes its new prompt");
    }
}
