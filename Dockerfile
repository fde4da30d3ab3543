# ClipSeek application image: the web app, the worker and the CLI.
#   docker build -t clipseek .                                  # CPU PyTorch (default)
#   docker build --build-arg TORCH_INDEX=cu128 -t clipseek:cuda . # CUDA 12.8 PyTorch wheels
#   docker build --build-arg BAKE_WEIGHTS=1 -t clipseek .        # include the CLIP weights
FROM python:3.11-slim-bookworm

# "cpu" installs the CPU-only PyTorch build; e.g. "cu128" a CUDA build.
ARG TORCH_INDEX=cpu
ARG BAKE_WEIGHTS=0

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    CLIPSEEK_HOME=/data \
    CLIPSEEK_MODEL_CACHE=/opt/clipseek/models \
    CLIPSEEK_HOST=0.0.0.0

RUN useradd --create-home --uid 10001 clipseek \
    && mkdir -p /data /opt/clipseek/models /app \
    && chown clipseek:clipseek /data /opt/clipseek/models

WORKDIR /app
COPY requirements.txt pyproject.toml README.md alembic.ini ./
# torch and torchvision come from PyTorch's own index for the chosen variant, in the
# versions requirements.txt pins; everything else from requirements.txt.
RUN pip install --index-url "https://download.pytorch.org/whl/${TORCH_INDEX}" \
        "$(grep '^torch==' requirements.txt)" "$(grep '^torchvision==' requirements.txt)" \
    && grep -v -e '^torch==' -e '^torchvision==' -e '^playwright' -e '^axe-playwright' requirements.txt > /tmp/req.txt \
    && pip install -r /tmp/req.txt gunicorn==27.0.1
COPY clipseek ./clipseek
COPY webapp ./webapp
COPY worker ./worker
COPY migrations ./migrations
RUN pip install --no-deps .

USER clipseek
# Baked weights live in CLIPSEEK_MODEL_CACHE; without them the first start downloads them
# there, or CLIPSEEK_WEIGHTS names a mounted file (see docker-compose.yml).
RUN if [ "$BAKE_WEIGHTS" = "1" ]; then clipseek fetch-weights; fi

EXPOSE 8000
CMD ["gunicorn", "--bind", "0.0.0.0:8000", "--workers", "2", "--threads", "4", "webapp:create_app()"]
