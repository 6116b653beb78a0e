#!/usr/bin/env python3
"""How far updp's low-precision image features are from the float32 reference: runs
updp-bench-encoder on the pixels hf_compare.py saved (--save_dir) with each variant's
flags, and compares with transformers' float32 features of the same pixels (max abs
difference of the projected query features and of the stored per-image feature, and
the worst cosine similarity of the per-image feature)."""
import argparse
import json
import os
import subprocess
import sys

import torch
from safetensors.torch import load_file


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--updp", required=True)
    ap.add_argument("--model_dir", required=True)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--precision", default="bf16")
    ap.add_argument("--ref_dir", required=True, help="hf_compare.py --save_dir")
    ap.add_argument("--variants", default="default:", help="name:flags,name:flags (flags space-separated)")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    ref = load_file(os.path.join(a.ref_dir, "reference_fp32.safetensors"))
    res = {"precision": a.precision, "variants": {}}
    for spec in a.variants.split(","):
        name, _, flags = spec.partition(":")
        out = os.path.join(a.ref_dir, f"updp_{name}.safetensors")
        cmd = [a.updp, "--model_dir", a.model_dir, "--device", a.device, "--precision", a.precision,
               "--batches", "0", "--pixels_in", os.path.join(a.ref_dir, "pixels.safetensors"),
               "--features_out", out] + flags.split()
        print("$ " + " ".join(cmd), flush=True)
        r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        print(r.stdout.rstrip(), flush=True)
        if r.returncode != 0:
            res["variants"][name] = {"error": f"exit {r.returncode}"}
            continue
        got = load_file(out)
        d_proj = (got["image_embeds_proj"] - ref["image_embeds_proj"]).abs().max().item()
        d_feat = (got["image_feature"] - ref["image_feature"]).abs().max().item()
        cos = torch.nn.functional.cosine_similarity(got["image_feature"], ref["image_feature"], dim=-1).min().item()
        res["variants"][name] = {"flags": flags, "max_abs_diff_image_embeds_proj": d_proj,
                                 "max_abs_diff_image_feature": d_feat, "min_cosine_image_feature": cos}
        print(f"{name}: max|diff| proj {d_proj:.3e}, feature {d_feat:.3e}, min cosine {cos:.6f}", flush=True)
    with open(a.out, "w") as f:
        json.dump(res, f, indent=2)
    return 0 if all("error" not in v for v in res["variants"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
