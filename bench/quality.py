"""Side-by-side quality: our pipeline (every kind and the served cascade) against RecBole 1.2.1 on
exactly the same train / validation / test files, with wall time to the best validation epoch and
peak RSS per model (each runs in its own process).

With --split loo-time (the next-watch benchmark: each user's latest item is test, the second-latest
validation) RecBole's sequential models (SASRec, BERT4Rec, GRU4Rec) run too: the files then carry each
item's position in the user's sequence as its timestamp, and bench/recbole_runner.py builds RecBole's
prefixes from them so that RecBole predicts exactly our validation and test items from exactly our
histories (its docstring says how). The user counts RecBole evaluates are checked against ours.

RecBole is installed by this script into its own venv (.venv-recbole), never into the product's.
Results go to docs/bench/quality-<data set>.json (quality-<data set>-loo-time.json with --split
loo-time); --plot draws docs/quality.png from all of them.

    .venv/bin/python bench/quality.py --data ../shared/data/ml-100k --recbole EASE,BPR,LightGCN
    .venv/bin/python bench/quality.py --data ../shared/data/anime --recbole BPR:500 --merge
    .venv/bin/python bench/quality.py --data ../shared/data/ml-1m --recbole LightGCN:400 --time-limit 4500 --merge
    .venv/bin/python bench/quality.py --data ../shared/data/ml-1m --split loo-time --recbole SASRec:200 --time-limit 4500
    .venv/bin/python bench/quality.py --plot
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

SPLITS = ("auto", "loo-time")  # cinesync.splits.SPLITS; this script needs no product package

ROOT = Path(__file__).resolve().parent.parent
RECBOLE_VENV = ROOT / ".venv-recbole"
RESULTS = ROOT / "docs" / "bench"
EASE_GRID = (50.0, 200.0, 500.0, 1000.0, 3000.0)  # the grid our EASE kind searches


def run_measured(command: list[str], *, cwd: Path = ROOT) -> tuple[str, float, float]:
    """Run ``command`` in ``cwd``; its stdout, wall seconds and peak RSS in MiB (from wait4's rusage)."""
    started = time.perf_counter()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        process = subprocess.Popen(command, stdout=out, stderr=err, cwd=cwd)
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        text, errors = out.read().decode(), err.read().decode()
    if process.returncode:
        raise RuntimeError(f"{' '.join(command[:4])} … exited with {process.returncode}:\n{errors[-3000:]}")
    return text, time.perf_counter() - started, usage.ru_maxrss / 1024


def ensure_recbole() -> Path:
    python = RECBOLE_VENV / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(RECBOLE_VENV)], check=True)
    if subprocess.run([str(python), "-c", "import recbole, matplotlib"], check=False, capture_output=True).returncode:
        subprocess.run([str(python), "-m", "pip", "install", "-q", "torch==2.13.0", "recbole==1.2.1", "matplotlib"],
                       check=True)
    return python


