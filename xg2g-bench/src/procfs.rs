//! CPU time and memory of a process and its children, read from Linux's `/proc`.
//!
//! The bench measures each server as a process tree: xg2g is one process; the peers' way is a
//! proxy plus one ffmpeg child per client. CPU counts the tree's own time, the time of children
//! already reaped (`cutime`, `cstime`) and that of children still running, so a child that ends
//! between two samples moves from one sum to the other and is counted once. Memory is PSS
//! (`smaps_rollup`), which shares a library's pages among the processes that map it, so N
//! ffmpeg processes are not charged N times for libavcodec; where the kernel has no
//! `smaps_rollup`, RSS stands in and the sample says so.

use std::fs;
use std::io;

/// Clock ticks per second of `/proc/<pid>/stat` (`sysconf(_SC_CLK_TCK)`).
fn ticks_per_second() -> f64 {
    // SAFETY: sysconf reads a constant of the C library; it has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 { ticks as f64 } else { 100.0 }
}

/// CPU times of one process, in clock ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct StatTimes {
    own: u64,
    reaped_children: u64,
}

/// Parses `/proc/<pid>/stat`. The command name (field 2) may hold spaces and parentheses, so
/// fields are counted from the last `)`.
fn parse_stat(text: &str) -> Option<StatTimes> {
    let rest = &text[text.rfind(')')? + 1..];
    // After the name: state(3) ppid(4) … utime(14) stime(15) cutime(16) cstime(17).
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| fields.get(n - 3)?.parse::<i64>().ok();
    let (utime, stime, cutime, cstime) = (field(14)?, field(15)?, field(16)?, field(17)?);
    Some(StatTimes {
        own: (utime + stime).max(0) as u64,
        reaped_children: (cutime + cstime).max(0) as u64,
    })
}

fn stat(pid: u32) -> io::Result<StatTimes> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat"))?;
    parse_stat(&text).ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, format!("/proc/{pid}/stat")))
}

/// The direct children of `pid`: every process whose parent it is. (Scans `/proc/*/stat`:
/// the per-thread `children` files miss children while they are being created and reaped.)
pub(crate) fn children(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let Ok(entries) = fs::read_dir("/proc") else {
        return out;
    };
    for entry in entries.flatten() {
        let Some(child) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        if let Ok(text) = fs::read_to_string(format!("/proc/{child}/stat"))
            && parent_of(&text) == Some(pid)
        {
            out.push(child);
        }
    }
    out.sort_unstable();
    out
}

/// Field 4 of `/proc/<pid>/stat`, the parent's pid.
fn parent_of(text: &str) -> Option<u32> {
    text[text.rfind(')')? + 1..].split_whitespace().nth(1)?.parse().ok()
}

/// CPU seconds used so far by `pid`, its reaped children and its running children (one level:
/// the servers measured here have no grandchildren).
pub(crate) fn tree_cpu_seconds(pid: u32) -> io::Result<f64> {
    let root = stat(pid)?;
    let mut ticks = root.own + root.reaped_children;
    for child in children(pid) {
        // A child that ended a moment ago has no stat any more; its time is in `cutime` once
        // reaped, and not yet counted anywhere until then: a few ticks at most.
        if let Ok(times) = stat(child) {
            ticks += times.own + times.reaped_children;
        }
    }
    Ok(ticks as f64 / ticks_per_second())
}

/// Which memory figure a sample holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum MemoryKind {
    Pss,
    Rss,
}

/// The memory of a process tree, in KiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub(crate) struct Memory {
    pub kib: u64,
    pub kind: MemoryKind,
    pub processes: usize,
}

/// The value of a `Key:   1234 kB` line.
fn kib_field(text: &str, key: &str) -> Option<u64> {
    text.lines()
        .find_map(|line| line.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

fn memory_of(pid: u32) -> Option<(u64, MemoryKind)> {
    if let Ok(text) = fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        && let Some(pss) = kib_field(&text, "Pss")
    {
        return Some((pss, MemoryKind::Pss));
    }
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    Some((kib_field(&status, "VmRSS")?, MemoryKind::Rss))
}

/// The resident set of one process, KiB.
pub(crate) fn rss_kib(pid: u32) -> Option<u64> {
    kib_field(&fs::read_to_string(format!("/proc/{pid}/status")).ok()?, "VmRSS")
}

/// PSS (else RSS) of `pid` and its running children.
pub(crate) fn tree_memory(pid: u32) -> io::Result<Memory> {
    let (mut kib, mut kind) =
        memory_of(pid).ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("/proc/{pid}")))?;
    let mut processes = 1;
    for child in children(pid) {
        if let Some((child_kib, child_kind)) = memory_of(child) {
            kib += child_kib;
            processes += 1;
            if child_kind == MemoryKind::Rss {
                kind = MemoryKind::Rss;
            }
        }
    }
    Ok(Memory { kib, kind, processes })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_from_the_last_parenthesis() {
        let line = "4242 (tokio (worker) 1) S 1 4242 4242 0 -1 4194304 100 0 0 0 250 75 30 12 20 0 9 0 1 2 3";
        assert_eq!(
            parse_stat(line),
            Some(StatTimes {
                own: 325,
                reaped_children: 42
            })
        );
        assert_eq!(parse_stat("4242 (short) S 1"), None);
        assert_eq!(parent_of(line), Some(1));
    }

    #[test]
    fn kib_fields_need_the_exact_key() {
        let text = "Rss:                5120 kB\nPss:                2048 kB\nPss_Anon:           1024 kB\n";
        assert_eq!(kib_field(text, "Pss"), Some(2048));
        assert_eq!(kib_field(text, "Pss_Anon"), Some(1024));
        assert_eq!(kib_field(text, "Swap"), None);
    }

    #[test]
    fn this_process_has_cpu_time_and_memory() {
        let pid = std::process::id();
        // Burn a little CPU so the figure cannot be zero by accident.
        let mut x = 0u64;
        for i in 0..5_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        assert_ne!(std::hint::black_box(x), 1);
        assert!(tree_cpu_seconds(pid).expect("stat") > 0.0);
        let memory = tree_memory(pid).expect("memory");
        assert!(memory.kib > 1024, "{memory:?}");
        assert!(tree_cpu_seconds(u32::MAX).is_err());
    }

    #[test]
    #[allow(clippy::disallowed_methods, reason = "a child process to find among the children")]
    fn a_spawned_process_is_among_the_children() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("sleep runs");
        let found = children(std::process::id()).contains(&child.id());
        child.kill().expect("kill");
        child.wait().expect("reaped");
        assert!(found, "pid {} not among the children", child.id());
        assert!(!children(std::process::id()).contains(&child.id()));
    }
}
