//! Reading an L4T flash-layout XML into devices and partition specs.
//!
//! Every value stays text here (placeholders such as `APPSIZE` are still in
//! it); [`super::subst`] and [`super::geometry`] give it meaning. Each device
//! and partition remembers its line so errors can point at it.
//!
//! The schema as NVIDIA uses it (docs/spec/flash-layout.md §1):
//!
//! ```xml
//! <partition_layout version="01.00.0000">
//!   <device type="sdmmc_user" instance="3" sector_size="512" num_sectors="61071360">
//!     <partition name="APP" id="1" type="data">
//!       <size> 30064771072 </size> <align_boundary> 4096 </align_boundary> ...
//!     </partition>
//!   </device>
//! </partition_layout>
//! ```
//!
//! Unknown elements are kept (and ignored by the geometry); unknown markup
//! outside `<partition>` children is an error, as is malformed XML.

#![deny(clippy::indexing_slicing)]

use quick_xml::events::{BytesStart, Event};
use quick_xml::Reader;

/// Most devices a layout may have (real ones have 1–3).
pub const MAX_DEVICES: usize = 16;
/// Most partitions one device may have (real ones have under 100; GPT holds 128).
pub const MAX_PARTITIONS: usize = 1024;
/// Most child elements one partition may have (real ones have about 12).
pub const MAX_FIELDS: usize = 64;
/// Longest value kept for one attribute or element (real ones are under 200 bytes).
pub const MAX_VALUE: usize = 4096;

/// A layout as written: devices in document order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlashLayout {
    /// `<device>` elements in order.
    pub devices: Vec<DeviceSpec>,
}

/// One `<device>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceSpec {
    /// The `type` attribute: `sdmmc_boot`, `sdmmc_user`, `spi`, `sdmmc`, ...
    pub kind: String,
    /// Every attribute, in order, values trimmed.
    pub attrs: Vec<(String, String)>,
    /// Line of the `<device>` tag.
    pub line: u32,
    /// `<partition>` elements in order.
    pub partitions: Vec<PartitionSpec>,
}

impl DeviceSpec {
    /// An attribute's value.
    pub fn attr(&self, name: &str) -> Option<&str> {
        lookup(&self.attrs, name)
    }
}

/// One `<partition>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionSpec {
    /// Every attribute (`name`, `id`, `type`, `oem_sign`, ...), values trimmed.
    pub attrs: Vec<(String, String)>,
    /// Child elements (`size`, `align_boundary`, ...) with trimmed text.
    pub fields: Vec<(String, String)>,
    /// Line of the `<partition>` tag.
    pub line: u32,
}

impl PartitionSpec {
    /// An attribute's value.
    pub fn attr(&self, name: &str) -> Option<&str> {
        lookup(&self.attrs, name)
    }

    /// The `name` attribute (empty when missing).
    pub fn name(&self) -> &str {
        self.attr("name").unwrap_or("")
    }

    /// A child element's text.
    pub fn field(&self, name: &str) -> Option<&str> {
        lookup(&self.fields, name)
    }
}

fn lookup<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// Malformed or unsupported XML, with the line it was found on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XmlError {
    /// 1-based line.
    pub line: u32,
    /// What is wrong.
    pub message: String,
}

/// Line numbers of the tags as the reader moves forward: each call counts
/// only the newlines since the previous one, so numbering every partition
/// stays linear in the text (recounting from the start made a 2 MB layout
/// take 9 s).
#[derive(Default)]
struct Lines {
    pos: usize,
    line: u32,
}

impl Lines {
    /// 1-based line of byte offset `pos` in `text` (`pos` never moves back).
    fn at(&mut self, text: &str, pos: u64) -> u32 {
        let pos = usize::try_from(pos).unwrap_or(usize::MAX).min(text.len());
        if pos < self.pos {
            return line_of(text, pos as u64);
        }
        let newlines = text
            .get(self.pos..pos)
            .map_or(0, |s| s.bytes().filter(|&b| b == b'\n').count());
        self.line = self
            .line
            .saturating_add(u32::try_from(newlines).unwrap_or(u32::MAX));
        self.pos = pos;
        self.line.saturating_add(1)
    }
}

