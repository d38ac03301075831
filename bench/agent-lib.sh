# Shared by the agent benches: a static release build of upkeep-agent, and a fake k3s node in a
# temporary directory made from the same scripts the agent tests use (Tests/UpkeepAgentTests/FakeNode).
# AGENT_BIN=path measures another build (an earlier commit's, say) instead of building this one.
AGENT_SCRATCH="$ROOT/.build-static"
AGENT_PREBUILT=${AGENT_BIN:-}
AGENT_BIN=${AGENT_BIN:-"$AGENT_SCRATCH/release/upkeep-agent"}
FAKE="$ROOT/Tests/UpkeepAgentTests/FakeNode"

# A static Swift runtime is how the agent ships (docs/agent.md): shared Foundation libraries
# alone would map more than the memory target. Every function in its own section (dependencies
# included, hence flags here rather than in Package.swift), so that the linker's symbol order
# (agent/upkeep-agent.order) can gather the start-up code instead of whole files' code.
# SwiftPM does not rebuild Swift objects when only these flags change: remove the scratch
# directory after changing them.
AGENT_BUILD_FLAGS=(-c release --static-swift-stdlib -Xswiftc -Xfrontend -Xswiftc -function-sections -Xcc -ffunction-sections)
build_agent() {
  [ -n "$AGENT_PREBUILT" ] && return 0
  # SwiftPM does not know the order file is a link input: relink when it is newer than the build.
  [ "$ROOT/agent/upkeep-agent.order" -nt "$AGENT_BIN" ] && rm -f "$AGENT_BIN"
  (cd "$ROOT" && swift build "${AGENT_BUILD_FLAGS[@]}" --scratch-path "$AGENT_SCRATCH" --product upkeep-agent >/dev/null)
}

# agent_links: whether the built agent links what it must not (docs/agent.md, "Measurements"):
# full Foundation (CoreFoundation's constructor runs at every start; ICU, its relocated data),
# statically or as a shared library, and libsqlite3 (loaded on first use). Prints
# "links_corefoundation=N links_libsqlite3=N"; both 0 expected (scripts/check-links fails otherwise).
agent_links() {
  local cf shared sq
  cf=$(nm "$AGENT_BIN" | grep -c ' __CFInitialize$' || true)
  shared=$(readelf -d "$AGENT_BIN" | grep -cE 'NEEDED.*lib(Core)?Foundation' || true)
  sq=$(readelf -d "$AGENT_BIN" | grep -c 'NEEDED.*libsqlite3' || true)
  echo "links_corefoundation=$((cf + shared)) links_libsqlite3=$sq"
}

# make_node DIR HEALTHY_AFTER_SECONDS: fake node with k3s v1 live; sets PORT.
make_node() {
  local dir=$1 gate=${GATE_MS-5}
  mkdir -p "$dir/bin" "$dir/artifacts" "$dir/faults" "$dir/data"
  PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  echo "$PORT" > "$dir/port"; echo "$2" > "$dir/healthy-after"
  sed "s|@ROOT@|$dir|g" "$FAKE/systemctl.sh" > "$dir/systemctl"; chmod +x "$dir/systemctl"
  sed "s|@ROOT@|$dir|g" "$FAKE/fake-node.py" > "$dir/fake-node.py"
  make_k3s "$dir" v1.30.6+k3s1; make_k3s "$dir" v1.31.2+k3s1
  cp "$dir/artifacts/k3s-v1.30.6+k3s1" "$dir/bin/k3s"
  make_tls "$dir/tls"
  cat > "$dir/agent.yaml" <<YAML
nodeName: bench-node
listen: {address: 127.0.0.1, port: $(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')}
tls: {ca: $dir/tls/ca.crt, certificate: $dir/tls/agent.crt, key: $dir/tls/agent.key}
k3s: {binary: $dir/bin/k3s, unit: k3s}
systemd: {systemctl: $dir/systemctl}
dataDir: $dir/data
probes: {kubeletHealthz: "http://127.0.0.1:$PORT/healthz", supervisorPing: "", containerdSocket: "$dir/containerd.sock", nodeReady: false, intervalMs: ${INTERVAL_MS:-50}${gate:+, gateIntervalMs: $gate}}
logLevel: ${AGENT_LOG_LEVEL:-warning}
YAML
}

# make_tls DIR: a throwaway cluster CA, the agent identity upkeep://agent/bench-node and a controller
# identity upkeep://controller/bench (openssl CLI).
make_tls() {
  mkdir -p "$1"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj "/CN=bench CA" \
    -keyout "$1/ca.key" -out "$1/ca.crt" 2>/dev/null
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=bench-node" \
    -keyout "$1/agent.key" -out "$1/agent.csr" 2>/dev/null
  printf 'subjectAltName=URI:upkeep://agent/bench-node\n' > "$1/san.ext"
  openssl x509 -req -in "$1/agent.csr" -CA "$1/ca.crt" -CAkey "$1/ca.key" -CAcreateserial -days 1 \
    -extfile "$1/san.ext" -out "$1/agent.crt" 2>/dev/null
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=bench controller" \
    -keyout "$1/controller.key" -out "$1/controller.csr" 2>/dev/null
  printf 'subjectAltName=URI:upkeep://controller/bench\n' > "$1/controller.ext"
  openssl x509 -req -in "$1/controller.csr" -CA "$1/ca.crt" -CAkey "$1/ca.key" -CAcreateserial -days 1 \
    -extfile "$1/controller.ext" -out "$1/controller.crt" 2>/dev/null
  chmod 600 "$1/agent.key" "$1/ca.key" "$1/controller.key"
}

# The interpreter the fake k3s runs, resolved once: started through a version manager's shim
# (pyenv puts one first on PATH) Python would take 100 ms more or less depending on whose PATH
# started it (the agent's or the baseline poller's), which is no part of either's time.
FAKE_PYTHON=$(python3 -c 'import sys; print(sys.executable)')

# make_k3s DIR VERSION: a fake k3s binary of about 4 MiB in DIR/artifacts.
make_k3s() {
  local file="$1/artifacts/k3s-$2"
  sed -e "s|@ROOT@|$1|g" -e "s|@VERSION@|$2|g" -e "s|exec python3 |exec $FAKE_PYTHON |" "$FAKE/k3s.sh" > "$file"
  python3 -c 'import sys; open(sys.argv[1], "a").write(("# " + "k" * 126 + "\n") * 32768)' "$file"
  chmod +x "$file"
}

# stop_node DIR: stops the fake k3s (SIGKILL: nothing else runs in it).
stop_node() { [ -f "$1/pid" ] && kill -9 "$(cat "$1/pid")" 2>/dev/null; rm -f "$1/pid"; }

# now_ms: wall clock in milliseconds.
now_ms() { date +%s%3N; }
