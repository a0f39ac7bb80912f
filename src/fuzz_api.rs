//! Fuzz target bodies: every parser of outside bytes, each checked against a property (a
//! round trip where one exists), not only for panics. The `cargo-fuzz` targets in `fuzz/` call
//! these on nightly; the tests below drive the same bodies on stable over the seeds and a
//! bounded random loop, so CI runs them without nightly. Not part of the product's API.

use std::path::Path;
use std::time::{Duration, SystemTime};

use bytes::Bytes;

use crate::catalog::{ChannelIds, Guide, GuideWindow, render_m3u, render_xmltv};
use crate::model::{Channel, RawRef, ServiceRef};
use crate::mpegts::{self, PACKET, Packetizer};
use crate::pipeline::SegmentPlan;
use crate::session::{HlsState, Segment};

/// A fuzz target: takes any bytes, panics when a property fails.
pub type Target = fn(&[u8]);

/// The targets by name, for drivers that run them all.
pub const TARGETS: &[(&str, Target)] = &[
    ("ts", ts),
    ("service_ref", service_ref),
    ("config", config),
    ("template", template),
    ("openwebif", openwebif),
    ("playlists", playlists),
    ("requests", requests),
];

/// Reads structured values off the fuzzer's bytes; runs dry as zeros.
struct Input<'a>(&'a [u8]);

impl<'a> Input<'a> {
    fn u8(&mut self) -> u8 {
        let (first, rest) = self.0.split_first().map_or((0, &[][..]), |(b, r)| (*b, r));
        self.0 = rest;
        first
    }

    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }

    fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }

    fn i64(&mut self) -> i64 {
        i64::from(self.u32()) | (i64::from(self.u32()) << 32)
    }

    fn bytes(&mut self, n: usize) -> &'a [u8] {
        let (head, rest) = self.0.split_at(n.min(self.0.len()));
        self.0 = rest;
        head
    }

    /// A string of up to 255 bytes (lossy UTF-8).
    fn text(&mut self) -> String {
        let n = usize::from(self.u8());
        String::from_utf8_lossy(self.bytes(n)).into_owned()
    }

    fn rest(&mut self) -> &'a [u8] {
        self.bytes(usize::MAX)
    }
}

