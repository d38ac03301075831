import Foundation
import Testing
import UpkeepProcess
import UpkeepSandbox
import UpkeepStore

/// `upkeep update` against a sandbox whose Flux follows a real Git repository: the commit lands
/// on the branch, Flux's source and HelmRelease take it, Longhorn reports the new version (per
/// `kubectl`); when the upgrade fails the commit is reverted on the branch; a skipped minor is
/// refused with nothing committed.
@Suite(.serialized, .timeLimit(.minutes(5)))
struct GitOpsEndToEndTests {
    func log(_ sandbox: EndToEndSandbox) async throws -> [String] {
        let log = try await ProcessRun.run("git", ["--git-dir", "\(sandbox.directory)/git/fleet.git", "log", "--format=%an %s"], timeoutSeconds: 30)
        try #require(log.status == 0, "\(log.output)")
        return log.output.split(separator: "\n").map(String.init)
    }

    func kubectl(_ sandbox: EndToEndSandbox, _ arguments: [String]) async throws -> String {
        let outcome = try await ProcessRun.run("kubectl", ["--kubeconfig", sandbox.manifest.kubeconfig] + arguments, timeoutSeconds: 30)
        try #require(outcome.status == 0, "kubectl \(arguments.joined(separator: " ")): \(outcome.output)")
        return outcome.output
    }

    func longhornVersion(_ sandbox: EndToEndSandbox) async throws -> String {
        try await kubectl(sandbox, ["-n", "longhorn-system", "get", "settings.longhorn.io", "current-longhorn-version", "-o", "jsonpath={.value}"])
    }

