import UpkeepCore
import UpkeepKube

/// What became of one query a node sent to the cluster DNS Service, as the sandbox counts it.
public enum ClusterDNSOutcome: String, CaseIterable, Sendable {
    /// Answered (NOERROR, NXDOMAIN or SERVFAIL).
    case answered
    /// The Service `kube-system/kube-dns` had no ready endpoint: no answer.
    case noEndpoints = "no_endpoints"
    /// The node's path to the Service is broken (the `dns-down` fault): no answer.
    case pathBroken = "path_broken"
    /// Not a query the model reads (malformed, over 512 bytes): dropped, as CoreDNS drops what
    /// it cannot parse.
    case malformed
}

extension ClusterModel {
    /// k3s's defaults: the service range 10.43.0.0/16, whose first address the apiserver gives
    /// its own Service `default/kubernetes`, and `--cluster-dns` 10.43.0.10 for CoreDNS's
    /// Service `kube-system/kube-dns`; the cluster domain `cluster.local`
    /// (https://docs.k3s.io/cli/server#networking).
    static let apiServiceIP = "10.43.0.1"
    static let clusterDNSIP = "10.43.0.10"
    static let clusterDomain = "cluster.local"

    /// The answer the cluster DNS gives `query` sent from `node` (nil: none comes back), and what
    /// became of it. The node's path is kube-proxy's rules for the Service
    /// `kube-system/kube-dns`: with no ready endpoint (no Ready CoreDNS pod), kube-proxy rejects
    /// the packet (ICMP port unreachable, the "has no endpoints" REJECT rule of https://github.com/kubernetes/kubernetes/blob/v1.32.0/pkg/proxy/iptables/proxier.go;
    /// a Service's traffic goes only to ready endpoints,
    /// https://kubernetes.io/docs/concepts/services-networking/service/), which a sender on an
    /// unconnected UDP socket, as the agent's, never sees: it waits out its bound. Otherwise CoreDNS's
    /// `kubernetes` plugin answers for the cluster domain (https://coredns.io/plugins/kubernetes/):
    /// `SERVICE.NAMESPACE.svc.cluster.local` is the Service's clusterIP, any other name in the
    /// domain NXDOMAIN. Names outside it CoreDNS forwards to the node's resolvers, which the
    /// sandbox does not have: SERVFAIL.
    mutating func clusterDNSReply(from node: String, query: [UInt8]) -> (reply: [UInt8]?, outcome: ClusterDNSOutcome) {
        let (reply, outcome) = clusterDNSDecision(from: node, query: query)
        clusterDNSCounts[outcome.rawValue, default: 0] += 1
        return (reply, outcome)
    }

    private func clusterDNSDecision(from node: String, query: [UInt8]) -> (reply: [UInt8]?, outcome: ClusterDNSOutcome) {
        guard !clusterDNSBroken.contains(node) else { return (nil, .pathBroken) }
        guard hasReadyEndpoint(namespace: "kube-system", service: "kube-dns") else { return (nil, .noEndpoints) }
        guard let question = try? DNSMessage.question(query) else { return (nil, .malformed) }
        let reply: [UInt8]?
        let zone = ".svc.\(Self.clusterDomain)"
        if question.name == Self.clusterDomain || question.name.hasSuffix(".\(Self.clusterDomain)") {
            let labels = question.name.hasSuffix(zone) ? question.name.dropLast(zone.count).split(separator: ".").map(String.init) : []
            let service = labels.count == 2 ? store.get(.services, labels[1], labels[0]) : nil
            if let service, let clusterIP = service[path: "spec", "clusterIP"]?.string, IPAddressText.ipv4(clusterIP) != nil {
                // A name with no record of the asked type is NOERROR with no answer (NODATA).
                reply = try? DNSMessage.response(to: question, addresses: question.type == DNSMessage.typeA ? [clusterIP] : [])
            } else {
                reply = try? DNSMessage.response(to: question, code: .nameError)
            }
        } else {
            reply = try? DNSMessage.response(to: question, code: .serverFailure)
        }
        guard let reply else { return (nil, .malformed) }
        return (reply, .answered)
    }

    /// A Ready pod, not terminating, that the Service's selector selects: what the
    /// EndpointSlice controller lists as a ready endpoint.
    func hasReadyEndpoint(namespace: String, service name: String) -> Bool {
        guard let service = store.get(.services, namespace, name),
              let selector = service[path: "spec", "selector"]?.stringMap, !selector.isEmpty else { return false }
        return store.list(.pods, namespace: namespace).map(Pod.init).contains { pod in
            pod.isReady && !pod.isTerminating && selector.allSatisfy { pod.labels[$0.key] == $0.value }
        }
    }
}
