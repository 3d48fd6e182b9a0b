# wechat-oa-auth: a slim, non-root image with no dev dependencies.
FROM python:3.11-slim AS build
WORKDIR /app
COPY pyproject.toml README.md ./
COPY service ./service
RUN pip install --no-cache-dir --prefix=/install .

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 HOST=0.0.0.0 PORT=3000
WORKDIR /app
COPY --from=build /install /usr/local
# Templates, static files and config are read from the working directory's checkout layout.
COPY service ./service
COPY templates ./templates
COPY static ./static
COPY config ./config
RUN useradd --system --uid 10001 --no-create-home app
USER app
EXPOSE 3000
# Liveness: the process answers. Load balancers should probe /readyz (MongoDB and a WeChat
# token at hand) instead, so a WeChat outage takes instances out of rotation without killing them.
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
  CMD python -c "import os,urllib.request;urllib.request.urlopen(f'http://127.0.0.1:{os.environ.get(\"PORT\",\"3000\")}/healthz',timeout=2)" || exit 1
CMD ["python", "-m", "service"]
