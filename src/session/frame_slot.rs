//! The latest client frame not yet taken by its session: a newer frame replaces an unprocessed
//! one (latest frame wins) and the replaced one is counted as dropped.

use std::sync::Mutex;

use tokio::sync::Notify;

use super::io::ClientFrame;

#[derive(Default)]
pub struct FrameSlot {
    state: Mutex<SlotState>,
    pub ready: Notify,
}

#[derive(Default)]
struct SlotState {
    pending: Option<ClientFrame>,
    dropped: u64,
}

/// A frame taken from the slot, with the number of frames dropped before it.
pub struct Taken {
    pub frame: ClientFrame,
    pub dropped_before: u64,
}

impl FrameSlot {
    pub fn put(&self, frame: ClientFrame) {
        let mut state = self.state.lock().expect("slot lock");
        if state.pending.replace(frame).is_some() {
            state.dropped += 1;
        }
        drop(state);
        self.ready.notify_one();
    }

    /// The pending frame with the count of frames dropped before it, read together so that a
    /// frame replaced after this one is never counted against it.
    pub fn take(&self) -> Option<Taken> {
        let mut state = self.state.lock().expect("slot lock");
        let dropped_before = state.dropped;
        state.pending.take().map(|frame| Taken { frame, dropped_before })
    }

    pub fn is_empty(&self) -> bool {
        self.state.lock().expect("slot lock").pending.is_none()
    }

    /// Wakes the session (the client half-closed: it may be done once the slot is empty).
    pub fn wake(&self) {
        self.ready.notify_one();
    }
}
