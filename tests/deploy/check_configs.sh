#!/usr/bin/env bash
# Static checks of the deployment files with the real tools: promtool, yamllint,
# docker-compose, and the Grafana dashboard against the metric names the server exports.
# Usage: check_configs.sh SOURCE_DIR BUILD_DIR
set -euo pipefail
SRC="$1"
BUILD="$2"
cd "$SRC"
echo "== promtool check config"
promtool check config deploy/prometheus/prometheus.yml
echo "== promtool check rules"
promtool check rules deploy/prometheus/alerts.yml
echo "== yamllint"
yamllint -s -c .yamllint.yml deploy docker-compose.yml docker-compose.tls.yml
echo "== docker-compose config"
docker-compose -f docker-compose.yml config -q
docker-compose -f docker-compose.yml --profile gpu config -q
docker-compose -f docker-compose.yml -f docker-compose.tls.yml --profile gpu config -q
echo "== every scrape target resolves in each compose setup (tests/deploy/check_compose.py)"
/usr/bin/python3 tests/deploy/check_compose.py "$SRC"
echo "== kubectl kustomize (each kustomization renders)"
for d in deploy/k8s/base deploy/k8s/servicemonitor deploy/k8s/embed-job deploy/k8s/tls; do
  kubectl kustomize "$d" >/dev/null
done
echo "== scale-out Job against the server and the worker (tests/deploy/check_k8s.py)"
/usr/bin/python3 tests/deploy/check_k8s.py "$SRC"
echo "== TLS set-ups: certificate mounts, probes, metrics address (tests/deploy/check_tls.py)"
/usr/bin/python3 tests/deploy/check_tls.py "$SRC"
echo "== compose and k8s against the Dockerfiles (tests/deploy/check_images.py)"
/usr/bin/python3 tests/deploy/check_images.py "$SRC"
echo "== grafana dashboard parses (its metric names are checked by prometheus_integration.sh)"
"$BUILD/tests/dashboard_check" deploy/grafana/dashboards/updp.json
echo "all deployment checks passed"
