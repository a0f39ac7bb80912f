//! The demo's OpenWebIF API: the calls xg2g makes, shaped like a real box's answers.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use base64::Engine as _;
use serde::Deserialize;
use serde_json::json;

use super::State;
use super::channels::{BOUQUETS, Entry, bouquet, events};
use crate::model::ServiceRef;

type Shared = web::Data<Arc<State>>;

pub(crate) fn server(listener: std::net::TcpListener, state: Arc<State>) -> std::io::Result<actix_web::dev::Server> {
    let data = web::Data::new(state);
    Ok(actix_web::HttpServer::new(move || {
        actix_web::App::new()
            .app_data(data.clone())
            .wrap(actix_web::middleware::from_fn(count_in_flight))
            .route("/api/bouquets", web::get().to(bouquets))
            .route("/api/getservices", web::get().to(services))
            .route("/api/epgservice", web::get().to(epg_service))
            .route("/api/epgbouquet", web::get().to(epg_bouquet))
            .route("/web/epgservice", web::get().to(epg_service_xml))
            .route("/web/stream.m3u", web::get().to(stream_m3u))
            .route("/file", web::get().to(file))
            .route("/api/about", web::get().to(about))
            .route("/api/statusinfo", web::get().to(status_info))
            .route("/picon/{file}", web::get().to(picon))
    })
    .workers(1)
    .disable_signals()
    .shutdown_timeout(1)
    .listen(listener)?
    .run())
}

/// Counts API requests being answered, and the most at once, for tests of xg2g's bound.
async fn count_in_flight(
    req: actix_web::dev::ServiceRequest,
    next: actix_web::middleware::Next<impl actix_web::body::MessageBody>,
) -> Result<actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>, actix_web::Error> {
    struct InFlight(Option<Arc<State>>);
    impl Drop for InFlight {
        fn drop(&mut self) {
            if let Some(state) = &self.0 {
                state.stats.api_in_flight.fetch_sub(1, Ordering::SeqCst);
            }
        }
    }
    let state = req.app_data::<Shared>().map(|s| Arc::clone(s.get_ref()));
    if let Some(state) = &state {
        let now = state.stats.api_in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        state.stats.api_in_flight_max.fetch_max(now, Ordering::SeqCst);
    }
    let _in_flight = InFlight(state);
    next.call(req).await
}

/// Applies the cross-cutting behaviour of every API call: auth, delay, injected failures.
async fn gate(state: &State, req: &HttpRequest) -> Option<HttpResponse> {
    state.stats.api_requests.fetch_add(1, Ordering::Relaxed);
    let faults = state.faults();
    if !faults.api_delay.is_zero() {
        tokio::time::sleep(faults.api_delay).await;
    }
    if let Some((user, pass)) = &state.options.credentials {
        let expected = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
        );
        let given = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
        if given != Some(expected.as_str()) {
            return Some(
                HttpResponse::Unauthorized()
                    .insert_header((header::WWW_AUTHENTICATE, "Basic realm=\"OpenWebif\""))
                    .finish(),
            );
        }
    }
    let mut guard = state.faults.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if guard.api_fail_next > 0 {
        guard.api_fail_next -= 1;
        return Some(HttpResponse::InternalServerError().body("Internal Server Error"));
    }
    None
}

/// A JSON answer; names go out as Latin-1 bytes, as some images do, when they fit.
fn json_latin1(state: &State, value: serde_json::Value) -> HttpResponse {
    let text = value.to_string();
    let body: Vec<u8> = if text.chars().all(|c| (c as u32) < 0x100) {
        text.chars().map(|c| c as u8).collect()
    } else {
        text.into_bytes()
    };
    json_bytes(state, body)
}

fn json_utf8(state: &State, value: serde_json::Value) -> HttpResponse {
    json_bytes(state, value.to_string().into_bytes())
}

fn json_bytes(state: &State, mut body: Vec<u8>) -> HttpResponse {
    if state.faults().api_invalid_json {
        body.truncate(body.len() / 2);
    }
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "application/json"))
        .body(body)
}

