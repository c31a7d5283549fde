# One image for every gpubill service (receiver, workers, beat, Flower, migrations);
# docker-compose.yml picks the command. Configuration and secrets come from the
# environment (.env), never from the image.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app

# Dependencies first (cached while only the code changes).
COPY pyproject.toml README.md ./
COPY pricing pricing
COPY ledger ledger
COPY webhook_receiver webhook_receiver
COPY worker worker
COPY emulators emulators
COPY gpubill gpubill
RUN pip install . \
    && useradd --system --uid 10001 --home-dir /var/lib/gpubill --create-home gpubill

USER gpubill
ENV GPUBILL_DATA_DIR=/var/lib/gpubill \
    GPUBILL_RECEIVER_HOST=0.0.0.0 \
    GPUBILL_LOG_FORMAT=json
EXPOSE 8000 5555 9100
CMD ["gunicorn", "-c", "python:gpubill.gunicorn_conf"]
