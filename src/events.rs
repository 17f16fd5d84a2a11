//! Events: the one stream that human progress and JSON Lines are both drawn from.
//!
//! Long-running code reports through an [`Events`] handle: step starts and ends,
//! byte progress, messages, and one final summary. Sinks render them: a bar or
//! plain lines for people ([`crate::progress`]), JSON Lines for automation
//! ([`JsonSink`]), framed lines for a serial console ([`ConsoleSink`]). Code
//! that reports never knows which sinks are attached.

use serde::Serialize;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Version of the JSON event schema; bump on any incompatible change.
pub const SCHEMA_VERSION: u32 = 1;

/// The phases of an install, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Reading and validating every input; nothing written.
    Preflight,
    /// Writing the GPT.
    Partition,
    /// Creating filesystems.
    Mkfs,
    /// Unpacking the rootfs into the slots.
    Unpack,
    /// Restoring or unpacking data into DATA.
    Data,
    /// Writing boot partitions.
    Boot,
    /// Switching the bootloader to the new slot (slot metadata).
    Commit,
}

/// Outcome of a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Done and verified.
    Ok,
    /// Already in the wanted state; nothing written.
    Skipped,
    /// Failed.
    Failed,
}

/// The level of a [`EventKind::Message`], as JSON carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Worth knowing.
    Info,
    /// Something the operator should look at; the run goes on.
    Warn,
    /// Something went wrong (the failure event says why the run stopped).
    Error,
}

/// What an event says.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EventKind {
    /// A step begins.
    StepStart,
    /// Byte progress within the current step.
    Progress,
    /// A step ended.
    StepEnd,
    /// A line for the operator.
    Message {
        /// How much it matters.
        level: Level,
        /// The text.
        text: String,
    },
    /// What the run will do, once the preflight is through (also with
    /// `--dry-run`): mode, slot, what is created and erased, the table.
    Plan {
        /// The plan data.
        #[serde(flatten)]
        plan: serde_json::Value,
    },
    /// Why the run failed, with a stable machine-readable code; emitted once,
    /// right before the summary of a failed run.
    Failure {
        /// A stable code (`payload_mismatch`, `no_space`, `interrupted`, ...).
        code: &'static str,
        /// True when running the same command again may succeed as it is.
        retryable: bool,
        /// The one-line error.
        error: String,
    },
    /// The final record of a run.
    Summary {
        /// The summary data.
        #[serde(flatten)]
        summary: serde_json::Value,
    },
}

/// One event, as serialized to JSON Lines.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Event {
    /// Schema version ([`SCHEMA_VERSION`]).
    pub schema: u32,
    /// Sequence number, from 0, without gaps.
    pub seq: u64,
    /// Seconds since the run started (monotonic clock).
    pub time: f64,
    /// Phase this event belongs to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    /// Step name, e.g. "unpack APP, APP_b".
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    /// Partition concerned, if one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partition: Option<String>,
    /// Bytes done within the step.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes_done: Option<u64>,
    /// Bytes in the whole step, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes_total: Option<u64>,
    /// Average rate of the step so far, bytes per second.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate: Option<f64>,
    /// Outcome, on `step_end`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verdict: Option<Verdict>,
    /// The event itself.
    #[serde(flatten)]
    pub kind: EventKind,
}

/// Something that renders events.
pub trait Sink: Send {
    /// Renders one event. Errors are the sink's own business (a broken pipe
    /// to a log reader must not abort an install).
    fn emit(&mut self, event: &Event);
}

struct Inner {
    start: Instant,
    seq: u64,
    step_start: Option<Instant>,
    phase: Option<Phase>,
    step: Option<String>,
    partition: Option<String>,
    sinks: Vec<Box<dyn Sink>>,
}

/// A cloneable handle that stamps and distributes events to every sink.
#[derive(Clone)]
pub struct Events(Arc<Mutex<Inner>>);

impl Default for Events {
    fn default() -> Self {
        Events::new(Vec::new())
    }
}

impl Events {
    /// A handle that feeds these sinks.
    pub fn new(sinks: Vec<Box<dyn Sink>>) -> Events {
        Events(Arc::new(Mutex::new(Inner {
            start: Instant::now(),
            seq: 0,
            step_start: None,
            phase: None,
            step: None,
            partition: None,
            sinks,
        })))
    }

    /// A handle with no sinks (for tests and library callers that do not care).
    pub fn silent() -> Events {
        Events::default()
    }

    fn with<R>(&self, f: impl FnOnce(&mut Inner) -> R) -> R {
        // A sink that panicked poisons the lock; events must keep flowing anyway.
        let mut guard = match self.0.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        f(&mut guard)
    }

    fn send(inner: &mut Inner, kind: EventKind, fill: impl FnOnce(&mut Event)) {
        let mut ev = Event {
            schema: SCHEMA_VERSION,
            seq: inner.seq,
            time: inner.start.elapsed().as_secs_f64(),
            phase: inner.phase,
            step: inner.step.clone(),
            partition: inner.partition.clone(),
            bytes_done: None,
            bytes_total: None,
            rate: None,
            verdict: None,
            kind,
        };
        fill(&mut ev);
        inner.seq += 1;
        for sink in &mut inner.sinks {
            sink.emit(&ev);
        }
    }

