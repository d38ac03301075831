import Foundation
import NIOCore
import NIOPosix
import UpkeepSandbox

// Multi-call binary for sandbox hosts. Dispatches on the program name (`k3s`, `systemctl`) or,
// when called by its own name, on the first argument.
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
    let server = try await SandboxHTTPServer.start(host: host, port: port, group: group, responder: cluster.handle)
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
            FileHandle.standardError.write(Data("usage: \(program) serve DIR (normally started by `upkeep sandbox up`)\n".utf8))
            exit(2)
        }
        code = await SandboxDaemon.serve(directory: directory)
    case "api":
        try await serveAPI(Array(arguments.dropFirst()))
        code = 0
    default:
        FileHandle.standardError.write(Data("""
            usage: \(program) k3s …           the fake k3s (normally through a node's usr/local/bin/k3s)
                   \(program) systemctl …     the systemctl stand-in (normally a node's bin/systemctl)
                   \(program) serve DIR       run the sandbox described by DIR/sandbox-options.json (upkeep sandbox up)
                   \(program) api [--port N]  a simulated API with virtual kubelets, for experiments

            """.utf8))
        code = 2
    }
}
exit(code)