/// 1-based line of byte offset `pos` in `text`.
fn line_of(text: &str, pos: u64) -> u32 {
    let pos = usize::try_from(pos).unwrap_or(usize::MAX).min(text.len());
    let upto = text.get(..pos).unwrap_or(text);
    u32::try_from(upto.bytes().filter(|&b| b == b'\n').count() + 1).unwrap_or(u32::MAX)
}

fn attrs_of(e: &BytesStart<'_>) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for a in e.attributes() {
        let a = a.map_err(|e| format!("bad attribute: {e}"))?;
        // Names are slices of the &str input, so always UTF-8 (quick-xml 0.41 hands out bytes).
        let key = String::from_utf8_lossy(a.key.as_ref()).into_owned();
        let value = a
            .normalized_value(quick_xml::XmlVersion::Implicit1_0)
            .map_err(|e| format!("bad value of attribute '{key}': {e}"))?;
        if value.len() > MAX_VALUE {
            return Err(format!(
                "attribute '{key}' is longer than {MAX_VALUE} bytes"
            ));
        }
        out.push((key, value.trim().to_owned()));
    }
    Ok(out)
}

/// Where the reader is in the document.
enum State {
    /// Outside `<partition_layout>` or between devices.
    Top,
    /// Inside `<device>`, outside partitions.
    Device,
    /// Inside `<partition>`, outside its children.
    Partition,
    /// Inside a child element of a partition, collecting its text.
    Field(String, String),
}

