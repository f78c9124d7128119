"""Side-by-side quality: our pipeline (every kind and the served cascade) against RecBole 1.2.1 on
exactly the same train / validation / test files, with wall time to the best validation epoch and
peak RSS per model (each runs in its own process).

RecBole is installed by this script into its own venv (.venv-recbole), never into the product's.
Results go to docs/bench/quality-<data set>.json; --plot draws docs/quality.png from all of them.

    .venv/bin/python bench/quality.py --data ../shared/data/ml-100k --recbole EASE,BPR,LightGCN
    .venv/bin/python bench/quality.py --data ../shared/data/anime --recbole BPR:500 --merge
    .venv/bin/python bench/quality.py --data ../shared/data/ml-1m --recbole LightGCN:400 --time-limit 4500 --merge
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


def write_atomic_files(run_dir: Path, folder: Path, name: str) -> None:
    """Our validation split's train part, its held-out items, and the test items, as RecBole files."""
    with np.load(run_dir / "split.npz") as arrays:
        parts = {
            "train": (arrays["validation_train"], arrays["validation_train_lengths"]),
            "valid": (arrays["validation_held"], arrays["validation_held_lengths"]),
            "test": (arrays["test_held"], arrays["test_held_lengths"]),
        }
        for part, (items, lengths) in parts.items():
            users = np.repeat(np.arange(len(lengths)), lengths)
            lines = ["user_id:token\titem_id:token", *(f"{u}\t{i}" for u, i in zip(users, items, strict=True))]
            (folder / f"{name}.{part}.inter").write_text("\n".join(lines) + "\n")


def recbole(python: Path, data_dir: Path, name: str, model: str, overrides: dict[str, Any]) -> dict[str, Any]:
    text, seconds, rss = run_measured(  # in data_dir: RecBole writes log/ and log_tensorboard/ where it runs
        [str(python), str(ROOT / "bench" / "recbole_runner.py"), str(data_dir), name, model, json.dumps(overrides)],
        cwd=data_dir,
    )
    result = json.loads(text.strip().splitlines()[-1])
    return {**result, "wall_seconds": round(seconds, 1), "peak_rss_mib": round(rss)}


def run(data: str, models: list[str], max_epochs: int, *, merge: bool,
        time_limit_s: float | None = None) -> dict[str, Any]:
    """Our pipeline, then each RecBole model ('NAME' or 'NAME:EPOCH_CAP'), on the same files. With
    ``merge``, the earlier report's RecBole entries that are not re-run are kept (same split only).
    With ``time_limit_s``, a trained RecBole model starts no epoch after that many seconds and its best
    epoch so far is tested (its entry says ``cut_by_time_limit``)."""
    name = f"cinesync-{Path(data).name}"  # RecBole treats some names (ml-100k) as its own examples
    runs = Path(tempfile.mkdtemp(prefix="quality-"))
    text, seconds, rss = run_measured([sys.executable, str(ROOT / "bench" / "train_eval.py"), "--data", data,
                                       "--runs-dir", str(runs)])
    ours = json.loads(text.strip().splitlines()[-1])
    report: dict[str, Any] = {
        "data": data, "split": ours["split"], "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.platform()}",
        "ours": {**ours, "wall_seconds": round(seconds, 1), "peak_rss_mib": round(rss)}, "recbole": {},
    }
    result_file = RESULTS / f"quality-{Path(data).name}.json"
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
        write_atomic_files(Path(ours["run_dir"]), data_dir / name, name)
        for entry in models:
            model, _, cap = entry.partition(":")
            if model == "EASE":  # closed form: one fit per λ of our grid, the best on validation
                tried = [recbole(python, data_dir, name, model, {"reg_weight": l2, "epochs": 1}) for l2 in EASE_GRID]
                best = max(tried, key=lambda r: r["valid"]["ndcg@10"])
                best["seconds_to_best"] = round(sum(r["wall_seconds"] for r in tried), 1)
                report["recbole"][model] = {"date": report["date"], **best}
            else:
                epochs = int(cap or max_epochs)
                overrides: dict[str, Any] = {"epochs": epochs, "stopping_step": 10}
                if time_limit_s is not None:
                    overrides["time_limit_s"] = time_limit_s
                report["recbole"][model] = {"date": report["date"], **recbole(python, data_dir, name, model, overrides)}
    RESULTS.mkdir(parents=True, exist_ok=True)
    result_file.write_text(json.dumps(report, indent=2))
    return report


def plot() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    reports = [json.loads(p.read_text()) for p in sorted(RESULTS.glob("quality-*.json"))]
    fig, axes = plt.subplots(1, len(reports), figsize=(5 * len(reports), 4), squeeze=False)
    for ax, report in zip(axes[0], reports, strict=True):
        bars = {f"ours {k}": v["ndcg@10"] for k, v in report["ours"]["metrics"].items()}
        bars.update({f"RecBole {k}" + (" (cut)" if v.get("cut_by_time_limit") else ""): v["test"]["ndcg@10"]
                     for k, v in report["recbole"].items()})
        colors = ["tab:green" if k == "ours cascade" else "tab:blue" if k.startswith("ours") else "tab:gray"
                  for k in bars]
        ax.barh(list(bars), list(bars.values()), color=colors)
        ax.set_title(f"{Path(report['data']).name}: {report['split']['test']}", fontsize=9)
        ax.set_xlabel("test NDCG@10")
        ax.invert_yaxis()
    fig.tight_layout()
    fig.savefig(ROOT / "docs" / "quality.png", dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", help="data set folder (or synthetic spec)")
    parser.add_argument("--recbole", default="EASE,BPR,LightGCN",
                        help="RecBole models, comma-separated, each NAME or NAME:EPOCH_CAP ('' for none)")
    parser.add_argument("--max-epochs", type=int, default=300, help="epoch cap of RecBole's trained models")
    parser.add_argument("--time-limit", type=float, metavar="SECONDS",
                        help="no epoch of a trained RecBole model starts after this; its best so far is tested")
    parser.add_argument("--merge", action="store_true",
                        help="keep the earlier report's RecBole entries for models not re-run (same split)")
    parser.add_argument("--plot", action="store_true", help="draw docs/quality.png from docs/bench/quality-*.json")
    args = parser.parse_args()
    if args.data:
        report = run(args.data, [m for m in args.recbole.split(",") if m], args.max_epochs, merge=args.merge,
                     time_limit_s=args.time_limit)
        print(json.dumps(report, indent=2))
    if args.plot:
        try:
            plot()
        except ModuleNotFoundError:  # matplotlib lives in the benchmark's venv, not the product's
            subprocess.run([str(ensure_recbole()), __file__, "--plot"], check=True)


if __name__ == "__main__":
    main()
