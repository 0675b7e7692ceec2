// The HTTP surface: Hummingbird 2 routes over `PlaneService`, one middleware that turns every
// error into problem+json, labels insecure sealing, counts and times requests for Prometheus,
// and logs one line per request (method, route template, status, time: never a body, a
// token, a key or a query string).
import Dataset
import Envelope
import Foundation
import HTTPTypes
import Hummingbird
import KeyRelease
import Ledger
import Logging
import ObjectStore
import Prometheus
import Synchronization
import Wallet

/// One route: what the router serves and what docs/openapi.json must describe.
public struct RouteSpec: Sendable, Hashable {
    public let method: String
    /// OpenAPI path template, e.g. /v1/datasets/{id}.
    public let path: String
}

/// A route handler. Throw `PlaneError` for client errors; anything else becomes a 500.
typealias Handler = @Sendable (Request, BasicRequestContext) async throws -> Response

/// Runs blocking work (store and ledger I/O, encryption) off the event loop.
func blocking<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { c in
        DispatchQueue.global().async { c.resume(with: Result { try body() }) }
    }
}

/// Request metrics in a per-server Prometheus registry.
final class PlaneMetrics: Sendable {
    let registry = PrometheusCollectorRegistry()
    static let buckets: [Duration] = [.milliseconds(1), .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50),
                                      .milliseconds(100), .milliseconds(250), .milliseconds(500), .seconds(1), .seconds(5), .seconds(30)]

    func record(method: String, route: String, status: Int, duration: Duration) {
        let labels = [("method", method), ("route", route), ("status", String(status))]
        registry.makeCounter(descriptor: MetricNameDescriptor(namespace: "cce4", subsystem: "plane", metricName: "http_requests", unitName: "total",
                                                              helpText: "HTTP requests by method, route template and status"), labels: labels).increment()
        registry.makeDurationHistogram(descriptor: MetricNameDescriptor(namespace: "cce4", subsystem: "plane", metricName: "http_request_duration", unitName: "seconds",
                                                                        helpText: "HTTP request latency by method, route template and status"),
                                       labels: labels, buckets: Self.buckets).record(duration)
    }
}

/// Route templates by path, to answer 405 (with Allow) for a known path and another method.
struct RouteTable: Sendable {
    let templates: [(segments: [Substring], methods: [String])]

    init(_ specs: [RouteSpec]) {
        var byPath = [String: [String]]()
        for s in specs { byPath[s.path, default: []].append(s.method) }
        templates = byPath.keys.sorted().map { p in (p.split(separator: "/"), byPath[p]!.sorted()) }
    }

    /// The methods served at `path`, if some template matches it.
    func methods(for path: String) -> [String]? {
        let segs = path.split(separator: "/")
        for t in templates where t.segments.count == segs.count {
            if zip(t.segments, segs).allSatisfy({ $0.hasPrefix("{") || $0 == $1 }) { return t.methods }
        }
        return nil
    }
}

struct PlaneMiddleware: RouterMiddleware {
    typealias Context = BasicRequestContext
    let metrics: PlaneMetrics
    let insecure: Bool
    let logger: Logger
    let table: @Sendable () -> RouteTable

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let start = ContinuousClock.now
        var response: Response
        do {
            response = try await next(request, context)
        } catch {
            var e = Problem.classify(error)
            var allow: String?
            if case .notFound = e, context.endpointPath == nil || context.endpointPath == "NotFound",
               let methods = table().methods(for: request.uri.path), !methods.contains(request.method.rawValue) {
                e = .methodNotAllowed("\(request.method.rawValue) is not allowed here; use \(methods.joined(separator: ", "))")
                allow = methods.joined(separator: ", ")
            }
            if e.status.code >= 500 { logger.error("request failed", metadata: ["request": "\(context.id)", "cause": "\(e.detail)"]) }
            response = Problem.response(e, requestID: context.id, path: request.uri.path)
            if let allow { response.headers[.allow] = allow }
        }
        if insecure { response.headers[HTTPField.Name("Cce4-Sealing")!] = "dev-insecure" }
        response.headers[.cacheControl] = "no-store"
        let route = context.endpointPath ?? "unmatched"
        let elapsed = ContinuousClock.now - start
        metrics.record(method: request.method.rawValue, route: route, status: response.status.code, duration: elapsed)
        logger.info("request", metadata: [
            "request": "\(context.id)", "method": "\(request.method.rawValue)", "route": "\(route)", "status": "\(response.status.code)",
            "ms": "\(elapsed.components.seconds * 1000 + elapsed.components.attoseconds / 1_000_000_000_000_000)",
        ])
        return response
    }
}

