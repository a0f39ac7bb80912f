//! The embedded demo receiver: OpenWebIF API and stream servers on loopback, with fault injection.
//!
//! It behaves like an Enigma2 box (REFERENCE.md §1): bouquets and services with Latin-1 names,
//! EPG around the current time, the OSCam relay whitelist, a stream port and a relay port that
//! serve endless real-time MPEG-TS. Tests switch faults on through [`DemoReceiver::set_faults`].

mod api;
mod channels;
mod feed;
mod media;
mod picon;
mod stream;
mod ts;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::model::ServiceRef;
use channels::DemoChannel;
use feed::Feed;
use media::{LOOP_90K, Media, MediaKind};
use ts::{Program, Track, mux_loop};

pub use stream::Port;

/// Where and how the demo receiver listens.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    pub bind: IpAddr,
    /// 0 picks a free port.
    pub api_port: u16,
    pub stream_port: u16,
    pub relay_port: u16,
    /// HTTP Basic credentials the box demands, if any.
    pub credentials: Option<(String, String)>,
    /// Delay before a stream's first byte, like a tuner locking (real boxes: 3–5 s).
    pub tune_delay: Duration,
    pub epg_days: u32,
    /// A fixed "now" (unix seconds) for the guide, so its events do not move: golden files.
    /// `None` = the real clock.
    pub epg_anchor: Option<i64>,
    /// How heavy the channels' media is: light for tests, broadcast for load measurements.
    pub bitrate: DemoBitrate,
}

/// The bitrates of the demo channels' media.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DemoBitrate {
    /// About 1 Mbit/s a channel (simple pictures): quick to make, cheap to serve; the tests use it.
    #[default]
    Light,
    /// As heavy as a real receiver: HD H.264 720p50 at about 10 Mbit/s, SD MPEG-2 576i at
    /// about 4.5 Mbit/s, 5.1 audio at broadcast rates (README "Performance").
    Broadcast,
}

impl Default for DemoOptions {
    fn default() -> Self {
        Self {
            bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
            api_port: 0,
            stream_port: 0,
            relay_port: 0,
            credentials: None,
            tune_delay: Duration::ZERO,
            epg_days: 7,
            epg_anchor: None,
            bitrate: DemoBitrate::default(),
        }
    }
}

/// A demo channel as load generators see it: where it streams and what video it carries.
/// Public for the benchmark harness (`xg2g-bench`), which plans its clients from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LineupEntry {
    pub name: &'static str,
    pub reference: &'static str,
    pub video: LineupVideo,
    /// Whitelisted for the relay: served decrypted only on the relay port.
    pub relay: bool,
}

/// The video codec of a demo channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineupVideo {
    H264,
    Mpeg2,
    None,
}

/// The demo channels, in bouquet order (public for `xg2g-bench`, as [`LineupEntry`]).
pub fn lineup() -> Vec<LineupEntry> {
    channels::channels()
        .map(|c| LineupEntry {
            name: c.name,
            reference: c.reference,
            video: match c.media {
                MediaKind::Hd | MediaKind::HdEac3 => LineupVideo::H264,
                MediaKind::Sd => LineupVideo::Mpeg2,
                MediaKind::Radio => LineupVideo::None,
            },
            relay: c.whitelisted,
        })
        .collect()
}

/// What a stream connection to one channel does wrong. A fault switched on while a connection
/// streams takes effect at its next chunk; byte limits count that connection's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamFault {
    /// The box answers 404 (a service it cannot tune); an open connection is closed.
    NotFound,
    /// The box answers with this HTTP status (500: its stream server failed on the service);
    /// an open connection is closed.
    Status(u16),
    /// Sends this many bytes, then nothing while keeping the connection open, for good (a hung
    /// box; with 0, every tuner busy).
    StallAfter(u64),
    /// Sends nothing while set, holding connections open; once cleared they go on from the live
    /// point, as a box does when the signal comes back.
    Pause,
    /// Sends this many bytes, then closes the connection.
    DropAfter(u64),
    /// Resets the connection (TCP RST, not a byte more): an open one at its next chunk, a new
    /// one right after its request, like a stream server that crashed.
    Reset,
    /// Sends random bytes instead of a transport stream.
    Garbage,
}

/// What a whole stream port does wrong, for every channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortFault {
    /// Accepts, then hangs up without a byte of reply, as OSCam's relay refuses when probed too
    /// often.
    Refuse,
    /// Accepts and reads the request, then never answers.
    Silent,
    /// Answers every request with this HTTP status.
    Status(u16),
}

