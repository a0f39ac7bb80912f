//! The HDHomeRun HTTP documents Plex, Jellyfin and Emby read: discover.json, lineup.json,
//! lineup_status.json and the UPnP device.xml. Pure: a device, the channels and a base URL in,
//! text or serialisable values out.

use crate::catalog::escape_xml;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde::Serialize;

use super::Device;
use crate::model::{Channel, ServiceKind};

/// The model xg2g presents as: an HDHomeRun EXTEND, the model that streams over HTTP and whose
/// firmware name media servers know.
pub(crate) const MODEL_NUMBER: &str = "HDTC-2US";
pub(crate) const FIRMWARE_NAME: &str = "hdhomeruntc_atsc";
pub(crate) const FIRMWARE_VERSION: &str = "20250101";
pub(crate) const MANUFACTURER: &str = "Silicondust";
pub(crate) const DEVICE_TYPE: &str = "urn:schemas-upnp-org:device:MediaServer:1";

/// Query values keep only RFC 3986's unreserved characters.
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// `GET /discover.json`. Every field is a string except `TunerCount`, as on a real device.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct Discover {
    pub friendly_name: String,
    pub model_number: &'static str,
    pub firmware_name: &'static str,
    pub firmware_version: &'static str,
    #[serde(rename = "DeviceID")]
    pub device_id: String,
    pub device_auth: String,
    #[serde(rename = "BaseURL")]
    pub base_url: String,
    #[serde(rename = "LineupURL")]
    pub lineup_url: String,
    pub tuner_count: u32,
}

/// One entry of `GET /lineup.json`.
#[derive(Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct LineupEntry {
    /// The channel number, as the XMLTV guide keyed by number names the channel.
    pub guide_number: String,
    pub guide_name: String,
    /// `1` for HD channels, absent otherwise, as real devices write it.
    #[serde(rename = "HD", skip_serializing_if = "Option::is_none")]
    pub hd: Option<u8>,
    #[serde(rename = "URL")]
    pub url: String,
}

