#!/usr/bin/env python3
"""Writes the golden frames in this directory from PROTOCOL.md, independently of the Swift code.

This is a second, minimal implementation of the frame layout: the Swift tests decode every file
and re-encode it byte for byte, so a drift on either side fails. Run it only when the protocol
changes on purpose (then review the diff of every .bin and of manifest.json):

    python3 protocol/vectors/generate.py
"""
import hashlib
import json
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
TYPES = {
    "Hello": 0x01, "HelloReply": 0x02, "Request": 0x03, "Response": 0x04, "Error": 0x05,
    "Progress": 0x06, "Chunk": 0x07, "ChunkEnd": 0x08, "Cancel": 0x09, "WindowUpdate": 0x0A,
    "Ping": 0x0B, "Pong": 0x0C, "GoAway": 0x0D,
}


def header(type_byte, request_id, length, magic=b"UK", version=1):
    return magic + bytes([version, type_byte]) + struct.pack(">II", request_id, length)


def frame(type_name, request_id, payload):
    return header(TYPES[type_name], request_id, len(payload)) + payload


def canonical(value):
    """Sorted keys, no whitespace, UTF-8, slashes unescaped (PROTOCOL.md, "Control payloads")."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


SHA_A = hashlib.sha256(b"k3s binary v1.31.2+k3s1").hexdigest()
SHA_OLD = hashlib.sha256(b"k3s binary v1.30.6+k3s1").hexdigest()
SHA_IMAGES = hashlib.sha256(b"k3s-airgap-images-arm64.tar.zst v1.31.2+k3s1").hexdigest()
SHA_SNAPSHOT = hashlib.sha256(b"etcd snapshot taken at v1.30.6+k3s1").hexdigest()
CHUNK = bytes([0x7F, 0x45, 0x4C, 0x46, 0x02, 0x01, 0x01, 0x00, 0xFF, 0xFE, 0x00, 0x0A]) + b"raw bytes, not base64"
AGENT = {"agentVersion": "0.1.0", "arch": "arm64", "k3sVersion": "v1.30.6+k3s1", "nodeName": "node-1", "role": "server"}
PROBE = {"checks": [
    {"latencyMs": 3, "message": "k3s.service active (running)", "name": "unit", "ok": True},
    {"latencyMs": 2, "message": "ok", "name": "kubelet", "ok": True},
    {"latencyMs": 41, "message": "Ready, kubeletVersion v1.31.2+k3s1", "name": "nodeReady", "ok": True},
], "healthy": True}

PROBE_OLD = {"checks": [
    {"latencyMs": 3, "message": "k3s.service active (running)", "name": "unit", "ok": True},
    {"latencyMs": 2, "message": "ok", "name": "kubelet", "ok": True},
    {"latencyMs": 12, "message": "pong", "name": "supervisor", "ok": True},
    {"latencyMs": 38, "message": "Ready, kubeletVersion v1.30.6+k3s1", "name": "nodeReady", "ok": True},
], "healthy": True}

# A renewal's request and certificate for node-1 (Ed25519, made once with the openssl command;
# the frames carry them as opaque PEM text).
CSR_NODE1 = '-----BEGIN CERTIFICATE REQUEST-----\nMIGQMEQCAQAwETEPMA0GA1UEAwwGbm9kZS0xMCowBQYDK2VwAyEA24EPxX2juf05\nymk7kPFKdqh6eRNeUMXZNyaEopdDMlmgADAFBgMrZXADQQDPBdaOJiBPuBYeYtRd\n5dxMdcT1AVqY/FpLJ2H4n4LA3QJf0ukeDWiYCxKBmYdbYrbN7ie3rTYErjo59gwO\nVM0J\n-----END CERTIFICATE REQUEST-----\n'
CERT_NODE1 = '-----BEGIN CERTIFICATE-----\nMIIBDzCBwqADAgECAgEHMAUGAytlcDANMQswCQYDVQQDDAJjYTAeFw0yNjEyMDcw\nMDM5NTJaFw0yNzEyMDcwMDM5NTJaMBExDzANBgNVBAMMBm5vZGUtMTAqMAUGAytl\ncAMhANuBD8V9o7n9OcppO5DxSnaoenkTXlDF2TcmhKKXQzJZo0MwQTAgBgNVHREE\nGTAXhhV1cGtlZXA6Ly9hZ2VudC9ub2RlLTEwHQYDVR0OBBYEFI+VCgR/Z6pyf0fT\nm/oG2SSu9Zb4MAUGAytlcANBAE5c/7F96Nozv28rTrvXatZ69F+KHsW237q/bUtR\nykodkVCOPG7i/DiLuxxvRk6WdYAcc7yWfI6JtmD0ik63tw8=\n-----END CERTIFICATE-----\n'
CERT_NODE1_SHA256 = "E7:BE:85:CF:F7:30:B1:A8:F0:3C:45:29:B7:A3:0F:64:27:D3:9B:47:84:C0:AE:3C:6E:0B:D8:F2:90:82:0B:91"

REQUESTS = [
    # (file stem, request id, envelope, response result, response extras)
    ("status", 1, {"method": "status", "params": {}}, {
        "agent": AGENT, "binaryFreeBytes": 12884901888, "binaryPath": "/usr/local/bin/k3s",
        "dataDir": "/var/lib/upkeep-agent", "dataFreeBytes": 12884901888,
        "recentOperations": [{"finishedAtUnixMs": 1732790000000, "method": "stage", "operationID": "rollout-7:node-1:stage",
                              "startedAtUnixMs": 1732789990000, "state": "succeeded"}],
        "staged": [{"bytes": 70086656, "k3sVersion": "v1.31.2+k3s1", "sha256": SHA_A}],
        "unit": {"activeState": "active", "name": "k3s", "subState": "running"}}, {}),
    ("probe", 2, {"method": "probe", "params": {"expectedK3sVersion": "v1.31.2+k3s1"}, "timeoutMs": 30000}, PROBE, {}),
    ("stage", 3, {"method": "stage", "params": {"bytes": 70086656, "k3sVersion": "v1.31.2+k3s1",
                                                "operationID": "rollout-7:node-1:stage", "sha256": SHA_A},
                  "timeoutMs": 600000, "upload": True},
     {"alreadyStaged": False, "bytes": 70086656, "sha256": SHA_A}, {}),
    ("install", 4, {"method": "install", "params": {"healthTimeoutSeconds": 300, "k3sVersion": "v1.31.2+k3s1",
                                                    "operationID": "rollout-7:node-1:install", "sha256": SHA_A,
                                                    "watchdogTimeoutSeconds": 900}},
     {"k3sVersion": "v1.31.2+k3s1", "outcome": "installed", "previousK3sVersion": "v1.30.6+k3s1", "probe": PROBE,
      "watchdogDeadlineUnixMs": 1732790900000}, {}),
    ("rollback", 5, {"method": "rollback", "params": {"healthTimeoutSeconds": 300, "operationID": "rollout-7:node-1:rollback"}},
     {"k3sVersion": "v1.30.6+k3s1", "probe": PROBE}, {}),
    ("cordon", 6, {"method": "cordon", "params": {"operationID": "rollout-7:node-1:cordon"}}, {"wasUnschedulable": False}, {}),
    ("drain", 7, {"method": "drain", "params": {"deleteEmptyDirData": True, "gracePeriodSeconds": 30,
                                                "operationID": "rollout-7:node-1:drain", "podSelector": "app!=critical",
                                                "timeoutSeconds": 600}},
     {"evictedPods": 12, "skippedPods": 4}, {}),
    ("uncordon", 8, {"method": "uncordon", "params": {"operationID": "rollout-7:node-1:uncordon"}},
     {"message": "node-1 is schedulable again", "uncordoned": True}, {}),
    ("backup", 9, {"method": "backup", "params": {"name": "pre-upgrade", "operationID": "rollout-7:node-1:backup"}},
     {"bytes": 7340032, "fileName": "pre-upgrade-node-1-1732789000", "format": "etcdSnapshot"}, {"download": True}),
    ("commit", 10, {"method": "commit", "params": {"installOperationID": "rollout-7:node-1:install",
                                                   "operationID": "rollout-7:node-1:commit"}},
     {"k3sVersion": "v1.31.2+k3s1"}, {}),
    ("operation", 11, {"method": "operation", "params": {"operationID": "rollout-7:node-1:install"}},
     {"message": "installed v1.31.2+k3s1 (recorded after an agent restart); commit before the watchdog deadline",
      "method": "install", "state": "succeeded", "watch": {"deadlineUnixMs": 1732790900000, "state": "open"}}, {}),
    ("restoreBackup", 12, {"method": "restoreBackup", "params": {"bytes": 7340032, "format": "etcdSnapshot",
                                                                 "k3sVersion": "v1.30.6+k3s1",
                                                                 "operationID": "rollout-7:restore-1:node-1:restoreBackup",
                                                                 "sha256": SHA_SNAPSHOT},
                           "timeoutMs": 600000, "upload": True},
     {"alreadyReceived": False}, {}),
    ("stopK3s", 13, {"method": "stopK3s", "params": {"operationID": "rollout-7:restore-1:node-1:stopK3s"}},
     {"wasActive": True}, {}),
    ("restore", 14, {"method": "restore", "params": {"backupSHA256": SHA_SNAPSHOT, "binarySHA256": SHA_OLD,
                                                     "healthTimeoutSeconds": 300, "k3sVersion": "v1.30.6+k3s1",
                                                     "operationID": "rollout-7:restore-1:node-1:restore"}},
     {"k3sVersion": "v1.30.6+k3s1", "probe": PROBE_OLD}, {}),
    ("rejoin", 15, {"method": "rejoin", "params": {"binarySHA256": SHA_OLD, "healthTimeoutSeconds": 300,
                                                   "k3sVersion": "v1.30.6+k3s1",
                                                   "operationID": "rollout-7:restore-1:node-2:rejoin"}},
     {"k3sVersion": "v1.30.6+k3s1", "probe": PROBE_OLD}, {}),
    ("certificateRequest", 19, {"method": "certificateRequest", "params": {"keyType": "ed25519"}},
     {"csr": CSR_NODE1, "keyType": "ed25519"}, {}),
    ("installCertificate", 20, {"method": "installCertificate", "params": {"certificate": CERT_NODE1}},
     {"notAfterUnixMs": 1828139992000, "sha256": CERT_NODE1_SHA256}, {}),
    ("etcdHealth", 21, {"method": "etcdHealth", "params": {"timeoutSeconds": 2}},
     {"members": [
         {"clientURLs": ["https://10.0.0.1:2379"], "healthy": True, "id": "8e9e05c52164694d", "message": "health true",
          "name": "server-1-2f3a4b5c"},
         {"clientURLs": ["https://10.0.0.2:2379"], "healthy": False, "id": "91bc3c398fb3c146",
          "message": "no answer within 2 s", "name": "server-2-0a1b2c3d"},
         {"clientURLs": ["https://10.0.0.3:2379"], "healthy": True, "id": "fd422379fda50e48", "message": "health true",
          "name": "server-3-7e6d5c4b"}],
      "quorum": True}, {}),
    ("clusterDNS", 23, {"method": "clusterDNS", "params": {"name": "kubernetes.default.svc.cluster.local", "timeoutSeconds": 2}},
     {"addresses": ["10.43.0.1"], "answered": True, "code": "NOERROR", "elapsedMs": 3, "message": "",
      "server": "10.43.0.10:53"}, {}),
    ("reachPeers", 25, {"method": "reachPeers", "params": {"peers": [
        {"host": "10.0.0.2", "node": "server-2", "port": 10250},
        {"host": "10.0.0.4", "node": "agent-1", "port": 10250}], "timeoutSeconds": 3}, "timeoutMs": 20000},
     {"peers": [
         {"elapsedMs": 1, "host": "10.0.0.2", "message": "", "node": "server-2", "outcome": "reachable", "port": 10250},
         {"elapsedMs": 0, "host": "10.0.0.4", "message": "Connection refused (errno 111)", "node": "agent-1", "outcome": "refused",
          "port": 10250}]}, {}),
]

VALID = [
    ("hello", "Hello: the client offers protocol versions 1...1 and a 1 MiB download window.",
     frame("Hello", 0, canonical({"protocolVersionMax": 1, "protocolVersionMin": 1, "software": "upkeep 0.1.0",
                                  "streamWindowBytes": 1048576}))),
    ("hello-reply", "HelloReply: version 1 chosen; the agent on server node node-1 (arm64, k3s v1.30.6+k3s1).",
     frame("HelloReply", 0, canonical({"agent": AGENT, "concurrentRequestsMax": 32, "protocolVersion": 1,
                                       "streamWindowBytes": 1048576}))),
]
for stem, rid, envelope, result, extras in REQUESTS:
    VALID.append((f"request-{stem}", f"Request {rid}: {stem}.", frame("Request", rid, canonical(envelope))))
    VALID.append((f"response-{stem}", f"Response {rid}: result of {stem}.",
                  frame("Response", rid, canonical({"method": stem, "result": result, **extras}))))
VALID += [
    ("progress-pod", "Progress for request 7 (drain): one pod evicted.",
     frame("Progress", 7, canonical({"action": "evicted", "kind": "pod", "message": "evicted after 2 PDB retries",
                                     "name": "web-5d9f7c-abcde", "namespace": "shop"}))),
    ("progress-step", "Progress for request 4 (install): a step.",
     frame("Progress", 4, canonical({"kind": "step", "message": "systemctl restart k3s", "step": "restarting"}))),
    ("progress-bytes", "Progress for request 9 (backup): bytes so far.",
     frame("Progress", 9, canonical({"doneBytes": 1048576, "kind": "bytes", "totalBytes": 7340032}))),
    ("error-digest-mismatch", "Error for request 3: the upload does not match its digest.",
     frame("Error", 3, canonical({"code": "digestMismatch",
                                  "message": f"upload digest {hashlib.sha256(CHUNK).hexdigest()} is not the expected {SHA_A}; nothing was staged, fetch the artifact again"}))),
    ("error-connection", "Error on request id 0: the connection fails and closes.",
     frame("Error", 0, canonical({"code": "unsupportedVersion",
                                  "message": "no protocol version in common: client speaks 2...3, this agent 1...1; upgrade the agent"}))),
    ("request-stage-airgap-images", "Request 16: stage of a release's air-gap images tarball (artifact airgapImages).",
     frame("Request", 16, canonical({"method": "stage", "params": {
         "artifact": "airgapImages", "bytes": 187904000, "fileName": "k3s-airgap-images-arm64.tar.zst",
         "k3sVersion": "v1.31.2+k3s1", "operationID": "rollout-7:node-1:stage-images", "sha256": SHA_IMAGES},
         "timeoutMs": 600000, "upload": True}))),
    ("request-install-airgap", "Request 17: install on an air-gapped node, naming the staged images tarball.",
     frame("Request", 17, canonical({"method": "install", "params": {
         "healthTimeoutSeconds": 300, "imagesSHA256": SHA_IMAGES, "k3sVersion": "v1.31.2+k3s1",
         "operationID": "rollout-7:node-1:install", "sha256": SHA_A, "watchdogTimeoutSeconds": 900}}))),
    ("request-drain-delete", "Request 22: drain deleting pods instead of evicting them, not waiting for pods deleting over 30 s.",
     frame("Request", 22, canonical({"method": "drain", "params": {
         "deleteEmptyDirData": False, "disableEviction": True, "operationID": "rollout-7:node-1:drain",
         "skipWaitForDeleteTimeoutSeconds": 30, "timeoutSeconds": 600}}))),
    ("response-operation-interrupted", "Response 18: operation of an install the agent's restart left undone.",
     frame("Response", 18, canonical({"method": "operation", "result": {
         "failure": "interrupted", "method": "install", "state": "failed",
         "message": "the agent restarted during this install before k3s was restarted; the live binary is unchanged (v1.30.6+k3s1); install again with a new operation id"}}))),
    ("error-interrupted", "Error for request 4: the install's id was resolved as interrupted by an agent restart.",
     frame("Error", 4, canonical({"code": "interrupted",
                                  "message": "the agent restarted during this install before k3s was restarted; the live binary is unchanged (v1.30.6+k3s1); install again with a new operation id"}))),
    ("chunk", "Chunk of request 3's upload: raw bytes, including 0x00 and 0xFF.", frame("Chunk", 3, CHUNK)),
    ("chunk-end", "ChunkEnd of request 3: SHA-256 and length of all chunk bytes (here the one chunk above).",
     frame("ChunkEnd", 3, hashlib.sha256(CHUNK).digest() + struct.pack(">Q", len(CHUNK)))),
    ("window-update", "WindowUpdate for request 3: the receiver accepts 262144 more chunk bytes.",
     frame("WindowUpdate", 3, struct.pack(">I", 262144))),
    ("cancel", "Cancel of request 7.", frame("Cancel", 7, b"")),
    ("ping", "Ping with opaque 0x0123456789abcdef.", frame("Ping", 0, struct.pack(">Q", 0x0123456789ABCDEF))),
    ("pong", "Pong echoing it.", frame("Pong", 0, struct.pack(">Q", 0x0123456789ABCDEF))),
    ("goaway", "GoAway: requests above 10 were not processed.",
     frame("GoAway", 0, canonical({"lastRequestID": 10, "reason": "shutting down"}))),
]

INVALID = [
    ("invalid-http", "badMagic", "An HTTP request line instead of a frame.", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
    ("invalid-tls-client-hello", "badMagic", "The start of a TLS ClientHello sent to a plaintext endpoint.",
     bytes([0x16, 0x03, 0x01, 0x00, 0xF4, 0x01, 0x00, 0x00, 0xF0, 0x03, 0x03, 0x00])),
    ("invalid-frame-version", "unsupportedFrameVersion", "Frame format version 2.",
     header(0x01, 0, 2, version=2) + b"{}"),
    ("invalid-unknown-type", "unknownFrameType", "Frame type 0x0E.", header(0x0E, 1, 0)),
    ("invalid-oversize-request", "badPayloadLength", "A Request declaring 1 MiB + 1 bytes (header only).",
     header(0x03, 1, (1 << 20) + 1)),
    ("invalid-oversize-chunk", "badPayloadLength", "A Chunk declaring 256 KiB + 1 bytes (header only).",
     header(0x07, 1, (256 << 10) + 1)),
    ("invalid-huge-length", "badPayloadLength", "A Response declaring 4 GiB - 1 bytes (header only).",
     header(0x04, 1, 0xFFFFFFFF)),
    ("invalid-empty-chunk", "badPayloadLength", "A Chunk with no bytes.", header(0x07, 1, 0)),
    ("invalid-chunk-end-length", "badPayloadLength", "A ChunkEnd with 39 payload bytes.", header(0x08, 1, 39) + bytes(39)),
    ("invalid-request-id-zero", "badRequestID", "A Request with request id 0.",
     frame("Request", 0, canonical({"method": "status", "params": {}}))),
    ("invalid-ping-request-id", "badRequestID", "A Ping with request id 5.", header(0x0B, 5, 8) + bytes(8)),
    ("invalid-truncated", "truncatedFrame", "A Request header declaring 100 bytes, then the connection closes after 10 (22 bytes left over).",
     header(0x03, 1, 100) + b'{"method":'),
    ("invalid-unknown-method", "unknownMethod", "A Request for method \"reboot\" (well-formed frame; answered notImplemented).",
     frame("Request", 1, canonical({"method": "reboot", "params": {}}))),
    ("invalid-bad-sha256", "invalidMessage", "A stage Request whose sha256 is not 64 lowercase hex digits (answered badRequest).",
     frame("Request", 1, canonical({"method": "stage", "params": {"bytes": 10, "k3sVersion": "v1.31.2+k3s1",
                                                                  "operationID": "op-1", "sha256": "ABC"}, "upload": True}))),
    ("invalid-operation-id", "invalidMessage", "A cordon Request whose operation id contains a space (answered badRequest).",
     frame("Request", 1, canonical({"method": "cordon", "params": {"operationID": "op 1"}}))),
    ("invalid-images-file-name", "invalidMessage", "A stage Request of airgapImages whose fileName is not a k3s-airgap-images tarball (answered badRequest).",
     frame("Request", 1, canonical({"method": "stage", "params": {"artifact": "airgapImages", "bytes": 10,
                                                                  "fileName": "../../usr/local/bin/k3s", "k3sVersion": "v1.31.2+k3s1",
                                                                  "operationID": "op-1", "sha256": SHA_IMAGES}, "upload": True}))),
    ("invalid-restore-backup-without-upload", "invalidMessage", "A restoreBackup Request without upload: true (answered badRequest).",
     frame("Request", 1, canonical({"method": "restoreBackup", "params": {"bytes": 10, "format": "sqliteTar",
                                                                          "k3sVersion": "v1.30.6+k3s1", "operationID": "op-1",
                                                                          "sha256": SHA_SNAPSHOT}}))),
]


def main():
    for name in os.listdir(HERE):
        if name.endswith(".bin"):
            os.remove(os.path.join(HERE, name))
    manifest = {"valid": [], "invalid": []}
    for stem, description, data in VALID:
        with open(os.path.join(HERE, stem + ".bin"), "wb") as f:
            f.write(data)
        manifest["valid"].append({"file": stem + ".bin", "type": [k for k, v in TYPES.items() if v == data[3]][0],
                                  "requestID": struct.unpack(">I", data[4:8])[0], "description": description})
    for stem, error, description, data in INVALID:
        with open(os.path.join(HERE, stem + ".bin"), "wb") as f:
            f.write(data)
        manifest["invalid"].append({"file": stem + ".bin", "error": error, "description": description})
    with open(os.path.join(HERE, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=2)
        f.write("\n")


if __name__ == "__main__":
    main()
