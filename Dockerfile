# profilestream against a real Kafka (see docker-compose.yml). The first stage builds the wheel
# from what the package needs (a local .venv or .git never ends up in the image); the second
# installs that wheel alone: no editable checkout, no build tools in the image.
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY profilestream ./profilestream
COPY flows ./flows
COPY schemas ./schemas
RUN pip install build==1.3.0 && python -m build --wheel --outdir /dist

FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
COPY --from=build /dist /dist
RUN pip install /dist/*.whl && rm -rf /dist \
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
# recovery on: a restart resumes from the last snapshot instead of reading every input again
CMD ["sh", "-c", "profilestream topics create && exec profilestream run --recovery-dir /state --metrics-port 9464"]
