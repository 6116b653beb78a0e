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
The images themselves are not built here (no engine); this keeps the files in step
with the Dockerfiles. Usage: check_images.py SOURCE_DIR
"""
import os
import re
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
    out = {"expose": set(), "volume": [], "user": None, "entrypoint": [], "healthcheck": None}
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
    return out


def main():
    src = sys.argv[1]
    images = {"Dockerfile": dockerfile(os.path.join(src, "Dockerfile")),
              "Dockerfile.cuda": dockerfile(os.path.join(src, "Dockerfile.cuda"))}
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
    uid = int(uid.pop())

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
    for what, spec in (("Deployment", pod), ("Job", kinds[("Job", "updp-embed")]["spec"]["template"]["spec"])):
        if spec["securityContext"].get("runAsUser") != uid:
            fail(f"k8s {what} runs as {spec['securityContext'].get('runAsUser')}, the image as {uid}")
    print(f"check_images: compose and k8s match the Dockerfiles (ports {sorted(images['Dockerfile']['expose'])}, "
          f"uid {uid}, volumes {images['Dockerfile']['volume']})")


if __name__ == "__main__":
    main()
