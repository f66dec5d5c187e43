# syntax=docker/dockerfile:1
# tollgate container image: a release build in the official Rust image, copied into a
# distroless runtime (glibc, CA certificates, no shell, non-root user 65532).
#
#   docker build -t registry.example/tollgate:0.1.0 .
#
# Needs BuildKit (the default builder since Docker 23) for the cache mounts. Not built by
# this repository's CI: the machines it runs on have no container engine. The chart
# (charts/tollgate) expects this image: `tollgate run -c /etc/tollgate/tollgate.yaml`,
# user 65532, nothing written to disk.

ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-bookworm AS build
# pingora's zlib-ng build needs cmake; TLS is rustls with ring, so no OpenSSL.
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# The commit `tollgate version` and tollgate_build_info report (.git is not in the
# context): docker build --build-arg TOLLGATE_GIT_COMMIT=$(git rev-parse --short=12 HEAD) .
ARG TOLLGATE_GIT_COMMIT=""
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    TOLLGATE_GIT_COMMIT="${TOLLGATE_GIT_COMMIT}" cargo build --release --locked -p tollgate \
 && install -m 0755 target/release/tollgate /usr/local/bin/tollgate

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /usr/local/bin/tollgate /usr/local/bin/tollgate
ENV TOLLGATE_CONFIG=/etc/tollgate/tollgate.yaml
USER 65532:65532
# proxy (forward proxy and gateway), admin (/healthz /readyz /metrics)
EXPOSE 3128 9901
ENTRYPOINT ["/usr/local/bin/tollgate"]
CMD ["run", "-c", "/etc/tollgate/tollgate.yaml"]
