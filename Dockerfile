# syntax=docker/dockerfile:1.7
# The MetaRec platform image: one image for every MetaRec process (control-plane API, rollout
# controller, BentoML adaptation service, training, Prefect flow runs, KFP components, Feast).
#
#   docker build -t metarec:0.1.0 .                                            # CPU torch
#   docker build --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128 -t metarec:0.1.0-cuda .
#
# torch is pinned by constraints.txt (torch==2.13.0) and installed first from TORCH_INDEX_URL,
# so that nothing else can pull a different (multi-GB) build. Object storage: s3fs is a core
# dependency (the build checks it imports); METAREC_EXTRAS=gcs (the default) adds gcsfs.
# Pin the base by digest in CI:
#   --build-arg PYTHON_IMAGE=python:3.11.14-slim-bookworm@sha256:<digest>

ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

# ---- build: a self-contained virtual environment in /opt/metarec ----------------------------
FROM ${PYTHON_IMAGE} AS build
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
# Optional extras installed with MetaRec: `gcs` adds gcsfs (gs:// locations). s3fs (s3://, the
# chart's artifact root) is a core dependency and always installed.
ARG METAREC_EXTRAS=gcs
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/metarec
ENV PATH=/opt/metarec/bin:$PATH
WORKDIR /src
COPY constraints.txt ./
RUN pip install --upgrade pip \
 && pip install --index-url "${TORCH_INDEX_URL}" -c constraints.txt "torch==2.13.0"
COPY pyproject.toml README.md ./
COPY platform ./platform
COPY components ./components
COPY workflows ./workflows
RUN pip install -c constraints.txt ".[${METAREC_EXTRAS}]" \
 && pip check \
 && python -c "import fsspec, kubernetes, s3fs; fsspec.get_filesystem_class('s3')" \
 && metarec --help >/dev/null

# ---- runtime: non-root, no build tools, no sources -------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="metarec" \
      org.opencontainers.image.description="MetaRec platform image (API, rollout, serving, training, flows)" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --system --gid 10001 metarec \
 && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/metarec --no-create-home \
      --shell /usr/sbin/nologin metarec \
 && install -d -o 10001 -g 10001 -m 0750 /var/lib/metarec
COPY --from=build /opt/metarec /opt/metarec
COPY feature_repo /app/feature_repo
ENV PATH=/opt/metarec/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    METAREC_HOME=/var/lib/metarec \
    HOME=/var/lib/metarec \
    PREFECT_HOME=/var/lib/metarec/prefect \
    BENTOML_HOME=/var/lib/metarec/bentoml \
    MPLCONFIGDIR=/tmp/matplotlib \
    METAREC_FEAST__REPO_PATH=/app/feature_repo \
    DO_NOT_TRACK=1 \
    PREFECT_SERVER_ANALYTICS_ENABLED=false \
    BENTOML_DO_NOT_TRACK=true
# The chart mounts writable emptyDirs here; the root filesystem stays read-only.
VOLUME ["/var/lib/metarec", "/tmp"]
WORKDIR /var/lib/metarec
USER 10001:10001
EXPOSE 8000 3000 6566
# No ENTRYPOINT: the chart, Prefect workers and KFP give the full command (`metarec …`,
# `prefect flow-run execute`, `feast serve`).
CMD ["metarec", "--help"]
