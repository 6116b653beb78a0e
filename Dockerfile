# updp-server, CPU image from Debian 12. The build stage runs the same
# scripts/setup.sh as CI; the runtime stage keeps the binaries and the shared
# libraries they need, runs as a non-root user, and checks health over gRPC.
#
#   docker build -t updp:cpu .
#   docker run -p 50051:50051 -p 9464:9464 -v $PWD/data:/data -v $PWD/models:/models \
#       -v /srv/images:/images:ro updp:cpu --model_dir /models/blip2-itm-vit-g
#
# CUDA image: see Dockerfile.cuda.

FROM debian:12 AS build
WORKDIR /src
COPY . .
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends sudo ca-certificates \
 && UPDP_BUILD_JOBS=4 scripts/setup.sh \
 && mkdir -p /out/bin \
 && cp build/updp-server build/updpctl build/updp-embed-shard build/updp-make-test-model \
      build/updp-parity /out/bin/

FROM debian:12 AS runtime
RUN apt-get update -qq \
 && apt-get install -y -qq --no-install-recommends \
      libgrpc++1.51 libprotobuf32 libtorch1.13 libopenblas0-pthread libsqlite3-0 \
      libjpeg62-turbo libpng16-16 libwebp7 libexif12 libicu72 libcpp-httplib0.11 \
      libprometheus-cpp-core1.0 libssl3 ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /data --shell /usr/sbin/nologin updp \
 && mkdir -p /data /models /images && chown updp /data
COPY --from=build /out/bin/ /usr/local/bin/
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
