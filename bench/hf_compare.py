#!/usr/bin/env python3
"""updp and Hugging Face transformers side by side on the same BLIP-2 checkpoint.

Loads one checkpoint folder (config.json + model.safetensors, e.g. from
`updp-make-test-model`) in transformers' Blip2ForImageTextRetrieval and in updp
(through the `updp-bench-encoder` binary), and reports

  * the max abs difference of the projected image query features
    (normalize(vision_projection(qformer(query_tokens, vit(pixels))))) for the same
    pixels, in float32;
  * images/s of the image path (ViT + Q-Former + projection) for both, at the same
    batch sizes and threads: transformers with eager and with SDPA attention, updp
    with its defaults (fused attention on LibTorch >= 2, CUDA graphs on CUDA).

Both sides start each batch from pixels in (pinned, on CUDA) host memory and leave
the features on the device; the timed loop synchronises once at its end.

  python3 bench/hf_compare.py --model_dir DIR --updp build/updp-bench-encoder \
      --device cpu --threads 2 --batch_sizes 8 --out results.json
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import torch
from safetensors.torch import load_file, save_file


def log(*a):
    print(*a, flush=True)


def load_hf(model_dir, device, dtype, attn):
    from transformers import Blip2ForImageTextRetrieval

    kwargs = {"attn_implementation": attn}
    try:
        m = Blip2ForImageTextRetrieval.from_pretrained(model_dir, dtype=dtype, **kwargs)
    except TypeError:  # transformers < 4.56 names it torch_dtype
        m = Blip2ForImageTextRetrieval.from_pretrained(model_dir, torch_dtype=dtype, **kwargs)
    return m.to(device).eval()


def hf_image_query_features(m, pixels):
    """Blip2ForImageTextRetrieval's image path with use_image_text_matching_head=False."""
    vit_dtype = m.vision_model.embeddings.patch_embedding.weight.dtype
    image_embeds = m.vision_model(pixel_values=pixels.to(vit_dtype), return_dict=True).last_hidden_state
    mask = torch.ones(image_embeds.shape[:-1], dtype=torch.long, device=image_embeds.device)
    query_tokens = m.query_tokens.expand(image_embeds.shape[0], -1, -1)
    q = m.qformer(query_embeds=query_tokens, encoder_hidden_states=image_embeds,
                  encoder_attention_mask=mask, return_dict=True).last_hidden_state
    q = q.to(m.vision_projection.weight.dtype)
    return torch.nn.functional.normalize(m.vision_projection(q), dim=-1)


def hf_image_feature(m, pixels):
    # The per-image feature updp stores: mean over queries, L2-normalised.
    return torch.nn.functional.normalize(hf_image_query_features(m, pixels).mean(1), dim=-1)


def sync(device):
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def time_hf(m, device, batch_size, image_size, batches):
    g = torch.Generator().manual_seed(0)
    px = torch.randn(batch_size, 3, image_size, image_size, generator=g)
    if device.startswith("cuda"):
        px = px.pin_memory()
    with torch.inference_mode():
        for _ in range(2):
            hf_image_feature(m, px.to(device, non_blocking=True))
        sync(device)
        t0 = time.perf_counter()
        for _ in range(batches):
            f = hf_image_feature(m, px.to(device, non_blocking=True))
            f.to("cpu", non_blocking=device.startswith("cuda"))
        sync(device)
    return batch_size * batches / (time.perf_counter() - t0)


def run_updp(args, extra, precision):
    """Runs updp-bench-encoder; returns True when it exited 0."""
    threads = args.threads if args.updp_threads is None else args.updp_threads
    cmd = [args.updp, "--model_dir", args.model_dir, "--device", args.device, "--precision", precision,
           "--threads", str(threads)] + extra
    log("$ " + " ".join(cmd))
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    log(r.stdout.rstrip())
    if r.returncode != 0:
        log(f"updp-bench-encoder exited {r.returncode}")
    return r.returncode == 0


