import Foundation
import NIOHTTP1
import UpkeepHTTP
import UpkeepKube

/// One instant query to Prometheus's HTTP API (`upkeep metrics --query`): the request it makes,
/// and its answer read into series or a typed refusal. It never retries and never follows a
/// redirect; the HTTP client bounds the time and the size of the answer.
/// https://prometheus.io/docs/prometheus/latest/querying/api/#instant-queries
struct PrometheusQuery: Equatable, Sendable {
    /// The server's base URL (`gates.prometheus.url`, or `--prometheus`).
    var base: String
    var query: String
    /// RFC 3339 or Unix seconds, as Prometheus takes them; nil: the server's now.
    var time: String?
    /// Bound on the whole exchange, and the evaluation timeout Prometheus is given.
    var timeoutSeconds: Int

    /// Largest answer read: a result beyond it is refused whole, never cut.
    static let responseBytesMax = 8 << 20

    /// `POST <base>/api/v1/query` with a form body (the API takes either method; a long query
    /// does not fit every proxy's URL limit).
    func request() throws(PrometheusQueryError) -> HTTPRequest {
        let url: HTTPURL
        do { url = try HTTPURL(base).appending(path: "api/v1/query") } catch {
            throw .unusableURL(base, "\(error)")
        }
        var form = [("query", query), ("timeout", "\(timeoutSeconds)s")]
        if let time { form.append(("time", time)) }
        let body = form.map { "\(HTTPURL.percentEncode($0.0))=\(HTTPURL.percentEncode($0.1))" }.joined(separator: "&")
        return HTTPRequest(method: .POST, url: url, headers: HTTPHeaders([("content-type", "application/x-www-form-urlencoded"), ("accept", "application/json")]),
                           body: Array(body.utf8), timeoutSeconds: Double(timeoutSeconds), idempotent: true)
    }

    /// Whether a `--time` value is one Prometheus takes: Unix seconds (a fraction allowed) or RFC 3339.
    static func isTime(_ text: String) -> Bool {
        if let seconds = Double(text), seconds.isFinite, seconds >= 0 { return true }
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime]
        if formatter.date(from: text) != nil { return true }
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return formatter.date(from: text) != nil
    }

    /// Reads an answer: the result, or Prometheus's `errorType` and `error` when it refused the query.
    static func answer(status: Int, body: [UInt8], url: String) throws(PrometheusQueryError) -> PrometheusResult {
        guard let json = try? JSON.parse(bytes: body), let state = json["status"]?.string else {
            throw .notPrometheus(url: url, status: status)
        }
        guard state == "success" else {
            throw .refused(url: url, status: status, errorType: json["errorType"]?.string ?? "unknown", error: json["error"]?.string ?? "")
        }
        guard let data = json["data"], let type = data["resultType"]?.string, let result = data["result"] else {
            throw .notPrometheus(url: url, status: status)
        }
        var series: [PrometheusResult.Series] = []
        switch type {
        case "vector", "matrix":
            for item in result.array ?? [] {
                let labels = (item["metric"]?.object ?? [:]).compactMap { name, value in value.string.map { (name, $0) } }
                let samples = (type == "vector" ? [item["value"]].compactMap { $0 } : item["values"]?.array ?? []).compactMap(Self.sample)
                series.append(.init(labels: Dictionary(labels, uniquingKeysWith: { first, _ in first }), samples: samples))
            }
        case "scalar", "string":
            series = Self.sample(result).map { [.init(labels: [:], samples: [$0])] } ?? []
        default:
            throw .notPrometheus(url: url, status: status)
        }
        return PrometheusResult(resultType: type, series: series, data: data,
                                warnings: (json["warnings"]?.array ?? []).compactMap(\.string))
    }

    /// `[<unix seconds>, "<value>"]`, as the API writes every sample.
    private static func sample(_ pair: JSON) -> PrometheusResult.Sample? {
        guard let items = pair.array, items.count == 2, let seconds = items[0].double, let value = items[1].string else { return nil }
        return .init(seconds: seconds, value: value)
    }
}

