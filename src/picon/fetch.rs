//! Where picons come from: the receiver's `/picon/` folder through the OpenWebIF client, or a
//! configured base URL (fetched without the receiver's credentials).

use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt as _;
use url::Url;

use crate::model::ServiceRef;
use crate::upstream::{OpenWebIf, UpstreamError};

/// A picon larger than this is refused (real ones are a few KiB to ~100 KiB).
pub(crate) const MAX_PICON_BYTES: usize = 1 << 20;
const PNG_SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";
const BASE_TIMEOUT: Duration = Duration::from_secs(10);

/// The outcome of one fetch.
#[derive(Debug)]
pub(crate) enum Fetched {
    Found(Bytes),
    /// The source has no PNG for the channel (404, or something that is not a PNG).
    Missing,
    /// The source did not answer usefully; not cached, so the next request tries again.
    Failed(String),
}

#[derive(Debug, Clone)]
pub(crate) enum Source {
    Receiver(OpenWebIf),
    Base { http: reqwest::Client, base: Url },
}

impl Source {
    /// A configured base, else the receiver.
    pub(crate) fn new(base: Option<&Url>, receiver: OpenWebIf) -> Self {
        match base {
            None => Self::Receiver(receiver),
            Some(base) => {
                let http = reqwest::Client::builder()
                    .user_agent(concat!("xg2g/", env!("CARGO_PKG_VERSION")))
                    .timeout(BASE_TIMEOUT)
                    .build()
                    .unwrap_or_default();
                Self::Base {
                    http,
                    base: base.clone(),
                }
            }
        }
    }

    /// Tries each file name Enigma2 would, in order; the first PNG or failure ends the search.
    pub(crate) async fn fetch(&self, service_ref: &ServiceRef) -> Fetched {
        for name in file_names(service_ref) {
            match self.fetch_one(&name).await {
                Fetched::Missing => {}
                // A failing source is not asked for more names.
                found_or_failed => return found_or_failed,
            }
        }
        Fetched::Missing
    }

    async fn fetch_one(&self, name: &str) -> Fetched {
        match self {
            Self::Receiver(client) => match client.get_file(&format!("/picon/{name}"), "/picon").await {
                Ok(body) => classify(body),
                Err(UpstreamError::Status { status: 404 | 410, .. }) => Fetched::Missing,
                Err(error) => Fetched::Failed(error.to_string()),
            },
            Self::Base { http, base } => {
                let mut url = base.clone();
                url.set_path(&format!("{}/{name}", base.path().trim_end_matches('/')));
                fetch_url(http, url).await
            }
        }
    }
}

async fn fetch_url(http: &reqwest::Client, url: Url) -> Fetched {
    let response = match http.get(url).send().await {
        Ok(response) => response,
        Err(error) => return Fetched::Failed(format!("picon base unreachable: {}", error.without_url())),
    };
    let status = response.status();
    if matches!(status.as_u16(), 404 | 410) {
        return Fetched::Missing;
    }
    if !status.is_success() {
        return Fetched::Failed(format!("picon base answered HTTP {status}"));
    }
    // Read at most MAX_PICON_BYTES + 1, so an endless body cannot fill memory.
    let mut body = Vec::new();
    let mut stream = response.bytes_stream();
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(chunk) => {
                body.extend_from_slice(&chunk);
                if body.len() > MAX_PICON_BYTES {
                    return Fetched::Failed(format!("picon larger than {MAX_PICON_BYTES} bytes"));
                }
            }
            Err(error) => return Fetched::Failed(format!("picon body broke off: {}", error.without_url())),
        }
    }
    classify(Bytes::from(body))
}

/// A body is a picon only if it is a PNG of bounded size; receivers that answer a missing file
/// with an HTML page count as missing.
fn classify(body: Bytes) -> Fetched {
    if body.len() > MAX_PICON_BYTES {
        Fetched::Failed(format!("picon larger than {MAX_PICON_BYTES} bytes"))
    } else if body.starts_with(PNG_SIGNATURE) {
        Fetched::Found(body)
    } else {
        Fetched::Missing
    }
}

/// Enigma2's picon names: the reference's fields joined by `_` without the trailing colon, then,
/// for other service types, the same with service type 1 (how most picon sets name HD channels).
pub(crate) fn file_names(service_ref: &ServiceRef) -> Vec<String> {
    let exact = format!("{}.png", service_ref.picon_name());
    let mut names = vec![exact.clone()];
    if service_ref.service_type() != 1 {
        let mut fields: Vec<String> = service_ref.picon_name().split('_').map(str::to_owned).collect();
        fields[2] = "1".to_owned();
        let fallback = format!("{}.png", fields.join("_"));
        if fallback != exact {
            names.push(fallback);
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_follow_enigma2() {
        let hd: ServiceRef = "1:0:19:283D:3FB:1:C00000:0:0:0:".parse().unwrap();
        assert_eq!(
            file_names(&hd),
            [
                "1_0_19_283D_3FB_1_C00000_0_0_0.png",
                "1_0_1_283D_3FB_1_C00000_0_0_0.png"
            ]
        );
        let sd: ServiceRef = "1:0:1:6F0B:44D:1:C00000:0:0:0:".parse().unwrap();
        assert_eq!(file_names(&sd), ["1_0_1_6F0B_44D_1_C00000_0_0_0.png"]);
    }

    #[test]
    fn only_bounded_pngs_count() {
        let png = Bytes::from_static(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR");
        assert!(matches!(classify(png), Fetched::Found(_)));
        assert!(matches!(
            classify(Bytes::from_static(b"<html>404</html>")),
            Fetched::Missing
        ));
        assert!(matches!(classify(Bytes::new()), Fetched::Missing));
        let mut huge = PNG_SIGNATURE.to_vec();
        huge.resize(MAX_PICON_BYTES + 1, 0);
        assert!(matches!(classify(Bytes::from(huge)), Fetched::Failed(_)));
    }
}