/// Parses the XML text.
pub fn parse(text: &str) -> Result<FlashLayout, XmlError> {
    let mut reader = Reader::from_str(text);
    let mut devices: Vec<DeviceSpec> = Vec::new();
    let mut state = State::Top;
    let mut seen_root = false;
    let mut lines = Lines::default();
    let err = |pos: u64, message: String| XmlError {
        line: line_of(text, pos),
        message,
    };
    loop {
        let pos = reader.buffer_position();
        let event = reader
            .read_event()
            .map_err(|e| err(reader.error_position(), format!("malformed XML: {e}")))?;
        let tag_name = |e: &BytesStart<'_>| String::from_utf8_lossy(e.name().as_ref()).into_owned();
        // `<x>` opens a scope that a later `</x>` closes; `<x/>` does not.
        let opens = matches!(event, Event::Start(_));
        match event {
            Event::Eof => break,
            Event::Decl(_) | Event::Comment(_) | Event::PI(_) | Event::DocType(_) => {}
            Event::Start(e) | Event::Empty(e) if matches!(state, State::Top) => {
                let name = tag_name(&e);
                match name.as_str() {
                    "partition_layout" => seen_root = true,
                    "device" => {
                        if devices.len() >= MAX_DEVICES {
                            return Err(err(pos, format!("more than {MAX_DEVICES} devices")));
                        }
                        let attrs = attrs_of(&e).map_err(|m| err(pos, m))?;
                        let kind = lookup(&attrs, "type").unwrap_or("").to_owned();
                        devices.push(DeviceSpec {
                            kind,
                            attrs,
                            line: lines.at(text, pos),
                            partitions: Vec::new(),
                        });
                        if opens {
                            state = State::Device;
                        }
                    }
                    other => {
                        return Err(err(pos, format!("unexpected element <{other}>")));
                    }
                }
            }
            Event::Start(e) | Event::Empty(e) if matches!(state, State::Device) => {
                let name = tag_name(&e);
                if name != "partition" {
                    return Err(err(pos, format!("unexpected element <{name}> in <device>")));
                }
                let dev = devices
                    .last_mut()
                    .ok_or_else(|| err(pos, "partition outside a device".into()))?;
                if dev.partitions.len() >= MAX_PARTITIONS {
                    return Err(err(
                        pos,
                        format!(
                            "device '{}' has more than {MAX_PARTITIONS} partitions",
                            dev.kind
                        ),
                    ));
                }
                let attrs = attrs_of(&e).map_err(|m| err(pos, m))?;
                dev.partitions.push(PartitionSpec {
                    attrs,
                    fields: Vec::new(),
                    line: lines.at(text, pos),
                });
                if opens {
                    state = State::Partition;
                }
            }
            Event::Start(e) if matches!(state, State::Partition) => {
                state = State::Field(tag_name(&e), String::new());
            }
            Event::Empty(e) if matches!(state, State::Partition) => {
                push_field(&mut devices, tag_name(&e), String::new()).map_err(|m| err(pos, m))?;
            }
            Event::Start(e) | Event::Empty(e) => {
                return Err(err(
                    pos,
                    format!("unexpected element <{}> inside a value", tag_name(&e)),
                ));
            }
            Event::Text(t) => {
                let text = t
                    .xml10_content()
                    .map_err(|e| err(pos, format!("malformed text: {e}")))?;
                if let State::Field(_, value) = &mut state {
                    value.push_str(&text);
                    if value.len() > MAX_VALUE {
                        return Err(err(pos, format!("value longer than {MAX_VALUE} bytes")));
                    }
                } else if !text.trim().is_empty() {
                    return Err(err(pos, "text outside a partition value".into()));
                }
            }
            Event::CData(t) => {
                let text = t
                    .decode()
                    .map_err(|e| err(pos, format!("malformed CDATA: {e}")))?;
                if let State::Field(_, value) = &mut state {
                    value.push_str(&text);
                } else {
                    return Err(err(pos, "CDATA outside a partition value".into()));
                }
            }
            Event::GeneralRef(r) => {
                let name = r
                    .decode()
                    .map_err(|e| err(pos, format!("malformed entity: {e}")))?;
                let resolved = if r.is_char_ref() {
                    r.resolve_char_ref().ok().flatten().map(String::from)
                } else {
                    quick_xml::escape::resolve_predefined_entity(&name).map(String::from)
                };
                let Some(s) = resolved else {
                    return Err(err(pos, format!("unknown entity '&{name};'")));
                };
                if let State::Field(_, value) = &mut state {
                    value.push_str(&s);
                } else if !s.trim().is_empty() {
                    return Err(err(pos, "text outside a partition value".into()));
                }
            }
            Event::End(_) => {
                state = match std::mem::replace(&mut state, State::Top) {
                    State::Field(name, value) => {
                        push_field(&mut devices, name, value.trim().to_owned())
                            .map_err(|m| err(pos, m))?;
                        State::Partition
                    }
                    State::Partition => State::Device,
                    State::Device | State::Top => State::Top,
                };
            }
        }
    }
    if !seen_root && devices.is_empty() {
        return Err(XmlError {
            line: 1,
            message: "not a flash layout: no <partition_layout> or <device> element".into(),
        });
    }
    Ok(FlashLayout { devices })
}

