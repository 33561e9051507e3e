//! The live line `samstream client` keeps on stderr while a stream runs: results, frames
//! dropped, and p50/p99 of each stage the server reports.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::proto;
use crate::telemetry::{STAGE_NAMES, stage_values};

/// The stages the line shows (capture and queue are the client's own and the server's wait).
const STAGES: [&str; 7] = ["preprocess", "upload", "encoder", "decoder", "postprocess", "download", "total"];

pub struct LiveStats {
    histograms: Vec<Histogram<u64>>,
    results: u64,
    frames_dropped: u64,
    terminal: bool,
    quiet: bool,
    last_print: Instant,
}

impl LiveStats {
    pub fn new(quiet: bool) -> Self {
        Self {
            histograms: STAGES.iter().map(|_| Histogram::new(3).expect("valid precision")).collect(),
            results: 0,
            frames_dropped: 0,
            terminal: std::io::stderr().is_terminal(),
            quiet,
            last_print: Instant::now(),
        }
    }

    pub fn record(&mut self, result: &proto::FrameResult) {
        self.results += 1;
        self.frames_dropped = result.frames_dropped;
        if let Some(t) = &result.timing {
            let values = STAGE_NAMES.into_iter().zip(stage_values(t)).filter(|(stage, _)| STAGES.contains(stage)).map(|(_, us)| us);
            for (h, us) in self.histograms.iter_mut().zip(values) {
                if us > 0 {
                    let _ = h.record(us);
                }
            }
        }
        // A terminal gets the line rewritten in place; a log gets one every two seconds.
        if !self.quiet && (self.terminal || self.last_print.elapsed() >= Duration::from_secs(2)) {
            let line = self.line();
            let mut err = std::io::stderr();
            let _ = if self.terminal { write!(err, "\r{line}\x1b[K") } else { writeln!(err, "{line}") };
            self.last_print = Instant::now();
        }
    }

    pub fn line(&self) -> String {
        let mut line = format!("results {} | dropped {}", self.results, self.frames_dropped);
        for (stage, h) in STAGES.iter().zip(&self.histograms) {
            // A stage that usually takes no visible time (the host path's uploads, a CPU's
            // downloads) is left out.
            if h.value_at_quantile(0.5) >= 50 {
                // Whole milliseconds on a CPU (hundreds of them), tenths on a GPU.
                let ms = |q: f64| {
                    let ms = h.value_at_quantile(q) as f64 / 1000.0;
                    if ms < 10.0 { format!("{ms:.1}") } else { format!("{ms:.0}") }
                };
                line.push_str(&format!(" | {stage} {}/{}", ms(0.5), ms(0.99)));
            }
        }
        line + " ms p50/p99"
    }

    pub fn finish(&self) {
        if !self.quiet && self.terminal {
            eprintln!();
        }
        println!("{}", self.line());
    }
}
