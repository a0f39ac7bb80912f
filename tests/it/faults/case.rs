//! The rows of the fault matrix: what each switches on at the receiver, whom it hits, how long
//! it holds, and what it must show.

use std::time::Duration;

use xg2g::demo::{Faults, PortFault, StreamFault};

use super::{FAILURE_NOTICE, STALL_NOTICE};

/// How long the receiver stays faulty.
#[derive(Clone, Copy)]
pub(super) enum Outage {
    /// This long after the fault is switched on.
    For(Duration),
    /// Until the receiver has acted once (the open connection closed): one drop.
    Once,
    /// Until xg2g gives up and ends the playing client.
    UntilClientEnds,
}

/// Whom a row's fault hits.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Target {
    /// The channel a client plays (and the one a new client asks for).
    Playing,
    /// Only a new client's channel.
    Start,
    /// The OpenWebIF API.
    Api,
}

pub(super) struct Case {
    pub(super) fault: &'static str,
    pub(super) target: Target,
    pub(super) outage: Outage,
    /// Whether a new client asks for a faulted channel while the fault holds.
    pub(super) new_client: bool,
    pub(super) on: Switch,
    pub(super) expect: Expect,
}

/// What a row must show.
#[derive(Clone, Copy)]
pub(super) enum Expect {
    /// The playing client stays connected; xg2g notices within `notice` of the fault and data
    /// flows within `resume` of the receiver's return; a new client meanwhile gets `new`.
    Survives {
        notice: Duration,
        resume: Duration,
        new: Option<&'static str>,
    },
    /// The receiver stays away: once the reconnects are spent (within `within` of the fault)
    /// the playing client's stream ends cleanly, a new client gets `new`, and a new request
    /// plays within `resume` of the receiver's return.
    Ends {
        within: Duration,
        new: &'static str,
        resume: Duration,
    },
    /// A new client gets `answer` (status, code, …) within `within`, and plays within `resume`
    /// of the receiver's return.
    Refused {
        answer: &'static str,
        within: Duration,
        resume: Duration,
    },
    /// A catalog refresh fails cleanly, a new stream plays all the same, and a refresh works
    /// once the API is back.
    ApiDown,
}

/// What a row switches on at the receiver.
#[derive(Clone, Copy)]
pub(super) enum Switch {
    /// This fault on the faulted channels' streams.
    Stream(StreamFault),
    /// The stream server crashed: the faulted channels' connections reset, and the port hangs
    /// up on every new connection.
    Restart,
    /// Every API answer this late.
    ApiDelay(Duration),
    /// Every API answer 500.
    ApiFail,
}

impl Switch {
    pub(super) fn apply(self, f: &mut Faults, channels: &[&str]) {
        match self {
            Switch::Stream(fault) => {
                for channel in channels {
                    f.streams.insert((*channel).to_owned(), fault);
                }
            }
            Switch::Restart => {
                Switch::Stream(StreamFault::Reset).apply(f, channels);
                f.stream_port = Some(PortFault::Refuse);
            }
            Switch::ApiDelay(delay) => f.api_delay = delay,
            Switch::ApiFail => f.api_fail_next = u32::MAX,
        }
    }
}

pub(super) fn cases() -> Vec<Case> {
    vec![
        Case {
            fault: "stall (no data, connection open, 3 s)",
            target: Target::Playing,
            outage: Outage::For(Duration::from_secs(3)),
            new_client: false,
            on: Switch::Stream(StreamFault::Pause),
            expect: Expect::Survives {
                notice: STALL_NOTICE,
                resume: Duration::from_secs(2),
                new: None,
            },
        },
        Case {
            fault: "drop (receiver closes the connection once)",
            target: Target::Playing,
            outage: Outage::Once,
            new_client: false,
            on: Switch::Stream(StreamFault::DropAfter(0)),
            expect: Expect::Survives {
                notice: FAILURE_NOTICE,
                resume: Duration::from_secs(3),
                new: None,
            },
        },
        Case {
            fault: "reset (RST, then the port hangs up on connects, 1 s)",
            target: Target::Playing,
            outage: Outage::For(Duration::from_secs(1)),
            new_client: false,
            on: Switch::Restart,
            expect: Expect::Survives {
                notice: FAILURE_NOTICE,
                resume: Duration::from_secs(3),
                new: None,
            },
        },
        Case {
            fault: "garbage (random bytes, 3 s)",
            target: Target::Playing,
            outage: Outage::For(Duration::from_secs(3)),
            new_client: false,
            on: Switch::Stream(StreamFault::Garbage),
            expect: Expect::Survives {
                notice: STALL_NOTICE,
                resume: Duration::from_secs(2),
                new: None,
            },
        },
        Case {
            fault: "404 on the stream port (1 s)",
            target: Target::Playing,
            outage: Outage::For(Duration::from_secs(1)),
            new_client: true,
            on: Switch::Stream(StreamFault::NotFound),
            expect: Expect::Survives {
                notice: FAILURE_NOTICE,
                resume: Duration::from_secs(3),
                new: Some("502 upstream-unavailable"),
            },
        },
        Case {
            fault: "500 on the stream port (1 s)",
            target: Target::Playing,
            outage: Outage::For(Duration::from_secs(1)),
            new_client: true,
            on: Switch::Stream(StreamFault::Status(500)),
            expect: Expect::Survives {
                notice: FAILURE_NOTICE,
                resume: Duration::from_secs(3),
                new: Some("502 upstream-unavailable"),
            },
        },
        Case {
            fault: "gone (404 until the clients end)",
            target: Target::Playing,
            outage: Outage::UntilClientEnds,
            new_client: true,
            on: Switch::Stream(StreamFault::NotFound),
            // Reconnects wait 0.5 s, 1 s and 2 s: the fourth failure ends the clients.
            expect: Expect::Ends {
                within: Duration::from_secs(5),
                new: "502 upstream-unavailable",
                resume: Duration::from_secs(2),
            },
        },
        Case {
            fault: "tuner busy (200, then nothing)",
            target: Target::Start,
            outage: Outage::For(Duration::ZERO),
            new_client: true,
            on: Switch::Stream(StreamFault::StallAfter(0)),
            expect: Expect::Refused {
                answer: "503 no-tuner, Retry-After 30",
                within: Duration::from_secs(5),
                resume: Duration::from_secs(2),
            },
        },
        Case {
            fault: "slow API (3 s per answer, timeout 1 s)",
            target: Target::Api,
            outage: Outage::For(Duration::ZERO),
            new_client: true,
            on: Switch::ApiDelay(Duration::from_secs(3)),
            expect: Expect::ApiDown,
        },
        Case {
            fault: "failing API (500 to everything)",
            target: Target::Api,
            outage: Outage::For(Duration::ZERO),
            new_client: true,
            on: Switch::ApiFail,
            expect: Expect::ApiDown,
        },
    ]
}
