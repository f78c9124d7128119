"""Benchmark: the encoder cache's hit rate under a replay of the test users' requests with their
watches interleaved, against a real stack (Redis, Triton, one control plane) on loopback.

Every test user of the run (in a seeded random order: the split keeps no times) asks for
recommendations, then watches their held-out test item(s) (RecordFeedback WATCH), then asks again
``--gap`` users later; the control plane's cache starts empty. Reported: the live lookups' hits and
misses, the share of the after-watch requests that found the vectors the watch's nearline encoding
put there, whether each after-watch answer left the watched item out (it is in the live history),
and the cache's entries and bytes per entry.

    .venv/bin/python -m bench.encoder_cache_replay --run RUN [--gaps 0,1,8]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
from prometheus_client.parser import text_string_to_metric_families

from bench.open_loop import published
from launcher.client import recommend, record_feedback, wait_for_version
from recsys.pipeline import PipelineSpec
from recsys.run import load_run


def scrape(metrics_url: str) -> dict[str, float]:
    """The control plane's encoder-cache series: lookups by "source/result", entries, bytes."""
    with urllib.request.urlopen(metrics_url, timeout=5) as answer:
        families = text_string_to_metric_families(answer.read().decode())
    found: dict[str, float] = {}
    for family in families:
        for sample in family.samples:
            if sample.name == "cinesync_encoder_cache_lookups_total":
                found[f"{sample.labels['source']}/{sample.labels['result']}"] = sample.value
            elif sample.name in ("cinesync_encoder_cache_entries", "cinesync_encoder_cache_bytes"):
                found[sample.name.rsplit("_", 1)[1]] = sample.value
    return found


def replay(address: str, events: list[tuple[str, list[str]]], gap: int) -> dict[str, int]:
    """Each user asks, watches their items, and asks again ``gap`` users later; returns how many
    after-watch answers left every watched item out."""
    pending: list[tuple[str, list[str]]] = []
    kept_out = 0
    for user, watched in [*events, *[("", [])] * gap]:
        if user:
            answer = recommend(address, user, k=10)
            for item in watched:
                record_feedback(address, answer.request_id, user, item)
            pending.append((user, watched))
        if len(pending) > gap or (not user and pending):
            asked, items = pending.pop(0)
            shown = {item.item_id for item in recommend(address, asked, k=10).items}
            kept_out += not shown & set(items)
    return {"users": len(events), "after_watch_answers_without_the_watched_items": kept_out}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, required=True, help="a trained run (recsys.pipeline.train)")
    parser.add_argument("--gaps", default="0,8", help="users between a watch and its user's next request")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    run = load_run(args.run)
    test = run.protocol.test
    users = np.random.default_rng(args.seed).permutation(test.test_users())
    events = [(run.user_ids[u], [run.items[i].item_id for i in test.test_items[u]]) for u in users]
    results = {}
    for gap in (int(g) for g in args.gaps.split(",")):
        with tempfile.TemporaryDirectory() as root, published("", Path(root), PipelineSpec(), trained=args.run) as done:
            done.stack.start_control_plane()
            wait_for_version(done.stack.grpc_address, events[0][0], done.version)
            metrics = done.stack.replica_metrics[0]
            before = scrape(metrics)
            started = time.perf_counter()
            outcome = replay(done.stack.grpc_address, events, gap)
            time.sleep(1.0)
            after = scrape(metrics)
        lookups = {key: after.get(key, 0.0) - before.get(key, 0.0) for key in after if "/" in key}
        hits, misses = lookups.get("live/hit", 0.0), lookups.get("live/miss", 0.0)
        results[f"gap {gap}"] = {
            **outcome, "seconds": round(time.perf_counter() - started, 1), "lookups": lookups,
            "hit_rate": round(hits / max(hits + misses, 1.0), 4),
            # The probe above cached the first user's vectors: that user's first request is the one
            # hit that no watch prepared; every other first request finds an empty entry.
            "after_watch_hit_share": round((hits - 1) / len(events), 4),
            "entries": after.get("entries", 0.0),
            "bytes_per_entry": round(after.get("bytes", 0.0) / max(after.get("entries", 0.0), 1.0), 1),
        }
    print(json.dumps({"run": str(args.run), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                      "results": results}, indent=2))


if __name__ == "__main__":
    main()
