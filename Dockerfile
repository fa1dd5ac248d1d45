# esdetect container image (used by docker-compose.yml's lab).
#
# Stage 1 builds the release binary with the exact dependency versions of Cargo.lock;
# stage 2 is a slim Debian runtime with CA certificates (for https Elasticsearch) and curl (the lab's health
# check of /readyz), running as a non-root user.

FROM rust:1-bookworm AS builder
WORKDIR /src
# Whole source tree (see .dockerignore): Cargo.toml may name benches/examples whose files must exist.
COPY . .
RUN cargo build --release --locked --bin esdetect

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/*
RUN useradd --system --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin esdetect
COPY --from=builder /src/target/release/esdetect /usr/local/bin/esdetect
COPY rules/ /etc/esdetect/rules/
COPY lab/esdetect.toml /etc/esdetect/esdetect.toml
USER esdetect
CMD ["esdetect", "run", "--config", "/etc/esdetect/esdetect.toml"]