def write_atomic_files(run_dir: Path, folder: Path, name: str, *, timestamps: bool = False) -> dict[str, int]:
    """Our validation split's train part, its held-out items, and the test items, as RecBole files;
    returns how many users each held-out part has.

    With ``timestamps`` (a leave-one-out-by-time split), each line also has the item's position in its
    user's sequence: train items oldest first (our order), then the validation item, then the test
    item, so strictly increasing per user; RecBole's sequential models order by it."""
    with np.load(run_dir / "split.npz") as arrays:
        parts = {
            "train": (arrays["validation_train"], arrays["validation_train_lengths"]),
            "valid": (arrays["validation_held"], arrays["validation_held_lengths"]),
            "test": (arrays["test_held"], arrays["test_held_lengths"]),
        }
        if timestamps:
            check_sequences(arrays)
    written = np.zeros(len(parts["train"][1]), dtype=np.int64)  # each user's items in earlier parts
    for part, (items, lengths) in parts.items():
        users = np.repeat(np.arange(len(lengths)), lengths)
        if timestamps:
            positions = written[users] + np.arange(len(items)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
            written += lengths
            lines = ["user_id:token\titem_id:token\ttimestamp:float",
                     *(f"{u}\t{i}\t{t}" for u, i, t in zip(users, items, positions, strict=True))]
        else:
            lines = ["user_id:token\titem_id:token", *(f"{u}\t{i}" for u, i in zip(users, items, strict=True))]
        (folder / f"{name}.{part}.inter").write_text("\n".join(lines) + "\n")
    return {part: int(np.count_nonzero(parts[part][1])) for part in ("valid", "test")}


def check_sequences(arrays: Any) -> None:
    """Each user's test-split training sequence is the validation split's, then its validation item:
    what leave-one-out by time makes, and what the positions written as timestamps assume."""
    def unpack(name: str) -> list[np.ndarray]:
        return np.split(arrays[name], np.cumsum(arrays[f"{name}_lengths"])[:-1])

    for user, (whole, train, held) in enumerate(zip(unpack("test_train"), unpack("validation_train"),
                                                     unpack("validation_held"), strict=True)):
        if len(held) > 1 or not np.array_equal(whole, np.concatenate([train, held])):
            raise SystemExit(f"user {user}: the split is not leave-one-out by time (test-split train "
                             "sequence != validation train sequence + validation item)")


def recbole(python: Path, data_dir: Path, name: str, model: str, overrides: dict[str, Any]) -> dict[str, Any]:
    text, seconds, rss = run_measured(  # in data_dir: RecBole writes log/ and log_tensorboard/ where it runs
        [str(python), str(ROOT / "bench" / "recbole_runner.py"), str(data_dir), name, model, json.dumps(overrides)],
        cwd=data_dir,
    )
    result = json.loads(text.strip().splitlines()[-1])
    return {**result, "wall_seconds": round(seconds, 1), "peak_rss_mib": round(rss)}


def reused_run(run_dir: Path, data: str, split: str) -> dict[str, Any]:
    """A finished run of our pipeline (``--ours-run``) in the shape train_eval.py prints."""
    manifest = json.loads((run_dir / "manifest.json").read_text())
    if Path(manifest["data"]).name != Path(data).name:
        raise SystemExit(f"--ours-run: {run_dir} was trained on {manifest['data']}, not {data}")
    if manifest["pipeline"].get("split", "auto") != split:
        raise SystemExit(f"--ours-run: {run_dir} used --split {manifest['pipeline'].get('split', 'auto')}, not {split}")
    metrics_file = run_dir / "metrics.json"
    return {
        "data": data, "run_dir": str(run_dir), "split": manifest["split"], "options": manifest["pipeline"]["options"],
        "reused_run": True, "train_s": manifest.get("train_seconds"),
        "chosen": {kind["kind"]: kind["chosen"] for kind in manifest["kinds"]},
        "metrics": json.loads(metrics_file.read_text()) if metrics_file.is_file() else None,
    }


def run(data: str, models: list[str], max_epochs: int, *, merge: bool,
        time_limit_s: float | None = None, split: str = "auto", assignments: list[str] | None = None,
        ours_run: Path | None = None, recbole_settings: dict[str, Any] | None = None,
        output: Path | None = None) -> dict[str, Any]:
    """Our pipeline, then each RecBole model ('NAME' or 'NAME:EPOCH_CAP'), on the same files. With
    ``merge``, the earlier report's RecBole entries that are not re-run are kept (same split only).
    With ``time_limit_s``, a trained RecBole model starts no epoch after that many seconds and its best
    epoch so far is tested (its entry says ``cut_by_time_limit``). ``split`` and ``assignments``
    (KIND.PARAM=VALUE) go to our pipeline; ``ours_run``, a finished run of it, is used instead of
    training one. ``recbole_settings`` go to every RecBole model (after this script's own)."""
    name = f"cinesync-{Path(data).name}"  # RecBole treats some names (ml-100k) as its own examples
    runs = Path(tempfile.mkdtemp(prefix="quality-"))
    if ours_run is not None:
        ours = reused_run(ours_run, data, split)
    else:
        command = [sys.executable, str(ROOT / "bench" / "train_eval.py"), "--data", data, "--runs-dir", str(runs),
                   "--split", split, *(f"--set={assignment}" for assignment in assignments or [])]
        text, seconds, rss = run_measured(command)
        ours = {**json.loads(text.strip().splitlines()[-1]), "wall_seconds": round(seconds, 1),
                "peak_rss_mib": round(rss)}
    manifest = json.loads((Path(ours["run_dir"]) / "manifest.json").read_text())
    report: dict[str, Any] = {
        "data": data, "split": ours["split"], "pipeline_split": split, "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.platform()}",
        "ours": ours, "recbole": {},
    }
    suffix = "" if split == "auto" else f"-{split}"  # the next-watch report does not replace the default one
    result_file = output or RESULTS / f"quality-{Path(data).name}{suffix}.json"
    if merge and result_file.exists():
        earlier = json.loads(result_file.read_text())
        if earlier["split"] != report["split"]:
            raise SystemExit(f"--merge: {result_file} holds another split ({earlier['split']}), not {report['split']}")
        rerun = {entry.partition(":")[0] for entry in models}
        report["recbole"] = {model: {"date": earlier["date"], **entry}
                             for model, entry in earlier["recbole"].items() if model not in rerun}
    if models:
        python = ensure_recbole()
        data_dir = runs / "recbole"
        (data_dir / name).mkdir(parents=True)
        by_time = bool(manifest["ordered"]) and manifest["split"]["test"] == "leave-one-out by time"
        users = write_atomic_files(Path(ours["run_dir"]), data_dir / name, name, timestamps=by_time)
        report["users"] = users
        # Read by sequential models only: the recent items they see, as many as ours see.
        common = {"history_length": manifest["pipeline"].get("history_length", 200), **(recbole_settings or {})}
        for entry in models:
            model, _, cap = entry.partition(":")
            if model == "EASE":  # closed form: one fit per λ of our grid, the best on validation
                tried = [recbole(python, data_dir, name, model, {**common, "reg_weight": l2, "epochs": 1})
                         for l2 in EASE_GRID]
                best = max(tried, key=lambda r: r["valid"]["ndcg@10"])
                best["seconds_to_best"] = round(sum(r["wall_seconds"] for r in tried), 1)
                result = best
            else:
                epochs = int(cap or max_epochs)
                overrides: dict[str, Any] = {**common, "epochs": epochs, "stopping_step": 10}
                if time_limit_s is not None:
                    overrides["time_limit_s"] = time_limit_s
                result = recbole(python, data_dir, name, model, overrides)
            if result["users"] != users:
                raise RuntimeError(f"RecBole {model} evaluated {result['users']} users, ours {users}")
            report["recbole"][model] = {"date": report["date"], **result}
    result_file.parent.mkdir(parents=True, exist_ok=True)
    result_file.write_text(json.dumps(report, indent=2))
    return report


def plot() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    reports = [json.loads(p.read_text()) for p in sorted(RESULTS.glob("quality-*.json"))]
    fig, axes = plt.subplots(1, len(reports), figsize=(5 * len(reports), 4), squeeze=False)
    for ax, report in zip(axes[0], reports, strict=True):
        bars = {f"ours {k}": v["ndcg@10"] for k, v in (report["ours"]["metrics"] or {}).items()}
        bars.update({f"RecBole {k}" + (" (cut)" if v.get("cut_by_time_limit") else ""): v["test"]["ndcg@10"]
                     for k, v in report["recbole"].items()})
        colors = ["tab:green" if k == "ours cascade" else "tab:blue" if k.startswith("ours") else "tab:gray"
                  for k in bars]
        ax.barh(list(bars), list(bars.values()), color=colors)
        pipeline = " (next-watch pipeline)" if report.get("pipeline_split", "auto") != "auto" else ""
        ax.set_title(f"{Path(report['data']).name}: {report['split']['test']}{pipeline}", fontsize=9)
        ax.set_xlabel("test NDCG@10")
        ax.invert_yaxis()
    fig.tight_layout()
    fig.savefig(ROOT / "docs" / "quality.png", dpi=110)


def setting(assignment: str) -> tuple[str, Any]:
    key, sep, value = assignment.partition("=")
    if not sep:
        raise SystemExit(f"--recbole-set {assignment!r}: expected KEY=VALUE")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", help="data set folder (or synthetic spec)")
    parser.add_argument("--split", choices=SPLITS, default="auto",
                        help="our pipeline's split, which RecBole gets too; loo-time: leave-one-out by time, "
                             "the next-watch benchmark, where RecBole's sequential models (SASRec, ...) run")
    parser.add_argument("--set", action="append", default=[], metavar="KIND.PARAM=VALUE", dest="assignments",
                        help="a hyper-parameter of our pipeline's kinds (repeatable)")
    parser.add_argument("--ours-run", type=Path, metavar="RUN_DIR",
                        help="a finished run of our pipeline (same data and --split) instead of training one")
    parser.add_argument("--recbole", default="EASE,BPR,LightGCN",
                        help="RecBole models, comma-separated, each NAME or NAME:EPOCH_CAP ('' for none)")
    parser.add_argument("--max-epochs", type=int, default=300, help="epoch cap of RecBole's trained models")
    parser.add_argument("--time-limit", type=float, metavar="SECONDS",
                        help="no epoch of a trained RecBole model starts after this; its best so far is tested")
    parser.add_argument("--merge", action="store_true",
                        help="keep the earlier report's RecBole entries for models not re-run (same split)")
    parser.add_argument("--recbole-set", action="append", default=[], metavar="KEY=VALUE",
                        help="a RecBole setting for every RecBole model (VALUE read as JSON, else text; repeatable)")
    parser.add_argument("--output", type=Path,
                        help="the report's file (default: docs/bench/quality-<data set>[-<split>].json)")
    parser.add_argument("--plot", action="store_true", help="draw docs/quality.png from docs/bench/quality-*.json")
    args = parser.parse_args()
    if args.data:
        report = run(args.data, [m for m in args.recbole.split(",") if m], args.max_epochs, merge=args.merge,
                     time_limit_s=args.time_limit, split=args.split, assignments=args.assignments,
                     ours_run=args.ours_run, recbole_settings=dict(map(setting, args.recbole_set)),
                     output=args.output)
        print(json.dumps(report, indent=2))
    if args.plot:
        try:
            plot()
        except ModuleNotFoundError:  # matplotlib lives in the benchmark's venv, not the product's
            subprocess.run([str(ensure_recbole()), __file__, "--plot"], check=True)


if __name__ == "__main__":
    main()
