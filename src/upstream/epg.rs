//! The programme guide of one service: `/api/epgservice` (JSON), falling back to the XML
//! `/web/epgservice` when the JSON call fails or answers nonsense (REFERENCE.md §1).
//!
//! Parsing is pure and tested on captured shapes; text is decoded (UTF-8, else Latin-1) and
//! cleaned of DVB control codes here, so the catalog only sees display-ready strings.

use serde::{Deserialize, Deserializer};

use super::error::UpstreamError;
use super::openwebif::OpenWebIf;
use super::text::decode;
use super::wire;
use crate::model::ServiceRef;

const JSON_ENDPOINT: &str = "/api/epgservice";
const XML_ENDPOINT: &str = "/web/epgservice";

/// One guide event as the receiver lists it. Which channel it belongs to is decided by the
/// caller from `service_ref`: receivers list linked services' events too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EpgEvent {
    pub id: u64,
    /// The event's service reference, as sent.
    pub service_ref: String,
    /// Unix seconds.
    pub start: i64,
    /// Seconds.
    pub duration: i64,
    pub title: String,
    /// OpenWebIF's `shortdesc`: often a genre line or an episode title.
    pub short_description: String,
    /// OpenWebIF's `longdesc`: the programme text.
    pub long_description: String,
}

impl OpenWebIf {
    /// The guide of one service from now on (`time=-1`), from `/api/epgservice`, else from
    /// `/web/epgservice`. Fails only when both fail; the error is the XML call's.
    pub async fn epg_service(&self, service_ref: &ServiceRef) -> Result<Vec<EpgEvent>, UpstreamError> {
        let reference = service_ref.to_string();
        let query = [("sRef", reference.as_str()), ("time", "-1")];
        let json_error = match self.get(JSON_ENDPOINT, &query).await {
            Ok(body) => match parse_json(&body) {
                Ok(events) => return Ok(events),
                Err(error) => error,
            },
            Err(error) => error,
        };
        tracing::debug!(service = %service_ref, error = %json_error, "JSON guide failed; trying the XML guide.");
        let body = self.get(XML_ENDPOINT, &query).await?;
        let events = parse_xml(&body)?;
        tracing::info!(
            service = %service_ref,
            events = events.len(),
            json_error = %json_error,
            "Guide loaded from the XML fallback."
        );
        Ok(events)
    }
}

/// `{"result": true, "events": [...]}`. `result: false` or no `events` list is not an answer.
pub(crate) fn parse_json(body: &[u8]) -> Result<Vec<EpgEvent>, UpstreamError> {
    let list: WireEpg = wire::parse(JSON_ENDPOINT, body)?;
    if list.result == Some(false) {
        return Err(UpstreamError::InvalidResponse {
            endpoint: JSON_ENDPOINT,
            detail: "\"result\" is false".to_owned(),
        });
    }
    Ok(list
        .events
        .into_iter()
        .filter_map(|e| {
            Some(EpgEvent {
                id: e.id.unwrap_or_default().max(0) as u64,
                service_ref: e.sref.trim().to_owned(),
                start: e.begin_timestamp?,
                duration: e.duration_sec?,
                title: clean_text(&e.title),
                short_description: clean_text(&e.shortdesc),
                long_description: clean_text(&e.longdesc),
            })
        })
        .collect())
}

#[derive(Debug, Deserialize)]
struct WireEpg {
    #[serde(default)]
    result: Option<bool>,
    events: Vec<WireEvent>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct WireEvent {
    #[serde(deserialize_with = "lenient_int")]
    id: Option<i64>,
    #[serde(deserialize_with = "lenient_text")]
    title: String,
    #[serde(deserialize_with = "lenient_text")]
    shortdesc: String,
    #[serde(deserialize_with = "lenient_text")]
    longdesc: String,
    #[serde(deserialize_with = "lenient_int")]
    begin_timestamp: Option<i64>,
    #[serde(deserialize_with = "lenient_int")]
    duration_sec: Option<i64>,
    #[serde(deserialize_with = "lenient_text")]
    sref: String,
}

/// A number, a numeric string or `null`: images differ.
fn lenient_int<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    Ok(match serde_json::Value::deserialize(d)? {
        serde_json::Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
        serde_json::Value::String(s) => s.trim().parse().ok(),
        _ => None,
    })
}

/// A string, or empty for `null` and anything else.
fn lenient_text<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(match serde_json::Value::deserialize(d)? {
        serde_json::Value::String(s) => s,
        _ => String::new(),
    })
}

/// `<e2eventlist><e2event>…</e2event></e2eventlist>`. Events without a start or duration that
/// parse as numbers (some images write `None`) are skipped.
pub(crate) fn parse_xml(body: &[u8]) -> Result<Vec<EpgEvent>, UpstreamError> {
    let text = decode(body);
    let doc = roxmltree::Document::parse(&text).map_err(|e| UpstreamError::InvalidResponse {
        endpoint: XML_ENDPOINT,
        detail: e.to_string(),
    })?;
    let root = doc.root_element();
    if root.tag_name().name() != "e2eventlist" {
        return Err(UpstreamError::InvalidResponse {
            endpoint: XML_ENDPOINT,
            detail: format!("expected <e2eventlist>, got <{}>", root.tag_name().name()),
        });
    }
    let events = root
        .children()
        .filter(|n| n.has_tag_name("e2event"))
        .filter_map(|event| {
            let field = |name: &str| {
                event
                    .children()
                    .find(|n| n.has_tag_name(name))
                    .and_then(|n| n.text())
                    .unwrap_or_default()
            };
            let number = |name: &str| field(name).trim().parse::<i64>().ok();
            Some(EpgEvent {
                id: number("e2eventid").unwrap_or_default().max(0) as u64,
                service_ref: field("e2eventservicereference").trim().to_owned(),
                start: number("e2eventstart")?,
                duration: number("e2eventduration")?,
                title: clean_text(field("e2eventtitle")),
                short_description: clean_text(field("e2eventdescription")),
                long_description: clean_text(field("e2eventdescriptionextended")),
            })
        })
        .collect();
    Ok(events)
}

