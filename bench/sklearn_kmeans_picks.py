#!/usr/bin/env python3
"""scikit-learn's KMeans nearest-to-centroid picks, for `updp-eval --external_picks`.

The reference that updp's `kmeans` strategy is measured against (docs/EVALUATION.md,
"k-means against scikit-learn"). Reads the train features that
`updp-eval --save_features DIR` wrote, L2-normalises them (updp selects in cosine
geometry on unit-norm features), runs

    KMeans(n_clusters=B, init="k-means++", n_init=1, random_state=seed)  # default tol, max_iter

for every budget B and seed, and for each centroid picks the nearest train row, with
collisions resolved as updp's kmeans does (all (distance, centroid, row) pairs of each
centroid's nearest rows in increasing distance; a pair is taken when neither its centroid
nor its row is taken yet). Writes CSV rows name,budget,seed,index.

n_init=1: scikit-learn's own default for k-means++ since 1.4 (n_init="auto"), and what
updp does (one k-means++ seeding, then Lloyd); written out so older versions do the same.

scikit-learn is not a dependency of updp. To run this script:

    python3 -m venv ~/.cache/updp-sklearn-venv
    ~/.cache/updp-sklearn-venv/bin/pip install scikit-learn
    build/updp-eval --fashion_mnist --features pca --save_features /tmp/fmnist-pca \\
        --strategies= --budgets 10 --seeds 1
    ~/.cache/updp-sklearn-venv/bin/python bench/sklearn_kmeans_picks.py \\
        --features /tmp/fmnist-pca/train_features.npy --out /tmp/sklearn_picks.csv
"""

import argparse
import sys
import time

import numpy as np
import scipy
import sklearn
import threadpoolctl
from sklearn.cluster import KMeans


def distinct_nearest(x, centroids, top=8):
    """Nearest distinct row per centroid (updp's MatchDistinct rule on the top rows)."""
    # Squared distances, float64; x and the centroids are small (N x D, B x D).
    d = (x * x).sum(1)[:, None] - 2.0 * x @ centroids.T + (centroids * centroids).sum(1)[None, :]
    k = centroids.shape[0]
    while True:
        t = min(top, x.shape[0])
        rows = np.argpartition(d, t - 1, axis=0)[:t]  # [t, k]
        pairs = sorted((d[r, c], c, r) for c in range(k) for r in rows[:, c])
        pick, used = [-1] * k, set()
        for _, c, r in pairs:
            if pick[c] < 0 and r not in used:
                pick[c] = int(r)
                used.add(r)
        if min(pick) >= 0 or t == x.shape[0]:
            return pick
        top *= 4  # a centroid lost all its top rows to others: look further


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--features", required=True, help="train_features.npy [N, D]")
    ap.add_argument("--out", required=True, help="CSV to write")
    ap.add_argument("--name", default="sklearn-kmeans", help="strategy name in the CSV")
    ap.add_argument("--budgets", default="10,20,50")
    ap.add_argument("--seeds", type=int, default=5, help="seeds 0..n-1 (random_state)")
    ap.add_argument("--n_init", type=int, default=1)
    a = ap.parse_args()

    print(f"python {sys.version.split()[0]}, numpy {np.__version__}, scipy {scipy.__version__}, "
          f"scikit-learn {sklearn.__version__}, threadpoolctl {threadpoolctl.__version__}",
          file=sys.stderr)
    x = np.load(a.features).astype(np.float64)
    x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    defaults = KMeans().get_params()
    print(f"features {x.shape}, L2-normalised, float64; KMeans n_init={a.n_init} "
          f"(default {defaults['n_init']!r}), tol={defaults['tol']}, "
          f"max_iter={defaults['max_iter']}, algorithm={defaults['algorithm']}", file=sys.stderr)
    with open(a.out, "w") as out:
        out.write("name,budget,seed,index\n")
        for b in (int(s) for s in a.budgets.split(",")):
            for seed in range(a.seeds):
                t0 = time.time()
                km = KMeans(n_clusters=b, init="k-means++", n_init=a.n_init, random_state=seed).fit(x)
                picks = distinct_nearest(x, km.cluster_centers_)
                for r in picks:
                    out.write(f"{a.name},{b},{seed},{r}\n")
                print(f"B={b} seed={seed}: {km.n_iter_} iterations, inertia {km.inertia_:.2f}, "
                      f"{time.time() - t0:.1f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
