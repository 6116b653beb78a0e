#!/usr/bin/env python3
"""docker-compose.yml and deploy/k8s agree with what the Dockerfiles build.

From each Dockerfile's runtime stage: EXPOSE (gRPC and metrics ports), USER (uid),
VOLUME, HEALTHCHECK and the ENTRYPOINT's --port/--metrics_port/--data_dir. Then:
  - compose: each updp service builds that Dockerfile, publishes exactly the exposed
    ports, mounts the image's volumes and /images read-only;
  - k8s (rendered with kubectl kustomize): the server's containerPorts are the exposed
    ports, its Service targets them, probes use the gRPC port, runAsUser is the image's
    uid, /data and /models are mounted (and /tmp, the root being read-only), the
    Prometheus annotation names the metrics port; the shard Job runs as the same uid.
With --built KIND=IMAGE (KIND cpu for Dockerfile, cuda for Dockerfile.cuda; repeatable)
the same checks also run against what a built image really has, read with
`buildah inspect` (scripts/image.sh builds them): its ExposedPorts, Volumes, User (uid:gid),
Healthcheck and Entrypoint, which must first agree with its Dockerfile. Compose's services
are checked against the image they build; Kubernetes against the CUDA image when built,
else the CPU one (the static check holds both Dockerfiles to the same ports, user,
volumes and health command). The Kubernetes group ids (runAsGroup, fsGroup) must be the
image's gid.
Usage: check_images.py SOURCE_DIR [--built cpu=localhost/updp:cpu] [--built cuda=...]
"""
import json
import subprocess
import os
import re
import shutil
import sys

import yaml
from manifests import flag, render


def fail(msg):
    print("check_images: FAIL: " + msg, file=sys.stderr)
    sys.exit(1)


def dockerfile(path):
    """The runtime stage's instructions (after the last FROM), continuation lines joined."""
    text = open(path).read().replace("\\\n", " ")
    stages = re.split(r"^FROM\s", text, flags=re.M)
    out = {"expose": set(), "volume": [], "user": None, "entrypoint": [], "healthcheck": None,
           "healthcheck_test": None}
    for line in stages[-1].splitlines():
        line = line.strip()
        if line.startswith("EXPOSE"):
            out["expose"] |= set(line.split()[1:])
        elif line.startswith("USER"):
            out["user"] = line.split()[1]
        elif line.startswith("VOLUME"):
            out["volume"] = yaml.safe_load(line[len("VOLUME"):].strip())
        elif line.startswith("ENTRYPOINT"):
            out["entrypoint"] = yaml.safe_load(line[len("ENTRYPOINT"):].strip())
        elif line.startswith("HEALTHCHECK"):
            out["healthcheck"] = line
            m = re.search(r"\sCMD\s+(\[.*\])\s*$", line)
            out["healthcheck_test"] = ["CMD"] + yaml.safe_load(m.group(1)) if m else None
    return out


def built_image(tag):
    """The same facts as dockerfile(), from a built image's configuration (buildah)."""
    buildah = shutil.which("buildah")
    if buildah is None:
        fail("buildah not found (needed for --built)")
    env = dict(os.environ, STORAGE_DRIVER=os.environ.get("STORAGE_DRIVER", "vfs"))
    r = subprocess.run([buildah, "inspect", "--type", "image", tag], capture_output=True,
                       text=True, env=env)
    if r.returncode != 0:
        fail(f"buildah inspect {tag}: {r.stderr.strip()}")
    c = json.loads(r.stdout)["Docker"]["config"]
    hc = (c.get("Healthcheck") or {}).get("Test") or []
    if not hc:
        fail(f"{tag}: the built image has no Healthcheck (OCI format drops it; build with --format docker)")
    return {"expose": {p.split("/")[0] for p in (c.get("ExposedPorts") or {})},
            "volume": sorted(c.get("Volumes") or {}),
            "user": c.get("User") or None,
            "entrypoint": c.get("Entrypoint") or [],
            # The test as the Dockerfile would spell it, for the same substring checks.
            "healthcheck": "HEALTHCHECK " + json.dumps(hc),
            "healthcheck_test": hc}


def compare(name, tag, static, built):
    """A built image must have what its Dockerfile says."""
    for key in ("expose", "user", "entrypoint"):
        if static[key] != built[key]:
            fail(f"{tag} (built from {name}): {key} is {built[key]!r}, the Dockerfile says {static[key]!r}")
    if sorted(static["volume"]) != built["volume"]:
        fail(f"{tag} (built from {name}): volumes {built['volume']}, the Dockerfile says {static['volume']}")
    if static["healthcheck_test"] != built["healthcheck_test"]:
        fail(f"{tag} (built from {name}): health check {built['healthcheck_test']}, the Dockerfile "
             f"says {static['healthcheck_test']}")


def uid_gid(user):
    uid, _, gid = str(user).partition(":")
    if not uid.isdigit() or (gid and not gid.isdigit()):
        fail(f"USER {user}: give numeric uid:gid (Kubernetes' runAsNonRoot needs a numeric uid)")
    return int(uid), int(gid) if gid else None


KINDS = {"cpu": "Dockerfile", "cuda": "Dockerfile.cuda"}