def write(res, path):
    if path:
        with open(path, "w") as f:
            json.dump(res, f, indent=2)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model_dir", required=True)
    ap.add_argument("--updp", required=True, help="path to updp-bench-encoder")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--precision", default="fp32", help="timing dtype of the ViT: fp32 | bf16")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--updp_threads", type=int, default=None,
                    help="updp's --threads if it differs (0: LibTorch's default; the Debian LibTorch 1.13 "
                         "build runs 1 intra-op thread and lets OpenBLAS use every core)")
    ap.add_argument("--batch_sizes", default="8")
    ap.add_argument("--batches", type=int, default=3)
    ap.add_argument("--compare_batch", type=int, default=4)
    ap.add_argument("--attn", default="eager,sdpa", help="transformers attention implementations to time")
    ap.add_argument("--tolerance", type=float, default=1e-3, help="max abs difference allowed (fp32)")
    ap.add_argument("--out", default="", help="write the results as JSON here")
    ap.add_argument("--save_dir", default="", help="keep the pixels and the fp32 reference features here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    batch_sizes = [int(b) for b in args.batch_sizes.split(",") if b]
    import transformers

    res = {"device": args.device, "threads": args.threads, "precision": args.precision,
           "torch": torch.__version__, "transformers": transformers.__version__,
           "model_dir": args.model_dir, "batch_sizes": batch_sizes}
    if args.device.startswith("cuda"):
        res["gpu"] = torch.cuda.get_device_name(0)
    tmp = tempfile.mkdtemp(prefix="updp-hf-")
    try:
        return compare(args, res, tmp, batch_sizes)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def compare(args, res, tmp, batch_sizes):

    # 1. Numerics: same pixels, IEEE float32 on both sides (no TF32 anywhere).
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    m = load_hf(args.model_dir, args.device, torch.float32, "eager")
    size = m.config.vision_config.image_size
    g = torch.Generator().manual_seed(1234)
    pixels = torch.randn(args.compare_batch, 3, size, size, generator=g)
    with torch.inference_mode():
        ref = hf_image_query_features(m, pixels.to(args.device)).float().cpu()
        ref_feat = hf_image_feature(m, pixels.to(args.device)).float().cpu()
    del m
    save_file({"pixel_values": pixels.contiguous()}, os.path.join(tmp, "pixels.safetensors"))
    if args.save_dir:
        os.makedirs(args.save_dir, exist_ok=True)
        save_file({"pixel_values": pixels.contiguous()}, os.path.join(args.save_dir, "pixels.safetensors"))
        save_file({"image_embeds_proj": ref.contiguous(), "image_feature": ref_feat.contiguous()},
                  os.path.join(args.save_dir, "reference_fp32.safetensors"))
    feats = os.path.join(tmp, "updp.safetensors")
    res["fp32_within_tolerance"] = False
    if run_updp(args, ["--pixels_in", os.path.join(tmp, "pixels.safetensors"), "--features_out", feats,
                       "--batches", "0"], "fp32"):
        got = load_file(feats)
        diff = (got["image_embeds_proj"] - ref).abs().max().item()
        diff_feat = (got["image_feature"] - ref_feat).abs().max().item()
        res["fp32_max_abs_diff_image_embeds_proj"] = diff
        res["fp32_max_abs_diff_image_feature"] = diff_feat
        res["fp32_within_tolerance"] = diff <= args.tolerance and diff_feat <= args.tolerance
        log(f"fp32 max |updp - transformers|: image_embeds_proj {diff:.3e}, image feature {diff_feat:.3e} "
            f"(tolerance {args.tolerance:.0e}) {'ok' if res['fp32_within_tolerance'] else 'FAIL'}")
    else:
        res["error"] = "updp-bench-encoder failed on the fp32 comparison"
    write(res, args.out)
    # Each side's own defaults from here on (LibTorch lets cuDNN use TF32 by default).
    torch.backends.cudnn.allow_tf32 = True

    # 2. Throughput.
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[args.precision]
    res["hf"] = {}
    if args.batches > 0:
        for attn in [a for a in args.attn.split(",") if a]:
            try:
                m = load_hf(args.model_dir, args.device, dtype, attn)
                res["hf_qformer_dtype"] = str(m.qformer.layernorm.weight.dtype)
                res["hf"][attn] = {}
                for b in batch_sizes:
                    ips = time_hf(m, args.device, b, size, args.batches)
                    res["hf"][attn][str(b)] = ips
                    log(f"transformers {attn:5s} {args.precision} batch {b}: {ips:.1f} images/s")
                del m
            except Exception as e:  # keep what was measured
                log(f"transformers {attn}: {type(e).__name__}: {e}")
                res.setdefault("hf_errors", {})[attn] = f"{type(e).__name__}: {e}"
            if args.device.startswith("cuda"):
                torch.cuda.empty_cache()
            write(res, args.out)
        upj = os.path.join(tmp, "updp.json")
        if run_updp(args, ["--batch_sizes", ",".join(map(str, batch_sizes)), "--batches", str(args.batches),
                           "--json_out", upj], args.precision):
            with open(upj) as f:
                up = json.load(f)
            res["updp"] = {str(r["batch_size"]): r["images_per_s"] for r in up.get("model_only", [])}
            res["updp_run"] = up
            hf_ok = [a for a in res["hf"] if len(res["hf"][a]) == len(batch_sizes)]
            log(f"\n{'batch':>6} {'updp':>10} " + " ".join(f"{'hf-' + a:>10}" for a in hf_ok) + f" {'ratio':>8}")
            ratios = {}
            for b in batch_sizes:
                best = max(res["hf"][a][str(b)] for a in hf_ok) if hf_ok else float("nan")
                ratios[str(b)] = res["updp"][str(b)] / best
                log(f"{b:>6} {res['updp'][str(b)]:>10.1f} " +
                    " ".join(f"{res['hf'][a][str(b)]:>10.1f}" for a in hf_ok) + f" {ratios[str(b)]:>7.2f}x")
            res["ratio_updp_over_best_hf"] = ratios
        else:
            res["error"] = "updp-bench-encoder failed on the timing run"
    write(res, args.out)
    return 0 if res["fp32_within_tolerance"] and "error" not in res else 1


if __name__ == "__main__":
    sys.exit(main())
