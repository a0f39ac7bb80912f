//! OpenWebIF JSON shapes, as the receiver sends them (REFERENCE.md §1).
//!
//! Only the fields xg2g reads are declared; extra fields are ignored. The list itself is required
//! (an answer without it is not the call's answer: a login page, another API), fields of an entry
//! default to empty, and `null` reads as empty.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};

use super::error::UpstreamError;
use super::text::decode;

/// `GET /api/bouquets`: `{"bouquets": [[ref, name], …]}`.
#[derive(Debug, Deserialize)]
pub(crate) struct BouquetList {
    pub bouquets: Vec<(String, String)>,
}

/// `GET /api/getservices?sRef=…`: `{"services": [{"servicereference": …, "servicename": …}, …]}`.
#[derive(Debug, Deserialize)]
pub(crate) struct ServiceList {
    pub services: Vec<WireService>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct WireService {
    #[serde(deserialize_with = "null_as_empty")]
    pub servicereference: String,
    #[serde(deserialize_with = "null_as_empty")]
    pub servicename: String,
}

fn null_as_empty<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(Option::<String>::deserialize(d)?.unwrap_or_default())
}

/// Decodes a body (UTF-8, else Latin-1) and parses it as `T`.
pub(crate) fn parse<T: DeserializeOwned>(endpoint: &'static str, body: &[u8]) -> Result<T, UpstreamError> {
    serde_json::from_str(&decode(body)).map_err(|e| UpstreamError::InvalidResponse {
        endpoint,
        detail: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bouquets_as_captured() {
        let body = br#"{"bouquets": [["1:7:1:0:0:0:0:0:0:0:FROM BOUQUET \"userbouquet.favourites.tv\" ORDER BY bouquet", "Favourites (TV)"]]}"#;
        let list: BouquetList = parse("/api/bouquets", body).unwrap();
        assert_eq!(
            list.bouquets,
            [(
                "1:7:1:0:0:0:0:0:0:0:FROM BOUQUET \"userbouquet.favourites.tv\" ORDER BY bouquet".to_owned(),
                "Favourites (TV)".to_owned()
            )]
        );
    }

    #[test]
    fn services_as_captured_with_extra_fields_and_latin1() {
        let mut body = br#"{"services": [{"servicename": "Das Erste HD", "servicereference": "1:0:19:283D:3FB:1:C00000:0:0:0:", "pos": 1, "program": 0}, "#.to_vec();
        body.extend_from_slice(b"{\"servicereference\": \"1:0:1:2EE3:441:1:C00000:0:0:0:\", \"servicename\": \"M\xFCnchner Lokalfernsehen\"}, ");
        body.extend_from_slice(
            br#"{"servicereference": "1:64:1:0:0:0:0:0:0:0::Hauptsender", "servicename": null}], "pos": 0}"#,
        );
        let list: ServiceList = parse("/api/getservices", &body).unwrap();
        let got: Vec<(&str, &str)> = list
            .services
            .iter()
            .map(|s| (s.servicereference.as_str(), s.servicename.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("1:0:19:283D:3FB:1:C00000:0:0:0:", "Das Erste HD"),
                ("1:0:1:2EE3:441:1:C00000:0:0:0:", "Münchner Lokalfernsehen"),
                ("1:64:1:0:0:0:0:0:0:0::Hauptsender", ""),
            ]
        );
    }

    #[test]
    fn broken_answers_name_the_endpoint() {
        let cut = br#"{"services": [{"servicename": "Das Erste HD", "servicere"#;
        let err = parse::<ServiceList>("/api/getservices", cut).unwrap_err();
        assert!(matches!(
            err,
            UpstreamError::InvalidResponse {
                endpoint: "/api/getservices",
                ..
            }
        ));
        assert!(
            err.to_string()
                .starts_with("receiver sent an invalid answer to /api/getservices: EOF while parsing"),
            "{err}"
        );

        let login_page = b"<html><body>Login</body></html>";
        let err = parse::<BouquetList>("/api/bouquets", login_page).unwrap_err();
        assert_eq!(
            err.to_string(),
            "receiver sent an invalid answer to /api/bouquets: expected value at line 1 column 1"
        );

        let other_api = br#"{"result": false, "message": "unknown call"}"#;
        let err = parse::<BouquetList>("/api/bouquets", other_api).unwrap_err();
        assert!(err.to_string().contains("missing field `bouquets`"), "{err}");
    }
}
