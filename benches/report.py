#!/usr/bin/env python3
"""Writes BENCHMARKS.md from criterion's estimates (target/criterion) of one `make bench` run:
medians, ratios against the peers measured in the same run, and whether each target holds."""

import datetime
import json
import os
import pathlib
import platform
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
CRITERION = ROOT / "target" / "criterion"

# group: (subject, peer, target ratio subject/peer or None, absolute target in ns or None, what)
TARGETS = {
    "token/hs256": ("arbiter", "jsonwebtoken", 1.5, None, "HS256 verify within 1.5x of raw jsonwebtoken"),
    "token/rs256": ("arbiter", "aws-lc-rs", 1.10, None, "RS256 verify within 10% of raw aws-lc-rs"),
    "token/es256": ("arbiter", "aws-lc-rs", 1.10, None, "ES256 verify within 10% of raw aws-lc-rs"),
    "token/cache_hit": ("arbiter", None, None, 1000.0, "a cache hit under 1 microsecond"),
}


def median_ns(group, function):
    # criterion writes group "a/b" to the folder "a_b".
    path = CRITERION / group.replace("/", "_") / function / "new" / "estimates.json"
    if not path.exists():
        return None
    return json.loads(path.read_text())["median"]["point_estimate"]


def human(ns):
    if ns is None:
        return "not run"
    if ns >= 1e6:
        return f"{ns / 1e6:.2f} ms"
    if ns >= 1e3:
        return f"{ns / 1e3:.2f} µs"
    return f"{ns:.0f} ns"


def cpu():
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main():
    command = os.environ.get("BENCH_COMMAND", "make bench")
    lines = [
        "# Benchmarks",
        "",
        f"Written by `{command}` (criterion medians; every ratio compares two figures measured in the same run).",
        "",
        f"- Machine: {cpu()}, {os.cpu_count()} cores, {platform.system()} {platform.release()}",
        f"- Date: {datetime.date.today().isoformat()}",
        "",
        "| benchmark | Arbiter | peer | peer median | ratio | target | met |",
        "|---|---|---|---|---|---|---|",
    ]
    missing = []
    for group, (subject, peer, ratio_target, absolute, what) in TARGETS.items():
        ours = median_ns(group, subject)
        theirs = median_ns(group, peer) if peer else None
        if ours is None:
            missing.append(group)
            continue
        if peer:
            ratio = ours / theirs
            met = ratio <= ratio_target
            row = f"| {group} | {human(ours)} | {peer} | {human(theirs)} | {ratio:.2f}x | {what} | {'yes' if met else 'NO'} |"
        else:
            met = ours <= absolute
            row = f"| {group} | {human(ours)} | | | | {what} | {'yes' if met else 'NO'} |"
        lines.append(row)
    lines += [
        "",
        "Arbiter's token figures go through the public `Engine::verify_token` with the cache off",
        "(except `cache_hit`); the peers verify the same token with the same key. Sources:",
        "`benches/benches/*.rs`.",
    ]
    if missing:
        lines += ["", "Not run: " + ", ".join(missing) + "."]
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
