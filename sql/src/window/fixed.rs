//! `TUMBLE(ts, size)` and `HOP(ts, slide, size)`: windows of one length at
//! fixed starts; a row falls in `size / slide` of them (1 for TUMBLE).

use serde::{Deserialize, Serialize};

use super::{Args, MAX_WINDOWS_PER_ROW};

/// A fixed-length window over a source's time column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowSpec {
    /// Window length in milliseconds.
    pub size_ms: i64,
    /// Distance between window starts; equal to `size_ms` for TUMBLE.
    pub slide_ms: i64,
}

impl WindowSpec {
    /// Start of the earliest window containing `ts`.
    pub fn first_start(&self, ts: i64) -> i64 {
        // The latest start <= ts, then step back while the window still contains ts.
        let last = ts.div_euclid(self.slide_ms) * self.slide_ms;
        last - (self.windows_per_record() - 1) * self.slide_ms
    }

    /// How many windows each record belongs to (1 for TUMBLE).
    pub fn windows_per_record(&self) -> i64 {
        self.size_ms / self.slide_ms
    }
}

/// `TUMBLE(ts, size)`.
pub(super) fn tumble(args: &Args) -> Result<WindowSpec, String> {
    args.expect(2, "TUMBLE(ts, INTERVAL '1' MINUTE)")?;
    let size = args.interval(1)?;
    Ok(WindowSpec {
        size_ms: size,
        slide_ms: size,
    })
}

/// `HOP(ts, slide, size)`: size a multiple of the slide, and a bounded
/// number of windows per row (each row is copied into each).
pub(super) fn hop(args: &Args) -> Result<WindowSpec, String> {
    args.expect(3, "HOP(ts, INTERVAL '1' MINUTE, INTERVAL '5' MINUTE)")?;
    let (slide, size) = (args.interval(1)?, args.interval(2)?);
    if size % slide != 0 {
        return Err(format!(
            "HOP size ({size} ms) must be a multiple of its slide ({slide} ms)"
        ));
    }
    if size / slide > MAX_WINDOWS_PER_ROW {
        return Err(format!(
            "HOP size ({size} ms) over its slide ({slide} ms) puts every row into {} windows; \
             at most {MAX_WINDOWS_PER_ROW} are allowed (use a longer slide)",
            size / slide
        ));
    }
    Ok(WindowSpec {
        size_ms: size,
        slide_ms: slide,
    })
}
