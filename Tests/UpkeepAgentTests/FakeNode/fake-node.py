import http.server, os, signal, socket, sys, time
# Close inherited descriptors: a parent may watch one to learn when its child has exited.
os.closerange(3, 4096)
version, root = sys.argv[1], sys.argv[2]
def fault():
    try:
        with open(os.path.join(root, "faults", version)) as f: return f.read().strip()
    except OSError: return ""
if fault() == "exit":
    sys.exit(1)
with open(os.path.join(root, "running-version"), "w") as f: f.write("%d %s" % (os.getpid(), version))
start = time.monotonic()
healthy_after = float(open(os.path.join(root, "healthy-after")).read())
sock_path = os.path.join(root, "containerd.sock")
try: os.unlink(sock_path)
except OSError: pass
containerd = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
containerd.bind(sock_path)
containerd.listen(1)
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        state = fault()
        ok = self.path == "/healthz" and state not in ("never", "sick") and time.monotonic() - start >= healthy_after
        body = b"ok" if ok else b"not ready"
        self.send_response(200 if ok else 503)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args): pass
http.server.HTTPServer.allow_reuse_address = True
server = http.server.HTTPServer(("127.0.0.1", int(open(os.path.join(root, "port")).read())), Handler)
def stop(*_):
    try: os.unlink(sock_path)
    except OSError: pass
    os._exit(0)
signal.signal(signal.SIGTERM, stop)
server.serve_forever()