/// Guide text for display: DVB's line break (U+008A) and CR LF become `\n`, tabs spaces; other
/// control characters (DVB emphasis U+0086/U+0087 among them) are dropped; the ends trimmed.
pub(crate) fn clean_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\u{8A}' | '\n' => out.push('\n'),
            '\t' => out.push(' '),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out.trim().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_as_captured_with_latin1_and_odd_fields() {
        let mut body = br#"{"result": true, "events": [{"id": 32845, "title": "Tagesschau", "shortdesc": "News", "longdesc": "Die Nachrichten.", "begin_timestamp": 1700000000, "duration_sec": 900, "sref": "1:0:19:283D:3FB:1:C00000:0:0:0:", "genre": "", "now_timestamp": 0}, "#.to_vec();
        body.extend_from_slice(b"{\"id\": \"7\", \"title\": \"M\xFCnchner Runde\", \"shortdesc\": null, \"longdesc\": \"Zeile 1\x8AZeile 2\", \"begin_timestamp\": \"1700000900\", \"duration_sec\": 1800.0, \"sref\": \"1:0:1:6F0B:44D:1:C00000:0:0:0:\"}, ");
        body.extend_from_slice(br#"{"id": 8, "title": "no start", "duration_sec": 60, "sref": "x"}]}"#);
        let events = parse_json(&body).unwrap();
        assert_eq!(
            events,
            [
                EpgEvent {
                    id: 32845,
                    service_ref: "1:0:19:283D:3FB:1:C00000:0:0:0:".into(),
                    start: 1_700_000_000,
                    duration: 900,
                    title: "Tagesschau".into(),
                    short_description: "News".into(),
                    long_description: "Die Nachrichten.".into(),
                },
                EpgEvent {
                    id: 7,
                    service_ref: "1:0:1:6F0B:44D:1:C00000:0:0:0:".into(),
                    start: 1_700_000_900,
                    duration: 1_800,
                    title: "Münchner Runde".into(),
                    short_description: String::new(),
                    long_description: "Zeile 1\nZeile 2".into(),
                },
            ]
        );
    }

    #[test]
    fn json_that_is_not_a_guide_is_an_error() {
        for body in [
            &br#"{"result": false, "message": "no such service"}"#[..],
            br#"{"result": false, "events": []}"#,
            br#"{"events": [{"id": 1, "begin_"#,
            b"<html>Login</html>",
        ] {
            let err = parse_json(body).unwrap_err();
            assert_eq!(err.code(), "upstream-invalid-response", "{err}");
        }
        assert_eq!(parse_json(br#"{"events": []}"#).unwrap(), []);
    }

    #[test]
    fn xml_as_captured() {
        let mut body = b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<e2eventlist>\n\
            <e2event><e2eventid>32845</e2eventid><e2eventstart>1700000000</e2eventstart>\
            <e2eventduration>900</e2eventduration><e2eventcurrenttime>1700000100</e2eventcurrenttime>\
            <e2eventtitle>Tatort: M\xC3\xBCnchner Blut</e2eventtitle>\
            <e2eventdescription>Krimi &amp; mehr</e2eventdescription>\
            <e2eventdescriptionextended>Teil 1\xC2\x8ATeil 2</e2eventdescriptionextended>\
            <e2eventservicereference>1:0:19:283D:3FB:1:C00000:0:0:0:</e2eventservicereference>\
            <e2eventservicename>Das Erste HD</e2eventservicename></e2event>\n"
            .to_vec();
        body.extend_from_slice(
            b"<e2event><e2eventid>None</e2eventid><e2eventstart>None</e2eventstart>\
              <e2eventduration>None</e2eventduration><e2eventtitle>None</e2eventtitle></e2event>\n</e2eventlist>\n",
        );
        let events = parse_xml(&body).unwrap();
        assert_eq!(
            events,
            [EpgEvent {
                id: 32845,
                service_ref: "1:0:19:283D:3FB:1:C00000:0:0:0:".into(),
                start: 1_700_000_000,
                duration: 900,
                title: "Tatort: Münchner Blut".into(),
                short_description: "Krimi & mehr".into(),
                long_description: "Teil 1\nTeil 2".into(),
            }]
        );
    }

    #[test]
    fn xml_in_latin1_and_broken_xml() {
        let body = b"<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?><e2eventlist><e2event>\
            <e2eventstart>1</e2eventstart><e2eventduration>2</e2eventduration>\
            <e2eventtitle>\xD61 Morgenjournal</e2eventtitle></e2event></e2eventlist>";
        let events = parse_xml(body).unwrap();
        assert_eq!(events[0].title, "Ö1 Morgenjournal");

        let err = parse_xml(b"<e2eventlist><e2event>").unwrap_err();
        assert_eq!(err.code(), "upstream-invalid-response");
        let err = parse_xml(b"<html><body>Login</body></html>").unwrap_err();
        assert!(err.to_string().contains("expected <e2eventlist>, got <html>"), "{err}");
    }

    #[test]
    fn text_loses_dvb_control_codes() {
        assert_eq!(
            clean_text("\u{86}Tatort\u{87}\u{8A}Krimi\r\n\tTeil 2 "),
            "Tatort\nKrimi\n Teil 2"
        );
        assert_eq!(clean_text("  "), "");
    }
}
