# wechat-oa-auth: a slim, non-root image with no dev dependencies.
#
# Build stage: first the runtime dependencies, exactly as requirements.lock pins them (`make lock`),
# each file checked against its hash, in a layer that depends on the lock alone; then the service's
# wheel, built from the code, which carries its templates, static files and default config.
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore
WORKDIR /src
COPY requirements.lock ./
RUN pip install --require-hashes --no-deps --prefix=/deps -r requirements.lock
COPY pyproject.toml setup.py MANIFEST.in README.md LICENSE ./
COPY config ./config
COPY templates ./templates
COPY static ./static
COPY service ./service
RUN pip wheel --no-deps --wheel-dir=/wheels . \
  && pip install --no-deps --prefix=/service /wheels/wechat_oa_auth-*.whl

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 HOST=0.0.0.0 PORT=3000
RUN useradd --system --uid 10001 --no-create-home app
# The dependencies: this layer changes only when requirements.lock does.
COPY --from=build /deps /usr/local
# The service, once: the installed wheel (code, templates, static files, default config).
COPY --from=build /service /usr/local
# Nothing is read from the working directory: the package has all it needs.
WORKDIR /app
USER app
EXPOSE 3000
# Liveness: the process answers. Load balancers should probe /readyz (MongoDB and a WeChat
# token at hand) instead, so a WeChat outage takes instances out of rotation without killing them.
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
  CMD python -c "import os,urllib.request;urllib.request.urlopen(f'http://127.0.0.1:{os.environ.get(\"PORT\",\"3000\")}/healthz',timeout=2)" || exit 1
CMD ["python", "-m", "service"]
