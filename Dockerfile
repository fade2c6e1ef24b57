# The examples' image: the `inventory` and `orders` binaries on a minimal
# base that runs them as a non-root user. examples/deploy/ runs it.
#
#   docker build -t platform-examples:0.1.0 .
#   podman build -t platform-examples:0.1.0 .
#   scripts/build-image            (buildah; what .ci/run does)
#
# The two base images are build arguments so that a machine that cannot
# pull them can give stand-ins of the same shape (scripts/build-image does:
# a Debian 12 with the same Rust, and a glibc + CA certificates root).

# The toolchain the workspace is tested with; its glibc (Debian 12) must not
# be newer than the runtime's.
ARG RUST_IMAGE=docker.io/library/rust:1.95-slim-bookworm
# Debian 12's glibc, libgcc and CA certificates, a `nonroot` user (65532),
# no shell and no package manager.
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot

FROM ${RUST_IMAGE} AS build
WORKDIR /src
COPY . .
# --locked: exactly the dependency versions the workspace is tested with.
# The registry and target directories are build caches, not image layers,
# so a rebuild compiles only what changed; the binaries are copied out.
# The release profile keeps line tables; the image drops them and keeps the
# symbols (function names in backtraces): 14 MB a binary instead of 85 MB.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p platform-examples --bin inventory --bin orders \
    && mkdir -p /out \
    && cp target/release/inventory target/release/orders /out/ \
    && strip --strip-debug /out/inventory /out/orders

FROM ${RUNTIME_IMAGE} AS runtime
# The workspace version (Cargo.toml); scripts/build-image passes it, and a
# test checks this default against Cargo.toml.
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="platform-examples" \
      org.opencontainers.image.description="The platform SDK's example services: inventory and orders" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="MIT OR Apache-2.0"
COPY --from=build /out/inventory /out/orders /usr/local/bin/
# The shipped configs, so the image runs on its own (`docker run ... IMAGE`).
# On Kubernetes the ConfigMap generated from the same files is mounted over
# these directories.
COPY examples/config/inventory/ /etc/inventory/
COPY examples/config/orders/ /etc/orders/
# The image's user is numeric so that Kubernetes' runAsNonRoot can verify it.
USER 65532:65532
ENV APP_PROFILE=prod
# API and admin ports: orders 8080 and 9090, inventory 8081 and 9091.
EXPOSE 8080 8081 9090 9091
CMD ["/usr/local/bin/inventory", "--config-dir", "/etc/inventory"]
