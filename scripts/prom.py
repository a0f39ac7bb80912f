#!/usr/bin/env python3
"""Small Prometheus text-format helper for scripts/measure-sessions.sh (standard library only).

  prom.py sum FILE METRIC [label=value ...]      sum of the matching samples (0 if none)
  prom.py quantiles BEFORE AFTER HISTOGRAM Q...  per label set: count, the quantiles and the mean
                                                 of what was observed between the two scrapes
  prom.py mean BEFORE AFTER HISTOGRAM [l=v ...]  count and mean of what was observed between
  prom.py median                                 median of the numbers on stdin, one a line

Quantiles follow Prometheus' histogram_quantile(): find the bucket holding rank q*count and
interpolate linearly inside it (lower bound 0 for the first bucket; the upper bound of the last
finite bucket when the rank falls in +Inf). BEFORE may be an empty file (nothing observed yet).
"""

import math
import re
import statistics
import sys

LINE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def samples(path):
    """(name, {label: value}, value) for every sample line of a scrape."""
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.startswith("#") or not line.strip():
                continue
            m = LINE.match(line)
            if not m:
                continue
            labels = dict(LABEL.findall(m.group(2) or ""))
            yield m.group(1), labels, float(m.group(3))


def matches(labels, wanted):
    return all(labels.get(k) == v for k, v in wanted.items())


def parse_filters(args):
    return dict(a.split("=", 1) for a in args)


def cmd_sum(path, metric, *filters):
    wanted = parse_filters(filters)
    total = sum(v for n, l, v in samples(path) if n == metric and matches(l, wanted))
    print(f"{total:g}")


def histograms(path, name):
    """{label set without le: {"buckets": {le: count}, "sum": s, "count": c}}."""
    out = {}
    for n, labels, value in samples(path):
        if not n.startswith(name + "_"):
            continue
        suffix = n[len(name) + 1 :]
        le = labels.pop("le", None)
        key = tuple(sorted(labels.items()))
        h = out.setdefault(key, {"buckets": {}, "sum": 0.0, "count": 0.0})
        if suffix == "bucket" and le is not None:
            h["buckets"][float(le)] = value
        elif suffix in ("sum", "count"):
            h[suffix] = value
    return out


def delta(before, after, name):
    old = histograms(before, name)
    new = histograms(after, name)
    out = {}
    for key, h in new.items():
        o = old.get(key, {"buckets": {}, "sum": 0.0, "count": 0.0})
        out[key] = {
            "buckets": {le: c - o["buckets"].get(le, 0.0) for le, c in h["buckets"].items()},
            "sum": h["sum"] - o["sum"],
            "count": h["count"] - o["count"],
        }
    return out


def histogram_quantile(q, buckets):
    """Prometheus' histogram_quantile over cumulative {upper bound: count}."""
    bounds = sorted(buckets)
    if not bounds or bounds[-1] != math.inf:
        return math.nan
    total = buckets[math.inf]
    if total == 0:
        return math.nan
    rank = q * total
    prev_bound, prev_count = 0.0, 0.0
    for i, le in enumerate(bounds):
        count = buckets[le]
        if count >= rank:
            if le == math.inf:
                return bounds[-2] if len(bounds) > 1 else math.nan
            if i == 0 and le <= 0:
                return le
            start = prev_bound
            if count == prev_count:
                return le
            return start + (le - start) * (rank - prev_count) / (count - prev_count)
        prev_bound, prev_count = le, count
    return math.nan


def cmd_quantiles(before, after, name, *qs):
    for key, h in sorted(delta(before, after, name).items()):
        if h["count"] <= 0:
            continue
        labels = ",".join(f"{k}={v}" for k, v in key)
        values = " ".join(f"p{float(q) * 100:g}={histogram_quantile(float(q), h['buckets']) * 1000:.1f}ms" for q in qs)
        mean = h["sum"] / h["count"] * 1000
        print(f"{labels} count={h['count']:.0f} {values} mean={mean:.1f}ms")


def cmd_mean(before, after, name, *filters):
    wanted = parse_filters(filters)
    count = total = 0.0
    for key, h in delta(before, after, name).items():
        if matches(dict(key), wanted):
            count += h["count"]
            total += h["sum"]
    mean = total / count if count else math.nan
    print(f"count={count:.0f} mean={mean * 1000:.0f}ms")


def cmd_median():
    values = [float(v) for v in sys.stdin.read().split()]
    print(f"{statistics.median(values):.3f}" if values else "nan")


def main(argv):
    commands = {"sum": cmd_sum, "quantiles": cmd_quantiles, "mean": cmd_mean, "median": cmd_median}
    if len(argv) < 2 or argv[1] not in commands:
        sys.exit(__doc__)
    commands[argv[1]](*argv[2:])


if __name__ == "__main__":
    main(sys.argv)
