# One image for every role: the operator (fluidv operator), the client bridge
# (fluidv bridge), data-operation Jobs (fluidv op run), and the Vineyard worker
# (vineyardd, from the vineyard wheel).
FROM python:3.11-slim-bookworm

RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends fuse3 \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/fluid-vineyard
COPY pyproject.toml README.md ./
COPY objects objects
COPY vineyard_runtime vineyard_runtime
COPY fluid_core fluid_core
RUN pip install --no-cache-dir . \
 && ln -s "$(python -c 'from vineyard_runtime.binaries import vineyardd_binary; print(vineyardd_binary())')" \
          /usr/local/bin/vineyardd \
 && ln -s "$(python -c 'from vineyard_runtime.binaries import etcd_binary; print(etcd_binary())')" \
          /usr/local/bin/etcd \
 && fluidv --help >/dev/null

# The operator runs as this user; vineyardd and the bridge get their users from the pod spec.
USER 65532
ENTRYPOINT []
CMD ["fluidv", "--help"]
