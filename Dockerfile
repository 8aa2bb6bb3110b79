# syntax=docker/dockerfile:1
# llm-relay container image: a static-ish release binary on Debian slim, run as a non-root user.
#
#   docker build -t llm-relay .
#   docker run -p 11434:11434 -v llm-relay-data:/data -e OPENAI_API_KEY=... llm-relay
#
# Base images are pinned by digest (multi-arch index digests). These were not pulled here (the
# build machine has no Docker Hub access); they are the digests public Dockerfiles pin for these
# tags. Check or refresh them with:
#   docker buildx imagetools inspect rust:1.95-slim-bookworm
#   docker buildx imagetools inspect debian:bookworm-slim
# The builder and runtime are both Debian 12 (bookworm): the binary's glibc matches.
ARG RUST_IMAGE=rust:1.95-slim-bookworm@sha256:d7482085ff5b415f84dba5647ae71606650bdef00db7aeb69f4b3d170c3e4082
ARG RUNTIME_IMAGE=debian:bookworm-slim@sha256:96e378d7e6531ac9a15ad505478fcc2e69f371b10f5cdf87857c4b8188404716

FROM ${RUST_IMAGE} AS build
WORKDIR /src
COPY . .
# Reproducible: the lock file is obeyed (--locked), no build path or cargo home leaks into the
# binary (--remap-path-prefix), one codegen unit and fat LTO (profile `dist`, a release profile),
# and SOURCE_DATE_EPOCH for any tool that stamps a time. scripts/repro.sh checks the same flags
# outside Docker: two builds in different directories give the same SHA-256.
ARG SOURCE_DATE_EPOCH=0
ENV SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH} \
    CARGO_INCREMENTAL=0 \
    RUSTFLAGS="--remap-path-prefix=/src=/llm-relay --remap-path-prefix=/usr/local/cargo=/cargo"
RUN cargo build --locked --profile dist --bin llm-relay \
    && cp target/dist/llm-relay /usr/local/bin/llm-relay \
    && sha256sum /usr/local/bin/llm-relay

FROM ${RUNTIME_IMAGE}
# ca-certificates: upstream TLS (rustls verifies against the system store).
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --user-group --home-dir /data --shell /usr/sbin/nologin llm-relay \
    && mkdir -p /data \
    && chown llm-relay:llm-relay /data
COPY --from=build /usr/local/bin/llm-relay /usr/local/bin/llm-relay
USER 10001:10001
# API on 11434 (Ollama's port: Ollama clients find it unconfigured), admin on 8080.
ENV HOST=0.0.0.0 \
    PORT=11434 \
    ADMIN_PORT=8080 \
    DATA_DIR=/data
VOLUME ["/data"]
EXPOSE 11434 8080
# docker stop sends SIGTERM: in-flight streams get SHUTDOWN_GRACE_MS (default 10 s) to finish,
# then usage is flushed. Give the container more than that before SIGKILL (compose:
# stop_grace_period; docker stop -t).
STOPSIGNAL SIGTERM
# `llm-relay health` asks GET /health/ready on 127.0.0.1:$PORT (no curl in the image).
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["llm-relay", "health"]
ENTRYPOINT ["llm-relay"]
CMD ["serve"]
