#!/usr/bin/env python3
"""Checks the rendered Kubernetes manifests against what the binaries expect.

Renders deploy/k8s/embed-job with `kubectl kustomize` (the server of ../base plus the
shard Job) and checks the scale-out contract:
  - the Job is Indexed, its completions equal updp-embed-shard's --shards, parallelism
    is at most completions, retries are per index, restartPolicy is Never;
  - every pod asks one nvidia.com/gpu, runs non-root (uid 10001) on a read-only root
    file system with no privilege escalation and /tmp writable;
  - --out lies on the shared volume, a ReadWriteMany claim the server mounts at the
    same path and allows as a dataset root (its last --allowed_roots);
  - images are mounted at the same path in the workers as in the server (the items
    file holds the server's paths), and so is the model; both use one --batch_size.
Usage: check_k8s.py SOURCE_DIR
"""
import sys

from manifests import flag, render


def fail(msg):
    print("check_k8s: FAIL: " + msg, file=sys.stderr)
    sys.exit(1)


def mounts(container, pod_spec):
    """mountPath -> (volume spec, readOnly) for a container."""
    vols = {v["name"]: v for v in pod_spec.get("volumes", [])}
    out = {}
    for m in container.get("volumeMounts", []):
        if m["name"] not in vols:
            fail(f"{container['name']}: mount {m['mountPath']} names no volume {m['name']}")
        out[m["mountPath"]] = (vols[m["name"]], m.get("readOnly", False))
    return out


def check_pod_security(what, pod_spec, container):
    sc = pod_spec.get("securityContext", {})
    if not sc.get("runAsNonRoot") or sc.get("runAsUser") != 10001:
        fail(f"{what}: must run non-root as uid 10001 (the image's user)")
    csc = container.get("securityContext", {})
    if not csc.get("readOnlyRootFilesystem"):
        fail(f"{what}: root file system must be read-only")
    if csc.get("allowPrivilegeEscalation", True):
        fail(f"{what}: allowPrivilegeEscalation must be false")
    if "ALL" not in csc.get("capabilities", {}).get("drop", []):
        fail(f"{what}: must drop all capabilities")
    if "/tmp" not in mounts(container, pod_spec):
        fail(f"{what}: /tmp must be a writable volume (the root is read-only)")


def main():
    src = sys.argv[1]
    by_kind = {}
    for (kind, name), d in render(src, "deploy/k8s/embed-job", fail).items():
        by_kind.setdefault(kind, {})[name] = d
    job = by_kind.get("Job", {}).get("updp-embed") or fail("no Job updp-embed")
    server = by_kind.get("Deployment", {}).get("updp") or fail("no Deployment updp")
    claims = by_kind.get("PersistentVolumeClaim", {})

    spec = job["spec"]
    if spec.get("completionMode") != "Indexed":
        fail("the Job must be completionMode: Indexed (JOB_COMPLETION_INDEX is the shard)")
    pod = spec["template"]["spec"]
    if pod.get("restartPolicy") != "Never":
        fail("restartPolicy must be Never (retries are per index, podFailurePolicy)")
    if "backoffLimitPerIndex" not in spec:
        fail("backoffLimitPerIndex must be set (a failing shard must not use up the others')")
    (worker,) = [c for c in pod["containers"] if c["name"] == "embed"]
    if worker.get("command") != ["updp-embed-shard"]:
        fail("the worker must run updp-embed-shard")
    args = worker.get("args", [])
    shards = flag(args, "shards")
    if shards is None or int(shards) != spec["completions"]:
        fail(f"--shards={shards} but completions={spec['completions']}: they must be equal")
    if spec.get("parallelism", 1) > spec["completions"]:
        fail("parallelism above completions leaves GPUs idle")
    if flag(args, "shard") is not None:
        fail("--shard must not be set: each pod takes JOB_COMPLETION_INDEX")
    if worker["resources"]["limits"].get("nvidia.com/gpu") != 1:
        fail("each worker pod must ask exactly one nvidia.com/gpu")
    check_pod_security("worker", pod, worker)

    wmounts = mounts(worker, pod)
    out = flag(args, "out")
    items = flag(args, "items")
    shared = [p for p in wmounts if out.startswith(p.rstrip("/") + "/")]
    if not shared:
        fail(f"--out={out} is on no mounted volume")
    shared_path = shared[0]
    vol, ro = wmounts[shared_path]
    if ro:
        fail(f"{shared_path} must be writable by the workers")
    claim = vol.get("persistentVolumeClaim", {}).get("claimName")
    if claim not in claims or "ReadWriteMany" not in claims[claim]["spec"]["accessModes"]:
        fail(f"{shared_path} must be a ReadWriteMany claim (got {claim})")
    if not items.startswith(shared_path.rstrip("/") + "/"):
        fail(f"--items={items} must be on the shared volume")

    spod = server["spec"]["template"]["spec"]
    (srv,) = spod["containers"]
    smounts = mounts(srv, spod)
    if shared_path not in smounts or \
            smounts[shared_path][0].get("persistentVolumeClaim", {}).get("claimName") != claim:
        fail(f"the server must mount claim {claim} at {shared_path} (it reads the chunks in place)")
    roots = (flag(srv.get("args", []), "allowed_roots") or "").split(",")
    if shared_path not in roots:
        fail(f"the server's --allowed_roots {roots} must include {shared_path}")
    for path in ("/images", "/models"):
        if path not in wmounts or path not in smounts:
            fail(f"{path} must be mounted in the server and in the workers")
        wc = wmounts[path][0].get("persistentVolumeClaim", {}).get("claimName")
        sc = smounts[path][0].get("persistentVolumeClaim", {}).get("claimName")
        if wc != sc:
            fail(f"{path}: workers mount {wc}, the server {sc}; items hold the server's paths")
    wbatch = flag(args, "batch_size") or "32"
    sbatch = flag(srv.get("args", []), "batch_size") or "32"
    if wbatch != sbatch:
        fail(f"--batch_size {wbatch} in the workers, {sbatch} in the server: the features "
             "are byte-identical only with the same batches")
    model_dir = flag(args, "model_dir")
    if model_dir != flag(srv.get("args", []), "model_dir"):
        fail(f"--model_dir {model_dir} differs from the server's: the model identity must match")
    print(f"check_k8s: embed-job ok ({spec['completions']} shards, parallelism "
          f"{spec.get('parallelism', 1)}, shared {claim} at {shared_path})")


if __name__ == "__main__":
    main()