fn push_field(devices: &mut [DeviceSpec], name: String, value: String) -> Result<(), String> {
    let part = devices
        .last_mut()
        .and_then(|d| d.partitions.last_mut())
        .ok_or("value outside a partition")?;
    if part.fields.len() >= MAX_FIELDS {
        return Err(format!("partition has more than {MAX_FIELDS} elements"));
    }
    part.fields.push((name, value));
    Ok(())
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"<?xml version="1.0"?>
<!-- comment -->
<partition_layout version="01.00.0000">
    <device type="sdmmc_user" instance="3" sector_size="512" num_sectors="61071360">
        <partition name="master_boot_record" type="protective_master_boot_record">
            <size> 512 </size>
        </partition>
        <partition name="APP" id="1" type="data">
            <size> APPSIZE </size>
            <align_boundary> 4096 </align_boundary>
            <unique_guid> APPUUID </unique_guid>
            <description> A &amp; B &#x41; </description>
            <filename/>
        </partition>
    </device>
    <device instance="0" type="spi" sector_size="512" num_sectors="65536"/>
</partition_layout>
"#;

    #[test]
    fn reads_devices_partitions_and_lines() {
        let l = parse(SAMPLE).unwrap();
        assert_eq!(l.devices.len(), 2);
        let d = &l.devices[0];
        assert_eq!(d.kind, "sdmmc_user");
        assert_eq!(d.attr("num_sectors"), Some("61071360"));
        assert_eq!(d.line, 4);
        assert_eq!(d.partitions.len(), 2);
        let app = &d.partitions[1];
        assert_eq!(app.name(), "APP");
        assert_eq!(app.attr("id"), Some("1"));
        assert_eq!(app.line, 8);
        assert_eq!(app.field("size"), Some("APPSIZE"));
        assert_eq!(app.field("description"), Some("A & B A"));
        assert_eq!(app.field("filename"), Some(""));
        assert_eq!(l.devices[1].kind, "spi");
        assert!(l.devices[1].partitions.is_empty());
    }

    #[test]
    fn malformed_xml_reports_its_line() {
        let bad =
            "<partition_layout>\n<device type=\"x\">\n<partition name=\"a\">\n<size>1</sise>\n";
        let e = parse(bad).unwrap_err();
        assert_eq!(e.line, 4, "{e:?}");
        assert!(e.message.contains("malformed"), "{e:?}");
        let e = parse("<partition_layout>\n  <device type='x'>\n   <bogus/>\n").unwrap_err();
        assert_eq!(e.line, 3);
        assert!(parse("hello").is_err());
        assert!(parse("").is_err());
        let e = parse("<a>&nope;</a>").unwrap_err();
        assert!(e.message.contains("unexpected element <a>"), "{e:?}");
    }

    #[test]
    fn unknown_entities_and_stray_text_are_errors() {
        let e = parse("<partition_layout><device type='x'><partition name='p'><size>&nope;</size></partition></device></partition_layout>").unwrap_err();
        assert!(e.message.contains("nope"), "{e:?}");
        let e = parse("<partition_layout>stray</partition_layout>").unwrap_err();
        assert!(e.message.contains("text outside"), "{e:?}");
    }

    #[test]
    fn partition_count_is_bounded() {
        let mut s = String::from("<partition_layout><device type='sdmmc_user'>");
        for i in 0..=MAX_PARTITIONS {
            s.push_str(&format!("<partition name='p{i}'/>"));
        }
        s.push_str("</device></partition_layout>");
        let e = parse(&s).unwrap_err();
        assert!(e.message.contains("more than 1024 partitions"), "{e:?}");
    }

    /// Audit (issue 8): lines are counted incrementally; the numbering of
    /// the 16 × 1024 partitions a layout may have must still be exact.
    #[test]
    fn lines_stay_exact_over_many_devices_and_partitions() {
        let mut s = String::from("<partition_layout>\n");
        for d in 0..MAX_DEVICES {
            s.push_str(&format!("<device type='d{d}'>\n"));
            for i in 0..MAX_PARTITIONS {
                s.push_str(&format!(
                    "<partition name='p{i}'>\n<size>1</size></partition>\n"
                ));
            }
            s.push_str("</device>\n");
        }
        let l = parse(&s).unwrap();
        let per_device = 2 + 2 * MAX_PARTITIONS as u32;
        assert_eq!(l.devices[15].line, 2 + 15 * per_device);
        assert_eq!(
            l.devices[15].partitions[1023].line,
            2 + 15 * per_device + 1 + 2 * 1023
        );
    }

    #[test]
    fn every_sample_layout_parses() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/flash-layouts");
        let rd = std::fs::read_dir(&dir).unwrap();
        let mut n = 0;
        for f in rd
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "xml"))
        {
            let text = std::fs::read_to_string(&f).unwrap();
            let l = parse(&text).unwrap_or_else(|e| panic!("{}: {e:?}", f.display()));
            assert!(
                l.devices.iter().any(|d| !d.partitions.is_empty()),
                "{}",
                f.display()
            );
            n += 1;
        }
        assert!(n >= 19, "only {n} samples");
    }
}
