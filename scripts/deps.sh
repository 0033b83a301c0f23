#!/bin/sh
# Installs the Debian packages asyncrl needs that are missing (when run as root), or prints
# the exact command to run. Called by `make deps`, and so by `make run` and `make test`.
set -u
PACKAGES="gcc make pkg-config openmpi-bin libopenmpi-dev libhdf5-openmpi-dev hdf5-tools \
libconfig-dev libopenblas-dev libcmocka-dev python3 python3-h5py python3-numpy python3-matplotlib"

missing=""
for p in $PACKAGES; do
    status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)
    case "$status" in
        *"install ok installed"*) ;;
        *) missing="$missing $p" ;;
    esac
done
if [ -z "$missing" ]; then
    exit 0
fi
cmd="apt-get install -y --no-install-recommends$missing"
if [ "$(id -u)" != 0 ]; then
    echo "asyncrl needs these Debian packages:$missing"
    echo "install them as root with:"
    echo "    sudo apt-get update && sudo $cmd"
    exit 1
fi
echo "make deps: installing$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq || { echo "make deps: apt-get update failed (is the network up?)"; exit 1; }
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing >/tmp/asyncrl-apt.log 2>&1 || {
    tail -20 /tmp/asyncrl-apt.log
    echo "make deps: apt-get install failed; the log is /tmp/asyncrl-apt.log"
    exit 1
}
echo "make deps: done"