async fn bouquets(state: Shared, req: HttpRequest) -> HttpResponse {
    if let Some(r) = gate(&state, &req).await {
        return r;
    }
    let list: Vec<_> = BOUQUETS.iter().map(|b| json!([b.reference, b.name])).collect();
    json_utf8(&state, json!({ "bouquets": list }))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ServicesQuery {
    s_ref: Option<String>,
}

async fn services(state: Shared, req: HttpRequest, q: web::Query<ServicesQuery>) -> HttpResponse {
    if let Some(r) = gate(&state, &req).await {
        return r;
    }
    let Some(bouquet) = q.s_ref.as_deref().and_then(bouquet) else {
        return json_utf8(&state, json!({ "services": [], "pos": 0 }));
    };
    let services: Vec<_> = bouquet
        .entries
        .iter()
        .enumerate()
        .map(|(pos, e)| {
            let (reference, name) = match e {
                Entry::Marker { reference, name } | Entry::Directory { reference, name } => (*reference, *name),
                Entry::Channel(c) => (c.reference, c.name),
            };
            json!({ "servicereference": reference, "servicename": name, "pos": pos + 1, "program": 0 })
        })
        .collect();
    json_latin1(&state, json!({ "services": services, "pos": 0 }))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EpgQuery {
    s_ref: Option<String>,
    b_ref: Option<String>,
}

fn channel_events(state: &State, reference: &str) -> Vec<super::channels::Event> {
    let Ok(service_ref) = reference.parse::<ServiceRef>() else {
        return vec![];
    };
    let now = epg_now(state);
    state
        .channels
        .iter()
        .enumerate()
        .find(|(_, c)| c.service_ref == service_ref)
        .map(|(i, c)| events(c.def, i, now, state.options.epg_days))
        .unwrap_or_default()
}

/// The guide's "now": the fixed anchor when the options set one.
fn epg_now(state: &State) -> i64 {
    state.options.epg_anchor.unwrap_or_else(now_unix)
}

fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

async fn epg_service(state: Shared, req: HttpRequest, q: web::Query<EpgQuery>) -> HttpResponse {
    if let Some(r) = gate(&state, &req).await {
        return r;
    }
    let events = channel_events(&state, q.s_ref.as_deref().unwrap_or_default());
    json_utf8(&state, json!({ "result": true, "events": events }))
}

async fn epg_bouquet(state: Shared, req: HttpRequest, q: web::Query<EpgQuery>) -> HttpResponse {
    if let Some(r) = gate(&state, &req).await {
        return r;
    }
    let Some(bouquet) = q.b_ref.as_deref().and_then(bouquet) else {
        return json_utf8(&state, json!({ "result": true, "events": [] }));
    };
    let mut all = Vec::new();
    for entry in bouquet.entries {
        if let Entry::Channel(c) = entry {
            // The bouquet view lists the current and next event only, like OpenWebIF.
            all.extend(
                channel_events(&state, c.reference)
                    .into_iter()
                    .filter(|e| e.begin_timestamp + e.duration_sec > epg_now(&state))
                    .take(2),
            );
        }
    }
    json_utf8(&state, json!({ "result": true, "events": all }))
}

async fn epg_service_xml(state: Shared, req: HttpRequest, q: web::Query<EpgQuery>) -> HttpResponse {
    if let Some(r) = gate(&state, &req).await {
        return r;
    }
    let mut xml = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<e2eventlist>\n");
    for e in channel_events(&state, q.s_ref.as_deref().unwrap_or_default()) {
        xml.push_str(&format!(
            "<e2event><e2eventid>{}</e2eventid><e2eventstart>{}</e2eventstart><e2eventduration>{}</e2eventduration>\
             <e2eventtitle>{}</e2eventtitle><e2eventdescription>{}</e2eventdescription>\
             <e2eventdescriptionextended>{}</e2eventdescriptionextended>\
             <e2eventservicereference>{}</e2eventservicereference></e2event>\n",
            e.id,
            e.begin_timestamp,
            e.duration_sec,
            xml_escape(&e.title),
            xml_escape(&e.shortdesc),
            xml_escape(&e.longdesc),
            xml_escape(&e.sref)
        ));
    }
    xml.push_str("</e2eventlist>\n");
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "text/xml; charset=UTF-8"))
        .body(xml)
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[derive(Deserialize)]
struct StreamQuery {
    #[serde(rename = "ref")]
    reference: Option<String>,
}

async fn stream_m3u(state: Shared, req: HttpRequest, q: web::Query<StreamQuery>) -> HttpResponse {
    if let Some(r) = gate(&state, &req).await {
        return r;
    }
    let reference = q.reference.clone().unwrap_or_default();
    let host = state.options.bind;
    let body = format!(
        "#EXTM3U\n#EXTVLCOPT:program=0\nhttp://{host}:{}/{reference}\n",
        state.stream_port
    );
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "audio/x-mpegurl"))
        .body(body)
}

#[derive(Deserialize)]
struct FileQuery {
    file: Option<String>,
}

async fn file(state: Shared, req: HttpRequest, q: web::Query<FileQuery>) -> HttpResponse {
    if let Some(r) = gate(&state, &req).await {
        return r;
    }
    if q.file.as_deref() != Some("/etc/enigma2/whitelist_streamrelay") {
        return HttpResponse::NotFound().finish();
    }
    let mut body = String::from("# OSCam stream relay: services descrambled on port 17999\n");
    for c in state.channels.iter().filter(|c| c.def.whitelisted) {
        body.push_str(&format!("{}\n", c.service_ref));
    }
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "text/plain"))
        .body(body)
}

async fn about(state: Shared, req: HttpRequest) -> HttpResponse {
    if let Some(r) = gate(&state, &req).await {
        return r;
    }
    json_utf8(
        &state,
        json!({ "info": { "brand": "xg2g", "model": "Demo Receiver", "boxtype": "demo",
            "tuners": [{ "name": "Tuner A", "type": "DVB-S2" }, { "name": "Tuner B", "type": "DVB-S2" }] } }),
    )
}

async fn status_info(state: Shared, req: HttpRequest) -> HttpResponse {
    if let Some(r) = gate(&state, &req).await {
        return r;
    }
    let current = state
        .channels
        .first()
        .map(|c| c.service_ref.to_string())
        .unwrap_or_default();
    json_utf8(
        &state,
        json!({ "inStandby": "false", "currservice_serviceref": current }),
    )
}

/// `/picon/<reference with '_', no trailing ':'>.png`, like OpenWebIF's picon folder: a PNG for
/// some channels, 404 for the others.
async fn picon(state: Shared, req: HttpRequest, file: web::Path<String>) -> HttpResponse {
    if let Some(r) = gate(&state, &req).await {
        return r;
    }
    state.stats.picon_requests.fetch_add(1, Ordering::Relaxed);
    match super::picon::picon(&file) {
        Some(png) => HttpResponse::Ok()
            .insert_header((header::CONTENT_TYPE, "image/png"))
            .body(png),
        None => HttpResponse::NotFound()
            .insert_header((header::CONTENT_TYPE, "text/html"))
            .body("<html><body>404 Not Found</body></html>"),
    }
}