    /// Seconds since the run started (the clock of the events' `time`).
    pub fn elapsed(&self) -> f64 {
        self.with(|i| i.start.elapsed().as_secs_f64())
    }

    /// Starts a step (ending none: steps do not nest).
    pub fn step_start(&self, phase: Phase, step: &str, partition: Option<&str>) {
        self.with(|i| {
            i.phase = Some(phase);
            i.step = Some(step.to_owned());
            i.partition = partition.map(str::to_owned);
            i.step_start = Some(Instant::now());
            Self::send(i, EventKind::StepStart, |_| {});
        });
    }

    /// Reports byte progress in the current step.
    pub fn progress(&self, done: u64, total: Option<u64>) {
        self.with(|i| {
            let rate = i
                .step_start
                .map(|t| t.elapsed().as_secs_f64())
                .filter(|s| *s > 0.0)
                .map(|s| done as f64 / s);
            Self::send(i, EventKind::Progress, |e| {
                e.bytes_done = Some(done);
                e.bytes_total = total;
                e.rate = rate;
            });
        });
    }

    /// Ends the current step with a verdict.
    pub fn step_end(&self, verdict: Verdict) {
        self.with(|i| {
            Self::send(i, EventKind::StepEnd, |e| e.verdict = Some(verdict));
            i.step = None;
            i.partition = None;
            i.step_start = None;
        });
    }

    /// A line for the operator.
    pub fn message(&self, level: Level, text: impl Into<String>) {
        let text = text.into();
        self.with(|i| Self::send(i, EventKind::Message { level, text }, |_| {}));
    }

    /// The plan of the run.
    pub fn plan(&self, plan: serde_json::Value) {
        self.with(|i| Self::send(i, EventKind::Plan { plan }, |_| {}));
    }

    /// The run failed: an open step ends as failed, then the failure.
    pub fn failure(&self, code: &'static str, retryable: bool, error: &str) {
        self.with(|i| {
            if i.step.is_some() {
                Self::send(i, EventKind::StepEnd, |e| e.verdict = Some(Verdict::Failed));
                i.step = None;
                i.partition = None;
                i.step_start = None;
            }
            Self::send(
                i,
                EventKind::Failure {
                    code,
                    retryable,
                    error: error.to_owned(),
                },
                |_| {},
            );
        });
    }

    /// The final summary record.
    pub fn summary(&self, summary: serde_json::Value) {
        self.with(|i| {
            i.phase = None;
            i.step = None;
            i.partition = None;
            Self::send(i, EventKind::Summary { summary }, |_| {});
        });
    }
}

/// Writes every event as one JSON line and flushes it (a lab driver reads the
/// serial console line by line).
pub struct JsonSink<W: Write + Send>(pub W);

impl<W: Write + Send> Sink for JsonSink<W> {
    fn emit(&mut self, event: &Event) {
        if let Ok(line) = serde_json::to_string(event) {
            let _ = writeln!(self.0, "{line}");
            let _ = self.0.flush();
        }
    }
}

/// What starts a framed event line (`--events console`).
pub const FRAME_MARKER: &str = "@@sysinstall ";

/// One framed line: `@@sysinstall <crc> <json>` and a newline, where `<crc>`
/// is the CRC-32 (IEEE) of exactly the `<json>` bytes as 8 lowercase hex
/// digits. The frame is a contract with lab drivers (README.md, "Driving
/// the console from a program"): never change it.
pub fn frame(json: &str) -> String {
    format!(
        "{FRAME_MARKER}{:08x} {json}\n",
        crc32fast::hash(json.as_bytes())
    )
}

/// The reader's side of [`frame`]: the JSON of the first intact frame in a
/// console line, or None when the line has none (a kernel message broke it
/// up, or it is not ours). Every occurrence of the marker is tried, so junk
/// before a frame, even a broken frame, does not hide it.
pub fn unframe(line: &str) -> Option<&str> {
    let line = line.trim_end_matches(['\r', '\n']);
    line.match_indices(FRAME_MARKER).find_map(|(at, _)| {
        let rest = line.get(at + FRAME_MARKER.len()..)?;
        let (crc, json) = rest.split_once(' ')?;
        let lower_hex = |c: char| c.is_ascii_digit() || ('a'..='f').contains(&c);
        if crc.len() != 8 || !crc.chars().all(lower_hex) {
            return None;
        }
        let want = u32::from_str_radix(crc, 16).ok()?;
        (crc32fast::hash(json.as_bytes()) == want).then_some(json)
    })
}

/// Writes every event as one framed line ([`frame`]) for a serial console,
/// where kernel messages may land in the middle of a line. Each line goes
/// out in one `write(2)` on an unbuffered file, so this process never
/// splits one; a short write is finished by further writes.
pub struct ConsoleSink(pub std::fs::File);

impl Sink for ConsoleSink {
    fn emit(&mut self, event: &Event) {
        if let Ok(json) = serde_json::to_string(event) {
            let _ = self.0.write_all(frame(&json).as_bytes());
        }
    }
}

