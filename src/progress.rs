//! `pull` progress: one bar per layer on a terminal (indicatif), Docker's plain status
//! lines otherwise (pipes, CI logs).

use crate::commands::images::short;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use registry::PullEvent;
use std::collections::HashMap;
use std::io::IsTerminal;

pub struct PullProgress {
    quiet: bool,
    /// Set on a terminal.
    bars: Option<(MultiProgress, HashMap<String, ProgressBar>)>,
}

impl PullProgress {
    pub fn new(quiet: bool) -> Self {
        let bars = (!quiet && std::io::stdout().is_terminal()).then(|| {
            (
                MultiProgress::with_draw_target(ProgressDrawTarget::stdout()),
                HashMap::new(),
            )
        });
        PullProgress { quiet, bars }
    }

    pub fn event(&mut self, ev: PullEvent) {
        if self.quiet {
            return;
        }
        let Some((multi, bars)) = &mut self.bars else {
            match ev {
                PullEvent::LayerExists { digest } => println!("{}: Already exists", short(&digest)),
                PullEvent::LayerQueued { digest, .. } => {
                    println!("{}: Pulling fs layer", short(&digest))
                }
                PullEvent::LayerDownloaded { digest, .. } => {
                    println!("{}: Pull complete", short(&digest))
                }
                PullEvent::Resolved { .. } | PullEvent::Downloading { .. } => {}
            }
            return;
        };
        match ev {
            PullEvent::LayerExists { digest } => {
                let _ = multi.println(format!("{}: Already exists", short(&digest)));
            }
            PullEvent::LayerQueued { digest, size } => {
                let bar = multi.add(ProgressBar::new(size));
                let style = ProgressStyle::with_template(
                    "{prefix}: {msg:<12} [{bar:40}] {bytes}/{total_bytes}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> ");
                bar.set_style(style);
                bar.set_prefix(short(&digest).to_string());
                bar.set_message("Waiting");
                bars.insert(digest, bar);
            }
            PullEvent::Downloading {
                digest, current, ..
            } => {
                if let Some(b) = bars.get(&digest) {
                    b.set_message("Downloading");
                    b.set_position(current);
                }
            }
            PullEvent::LayerDownloaded { digest, .. } => {
                if let Some(b) = bars.get(&digest) {
                    b.finish_with_message("Pull complete");
                }
            }
            PullEvent::Resolved { .. } => {}
        }
    }
}
