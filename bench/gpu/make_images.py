#!/usr/bin/env python3
"""Writes COUNT photo-sized JPEG files (500x375, quality 90, like typical web photos)
with smooth gradients, shapes and noise, for end-to-end decode + model runs."""
import argparse
import os
from multiprocessing import Pool

import numpy as np
from PIL import Image, ImageDraw


def make(args):
    i, out = args
    rng = np.random.default_rng(i)
    w, h = 500, 375
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    base = np.stack([(x / w) * rng.uniform(80, 255), (y / h) * rng.uniform(80, 255),
                     np.full_like(x, rng.uniform(0, 255))], -1)
    img = Image.fromarray(np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8))
    d = ImageDraw.Draw(img)
    for _ in range(6):
        x0, y0 = rng.integers(0, w - 50), rng.integers(0, h - 50)
        d.ellipse([x0, y0, x0 + rng.integers(20, 200), y0 + rng.integers(20, 200)],
                  fill=tuple(int(c) for c in rng.integers(0, 255, 3)))
    img.save(os.path.join(out, f"img{i:06d}.jpg"), quality=90)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--count", type=int, default=1024)
    ap.add_argument("--workers", type=int, default=os.cpu_count())
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    have = {f for f in os.listdir(a.out) if f.endswith(".jpg")}
    todo = [(i, a.out) for i in range(a.count) if f"img{i:06d}.jpg" not in have]
    with Pool(max(1, a.workers)) as p:
        p.map(make, todo, chunksize=16)
    print(f"{a.count} JPEG files in {a.out}")


if __name__ == "__main__":
    main()