/// Collects events in memory (tests).
#[derive(Clone, Default)]
pub struct MemorySink(pub Arc<Mutex<Vec<Event>>>);

impl Sink for MemorySink {
    fn emit(&mut self, event: &Event) {
        if let Ok(mut v) = self.0.lock() {
            v.push(event.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_numbered_and_carry_the_step() {
        let mem = MemorySink::default();
        let ev = Events::new(vec![Box::new(mem.clone())]);
        ev.step_start(Phase::Unpack, "unpack", Some("APP"));
        ev.progress(10, Some(100));
        ev.step_end(Verdict::Ok);
        ev.summary(serde_json::json!({"exit": 0}));
        let got = mem.0.lock().unwrap().clone();
        assert_eq!(got.len(), 4);
        assert_eq!(got.iter().map(|e| e.seq).collect::<Vec<_>>(), [0, 1, 2, 3]);
        assert_eq!(got[1].partition.as_deref(), Some("APP"));
        assert_eq!(got[1].bytes_total, Some(100));
        assert_eq!(got[2].verdict, Some(Verdict::Ok));
        assert!(got[3].step.is_none());
        assert!(got.windows(2).all(|w| w[0].time <= w[1].time));
    }

    #[test]
    fn console_frames_carry_a_crc_of_the_json_and_survive_interleaving() {
        let json = r#"{"schema":1,"seq":3,"kind":"summary","exit":4}"#;
        let line = frame(json);
        // One line, the marker, 8 lowercase hex digits, the JSON unchanged.
        assert_eq!(line.matches('\n').count(), 1);
        assert!(line.ends_with('\n'));
        let crc = format!("{:08x}", crc32fast::hash(json.as_bytes()));
        assert_eq!(line, format!("@@sysinstall {crc} {json}\n"));
        // The IEEE polynomial: the check value of "123456789" is cbf43926.
        assert!(frame("123456789").starts_with("@@sysinstall cbf43926 "));
        // Round trip, also with CR LF from a tty and junk before the marker.
        assert_eq!(unframe(&line), Some(json));
        assert_eq!(
            unframe(&format!(
                "[   12.345] usb 1-1: new{}",
                line.replace('\n', "\r\n")
            )),
            Some(json)
        );
        // A kernel message in the middle breaks the frame: dropped.
        let (a, b) = line.split_at(30);
        assert_eq!(unframe(&format!("{a}[   12.3] mmc0: error{b}")), None);
        // One flipped byte, a truncated line, upper-case hex: dropped.
        assert_eq!(unframe(&line.replace("\"exit\":4", "\"exit\":0")), None);
        assert_eq!(unframe(line.get(..line.len() - 3).unwrap()), None);
        assert_eq!(unframe(&line.replace(&crc, &crc.to_uppercase())), None);
        assert_eq!(unframe("no frame here"), None);
        // A broken frame before an intact one on the same line does not hide it.
        assert_eq!(unframe(&format!("{a}{line}")), Some(json));
        // A marker inside the JSON text does not confuse the reader.
        let tricky = r#"{"kind":"message","text":"@@sysinstall 00000000 {}"}"#;
        assert_eq!(unframe(&frame(tricky)), Some(tricky));
    }

    #[test]
    fn console_sink_writes_the_same_json_as_the_json_sink() {
        let ev = Event {
            schema: SCHEMA_VERSION,
            seq: 1,
            time: 0.5,
            phase: None,
            step: None,
            partition: None,
            bytes_done: None,
            bytes_total: None,
            rate: None,
            verdict: None,
            kind: EventKind::Summary {
                summary: serde_json::json!({"result": "fail", "exit": 3}),
            },
        };
        let mut json = Vec::new();
        JsonSink(&mut json).emit(&ev);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("console");
        ConsoleSink(std::fs::File::create(&path).unwrap()).emit(&ev);
        let console = std::fs::read_to_string(&path).unwrap();
        let json = String::from_utf8(json).unwrap();
        assert_eq!(unframe(&console), Some(json.trim_end()));
    }

    #[test]
    fn json_lines_have_the_documented_fields() {
        let mut out = Vec::new();
        {
            let mut sink = JsonSink(&mut out);
            let ev = Event {
                schema: SCHEMA_VERSION,
                seq: 7,
                time: 1.5,
                phase: Some(Phase::Boot),
                step: Some("write mb1_b".into()),
                partition: Some("mb1_b".into()),
                bytes_done: Some(1),
                bytes_total: Some(2),
                rate: Some(3.0),
                verdict: None,
                kind: EventKind::Progress,
            };
            sink.emit(&ev);
        }
        let line = String::from_utf8(out).unwrap();
        let v: serde_json::Value = serde_json::from_str(line.trim()).unwrap();
        assert_eq!(v["schema"], 1);
        assert_eq!(v["seq"], 7);
        assert_eq!(v["kind"], "progress");
        assert_eq!(v["phase"], "boot");
        assert_eq!(v["partition"], "mb1_b");
        assert_eq!(v["bytes_total"], 2);
    }
}
