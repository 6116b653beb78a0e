"""Shared by the deployment checks (check_k8s.py, check_images.py)."""
import os
import shutil
import subprocess

import yaml


def flag(args, name):
    """The last value of --name=VALUE in args (absl: the last one wins)."""
    val = None
    for a in args:
        if a.startswith("--" + name + "="):
            val = a.split("=", 1)[1]
    return val


def render(src, kustomization, fail):
    """{(kind, name): object} of `kubectl kustomize SRC/KUSTOMIZATION`."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        fail("kubectl not found (it renders the kustomizations; install kubectl)")
    rendered = subprocess.run([kubectl, "kustomize", os.path.join(src, kustomization)],
                              check=True, capture_output=True, text=True).stdout
    return {(d["kind"], d["metadata"]["name"]): d
            for d in yaml.safe_load_all(rendered) if d}
