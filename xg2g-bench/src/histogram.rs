//! Prometheus histograms read back from a `/metrics` scrape, and their quantiles as PromQL's
//! `histogram_quantile` computes them. Pure: the bench fetches the text, this reads it.
//!
//! A small reader rather than a parser crate: the bench needs one histogram family from one
//! exporter (prometheus-client's text format), and the tests read a scrape captured from xg2g.

use std::collections::BTreeMap;

use super::report::TranscodeP95;

/// xg2g's transcode stage histogram, labelled `mode` and `encoder`.
const TRANSCODE_LATENCY: &str = "xg2g_transcode_latency_seconds";

/// A label set without `le`, sorted by label name.
pub(crate) type Labels = BTreeMap<String, String>;

/// One label set's cumulative buckets as `(upper bound, count)`, sorted by bound.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Histogram {
    buckets: Vec<(f64, f64)>,
}

impl Histogram {
    #[cfg(test)]
    pub(crate) fn new(buckets: &[(f64, f64)]) -> Self {
        let mut h = Self::default();
        for &(le, count) in buckets {
            h.add(le, count);
        }
        h
    }

    fn add(&mut self, le: f64, count: f64) {
        let at = self.buckets.partition_point(|b| b.0 < le);
        self.buckets.insert(at, (le, count));
    }

    /// Observations in all buckets (the `+Inf` bucket's count).
    pub(crate) fn count(&self) -> f64 {
        self.buckets.last().map_or(0.0, |b| b.1)
    }

    /// What was observed after `earlier` (a scrape of the same series): bucket by bucket, the
    /// difference of the counts. A series absent from the earlier scrape started at zero.
    pub(crate) fn since(&self, earlier: Option<&Self>) -> Self {
        let before = |le: f64| {
            earlier
                .and_then(|e| e.buckets.iter().find(|b| b.0 == le))
                .map_or(0.0, |b| b.1)
        };
        Self {
            buckets: self
                .buckets
                .iter()
                .map(|&(le, n)| (le, (n - before(le)).max(0.0)))
                .collect(),
        }
    }

    /// The `q` quantile (0 to 1) as `histogram_quantile` computes it: the bucket that holds the
    /// rank, and linear interpolation inside it (from 0 for the first bucket). A rank in the
    /// `+Inf` bucket gives the largest finite bound. `None` without observations, without a
    /// `+Inf` bucket, or with fewer than two buckets (where PromQL gives NaN).
    pub(crate) fn quantile(&self, q: f64) -> Option<f64> {
        let last = self.buckets.last()?;
        if self.buckets.len() < 2 || last.0 != f64::INFINITY || !(0.0..=1.0).contains(&q) {
            return None;
        }
        // Counts never fall from one bound to the next; PromQL evens out float noise the same way.
        let mut buckets = self.buckets.clone();
        for i in 1..buckets.len() {
            buckets[i].1 = buckets[i].1.max(buckets[i - 1].1);
        }
        let observations = buckets[buckets.len() - 1].1;
        if observations <= 0.0 {
            return None;
        }
        let mut rank = q * observations;
        let b = buckets[..buckets.len() - 1].partition_point(|x| x.1 < rank);
        if b == buckets.len() - 1 {
            return Some(buckets[b - 1].0);
        }
        if b == 0 && buckets[0].0 <= 0.0 {
            return Some(buckets[0].0);
        }
        let (end, mut count) = buckets[b];
        let mut start = 0.0;
        if b > 0 {
            start = buckets[b - 1].0;
            count -= buckets[b - 1].1;
            rank -= buckets[b - 1].1;
        }
        Some(start + (end - start) * (rank / count))
    }
}

/// The P95 of each transcode stage (`mode`, `encoder`) over what xg2g measured between two
/// scrapes of its `/metrics`, the window's start and end. Stages without a buffer in the window
/// are left out.
pub(crate) fn transcode_p95(start: &str, end: &str) -> Vec<TranscodeP95> {
    let before = parse(start, TRANSCODE_LATENCY);
    parse(end, TRANSCODE_LATENCY)
        .into_iter()
        .filter_map(|(labels, after)| {
            let window = after.since(before.get(&labels));
            let label = |name: &str| labels.get(name).cloned().unwrap_or_default();
            Some(TranscodeP95 {
                mode: label("mode"),
                encoder: label("encoder"),
                p95_ms: window.quantile(0.95)? * 1000.0,
                samples: window.count() as u64,
            })
        })
        .collect()
}

