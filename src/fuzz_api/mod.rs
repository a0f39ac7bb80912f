//! Fuzz target bodies: every parser of outside bytes, each checked against a property (a
//! round trip where one exists), not only for panics. The `cargo-fuzz` targets in `fuzz/` call
//! these on nightly; the tests below drive the same bodies on stable over the seeds and a
//! bounded random loop, so CI runs them without nightly. Not part of the product's API.

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

mod playlists;
mod requests;
mod seeds;
mod text;
mod ts;

pub use playlists::playlists;
pub use requests::requests;
#[cfg(test)]
pub(crate) use seeds::seed_stream;
pub use seeds::seeds;
pub use text::{config, openwebif, service_ref, template};
pub use ts::ts;

#[cfg(test)]
mod tests;
