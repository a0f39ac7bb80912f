//! Parsing `intel_gpu_top -J`: a JSON array of sample objects written one per period. Older
//! versions write no `[` and no commas between the objects, so the stream is cut into top-level
//! objects by bracket depth, ignoring whatever lies between them, and each object is parsed on
//! its own. Pure: bytes in, samples out.

use serde_json::Value;

use crate::metrics::GpuReading;

/// A sample object larger than this is garbage; it is dropped and the stream resynchronised.
const MAX_OBJECT: usize = 1 << 20;

/// Cuts a byte stream into complete top-level JSON objects, across any chunking.
#[derive(Debug, Default)]
pub(crate) struct ObjectSplitter {
    buf: Vec<u8>,
    depth: u32,
    in_string: bool,
    escaped: bool,
    /// Objects dropped for size.
    dropped: u64,
}

impl ObjectSplitter {
    /// Feeds a chunk; returns the objects it completed, in order.
    pub(crate) fn push(&mut self, chunk: &[u8]) -> Vec<Vec<u8>> {
        let mut objects = Vec::new();
        for &byte in chunk {
            if self.depth == 0 {
                // Between objects: `[`, `,`, `]`, whitespace or noise; only `{` matters.
                if byte == b'{' {
                    self.depth = 1;
                    self.buf.push(byte);
                }
                continue;
            }
            self.buf.push(byte);
            if self.in_string {
                match byte {
                    _ if self.escaped => self.escaped = false,
                    b'\\' => self.escaped = true,
                    b'"' => self.in_string = false,
                    _ => {}
                }
            } else {
                match byte {
                    b'"' => self.in_string = true,
                    b'{' | b'[' => self.depth += 1,
                    b'}' | b']' => self.depth -= 1,
                    _ => {}
                }
            }
            if self.depth == 0 {
                objects.push(std::mem::take(&mut self.buf));
            } else if self.buf.len() > MAX_OBJECT {
                self.dropped += 1;
                self.buf.clear();
                self.depth = 0;
                self.in_string = false;
                self.escaped = false;
            }
        }
        objects
    }

    /// Objects dropped so far because they grew past the size limit.
    pub(crate) fn dropped(&self) -> u64 {
        self.dropped
    }
}

/// One engine's busy share: `Render/3D`, `Video/1`, …
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct EngineBusy {
    pub name: String,
    pub busy_percent: f64,
}

impl EngineBusy {
    /// The engine class: the name without a trailing instance number (`Video/1` → `Video`).
    pub(crate) fn class(&self) -> &str {
        match self.name.rsplit_once('/') {
            Some((class, instance)) if !instance.is_empty() && instance.bytes().all(|b| b.is_ascii_digit()) => class,
            _ => &self.name,
        }
    }
}

/// The figures of one `intel_gpu_top` sample that xg2g reads.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct IntelSample {
    pub period_ms: Option<f64>,
    /// Actual GPU frequency, MHz.
    pub frequency_mhz: Option<f64>,
    /// Share of time in the RC6 power-saving state, percent.
    pub rc6_percent: Option<f64>,
    /// GPU power, watts (absent where RAPL is not readable).
    pub power_watts: Option<f64>,
    /// By name.
    pub engines: Vec<EngineBusy>,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum IntelParseError {
    #[error("not JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("a sample without an engines object")]
    NoEngines,
}

/// Parses one sample object. Numbers may be JSON numbers or numeric strings (client figures
/// are strings in some versions).
pub(crate) fn parse_sample(object: &[u8]) -> Result<IntelSample, IntelParseError> {
    let value: Value = serde_json::from_slice(object)?;
    let number = |v: Option<&Value>| match v? {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    };
    let mut engines: Vec<EngineBusy> = value
        .get("engines")
        .and_then(Value::as_object)
        .ok_or(IntelParseError::NoEngines)?
        .iter()
        .filter_map(|(name, engine)| {
            Some(EngineBusy {
                name: name.clone(),
                busy_percent: number(engine.get("busy"))?,
            })
        })
        .collect();
    engines.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(IntelSample {
        period_ms: number(value.pointer("/period/duration")),
        frequency_mhz: number(value.pointer("/frequency/actual")),
        rc6_percent: number(value.pointer("/rc6/value")),
        power_watts: number(value.pointer("/power/GPU")),
        engines,
    })
}

