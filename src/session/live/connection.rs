//! One connection of a session to the receiver: locate the port, build the GStreamer graph, play
//! it, and turn its output and bus messages into segments, chunks and outcomes.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{Fanout, Join, Outcome, Session, TICK};
use crate::pipeline::{
    BuildSpec, FailureKind, Fragment, GraphEvent, GraphFailure, MuxedMedia, SegmentFormat, StartError,
};
use crate::session::SessionError;
use crate::session::graph::Graph;
use crate::session::hls::{VideoInfo, avc1_codec};
use crate::session::lockstep::Lockstep;
use crate::session::segmenter::{Piece, Segmenter, media_end};

impl Session {
    /// Runs one connection to the receiver until it ends, fails, stalls or nobody watches.
    pub(super) async fn connect(
        &self,
        fan: &mut Fanout,
        joins: &mut mpsc::Receiver<Join>,
        shutdown: &CancellationToken,
        requested: Instant,
    ) -> Outcome {
        // Until the first media, connects belong to the session start; later ones to the session.
        // Never entered, so it ends when dropped, after the pipeline is set to Playing.
        let build = match fan.start_trace.as_ref().filter(|s| !s.is_none()) {
            Some(start) => tracing::info_span!(parent: start, "pipeline.build"),
            None => tracing::info_span!("pipeline.build"),
        };
        let source_url = match self.start.locator.locate().await {
            Ok(url) => url,
            Err(reason) => return Outcome::Failed(reason),
        };
        let plan = self.settings.hls_plan();
        let spec = BuildSpec {
            template: &self.start.template,
            source_url: &source_url,
            authorization: self.start.authorization.as_deref(),
            encoder: self.start.encoder.as_ref(),
            audio_languages: &self.settings.audio_languages,
            keyint: 50,
            // souphttpsrc's own read timeout is a backstop, beyond the session's own checks
            // (a stall after `stall_timeout`, a start after `start_timeout`), which come first:
            // a receiver still tuning must not be cut off by the source.
            stall_timeout_s: (self.settings.stall_timeout.max(self.settings.start_timeout) + Duration::from_secs(1))
                .as_secs()
                .clamp(1, 3600) as u32,
            output: self.key.output,
            segment_plan: self.hls.is_some().then_some(&plan),
            continue_at: fan.fmp4_end,
        };
        fan.fmp4_offset = fan.fmp4_end;
        fan.lockstep = Lockstep::default();
        fan.fmp4_init.clear();
        let mut graph = match self.connector.start(&spec).await {
            Ok(graph) => graph,
            Err(StartError::Build(error)) => {
                let message = error.to_string();
                self.fail_waiting(
                    fan,
                    SessionError::Pipeline {
                        profile: self.key.profile.clone(),
                        message: message.clone(),
                    },
                );
                return Outcome::Refused(message);
            }
            Err(StartError::Start(failure)) => return self.failed(fan, failure),
        };
        drop(build);
        // HLS: segments are cut from each output's muxer output (a ladder has one per variant),
        // numbered on from the session's last.
        let mut segmenters: Vec<Segmenter> = Vec::new();
        let format = self.start.template.segment_format;
        if self.hls.is_some() {
            fan.hls_state.set_tracks(graph.outputs());
            fan.hls_state.set_format(format);
        }
        // fMP4: the muxers cut the fragments themselves, where the graph's clock says.
        if self.hls.is_some() && format == SegmentFormat::Ts {
            for track in 0..graph.outputs() {
                // A reconnect's clocks continue where the track's last published media ends.
                let last = fan
                    .hls_state
                    .last_sequence(track)
                    .and_then(|s| fan.hls_state.segment(track, s));
                segmenters.push(Segmenter::new(
                    plan.clone(),
                    fan.hls_state.next_sequence(track),
                    last.and_then(|s| media_end(&s.bytes)),
                ));
            }
        }
        let outcome = self
            .run_graph(fan, joins, shutdown, requested, graph.as_mut(), &mut segmenters)
            .await;
        // Followers that the drop left a segment behind their leader end it there.
        if let Some((leader, followers)) = segmenters.split_first_mut() {
            for (i, follower) in followers.iter_mut().enumerate() {
                if follower.next_index() < leader.next_index()
                    && let Some(piece) = follower.catch_up(leader.cuts())
                {
                    let media = fan.hls_state.needs_media(i + 1).then(|| graph.muxed_media(i + 1));
                    self.publish_segment(fan, i + 1, piece, media, requested);
                }
            }
        }
        // Set to Null on a blocking thread, bounded: a source stuck in a read must not hold a
        // runtime worker, nor this session's next connect.
        graph.stop().await;
        outcome
    }

