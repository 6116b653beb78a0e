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
yamllint -s -c .yamllint.yml deploy docker-compose.yml
echo "== docker-compose config"
docker-compose -f docker-compose.yml config -q
docker-compose -f docker-compose.yml --profile gpu config -q
echo "== kustomize layout"
for k in deploy/k8s/base/kustomization.yaml deploy/k8s/servicemonitor/kustomization.yaml; do
  dir=$(dirname "$k")
  for r in $(sed -n 's/^  - \(.*\)$/\1/p' "$k" | grep -v '^pairs' ); do
    [ -e "$dir/$r" ] || { echo "missing resource $dir/$r"; exit 1; }
  done
done
echo "== grafana dashboard parses (its metric names are checked by prometheus_integration.sh)"
"$BUILD/tests/dashboard_check" deploy/grafana/dashboards/updp.json
echo "all deployment checks passed"
