# profilestream against a real Kafka (see docker-compose.yml). Only what the package needs is
# copied, so a local .venv or .git never ends up in the image.
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY pyproject.toml README.md ./
COPY profilestream ./profilestream
COPY flows ./flows
COPY schemas ./schemas
RUN pip install .  # the wheel: not an editable checkout

# Override with -e PROFILESTREAM_KAFKA_BROKERS=host:port (and any PROFILESTREAM_* setting).
ENV PROFILESTREAM_KAFKA_BROKERS=kafka:9092
CMD ["sh", "-c", "profilestream topics create && exec profilestream run"]
