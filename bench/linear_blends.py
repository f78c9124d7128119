"""Benchmark (validation only): does a second model add to our EASE when blended with it?

Our EASE kind is fitted on the validation split (its grid chosen there); each other model's scores
and EASE's are standardised per user over the unseen items and added, ``ease + w · other``. The
weight is chosen on one seeded half of the validation users and the gain over EASE alone reported on
the other half, so no figure here is a choice made on the users it is measured on. The test split
is never read.

    .venv/bin/python -m bench.linear_blends --data ../shared/data/ml-1m
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable

import numpy as np
import torch
from torch.nn import functional as F

from recsys.data import load_dataset
from recsys.data.splits import Split, make_protocol
from recsys.kinds import create
from recsys.kinds.ease import Ease, ease_weights, gram_of, history_matrix
from recsys.metrics import K, per_user_metrics, top_k_excluding
from recsys.pipeline import catalog_of

WEIGHTS = (0.05, 0.1, 0.2, 0.3, 0.5)


def rp3beta(history: np.ndarray, alpha: float, beta: float) -> np.ndarray:
    """RP3beta's item × item weights (Paudel et al. 2017): two random-walk steps, powered by alpha,
    each target divided by its popularity ** beta."""
    counts = history.sum(axis=0)
    user_to_item = history / np.maximum(history.sum(axis=1, keepdims=True), 1.0)
    item_to_user = history.T / np.maximum(counts[:, None], 1.0)
    weights = (item_to_user @ user_to_item) ** alpha / np.maximum(counts, 1.0)[None, :] ** beta
    np.fill_diagonal(weights, 0.0)
    return weights


def ials(history: np.ndarray, *, factors: int, alpha: float, l2: float, sweeps: int, seed: int = 0) -> np.ndarray:
    """Implicit ALS (Hu et al. 2008, confidence 1 + alpha, frequency-scaled l2 as Rendle et al.
    2022): the user × item score matrix after ``sweeps`` alternating exact solves."""
    rng = np.random.default_rng(seed)
    users = rng.normal(0, 0.01, (history.shape[0], factors))
    items = rng.normal(0, 0.01, (history.shape[1], factors))
    rows = [np.flatnonzero(row) for row in history]
    columns = [np.flatnonzero(column) for column in history.T]

    def solve(fixed: np.ndarray, lists: list[np.ndarray]) -> np.ndarray:
        gram = fixed.T @ fixed
        out = np.zeros((len(lists), factors))
        for index, observed in enumerate(lists):
            vectors = fixed[observed]
            system = gram + alpha * vectors.T @ vectors + l2 * (len(observed) + 1) * np.eye(factors)
            out[index] = np.linalg.solve(system, (1 + alpha) * vectors.sum(axis=0))
        return out

    for _ in range(sweeps):
        users = solve(items, rows)
        items = solve(users, columns)
    return users @ items.T


def mult_vae(history: np.ndarray, *, epochs: int, hidden: int = 600, latent: int = 200, dropout: float = 0.5,
             beta_max: float = 0.2, batch: int = 500, seed: int = 0) -> np.ndarray:
    """Mult-VAE (Liang et al. 2018, the paper's settings: [items-600-200-600-items], tanh, input
    dropout 0.5, KL weight annealed linearly to 0.2 over the run): the user × item logits, decoded
    from each user's mean latent. A fixed epoch count, so no validation item steers it."""
    torch.manual_seed(seed)
    rows, n_items = torch.from_numpy(history), history.shape[1]
    encoder = torch.nn.Sequential(torch.nn.Linear(n_items, hidden), torch.nn.Tanh(), torch.nn.Linear(hidden, 2 * latent))
    decoder = torch.nn.Sequential(torch.nn.Linear(latent, hidden), torch.nn.Tanh(), torch.nn.Linear(hidden, n_items))
    optimizer = torch.optim.Adam([*encoder.parameters(), *decoder.parameters()], lr=1e-3)

    def encode(batch_rows: torch.Tensor, training: bool) -> tuple[torch.Tensor, ...]:
        """(mean, log variance) of each row's latent."""
        return encoder(F.dropout(F.normalize(batch_rows, dim=1), dropout, training=training)).chunk(2, dim=1)

    steps, step = epochs * -(-len(rows) // batch), 0
    for _ in range(epochs):
        for indices in torch.randperm(len(rows)).split(batch):
            batch_rows = rows[indices]
            mean, log_variance = encode(batch_rows, True)
            latent_sample = mean + torch.randn_like(mean) * (0.5 * log_variance).exp()
            likelihood = (F.log_softmax(decoder(latent_sample), dim=1) * batch_rows).sum(1).mean()
            divergence = (-0.5 * (1 + log_variance - mean**2 - log_variance.exp()).sum(1)).mean()
            loss = -likelihood + beta_max * step / steps * divergence
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            step += 1
    with torch.no_grad():
        return decoder(encode(rows, False)[0]).numpy()


def standardised(scores: np.ndarray, exclude: list[np.ndarray]) -> np.ndarray:
    """Per row, (score - mean) / std over the row's items not in ``exclude``; excluded items get -inf."""
    scores = scores.astype(np.float64, copy=True)
    for row, items in zip(scores, exclude, strict=True):
        row[items] = np.nan
    scores = (scores - np.nanmean(scores, axis=1, keepdims=True)) / (np.nanstd(scores, axis=1, keepdims=True) + 1e-12)
    return np.nan_to_num(scores, nan=-np.inf)


def blend_report(ease: np.ndarray, other: np.ndarray, split: Split, users: np.ndarray, seed: int) -> dict[str, float]:
    """``other`` alone, and ease + w · other with w chosen on one half of ``users``, measured on the other."""
    exclude = [split.train_sequences[u] for u in users]
    relevant = [split.test_items[u] for u in users]

    def ndcg(scores: np.ndarray) -> np.ndarray:
        return per_user_metrics(top_k_excluding(scores, exclude, K), relevant, K)[f"ndcg@{K}"]

    choosing = np.random.default_rng(seed).random(len(users)) < 0.5
    base, ease_z, other_z = ndcg(ease), standardised(ease, exclude), standardised(other, exclude)
    blends = {w: ndcg(ease_z + w * other_z) for w in WEIGHTS}
    chosen = max(WEIGHTS, key=lambda w: float(blends[w][choosing].mean()))
    held = ~choosing
    return {f"alone_ndcg@{K}": round(float(ndcg(other).mean()), 4), "weight": chosen,
            f"ease_ndcg@{K}_held_half": round(float(base[held].mean()), 4),
            f"blend_ndcg@{K}_held_half": round(float(blends[chosen][held].mean()), 4),
            "ratio_held_half": round(float(blends[chosen][held].mean() / base[held].mean()), 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True)
    parser.add_argument("--seed", type=int, default=7, help="which half of the users chooses the weight")
    args = parser.parse_args()
    dataset = load_dataset(args.data)
    split = make_protocol(dataset).validation
    ease = create("ease", catalog_of(dataset))
    assert isinstance(ease, Ease)
    ease.fit(split)
    users = split.test_users()
    history = history_matrix(split.train_sequences, dataset.n_items)  # the validation split's training part
    gram = gram_of(history)
    ease_scores = ease.user_scores(split)(users)
    l2 = float(ease.chosen["l2"])
    others: dict[str, Callable[[], np.ndarray]] = {
        "rp3beta alpha 1.0 beta 0.5": lambda: history[users] @ rp3beta(history, 1.0, 0.5),
        "rp3beta alpha 0.8 beta 0.6": lambda: history[users] @ rp3beta(history, 0.8, 0.6),
        f"ease lambda {l2 / 10:g}": lambda: history[users] @ ease_weights(gram, l2 / 10),
        f"ease lambda {l2 * 5:g}": lambda: history[users] @ ease_weights(gram, l2 * 5),
        "ials 128 factors": lambda: ials(history, factors=128, alpha=1.0, l2=0.02, sweeps=12)[users],
        "mult-vae 200 epochs": lambda: mult_vae(history, epochs=200)[users],
    }
    report: dict[str, object] = {"data": args.data, "ease_chosen": ease.chosen}
    for name, scores in others.items():
        started = time.perf_counter()
        report[name] = {**blend_report(ease_scores, scores(), split, users, args.seed),
                        "seconds": round(time.perf_counter() - started, 1)}
        print(name, report[name], flush=True)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