/// Every label set of histogram `family` in a scrape in Prometheus' text format, from its
/// `{family}_bucket` samples. Lines that do not parse are skipped.
pub(crate) fn parse(text: &str, family: &str) -> BTreeMap<Labels, Histogram> {
    let bucket = format!("{family}_bucket");
    let mut out: BTreeMap<Labels, Histogram> = BTreeMap::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(bucket.as_str()) else {
            continue;
        };
        let Some((mut labels, rest)) = rest.strip_prefix('{').and_then(label_set) else {
            continue;
        };
        let value = rest.split_whitespace().next().and_then(number);
        let le = labels.remove("le").as_deref().and_then(number);
        if let (Some(value), Some(le)) = (value, le) {
            out.entry(labels).or_default().add(le, value);
        }
    }
    out
}

/// A sample value or `le` bound: a float, or `+Inf`.
fn number(s: &str) -> Option<f64> {
    match s {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        _ => s.parse().ok(),
    }
}

/// The labels after a sample name's `{`, up to its `}`, and the rest of the line.
fn label_set(s: &str) -> Option<(Labels, &str)> {
    let mut labels = Labels::new();
    let mut rest = s.trim_start();
    loop {
        if let Some(after) = rest.strip_prefix('}') {
            return Some((labels, after));
        }
        let (name, after) = rest.split_once('=')?;
        let after = after.trim_start().strip_prefix('"')?;
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next()? {
                (i, '"') => break i,
                (_, '\\') => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                (_, c) => value.push(c),
            }
        };
        labels.insert(name.trim().to_owned(), value);
        rest = after[end + 1..].trim_start();
        rest = rest.strip_prefix(',').unwrap_or(rest).trim_start();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `/metrics` of `xg2g demo` with one `aac` and one `h264` TS client, 5 s in.
    const SCRAPE: &str = include_str!("testdata/xg2g-metrics.txt");
    const LATENCY: &str = "xg2g_transcode_latency_seconds";

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs.iter().map(|&(k, v)| (k.to_owned(), v.to_owned())).collect()
    }

    #[test]
    fn a_real_scrape_gives_each_label_set_of_the_family_and_no_other() {
        let found = parse(SCRAPE, LATENCY);
        let keys: Vec<&Labels> = found.keys().collect();
        assert_eq!(
            keys,
            [
                &labels(&[("encoder", "avenc_aac"), ("mode", "audio_proxy")]),
                &labels(&[("encoder", "avenc_aac"), ("mode", "gpu")]),
                &labels(&[("encoder", "x264enc"), ("mode", "gpu")]),
            ]
        );
        let x264 = &found[&labels(&[("encoder", "x264enc"), ("mode", "gpu")])];
        assert_eq!(x264.buckets.len(), 12, "1 ms to 1.024 s and +Inf");
        assert_eq!(x264.count(), 229.0);
        assert_eq!(parse(SCRAPE, "xg2g_time_to_first_byte_seconds").len(), 2);
        assert!(
            parse(SCRAPE, "xg2g_transcode_latency").is_empty(),
            "a prefix is no family"
        );
    }

    #[test]
    fn p95_interpolates_inside_the_bucket_like_histogram_quantile() {
        let found = parse(SCRAPE, LATENCY);
        // 222 samples, rank 210.9: in (0.032, 0.064], which holds 222 - 44 = 178 of them.
        let aac = &found[&labels(&[("encoder", "avenc_aac"), ("mode", "audio_proxy")])];
        let expected = 0.032 + 0.032 * (210.9 - 44.0) / 178.0;
        assert!((aac.quantile(0.95).expect("p95") - expected).abs() < 1e-12);
        // 229 samples, rank 217.55: in (0.128, 0.256], which holds 229 - 111 = 118.
        let x264 = &found[&labels(&[("encoder", "x264enc"), ("mode", "gpu")])];
        let expected = 0.128 + 0.128 * (217.55 - 111.0) / 118.0;
        assert!((x264.quantile(0.95).expect("p95") - expected).abs() < 1e-12);
    }

    #[test]
    fn transcode_p95s_take_the_window_between_two_scrapes() {
        let whole = transcode_p95("", SCRAPE);
        let stages: Vec<(&str, &str, u64)> = whole
            .iter()
            .map(|s| (s.mode.as_str(), s.encoder.as_str(), s.samples))
            .collect();
        assert_eq!(
            stages,
            [
                ("audio_proxy", "avenc_aac", 222),
                ("gpu", "avenc_aac", 222),
                ("gpu", "x264enc", 229)
            ]
        );
        assert!((whole[0].p95_ms - 62.004_494).abs() < 1e-3, "{whole:?}");
        assert!(transcode_p95(SCRAPE, SCRAPE).is_empty(), "nothing happened in between");
        // 100 more x264enc buffers, all above 1.024 s: the window's P95 is the largest bound.
        let later = SCRAPE.replace(
            "{le=\"+Inf\",mode=\"gpu\",encoder=\"x264enc\"} 229",
            "{le=\"+Inf\",mode=\"gpu\",encoder=\"x264enc\"} 329",
        );
        assert_ne!(later, SCRAPE);
        let window = transcode_p95(SCRAPE, &later);
        assert_eq!(window.len(), 1);
        assert_eq!((window[0].encoder.as_str(), window[0].samples), ("x264enc", 100));
        assert!((window[0].p95_ms - 1024.0).abs() < 1e-9, "{window:?}");
    }

    #[test]
    fn quantile_edges_follow_promql() {
        let inf = f64::INFINITY;
        // The first bucket interpolates from zero.
        let first = Histogram::new(&[(0.004, 10.0), (0.008, 10.0), (inf, 10.0)]);
        assert!((first.quantile(0.5).expect("q") - 0.002).abs() < 1e-12);
        // A rank in +Inf gives the largest finite bound.
        let over = Histogram::new(&[(0.001, 1.0), (0.002, 2.0), (inf, 100.0)]);
        assert_eq!(over.quantile(0.95), Some(0.002));
        assert_eq!(
            Histogram::new(&[(0.001, 1.0), (0.002, 2.0)]).quantile(0.5),
            None,
            "no +Inf"
        );
        assert_eq!(Histogram::new(&[(0.001, 0.0), (inf, 0.0)]).quantile(0.5), None, "empty");
        assert_eq!(Histogram::new(&[(inf, 3.0)]).quantile(0.5), None, "one bucket");
    }

    #[test]
    fn the_window_counts_only_what_came_after_the_first_scrape() {
        let inf = f64::INFINITY;
        let start = Histogram::new(&[(0.01, 100.0), (0.02, 100.0), (inf, 100.0)]);
        let end = Histogram::new(&[(0.01, 100.0), (0.02, 120.0), (inf, 120.0)]);
        let window = end.since(Some(&start));
        assert_eq!(window.count(), 20.0);
        // All 20 in (0.01, 0.02]: the whole run's P95 would be 0.01 + 0.01 * 14 / 20.
        assert!((window.quantile(0.95).expect("q") - (0.01 + 0.01 * 0.95)).abs() < 1e-12);
        assert_eq!(end.since(None), end, "a new series starts at zero");
        assert_eq!(end.since(Some(&end)).quantile(0.95), None, "nothing in the window");
    }

    #[test]
    fn label_values_unescape_and_bounds_may_come_last() {
        let text = "h_bucket{mode=\"a\\\"b\",le=\"0.5\"} 3\nh_bucket{ mode=\"a\\\"b\" , le=\"+Inf\" } 4 1700000000\n\
                    h_bucket{le=\"1\"} not-a-number\nh_count 4\n";
        let found = parse(text, "h");
        let h = &found[&labels(&[("mode", "a\"b")])];
        assert_eq!(h.buckets, vec![(0.5, 3.0), (f64::INFINITY, 4.0)]);
        assert_eq!(found.len(), 1);
    }
}
