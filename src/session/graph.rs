//! The seam between a session and its media graph: a session asks its [`Connector`] for a
//! [`Graph`] per connection and drives it by its events alone. In the product the graph is
//! `pipeline::LiveGraph`; the session's own tests script theirs.

use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::future::BoxFuture;

use crate::pipeline::{BuildSpec, GraphEvent, LiveGraph, MuxedMedia, StartError};

/// One connection's running graph.
pub(crate) trait Graph: Send {
    /// The next event, as a poll (cancel-safe; nothing allocated per event).
    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<GraphEvent>;
    /// How many outputs put out muxed bytes ([`GraphEvent::Chunk`]): a ladder's variants, else
    /// one (none for a graph without output).
    fn outputs(&self) -> usize;
    /// Time since the receiver last sent a byte; `None` before the first.
    fn source_silence(&self) -> Option<Duration>;
    /// What output `output`'s muxer inputs have negotiated so far.
    fn muxed_media(&self, output: usize) -> MuxedMedia;
    /// Which outputs have inputs linked (a ladder's variants the picture made), once known.
    fn outputs_in_use(&self) -> Vec<bool>;
    /// Stops the graph, off the async workers and bounded in time.
    fn stop(self: Box<Self>) -> BoxFuture<'static, ()>;
}

/// Starts a graph for a spec.
pub(crate) trait Connector: Send + Sync + 'static {
    fn start<'a>(&'a self, spec: &'a BuildSpec<'a>) -> BoxFuture<'a, Result<Box<dyn Graph>, StartError>>;
}

/// GStreamer graphs: [`LiveGraph`].
pub(crate) struct Gstreamer;

impl Connector for Gstreamer {
    fn start<'a>(&'a self, spec: &'a BuildSpec<'a>) -> BoxFuture<'a, Result<Box<dyn Graph>, StartError>> {
        Box::pin(async move { Ok(Box::new(LiveGraph::start(spec).await?) as Box<dyn Graph>) })
    }
}

impl Graph for LiveGraph {
    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<GraphEvent> {
        LiveGraph::poll_next(self, cx)
    }

    fn outputs(&self) -> usize {
        LiveGraph::outputs(self)
    }

    fn source_silence(&self) -> Option<Duration> {
        LiveGraph::source_silence(self)
    }

    fn muxed_media(&self, output: usize) -> MuxedMedia {
        LiveGraph::muxed_media(self, output)
    }

    fn outputs_in_use(&self) -> Vec<bool> {
        LiveGraph::outputs_in_use(self)
    }

    fn stop(self: Box<Self>) -> BoxFuture<'static, ()> {
        Box::pin(LiveGraph::stop(*self))
    }
}
