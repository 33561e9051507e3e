//! Plays a file as if it were live, from its frames' own timestamps, and notices frames the
//! decoder could not deliver (a jump in timestamps larger than the usual frame spacing).

use std::time::{Duration, Instant};

pub struct FileClock {
    /// Spacing used when the container reports no timestamps.
    fallback: Duration,
    /// Wall-clock instant and timestamp (ms) of the first frame since (re)start.
    origin: Option<(Instant, f64)>,
    last_ms: Option<f64>,
    /// The smallest positive timestamp step seen: one frame.
    frame_ms: Option<f64>,
    next_due: Instant,
}

impl FileClock {
    pub fn new(fallback: Duration) -> Self {
        Self { fallback, origin: None, last_ms: None, frame_ms: None, next_due: Instant::now() }
    }

    /// After a rewind: timestamps start over.
    pub fn restart(&mut self) {
        self.origin = None;
        self.last_ms = None;
        self.next_due = Instant::now();
    }

    /// Registers a frame with timestamp `position_ms` (negative when unknown) and returns
    /// how long to wait before publishing it, and how many frames went missing before it.
    pub fn frame(&mut self, position_ms: f64, now: Instant) -> (Duration, u64) {
        if position_ms < 0.0 {
            self.next_due += self.fallback;
            let wait = self.next_due.saturating_duration_since(now);
            if wait.is_zero() {
                self.next_due = now;
            }
            return (wait, 0);
        }
        let (start, first_ms) = *self.origin.get_or_insert((now, position_ms));
        let mut missing = 0;
        if let Some(last) = self.last_ms {
            let step = position_ms - last;
            if step > 0.0 {
                let frame = self.frame_ms.map_or(step, |f| f.min(step));
                self.frame_ms = Some(frame);
                missing = ((step / frame).round() as u64).saturating_sub(1);
            }
        }
        self.last_ms = Some(position_ms);
        let due = start + Duration::from_secs_f64(((position_ms - first_ms) / 1000.0).max(0.0));
        (due.saturating_duration_since(now), missing)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_due_at_their_timestamps_and_gaps_are_counted() {
        let mut clock = FileClock::new(Duration::from_millis(40));
        let t0 = Instant::now();
        assert_eq!(clock.frame(1000.0, t0), (Duration::ZERO, 0));
        assert_eq!(clock.frame(1100.0, t0), (Duration::from_millis(100), 0));
        assert_eq!(clock.frame(1200.0, t0 + Duration::from_millis(150)), (Duration::from_millis(50), 0));
        // Four frames' worth of timestamps in one step: three frames went missing.
        assert_eq!(clock.frame(1600.0, t0 + Duration::from_millis(600)), (Duration::ZERO, 3));
        clock.restart();
        assert_eq!(clock.frame(0.0, t0 + Duration::from_secs(2)), (Duration::ZERO, 0), "a rewind is not a gap");
    }

    #[test]
    fn without_timestamps_the_fallback_rate_paces() {
        let mut clock = FileClock::new(Duration::from_millis(40));
        let t0 = clock.next_due;
        assert_eq!(clock.frame(-1.0, t0), (Duration::from_millis(40), 0));
        assert_eq!(clock.frame(-1.0, t0 + Duration::from_millis(40)), (Duration::from_millis(40), 0));
    }
}