impl IntelSample {
    /// GPU utilisation is the busiest engine (engines run in parallel, the busiest saturates
    /// first); encoder utilisation is the busiest `Video` engine, which decodes and encodes.
    /// intel_gpu_top gives no memory or session figures.
    pub(crate) fn reading(&self) -> GpuReading {
        let max = |engines: &mut dyn Iterator<Item = &EngineBusy>| {
            engines
                .map(|e| e.busy_percent.clamp(0.0, 100.0))
                .fold(None, |acc: Option<f64>, b| Some(acc.map_or(b, |a| a.max(b))))
        };
        GpuReading {
            utilization_percent: max(&mut self.engines.iter()),
            encoder_utilization_percent: max(&mut self.engines.iter().filter(|e| e.class() == "Video")),
            ..GpuReading::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `intel_gpu_top -J` 1.27-style: `[`, commas between samples, engines by class, clients.
    const WITH_COMMAS: &[u8] = include_bytes!("../../tests/data/gpu/intel_gpu_top.json");
    /// Older versions: no `[`, no commas, physical engines (`Video/0`, `Video/1`).
    const WITHOUT_COMMAS: &[u8] = include_bytes!("../../tests/data/gpu/intel_gpu_top_nocomma.json");

    fn split_all(input: &[u8], chunk: usize) -> Vec<Vec<u8>> {
        let mut splitter = ObjectSplitter::default();
        let mut objects = Vec::new();
        for piece in input.chunks(chunk) {
            objects.extend(splitter.push(piece));
        }
        assert_eq!(splitter.dropped(), 0);
        objects
    }

    fn samples(input: &[u8], chunk: usize) -> Vec<IntelSample> {
        split_all(input, chunk)
            .iter()
            .map(|o| parse_sample(o).expect("sample parses"))
            .collect()
    }

    #[test]
    fn captured_output_with_commas_parses_into_samples() {
        let samples = samples(WITH_COMMAS, WITH_COMMAS.len());
        assert_eq!(samples.len(), 3);
        let first = &samples[0];
        assert_eq!(first.period_ms, Some(1000.255291));
        assert_eq!(first.frequency_mhz, Some(349.650350));
        assert_eq!(first.rc6_percent, Some(62.519374));
        assert_eq!(first.power_watts, Some(1.847466));
        let busy: Vec<_> = first
            .engines
            .iter()
            .map(|e| (e.name.as_str(), e.busy_percent))
            .collect();
        assert_eq!(
            busy,
            [
                ("Blitter", 0.0),
                ("Render/3D", 12.487216),
                ("Video", 35.105474),
                ("VideoEnhance", 8.739811)
            ]
        );
        let reading = first.reading();
        assert_eq!(reading.utilization_percent, Some(35.105474));
        assert_eq!(reading.encoder_utilization_percent, Some(35.105474));
        assert_eq!(reading.vram_used_bytes, None);
        // The third sample: the render engine is the busiest.
        let third = samples[2].reading();
        assert_eq!(third.utilization_percent, Some(71.330012));
        assert_eq!(third.encoder_utilization_percent, Some(54.002301));
    }

    #[test]
    fn captured_output_without_commas_parses_into_samples() {
        let samples = samples(WITHOUT_COMMAS, WITHOUT_COMMAS.len());
        assert_eq!(samples.len(), 2);
        let classes: Vec<_> = samples[0].engines.iter().map(EngineBusy::class).collect();
        assert_eq!(classes, ["Blitter", "Render/3D", "Video", "Video", "VideoEnhance"]);
        let reading = samples[0].reading();
        assert_eq!(reading.utilization_percent, Some(48.25));
        // The busier of the two video engines.
        assert_eq!(reading.encoder_utilization_percent, Some(48.25));
        assert_eq!(samples[1].reading().encoder_utilization_percent, Some(3.5));
        // Where RAPL is not readable the power object is left out: no figure, no failure.
        assert_eq!(samples[1].power_watts, None);
    }

    #[test]
    fn any_chunking_gives_the_same_samples() {
        for input in [WITH_COMMAS, WITHOUT_COMMAS] {
            let whole = samples(input, input.len());
            for chunk in [1, 2, 7, 64, 4096] {
                assert_eq!(samples(input, chunk), whole, "chunk size {chunk}");
            }
        }
    }

    #[test]
    fn an_unfinished_object_waits_for_more_bytes() {
        let mut splitter = ObjectSplitter::default();
        assert!(splitter.push(b"[\n{\"engines\": {\"Video/0\": {\"bu").is_empty());
        let objects = splitter.push(b"sy\": 20.5}}}\n");
        assert_eq!(objects.len(), 1);
        let sample = parse_sample(&objects[0]).expect("parses");
        assert_eq!(sample.reading().encoder_utilization_percent, Some(20.5));
    }

    #[test]
    fn braces_inside_strings_do_not_end_an_object() {
        let mut splitter = ObjectSplitter::default();
        let input = br#"{"clients": {"1": {"name": "we}ird \"{name\\"}}, "engines": {"Render/3D/0": {"busy": 1}}} noise {"engines": {}}"#;
        let objects = splitter.push(input);
        assert_eq!(objects.len(), 2);
        assert_eq!(parse_sample(&objects[0]).expect("parses").engines.len(), 1);
        assert!(parse_sample(&objects[1]).expect("parses").engines.is_empty());
    }

    #[test]
    fn a_sample_without_engines_is_an_error_not_a_zero() {
        assert!(matches!(
            parse_sample(br#"{"period": {"duration": 1000}}"#),
            Err(IntelParseError::NoEngines)
        ));
        assert!(matches!(parse_sample(b"{not json}"), Err(IntelParseError::Json(_))));
        // No engines with a busy figure: no utilisation rather than 0 %.
        let empty = parse_sample(br#"{"engines": {}}"#).expect("parses");
        assert_eq!(empty.reading(), GpuReading::default());
    }

    #[test]
    fn an_oversized_object_is_dropped_and_the_stream_recovers() {
        let mut splitter = ObjectSplitter::default();
        let mut input = b"{\"x\": \"".to_vec();
        input.extend(std::iter::repeat_n(b'a', MAX_OBJECT + 10));
        assert!(splitter.push(&input).is_empty());
        assert_eq!(splitter.dropped(), 1);
        // The rest of the runaway string is noise between objects; the next object is read.
        let objects = splitter.push(b"\"}\n{\"engines\": {\"Video\": {\"busy\": 2}}}");
        assert_eq!(objects.len(), 1);
        assert_eq!(
            parse_sample(&objects[0]).expect("parses").reading().utilization_percent,
            Some(2.0)
        );
    }

    #[test]
    fn engine_classes() {
        let class = |name: &str| {
            EngineBusy {
                name: name.to_owned(),
                busy_percent: 0.0,
            }
            .class()
            .to_owned()
        };
        assert_eq!(class("Render/3D/0"), "Render/3D");
        assert_eq!(class("Render/3D"), "Render/3D");
        assert_eq!(class("Video/1"), "Video");
        assert_eq!(class("VideoEnhance"), "VideoEnhance");
    }
}