/// An instant query's result: `vector` (one sample per series), `matrix` (a range selector's
/// samples per series), `scalar` or `string` (one unlabelled sample).
struct PrometheusResult: Equatable, Sendable {
    struct Sample: Equatable, Sendable {
        var seconds: Double
        /// As Prometheus writes it (`1`, `0.25`, `NaN`, `+Inf`).
        var value: String
    }

    struct Series: Equatable, Sendable {
        var labels: [String: String]
        var samples: [Sample]
    }

    var resultType: String
    var series: [Series]
    /// The answer's `data` as Prometheus wrote it: what `-o json` prints.
    var data: JSON
    var warnings: [String]

    var isEmpty: Bool { series.allSatisfy(\.samples.isEmpty) }

    /// One row per sample: the labels (`__name__` first, then by name), `TIME` for a range
    /// selector's samples, and `VALUE`.
    func table() -> String {
        let names = Set(series.flatMap(\.labels.keys)).sorted { ($0 == "__name__" ? 0 : 1, $0) < ($1 == "__name__" ? 0 : 1, $1) }
        let timed = resultType == "matrix"
        let header = names + (timed ? ["TIME"] : []) + ["VALUE"]
        let rows = series.flatMap { series in
            series.samples.map { sample in
                names.map { series.labels[$0] ?? "" } + (timed ? [Self.timeText(sample.seconds)] : []) + [sample.value]
            }
        }
        return renderTable(header, rows)
    }

    /// RFC 3339 in UTC, milliseconds shown when there are any.
    static func timeText(_ seconds: Double) -> String {
        let formatter = ISO8601DateFormatter()
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.formatOptions = seconds.rounded() == seconds ? [.withInternetDateTime] : [.withInternetDateTime, .withFractionalSeconds]
        return formatter.string(from: Date(timeIntervalSince1970: seconds))
    }
}

/// Why `upkeep metrics --query` has no result to print; each says what to do.
enum PrometheusQueryError: Error, Equatable, CustomStringConvertible {
    /// Neither `gates.prometheus.url` nor `--prometheus`.
    case notConfigured
    case unusableURL(String, String)
    /// No answer: refused connection, timeout, TLS.
    case unreachable(url: String, reason: String)
    /// The answer is larger than the bound.
    case tooLarge(url: String, bytesMax: Int)
    /// Prometheus refused the query: its `errorType` (`bad_data`: the PromQL does not parse or
    /// is not valid; `timeout`, `execution`, `unavailable`, …) and `error`.
    case refused(url: String, status: Int, errorType: String, error: String)
    /// The answer is not Prometheus's API (a proxy's page, another server).
    case notPrometheus(url: String, status: Int)

    var description: String {
        switch self {
        case .notConfigured:
            "no Prometheus to ask: set gates.prometheus.url in upkeep.yaml (docs/configuration.md) or pass --prometheus URL"
        case let .unusableURL(url, reason): "the Prometheus URL \(url) cannot be used: \(reason)"
        case let .unreachable(url, reason): "Prometheus at \(url) did not answer: \(reason); check the URL and that Prometheus runs"
        case let .tooLarge(url, bytesMax):
            "the answer from \(url) is larger than \(bytesMax >> 20) MiB; narrow the query (a label matcher, sum by (…), topk)"
        case let .refused(_, status, errorType, error) where errorType == "bad_data":
            "Prometheus refused the query (HTTP \(status), \(errorType)): \(error); fix the PromQL"
        case let .refused(_, status, errorType, error):
            "Prometheus could not answer the query (HTTP \(status), \(errorType)): \(error)"
        case let .notPrometheus(url, status): "\(url) answered HTTP \(status) with something that is not Prometheus's query API; check the URL"
        }
    }

    /// 2 for what the operator's input must fix (the URL, the query, its size), 8 when
    /// Prometheus cannot be asked or cannot answer.
    var exitCode: Int32 {
        switch self {
        case .notConfigured, .unusableURL, .tooLarge: RolloutExitCode.usage
        case .refused(_, _, let errorType, _) where errorType == "bad_data": RolloutExitCode.usage
        case .unreachable, .refused, .notPrometheus: RolloutExitCode.unreachable
        }
    }
}