/// The plane's HTTP server.
public final class PlaneServer: Sendable {
    public let service: PlaneService
    let metrics = PlaneMetrics()
    let logger: Logger
    /// Every route the router serves (the OpenAPI test compares this with the document).
    public let routes: [RouteSpec]
    private let responder: RouterResponder<BasicRequestContext>
    private let port = Mutex<Int?>(nil)
    /// The port actually bound, once listening.
    public var boundPort: Int? { port.withLock { $0 } }

    /// Opens the store, the ledger and the KEK named by `config`.
    public convenience init(config: PlaneConfig, environment: [String: String] = ProcessInfo.processInfo.environment, logger: Logger? = nil) throws {
        try config.validate()
        var log = logger ?? Logger(label: "cce4.plane")
        let sealing: any SealingProvider
        switch config.sealing {
        case .devKeyFile: sealing = DevKeyFileSealing(path: config.devKEKFile ?? "")
        case .snpDerived, .kmsAttested: throw PlaneConfigError("sealing mode \(config.sealing.rawValue) is not built yet")
        }
        if sealing.isInsecure { log[metadataKey: "sealing"] = "dev-insecure" }
        let keys = try PlaneKeys(kek: try sealing.unsealKEK(), insecure: sealing.isInsecure)
        let store = try ObjectStores.open(url: config.store, create: config.store.hasPrefix("file://"), environment: environment)
        let ledger = try Ledgers.open(config.ledger, writable: true)
        let service = PlaneService(config: config, keys: keys, store: store, ledger: ledger, logger: log)
        let keyRelease: KeyReleaseAuthority?
        do { keyRelease = try KeyReleaseAuthority.forPlane(config: config, service: service) } catch let e as PlaneConfigError { throw e } catch {
            throw PlaneConfigError("key release cannot start: \(error)")
        }
        self.init(service: service, logger: log, keyRelease: keyRelease)
    }

    /// - Parameter keyRelease: the attested key-release authority behind the `/v1/key-release…`
    ///   routes (nil: they answer 503).
    public init(service: PlaneService, logger: Logger, keyRelease: KeyReleaseAuthority? = nil) {
        self.service = service
        self.logger = logger
        let router = Router(context: BasicRequestContext.self)
        let table = Mutex(RouteTable([]))
        router.add(middleware: PlaneMiddleware(metrics: metrics, insecure: service.keys.isInsecure, logger: logger, table: { table.withLock { $0 } }))
        var specs = [RouteSpec]()
        func on(_ method: HTTPRequest.Method, _ path: String, _ handler: @escaping Handler) {
            specs.append(RouteSpec(method: method.rawValue, path: path))
            router.on(RouterPath(path), method: method) { req, ctx in try await handler(req, ctx) }
        }
        Routes.register(on: on, service: service, metrics: metrics)
        KeyReleaseRoutes.register(on: on, authority: keyRelease)
        self.routes = specs
        table.withLock { $0 = RouteTable(specs) }
        self.responder = router.buildResponder()
    }

    /// Serves until cancelled (in-process) or, with `signals`, until SIGTERM/SIGINT; in-flight
    /// requests finish first. `onListening` gets the bound port.
    public func run(handleSignals: Bool = false, onListening: (@Sendable (Int) -> Void)? = nil) async throws {
        let config = service.config
        let app = Application(
            responder: responder,
            configuration: .init(address: .hostname(config.host, port: config.port), serverName: nil),
            onServerRunning: { [self] channel in
                let port = channel.localAddress?.port ?? config.port
                self.port.withLock { $0 = port }
                if config.publicAuthority == nil { self.service.authority.withLock { $0 = "\(config.host):\(port)" } }
                self.logger.notice("listening", metadata: ["address": "\(config.host):\(port)", "operator": "\(self.service.identity.address.checksummed)",
                                                      "store": "\(self.service.store.url)"])
                onListening?(port)
            },
            logger: logger
        )
        if handleSignals { try await app.runService() } else { try await app.run() }
    }
}
