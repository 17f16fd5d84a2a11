//! The human rendering of [`crate::events`]: on a terminal one redrawn line
//! with a bar, bytes, rate and ETA; on a serial console or a pipe, plain
//! lines (a start line, one progress line every few seconds, an end line) with
//! no ANSI escapes and no `\r`, which would garble a log.
//!
//! The formatting is pure ([`bar_line`], [`plain_line`], [`human_bytes`],
//! [`human_duration`]) and unit-tested; [`HumanSink`] only decides when to
//! draw.

use crate::events::Level;
use crate::events::{Event, EventKind, Sink, Verdict};
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// Plain mode: one progress line this often.
pub const PLAIN_INTERVAL: Duration = Duration::from_secs(5);
/// Bar mode: redraw at most this often.
pub const BAR_INTERVAL: Duration = Duration::from_millis(200);
/// Width of the bar in characters.
const BAR_WIDTH: usize = 24;

/// How the sink draws, once `auto` is resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// A redrawn line with a bar (terminals).
    Bar,
    /// Plain lines (serial consoles, pipes, logs).
    Plain,
    /// Nothing.
    Off,
}

impl Style {
    /// What suits stderr: a bar when it is a terminal and `TERM` is not
    /// `dumb` (a serial console usually has TERM unset or `vt100`, and gets
    /// the bar only if it is a tty), else plain lines.
    pub fn for_stderr() -> Style {
        let tty = std::io::stderr().is_terminal();
        let dumb = std::env::var("TERM").map(|t| t == "dumb").unwrap_or(false);
        if tty && !dumb {
            Style::Bar
        } else {
            Style::Plain
        }
    }
}

/// Renders events for people, on stderr or any writer.
pub struct HumanSink {
    out: Box<dyn Write + Send>,
    style: Style,
    last_draw: Option<Instant>,
    /// A bar line is on screen and must be cleared before other output.
    bar_shown: bool,
    interval: Duration,
    step_start: Option<Instant>,
}

impl HumanSink {
    /// A sink on stderr.
    pub fn new(style: Style) -> HumanSink {
        HumanSink::with_writer(style, Box::new(std::io::stderr()))
    }

    /// A sink with an explicit style and writer (tests, other consoles).
    pub fn with_writer(style: Style, out: Box<dyn Write + Send>) -> HumanSink {
        let interval = if style == Style::Bar {
            BAR_INTERVAL
        } else {
            PLAIN_INTERVAL
        };
        HumanSink {
            out,
            style,
            last_draw: None,
            bar_shown: false,
            interval,
            step_start: None,
        }
    }

    /// Changes how often progress is drawn (tests).
    pub fn interval(mut self, every: Duration) -> HumanSink {
        self.interval = every;
        self
    }

    fn clear_bar(&mut self) {
        if self.bar_shown {
            let _ = write!(self.out, "\r\x1b[2K");
            self.bar_shown = false;
        }
    }

    fn line(&mut self, text: &str) {
        self.clear_bar();
        let _ = writeln!(self.out, "{text}");
        let _ = self.out.flush();
    }
}

impl Sink for HumanSink {
    fn emit(&mut self, ev: &Event) {
        if self.style == Style::Off {
            return;
        }
        let step = ev.step.as_deref().unwrap_or("");
        match &ev.kind {
            EventKind::StepStart => {
                self.last_draw = Some(Instant::now());
                self.step_start = Some(Instant::now());
                self.line(&format!("{step} ..."));
            }
            EventKind::Progress => {
                let due = self
                    .last_draw
                    .map_or(true, |t| t.elapsed() >= self.interval);
                if !due {
                    return;
                }
                self.last_draw = Some(Instant::now());
                let done = ev.bytes_done.unwrap_or(0);
                match self.style {
                    Style::Bar => {
                        let text = bar_line(step, done, ev.bytes_total, ev.rate);
                        let _ = write!(self.out, "\r\x1b[2K{text}");
                        let _ = self.out.flush();
                        self.bar_shown = true;
                    }
                    _ => self.line(&plain_line(step, done, ev.bytes_total, ev.rate)),
                }
            }
            EventKind::StepEnd => {
                let verdict = match ev.verdict {
                    Some(Verdict::Ok) => "done",
                    Some(Verdict::Skipped) => "skipped (already done)",
                    Some(Verdict::Failed) | None => "FAILED",
                };
                match self.step_start.take() {
                    Some(t) if t.elapsed() >= Duration::from_secs(1) => {
                        let took = human_duration(t.elapsed());
                        self.line(&format!("{step}: {verdict} in {took}"));
                    }
                    _ => self.line(&format!("{step}: {verdict}")),
                }
            }
            EventKind::Message { level, text } => {
                let prefix = match level {
                    Level::Warn => "warning: ",
                    Level::Error => "error: ",
                    Level::Info => "",
                };
                self.line(&format!("{prefix}{text}"));
            }
            // The report and the FAIL line say these for people.
            EventKind::Plan { .. } | EventKind::Failure { .. } | EventKind::Summary { .. } => {}
        }
    }
}

/// `1.5 GiB`, `12.0 MiB`, `512 B`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = UNITS[0];
    for u in UNITS.iter().skip(1) {
        if v < 1024.0 {
            break;
        }
        v /= 1024.0;
        unit = u;
    }
    format!("{v:.1} {unit}")
}