def main():
    args = sys.argv[1:]
    if not args:
        fail("usage: check_images.py SOURCE_DIR [--built cpu=IMAGE] [--built cuda=IMAGE]")
    src, rest = args[0], args[1:]
    built = {}
    while rest:
        if rest[0] != "--built" or len(rest) < 2 or "=" not in rest[1] or rest[1].split("=")[0] not in KINDS:
            fail(f"bad arguments {rest}: --built cpu=IMAGE or --built cuda=IMAGE")
        kind, tag = rest[1].split("=", 1)
        built[KINDS[kind]] = tag
        rest = rest[2:]
    images = {"Dockerfile": dockerfile(os.path.join(src, "Dockerfile")),
              "Dockerfile.cuda": dockerfile(os.path.join(src, "Dockerfile.cuda"))}
    run_checks(src, images, "the Dockerfiles")
    if built:
        for name, tag in built.items():
            facts = built_image(tag)
            compare(name, tag, images[name], facts)
            images[name] = facts
        # Kubernetes runs the CUDA image; without it built, the CPU image stands in for it.
        if "Dockerfile.cuda" not in built:
            images["Dockerfile.cuda"] = images["Dockerfile"]
        run_checks(src, images, "the built images " + ", ".join(built.values()))


def run_checks(src, images, what):
    for name, img in images.items():
        ep = img["entrypoint"]
        grpc_port, metrics_port = flag(ep, "port"), flag(ep, "metrics_port")
        if {grpc_port, metrics_port} != img["expose"]:
            fail(f"{name}: EXPOSE {sorted(img['expose'])} but the server listens on "
                 f"{grpc_port} and {metrics_port}")
        if flag(ep, "data_dir") not in img["volume"]:
            fail(f"{name}: --data_dir {flag(ep, 'data_dir')} is not a VOLUME")
        if not img["healthcheck"] or f"localhost:{grpc_port}" not in img["healthcheck"]:
            fail(f"{name}: HEALTHCHECK must ask updpctl health on localhost:{grpc_port}")
        img["grpc"], img["metrics"] = grpc_port, metrics_port
    uid = {img["user"] for img in images.values()}
    if len(uid) != 1:
        fail(f"the Dockerfiles run as different users {uid}")
    uid, gid = uid_gid(uid.pop())

    compose = yaml.safe_load(open(os.path.join(src, "docker-compose.yml")))["services"]
    for svc_name in ("updp", "updp-gpu"):
        svc = compose[svc_name]
        img = images[os.path.basename(svc["build"]["dockerfile"])]
        published = {p.split(":")[-1] for p in svc["ports"]}
        if published != img["expose"]:
            fail(f"compose {svc_name}: publishes {sorted(published)}, the image exposes "
                 f"{sorted(img['expose'])}")
        targets = {v.split(":")[1]: v.split(":")[2:] for v in svc["volumes"]}
        for vol in img["volume"]:
            if vol not in targets:
                fail(f"compose {svc_name}: the image's volume {vol} is not mounted")
        if targets.get("/images") != ["ro"]:
            fail(f"compose {svc_name}: /images must be mounted read-only")

    kinds = render(src, "deploy/k8s/embed-job", fail)
    dep = kinds[("Deployment", "updp")]
    img = images["Dockerfile.cuda"]  # the cluster runs the CUDA image
    pod = dep["spec"]["template"]["spec"]
    (ctr,) = pod["containers"]
    ports = {p["name"]: str(p["containerPort"]) for p in ctr["ports"]}
    if ports != {"grpc": img["grpc"], "metrics": img["metrics"]}:
        fail(f"k8s Deployment ports {ports}, the image serves grpc {img['grpc']}, "
             f"metrics {img['metrics']}")
    for probe in ("readinessProbe", "livenessProbe"):
        if str(ctr[probe]["grpc"]["port"]) != img["grpc"]:
            fail(f"k8s {probe} checks port {ctr[probe]['grpc']['port']}, not {img['grpc']}")
    ann = dep["spec"]["template"]["metadata"]["annotations"]
    if ann.get("prometheus.io/port") != img["metrics"]:
        fail(f"k8s scrape annotation port {ann.get('prometheus.io/port')} != {img['metrics']}")
    svc = kinds[("Service", "updp")]
    for p in svc["spec"]["ports"]:
        if p["targetPort"] not in ports:
            fail(f"k8s Service targets {p['targetPort']}, no such container port")
    mounts = {m["mountPath"] for m in ctr["volumeMounts"]}
    for need in list(img["volume"]) + ["/tmp"]:
        if need not in mounts:
            fail(f"k8s Deployment does not mount {need}")
    for kind, spec in (("Deployment", pod), ("Job", kinds[("Job", "updp-embed")]["spec"]["template"]["spec"])):
        sc = spec["securityContext"]
        if sc.get("runAsUser") != uid:
            fail(f"k8s {kind} runs as {sc.get('runAsUser')}, the image as {uid}")
        if gid is not None:
            for key in ("runAsGroup", "fsGroup"):
                if key in sc and sc[key] != gid:
                    fail(f"k8s {kind} has {key} {sc[key]}, the image's group is {gid}")
    print(f"check_images: compose and k8s match {what} (ports {sorted(images['Dockerfile']['expose'])}, "
          f"uid:gid {uid}:{gid}, volumes {images['Dockerfile']['volume']})")


if __name__ == "__main__":
    main()
