import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import Testing
import UpkeepCore
import UpkeepHTTPServer
import UpkeepKube
import UpkeepPKI
import UpkeepSandbox
import UpkeepTLS
import UpkeepTestSupport
import UpkeepUpdates

/// The built `upkeep` binary beside the test bundle (`swift build --build-tests` builds it).
func upkeepBinary() throws -> String {
    let beside = ((try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) as NSString?)?.deletingLastPathComponent
    let candidates = [beside.map { $0 + "/upkeep" }, FileManager.default.currentDirectoryPath + "/.build/debug/upkeep"].compactMap { $0 }
    guard let found = candidates.first(where: FileManager.default.isExecutableFile(atPath:)) else {
        throw CheckConfigurationMissing(description: "no built upkeep binary at \(candidates); run swift build --build-tests")
    }
    return found
}

struct CheckConfigurationMissing: Error, CustomStringConvertible { var description: String }

/// The simulated cluster, the sandbox release server and a state directory, with `upkeep check` run against them.
final class CheckCommandHarness {
    let cluster: SimulatedCluster
    let releases: SandboxReleases
    let state: TemporaryDirectory

    init(k3sVersion: String = "v1.30.6+k3s1") async throws {
        cluster = try await SimulatedCluster(spec: ClusterSpec(servers: 1, agents: 2, volumes: 0, k3sVersion: k3sVersion,
                                                               longhornVersion: "v1.7.2", fluxVersion: "v2.4.0"))
        releases = try await SandboxReleases(pageSize: 5)
        state = try TemporaryDirectory()
    }

    func check(_ arguments: [String], kubeconfig: String? = nil) throws -> ProcessResult {
        try runProcess(try upkeepBinary(), ["check", "--kubeconfig", kubeconfig ?? cluster.kubeconfigPath, "--github-api", releases.baseURL,
                                            "--channel-server", releases.baseURL, "--insecure", "--state-dir", state.path, "--timeout", "5"] + arguments,
                       timeoutSeconds: 60)
    }

    var history: [CheckRecord] { (try? JSONLinesCheckHistory(stateDirectory: state.path).recent(limit: 100)) ?? [] }

    func close() async {
        await releases.close()
        await cluster.close()
    }
}

@Suite("upkeep check: the command, its output, exit codes and history", .serialized, .timeLimit(.minutes(2)))
struct CheckCommandTests {
    @Test("updates available: exit 10, a JSON report, one history line")
    func updatesAvailable() async throws {
        let harness = try await CheckCommandHarness()
        let result = try harness.check(["-o", "json"])
        #expect(result.status == 10, "\(result.error)")
        let report = try JSONDecoder().decode(CheckReport.self, from: Data(result.output.utf8))
        #expect(report.schemaVersion == 1 && report.updatesAvailable)
        #expect(report.component(.k3s)?.path.map(\.version) == [version("v1.31.4+k3s1"), version("v1.32.3+k3s1"), version("v1.33.5+k3s1")])
        #expect(report.component(.flux)?.installed.version == version("v2.4.0"))
        #expect(report.component(.longhorn)?.path.map(\.version) == [version("v1.8.2"), version("v1.9.1")])
        let history = harness.history
        #expect(history.count == 1)
        #expect(history.first?.outcome == "updates-available" && history.first?.exitCode == 10)
        #expect(history.first?.components.map(\.component) == [.k3s, .flux, .longhorn])
        let mode = try FileManager.default.attributesOfItem(atPath: harness.state.file(JSONLinesCheckHistory.fileName))[.posixPermissions] as? Int
        #expect(mode == 0o600)

        // The same as `--report --output json`; the second run answers from 304s.
        let fullBefore = harness.releases.full
        let again = try harness.check(["--report", "--output", "json"])
        #expect(again.status == 10)
        #expect(harness.releases.full == fullBefore)
        #expect(harness.releases.notModified > 0)
        #expect(harness.history.count == 2)

        // A secondary limit (429, retry-after: 1) on the first API request is waited out.
        try harness.releases.fault("retry-after", "1", options: .init(requests: 1, status: 429))
        let waited = try harness.check(["-o", "json"])
        #expect(waited.status == 10, "\(waited.error)")
        #expect(harness.releases.requests.filter { $0.status == 429 }.count == 1)
        #expect(harness.history.count == 3)
        await harness.close()
    }

