#!/usr/bin/env python3
"""The labeling loop with the updp Python client: register a folder of images on the
server, embed them with BLIP-2, pick a batch to label, export it for Label Studio, then
pick the next batch with the labeled images left out.

    PYTHONPATH=build/python examples/labeling_loop.py --images /srv/pool --out picks
"""
import argparse
import json
import os

import updp

ap = argparse.ArgumentParser()
ap.add_argument("--addr", default="localhost:50051")
ap.add_argument("--images", required=True, help="an image folder on the server")
ap.add_argument("--name", default="pool")
ap.add_argument("--budget", type=int, default=10)
ap.add_argument("--out", default=".")
a = ap.parse_args()

with updp.Client(a.addr) as c:
    pool = c.register_images(a.name, a.images)
    print(f"registered {pool.num_items} images")
    c.embed(a.name, wait=True)  # BLIP-2 image features, with a progress bar on stderr
    first = c.select(a.name, "kmeans", a.budget, wait=True)
    tasks = os.path.join(a.out, "tasks.json")  # Label Studio, local files served from the pool
    c.export(first, "labelstudio", tasks, prefix="/data/local-files/?d=",
             relative_to=pool.source_path)
    print(f"{a.budget} images to label: {tasks}")
    labeled = [t["data"]["item_id"] for t in json.load(open(tasks))]  # ... once labeled
    second = c.select(a.name, "kmeans", a.budget, labeled=labeled, wait=True)
    for row in c.selection(second):
        print(row.rank, row.item_id, row.cluster)
