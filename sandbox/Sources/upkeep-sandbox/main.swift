import Foundation
import NIOCore
import NIOPosix
import UpkeepHTTPServer
import UpkeepSandbox

// `upkeep-sandbox`: the sandbox as a program of its own, so that the production `upkeep` does not
// link the simulator. `upkeep sandbox …` runs it with the same arguments (up, status, fault, down);
// it is also the sandbox's hosts: by program name (`k3s`, `systemctl`) or, when called by its own
// name, by the first argument (the fake k3s, the systemctl stand-in, a unit's supervisor, the
// background sandbox process `serve DIR`, and `api` for experiments).
var arguments = CommandLine.arguments
let programPath = arguments.removeFirst()
let program = URL(fileURLWithPath: programPath).lastPathComponent
let environment = ProcessInfo.processInfo.environment

func serveAPI(_ args: [String]) async throws {
    var port = 0
    var host = "127.0.0.1"
    var spec = ClusterSpec()
    var iterator = args.makeIterator()
    while let arg = iterator.next() {
        switch arg {
        case "--port": port = Int(iterator.next() ?? "") ?? 0
        case "--host": host = iterator.next() ?? host
        case "--servers": spec.servers = Int(iterator.next() ?? "") ?? spec.servers
        case "--agents": spec.agents = Int(iterator.next() ?? "") ?? spec.agents
        case "--volumes": spec.volumes = Int(iterator.next() ?? "") ?? spec.volumes
        default: break
        }
    }
    let cluster = SandboxCluster(spec: spec)
    cluster.withModel { $0.virtualKubelets = Set(spec.nodeNames) }
    let group = MultiThreadedEventLoopGroup.singleton
    _ = cluster.startDriver(on: group.next())
    let server = try await HTTPServer.start(host: host, port: port, configuration: SandboxCluster.apiServerConfiguration, group: group,
                                           responder: .nonBlocking(cluster.handle))
    FileHandle.standardOutput.write(Data("listening on http://\(host):\(server.port)\n".utf8))
    try await server.channel.closeFuture.get()
}

let code: Int32
switch program {
case "k3s":
    code = await FakeK3s.main(arguments, environment: environment)
case "systemctl":
    code = SystemctlStandIn.main(arguments, program: programPath, environment: environment)
default:
    switch arguments.first {
    case "k3s":
        code = await FakeK3s.main(Array(arguments.dropFirst()), environment: environment)
    case "systemctl":
        code = SystemctlStandIn.main(Array(arguments.dropFirst()), program: programPath, environment: environment)
    case "unit-supervisor":
        code = UnitSupervisor.run(root: arguments.dropFirst().first ?? "")
    case "serve":
        guard let directory = arguments.dropFirst().first else {
            FileHandle.standardError.write(Data("usage: \(program) serve DIR (started by `upkeep sandbox up`)\n".utf8))
            exit(2)
        }
        code = await SandboxDaemon.serve(directory: directory)
    case "api":
        try await serveAPI(Array(arguments.dropFirst()))
        code = 0
    default:
        await SandboxCommandLine.run(arguments)
    }
}
exit(code)
