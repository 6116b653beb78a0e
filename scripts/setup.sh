#!/usr/bin/env bash
# Installs every build/test dependency from Debian 12 with apt-get (idempotent) and
# builds updp into ./build. Usage: scripts/setup.sh [--no-build]
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(
  build-essential cmake ninja-build pkg-config ccache git unzip python3-pip python3-venv
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler libssl-dev openssl
  libabsl-dev prometheus-cpp-dev libcpp-httplib-dev
  libtorch-dev libopenblas0-pthread
  libgtest-dev libgmock-dev
  libsqlite3-dev sqlite3 nlohmann-json3-dev zlib1g-dev
  libjpeg62-turbo-dev libpng-dev libwebp-dev libexif-dev libicu-dev
  libfaiss-dev
  clang libclang-rt-14-dev
  chromium
  dataset-fashion-mnist
  prometheus yamllint python3-yaml docker-compose curl
  python3-grpcio python3-protobuf python3-numpy python3-pandas
  debootstrap buildah iproute2
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  echo "setup: installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

if [ "${1:-}" != "--no-build" ]; then
  JOBS="${UPDP_BUILD_JOBS:-$(nproc)}"
  # ccache hits across clones in other folders (CI clones afresh).
  . scripts/ccache-env.sh
  cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo
  cmake --build build -j "$JOBS"
fi
