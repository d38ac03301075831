#!/usr/bin/env python3
"""OpenSSL's own stream speed on this machine: the same mutual TLS 1.3 as Upkeep's internal mode
(certificates from `upkeep-bench certs`), through Python's ssl module (the system libssl), one
process sending MIB mebibytes in 1 MiB writes over loopback TCP and a forked process receiving with
blocking sockets. It is the plain baseline an event-loop TLS stream can be compared with: the
same per-byte work (encrypt, TCP, decrypt) on the same cores, without any framework.
Usage: openssl-stream.py CERT_DIR MIB  ->  prints bytes=… seconds=… bytes_per_second=… cipher=…
"""
import os, socket, ssl, sys, time

directory, mib = sys.argv[1], int(sys.argv[2])
total = mib << 20
path = lambda name: os.path.join(directory, name)

listener = socket.socket()
listener.bind(("127.0.0.1", 0))
listener.listen(1)
child = os.fork()
if child == 0:
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.minimum_version = ssl.TLSVersion.TLSv1_3
    server.load_cert_chain(path("agent.crt"), path("agent.key"))
    server.load_verify_locations(path("ca.crt"))
    server.verify_mode = ssl.CERT_REQUIRED
    connection, _ = listener.accept()
    connection.settimeout(120)
    stream = server.wrap_socket(connection, server_side=True)
    buffer = bytearray(1 << 20)
    received = 0
    while received < total:
        count = stream.recv_into(buffer)
        if count == 0:
            break
        received += count
    os._exit(0 if received == total else 1)

client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
client.minimum_version = ssl.TLSVersion.TLSv1_3
client.check_hostname = False  # the identity is a URI SAN, which Python cannot match; the CA is checked
client.load_verify_locations(path("ca.crt"))
client.load_cert_chain(path("controller.crt"), path("controller.key"))
stream = client.wrap_socket(socket.create_connection(listener.getsockname(), timeout=120))
block = b"\x5a" * (1 << 20)
start = time.monotonic()
for _ in range(mib):
    stream.sendall(block)
_, status = os.waitpid(child, 0)
elapsed = time.monotonic() - start
if status != 0:
    sys.exit("the receiving process did not get every byte")
print(f"bytes={total} seconds={elapsed:.3f} bytes_per_second={int(total / elapsed)} cipher={stream.cipher()[0]}")
