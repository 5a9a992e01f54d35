# syntax=docker/dockerfile:1
# RPS images, one Dockerfile, three targets:
#   docker build -t rps .                       # default: the five stage binaries, runs rps-serve
#   docker build --target airflow -t rps-airflow .  # Airflow 3.3.2 + DVC + the same binaries (compose)
#   docker build --target mlflow -t rps-mlflow .    # MLflow server with Postgres + S3 drivers (compose)
# Rust dependencies are cached in their own layer by cargo-chef: editing the workspace's code
# rebuilds only the workspace crates.
# The runtime image from binaries built outside (CI: the host's stripped target/release, same
# glibc as bookworm), without cargo; the build context is a directory holding only them:
#   podman build --target runtime --build-arg BINARIES=prebuilt -f Dockerfile DIR
# (scripts/image/build does this; the default build compiles in the builder stage - with podman
# 4.3/buildah 1.28 say --build-arg BINARIES=builder: its unused-stage pruning ignores ARG defaults).

# Same toolchain as rust-toolchain.toml (tests/orchestration checks they agree).
ARG RUST_VERSION=1.95.0
ARG AIRFLOW_VERSION=3.3.2
ARG MLFLOW_VERSION=3.17.2
# The stage the images take the binaries' /out/ from: builder (compiles) or prebuilt.
ARG BINARIES=builder

# ---------------------------------------------------------------- build
FROM rust:${RUST_VERSION}-slim-bookworm AS chef
RUN cargo install cargo-chef --version 0.1.78 --locked
WORKDIR /src

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS builder
COPY --from=planner /src/recipe.json recipe.json
# Dependencies only: this layer is reused until Cargo.toml/Cargo.lock change.
RUN cargo chef cook --profile dist --locked --recipe-path recipe.json
COPY . .
RUN cargo build --profile dist --locked --bins \
      -p rps-extract -p rps-validate -p rps-transform -p rps-train -p rps-serve -p rps-monitor \
 && mkdir -p /out \
 && cp target/dist/rps-extract target/dist/rps-validate target/dist/rps-transform \
       target/dist/rps-train target/dist/rps-serve target/dist/rps-monitor /out/

# Prebuilt binaries from the build context (only with --build-arg BINARIES=prebuilt).
FROM scratch AS prebuilt
COPY rps-extract rps-validate rps-transform rps-train rps-serve rps-monitor /out/

FROM ${BINARIES} AS binaries

# ---------------------------------------------------------------- airflow (compose)
FROM apache/airflow:${AIRFLOW_VERSION}-python3.11 AS airflow
ARG AIRFLOW_VERSION
USER 0
# git: the DAG's version task runs `dvc commit` (and optionally `git commit`) in the mounted repo.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends git \
 && rm -rf /var/lib/apt/lists/* \
 && git config --system --add safe.directory '*'
COPY --from=binaries /out/ /usr/local/bin/
USER 50000
# The constraint keeps pip from moving Airflow while it resolves DVC (verified compatible).
RUN pip install --no-cache-dir "apache-airflow==${AIRFLOW_VERSION}" "dvc[s3]==3.67.1"

# ---------------------------------------------------------------- mlflow (compose)
FROM python:3.11-slim-bookworm AS mlflow
ARG MLFLOW_VERSION
RUN pip install --no-cache-dir "mlflow==${MLFLOW_VERSION}" "psycopg2-binary==2.9.13" "boto3==1.44.8" \
 && useradd --system --uid 10001 --home-dir /home/mlflow --create-home mlflow
USER 10001
EXPOSE 5000
HEALTHCHECK --interval=30s --timeout=5s --start-period=90s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:5000/health', timeout=4)"]
CMD ["mlflow", "server", "--host", "0.0.0.0", "--port", "5000"]

# ---------------------------------------------------------------- runtime (default)
FROM debian:bookworm-slim AS runtime
# ca-certificates: HTTPS to LiveCoinWatch/MLflow/S3. The HEALTHCHECK is `rps-serve probe`,
# so no curl.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /app --create-home rps
COPY --from=binaries /out/ /usr/local/bin/
WORKDIR /app
USER 10001:10001
ENV RPS_STORE=/app/data \
    RPS_REGISTRY=/app/registry \
    RPS_LOG_FORMAT=json
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD ["rps-serve", "probe", "--url", "http://127.0.0.1:8000/health", "--timeout", "4s"]
# Any stage runs with the same image: `docker run rps rps-extract --help`.
CMD ["rps-serve", "serve", "--addr", "0.0.0.0:8000"]
