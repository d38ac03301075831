// swift-tools-version: 6.2
import PackageDescription

/// One strict set of settings for every Swift target.
let strict: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility"),
    .treatAllWarnings(as: .error),
]

let nioCore = Target.Dependency.product(name: "NIOCore", package: "swift-nio")
let nioPosix = Target.Dependency.product(name: "NIOPosix", package: "swift-nio")
let nioHTTP1 = Target.Dependency.product(name: "NIOHTTP1", package: "swift-nio")
let logging = Target.Dependency.product(name: "Logging", package: "swift-log")
let argumentParser = Target.Dependency.product(name: "ArgumentParser", package: "swift-argument-parser")
let yams = Target.Dependency.product(name: "Yams", package: "Yams")

/// This manifest's directory, for linker inputs kept in the repository.
let packageDirectory = String(#filePath.dropLast("/Package.swift".count))

let package = Package(
    name: "upkeep",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "upkeep", targets: ["upkeep"]),
        .executable(name: "upkeep-agent", targets: ["upkeep-agent"]),
        // The sandbox cluster, which `upkeep sandbox` and `upkeep demo` run: installed beside `upkeep`.
        .executable(name: "upkeep-sandbox", targets: ["upkeep-sandbox"]),
    ],
    // Every package we use at an exact version, so a shipped binary is built from known sources
    // (Package.resolved stays out of git: the local package mirrors carry their own commit ids).
    // The packages these bring are pinned by scripts/check-dependencies, which fails when the
    // resolved graph holds a package or a version it does not name.
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", exact: "2.101.3"),
        .package(url: "https://github.com/apple/swift-log.git", exact: "1.16.2"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", exact: "1.8.2"),
        .package(url: "https://github.com/jpsim/Yams.git", exact: "6.2.2"),
        .package(url: "https://github.com/groue/GRDB.swift", exact: "7.10.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", exact: "2.4.1"),
    ],
    targets: [
        // System OpenSSL (libssl-dev): the only TLS stack in the build.
        .systemLibrary(name: "COpenSSL", path: "Sources/COpenSSL", pkgConfig: "openssl",
                       providers: [.apt(["libssl-dev"])]),
        // C functions wrapping OpenSSL macros, which Swift cannot import.
        .target(name: "COpenSSLShims", dependencies: ["COpenSSL"], path: "Sources/COpenSSLShims"),

        // Keys, certificates, identities and the cluster CA, on the OpenSSL library.
        .target(name: "UpkeepPKI", dependencies: ["COpenSSL", "COpenSSLShims", "UpkeepCore", "UpkeepPOSIX"],
                path: "Sources/UpkeepPKI", swiftSettings: strict),
        // TLS for SwiftNIO driven through OpenSSL memory BIOs.
        .target(name: "UpkeepTLS", dependencies: ["COpenSSL", "COpenSSLShims", "UpkeepCore", "UpkeepPKI", nioCore, nioPosix, logging],
                path: "Sources/UpkeepTLS", swiftSettings: strict),
        // The agent-controller wire format and session rules: frames, messages, and the server and
        // client session machines (events in, actions out). No channel code: NIOCore for ByteBuffer only.
        .target(name: "UpkeepProtocolCore", dependencies: ["UpkeepCore", nioCore],
                path: "protocol/Sources/UpkeepProtocolCore", swiftSettings: strict),
        // The protocol over SwiftNIO: the frame codec, the connection handlers that carry out the
        // session machines' actions, client and server. Re-exports UpkeepProtocolCore. UpkeepHTTP
        // for its bounds counted and logged (LimitLog), which the server shares with the HTTP ones.
        .target(name: "UpkeepProtocol", dependencies: ["UpkeepProtocolCore", "UpkeepCore", "UpkeepTLS", "UpkeepPKI", "UpkeepHTTP", nioCore, nioPosix, logging],
                path: "protocol/Sources/UpkeepProtocol", swiftSettings: strict),

        // The one HTTP/1.1 client (pooled keep-alive, bounds, retries, rate limits, redirects, ETag
        // cache; public, mutual or no TLS) and the vocabulary the server shares (URLs, bounds
        // counted and logged). No full Foundation: the agent links it (docs/http.md).
        .target(name: "UpkeepHTTP", dependencies: ["UpkeepCore", "UpkeepPOSIX", "UpkeepTLS", nioCore, nioPosix, nioHTTP1, logging],
                path: "Sources/UpkeepHTTP", swiftSettings: strict),
        // The one small HTTP/1.1 server (bounded header size and time, request, idle time and
        // connections) for the sandbox's APIs and `upkeep serve`; the agent does not link it.
        .target(name: "UpkeepHTTPServer", dependencies: ["UpkeepCore", "UpkeepHTTP", "UpkeepTLS", nioCore, nioPosix, nioHTTP1, logging],
                path: "Sources/UpkeepHTTPServer", swiftSettings: strict),
        // Pure domain types shared by every module: k3s versions, node roles, architectures, Instant,
        // civil dates, digest text, the seeded generator. The standard library only (scripts/check-core-imports).
        .target(name: "UpkeepCore", path: "Sources/UpkeepCore", swiftSettings: strict),
        // The POSIX edges shared by the agent, the controller and the sandbox: posix_spawn, signals as
        // async values, bounded file reads, wait statuses, the wall clock. Glibc and Dispatch, no Foundation.
        .target(name: "UpkeepPOSIX", dependencies: ["UpkeepCore"], path: "Sources/UpkeepPOSIX", swiftSettings: strict),

        // The Kubernetes API client shared by agent and controller: kubeconfig, JSON, typed views,
        // on UpkeepHTTP's client. No Yams (hence no full Foundation) here: the agent links this module.
        .target(name: "UpkeepKube", dependencies: ["UpkeepCore", "UpkeepPOSIX", "UpkeepHTTP", "UpkeepTLS", "UpkeepPKI", "UpkeepYAML", nioCore, nioPosix, nioHTTP1, logging],
                path: "Sources/UpkeepKube", swiftSettings: strict),
        // The live cluster as `upkeep rehearse` copies it (read with GET and LIST only), Codable so
        // the sandbox builds its twin from the file. Controller and sandbox only: the agent does not link it.
        .target(name: "UpkeepCapture", dependencies: ["UpkeepKube"], path: "Sources/UpkeepCapture", swiftSettings: strict),
        // Flux install manifests (multi-document kustomize output) read with Yams: controller and sandbox only.
        .target(name: "UpkeepFlux", dependencies: [yams], path: "Sources/UpkeepFlux", swiftSettings: strict),
        // Programs the controller and the sandbox run (git, kubectl, the sandbox program) with a time
        // limit, and git's environment. Foundation: not for the agent, which has its own runner.
        .target(name: "UpkeepProcess", dependencies: ["UpkeepCore", "UpkeepPOSIX"], path: "Sources/UpkeepProcess", swiftSettings: strict),
        // The sandbox cluster: simulated Kubernetes API, behaviour model, fake k3s, release server.
        .target(name: "UpkeepSandbox", dependencies: ["UpkeepCore", "UpkeepPOSIX", "UpkeepKube", "UpkeepCapture", "UpkeepFlux", "UpkeepHTTP", "UpkeepHTTPServer", "UpkeepTLS", "UpkeepPKI", "UpkeepProcess", "CSQLite",
                                                 nioCore, nioPosix, nioHTTP1, logging, yams],
                path: "sandbox/Sources/UpkeepSandbox", swiftSettings: strict),
        // `upkeep-sandbox`: the sandbox's command line (up, status, fault, down; `upkeep sandbox …`
        // runs it), and the multi-call binary of its hosts: `k3s` and `systemctl` by argv[0] (or
        // first argument), `unit-supervisor`, `serve DIR`, `api`. The production `upkeep` does not
        // link the simulator (scripts/check-links).
        .executableTarget(name: "upkeep-sandbox", dependencies: ["UpkeepSandbox", "UpkeepCapture", "UpkeepHTTPServer", "UpkeepKube", argumentParser],
                          path: "sandbox/Sources/upkeep-sandbox", swiftSettings: strict),

        // Enrollment by bootstrap token, the parts both sides share: the token format, the join
        // protocol's messages and the joining node's client. No Foundation: the agent links it.
        .target(name: "UpkeepEnrollment", dependencies: ["UpkeepPKI", "UpkeepTLS", "UpkeepHTTP", "UpkeepKube", nioHTTP1],
                path: "Sources/UpkeepEnrollment", swiftSettings: strict),

        // Strict reading of YAML configuration files (agent.yaml, upkeep.yaml) and kubeconfigs with a
        // reader of its own (YAMLReader, stdlib only): errors name file, line and field.
        .target(name: "UpkeepYAML", path: "Sources/UpkeepYAML", swiftSettings: strict),

        // CSQLite: the system libsqlite3 (libsqlite3-dev), for the sandbox's datastore. The agent does
        // not link it: it loads libsqlite3 on its first SQLite backup (SQLiteOnlineBackup).
        .systemLibrary(name: "CSQLite", path: "sandbox/Sources/CSQLite", providers: [.apt(["libsqlite3-dev"])]),
        // The agent's pure core: the upgrade machine, its journal records and operation types. It
        // imports nothing but UpkeepCore and the standard library, so the compiler keeps I/O out of it.
        .target(name: "UpkeepAgentCore", dependencies: ["UpkeepCore"], path: "agent/Sources/UpkeepAgentCore", swiftSettings: strict),
        .target(name: "UpkeepAgent", dependencies: ["UpkeepAgentCore", "UpkeepCore", "UpkeepEnrollment", "UpkeepPOSIX", "UpkeepProtocol", "UpkeepTLS", "UpkeepPKI", "UpkeepHTTP", "UpkeepKube", "UpkeepYAML", nioCore, nioPosix, nioHTTP1,
                                                logging],
                path: "agent/Sources/UpkeepAgent", swiftSettings: strict),
        // Linked by lld with packed relative relocations (DT_RELR, glibc 2.36+): the ~100,000
        // R_X86_64_RELATIVE entries of a PIE with a static Swift runtime shrink from 2.2 MiB of
        // .rela.dyn, all read at every start, to 19 KiB. And without the -export-dynamic that the
        // static Swift runtime's link arguments add: nothing loads or looks up the agent's own
        // symbols, whose 17,863 exports cost 1.4 MiB of resident symbol tables.
        // The functions that run from exec to an idle daemon come first in .text, in the order of
        // agent/upkeep-agent.order (scripts/agent-order-file): the kernel maps code 64 KiB around
        // each fault, so scattered start-up code kept most of .text resident (docs/agent.md, "Measurements").
        .executableTarget(name: "upkeep-agent", dependencies: ["UpkeepAgent", "UpkeepAgentCore", "UpkeepCore", "UpkeepPKI", "UpkeepPOSIX", "UpkeepYAML", "UpkeepProtocol", argumentParser, nioCore, nioPosix, logging],
                          path: "agent/Sources/upkeep-agent", swiftSettings: strict,
                          linkerSettings: [.unsafeFlags(["-use-ld=lld", "-Xlinker", "-z", "-Xlinker", "pack-relative-relocs",
                                                           "-Xlinker", "--no-export-dynamic",
                                                           "-Xlinker", "--symbol-ordering-file=\(packageDirectory)/agent/upkeep-agent.order",
                                                           "-Xlinker", "--no-warn-symbol-ordering"], .when(platforms: [.linux]))]),

        // Update detection: installed versions from the cluster, available ones from GitHub, the
        // channel server or a mirror; paths, arch support and compatibility warnings.
        .target(name: "UpkeepUpdates", dependencies: ["UpkeepCore", "UpkeepFlux", "UpkeepHTTP", "UpkeepKube", nioHTTP1],
                path: "controller/Sources/UpkeepUpdates", swiftSettings: strict),

        // The rollout planner and engine: pure (events in, actions out), no I/O module imported.
        .target(name: "UpkeepRollout", dependencies: ["UpkeepCore"],
                path: "controller/Sources/UpkeepRollout", swiftSettings: strict),

        // The controller's I/O edges: the cluster observer (Kubernetes API), the agent fleet over
        // mutual TLS, the artifact cache (GitHub or a mirror, verified, by digest), and the
        // cluster Lease that keeps two controllers apart.
        .target(name: "UpkeepFleet", dependencies: ["UpkeepRollout", "UpkeepCore", "UpkeepKube", "UpkeepProtocol", "UpkeepTLS",
                                               "UpkeepPKI", "UpkeepHTTP", nioCore, nioHTTP1, logging],
                path: "controller/Sources/UpkeepFleet", swiftSettings: strict),

        // The controller's state: rollouts, transitions, steps, notices and the lease in SQLite (GRDB, WAL).
        .target(name: "UpkeepStore", dependencies: ["UpkeepRollout", "UpkeepCore", .product(name: "GRDB", package: "GRDB.swift")],
                path: "controller/Sources/UpkeepStore", swiftSettings: strict),
        // Notifications from the store's outbox: the sinks of upkeep.yaml, their formats (signed JSON
        // webhook, Slack, Mattermost, Teams, ntfy, Gotify) and the deliverer that drains the outbox.
        .target(name: "UpkeepNotify", dependencies: ["UpkeepStore", "UpkeepCore", "UpkeepPOSIX", "UpkeepHTTP", "UpkeepPKI", "UpkeepTLS", "UpkeepYAML",
                                                nioHTTP1, logging],
                path: "controller/Sources/UpkeepNotify", swiftSettings: strict),
        // Drives the rollout engine: persists every transition before acting, holds the lease.
        .target(name: "UpkeepRuntime", dependencies: ["UpkeepRollout", "UpkeepStore", "UpkeepCore", "UpkeepPOSIX"],
                path: "controller/Sources/UpkeepRuntime", swiftSettings: strict),

        // Simulated clusters and agents for the controller's deterministic simulation tests and benches.
        .target(name: "UpkeepSimulation", dependencies: ["UpkeepRollout", "UpkeepCore"],
                path: "controller/Sources/UpkeepSimulation", swiftSettings: strict),

        // The controller and the `upkeep` CLI.
        .target(name: "UpkeepCLI", dependencies: ["UpkeepCore", "UpkeepPOSIX", "UpkeepFlux", "UpkeepRollout", "UpkeepStore", "UpkeepNotify", "UpkeepRuntime", "UpkeepFleet", "UpkeepYAML", "UpkeepProtocol", "UpkeepTLS", "UpkeepPKI", "UpkeepUpdates", "UpkeepHTTP", "UpkeepHTTPServer", "UpkeepKube", "UpkeepCapture", "UpkeepProcess", "UpkeepEnrollment",
                                             nioCore, nioPosix, nioHTTP1, logging, argumentParser, yams,
                                             .product(name: "Prometheus", package: "swift-prometheus")],
                path: "controller/Sources/UpkeepCLI", swiftSettings: strict),
        .executableTarget(name: "upkeep", dependencies: ["UpkeepCLI", "UpkeepProtocol"],
                          path: "controller/Sources/upkeep", swiftSettings: strict),

        // Measurement driver for bench/ scripts (built in release mode by them).
        .executableTarget(name: "upkeep-bench", dependencies: ["UpkeepTLS", "UpkeepPKI", "UpkeepProtocol", nioCore, nioPosix],
                          path: "bench/Sources/upkeep-bench", swiftSettings: strict),

        // Measurement driver for bench/fanout: the agent cross-check against many mTLS agents.
        .executableTarget(name: "upkeep-fleet-bench", dependencies: ["UpkeepFleet", "UpkeepRollout", "UpkeepCore", "UpkeepProtocol", "UpkeepTLS",
                                                                     "UpkeepPKI", nioCore, nioPosix],
                          path: "bench/Sources/upkeep-fleet-bench", swiftSettings: strict),

        // Measurement driver for the controller's bench/ scripts (planning scale, long simulations).
        .executableTarget(name: "upkeep-controller-bench", dependencies: ["UpkeepRollout", "UpkeepCore", "UpkeepSimulation", "UpkeepStore"],
                          path: "bench/Sources/upkeep-controller-bench", swiftSettings: strict),

        // Helpers shared by test targets: temporary directories, running real processes.
        .target(name: "UpkeepTestSupport", dependencies: ["UpkeepPOSIX", logging, nioCore, nioPosix], path: "Tests/UpkeepTestSupport", swiftSettings: strict),
        .target(name: "UpkeepSandboxTestSupport", dependencies: ["UpkeepSandbox", "UpkeepHTTPServer", "UpkeepKube", "UpkeepTestSupport", nioCore, nioPosix],
                path: "Tests/UpkeepSandboxTestSupport", swiftSettings: strict),
        .testTarget(name: "UpkeepPKITests", dependencies: ["UpkeepPKI", "UpkeepTestSupport"], swiftSettings: strict),
        .testTarget(name: "UpkeepTLSTests", dependencies: ["UpkeepTLS", "UpkeepPKI", "UpkeepCore", "UpkeepTestSupport", nioCore, nioPosix,
                                                          .product(name: "NIOEmbedded", package: "swift-nio")], swiftSettings: strict),
        .testTarget(name: "UpkeepProtocolTests", dependencies: ["UpkeepCore", "UpkeepProtocolCore", "UpkeepProtocol", "UpkeepTLS", "UpkeepPKI", "UpkeepHTTP", "UpkeepTestSupport",
                                                         nioCore, nioPosix, .product(name: "NIOEmbedded", package: "swift-nio")],
                    swiftSettings: strict),
        .testTarget(name: "UpkeepAgentTests", dependencies: ["UpkeepAgent", "UpkeepEnrollment", "UpkeepAgentCore", "UpkeepCore", "UpkeepPOSIX", "UpkeepHTTP", "UpkeepSandboxTestSupport", "UpkeepYAML", "UpkeepTestSupport", "UpkeepPKI", "UpkeepTLS", "UpkeepKube", "UpkeepSandbox", "UpkeepProtocol",
                                                        nioCore, nioPosix, yams],
                    exclude: ["FakeNode"], swiftSettings: strict),
        .testTarget(name: "UpkeepKubeTests", dependencies: ["UpkeepKube", "UpkeepCapture", "UpkeepHTTP", "UpkeepHTTPServer", "UpkeepSandbox", "UpkeepPKI", "UpkeepTestSupport", nioCore, nioPosix],
                    swiftSettings: strict),
        .testTarget(name: "UpkeepSandboxTests", dependencies: ["UpkeepSandbox", "UpkeepCapture", "UpkeepHTTPServer", "UpkeepProcess", "UpkeepCore", "UpkeepKube", "UpkeepPKI", "UpkeepTLS", "UpkeepTestSupport", "UpkeepCLI", "UpkeepRollout", "UpkeepProtocol",
                                                          nioCore, nioPosix],
                    swiftSettings: strict),
        .testTarget(name: "UpkeepHTTPTests", dependencies: ["UpkeepHTTP", "UpkeepHTTPServer", "UpkeepTLS", "UpkeepPKI", "UpkeepTestSupport", nioCore, nioPosix, nioHTTP1],
                    swiftSettings: strict),
        .testTarget(name: "UpkeepCoreTests", dependencies: ["UpkeepCore"], swiftSettings: strict),
        .testTarget(name: "UpkeepUpdatesTests", dependencies: ["UpkeepUpdates", "UpkeepProcess", "UpkeepCore", "UpkeepHTTP", "UpkeepHTTPServer", "UpkeepKube", "UpkeepSandbox", "UpkeepPKI", "UpkeepTLS",
                                                         "UpkeepTestSupport", nioCore, nioPosix], swiftSettings: strict),
        .testTarget(name: "UpkeepFleetTests", dependencies: ["UpkeepFleet", "UpkeepHTTPServer", "UpkeepAgentCore", "UpkeepSandboxTestSupport", "UpkeepRollout", "UpkeepCore", "UpkeepKube", "UpkeepProtocol",
                                                       "UpkeepTLS", "UpkeepPKI", "UpkeepHTTP", "UpkeepSandbox", "UpkeepAgent",
                                                       "UpkeepTestSupport", nioCore, nioPosix],
                    swiftSettings: strict),
        .testTarget(name: "UpkeepRolloutTests", dependencies: ["UpkeepRollout", "UpkeepCore", "UpkeepSimulation", "UpkeepTestSupport"], swiftSettings: strict),
        // A file-backed cluster with agents for the store's and runtime's tests and the runtime probe.
        .target(name: "UpkeepRuntimeTestSupport", dependencies: ["UpkeepRollout", "UpkeepCore", "UpkeepStore"],
                path: "Tests/UpkeepRuntimeTestSupport", swiftSettings: strict),
        // Runs a rollout against a file-backed world so a test can SIGKILL it mid-rollout.
        .executableTarget(name: "upkeep-runtime-probe", dependencies: ["UpkeepRuntime", "UpkeepStore", "UpkeepRollout", "UpkeepRuntimeTestSupport"],
                          path: "Tests/upkeep-runtime-probe", swiftSettings: strict),
        .testTarget(name: "UpkeepRuntimeTests", dependencies: ["UpkeepRuntime", "UpkeepStore", "UpkeepRollout", "UpkeepCore", "UpkeepTestSupport",
                                                          "UpkeepRuntimeTestSupport"], swiftSettings: strict),
        // A notification endpoint on 127.0.0.1 recording what it receives, for the notification tests.
        .target(name: "UpkeepNotifyTestSupport", dependencies: ["UpkeepHTTPServer", "UpkeepTestSupport", logging],
                path: "Tests/UpkeepNotifyTestSupport", swiftSettings: strict),
        // The notification formats, the outbox and the deliverer over real sockets.
        .testTarget(name: "UpkeepNotifyTests", dependencies: ["UpkeepNotify", "UpkeepNotifyTestSupport", "UpkeepStore", "UpkeepRollout", "UpkeepCore",
                                                         "UpkeepHTTP", "UpkeepPOSIX", "UpkeepPKI", "UpkeepYAML", "UpkeepTestSupport", "UpkeepRuntimeTestSupport"],
                    swiftSettings: strict),
        .testTarget(name: "UpkeepStoreTests", dependencies: ["UpkeepStore", "UpkeepRollout", "UpkeepCore", "UpkeepTestSupport",
                                                        "UpkeepRuntimeTestSupport"], swiftSettings: strict),
        // The built `upkeep` against sandbox clusters of real processes, with kubectl as the witness.
        .testTarget(name: "UpkeepEndToEndTests", dependencies: ["UpkeepSandbox", "UpkeepProcess", "UpkeepStore", "UpkeepRollout", "UpkeepCore", "UpkeepTestSupport",
                                                           "UpkeepNotifyTestSupport"],
                    swiftSettings: strict),
        // YAMLReader against Yams (libyaml) as the reference reader.
        .testTarget(name: "UpkeepYAMLTests", dependencies: ["UpkeepYAML", "UpkeepCore", yams], swiftSettings: strict),
        .testTarget(name: "UpkeepCLITests", dependencies: ["UpkeepCLI", "UpkeepEnrollment", "UpkeepFlux", "UpkeepFleet", "UpkeepStore", "UpkeepRuntime", "UpkeepRuntimeTestSupport", "UpkeepRollout", "UpkeepCore", "UpkeepYAML", "UpkeepPKI", "UpkeepTestSupport", "UpkeepSandbox",
                                                     "UpkeepNotify", "UpkeepNotifyTestSupport", "UpkeepSandboxTestSupport", "UpkeepKube", "UpkeepHTTPServer"], swiftSettings: strict),
    ]
)
