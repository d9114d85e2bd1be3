//! What an upload tells the person waiting for it. The flow reports through the
//! [`Progress`] trait; `intake upload` picks terminal bars ([`Bars`]), plain lines
//! for logs ([`Plain`]) or nothing ([`Silent`], for `--json`); tests count events.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;

/// One processing update from the socket, reduced to what a display needs.
#[derive(Debug, Clone, Serialize)]
pub struct StepUpdate {
    /// The step: `upload_complete`, `antivirus_scan`, `extracting_file`,
    /// `saving_files`, `creating_records`.
    pub step: String,
    /// A monitoring update's status (queued, in_progress, retrying, success, error).
    pub status: Option<String>,
    /// A progress update's (progress_count, total_count).
    pub counts: Option<(u64, u64)>,
    /// A progress update's `is_complete`.
    pub is_complete: bool,
    /// The antivirus status it reports (`scanning`, `clean`, `skipped`…), if any.
    pub av_status: Option<String>,
    /// The server's message text, if any.
    pub message: Option<String>,
}

impl StepUpdate {
    /// Whether this says the server scans nothing (no clamd configured).
    pub fn scan_skipped(&self) -> bool {
        self.step == "antivirus_scan" && self.av_status.as_deref() == Some("skipped")
    }
}

/// What a skipped antivirus step is shown as.
pub const SCAN_SKIPPED: &str = "skipped: the server has no virus scanner";

/// Receives events as an upload runs. Every method does nothing by default.
pub trait Progress: Send + Sync {
    /// The transfer starts: `total` bytes in `parts` parts, `done` of them already sent.
    fn transfer_started(&self, _total: u64, _parts: u64, _done: u64) {}
    /// Bytes handed to the network (negative when a failed part is rewound).
    fn bytes(&self, _delta: i64) {}
    /// A part (or the single PUT, part 1) was stored; `e_tag` is S3's answer.
    fn part_done(&self, _part: u32, _e_tag: &str) {}
    /// The store refused part `part` as corrupted on its way; it is sent again.
    fn part_refused(&self, _part: u32, _why: &str) {}
    /// Every byte is stored.
    fn transfer_done(&self) {}
    /// The socket dropped; reconnect attempt `attempt` follows.
    fn reconnecting(&self, _attempt: u32, _reason: &str) {}
    /// A processing update.
    fn step(&self, _update: &StepUpdate) {}
    /// The upload ended (either way); displays tidy up.
    fn finished(&self) {}
}

/// Reports nothing.
pub struct Silent;

impl Progress for Silent {}

/// One line per milestone on stderr, for logs and pipes.
pub struct Plain;

impl Progress for Plain {
    fn transfer_started(&self, total: u64, parts: u64, done: u64) {
        eprintln!(
            "uploading {} in {parts} part(s){}",
            indicatif::HumanBytes(total),
            if done > 0 {
                format!(" ({done} already sent)")
            } else {
                String::new()
            }
        );
    }
    fn transfer_done(&self) {
        eprintln!("upload stored; processing");
    }
    fn reconnecting(&self, attempt: u32, reason: &str) {
        eprintln!("connection lost ({reason}); reconnecting (attempt {attempt})");
    }
    fn step(&self, u: &StepUpdate) {
        if u.scan_skipped() {
            eprintln!("{}: {SCAN_SKIPPED}", u.step);
            return;
        }
        let done = u.is_complete || matches!(u.status.as_deref(), Some("success" | "error"));
        if done || u.status.as_deref() == Some("retrying") {
            let text = u.message.as_deref().unwrap_or_default();
            eprintln!(
                "{}: {} {text}",
                u.step,
                u.status.as_deref().unwrap_or("done")
            );
        }
    }
}

/// Terminal progress bars: bytes uploaded, then one line per processing step.
pub struct Bars {
    multi: MultiProgress,
    upload: ProgressBar,
    steps: Mutex<HashMap<String, ProgressBar>>,
}

impl Default for Bars {
    fn default() -> Self {
        Self::new()
    }
}

