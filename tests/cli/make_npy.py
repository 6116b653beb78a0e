#!/usr/bin/env python3
"""Writes DIR/emb.npy (N random float32 vectors of dimension DIM, NumPy format 1.0,
Gaussian with seed SEED) and DIR/ids.txt (v000, v001, ...), without NumPy.

Usage: make_npy.py DIR [N] [DIM] [SEED]   (defaults 200, 8, 5)
"""
import random
import struct
import sys


def main():
    d = sys.argv[1]
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 200
    dim = int(sys.argv[3]) if len(sys.argv) > 3 else 8
    rng = random.Random(int(sys.argv[4]) if len(sys.argv) > 4 else 5)
    header = "{'descr': '<f4', 'fortran_order': False, 'shape': (%d, %d), }" % (n, dim)
    header += " " * (63 - (10 + len(header)) % 64) + "\n"
    with open(d + "/emb.npy", "wb") as f:
        f.write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode())
        for _ in range(n):
            f.write(struct.pack("<%df" % dim, *[rng.gauss(0, 1) for _ in range(dim)]))
    with open(d + "/ids.txt", "w") as f:
        f.write("".join("v%03d\n" % i for i in range(n)))


if __name__ == "__main__":
    main()
