# Ferry's server image: the wheel only, a non-root user, `ferry serve` as the entry point.
#   docker build -t ferry .
#   docker run -p 6570:6570 -v $PWD/conf:/etc/ferry:ro ferry   (see deploy/ and the README)
#   docker build --build-arg EXTRAS=dynamodb,registry,ray -t ferry-ray .   (Ray workers and
#   the driver of deploy/ferry-materialize-ray.yaml: the same image with Ray in it)
FROM python:3.11-slim AS build
# A C compiler for the wheel's compiled per-row loops (hatch_build.py); the image that runs
# it needs none.
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md hatch_build.py ./
COPY scripts/build_speedups.py scripts/
COPY core core
COPY stores stores
COPY materializer materializer
COPY wire wire
COPY server server
COPY client client
COPY cli cli
COPY protos protos
RUN pip install --no-cache-dir build==1.2.2 && python -m build --wheel --outdir /dist

FROM python:3.11-slim
ARG EXTRAS=dynamodb,registry
COPY --from=build /dist/*.whl /tmp/
# The DynamoDB and registry extras: one image serves every store and the model registry.
RUN whl=$(ls /tmp/*.whl) && pip install --no-cache-dir "${whl}[${EXTRAS}]" \
    && rm /tmp/*.whl \
    && useradd --create-home --uid 10001 ferry
USER 10001
WORKDIR /home/ferry
EXPOSE 6570 9090
# The gRPC health service, asked with Ferry's own client (no extra binary).
HEALTHCHECK --interval=10s --timeout=5s --start-period=10s \
    CMD ["ferry", "health", "--target", "127.0.0.1:6570", "--tls-ca", "/etc/ferry/tls/ca.crt", "--tls-server-name", "ferry"]
ENTRYPOINT ["ferry", "serve"]
CMD ["/etc/ferry/repo/feature_repo.yaml", "--host", "0.0.0.0", "--port", "6570", "--tls-cert", "/etc/ferry/tls/tls.crt", "--tls-key", "/etc/ferry/tls/tls.key", "--access-file", "/etc/ferry/access/access.yaml", "--metrics-port", "9090", "--metrics-host", "0.0.0.0", "--log-format", "json"]
