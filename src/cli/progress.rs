//! Progress bars for long stores and reads (indicatif), drawn on standard
//! error and only when it is a terminal.

use std::time::Duration;

use floe_client::{Progress, ProgressSink};
use indicatif::{ProgressBar, ProgressStyle};

/// Makes progress bars, or hidden ones when disabled.
#[derive(Debug, Clone, Copy)]
pub struct Bars {
    enabled: bool,
}

/// One transfer's bar.
#[derive(Debug, Clone)]
pub struct Transfer {
    bar: ProgressBar,
}

impl Bars {
    /// Bars that draw when `enabled`.
    pub fn new(enabled: bool) -> Self {
        Self { enabled }
    }

    /// A bar for storing or reading `label`; what it shows follows the
    /// progress reported to its sink.
    pub fn transfer(&self, label: &str) -> Transfer {
        let bar = if self.enabled {
            ProgressBar::new_spinner()
        } else {
            ProgressBar::hidden()
        };
        bar.set_prefix(label.to_owned());
        bar.enable_steady_tick(Duration::from_millis(120));
        Transfer { bar }
    }
}

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
}

impl Transfer {
    /// The sink a store or read reports to.
    pub fn sink(&self) -> ProgressSink {
        let bar = self.bar.clone();
        ProgressSink::new(move |progress| match progress {
            Progress::Encoding { bytes } => {
                bar.set_message(format!("encoding {}", indicatif::HumanBytes(bytes)));
            }
            Progress::Encoded { total } => {
                bar.set_style(style(
                    "{prefix} [{bar:30}] {bytes}/{total_bytes} slivers uploaded ({bytes_per_sec}) {msg}",
                ));
                bar.set_length(total);
                bar.set_position(0);
                bar.set_message(String::new());
            }
            Progress::Uploaded { bytes, .. } => bar.set_position(bytes),
            Progress::Confirmed {
                shards,
                needed,
                total,
            } => bar.set_message(format!(
                "confirmed by {shards}/{total} shards ({needed} needed)"
            )),
            Progress::Downloaded {
                slivers, needed, ..
            } => {
                if bar.length() != Some(u64::from(needed)) {
                    bar.set_style(style(
                        "{prefix} [{bar:30}] {pos}/{len} slivers verified {msg}",
                    ));
                    bar.set_length(u64::from(needed));
                }
                bar.set_position(u64::from(slivers));
            }
            Progress::Decoding => bar.set_message("decoding"),
        })
    }

    /// Removes the bar.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}