/// Faults switched on for the API and for streams.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// Every API answer waits this long.
    pub api_delay: Duration,
    /// The next N API requests answer `500 Internal Server Error`.
    pub api_fail_next: u32,
    /// API answers are cut JSON.
    pub api_invalid_json: bool,
    /// Per channel (canonical service reference) stream faults.
    pub streams: HashMap<String, StreamFault>,
    /// Fault of the whole stream port (8001 on a real box).
    pub stream_port: Option<PortFault>,
    /// Fault of the whole relay port (17999 on a real box).
    pub relay_port: Option<PortFault>,
}

/// Counters tests read to see what reached the box.
#[derive(Debug, Default)]
pub struct Stats {
    pub api_requests: AtomicU64,
    pub stream_connections: AtomicU64,
    pub relay_connections: AtomicU64,
    /// Stream responses currently sending media, both ports.
    pub active_streams: AtomicI64,
    /// API requests being answered right now.
    pub api_in_flight: AtomicI64,
    /// The most API requests that were ever answered at once.
    pub api_in_flight_max: AtomicI64,
    /// Requests for `/picon/…`, found or not.
    pub picon_requests: AtomicU64,
}

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("cannot bind the demo receiver's {what} port: {source}")]
    Bind {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot prepare demo media: {0}")]
    Media(String),
}

/// A channel of the running demo, with its feeds.
pub(crate) struct LiveChannel {
    pub def: &'static DemoChannel,
    pub service_ref: ServiceRef,
    pub clear: Arc<Feed>,
    /// What the plain stream port sends for a whitelisted channel.
    pub scrambled: Option<Arc<Feed>>,
    /// HTTP requests for this channel on the stream port, any method, any answer.
    pub stream_requests: AtomicU64,
    /// HTTP requests for this channel on the relay port, any method, any answer.
    pub relay_requests: AtomicU64,
}

pub(crate) struct State {
    pub options: DemoOptions,
    pub channels: Vec<LiveChannel>,
    pub faults: Mutex<Faults>,
    /// Bumped on every change of `faults`, so that streaming connections re-read them only then.
    pub faults_changed: AtomicU64,
    pub stats: Stats,
    pub stream_port: u16,
}

impl State {
    pub(crate) fn channel(&self, service_ref: &ServiceRef) -> Option<&LiveChannel> {
        self.channels.iter().find(|c| &c.service_ref == service_ref)
    }