/// TS: packet accessors, PMT build→parse, PES PTS, the Packetizer, the HLS segmenter and the
/// TS join cache, fed with the input cut into buffers of fuzzer-chosen sizes.
pub fn ts(data: &[u8]) {
    let mut input = Input(data);
    let cuts: Vec<usize> = (0..4).map(|_| usize::from(input.u16() % 600)).collect();
    let mode = input.u8();
    let stream = input.rest();

    // Packet accessors never panic on any packet, and rewriting the counter touches nothing else.
    for chunk in stream.chunks_exact(PACKET) {
        let mut packet = [0u8; PACKET];
        packet.copy_from_slice(chunk);
        let _ = (
            mpegts::pid(&packet),
            mpegts::random_access(&packet),
            mpegts::pat_pmt_pid(&packet),
        );
        if let Some(section) = mpegts::section(&packet) {
            let _ = mpegts::pmt_streams(section);
        }
        if let Some(pts) = mpegts::pes_pts(&packet) {
            assert!(pts <= mpegts::PTS_MASK);
        }
        for stream_type in [0x02, 0x1B, 0x24, 0x0F] {
            let _ = mpegts::starts_decodable(stream_type, &packet);
        }
        let mut rewritten = packet;
        mpegts::set_continuity(&mut rewritten, mode);
        assert_eq!(mpegts::continuity(&rewritten), mode & 0x0F);
        assert_eq!(rewritten[..3], packet[..3]);
        assert_eq!(rewritten[4..], packet[4..]);
        assert_eq!(rewritten[3] & 0xF0, packet[3] & 0xF0);
    }
    pmt_round_trip(stream);
    let a = u64::from_le_bytes(stream.get(..8).and_then(|b| b.try_into().ok()).unwrap_or_default()) & mpegts::PTS_MASK;
    let d = (u64::from(mode) * 1_000_003) & mpegts::PTS_MASK;
    assert_eq!(mpegts::pts_diff((a + d) & mpegts::PTS_MASK, a), d);

    // The same stream in buffers cut anywhere gives the same whole packets.
    let buffers = cut(stream, &cuts);
    let mut packets = Packetizer::default();
    let mut joined = Vec::new();
    for buffer in &buffers {
        let (head, rest) = packets.split(buffer);
        assert_eq!(rest.len() % PACKET, 0);
        joined.extend(head.iter().flatten());
        joined.extend_from_slice(rest);
    }
    let whole = stream.len() / PACKET * PACKET;
    assert_eq!(joined, stream[..whole]);
    let synced: Vec<u8> = stream[..whole]
        .chunks_exact(PACKET)
        .filter(|p| p[0] == mpegts::SYNC)
        .flatten()
        .copied()
        .collect();

    // The join cache hands out the synced packets in order, unchanged, holding back only what
    // comes before the start (a key frame): never a table, nothing after the first packet out
    // that is not a table. Its preamble is whole packets.
    let mut cache = crate::session::TsCache::default();
    let mut out = Vec::new();
    for buffer in &buffers {
        out.extend(cache.push(buffer));
        let preamble = cache.preamble();
        assert!(preamble.iter().all(|b| b.len() % PACKET == 0));
    }
    out.extend(cache.flush());
    cache_holds_back_only_the_start(&synced, &out.concat());

    // Segments: whole packets, each starting with PAT then PMT, the tables' counters running on
    // from segment to segment; also when the clocks are moved to continue an earlier
    // connection's media (at a fuzzer-chosen time).
    let plan = SegmentPlan::new(
        vec![Duration::from_millis(500); 2],
        Duration::from_secs(1 + u64::from(mode % 4)),
    );
    let continue_at = (mode & 0x80 != 0).then_some(a);
    let mut segmenter = crate::session::Segmenter::new(plan, 0, continue_at);
    let mut pieces = Vec::new();
    for buffer in &buffers {
        pieces.extend(segmenter.push(buffer));
    }
    let mut pat_counter = None::<u8>;
    for piece in &pieces {
        assert_eq!(piece.bytes.len() % PACKET, 0);
        assert!(piece.bytes.len() >= 2 * PACKET);
        assert_eq!(mpegts::pid(&piece.bytes), 0);
        for packet in piece.bytes.chunks_exact(PACKET) {
            assert_eq!(packet[0], mpegts::SYNC);
            if mpegts::pid(packet) == 0 {
                let counter = mpegts::continuity(packet);
                if let Some(previous) = pat_counter {
                    assert_eq!(counter, (previous + 1) & 0x0F, "PAT counters run on across segments");
                }
                pat_counter = Some(counter);
            }
        }
    }
}

/// `out` is `synced` less packets held back before the start: matched from the end (the
/// latest embedding), every packet left out is a media packet before the first media packet
/// sent. Tables are PID 0 and the PMT PID the latest PAT names, as the cache reads them.
fn cache_holds_back_only_the_start(synced: &[u8], out: &[u8]) {
    let input: Vec<&[u8]> = synced.chunks_exact(PACKET).collect();
    let output: Vec<&[u8]> = out.chunks_exact(PACKET).collect();
    assert_eq!(out.len() % PACKET, 0);
    let mut pmt_pid = None;
    let table: Vec<bool> = input
        .iter()
        .map(|p| {
            let pid = mpegts::pid(p);
            if pid == 0 && mpegts::unit_start(p) {
                pmt_pid = mpegts::pat_pmt_pid(p).or(pmt_pid);
            }
            pid == 0 || Some(pid) == pmt_pid
        })
        .collect();
    let mut sent = vec![false; input.len()];
    let mut at = input.len();
    for packet in output.iter().rev() {
        at = input[..at]
            .iter()
            .rposition(|p| p == packet)
            .unwrap_or_else(|| panic!("a packet out of the cache is one of the input's, in order"));
        sent[at] = true;
    }
    let first_media = (0..input.len()).find(|i| sent[*i] && !table[*i]).unwrap_or(input.len());
    for (i, was_sent) in sent.iter().enumerate() {
        if !was_sent {
            assert!(!table[i], "packet {i} of {}: a table is never held back", input.len());
            assert!(i < first_media, "packet {i}: nothing is held back once media flows");
        }
    }
}

