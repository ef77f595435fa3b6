# douyin-worker image: build in a Rust image, run in a small Debian one as a non-root user.
#   docker build -t douyin-worker .
#   docker build -t douyin-worker:browser --build-arg WITH_CHROMIUM=true .
#   docker run --env-file .env -v douyin-data:/data -p 8080:8080 douyin-worker
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY migrations ./migrations
COPY benches ./benches
COPY tests ./tests
RUN cargo build --release --locked --bin douyin-worker \
 && strip target/release/douyin-worker

FROM debian:bookworm-slim
ARG WITH_CHROMIUM=false
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates tini \
 && if [ "$WITH_CHROMIUM" = "true" ]; then apt-get install -y --no-install-recommends chromium; fi \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home /data --shell /usr/sbin/nologin douyin \
 && mkdir -p /data && chown douyin:douyin /data
COPY --from=build /src/target/release/douyin-worker /usr/local/bin/douyin-worker
COPY migrations /usr/share/douyin-worker/migrations
USER douyin
WORKDIR /data
# Two listeners on all interfaces inside the container:
#   9464 (HTTP_ADDR): /healthz, /readyz, /metrics. For probes and Prometheus only: publish it
#        on a private network, never to the internet (readiness and metrics are internal).
#   8080 (API_ADDR): the UI's download API (/api/videos/..., /health). The one to publish
#        (docker run -p 8080:8080 ...), ideally behind a reverse proxy; set API_TOKEN to
#        close it, API_ADDR=off to turn it off.
ENV DATA_DIR=/data LOG_FORMAT=json HTTP_ADDR=0.0.0.0:9464 API_ADDR=0.0.0.0:8080
EXPOSE 9464 8080
VOLUME ["/data"]
# tini forwards SIGTERM so running jobs get their grace period (docker stop -t 45).
ENTRYPOINT ["/usr/bin/tini", "--", "/usr/local/bin/douyin-worker"]
CMD ["run"]