/// `42s`, `3m05s`, `1h02m`.
pub fn human_duration(d: Duration) -> String {
    let s = d.as_secs();
    if s < 60 {
        format!("{s}s")
    } else if s < 3600 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{}h{:02}m", s / 3600, s % 3600 / 60)
    }
}

fn eta(done: u64, total: Option<u64>, rate: Option<f64>) -> Option<Duration> {
    let (total, rate) = (total?, rate?);
    if rate <= 0.0 || done > total {
        return None;
    }
    Some(Duration::from_secs_f64((total - done) as f64 / rate))
}

/// The terminal line: `unpack APP, APP_b [=====>    ]  45% 120.0 MiB/265.0 MiB 88.1 MiB/s ETA 2s`.
pub fn bar_line(step: &str, done: u64, total: Option<u64>, rate: Option<f64>) -> String {
    let mut s = format!("{step} ");
    match total.filter(|&t| t > 0) {
        Some(t) => {
            let frac = (done as f64 / t as f64).clamp(0.0, 1.0);
            let filled = (frac * BAR_WIDTH as f64) as usize;
            let bar: String = (0..BAR_WIDTH)
                .map(|i| match i.cmp(&filled) {
                    std::cmp::Ordering::Less => '=',
                    std::cmp::Ordering::Equal => '>',
                    std::cmp::Ordering::Greater => ' ',
                })
                .collect();
            s.push_str(&format!(
                "[{bar}] {:3.0}% {}/{}",
                frac * 100.0,
                human_bytes(done),
                human_bytes(t)
            ));
        }
        None => s.push_str(&human_bytes(done)),
    }
    if let Some(r) = rate {
        s.push_str(&format!(" {}/s", human_bytes(r as u64)));
    }
    if let Some(e) = eta(done, total, rate) {
        s.push_str(&format!(" ETA {}", human_duration(e)));
    }
    s
}

/// The plain line: `unpack APP, APP_b: 120.0 MiB of 265.0 MiB (45%), 88.1 MiB/s, 2s left`.
pub fn plain_line(step: &str, done: u64, total: Option<u64>, rate: Option<f64>) -> String {
    let mut s = format!("{step}: {}", human_bytes(done));
    if let Some(t) = total.filter(|&t| t > 0) {
        let pct = (done as f64 / t as f64 * 100.0).clamp(0.0, 100.0);
        s.push_str(&format!(" of {} ({pct:.0}%)", human_bytes(t)));
    }
    if let Some(r) = rate {
        s.push_str(&format!(", {}/s", human_bytes(r as u64)));
    }
    if let Some(e) = eta(done, total, rate) {
        s.push_str(&format!(", {} left", human_duration(e)));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{Events, Phase};
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn run(style: Style) -> String {
        let buf = Buf::default();
        let sink = HumanSink::with_writer(style, Box::new(buf.clone())).interval(Duration::ZERO);
        let ev = Events::new(vec![Box::new(sink)]);
        ev.step_start(Phase::Unpack, "unpack APP, APP_b", None);
        ev.progress(50 << 20, Some(100 << 20));
        ev.message(Level::Warn, "removing leading '/'");
        ev.progress(100 << 20, Some(100 << 20));
        ev.step_end(Verdict::Ok);
        let out = buf.0.lock().unwrap().clone();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn plain_output_has_no_escapes_or_carriage_returns() {
        let out = run(Style::Plain);
        assert!(!out.contains('\r') && !out.contains('\x1b'), "{out:?}");
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "unpack APP, APP_b ...");
        assert!(
            lines[1].starts_with("unpack APP, APP_b: 50.0 MiB of 100.0 MiB (50%)"),
            "{}",
            lines[1]
        );
        assert_eq!(lines[2], "warning: removing leading '/'");
        assert_eq!(lines.last().unwrap(), &"unpack APP, APP_b: done");
    }

    #[test]
    fn bar_output_redraws_one_line_and_clears_it_for_messages() {
        let out = run(Style::Bar);
        assert!(
            out.contains(
                "\r\x1b[2Kunpack APP, APP_b [============>           ]  50% 50.0 MiB/100.0 MiB"
            ),
            "{out:?}"
        );
        assert!(
            out.contains("\r\x1b[2Kwarning: removing leading '/'\n"),
            "{out:?}"
        );
        assert!(out.ends_with("unpack APP, APP_b: done\n"), "{out:?}");
    }

    #[test]
    fn off_prints_nothing() {
        assert_eq!(run(Style::Off), "");
    }

    #[test]
    fn units_and_durations() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(3 << 30), "3.0 GiB");
        assert_eq!(human_duration(Duration::from_secs(59)), "59s");
        assert_eq!(human_duration(Duration::from_secs(185)), "3m05s");
        assert_eq!(human_duration(Duration::from_secs(3720)), "1h02m");
        assert_eq!(
            plain_line("x", 10 << 20, Some(20 << 20), Some(5.0 * 1048576.0)),
            "x: 10.0 MiB of 20.0 MiB (50%), 5.0 MiB/s, 2s left"
        );
        assert_eq!(plain_line("x", 10, None, None), "x: 10 B");
    }

    #[test]
    fn plain_lines_are_throttled() {
        let buf = Buf::default();
        let sink = HumanSink::with_writer(Style::Plain, Box::new(buf.clone()));
        let ev = Events::new(vec![Box::new(sink)]);
        ev.step_start(Phase::Unpack, "u", None);
        for i in 0..100 {
            ev.progress(i, Some(100));
        }
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text.lines().count(), 1, "{text}");
    }
}
