# syntax=docker/dockerfile:1
#
# echo-gateway container image.
#
#   docker build -t echo-gateway .
#   docker run --rm -p 8080:8080 echo-gateway
#
# The default config is baked in at /etc/echo-gateway (config/echo.toml);
# ECHO_CONFIG points at that directory, and every *.toml file in it is read
# in name order as one config. Override it by mounting a directory over
# /etc/echo-gateway (the gateway hot-reloads files there), or with the
# ECHO_* environment variables of `echo-gateway serve` (README, "Running it").

ARG RUST_VERSION=1.95

# ---------------------------------------------------------------------------
FROM rust:${RUST_VERSION}-bookworm AS builder

# cmake: Pingora builds zlib-ng. The Rust image already has gcc and make.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /src

# Dependencies first, apart from our sources: the real manifest and lock file
# with a stub library and binary, so that this layer is rebuilt only when
# Cargo.toml, Cargo.lock or the benches change, not on every edit of src/.
# (The benches are not built; Cargo only wants the files it declares.)
COPY Cargo.toml Cargo.lock ./
COPY benches ./benches
RUN mkdir -p src \
 && echo 'fn main() {}' > src/main.rs \
 && touch src/lib.rs \
 && cargo build --release --locked \
 && rm -rf src

# Our sources. `touch` makes cargo see them as newer than the stub build.
COPY src ./src
RUN touch src/lib.rs src/main.rs \
 && cargo build --release --locked --bin echo-gateway \
 && install -m 0755 target/release/echo-gateway /usr/local/bin/echo-gateway

# ---------------------------------------------------------------------------
FROM debian:bookworm-slim AS runtime

# ca-certificates: TLS to pass-through upstreams. A system user without a
# login shell; its home is the working directory, where the embedded store
# keeps data/echo-gateway.redb.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 echo \
 && useradd --system --uid 10001 --gid echo --no-create-home \
      --home-dir /var/lib/echo-gateway --shell /usr/sbin/nologin echo \
 && mkdir -p /etc/echo-gateway /var/lib/echo-gateway/data \
 && chown -R echo:echo /var/lib/echo-gateway \
 && chmod 1777 /tmp

COPY --from=builder /usr/local/bin/echo-gateway /usr/local/bin/echo-gateway
COPY config/echo.toml /etc/echo-gateway/echo.toml

ENV ECHO_CONFIG=/etc/echo-gateway \
    ECHO_LOG_FORMAT=json

WORKDIR /var/lib/echo-gateway
USER 10001:10001

# Writable even with a read-only root file system (ECS mounts a task volume
# on each path and keeps the owner and mode set here).
VOLUME ["/var/lib/echo-gateway/data", "/tmp"]

# 8080: mocks (and the admin API unless ECHO_ADMIN_LISTEN gives it its own
# listener); 9090: the admin API with ECHO_ADMIN_LISTEN=0.0.0.0:9090.
EXPOSE 8080 9090

HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
  CMD ["echo-gateway", "healthcheck", "http://127.0.0.1:8080/healthz"]

# Exec form: the gateway is PID 1 and gets SIGTERM itself (graceful shutdown
# of [server] shutdown_grace_secs).
STOPSIGNAL SIGTERM
ENTRYPOINT ["echo-gateway"]
CMD ["serve"]