/// `GET /lineup_status.json`: never scanning, a scan is always possible, the source is "Cable".
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct LineupStatus {
    pub scan_in_progress: u8,
    pub scan_possible: u8,
    pub source: &'static str,
    pub source_list: [&'static str; 1],
}

/// `base` is this server's URL without a trailing slash.
pub(crate) fn discover(device: &Device, base: &str) -> Discover {
    Discover {
        friendly_name: device.friendly_name.clone(),
        model_number: MODEL_NUMBER,
        firmware_name: FIRMWARE_NAME,
        firmware_version: FIRMWARE_VERSION,
        device_id: device.id.to_string(),
        device_auth: device.id.auth(),
        base_url: base.to_owned(),
        lineup_url: format!("{base}/lineup.json"),
        tuner_count: device.tuner_count,
    }
}

/// Every channel in catalog order, streaming through xg2g's TS route with the tuner's profile.
pub(crate) fn lineup(channels: &[Channel], base: &str, profile: &str) -> Vec<LineupEntry> {
    let profile = utf8_percent_encode(profile, QUERY_VALUE);
    channels
        .iter()
        .map(|c| LineupEntry {
            guide_number: c.number.to_string(),
            guide_name: c.name.clone(),
            hd: (c.service_ref.kind() == ServiceKind::HdTv).then_some(1),
            url: format!("{base}/stream/{}?profile={profile}", c.service_ref),
        })
        .collect()
}

pub(crate) fn lineup_status() -> LineupStatus {
    LineupStatus {
        scan_in_progress: 0,
        scan_possible: 1,
        source: "Cable",
        source_list: ["Cable"],
    }
}

/// `GET /device.xml`: the UPnP root device description SSDP's `LOCATION` points at.
pub(crate) fn device_xml(device: &Device, base: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <root xmlns=\"urn:schemas-upnp-org:device-1-0\">\n\
         \x20 <specVersion><major>1</major><minor>0</minor></specVersion>\n\
         \x20 <URLBase>{base}</URLBase>\n\
         \x20 <device>\n\
         \x20   <deviceType>{DEVICE_TYPE}</deviceType>\n\
         \x20   <friendlyName>{name}</friendlyName>\n\
         \x20   <manufacturer>{MANUFACTURER}</manufacturer>\n\
         \x20   <modelName>{MODEL_NUMBER}</modelName>\n\
         \x20   <modelNumber>{MODEL_NUMBER}</modelNumber>\n\
         \x20   <serialNumber>{id}</serialNumber>\n\
         \x20   <UDN>{udn}</UDN>\n\
         \x20 </device>\n\
         </root>\n",
        base = escape_xml(base),
        name = escape_xml(&device.friendly_name),
        id = device.id,
        udn = device.id.udn(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn device() -> Device {
        Device {
            id: "10439EFD".parse().unwrap(),
            friendly_name: "Wohnzimmer <Sat> & Co".to_owned(),
            tuner_count: 4,
            profile: "copy".to_owned(),
        }
    }

    fn channels() -> Vec<Channel> {
        vec![
            Channel {
                number: 1,
                name: "Das Erste HD".into(),
                service_ref: "1:0:19:283D:3FB:1:C00000:0:0:0:".parse().unwrap(),
                bouquet: "Favourites (TV)".into(),
            },
            Channel {
                number: 7,
                name: "Bayerisches Fernsehen Süd".into(),
                service_ref: "1:0:1:6F0B:44D:1:C00000:0:0:0:".parse().unwrap(),
                bouquet: "Favourites (TV)".into(),
            },
        ]
    }

    #[test]
    fn discover_has_plex_field_names_and_types() {
        let value = serde_json::to_value(discover(&device(), "http://tv.local:8080")).unwrap();
        assert_eq!(
            value,
            json!({
                "FriendlyName": "Wohnzimmer <Sat> & Co",
                "ModelNumber": "HDTC-2US",
                "FirmwareName": "hdhomeruntc_atsc",
                "FirmwareVersion": "20250101",
                "DeviceID": "10439EFD",
                "DeviceAuth": device().id.auth(),
                "BaseURL": "http://tv.local:8080",
                "LineupURL": "http://tv.local:8080/lineup.json",
                "TunerCount": 4,
            })
        );
        assert!(value["TunerCount"].is_u64());
    }

    #[test]
    fn lineup_numbers_names_and_urls() {
        let value = serde_json::to_value(lineup(&channels(), "http://tv.local:8080", "copy")).unwrap();
        assert_eq!(
            value,
            json!([
                {"GuideNumber": "1", "GuideName": "Das Erste HD", "HD": 1,
                 "URL": "http://tv.local:8080/stream/1:0:19:283D:3FB:1:C00000:0:0:0:?profile=copy"},
                {"GuideNumber": "7", "GuideName": "Bayerisches Fernsehen Süd",
                 "URL": "http://tv.local:8080/stream/1:0:1:6F0B:44D:1:C00000:0:0:0:?profile=copy"},
            ])
        );
    }

    #[test]
    fn lineup_escapes_the_profile() {
        let entries = lineup(&channels()[..1], "http://h", "my profile&x=1");
        assert_eq!(
            entries[0].url,
            "http://h/stream/1:0:19:283D:3FB:1:C00000:0:0:0:?profile=my%20profile%26x%3D1"
        );
    }

    #[test]
    fn lineup_status_is_idle_cable() {
        let value = serde_json::to_value(lineup_status()).unwrap();
        assert_eq!(
            value,
            json!({"ScanInProgress": 0, "ScanPossible": 1, "Source": "Cable", "SourceList": ["Cable"]})
        );
        assert!(matches!(value["ScanInProgress"], Value::Number(_)));
    }

    #[test]
    fn device_xml_escapes_and_names_the_device() {
        let xml = device_xml(&device(), "http://tv.local:8080");
        assert!(xml.starts_with(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<root xmlns=\"urn:schemas-upnp-org:device-1-0\">"
        ));
        assert!(xml.contains("<friendlyName>Wohnzimmer &lt;Sat&gt; &amp; Co</friendlyName>"));
        assert!(xml.contains("<deviceType>urn:schemas-upnp-org:device:MediaServer:1</deviceType>"));
        assert!(xml.contains("<serialNumber>10439EFD</serialNumber>"));
        assert!(xml.contains(&format!("<UDN>{}</UDN>", device().id.udn())));
        assert!(xml.contains("<URLBase>http://tv.local:8080</URLBase>"));
        assert!(xml.contains("<modelName>HDTC-2US</modelName>"));
    }
}
