# getgpt server image: `docker build -t getgpt .` then `docker run -p 8000:8000 getgpt`.
# Two stages: the first builds wheels for getgpt and its server dependencies (with a compiler at
# hand, should a dependency have no wheel for this platform); the second installs only those
# wheels on a slim Python and runs as an unprivileged user. See docs/deploy.md.

FROM python:3.12-slim-bookworm AS build
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
# postgres: asyncpg, for --db postgresql://... (SQLite needs nothing more).
RUN pip wheel --no-cache-dir --wheel-dir /wheels ".[server,postgres]"

FROM python:3.12-slim-bookworm
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    GETGPT_HOST=0.0.0.0 \
    GETGPT_PORT=8000
COPY --from=build /wheels /wheels
# The versions are pinned by the wheels the first stage built; --no-index takes nothing else.
# hadolint ignore=DL3013
RUN pip install --no-cache-dir --no-index --find-links=/wheels "getgpt[server,postgres]" \
    && rm -rf /wheels \
    && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin getgpt
USER 10001
EXPOSE 8000
# Liveness only: /readyz (503 while draining or when the shared state is down) is for load balancers.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('GETGPT_PORT', '8000'), timeout=2)"]
# SIGTERM starts the drain (--shutdown-grace, 30 s by default): give `docker stop` longer, e.g. -t 40.
STOPSIGNAL SIGTERM
ENTRYPOINT ["getgpt", "serve"]