    /// What a graph's failure means for the session: a refusal counts as one only before the
    /// first bytes, the encoder being full only at the start.
    fn failed(&self, fan: &Fanout, failure: GraphFailure) -> Outcome {
        let GraphFailure { kind, message } = failure;
        match kind {
            FailureKind::Unplayable => Outcome::Unplayable,
            FailureKind::Refused if !fan.delivered => Outcome::Refused(message),
            FailureKind::EncoderFull if !fan.delivered => Outcome::EncoderFull(message),
            FailureKind::Source => Outcome::SourceFailed(message),
            _ => Outcome::Failed(message),
        }
    }

    /// Plays one connection's graph until it ends, fails, stalls or the session idles.
    async fn run_graph(
        &self,
        fan: &mut Fanout,
        joins: &mut mpsc::Receiver<Join>,
        shutdown: &CancellationToken,
        requested: Instant,
        graph: &mut dyn Graph,
        segmenters: &mut [Segmenter],
    ) -> Outcome {
        let connected = Instant::now();
        // When this connection's pipeline last put out anything (read on the ticker, so the
        // per-buffer path only sets a flag), for a receiver that sends bytes which are no stream.
        let mut last_output: Option<Instant> = None;
        let mut output_since_tick = false;
        let mut idle_since: Option<Instant> = None;
        let mut ticker = tokio::time::interval(TICK);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return Outcome::Shutdown,
                join = joins.recv(), if fan.accepting => match join {
                    Some(join) if fan.delivered => { let _ = join.reply.send(Ok(self.subscribe(fan))); }
                    Some(join) => fan.waiting.push(join),
                    // The registry dropped this session: serve who is here, take nobody new.
                    None => fan.accepting = false,
                },
                event = std::future::poll_fn(|cx| graph.poll_next(cx)) => match event {
                    GraphEvent::Chunk { output, bytes } => {
                        output_since_tick = true;
                        match segmenters.split_first_mut() {
                            Some((leader, followers)) => {
                                // The first variant leads; the others cut where it did, and
                                // what they held waits for it.
                                let pieces: Vec<(usize, Piece)> = if output == 0 {
                                    let mut pieces: Vec<(usize, Piece)> =
                                        leader.push(&bytes).into_iter().map(|p| (0, p)).collect();
                                    for (i, follower) in followers.iter_mut().enumerate() {
                                        pieces.extend(follower.resume(leader.cuts()).into_iter().map(|p| (i + 1, p)));
                                    }
                                    pieces
                                } else {
                                    followers
                                        .get_mut(output - 1)
                                        .map(|f| f.push_following(&bytes, leader.cuts()))
                                        .unwrap_or_default()
                                        .into_iter()
                                        .map(|p| (output, p))
                                        .collect()
                                };
                                for (track, piece) in pieces {
                                    // The graph has linked every variant it will have by the
                                    // time the first segment is cut.
                                    if !fan.hls_state.knows_in_use() {
                                        fan.hls_state.set_in_use(graph.outputs_in_use());
                                    }
                                    let media = fan.hls_state.needs_media(track).then(|| graph.muxed_media(track));
                                    self.publish_segment(fan, track, piece, media, requested);
                                }
                            }
                            None if output == 0 && self.hls.is_none() => {
                                fan.received += 1;
                                for chunk in fan.cache.push(&bytes) {
                                    self.broadcast(fan, chunk, requested);
                                }
                            }
                            None => {}
                        }
                    }
                    GraphEvent::Fragment { output, fragment } => {
                        output_since_tick = true;
                        match fragment {
                            // A new init goes with the next fragment: those held before it were
                            // made with the one before.
                            Fragment::Init(bytes) => {
                                if fan.fmp4_init.len() <= output {
                                    fan.fmp4_init.resize(output + 1, None);
                                }
                                fan.fmp4_init[output] = Some(bytes);
                            }
                            Fragment::Media { bytes, start, duration } => {
                                fan.fmp4_end = fan.fmp4_end.max(fan.fmp4_offset + start + duration);
                                if !fan.hls_state.knows_in_use() {
                                    fan.hls_state.set_in_use(graph.outputs_in_use());
                                }
                                let init = fan.fmp4_init.get_mut(output).and_then(Option::take);
                                let fragment = (init, Piece { bytes, duration });
                                let due = fan.lockstep.push(output, fragment, fan.hls_state.in_use());
                                for (track, (init, piece)) in due {
                                    if let Some(init) = init {
                                        fan.hls_state.set_init(track, init);
                                    }
                                    let media = fan.hls_state.needs_media(track).then(|| graph.muxed_media(track));
                                    self.publish_segment(fan, track, piece, media, requested);
                                }
                            }
                        }
                    }
                    GraphEvent::Latency { encoder, seconds } => {
                        for seconds in seconds {
                            self.metrics.session.transcode_latency(self.mode, &encoder, seconds);
                        }
                    }
                    GraphEvent::Continuity => self.metrics.session.continuity_error(),
                    GraphEvent::Failed(failure) => return self.failed(fan, failure),
                    GraphEvent::Ended => return Outcome::Ended,
                },
                _ = ticker.tick() => {
                    if let Some(chunk) = fan.cache.flush() {
                        self.broadcast(fan, chunk, requested);
                    }
                    let silence = graph.source_silence();
                    let waited = connected.elapsed() > self.settings.start_timeout;
                    if !fan.delivered && waited {
                        // Not a byte: the receiver accepted and has nothing to send, which is
                        // how an Enigma2 box answers when every tuner is busy.
                        let error = if silence.is_some() {
                            SessionError::StartTimeout(self.settings.start_timeout)
                        } else {
                            SessionError::NoTuner(self.settings.start_timeout)
                        };
                        self.fail_waiting(fan, error);
                        return Outcome::Refused("no first bytes in time".into());
                    }
                    // A connection that has sent data stalls after `stall_timeout` of silence;
                    // one that has sent nothing yet (a reconnect) gets the start's time to tune.
                    // Bytes that make no output (garbage, not a transport stream) are silence
                    // too: counted from the last output, or from the connect before the first.
                    if std::mem::take(&mut output_since_tick) {
                        last_output = Some(Instant::now());
                    }
                    let no_output = graph.outputs() > 0
                        && last_output.map_or(waited, |at| at.elapsed() > self.settings.stall_timeout);
                    let stalled = match silence {
                        Some(silence) => silence > self.settings.stall_timeout || no_output,
                        None => waited,
                    };
                    if stalled {
                        return Outcome::Stalled;
                    }
                    let idle = if let Some((_, view)) = &self.hls {
                        fan.waiting.is_empty() && view.lease.idle() >= self.settings.hls_idle_timeout
                    } else if fan.tx.receiver_count() == 0 && fan.waiting.is_empty() {
                        let since = *idle_since.get_or_insert_with(Instant::now);
                        since.elapsed() >= self.settings.idle_grace
                    } else {
                        idle_since = None;
                        false
                    };
                    // Closing: refuse new joins first (the registry then starts a new session for
                    // them), then serve any that were already queued; only an empty queue ends it.
                    if idle && !self.take_last_joins(fan, joins) {
                        tracing::debug!("No clients left; closing.");
                        return Outcome::Idle;
                    }
                }
            }
        }
    }
}

/// What the master playlist says about H.264 video, from the muxer's negotiated caps.
pub(super) fn video_info(media: &MuxedMedia) -> Option<VideoInfo> {
    let video = media.video.as_ref()?;
    Some(VideoInfo {
        codec: avc1_codec(&video.profile, &video.level),
        width: video.width,
        height: video.height,
        frame_rate: video.frame_rate.unwrap_or(25.0),
    })
}
