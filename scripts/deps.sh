#!/bin/sh
# Installs the Debian packages asyncrl needs that are missing (when run as root), or prints
# the exact command to run. Called by `make deps`, and so by `make run` and `make test`.
# Packages for building and running are required; those for analysis (plot_runs.py and the
# tests that read HDF5 from Python, which skip without them) only warned about when a user
# other than root cannot install them. Without dpkg-query (not Debian) nothing is checked
# here: the Makefile's dependency line says what the build finds.
set -u
REQUIRED="gcc make pkg-config openmpi-bin libopenmpi-dev libhdf5-openmpi-dev hdf5-tools \
libconfig-dev libopenblas-dev libcmocka-dev"
ANALYSIS="python3 python3-h5py python3-numpy python3-matplotlib"

if ! command -v dpkg-query >/dev/null 2>&1; then
    echo "make deps: no dpkg-query (not Debian?): install an MPI, parallel HDF5, libconfig, OpenBLAS and cmocka"
    echo "    yourself (README: Install); the build's dependency line shows what it finds"
    exit 0
fi

missing_of() {  # PACKAGES...: those not installed
    for p in "$@"; do
        case "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" in
            *"install ok installed"*) ;;
            *) printf ' %s' "$p" ;;
        esac
    done
}
# shellcheck disable=SC2086
missing_required=$(missing_of $REQUIRED)
# shellcheck disable=SC2086
missing_analysis=$(missing_of $ANALYSIS)
missing="$missing_required$missing_analysis"
if [ -z "$missing" ]; then
    exit 0
fi
cmd="apt-get install -y --no-install-recommends$missing"
if [ "$(id -u)" != 0 ]; then
    if [ -n "$missing_required" ]; then
        echo "asyncrl needs these Debian packages:$missing"
        echo "install them as root with:"
        echo "    sudo apt-get update && sudo $cmd"
        exit 1
    fi
    echo "make deps: warning: the analysis packages$missing_analysis are missing: scripts/plot_runs.py"
    echo "    will not run and the tests that read HDF5 from Python skip; install them with:"
    echo "    sudo apt-get update && sudo $cmd"
    exit 0
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