    @Test("upkeep.yaml names the cluster, the releases and the state: --config before or after check, flags override")
    func readsTheConfigurationFile() async throws {
        let harness = try await CheckCommandHarness()
        let directory = try TemporaryDirectory()
        try FileManager.default.copyItem(atPath: harness.cluster.kubeconfigPath, toPath: directory.file("kubeconfig"))
        let config = try directory.write("""
            kubeconfig: kubeconfig
            stateDir: state
            releases: {githubAPI: "\(harness.releases.baseURL)", channelServer: "\(harness.releases.baseURL)", insecure: true}
            """, to: "upkeep.yaml")
        func upkeep(_ arguments: [String]) throws -> ProcessResult {
            try runProcess(try upkeepBinary(), arguments + ["--timeout", "5"], timeoutSeconds: 60)
        }
        let before = try upkeep(["--config", config, "check", "-o", "json"])
        #expect(before.status == 10, "\(before.error)")
        #expect(try JSONDecoder().decode(CheckReport.self, from: Data(before.output.utf8)).updatesAvailable)
        let after = try upkeep(["check", "--config", config, "-o", "json"])
        #expect(after.status == 10, "\(after.error)")
        // The history went to the file's stateDir, relative to the file.
        #expect(((try? JSONLinesCheckHistory(stateDirectory: directory.file("state")).recent(limit: 10)) ?? []).count == 2)

        // A flag wins over the file: nothing listens on port 1, so the release source is unreachable (5).
        let overridden = try upkeep(["check", "--config", config, "--github-api", "http://127.0.0.1:1", "--component", "k3s"])
        #expect(overridden.status == 5, "\(overridden.error)")
        #expect(overridden.error.contains("127.0.0.1:1"), "\(overridden.error)")
        // A wrong field in the file is a usage error naming the file and line.
        let broken = try directory.write("kubeconfig: kubeconfig\nreleases: {mirorr: x}\n", to: "broken.yaml")
        let refused = try upkeep(["check", "--config", broken])
        #expect(refused.status == 2 && refused.error.contains("broken.yaml:2") && refused.error.contains("mirorr"), "\(refused.error)")
        await harness.close()
    }

    @Test("up to date on the asked channel for the asked component: exit 0, a table")
    func upToDate() async throws {
        let harness = try await CheckCommandHarness(k3sVersion: "v1.31.4+k3s1")
        let result = try harness.check(["--component", "k3s", "--channel", "v1.31"])
        #expect(result.status == 0, "\(result.error)")
        #expect(result.output.contains("k3s        v1.31.4+k3s1 (3 nodes)  v1.31.4+k3s1  no      -"))
        #expect(result.output.hasSuffix("Everything is up to date.\n"))
        #expect(!result.output.contains("flux"))
        await harness.close()
    }

