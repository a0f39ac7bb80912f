//! Text parsers of outside input: service references, the config file, pipeline templates and
//! OpenWebIF answers.

use std::path::Path;

use crate::catalog::GuideWindow;
use crate::model::{RawRef, ServiceRef};

use super::Input;

/// Service references: whatever parses prints in canonical form and parses back to itself;
/// ten fields printed in Enigma2's radixes parse to those fields.
pub fn service_ref(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let _ = (RawRef(&text).is_marker(), RawRef(&text).is_directory());
    if let Ok(parsed) = text.parse::<ServiceRef>() {
        let printed = parsed.to_string();
        let again: ServiceRef = printed.parse().expect("a printed reference parses");
        assert_eq!(again, parsed);
        assert_eq!(again.to_string(), printed);
        assert!(!parsed.tvg_id().contains(':') && !parsed.picon_name().contains(':'));
    }
    let mut input = Input(data);
    let fields: Vec<u32> = (0..10).map(|_| input.u32()).collect();
    let mut text = format!("{}:{}:", fields[0], fields[1]);
    for field in &fields[2..] {
        text.push_str(&format!("{field:x}:"));
    }
    match text.parse::<ServiceRef>() {
        Ok(parsed) => {
            assert_eq!(fields[1] & 0x41, 0, "markers and directories are not channels");
            assert_eq!(parsed.service_type(), fields[2]);
            assert_eq!(parsed.service_id(), (fields[3] & 0xFFFF) as u16);
            assert_eq!(parsed.to_string().to_lowercase(), text);
        }
        Err(error) => {
            // Decimal fields over 8 digits are refused by the grammar; so are channel flags.
            let long = fields[..2].iter().any(|f| *f > 99_999_999);
            assert!(long || fields[1] & 0x41 != 0, "{text}: {error}");
        }
    }
}

/// Config: any TOML text loads or fails with problems; what loads renders (`check-config`) to
/// TOML that loads again to the same rendering.
pub fn config(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let path = Path::new("fuzz.toml");
    let loaded = crate::config::resolve(Some((path, &text)), &crate::config::no_env, &[], Default::default());
    match loaded {
        Ok(loaded) => {
            let rendered = loaded.render_effective();
            if rendered.contains("\"***\"") {
                // A masked secret is not the secret: it need not load again (`***` is too short
                // for a password, for one).
                return;
            }
            let again =
                crate::config::resolve(Some((path, &rendered)), &crate::config::no_env, &[], Default::default())
                    .unwrap_or_else(|e| panic!("the effective config loads again: {e}\n{rendered}"));
            // Origins differ (the file, not defaults); the values must not.
            let strip = |s: &str| -> Vec<String> {
                s.lines()
                    .map(|l| {
                        l.rsplit_once("# from ")
                            .map_or(l, |(value, _)| value)
                            .trim_end()
                            .to_owned()
                    })
                    .collect()
            };
            assert_eq!(strip(&again.render_effective()), strip(&rendered));
        }
        Err(error) => assert!(!error.to_string().is_empty()),
    }
}

/// Pipeline templates: any text parses or fails with problems whose lines exist in the file.
pub fn template(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let lines = text.matches('\n').count() + 1;
    match crate::pipeline::parse_template(Path::new("fuzz.toml"), &text) {
        Ok(t) => assert!(!t.outputs.is_empty()),
        Err(problems) => {
            assert!(!problems.is_empty());
            for p in problems {
                assert!(p.line.is_none_or(|l| (1..=lines).contains(&l)), "{p}");
                assert!(!p.message.is_empty());
            }
        }
    }
}

/// OpenWebIF answers: bouquets and services JSON, the guide as JSON and XML, the relay
/// whitelist. Guide text is display-ready; the guide of a channel is time-ordered and positive.
pub fn openwebif(data: &[u8]) {
    let Some((&kind, body)) = data.split_first() else {
        return;
    };
    let channel: ServiceRef = "1:0:19:283D:3FB:1:C00000:0:0:0:".parse().expect("a valid reference");
    let events = match kind % 5 {
        0 => crate::upstream::parse_epg_json(body).ok(),
        1 => crate::upstream::parse_epg_xml(body).ok(),
        2 => {
            let _ = crate::upstream::parse_wire::<crate::upstream::BouquetList>("/api/bouquets", body);
            None
        }
        3 => {
            if let Ok(list) = crate::upstream::parse_wire::<crate::upstream::ServiceList>("/api/getservices", body) {
                for s in list.services {
                    let _ = (
                        RawRef(&s.servicereference).is_marker(),
                        s.servicereference.parse::<ServiceRef>(),
                    );
                }
            }
            None
        }
        _ => {
            let refs = crate::upstream::parse_whitelist(&crate::upstream::decode(body));
            let mut unique = refs.clone();
            unique.sort();
            unique.dedup();
            assert_eq!(unique.len(), refs.len(), "the whitelist drops duplicates");
            None
        }
    };
    let Some(events) = events else { return };
    for e in &events {
        for text in [&e.title, &e.short_description, &e.long_description] {
            assert_eq!(text.trim(), text);
            assert!(text.chars().all(|c| c == '\n' || !c.is_control()), "{text:?}");
        }
    }
    let events = events
        .into_iter()
        .map(|mut e| {
            e.service_ref = channel.to_string();
            e
        })
        .collect();
    let list = crate::catalog::programmes(&channel, events, GuideWindow::days_from(1_700_000_000, 7));
    for pair in list.windows(2) {
        assert!(pair[0].start < pair[1].start);
    }
    assert!(list.iter().all(|p| p.stop > p.start && !p.title.is_empty()));
}