impl Bars {
    /// Bars drawn on stderr (indicatif draws nothing when it is not a terminal).
    pub fn new() -> Bars {
        Bars::named("upload")
    }

    /// Bars whose upload bar is labelled `name` (one archive of several).
    pub fn named(name: &str) -> Bars {
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
        let upload = multi.add(ProgressBar::new(0));
        upload.set_style(
            ProgressStyle::with_template(
                "{prefix:>16} [{bar:32.cyan/blue}] {bytes}/{total_bytes} {binary_bytes_per_sec} {eta} {msg}",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        upload.set_prefix(name.to_string());
        Bars {
            multi,
            upload,
            steps: Mutex::new(HashMap::new()),
        }
    }

    fn step_bar(&self, step: &str, counted: bool) -> ProgressBar {
        let mut steps = self.steps.lock().unwrap_or_else(|p| p.into_inner());
        steps
            .entry(step.to_string())
            .or_insert_with(|| {
                let bar = self.multi.add(if counted {
                    ProgressBar::new(0)
                } else {
                    ProgressBar::new_spinner()
                });
                let template = if counted {
                    "{prefix:>16} [{bar:32.green/white}] {pos}/{len} {msg}"
                } else {
                    "{prefix:>16} {spinner} {msg}"
                };
                bar.set_style(
                    ProgressStyle::with_template(template)
                        .expect("valid template")
                        .progress_chars("=> "),
                );
                bar.set_prefix(step.replace('_', " "));
                if !counted {
                    bar.enable_steady_tick(Duration::from_millis(120));
                }
                bar
            })
            .clone()
    }
}

impl Progress for Bars {
    fn transfer_started(&self, total: u64, parts: u64, done: u64) {
        self.upload.set_length(total);
        self.upload
            .set_message(format!("{parts} part{}", if parts == 1 { "" } else { "s" }));
        if done > 0 {
            self.upload
                .println(format!("resuming: {done} bytes already sent"));
        }
    }
    fn bytes(&self, delta: i64) {
        if delta >= 0 {
            self.upload.inc(delta as u64);
        } else {
            let pos = self.upload.position().saturating_sub(delta.unsigned_abs());
            self.upload.set_position(pos);
        }
    }
    fn transfer_done(&self) {
        self.upload.finish_with_message("stored");
    }
    fn reconnecting(&self, attempt: u32, reason: &str) {
        let _ = self.multi.println(format!(
            "connection lost ({reason}); reconnecting (attempt {attempt})"
        ));
    }
    fn step(&self, u: &StepUpdate) {
        match u.counts {
            Some((count, total)) => {
                let bar = self.step_bar(&u.step, true);
                bar.set_length(total);
                bar.set_position(count);
                if u.is_complete {
                    bar.finish_with_message("done");
                }
            }
            None if u.scan_skipped() => {
                // Not "done": nothing was scanned.
                self.step_bar(&u.step, false)
                    .finish_with_message(SCAN_SKIPPED);
            }
            None => {
                let bar = self.step_bar(&u.step, false);
                let status = u.status.as_deref().unwrap_or_default();
                let text = match &u.message {
                    Some(m) if !m.is_empty() => format!("{status}: {m}"),
                    _ => status.to_string(),
                };
                match status {
                    "success" | "error" => {
                        bar.finish_with_message(text);
                        // The end of processing settles the steps still spinning.
                        let steps = self.steps.lock().unwrap_or_else(|p| p.into_inner());
                        for other in steps.values().filter(|b| !b.is_finished()) {
                            if status == "success" {
                                other.finish_with_message("done");
                            } else {
                                other.abandon();
                            }
                        }
                    }
                    _ => bar.set_message(text),
                }
            }
        }
    }
    fn finished(&self) {
        self.upload.abandon();
        let steps = self.steps.lock().unwrap_or_else(|p| p.into_inner());
        for bar in steps.values() {
            if !bar.is_finished() {
                bar.abandon();
            }
        }
    }
}
