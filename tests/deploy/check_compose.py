#!/usr/bin/env python3
"""Every Prometheus scrape target resolves to a service of each documented compose setup.

The two setups docker-compose.yml documents: `docker compose up -d` (the services
without a profile) and `docker compose --profile gpu up -d updp-gpu prometheus grafana`.
In each, every host in deploy/prometheus/prometheus.yml's targets (but localhost) must
be a started service's name or network alias, and its port one the service's image
serves (the server's metrics port, 9464). Renders the file with `docker-compose config`.
Usage: check_compose.py SOURCE_DIR
"""
import os
import subprocess
import sys

import yaml

SETUPS = {
    "default (CPU)": None,  # the services without a profile
    "gpu profile": ["updp-gpu", "prometheus", "grafana"],
}
METRICS_PORT = "9464"  # the Dockerfiles' --metrics_port


def fail(msg):
    print("check_compose: FAIL: " + msg, file=sys.stderr)
    sys.exit(1)


def main():
    src = sys.argv[1]
    rendered = subprocess.run(
        ["docker-compose", "-f", os.path.join(src, "docker-compose.yml"), "--profile", "gpu",
         "config"], check=True, capture_output=True, text=True).stdout
    services = yaml.safe_load(rendered)["services"]
    with open(os.path.join(src, "deploy/prometheus/prometheus.yml")) as f:
        prom = yaml.safe_load(f)
    targets = [t for job in prom["scrape_configs"] for sc in job.get("static_configs", [])
               for t in sc["targets"]]
    for setup, names in SETUPS.items():
        if names is None:
            names = [n for n, s in services.items() if not s.get("profiles")]
        missing = [n for n in names if n not in services]
        if missing:
            fail(f"{setup}: no service {missing}")
        if "prometheus" not in names:
            fail(f"{setup}: no prometheus")
        resolvable = {}
        for n in names:
            resolvable[n] = n
            for net in (services[n].get("networks") or {}).values():
                for alias in (net or {}).get("aliases", []):
                    resolvable[alias] = n
        for t in targets:
            host, port = t.rsplit(":", 1)
            if host == "localhost":
                continue
            if host not in resolvable:
                fail(f"{setup}: scrape target {t} resolves to no started service "
                     f"(started: {sorted(names)})")
            svc = resolvable[host]
            if svc.startswith("updp") and port != METRICS_PORT:
                fail(f"{setup}: {t}: the server serves metrics on {METRICS_PORT}")
        print(f"check_compose: {setup}: every scrape target resolves "
              f"({', '.join(t for t in targets)})")


if __name__ == "__main__":
    main()
