#!/usr/bin/env python3
"""Collects bench/gpu/check.sh's per-step files into OUT/results.json and prints the
figures the GPU run is judged by, each against its goal."""
import argparse
import glob
import json
import os
import re


def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def parity(log_text):
    out, cur = {}, None
    for line in log_text.splitlines():
        m = re.match(r"=== \[(parity_\w+)\] ", line)
        if m and "exit" not in line:
            cur = m.group(1)
            out[cur] = {}
            continue
        m = re.match(r"(\w+)\s+max\|diff\| = ([0-9.e+-]+)", line)
        if cur and m:
            out[cur][m.group(1)] = float(m.group(2))
    return {k: {"max_abs_diff": max(v.values()) if v else None, "tensors": v} for k, v in out.items()}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--seconds", type=float, default=0)
    ap.add_argument("--dry_run", type=int, default=0)
    ap.add_argument("--work", required=True, help="folder with steps.jsonl and server.json")
    ap.add_argument("--quiet", action="store_true", help="write results.json only")
    a = ap.parse_args()
    steps = []
    try:
        with open(os.path.join(a.work, "steps.jsonl")) as f:
            steps = [json.loads(l) for l in f if l.strip()]
    except OSError:
        pass
    with open(os.path.join(a.out, "check.log"), errors="replace") as f:
        log_text = f.read()
    j = os.path.join(a.work, "json")
    r = {"dry_run": bool(a.dry_run), "wall_s": a.seconds, "steps": steps, "parity": parity(log_text),
         "hf_compare": load(os.path.join(j, "hf_compare.json")),
         "variants": {os.path.basename(p)[8:-5]: load(p) for p in glob.glob(os.path.join(j, "variant_*.json"))},
         "bf16_accuracy": load(os.path.join(j, "bf16_accuracy.json")),
         "end_to_end": load(os.path.join(j, "end_to_end.json")),
         "server": load(os.path.join(j, "server.json"))}
    goals = []
    hc = r["hf_compare"] or {}
    if "fp32_max_abs_diff_image_embeds_proj" in hc:
        d = hc["fp32_max_abs_diff_image_embeds_proj"]
        goals.append(("fp32 max |updp - transformers| (projected image query features)", f"{d:.2e}", d <= 1e-3, "<= 1e-3"))
    if hc.get("updp"):
        best = max(hc["updp"].values())
        goals.append(("updp model-only images/s (best batch)", f"{best:.1f}", best >= 900, ">= 900 (bf16, H200)"))
        ratios = hc.get("ratio_updp_over_best_hf", {})
        if ratios:
            worst = min(ratios.values())
            goals.append(("updp / best transformers (worst batch)", f"{worst:.2f}x", worst >= 1.2, ">= 1.2x"))
    e2e = r["end_to_end"] or {}
    if e2e.get("end_to_end") and e2e.get("model_only"):
        frac = e2e["end_to_end"]["images_per_s"] / e2e["model_only"][0]["images_per_s"]
        goals.append(("end to end / model only", f"{frac:.2f} ({e2e['end_to_end']['images_per_s']:.0f} vs "
                      f"{e2e['model_only'][0]['images_per_s']:.0f} img/s; decode alone "
                      f"{e2e['end_to_end']['decode_only_images_per_s']:.0f} img/s)", frac >= 0.8, ">= 0.8"))
    for k, v in r["parity"].items():
        if v["max_abs_diff"] is not None:
            goals.append((k, f"{v['max_abs_diff']:.2e}", None, "see tolerance"))
    r["goals"] = [{"what": g[0], "value": g[1], "met": g[2], "goal": g[3]} for g in goals]
    with open(os.path.join(a.out, "results.json"), "w") as f:
        json.dump(r, f, indent=2)
    if a.quiet:
        return
    print("== GPU check summary" + (" (DRY RUN on CPU: sizes and goals do not apply)" if a.dry_run else ""))
    for s in steps:
        print(f"  step {s['step']:<22} rc={s['rc']} {s['seconds']:>8.1f}s")
    for g in goals:
        met = "" if g[2] is None else ("MET" if g[2] else "NOT MET")
        print(f"  {g[0]}: {g[1]}  [{g[3]}] {met}")
    for k, v in sorted(r["variants"].items()):
        if v and v.get("model_only"):
            print(f"  variant {k}: {v['model_only'][0]['images_per_s']:.1f} images/s at batch {v['model_only'][0]['batch_size']}")
    if r["bf16_accuracy"]:
        for k, v in r["bf16_accuracy"]["variants"].items():
            print(f"  accuracy {k}: " + json.dumps(v))
    if r["server"]:
        print("  server: " + json.dumps(r["server"]))


if __name__ == "__main__":
    main()
