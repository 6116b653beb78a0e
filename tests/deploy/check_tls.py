#!/usr/bin/env python3
"""The TLS set-ups name files that are there, and keep health checks and scrapes working.

deploy/k8s/tls (rendered with kubectl kustomize) and docker-compose.tls.yml over
docker-compose.yml (rendered with docker-compose config), for each server service:
  - --tls_cert, --tls_key, --tls_client_ca, --auth_tokens and the UPDP_TLS_* files lie
    in a read-only mount of the certificates (in k8s: of the Secret updp-tls);
  - --metrics_host=0.0.0.0: Prometheus scrapes over the network, and under TLS the
    server would bind /metrics to 127.0.0.1;
  - (k8s) no probe is a kubelet gRPC probe (plaintext only); the exec probes run updpctl.
Usage: check_tls.py SOURCE_DIR
"""
import os
import subprocess
import sys

import yaml

from manifests import flag, render

TLS_FLAGS = ["tls_cert", "tls_key", "tls_client_ca", "auth_tokens"]
TLS_ENV = ["UPDP_TLS_CA", "UPDP_TLS_CERT", "UPDP_TLS_KEY"]


def fail(msg):
    print("check_tls: FAIL: " + msg, file=sys.stderr)
    sys.exit(1)


def check_files(what, args, env, mounts):
    """mounts: [(mount path, read-only)] of the certificate volume."""
    paths = [(f"--{f}", flag(args, f)) for f in TLS_FLAGS] + [(e, env.get(e)) for e in TLS_ENV]
    for name, path in paths:
        if not path:
            fail(f"{what}: {name} is not set")
        if not any(path.startswith(m.rstrip("/") + "/") and ro for m, ro in mounts):
            fail(f"{what}: {name}={path} is not in a read-only certificate mount {mounts}")
    if flag(args, "metrics_host") != "0.0.0.0":
        fail(f"{what}: --metrics_host=0.0.0.0 missing (under TLS /metrics is on 127.0.0.1)")


def check_k8s(src):
    objs = render(src, "deploy/k8s/tls", fail)
    dep = objs.get(("Deployment", "updp")) or fail("deploy/k8s/tls: no Deployment updp")
    spec = dep["spec"]["template"]["spec"]
    secret_vols = {v["name"] for v in spec.get("volumes", [])
                   if v.get("secret", {}).get("secretName") == "updp-tls"}
    if not secret_vols:
        fail("deploy/k8s/tls: no volume of the Secret updp-tls")
    c = next((c for c in spec["containers"] if c["name"] == "updp"), None) or fail("no container")
    mounts = [(m["mountPath"], m.get("readOnly", False)) for m in c.get("volumeMounts", [])
              if m["name"] in secret_vols]
    env = {e["name"]: e.get("value") for e in c.get("env", [])}
    check_files("deploy/k8s/tls", c.get("args", []), env, mounts)
    for p in ["readinessProbe", "livenessProbe"]:
        probe = c.get(p) or fail(f"deploy/k8s/tls: no {p}")
        if "grpc" in probe:
            fail(f"deploy/k8s/tls: {p} is a gRPC probe; the kubelet cannot speak TLS")
        if probe.get("exec", {}).get("command", [""])[0] != "updpctl":
            fail(f"deploy/k8s/tls: {p} does not run updpctl")
    print("check_tls: deploy/k8s/tls ok")


def check_compose(src):
    rendered = subprocess.run(
        ["docker-compose", "-f", os.path.join(src, "docker-compose.yml"), "-f",
         os.path.join(src, "docker-compose.tls.yml"), "--profile", "gpu", "config"],
        check=True, capture_output=True, text=True).stdout
    services = yaml.safe_load(rendered)["services"]
    for name in ["updp", "updp-gpu"]:
        s = services.get(name) or fail(f"compose: no service {name}")
        mounts = []
        for v in s.get("volumes", []):
            parts = v.split(":") if isinstance(v, str) else [v.get("source"), v.get("target"),
                                                             "ro" if v.get("read_only") else "rw"]
            if len(parts) >= 2 and "certs" in parts[0]:
                mounts.append((parts[1], len(parts) > 2 and "ro" in parts[2].split(",")))
        env = s.get("environment", {})
        if isinstance(env, list):
            env = dict(e.split("=", 1) for e in env)
        check_files(f"compose {name}", s.get("command", []), env, mounts)
    print("check_tls: docker-compose.tls.yml ok")


def main():
    src = sys.argv[1]
    check_k8s(src)
    check_compose(src)


if __name__ == "__main__":
    main()
