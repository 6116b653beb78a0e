# updp-server, CPU image from Debian 12 (LibTorch 1.13 from Debian). The build stage
# installs scripts/setup.sh's packages and builds the installed programs as its build/ does;
# the runtime stage keeps the programs (debug info stripped) and the Debian packages whose
# shared libraries they load, runs as 10001:10001, and checks health over gRPC.
#
#   scripts/image.sh cpu --smoke    # buildah, no engine and no registry; CI runs this
#   docker build -t updp:cpu .
#   docker run -p 50051:50051 -p 9464:9464 -v $PWD/data:/data -v $PWD/models:/models \
#       -v /srv/images:/images:ro updp:cpu --model_dir /models/blip2-itm-vit-g
#
# Size, build times and the smoke test: docs/IMAGES.md. CUDA image: see Dockerfile.cuda.

FROM debian:12 AS build
ARG DEBIAN_FRONTEND=noninteractive
WORKDIR /src
COPY . .
# The packages of scripts/setup.sh, then its build (same compiler, flags, generator and
# ccache settings, scripts/ccache-env.sh with CCACHE_BASEDIR=/src) of the installed
# programs only. scripts/image.sh mounts this machine's ccache at CCACHE_DIR and its apt
# archive (buildah bud -v), so the compiles are cache hits of a host build of the same
# sources; without a mount (docker build) the cache is empty and only lives in this stage.
ARG CCACHE_DIR=/root/.cache/ccache
ARG UPDP_BUILD_JOBS=
# The host's locale variables (scripts/image.sh), which ccache hashes; unset when empty.
ARG LANG=
ARG LC_ALL=
ARG LC_CTYPE=
ARG LC_MESSAGES=
RUN for v in LANG LC_ALL LC_CTYPE LC_MESSAGES; do [ -n "$(printenv $v)" ] || unset $v; done \
 && apt-get update -qq && apt-get install -y -qq --no-install-recommends ca-certificates \
 && scripts/setup.sh --no-build \
 && . scripts/ccache-env.sh && export CCACHE_DIR CCACHE_STATSLOG=/tmp/ccache-stats.log \
 && cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null \
 && cmake --build build -j "${UPDP_BUILD_JOBS:-$(nproc)}" --target \
      updp-server updpctl updp-embed-shard updp-make-test-model updp-parity \
 && echo "ccache in this build:" && ccache --show-log-stats \
 && mkdir -p /out/bin \
 && cp build/updp-server build/updpctl build/updp-embed-shard build/updp-make-test-model \
      build/updp-parity /out/bin/ \
 && strip --strip-debug /out/bin/*

FROM debian:12 AS runtime
ARG DEBIAN_FRONTEND=noninteractive
# No documentation, manual pages or translations in the image (dpkg never unpacks them).
RUN printf '%s\n' 'path-exclude=/usr/share/doc/*' 'path-include=/usr/share/doc/*/copyright' \
      'path-exclude=/usr/share/man/*' 'path-exclude=/usr/share/info/*' \
      'path-exclude=/usr/share/locale/*' 'path-include=/usr/share/locale/locale.alias' \
      'path-exclude=/usr/share/lintian/*' >/etc/dpkg/dpkg.cfg.d/updp-slim
COPY --from=build /out/bin/ /usr/local/bin/
# The shared libraries of the programs, from Debian's packages. Debian's LibTorch 1.13
# depends on far more than the server loads (OpenCV's Qt, GDAL, FFmpeg, Mesa's LLVM ...):
# the packages this step adds that own no file the dynamic loader opens for
# /usr/local/bin/* (ldd) are purged again (the base system is left whole); the build fails
# if a library is then missing. The dpkg database lists exactly what the image holds.
RUN dpkg-query -W -f '${Package}\n' | sort >/tmp/base \
 && apt-get update -qq \
 && apt-get install -y -qq --no-install-recommends \
      libgrpc++1.51 libprotobuf32 libtorch1.13 libopenblas0-pthread libsqlite3-0 \
      libjpeg62-turbo libpng16-16 libwebp7 libexif12 libicu72 libcpp-httplib0.11 \
      libprometheus-cpp-core1.0 libssl3 ca-certificates >/dev/null \
 && for f in $(ldd /usr/local/bin/* | awk '$3 ~ /^\// {print $3}' | sort -u); do \
      r="$(readlink -f "$f")"; \
      dpkg -S "$r" 2>/dev/null || dpkg -S "${r#/usr}" 2>/dev/null || dpkg -S "$f" 2>/dev/null \
        || echo "no package owns $f" >&2; \
    done | cut -d: -f1 | sort -u >/tmp/needed \
 && dpkg-query -W -f '${Package}\n' | sort | comm -23 - /tmp/base | comm -23 - /tmp/needed \
      | { grep -vx -e ca-certificates -e openssl || true; } >/tmp/unneeded \
 && echo "purging $(wc -l </tmp/unneeded) of the packages apt added: the programs do not load them" \
 && xargs -r dpkg --purge --force-depends </tmp/unneeded >/dev/null 2>/tmp/purge.log \
      || { cat /tmp/purge.log; exit 1; } \
 && if ldd /usr/local/bin/* | grep 'not found'; then exit 1; fi \
 && rm -rf /var/lib/apt/lists/* /var/cache/debconf/*-old /var/lib/dpkg/*-old /tmp/base /tmp/needed /tmp/unneeded /tmp/purge.log \
 && groupadd --system --gid 10001 updp \
 && useradd --system --uid 10001 --gid 10001 --home-dir /data --shell /usr/sbin/nologin updp \
 && mkdir -p /data /models /images && chown updp:updp /data
USER 10001:10001
# Idle OpenMP threads sleep instead of spinning against the selection pool (the server
# would otherwise re-execute itself once to set this; see server/util/openmp_env.h).
ENV OMP_WAIT_POLICY=PASSIVE
VOLUME ["/data", "/models"]
EXPOSE 50051 9464
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
  CMD ["updpctl", "--addr", "localhost:50051", "health"]
ENTRYPOINT ["updp-server", "--port=50051", "--metrics_port=9464", "--data_dir=/data", \
            "--allowed_roots=/images,/data"]
CMD ["--model_dir=/models/blip2-itm-vit-g"]
