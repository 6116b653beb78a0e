#!/usr/bin/env python3
"""Writes the small seed corpora in fuzz/corpus/ (except prompt_artifact's, which
prompt_artifact_fuzz writes itself: UPDP_FUZZ_WRITE_SEEDS=DIR). Needs numpy and Pillow;
run once by hand, the output is committed. Usage: fuzz/make_seeds.py [fuzz/corpus]"""
import io
import json
import os
import shutil
import struct
import sys

import numpy as np
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "fuzz", "corpus")
TESTDATA = os.path.join(ROOT, "tests", "testdata")


def put(target, name, data):
    d = os.path.join(OUT, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


def npy(arr):
    b = io.BytesIO()
    np.save(b, arr)
    return b.getvalue()


def npy_raw(header, data=b"", major=1):
    prefix = 10 if major == 1 else 12
    h = header
    while (prefix + len(h) + 1) % 64:
        h += " "
    h += "\n"
    size = struct.pack("<H", len(h)) if major == 1 else struct.pack("<I", len(h))
    return b"\x93NUMPY" + bytes([major, 0]) + size + h.encode() + data


def safetensors(entries, data, metadata=None):
    header = dict(entries)
    if metadata:
        header["__metadata__"] = metadata
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + data


# .npy: every accepted dtype, 0-d, empty, 3-d, version 2.0, and near misses.
put("npy", "f4_3x4.npy", npy(np.arange(12, dtype="<f4").reshape(3, 4)))
put("npy", "f8_2x2.npy", npy(np.eye(2)))
put("npy", "f2_5.npy", npy(np.ones(5, dtype="<f2")))
put("npy", "i8_2x3.npy", npy(np.arange(6, dtype="<i8").reshape(2, 3)))
put("npy", "i4_0d.npy", npy(np.int32(7)))
put("npy", "empty_0x8.npy", npy(np.zeros((0, 8), dtype="<f4")))
put("npy", "f4_2x2x2.npy", npy(np.zeros((2, 2, 2), dtype="<f4")))
put("npy", "v2.npy", npy_raw("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }",
                             b"\0" * 8, major=2))
put("npy", "truncated.npy", npy_raw("{'descr': '<f4', 'fortran_order': False, 'shape': (4, 4), }",
                                    b"\0" * 12))
put("npy", "fortran.npy", npy_raw("{'descr': '<f4', 'fortran_order': True, 'shape': (1,), }",
                                  b"\0" * 4))

# safetensors: several dtypes, metadata, empty and misaligned tensors.
put("safetensors", "f32_u8.safetensors", safetensors(
    {"a": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]},
     "b": {"dtype": "U8", "shape": [3], "data_offsets": [16, 19]}},
    np.arange(4, dtype="<f4").tobytes() + b"\1\2\3", {"format": "pt"}))
put("safetensors", "mixed.safetensors", safetensors(
    {"h": {"dtype": "F16", "shape": [2], "data_offsets": [0, 4]},
     "bf": {"dtype": "BF16", "shape": [1, 1], "data_offsets": [4, 6]},
     "odd": {"dtype": "I64", "shape": [1], "data_offsets": [7, 15]},
     "e": {"dtype": "F64", "shape": [0, 3], "data_offsets": [15, 15]},
     "flag": {"dtype": "BOOL", "shape": [], "data_offsets": [15, 16]}},
    b"\0" * 16))
put("safetensors", "empty_header.safetensors", safetensors({}, b""))
put("safetensors", "bad_offsets.safetensors", safetensors(
    {"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 32]}}, b"\0" * 16))

# config.json: the tiny fixture, the defaults (vit-g), and near misses.
tiny = json.load(open(os.path.join(TESTDATA, "blip2-tiny-a", "config.json")))
put("blip2_config", "tiny.json", json.dumps(tiny, indent=1))
put("blip2_config", "defaults.json", json.dumps({"model_type": "blip-2"}))
bad = json.loads(json.dumps(tiny))
bad["vision_config"]["num_attention_heads"] = 5
put("blip2_config", "indivisible.json", json.dumps(bad))
bad = json.loads(json.dumps(tiny))
bad["qformer_config"]["hidden_act"] = "relu"
put("blip2_config", "relu.json", json.dumps(bad))
put("blip2_config", "not_blip2.json", '{"model_type": "bert", "vision_config": []}')

# Manifests: plain paths, id,path CSV with a header, comments, missing files, escapes.
put("manifest", "plain.txt", "a.jpg\nb.png\n\n# comment\nsub/c.webp\n")
put("manifest", "csv.csv", "id,path\nx,a.jpg\ny, sub/c.webp \nz,missing.jpg\n")
put("manifest", "escape.txt", "../../etc/passwd\nescape/hostname\n/etc/hosts\na.jpg")
put("manifest", "dup.csv", "1,a.jpg\n1,b.png\n")

# Images: the test images, other PNG modes, WebP, and JPEGs with an EXIF orientation.
for f in ("gradient_rgb_40x30.png", "gray_17x23.png", "pattern_rgb_64x48_q90.jpg"):
    shutil.copy(os.path.join(TESTDATA, "images", f), os.path.join(OUT, "image", f))
rng = np.random.default_rng(0)
rgb = Image.fromarray(rng.integers(0, 255, (9, 13, 3), dtype=np.uint8), "RGB")


def encode(img, fmt, **kw):
    b = io.BytesIO()
    img.save(b, fmt, **kw)
    return b.getvalue()


put("image", "rgba.png", encode(rgb.convert("RGBA"), "PNG"))
put("image", "palette.png", encode(rgb.convert("P"), "PNG"))
put("image", "gray16.png", encode(Image.fromarray(
    rng.integers(0, 65535, (5, 6), dtype=np.uint16)), "PNG"))
put("image", "interlaced_la.png", encode(rgb.convert("LA"), "PNG", interlace=1))
put("image", "lossy.webp", encode(rgb, "WEBP", quality=50))
put("image", "lossless_alpha.webp", encode(rgb.convert("RGBA"), "WEBP", lossless=True))
put("image", "gray.jpg", encode(rgb.convert("L"), "JPEG", quality=80))
put("image", "cmyk.jpg", encode(rgb.convert("CMYK"), "JPEG", quality=80))
for orientation in (3, 6, 8):
    exif = Image.Exif()
    exif[0x0112] = orientation
    put("image", f"exif_orient{orientation}.jpg",
        encode(rgb, "JPEG", quality=80, exif=exif.tobytes(), progressive=orientation == 6))
