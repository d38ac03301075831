import UpkeepCore
import UpkeepFlux
import UpkeepHTTP
import UpkeepKube

/// Why the cluster could not be read.
public struct ClusterReadError: Error, Equatable, Sendable, CustomStringConvertible {
    public var problem: String
    public init(problem: String) { self.problem = problem }
    public var description: String { "cannot read the cluster: \(problem)" }
}

/// Reads installed versions through the Kubernetes API. Missing Flux or Longhorn objects
/// (404) mean "not installed"; any other failure is a `ClusterReadError`.
public struct ClusterInventory: Sendable {
    let client: KubeClient

    public init(client: KubeClient) {
        self.client = client
    }

    public func read(_ components: Set<Component>) async throws -> InstalledVersions {
        do {
            // k3s is always read: the other components' checks need the Kubernetes version.
            let k3s = InstalledReader.k3s(nodes: try await client.list(Node.self))
            var installed = InstalledVersions(k3s: k3s)
            if components.contains(.flux) {
                let crd = try await optional { try await client.get(CustomResourceDefinition.self, FluxManifest.versionCRD) }
                let deployments = try await client.list(Deployment.self, namespace: InstalledReader.fluxNamespace)
                installed.flux = InstalledReader.flux(crd: crd, deployments: deployments)
            }
            if components.contains(.longhorn) {
                let setting = try await optional {
                    try await client.get(LonghornSetting.self, InstalledReader.longhornVersionSetting, namespace: InstalledReader.longhornNamespace)
                }
                let manager = try await optional {
                    try await client.get(.daemonSets, "longhorn-manager", namespace: InstalledReader.longhornNamespace)
                }
                installed.longhorn = InstalledReader.longhorn(setting: setting, workloads: manager.map { [$0] } ?? [])
            }
            return installed
        } catch let error as KubeAPIError {
            throw ClusterReadError(problem: error.description)
        } catch let error as HTTPClientError {
            throw ClusterReadError(problem: error.description)
        }
    }

    /// nil for a 404 (the resource or its CRD does not exist).
    private func optional<T>(_ body: () async throws -> T) async throws -> T? {
        do {
            return try await body()
        } catch let error as KubeAPIError where error.code == 404 {
            return nil
        }
    }
}
