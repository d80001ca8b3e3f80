//! Pull progress on a terminal: one bar per layer with bytes and rate.

use frun_images::{Digest, LayerOutcome, Platform, Progress};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::HashMap;
use std::sync::Mutex;

pub struct TerminalProgress {
    multi: MultiProgress,
    bars: Mutex<HashMap<Digest, ProgressBar>>,
}

impl TerminalProgress {
    pub fn new() -> Self {
        TerminalProgress {
            multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
            bars: Mutex::new(HashMap::new()),
        }
    }

    fn bar(&self, d: &Digest) -> Option<ProgressBar> {
        self.bars.lock().ok()?.get(d).cloned()
    }
}

fn short(d: &Digest) -> &str {
    &d.hex()[..12]
}

impl Progress for TerminalProgress {
    fn resolved(&self, reference: &str, manifest: &Digest, platform: &Platform) {
        let _ = self
            .multi
            .println(format!("{reference}: {manifest} ({platform})"));
    }

    fn layer_start(&self, digest: &Digest, size: u64) {
        let bar = self.multi.add(ProgressBar::new(size));
        bar.set_style(
            ProgressStyle::with_template(
                "{prefix} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {msg}",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        bar.set_prefix(short(digest).to_string());
        if let Ok(mut bars) = self.bars.lock() {
            bars.insert(digest.clone(), bar);
        }
    }

    fn layer_progress(&self, digest: &Digest, done: u64) {
        if let Some(bar) = self.bar(digest) {
            bar.set_position(done);
        }
    }

    fn layer_retry(&self, digest: &Digest, attempt: u32, error: &str) {
        if let Some(bar) = self.bar(digest) {
            bar.set_message(format!("retry {attempt}: {error}"));
        }
    }

    fn layer_done(&self, digest: &Digest, outcome: LayerOutcome) {
        match (self.bar(digest), outcome) {
            (Some(bar), _) => bar.finish_with_message("done"),
            (None, LayerOutcome::Exists) => {
                let _ = self
                    .multi
                    .println(format!("{} already present", short(digest)));
            }
            (None, LayerOutcome::Pulled) => {}
        }
    }
}
