# syntax=docker/dockerfile:1
# The one Falconer image: every subcommand (hub, manager, analyst, migrate, crdgen) is the
# same binary. Build: docker build -t falconer:dev .
#
# Builder: the workspace's Rust (rust-version in Cargo.toml), exactly the locked dependencies.
FROM docker.io/library/rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --locked --release --bin falconer \
 && install -D -m 0755 target/release/falconer /out/falconer

# Runtime: distroless with glibc and libgcc only (the binary links them dynamically); no
# shell, no package manager. Runs as the image's non-root user, by number so Kubernetes'
# runAsNonRoot can verify it.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/falconer /usr/local/bin/falconer
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/falconer"]
# Standalone mode would refuse a non-loopback address without tokens; in a cluster the chart
# passes `hub`, `manager` or `analyst` with its configuration.
CMD ["standalone"]
