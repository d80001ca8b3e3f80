//! Progress on a terminal, quiet in scripts: one bar per layer of a pull
//! ([`TerminalProgress`]), and one bar per long step of a backup, restore or upload
//! ([`Step`]). Nothing is drawn when stderr is not a terminal (a script, the
//! supervisor's scheduled backups) or with `--format json`.

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

/// Whether [`Step`]s draw: set once by the command ([`show_steps`]).
static SHOW_STEPS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Lets this command's [`Step`]s draw when `wanted` (not `--format json`) and stderr
/// is a terminal.
pub fn show_steps(wanted: bool) {
    use std::io::IsTerminal;
    SHOW_STEPS.store(
        wanted && std::io::stderr().is_terminal(),
        std::sync::atomic::Ordering::Relaxed,
    );
}

/// One long step (archiving, verifying, an upload): a byte bar, or a spinner when the
/// size is not known; a no-op unless [`show_steps`] let it draw. Clones share the bar.
#[derive(Clone, Default)]
pub struct Step(Option<ProgressBar>);

impl Step {
    fn shown() -> bool {
        SHOW_STEPS.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// A bar of `total` bytes.
    pub fn bytes(what: &str, total: u64) -> Step {
        if !Step::shown() {
            return Step(None);
        }
        let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template(
                "{prefix:<24} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {msg}",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        bar.set_prefix(what.to_string());
        Step(Some(bar))
    }

    /// A spinner with the time spent (for what has no byte count: sqlite's online
    /// backup, an sftp upload).
    pub fn spinner(what: &str) -> Step {
        if !Step::shown() {
            return Step(None);
        }
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template("{prefix:<24} {spinner} {elapsed} {msg}")
                .expect("valid template"),
        );
        bar.set_prefix(what.to_string());
        bar.enable_steady_tick(std::time::Duration::from_millis(200));
        Step(Some(bar))
    }

    /// The total, once known (a download's length).
    pub fn set_length(&self, n: u64) {
        if let Some(b) = &self.0 {
            b.set_length(n);
        }
    }

    pub fn inc(&self, n: u64) {
        if let Some(b) = &self.0 {
            b.inc(n);
        }
    }

    /// Ends the step, its line left on the terminal with `msg`.
    pub fn done(&self, msg: &str) {
        if let Some(b) = &self.0 {
            b.finish_with_message(msg.to_string());
        }
    }

    /// Ends the step, its line removed (it failed: the error says why).
    pub fn abandon(&self) {
        if let Some(b) = &self.0 {
            b.finish_and_clear();
        }
    }
}

/// A reader that moves a [`Step`] by what it reads.
pub struct StepReader<R> {
    pub inner: R,
    pub step: Step,
}

impl<R: std::io::Read> std::io::Read for StepReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.step.inc(n as u64);
        Ok(n)
    }
}