    @Test("a rate limit, a corrupted answer, an unreachable cluster and a loose token file each have their code")
    func failureCodes() async throws {
        let harness = try await CheckCommandHarness()
        try harness.releases.fault("rate-limit")
        let limited = try harness.check(["-o", "json"])
        #expect(limited.status == 5)
        #expect(limited.error.contains("rate limit exhausted") && limited.error.contains("GITHUB_TOKEN"))
        let error = try JSONSerialization.jsonObject(with: Data(limited.output.utf8)) as? [String: Any]
        #expect((error?["error"] as? [String: Any])?["exitCode"] as? Int == 5)
        try harness.releases.fault("clear")

        try harness.releases.fault("corrupt-json", "longhorn/longhorn")
        let corrupt = try harness.check([])
        #expect(corrupt.status == 6)
        #expect(corrupt.error.contains("unusable answer from \(harness.releases.baseURL)/repos/longhorn/longhorn/releases"))
        try harness.releases.fault("clear")

        // A release server that never answers: the check gives up after its attempts (--timeout 1 each).
        try harness.releases.fault("hang")
        let hung = try harness.check(["--timeout", "1", "--component", "k3s"])
        #expect(hung.status == 5)
        #expect(hung.error.contains("did not answer within 1"), "\(hung.error)")
        try harness.releases.fault("clear")

        let kubeconfig = try harness.state.writeUnreachableKubeconfig(to: "unreachable.yaml")
        let unreachable = try harness.check([], kubeconfig: kubeconfig)
        #expect(unreachable.status == 4)
        #expect(unreachable.error.hasPrefix("Error: cannot read the cluster"))

        let token = try harness.state.write("ghp_loose\n", to: "token")
        chmod(token, 0o644)
        let loose = try harness.check(["--github-token-file", token])
        #expect(loose.status == 3)
        #expect(loose.error.contains("chmod 600") && !loose.error.contains("ghp_loose"))

        let usage = try harness.check(["--all", "--component", "k3s"])
        #expect(usage.status == 2)
        let channel = try harness.check(["--channel", "no such"])
        #expect(channel.status == 2)

        #expect(harness.history.map(\.exitCode) == [5, 6, 5, 4, 3])
        #expect(harness.history.allSatisfy { $0.outcome == "failed" && $0.error != nil })
        await harness.close()
    }

    @Test("a mirror directory gives the same report as GitHub")
    func mirror() async throws {
        let harness = try await CheckCommandHarness()
        let mirror = try TemporaryDirectory()
        try harness.releases.writeMirror(to: mirror.path)
        let online = try harness.check(["-o", "json"])
        let offline = try harness.check(["-o", "json", "--mirror", mirror.path])
        #expect(offline.status == online.status)
        func body(_ text: String) throws -> CheckReport {
            var report = try JSONDecoder().decode(CheckReport.self, from: Data(text.utf8))
            report.checkedAt = ""
            report.releaseSource = ""
            report.rateLimit = nil
            return report
        }
        #expect(try body(offline.output) == body(online.output))
        await harness.close()
    }
}

@Suite("upkeep check against an HTTPS mirror with its own CA", .timeLimit(.minutes(1)))
struct HTTPSMirrorTests {
    @Test("--ca-file trusts the mirror's CA; without it the mirror is refused")
    func httpsMirror() async throws {
        let harness = try await CheckCommandHarness()
        let ca = try CertificateAuthority.create(commonName: "mirror CA", keyType: .ecdsaP256, validity: .days(1).startingEarlier(bySeconds: 60))
        let issued = try ca.issueServer(commonName: "mirror", ipAddresses: ["127.0.0.1"], keyType: .ecdsaP256,
                                        validity: .days(1).startingEarlier(bySeconds: 60))
        let tls = try TLSContext.publicServer(chain: [issued.certificate], key: issued.key)
        let files = Dictionary(uniqueKeysWithValues: harness.releases.mirrorFiles.map { ("/" + $0.path, $0.content) })
        let mirror = try await HTTPServer.start(host: "127.0.0.1", port: 0, tls: tls, responder: .nonBlocking { request in
            files[request.path].map { APIResponse(status: 200, body: $0) } ?? .text("missing\n", status: 404)
        })
        let caFile = try harness.state.write(try ca.certificate.pem(), to: "mirror-ca.pem")
        let url = "https://127.0.0.1:\(mirror.port)/"
        let trusted = try harness.check(["--mirror", url, "--ca-file", caFile])
        #expect(trusted.status == 10, "\(trusted.error)")
        #expect(trusted.output.contains("Source: mirror \(url)"))
        let untrusted = try harness.check(["--mirror", url])
        #expect(untrusted.status == 5)
        #expect(untrusted.error.contains("not signed by a trusted CA"))
        await mirror.close()
        await harness.close()
    }
}