    pub(crate) fn faults(&self) -> Faults {
        self.faults
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

/// A running demo receiver. Dropping it stops its servers.
pub struct DemoReceiver {
    state: Arc<State>,
    api_addr: SocketAddr,
    stream_addr: SocketAddr,
    relay_addr: SocketAddr,
    api_server: actix_web::dev::ServerHandle,
    shutdown: CancellationToken,
}

impl DemoReceiver {
    /// Encodes (or loads) the demo media and starts the API and both stream ports.
    pub async fn start(options: DemoOptions) -> Result<Self, DemoError> {
        let bitrate = options.bitrate;
        let channels = tokio::task::spawn_blocking(move || build_channels(bitrate))
            .await
            .map_err(|e| DemoError::Media(e.to_string()))??;
        let bind = |what: &'static str, port: u16| {
            let listener =
                std::net::TcpListener::bind((options.bind, port)).map_err(|source| DemoError::Bind { what, source })?;
            listener
                .set_nonblocking(true)
                .map_err(|source| DemoError::Bind { what, source })?;
            Ok::<_, DemoError>(listener)
        };
        let stream_listener = bind("stream", options.stream_port)?;
        let relay_listener = bind("relay", options.relay_port)?;
        let api_listener = bind("API", options.api_port)?;
        let local = |l: &std::net::TcpListener, what| l.local_addr().map_err(|source| DemoError::Bind { what, source });
        let stream_addr = local(&stream_listener, "stream")?;
        let relay_addr = local(&relay_listener, "relay")?;
        let api_addr = local(&api_listener, "API")?;

        let state = Arc::new(State {
            options,
            channels,
            faults: Mutex::new(Faults::default()),
            faults_changed: AtomicU64::new(0),
            stats: Stats::default(),
            stream_port: stream_addr.port(),
        });
        let shutdown = CancellationToken::new();
        for (listener, port) in [
            (stream_listener, stream::Port::Stream),
            (relay_listener, stream::Port::Relay),
        ] {
            let listener = tokio::net::TcpListener::from_std(listener)
                .map_err(|source| DemoError::Bind { what: "stream", source })?;
            tokio::spawn(stream::serve(listener, port, Arc::clone(&state), shutdown.clone()));
        }
        let server =
            api::server(api_listener, Arc::clone(&state)).map_err(|source| DemoError::Bind { what: "API", source })?;
        let api_server = server.handle();
        tokio::spawn(server);
        tracing::info!(api = %api_addr, stream = %stream_addr, relay = %relay_addr, "Demo receiver listening.");
        Ok(Self {
            state,
            api_addr,
            stream_addr,
            relay_addr,
            api_server,
            shutdown,
        })
    }

    /// Base URL of the OpenWebIF API, e.g. `http://127.0.0.1:41234`.
    pub fn api_url(&self) -> String {
        format!("http://{}", self.api_addr)
    }

    pub fn api_addr(&self) -> SocketAddr {
        self.api_addr
    }

    pub fn stream_addr(&self) -> SocketAddr {
        self.stream_addr
    }

    pub fn relay_addr(&self) -> SocketAddr {
        self.relay_addr
    }

    pub fn stats(&self) -> &Stats {
        &self.state.stats
    }

    /// Changes the faults; takes effect for the next request or chunk.
    pub fn set_faults(&self, change: impl FnOnce(&mut Faults)) {
        change(
            &mut self
                .state
                .faults
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        self.state.faults_changed.fetch_add(1, Ordering::Release);
    }

    /// Service references of the demo channels, in bouquet order.
    pub fn channel_refs(&self) -> Vec<String> {
        self.state.channels.iter().map(|c| c.service_ref.to_string()).collect()
    }

    /// HTTP requests for one channel (service reference, any case) that reached `port`.
    pub fn requests(&self, port: Port, service_ref: &str) -> u64 {
        let Ok(service_ref) = service_ref.parse::<ServiceRef>() else {
            return 0;
        };
        self.state.channel(&service_ref).map_or(0, |c| {
            match port {
                Port::Stream => &c.stream_requests,
                Port::Relay => &c.relay_requests,
            }
            .load(Ordering::Relaxed)
        })
    }

    /// Stops the servers and waits for the API server to finish.
    pub async fn stop(self) {
        self.shutdown.cancel();
        self.api_server.stop(false).await;
    }
}

impl Drop for DemoReceiver {
    fn drop(&mut self) {
        self.shutdown.cancel();
        // Stopping is asynchronous; the handle only sends the command.
        drop(self.api_server.stop(false));
    }
}

fn build_channels(bitrate: DemoBitrate) -> Result<Vec<LiveChannel>, DemoError> {
    let mut out = Vec::new();
    for def in channels::channels() {
        let media = media::media(def.media, bitrate).map_err(|e| DemoError::Media(e.to_string()))?;
        let service_ref: ServiceRef = def
            .reference
            .parse()
            .map_err(|e| DemoError::Media(format!("{}: {e}", def.reference)))?;
        let ts = Arc::new(mux_channel(def, &service_ref, &media));
        let scrambled = def
            .whitelisted
            .then(|| Feed::new(Arc::new(ts.scrambled(u64::from(service_ref.service_id())))));
        out.push(LiveChannel {
            def,
            service_ref,
            clear: Feed::new(ts),
            scrambled,
            stream_requests: AtomicU64::new(0),
            relay_requests: AtomicU64::new(0),
        });
    }
    Ok(out)
}

fn mux_channel(def: &DemoChannel, service_ref: &ServiceRef, media: &Media) -> ts::TsLoop {
    let mut tracks = Vec::new();
    if let Some(video) = &media.video {
        tracks.push(Track {
            pid: def.video_pid,
            language: None,
            stream: video,
        });
    }
    if let Some(mp2) = &media.mp2 {
        tracks.push(Track {
            pid: def.mp2_pid,
            language: Some("deu"),
            stream: mp2,
        });
    }
    if let Some(ac3) = &media.ac3 {
        tracks.push(Track {
            pid: def.ac3_pid,
            language: Some("deu"),
            stream: ac3,
        });
    }
    let pcr_pid = match (&media.video, &media.mp2) {
        (Some(_), _) => def.video_pid,
        (None, Some(_)) => def.mp2_pid,
        (None, None) => def.ac3_pid,
    };
    let program = Program {
        transport_stream_id: 0x3FB,
        program_number: service_ref.service_id(),
        pmt_pid: def.pmt_pid,
        pcr_pid,
        tracks,
    };
    debug_assert!(def.media != MediaKind::Radio || media.video.is_none());
    mux_loop(&program, LOOP_90K)
}
