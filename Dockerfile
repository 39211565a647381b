# The TMWS server image used by docker-compose.yml (three instances share one Postgres and Redis).
FROM python:3.11-slim

# torch is pinned; point TORCH_INDEX_URL at a CPU-only wheel index to avoid the multi-GB CUDA build.
ARG TORCH_INDEX_URL=""
ENV PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false

WORKDIR /app
COPY pyproject.toml README.md ./
COPY service ./service
COPY configs ./configs
RUN if [ -n "$TORCH_INDEX_URL" ]; then \
      pip install --no-cache-dir --index-url "$TORCH_INDEX_URL" torch==2.13.0; \
    else \
      pip install --no-cache-dir torch==2.13.0; \
    fi \
 && pip install --no-cache-dir .

RUN useradd --create-home tmws
USER tmws
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --retries=5 \
  CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/health').status == 200 else 1)"
# 0.0.0.0 inside the container only; compose publishes the ports on the host's loopback.
CMD ["tmws", "serve", "--host", "0.0.0.0", "--port", "8000"]
