# Start a throwaway Label Studio 1.23.2 on 127.0.0.1 for the tests (sourced by .ci/run, and by
# tests/labelstudio/conftest.py when no server is given).
#
# The server lives in its own venv ($ACTIVELABEL_LS_VENV, default /tmp/activelabel-ls-venv):
# label-studio pins versions that conflict with prefect in the project's venv.
#
#   source .ci/labelstudio.sh
#   start_labelstudio "$WORK/ls"     # exports LABEL_STUDIO_URL, LABEL_STUDIO_API_KEY,
#                                    # ACTIVELABEL_TEST_LS_DOCUMENT_ROOT; sets LS_PID
#   stop_labelstudio
#
# The token is a throwaway test token for a server that listens on 127.0.0.1 only.

LS_VERSION=1.23.2
LS_VENV=${ACTIVELABEL_LS_VENV:-/tmp/activelabel-ls-venv}
LS_PORT=${ACTIVELABEL_TEST_LS_PORT:-18080}
LS_TOKEN=${ACTIVELABEL_TEST_LS_TOKEN:-activelabel-test-token-0123456789abcd}  # <= 40 chars
LS_ADMIN_EMAIL=admin@example.com
LS_ADMIN_PASSWORD=activelabel-admin-12345

# Create the server's venv unless it already holds label-studio $LS_VERSION.
ensure_labelstudio_venv() {
    if [ -x "$LS_VENV/bin/label-studio" ] && "$LS_VENV/bin/python" -c \
        "import importlib.metadata as m, sys; sys.exit(m.version('label-studio') != '$LS_VERSION')" 2>/dev/null; then
        return 0
    fi
    echo "Installing label-studio==$LS_VERSION into $LS_VENV (about a minute)"
    local log
    log=$(mktemp "${TMPDIR:-/tmp}/activelabel-ls-install.XXXXXX")
    if python3 -m venv "$LS_VENV" >"$log" 2>&1 \
        && "$LS_VENV/bin/python" -m pip install -q --disable-pip-version-check \
            "label-studio==$LS_VERSION" >>"$log" 2>&1 \
        && [ -x "$LS_VENV/bin/label-studio" ]; then
        rm -f "$log"
        return 0
    fi
    echo "could not install label-studio==$LS_VERSION into $LS_VENV; last lines of $log:" >&2
    grep -v "^WARNING: Location" "$log" | tail -n 20 >&2 || true
    return 1
}

start_labelstudio() {
    local work=${1:?usage: start_labelstudio WORKDIR}
    ensure_labelstudio_venv || return 1
    # Label Studio silently moves to another port when its port is busy: refuse instead.
    if (exec 3<>"/dev/tcp/127.0.0.1/$LS_PORT") 2>/dev/null; then
        echo "port $LS_PORT on 127.0.0.1 is already in use; set ACTIVELABEL_TEST_LS_PORT" >&2
        return 1
    fi
    mkdir -p "$work"
    work=$(cd "$work" && pwd)
    LS_LOG="$work/ls.log"
    rm -rf "$work/ls-data"
    mkdir -p "$work/ls-data" "$work/ls-files"
    (
        # get_env(X) reads LABEL_STUDIO_X, then HEARTEX_X, then plain X: drop strays.
        unset PORT HOST USERNAME PASSWORD USER_TOKEN DJANGO_DB LABEL_STUDIO_URL LABEL_STUDIO_API_KEY
        export LABEL_STUDIO_BASE_DATA_DIR="$work/ls-data"
        export LABEL_STUDIO_USERNAME="$LS_ADMIN_EMAIL" LABEL_STUDIO_PASSWORD="$LS_ADMIN_PASSWORD"
        export LABEL_STUDIO_USER_TOKEN="$LS_TOKEN"
        export LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN=true
        export SSRF_PROTECTION_ENABLED=false
        export LOCAL_FILES_SERVING_ENABLED=true LOCAL_FILES_DOCUMENT_ROOT="$work/ls-files"
        export LATEST_VERSION_CHECK=false
        cd "$work"
        exec "$LS_VENV/bin/label-studio" start --no-browser --internal-host 127.0.0.1 --port "$LS_PORT"
    ) >"$LS_LOG" 2>&1 </dev/null &
    LS_PID=$!
    # A wall-clock bound, generous on purpose: at load ~10 on 2 cores the first start (database
    # migrations) took over 240 s. ACTIVELABEL_LS_START_BOUND_S overrides it.
    local url="http://127.0.0.1:$LS_PORT" bound=${ACTIVELABEL_LS_START_BOUND_S:-900} started=$SECONDS
    until curl -sf --max-time 10 "$url/health" >/dev/null 2>&1; do
        if ! kill -0 "$LS_PID" 2>/dev/null; then
            echo "Label Studio exited during start; last lines of $LS_LOG:" >&2
            tail -n 30 "$LS_LOG" >&2
            LS_PID=
            return 1
        fi
        if [ $((SECONDS - started)) -ge "$bound" ]; then
            echo "Label Studio not healthy at $url/health after $bound s; last lines of $LS_LOG:" >&2
            tail -n 30 "$LS_LOG" >&2
            stop_labelstudio
            return 1
        fi
        sleep 0.5
    done
    export LABEL_STUDIO_URL="$url"
    export LABEL_STUDIO_API_KEY="$LS_TOKEN"
    export ACTIVELABEL_TEST_LS_DOCUMENT_ROOT="$work/ls-files"
    echo "Label Studio $LS_VERSION up on $url (pid $LS_PID, after $((SECONDS - started)) s)"
}

stop_labelstudio() {
    if [ -n "${LS_PID:-}" ] && kill -0 "$LS_PID" 2>/dev/null; then
        kill "$LS_PID" 2>/dev/null || true
        local i
        for i in $(seq 1 20); do
            kill -0 "$LS_PID" 2>/dev/null || break
            sleep 0.25
        done
        kill -9 "$LS_PID" 2>/dev/null || true
    fi
    LS_PID=
}
