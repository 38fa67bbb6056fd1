# The kubetune operator image: Python, kubetune with the `operator` extra (Kopf, prometheus-client,
# aiohttp, kubernetes), nothing of the trainer (no torch). Runs as a non-root user on a read-only root
# file system; the Helm chart runs one replica with `strategy: Recreate`.
#
#   docker build -t ghcr.io/kubetune/operator:0.1.0 .
#   docker run --rm ghcr.io/kubetune/operator:0.1.0 --help
FROM python:3.11-slim AS build
WORKDIR /src
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
COPY pyproject.toml README.md ./
COPY operator/ operator/
RUN python -m venv /opt/kubetune \
 && /opt/kubetune/bin/pip install ".[operator,s3]"

FROM python:3.11-slim
LABEL org.opencontainers.image.title="kubetune operator" \
      org.opencontainers.image.description="Kubernetes operator for fine-tuning language models" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /opt/kubetune /opt/kubetune
RUN groupadd --gid 1000 kubetune && useradd --uid 1000 --gid 1000 --no-create-home --shell /usr/sbin/nologin kubetune
ENV PATH=/opt/kubetune/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/tmp
USER 1000:1000
# 8080: Prometheus /metrics (KUBETUNE_METRICS_PORT); 8081: Kopf's liveness probe (--liveness).
EXPOSE 8080 8081
ENTRYPOINT ["kubetune", "operator"]
CMD ["--standalone", "--all-namespaces", "--liveness=http://0.0.0.0:8081/healthz"]
