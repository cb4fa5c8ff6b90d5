# The aiops agent image: slim Python base, a virtualenv built in a separate stage, runs as a non-root user on a
# read-only root filesystem (the manifests in deploy/ mount /tmp, /var/lib/aiops and the config read-write/-only).
#
#   docker build -t aiops:0.1.0 .                                      # the agent, without the local GLM
#   docker build -t aiops:0.1.0-glm --build-arg EXTRAS=glm \
#       --build-arg TORCH_INDEX_URL=<PyTorch's CPU wheel index> .     # + torch (CPU) and transformers (~1 GB more)
#
# Without TORCH_INDEX_URL, `EXTRAS=glm` takes torch from PyPI, which on Linux is the much larger CUDA build.
# An OpenAI-compatible GLM endpoint (glm.backend: openai) needs no extra at all.
ARG PYTHON_VERSION=3.11

FROM python:${PYTHON_VERSION}-slim AS build
ARG EXTRAS=""
ARG TORCH_INDEX_URL=""
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/aiops/venv
WORKDIR /src
COPY pyproject.toml README.md ./
COPY aiops ./aiops
RUN set -eu; \
    if [ -n "$EXTRAS" ] && [ -n "$TORCH_INDEX_URL" ]; then \
        /opt/aiops/venv/bin/pip install --index-url "$TORCH_INDEX_URL" "torch==2.13.0"; \
    fi; \
    /opt/aiops/venv/bin/pip install ".${EXTRAS:+[$EXTRAS]}"

FROM python:${PYTHON_VERSION}-slim
RUN groupadd --system --gid 10001 aiops \
 && useradd --system --uid 10001 --gid 10001 --home-dir /nonexistent --no-create-home --shell /usr/sbin/nologin aiops
COPY --from=build /opt/aiops/venv /opt/aiops/venv
# The stock knowledge: the ConfigMaps in deploy/ override playbooks and rules; models carry the calibration map.
COPY playbooks /opt/aiops/playbooks
COPY rules /opt/aiops/rules
COPY models /opt/aiops/models
ENV PATH=/opt/aiops/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    NUMBA_CACHE_DIR=/tmp/numba \
    MPLCONFIGDIR=/tmp/matplotlib \
    HF_HUB_OFFLINE=1
USER 10001:10001
EXPOSE 8080
ENTRYPOINT ["aiops"]
CMD ["serve", "--config", "/etc/aiops/config/config.yaml"]