/// A PMT section built from fuzzer-chosen streams parses back to them.
fn pmt_round_trip(data: &[u8]) {
    let mut input = Input(data);
    let count = usize::from(input.u8() % 12);
    let mut streams = Vec::new();
    let mut body = Vec::new();
    for _ in 0..count {
        let stream_type = input.u8();
        let pid = input.u16() & 0x1FFF;
        let language = (input.u8() & 1 == 1).then(|| {
            let code: Vec<u8> = input
                .bytes(3)
                .iter()
                .map(|b| b'a' + b % 26)
                .chain([b'x'; 3])
                .take(3)
                .collect();
            String::from_utf8(code).unwrap_or_default()
        });
        let descriptors: Vec<u8> = match &language {
            Some(code) => [&[0x0A, 4][..], code.as_bytes(), &[0]].concat(),
            None => Vec::new(),
        };
        body.extend_from_slice(&[
            stream_type,
            0xE0 | (pid >> 8) as u8,
            pid as u8,
            0xF0,
            descriptors.len() as u8,
        ]);
        body.extend_from_slice(&descriptors);
        streams.push(mpegts::PmtStream {
            pid,
            stream_type,
            language,
        });
    }
    let length = 9 + body.len() + 4;
    let mut section = vec![
        0x02,
        0xB0 | (length >> 8) as u8,
        length as u8,
        0,
        1,
        0xC1,
        0,
        0,
        0xE1,
        0x00,
        0xF0,
        0,
    ];
    section.extend_from_slice(&body);
    section.extend_from_slice(&[0; 4]);
    assert_eq!(mpegts::pmt_streams(&section), Some(streams));
}

/// `data` in buffers whose lengths repeat `cuts` (a zero length is skipped; all zero: one
/// buffer).
fn cut<'a>(data: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    let mut rest = data;
    let lengths: Vec<usize> = cuts.iter().copied().filter(|n| *n > 0).collect();
    for length in lengths.iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let (head, tail) = rest.split_at((*length).min(rest.len()));
        out.push(head);
        rest = tail;
    }
    if !rest.is_empty() {
        out.push(rest);
    }
    out
}

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
            let again =
                crate::config::resolve(Some((path, &rendered)), &crate::config::no_env, &[], Default::default())
                    .unwrap_or_else(|e| panic!("the effective config loads again: {e}\n{rendered}"));
            if rendered.contains("\"***\"") {
                return; // a masked secret is not the secret: it need not load again
            }
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