    @Test func aLonghornUpgradeGoesThroughGitAndAFailedOneIsReverted() async throws {
        try await EndToEndSandbox.with(servers: 1, agents: 1, k3sVersion: EndToEndTests.start) { sandbox in
            #expect(try await longhornVersion(sandbox) == "v1.7.2")
            let seeded = try await log(sandbox)

            let skipped = try await sandbox.controller(["update", "--component", "longhorn", "--to", "v1.9.1", "--yes"])
            #expect(skipped.status == 5 && skipped.output.contains("one minor version at a time"), "\(skipped.output)")
            let dry = try await sandbox.controller(["update", "--to", "v1.8.2", "--dry-run"])
            #expect(dry.status == 0 && dry.output.contains("chart version 1.7.2 → 1.8.2"), "\(dry.output)")
            #expect(try await log(sandbox) == seeded, "nothing committed before a real run")

            let upgrade = try await sandbox.controller(["update", "--to", "v1.8.2", "--yes"], timeoutSeconds: 120)
            #expect(upgrade.status == 0 && upgrade.output.contains("done: Longhorn runs v1.8.2"), "\(upgrade.output)")
            #expect(try await log(sandbox).first == "upkeep longhorn: upgrade to v1.8.2 (chart 1.7.2 → 1.8.2)")
            #expect(try await longhornVersion(sandbox) == "v1.8.2")
            let revision = try await kubectl(sandbox, ["-n", "flux-system", "get", "gitrepositories.source.toolkit.fluxcd.io", "flux-system",
                                                       "-o", "jsonpath={.status.artifact.revision}"])
            let head = try await ProcessRun.run("git", ["--git-dir", "\(sandbox.directory)/git/fleet.git", "rev-parse", "main"], timeoutSeconds: 30)
            #expect(revision == "main@sha1:" + head.output.trimmingCharacters(in: .whitespacesAndNewlines))

            // Helm cannot install the next one: the commit is reverted on the branch; Longhorn stays.
            try await sandbox.fault(["longhorn", "upgrade-fails"])
            let failing = try await sandbox.controller(["update", "--to", "v1.9.1", "--yes", "--timeout", "30"], timeoutSeconds: 120)
            #expect(failing.status == 1 && failing.output.contains("UpgradeFailed") && failing.output.contains("Flux has fetched it"),
                    "\(failing.output)")
            let history = try await log(sandbox)
            #expect(history.prefix(2) == [#"upkeep Revert "longhorn: upgrade to v1.9.1 (chart 1.8.2 → 1.9.1)""#,
                                          "upkeep longhorn: upgrade to v1.9.1 (chart 1.8.2 → 1.9.1)"], "\(history)")
            #expect(try await longhornVersion(sandbox) == "v1.8.2")
            let pinned = try await kubectl(sandbox, ["-n", "longhorn-system", "get", "helmreleases.helm.toolkit.fluxcd.io", "longhorn",
                                                     "-o", "jsonpath={.spec.chart.spec.version}"])
            #expect(pinned == "1.8.2", "the HelmRelease is back at the chart Longhorn runs")

            // Both attempts are in the state database, newest first.
            let listed = try await sandbox.controller(["history", "--updates", "-o", "json"])
            let records = try JSONDecoder().decode([ComponentUpdateRecord].self, from: Data(listed.output.utf8))
            #expect(records.map { "\($0.from)→\($0.to) \($0.outcome.rawValue)" } == ["v1.8.2→v1.9.1 reverted", "v1.7.2→v1.8.2 completed"],
                    "\(listed.output)")
            #expect(records.first?.revertCommit != nil && records.first?.message.contains("UpgradeFailed") == true)
            #expect(records.last?.commit == head.output.trimmingCharacters(in: .whitespacesAndNewlines))
        }
    }

    func fluxState(_ sandbox: EndToEndSandbox) async throws -> (version: String, sourceImage: String, ready: String) {
        let version = try await kubectl(sandbox, ["get", "crd", "gitrepositories.source.toolkit.fluxcd.io",
                                                  "-o", "jsonpath={.metadata.labels.app\\.kubernetes\\.io/version}"])
        let image = try await kubectl(sandbox, ["-n", "flux-system", "get", "deployment", "source-controller",
                                                "-o", "jsonpath={.spec.template.spec.containers[0].image}"])
        let ready = try await kubectl(sandbox, ["-n", "flux-system", "get", "kustomizations.kustomize.toolkit.fluxcd.io", "flux-system",
                                                "-o", "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}"])
        return (version, image, ready)
    }

    @Test func aFluxUpgradeReplacesItsComponentsThroughGitAndAFailedOneIsReverted() async throws {
        try await EndToEndSandbox.with(servers: 1, agents: 1, k3sVersion: EndToEndTests.start) { sandbox in
            #expect(try await fluxState(sandbox) == ("v2.4.0", "ghcr.io/fluxcd/source-controller:v1.4.1", "True"))
            let seeded = try await log(sandbox)

            let down = try await sandbox.controller(["update", "--component", "flux", "--to", "v2.3.0", "--yes"])
            #expect(down.status == 5 && down.output.contains("cannot be downgraded"), "\(down.output)")
            let unreleased = try await sandbox.controller(["update", "--component", "flux", "--to", "v2.9.0", "--yes"])
            #expect(unreleased.status == 5 && unreleased.output.contains("no Flux release v2.9.0"), "\(unreleased.output)")
            let dry = try await sandbox.controller(["update", "--component", "flux", "--to", "v2.5.1", "--dry-run"])
            #expect(dry.status == 0 && dry.output.contains("\(SandboxGit.fluxComponentsPath): components v2.4.0 → v2.5.1"), "\(dry.output)")
            #expect(try await log(sandbox) == seeded, "nothing committed before a real run")

            let upgrade = try await sandbox.controller(["update", "--component", "flux", "--to", "v2.5.1", "--yes"], timeoutSeconds: 120)
            #expect(upgrade.status == 0 && upgrade.output.contains("done: Flux runs v2.5.1"), "\(upgrade.output)")
            // validate.afterChange's default: the versions each component's last change meant.
            #expect(upgrade.output.contains("post-update validation: healthy (3 checks: versions)"), "\(upgrade.output)")
            #expect(!dry.output.contains("post-update validation"), "\(dry.output)")
            let recorded = try await sandbox.controller(["history", "--updates"])
            #expect(recorded.output.contains("[post-update validation: healthy (3 checks: versions)]"), "\(recorded.output)")
            #expect(try await log(sandbox).first == "upkeep flux: upgrade to v2.5.1")
            #expect(try await fluxState(sandbox) == ("v2.5.1", "ghcr.io/fluxcd/source-controller:v1.5.0", "True"))
            let committed = try await ProcessRun.run("git", ["--git-dir", "\(sandbox.directory)/git/fleet.git", "show", "main:\(SandboxGit.fluxComponentsPath)"],
                                                     timeoutSeconds: 30)
            #expect(committed.output == FluxManifests.components(version: "v2.5.1"), "what flux install --export of v2.5.1 writes")
            let check = try await sandbox.controller(["check", "-o", "json", "--kubeconfig", sandbox.manifest.kubeconfig,
                                                      "--github-api", sandbox.manifest.releaseURL, "--channel-server", sandbox.manifest.releaseURL,
                                                      "--state-dir", "\(sandbox.directory)/check-state"])
            #expect(check.output.contains("\"v2.5.1\""), "upkeep check reads the new Flux version: \(check.output)")

            // kustomize-controller cannot apply the next one: the commit is reverted; Flux stays and is Ready again.
            try await sandbox.fault(["flux", "upgrade-fails"])
            let failing = try await sandbox.controller(["update", "--component", "flux", "--to", "v2.6.0-rc.1", "--yes", "--timeout", "30"],
                                                       timeoutSeconds: 120)
            #expect(failing.status == 1 && failing.output.contains("ReconciliationFailed") && failing.output.contains("Flux has fetched it"),
                    "\(failing.output)")
            #expect(try await log(sandbox).prefix(2) == [#"upkeep Revert "flux: upgrade to v2.6.0-rc.1""#, "upkeep flux: upgrade to v2.6.0-rc.1"])
            #expect(try await fluxState(sandbox) == ("v2.5.1", "ghcr.io/fluxcd/source-controller:v1.5.0", "True"))

            let listed = try await sandbox.controller(["history", "--updates", "-o", "json"])
            let records = try JSONDecoder().decode([ComponentUpdateRecord].self, from: Data(listed.output.utf8))
            #expect(records.map { "\($0.component) \($0.from)→\($0.to) \($0.outcome.rawValue)" }
                    == ["flux v2.5.1→v2.6.0-rc.1 reverted", "flux v2.4.0→v2.5.1 completed"], "\(listed.output)")

            // Two one-shot runs, counted by the metrics from their records (docs/metrics.md), none running.
            let metrics = try await sandbox.controller(["metrics"])
            #expect(metrics.status == 0, "\(metrics.output)")
            for expected in [#"upkeep_updates_total{component="flux",outcome="completed"} 1"#, #"upkeep_updates_total{component="flux",outcome="reverted"} 1"#,
                             #"upkeep_updates_total{component="flux",outcome="failed"} 0"#, #"upkeep_update_duration_seconds_count{component="flux"} 1"#] {
                #expect(metrics.output.contains(expected + "\n"), "\(expected) in \(metrics.output)")
            }
            #expect(!metrics.output.contains("upkeep_update_running{"), "\(metrics.output)")

            // versions/flux: an update killed while it waits for Flux (its GitRepository suspended,
            // so the commit is never fetched) meant no version yet.
            try await sandbox.fault(["flux", "clear"])
            _ = try await kubectl(sandbox, ["-n", "flux-system", "patch", "gitrepositories.source.toolkit.fluxcd.io", "flux-system", "--type", "merge",
                                            "-p", #"{"spec":{"suspend":true}}"#])
            let killed = try sandbox.start(["update", "--component", "flux", "--to", "v2.6.0-rc.1", "--yes", "--timeout", "120"])
            _ = try await killed.waitForLine("the push") { $0.contains(" pushed ") && $0.contains("waiting for Flux") }
            await killed.killHard()
            let validated = try await sandbox.controller(["validate", "--post-update"], timeoutSeconds: 120)
            #expect(validated.status == 1 && validated.output.contains("UNHEALTHY versions/flux: update ")
                    && validated.output.contains("of flux is unfinished") && validated.output.contains("`upkeep update --component flux --to v2.6.0-rc.1`"),
                    "\(validated.output)")
        }
    }
}
