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
RUN pip install /dist/*.whl && rm -rf /dist
WORKDIR /app

# Override with -e PROFILESTREAM_KAFKA_BROKERS=host:port (and any PROFILESTREAM_* setting).
ENV PROFILESTREAM_KAFKA_BROKERS=kafka:9092
CMD ["sh", "-c", "profilestream topics create && exec profilestream run"]