/// Playlists: the HLS media and master playlists parse with `m3u8-rs` to what was rendered
/// (sequence numbers, durations, URIs, discontinuities, the end); the M3U keeps two lines per
/// channel whatever the names; the XMLTV parses as XML and keeps names and titles.
pub fn playlists(data: &[u8]) {
    let mut input = Input(data);
    hls(&mut input);
    let channels: Vec<Channel> = (0..usize::from(input.u8() % 6))
        .map(|i| Channel {
            number: u32::try_from(i).unwrap_or_default() + 1,
            name: input.text(),
            service_ref: format!(
                "1:0:{:X}:{:X}:3FB:1:C00000:0:0:0:",
                1 + u32::from(input.u8()),
                input.u16()
            )
            .parse()
            .expect("a valid reference"),
            bouquet: input.text(),
        })
        .collect();
    let m3u = render_m3u(&channels, "http://tv.local:8080", &|path| path.to_owned());
    assert_eq!(m3u.lines().count(), 1 + 2 * channels.len(), "{m3u}");
    for (c, pair) in channels.iter().zip(m3u.lines().skip(1).collect::<Vec<_>>().chunks(2)) {
        assert!(pair[0].starts_with("#EXTINF:-1 "));
        assert_eq!(pair[1], format!("http://tv.local:8080/stream/{}", c.service_ref));
    }

    let now = 1_700_000_000 + i64::from(input.u32());
    let mut guide = Guide::default();
    if let Some(first) = channels.first() {
        let events = (0..usize::from(input.u8() % 8))
            .map(|i| crate::upstream::EpgEvent {
                id: i as u64,
                service_ref: first.service_ref.to_string(),
                start: now + i64::from(input.u16() as i16) * 60,
                duration: input.i64(),
                title: input.text(),
                short_description: input.text(),
                long_description: input.text(),
            })
            .collect();
        let list = crate::catalog::programmes(&first.service_ref, events, GuideWindow::days_from(now, 7));
        guide.set(first.service_ref.clone(), list);
    }
    let ids = if input.u8() & 1 == 0 {
        ChannelIds::TvgId
    } else {
        ChannelIds::Number
    };
    let xml = render_xmltv(&channels, &guide, "http://tv.local:8080", ids, now);
    let options = roxmltree::ParsingOptions {
        allow_dtd: true,
        ..Default::default()
    };
    let doc =
        roxmltree::Document::parse_with_options(&xml, options).unwrap_or_else(|e| panic!("XMLTV parses: {e}\n{xml}"));
    let names: Vec<String> = doc
        .descendants()
        .filter(|n| n.has_tag_name("channel"))
        .map(|n| {
            n.children()
                .find(|c| c.has_tag_name("display-name"))
                .and_then(|c| c.text())
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    let expected: Vec<String> = channels.iter().map(|c| xml_text(&c.name)).collect();
    assert_eq!(names, expected);
    for c in &channels {
        let programmes = doc
            .descendants()
            .filter(|n| n.has_tag_name("programme") && n.attribute("channel").is_some())
            .filter(|n| {
                let id = match ids {
                    ChannelIds::TvgId => c.tvg_id(),
                    ChannelIds::Number => format!("{}.xg2g", c.number),
                };
                n.attribute("channel") == Some(id.as_str())
            })
            .count();
        assert!(programmes > 0, "every channel has programmes");
    }
}

/// What XML gives back for text the XMLTV renderer escaped: the characters XML can carry.
fn xml_text(s: &str) -> String {
    s.chars()
        .filter(|c| matches!(c, '\n' | '\t') || !(c.is_control() || matches!(c, '\u{FFFE}' | '\u{FFFF}')))
        .collect()
}

fn hls(input: &mut Input<'_>) {
    let window = usize::from(input.u8() % 12);
    let mut state = HlsState::new(window, Duration::from_millis(u64::from(input.u16())));
    let mut sequence = u64::from(input.u32());
    let count = usize::from(input.u8() % 40);
    let started = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    for i in 0..count {
        let flags = input.u8();
        state.push(Segment {
            sequence,
            duration: f64::from(input.u16()) / 1000.0,
            bytes: Bytes::from(vec![0u8; usize::from(flags) * 7]),
            started_at: started + Duration::from_millis(i as u64 * 500),
            discontinuity: flags & 1 == 1,
        });
        sequence += 1 + u64::from(flags >> 7);
    }
    if input.u8() & 1 == 1 {
        state.end();
    }
    let length = usize::from(input.u8() % 32);
    let query: String = input
        .bytes(length)
        .iter()
        .map(|b| char::from(b"abcdefghijklmnopqrstuvwxyz0123456789-_=&.~"[usize::from(*b) % 42]))
        .collect();
    let query = (!query.is_empty()).then_some(query);
    let dated = input.u8() & 1 == 1;
    let text = state.media_playlist(query.as_deref(), dated);
    let playlist = m3u8_rs::parse_media_playlist_res(text.as_bytes())
        .unwrap_or_else(|e| panic!("the media playlist parses: {e:?}\n{text}"));
    let stored: Vec<std::sync::Arc<Segment>> = (0..=sequence)
        .rev()
        .take(200)
        .filter_map(|s| state.segment(s))
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    let shown = &stored[stored.len().saturating_sub(window.max(6))..];
    assert_eq!(playlist.segments.len(), shown.len(), "{text}");
    assert_eq!(playlist.media_sequence, shown.first().map_or(0, |s| s.sequence));
    assert_eq!(playlist.end_list, state.is_ended());
    for (parsed, segment) in playlist.segments.iter().zip(shown) {
        let suffix = query.as_ref().map(|q| format!("?{q}")).unwrap_or_default();
        assert_eq!(parsed.uri, format!("{}.ts{suffix}", segment.sequence));
        assert!((f64::from(parsed.duration) - segment.duration).abs() < 0.002);
        assert_eq!(parsed.discontinuity, segment.discontinuity);
        assert!(parsed.duration.round() as u64 <= playlist.target_duration, "{text}");
    }
    let master = state.master_playlist("media.m3u8");
    let parsed = m3u8_rs::parse_master_playlist_res(master.as_bytes())
        .unwrap_or_else(|e| panic!("the master playlist parses: {e:?}\n{master}"));
    assert_eq!(parsed.variants.len(), 1);
    assert_eq!(parsed.variants[0].uri, "media.m3u8");
    assert!(parsed.variants[0].bandwidth >= 1);
}

/// What clients and the LAN send: HDHomeRun discovery and control frames, SSDP `M-SEARCH`
/// datagrams, signed-URL queries and forwarding headers. Frames are sealed with a valid CRC so
/// that the field parsers are reached; a control request's reply parses back to its name; an
/// SSDP answer is a complete HTTP response; a signature (URL or sign-in cookie) holds for what
/// it signed until it expires, and no fuzzed one is granted; a device-token file that loads
/// writes back to the same records; a peer that is not a trusted proxy is the client,
/// whatever its headers say.
pub fn requests(data: &[u8]) {
    use crate::hdhr;
    let mut input = Input(data);
    let kind = input.u8();
    let rest = input.rest();
    match kind % 4 {
        0 => {
            let _ = hdhr::Frame::parse(rest).map(|(_, used)| assert!(used <= rest.len()));
            let payload = &rest[..rest.len().min(hdhr::MAX_FRAME)];
            let sealed = hdhr::seal(u16::from(kind), payload);
            let (frame, used) = hdhr::Frame::parse(&sealed).expect("a sealed frame parses");
            assert_eq!(
                (frame.kind, frame.payload, used),
                (u16::from(kind), payload, sealed.len())
            );
            if let Ok(request) = hdhr::DiscoverRequest::parse(&frame) {
                let _ = request.wants(0x1043_9EFD);
            }
            if let Ok(request) = hdhr::GetSetRequest::parse(&frame) {
                let value = request.value.clone().unwrap_or_default();
                let reply = hdhr::getset_reply(&request.name, Ok(&value));
                let (frame, _) = hdhr::Frame::parse(&reply).expect("a reply parses");
                assert_eq!(frame.kind, hdhr::TYPE_GETSET_RPY);
                let back = hdhr::GetSetRequest::parse(&frame).expect("a reply's fields parse");
                assert_eq!((back.name, back.value), (request.name, Some(value)));
            }
        }
        1 => {
            let udn = "uuid:10439efd-0000-4000-8000-000000000000";
            if let Some(target) = hdhr::parse_ssdp_search(rest, udn) {
                let answers = hdhr::ssdp_answers(&target, udn);
                assert!(!answers.is_empty());
                for answer in answers {
                    let text = hdhr::render_answer(&answer, "http://tv.local:8080/device.xml");
                    let mut headers = [httparse::EMPTY_HEADER; 16];
                    let mut response = httparse::Response::new(&mut headers);
                    assert!(
                        matches!(response.parse(text.as_bytes()), Ok(httparse::Status::Complete(n)) if n == text.len())
                    );
                }
            }
        }
        2 => {
            let text = String::from_utf8_lossy(rest);
            let (path, query) = text.split_once('?').unwrap_or((&text, ""));
            let keys = crate::auth::KeySet::parse(["k1:0123456789abcdef0123456789abcdef"]).expect("a valid key");
            let now = 1_800_000_000;
            assert!(
                crate::auth::verify(&keys, path, query, now).is_err(),
                "a fuzzed query is not granted"
            );
            let scope = crate::auth::Scope::of_path(path);
            let signed = crate::auth::sign(keys.current(), &scope, now + 60);
            let grant = crate::auth::verify(&keys, path, &signed, now).expect("its own signature holds");
            assert_eq!((grant.scope, grant.expires), (scope, now + 60));
            assert!(
                crate::auth::verify(&keys, path, &signed, now + 60).is_err(),
                "until it expires"
            );
            let _ = crate::auth::KeySet::parse(crate::auth::keys::file_entries(&text));
            // A sign-in cookie: no fuzzed one passes; a real one holds until it expires and
            // passes for no URL signature, nor a URL signature for one.
            assert!(crate::auth::verify_session(&keys, &text, now).is_err());
            let cookie = crate::auth::sign_session(keys.current(), now + 60);
            assert_eq!(crate::auth::verify_session(&keys, &cookie, now), Ok(now + 60));
            assert!(crate::auth::verify_session(&keys, &signed, now).is_err());
            assert!(crate::auth::verify(&keys, path, &cookie, now).is_err());
            // Device tokens: a fuzzed token is no stored one; a token file that loads writes
            // back to text that loads to the same records.
            let _ = crate::auth::tokens::from_query(query);
            let set = crate::auth::tokens::TokenSet::parse(&text);
            if let Ok(set) = &set {
                let again = crate::auth::tokens::TokenSet::parse(&set.to_json()).expect("written tokens load");
                assert_eq!(again.records(), set.records());
                assert_eq!(set.index().lookup(&text), None);
            }
        }
        _ => {
            let text = String::from_utf8_lossy(rest);
            let mut parts = text.split('\n');
            let proxies: Vec<String> = parts.next().unwrap_or_default().split(' ').map(str::to_owned).collect();
            let proxies = crate::http::TrustedProxies::parse(&proxies).unwrap_or_default();
            let xff: Vec<&str> = parts.next().map(|l| l.split('|').collect()).unwrap_or_default();
            let forwarded: Vec<&str> = parts.collect();
            for peer in ["10.0.0.1", "192.0.2.7", "::ffff:10.0.0.1", "2001:db8::1"] {
                let peer: std::net::IpAddr = peer.parse().expect("an address");
                let _ = proxies.client_ip(peer, &xff, &forwarded);
                let untrusted = crate::http::TrustedProxies::default().client_ip(peer, &xff, &forwarded);
                assert_eq!(
                    untrusted,
                    peer.to_canonical(),
                    "headers of an untrusted peer are ignored"
                );
            }
        }
    }
}

/// Seed inputs of each target: real shapes the fuzzers start from (also written to
/// `fuzz/corpus/<target>/` by `scripts/fuzz`).
pub fn seeds(target: &str) -> Vec<Vec<u8>> {
    match target {
        "ts" => vec![[&[188, 0, 0, 1, 50, 0, 7, 0, 0][..], &seed_stream()].concat()],
        "service_ref" => ["1:0:19:283D:3FB:1:C00000:0:0:0:", "1:64:1:0:0:0:0:0:0:0:", "1:0:1:6f0b:44d:1:c00000:0:0:0"]
            .map(|s| s.as_bytes().to_vec())
            .to_vec(),
        "config" => vec![
            crate::config::render_example().into_bytes(),
            b"[receiver]\nbase_url = \"http://192.168.1.20\"\nusername = \"root\"\n\n[hls]\nwindow = 8\n".to_vec(),
        ],
        "template" => crate::pipeline::EMBEDDED.iter().map(|(_, text)| text.as_bytes().to_vec()).collect(),
        "openwebif" => vec![
            [&[0][..], br#"{"result": true, "events": [{"id": 32845, "title": "Tagesschau\u008aHeute", "shortdesc": "News", "longdesc": "Die Nachrichten.", "begin_timestamp": 1700000000, "duration_sec": 900, "sref": "1:0:19:283D:3FB:1:C00000:0:0:0:"}]}"#].concat(),
            [&[1][..], b"<?xml version=\"1.0\"?><e2eventlist><e2event><e2eventid>1</e2eventid><e2eventstart>1700000000</e2eventstart><e2eventduration>900</e2eventduration><e2eventtitle>S\xfcd</e2eventtitle><e2eventservicereference>1:0:19:283D:3FB:1:C00000:0:0:0:</e2eventservicereference></e2event></e2eventlist>"].concat(),
            [&[2][..], br#"{"bouquets": [["1:7:1:0:0:0:0:0:0:0:FROM BOUQUET \"userbouquet.favourites.tv\" ORDER BY bouquet", "Favourites (TV)"]]}"#].concat(),
            [&[3][..], br#"{"services": [{"servicereference": "1:64:1:0:0:0:0:0:0:0:", "servicename": "News"}, {"servicereference": "1:0:19:283D:3FB:1:C00000:0:0:0:", "servicename": null}]}"#].concat(),
            [&[4][..], b"# relay\n1:0:19:283D:3FB:1:C00000:0:0:0\n1:0:19:283D:3FB:1:C00000:0:0:0:\n\n".as_slice()].concat(),
        ],
        "playlists" => vec![(0u8..=255).cycle().take(600).collect()],
        "requests" => vec![
            // hdhomerun_config's discover (unsealed), and a get of /sys/model (sealed again).
            [&[0][..], &[0, 2, 0, 12, 1, 4, 255, 255, 255, 255, 2, 4, 255, 255, 255, 255, 0x73, 0xCC, 0x7D, 0x8F]].concat(),
            [&[4][..], &[3, 11][..], b"/sys/model\0", &[4, 4], b"abc\0"].concat(),
            [&[1][..], b"M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nMAN: \"ssdp:discover\"\r\nMX: 1\r\nST: ssdp:all\r\n\r\n"].concat(),
            [&[2][..], b"/hls/1:0:19:283D:3FB:1:C00000:0:0:0:/aac/index.m3u8?exp=1800000060&kid=k1&sig=AAAA&token=xg2g_dev_AAAA".as_slice()].concat(),
            [&[2][..], br#"{"version": 1, "tokens": [{"id": "0011223344556677", "name": "Plex", "sha256": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", "created": 1800000000, "last_used": null}]}"#.as_slice()].concat(),
            [&[3][..], b"10.0.0.0/8 ::1\n203.0.113.9, 10.0.0.2|10.0.0.3\nfor=\"[2001:db8::7]:4711\";proto=https".as_slice()].concat(),
        ],
        _ => Vec::new(),
    }
}

/// PAT, PMT (H.264 and MP2) and a few seconds of PES starts, key frames every half second.
fn seed_stream() -> Vec<u8> {
    let mut out = Vec::new();
    let mut packet = |pid: u16, start: bool, adaptation: Option<u8>, body: &[u8], counter: u8| {
        let mut p = [0xFF; PACKET];
        p[..3].copy_from_slice(&[mpegts::SYNC, (u8::from(start) << 6) | (pid >> 8) as u8, pid as u8]);
        let at = match adaptation {
            Some(flags) => {
                p[3] = 0x30 | counter;
                p[4] = 1;
                p[5] = flags;
                6
            }
            None => {
                p[3] = 0x10 | counter;
                4
            }
        };
        p[at..at + body.len()].copy_from_slice(body);
        out.extend_from_slice(&p);
    };
    for i in 0u8..24 {
        let pts = 900_000 + u64::from(i) * 3_600 * 5;
        let header = |stream: u8| {
            [
                0,
                0,
                1,
                stream,
                0,
                0,
                0x80,
                0x80,
                5,
                0x21 | ((pts >> 29) & 0x0E) as u8,
                (pts >> 22) as u8,
                0x01 | ((pts >> 14) & 0xFE) as u8,
                (pts >> 7) as u8,
                0x01 | ((pts << 1) & 0xFE) as u8,
            ]
        };
        if i % 6 == 0 {
            packet(
                0,
                true,
                None,
                &[0, 0, 0xB0, 0x0D, 0, 1, 0xC1, 0, 0, 0, 1, 0xF0, 0x00, 0, 0, 0, 0],
                (i / 6) & 0x0F,
            );
            let pmt = [
                0, 0x02, 0xB0, 0x1D, 0, 1, 0xC1, 0, 0, 0xE1, 0x00, 0xF0, 0, 0x1B, 0xE1, 0x00, 0xF0, 0, 0x03, 0xE1,
                0x01, 0xF0, 6, 0x0A, 4, b'd', b'e', b'u', 0, 0, 0, 0, 0,
            ];
            packet(0x1000, true, None, &pmt, (i / 6) & 0x0F);
        }
        let key = i % 3 == 0;
        let video = [&header(0xE0)[..], &[0, 0, 0, 1, 0x67, 0, 0, 0, 1, 0x65]].concat();
        packet(0x100, true, key.then_some(0x40), &video, i & 0x0F);
        packet(0x100, false, None, &[0x11; 16], (i + 1) & 0x0F);
        packet(0x101, true, None, &header(0xC0), i & 0x0F);
    }
    out
}

#[cfg(test)]
mod tests {
    //! The fuzz targets on stable, for CI: each seed, then random mutations of the seeds for a
    //! bounded time (`XG2G_FUZZ_SECS`, default 2 s per target) from a fixed seed
    //! (`XG2G_FUZZ_SEED`). A failure prints the input in hex, to add to the seeds once fixed.

    use std::time::Instant;

    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use super::*;

    fn mutate(rng: &mut StdRng, input: &mut Vec<u8>, seeds: &[Vec<u8>]) {
        for _ in 0..rng.random_range(1..=8) {
            let at = rng.random_range(0..=input.len());
            match rng.random_range(0..6) {
                0 if at < input.len() => input[at] ^= 1 << rng.random_range(0..8),
                1 if at < input.len() => input[at] = rng.random(),
                2 => input.insert(at, rng.random()),
                3 if at < input.len() => {
                    input.remove(at);
                }
                4 => input.truncate(at),
                _ => {
                    // Splice a piece of another seed in.
                    let other = &seeds[rng.random_range(0..seeds.len())];
                    let from = rng.random_range(0..=other.len());
                    let to = rng.random_range(from..=other.len().min(from + 64));
                    input.splice(at..at, other[from..to].iter().copied());
                }
            }
        }
    }

    fn drive(name: &str, target: fn(&[u8])) {
        let secs: f64 = std::env::var("XG2G_FUZZ_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(2.0);
        let seed: u64 = std::env::var("XG2G_FUZZ_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(15);
        let seeds = seeds(name);
        assert!(!seeds.is_empty());
        let run = |input: &[u8]| {
            if std::panic::catch_unwind(|| target(input)).is_err() {
                let hex: String = input.iter().map(|b| format!("{b:02x}")).collect();
                panic!("target {name} failed on input {hex}");
            }
        };
        for s in &seeds {
            run(s);
        }
        let mut rng = StdRng::seed_from_u64(seed);
        let deadline = Instant::now() + Duration::from_secs_f64(secs);
        let mut runs = 0u64;
        while Instant::now() < deadline {
            let mut input = seeds[rng.random_range(0..seeds.len())].clone();
            mutate(&mut rng, &mut input, &seeds);
            run(&input);
            runs += 1;
        }
        eprintln!("fuzz {name}: {runs} inputs in {secs} s (seed {seed})");
    }

    #[test]
    fn ts() {
        drive("ts", super::ts);
    }

    #[test]
    fn service_ref() {
        drive("service_ref", super::service_ref);
    }

    #[test]
    fn config() {
        drive("config", super::config);
    }

    #[test]
    fn template() {
        drive("template", super::template);
    }

    #[test]
    fn openwebif() {
        drive("openwebif", super::openwebif);
    }

    #[test]
    fn playlists() {
        drive("playlists", super::playlists);
    }

    #[test]
    fn requests() {
        drive("requests", super::requests);
    }

    /// With `XG2G_FUZZ_SEEDS_DIR` set, writes each target's seeds to `<dir>/<target>/` (for
    /// `scripts/fuzz`); otherwise does nothing.
    #[test]
    fn write_seeds() {
        let Some(dir) = std::env::var_os("XG2G_FUZZ_SEEDS_DIR") else {
            return;
        };
        for (name, _) in TARGETS {
            let dir = Path::new(&dir).join(name);
            std::fs::create_dir_all(&dir).unwrap();
            for (i, seed) in seeds(name).iter().enumerate() {
                std::fs::write(dir.join(format!("seed-{i}")), seed).unwrap();
            }
        }
    }

    /// Inputs cargo-fuzz found, each once a failure (see the commit that adds it).
    #[test]
    fn regressions() {
        // Empty: every cut length zero made the harness's `cut` loop forever (a timeout).
        super::ts(&[]);
        assert_eq!(cut(b"abc", &[0, 0]), [&b"abc"[..]]);
        assert_eq!(cut(b"abcde", &[0, 2]), [&b"ab"[..], b"cd", b"e"]);
    }

    /// The seeds meet the properties and reach the interesting paths: segments are cut, the
    /// join cache has a GOP, the guide has programmes.
    #[test]
    fn seeds_reach_the_interesting_paths() {
        let stream = seed_stream();
        let plan = SegmentPlan::new(vec![Duration::from_millis(500); 2], Duration::from_secs(1));
        let mut segmenter = crate::session::Segmenter::new(plan, 0, None);
        assert!(segmenter.push(&stream).len() >= 2);
        let mut cache = crate::session::TsCache::default();
        cache.push(&stream);
        cache.flush();
        assert!(cache.preamble().len() >= 3);
        let events = crate::upstream::parse_epg_json(&seeds("openwebif")[0][1..]).unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].title, "Tagesschau\nHeute");
        let tokens = String::from_utf8(seeds("requests")[4][1..].to_vec()).unwrap();
        assert_eq!(
            crate::auth::tokens::TokenSet::parse(&tokens).unwrap().records().len(),
            1
        );
    }
}
