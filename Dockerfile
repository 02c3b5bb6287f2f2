# mpc-agent: the live service (and the demo publisher / fill responder of docker-compose.yml).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1

WORKDIR /app
COPY pyproject.toml README.md ./
COPY agent ./agent
COPY feeds ./feeds
COPY replay ./replay
RUN pip install --no-compile .
COPY data ./data
COPY deploy ./deploy

RUN useradd --system --uid 10001 mpc && mkdir -p /app/out && chown mpc /app/out
USER mpc

EXPOSE 9108
# liveness (/livez): a container is unhealthy when wedged, not when the kill switch is on or the broker is
# away (that is /readyz, for load balancers and alerts); consumers start from the earliest offset, so
# services that wait for this one lose nothing
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s \
    CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:9108/livez', timeout=2).status == 200 else 1)"
ENTRYPOINT ["mpc-agent"]
CMD ["run"]
