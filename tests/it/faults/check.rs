//! The checks of one measured row against what its case expects.

use std::time::Duration;

use super::case::Expect;
use super::row::Row;

/// Checks one row; returns what does not hold.
pub(super) fn check(row: &Row, expect: Expect) -> Vec<String> {
    let mut wrong = Vec::new();
    let mut holds = |ok: bool, what: String| {
        if !ok {
            wrong.push(format!("{}: {what}", row.fault));
        }
    };
    holds(
        row.other_ok(),
        format!(
            "the other channel plays on (gap {:?}, ended {}) and the port's breaker stays closed ({})",
            row.other_gap, row.other_ended, row.breaker
        ),
    );
    let within = |d: Option<Duration>, limit: Duration| d.is_some_and(|d| d <= limit);
    match expect {
        Expect::Survives { notice, resume, new } => {
            holds(
                row.playing_survived,
                format!("the playing client stays: {}", row.playing),
            );
            holds(
                within(row.detect, notice),
                format!("noticed within {notice:?}: {:?}", row.detect),
            );
            holds(
                within(row.recover, resume),
                format!("resumed within {resume:?}: {:?}", row.recover),
            );
            if let Some(new) = new {
                holds(row.new == new, format!("a new client gets {new}: {}", row.new));
            }
        }
        Expect::Ends {
            within: limit,
            new,
            resume,
        } => {
            holds(
                row.playing.starts_with("ended after"),
                format!("the playing client's stream ends cleanly: {}", row.playing),
            );
            holds(
                within(row.ended, limit),
                format!("ended within {limit:?} of the fault: {:?}", row.ended),
            );
            holds(row.new == new, format!("a new client gets {new}: {}", row.new));
            holds(
                row.after == 200,
                format!("plays once the receiver is back: {}", row.after),
            );
            holds(
                within(row.recover, resume),
                format!("plays within {resume:?}: {:?}", row.recover),
            );
        }
        Expect::Refused {
            answer,
            within: limit,
            resume,
        } => {
            holds(row.new == answer, format!("a new client gets {answer}: {}", row.new));
            holds(
                within(row.detect, limit),
                format!("answered within {limit:?}: {:?}", row.detect),
            );
            holds(
                row.after == 200,
                format!("plays once the receiver is back: {}", row.after),
            );
            holds(
                within(row.recover, resume),
                format!("plays within {resume:?}: {:?}", row.recover),
            );
        }
        Expect::ApiDown => {
            holds(
                row.new.starts_with("refresh 502 upstream-unavailable; stream 200 in"),
                format!("refresh 502, a new stream plays: {}", row.new),
            );
            holds(
                row.after == 200,
                format!("a refresh works once the API is back: {}", row.after),
            );
        }
    }
    if let Some(errors) = row.decode_errors {
        // A splice resumes at a key frame; the stream cut by the fault ends in a partial frame.
        holds(
            errors as u64 <= 3 + 4 * row.reconnects,
            format!(
                "{errors} decode errors after {} reconnects:\n{}",
                row.reconnects, row.decode_log
            ),
        );
    }
    wrong
}
