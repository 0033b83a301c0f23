# scripts/deps.sh (make deps, run by make run and make test) under a pretend dpkg-query and id:
# a user other than root is stopped only by missing build packages, and told the apt-get line;
# missing analysis packages are a warning; a system without dpkg-query is not stopped.
. tests/integration/lib.sh
fake=$TMP_ROOT/bin
mkdir -p "$fake"
printf '#!/bin/sh\necho 1000\n' >"$fake/id"
deps_with_missing() {  # PATTERN: packages matching it are "not installed"; prints output, then rc
    printf '#!/bin/sh\ncase "$*" in %s) echo "unknown ok not-installed" ;; *) echo "install ok installed" ;; esac\n' \
        "$1" >"$fake/dpkg-query"
    chmod +x "$fake/id" "$fake/dpkg-query"
    PATH="$fake:$PATH" sh scripts/deps.sh 2>&1
    echo "rc=$?"
}
out=$(deps_with_missing '*python3-h5py*|*python3-matplotlib*')
case "$out" in
    *"warning: the analysis packages python3-h5py python3-matplotlib are missing"*"sudo apt-get install"*"rc=0")
        ok "deps: missing analysis packages are a warning for a user other than root" ;;
    *) not_ok "deps: missing analysis packages are a warning for a user other than root" "$out" ;;
esac
out=$(deps_with_missing '*libcmocka-dev*|*python3-h5py*')
case "$out" in
    *"asyncrl needs these Debian packages: libcmocka-dev python3-h5py"*"sudo apt-get install -y --no-install-recommends libcmocka-dev python3-h5py"*"rc=1")
        ok "deps: a missing build package stops a user other than root with the apt-get line" ;;
    *) not_ok "deps: a missing build package stops a user other than root with the apt-get line" "$out" ;;
esac
rm -f "$fake/dpkg-query"
mkdir -p "$TMP_ROOT/nodpkg"
for t in sh id; do ln -s "$(command -v $t)" "$TMP_ROOT/nodpkg/$t"; done
out=$(PATH="$TMP_ROOT/nodpkg" sh scripts/deps.sh 2>&1; echo "rc=$?")
case "$out" in
    *"no dpkg-query (not Debian?)"*"rc=0") ok "deps: without dpkg-query it says so and goes on" ;;
    *) not_ok "deps: without dpkg-query it says so and goes on" "$out" ;;
esac
