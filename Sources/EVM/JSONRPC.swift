// Ethereum JSON-RPC over HTTP (CurlHTTP), to one endpoint or to several that must agree.
// A node is not trusted: answers are parsed strictly, and with several endpoints every
// answer must be the same (a quorum of them must answer at all); disagreement, reverts that
// differ, timeouts and malformed answers are reported, never used.
import CurlHTTP
import Envelope
import Foundation
import Logging
import Synchronization

/// What went wrong talking to a chain.
public struct RPCError: Error, Equatable, Sendable, CustomStringConvertible {
    public enum Kind: Equatable, Sendable {
        /// Connection refused, reset, timed out (the message says which).
        case transport
        /// The node answered with a JSON-RPC error (code in `code`).
        case node
        /// The call or transaction reverted; `data` is the revert data, `reason` its decoded reason.
        case reverted
        /// The answer is not what the method returns.
        case malformed
        /// Endpoints answered differently.
        case disagreement
        /// Fewer endpoints than the quorum answered.
        case noQuorum
        /// Waited too long (receipts).
        case timeout
    }
    public let kind: Kind
    public let message: String
    public var code: Int? = nil
    public var data: [UInt8]? = nil
    public var reason: String? = nil

    public init(_ kind: Kind, _ message: String, code: Int? = nil, data: [UInt8]? = nil, reason: String? = nil) {
        self.kind = kind; self.message = message; self.code = code; self.data = data; self.reason = reason
    }
    public var description: String { message }
}

/// One JSON-RPC endpoint.
public final class RPCEndpoint: Sendable {
    public let url: String
    /// scheme://host:port only: paths and queries of RPC URLs often hold API keys, so they
    /// never appear in messages or logs.
    public let label: String
    let client: CurlClient

    public init(url: String, timeout: Double) {
        self.url = url
        self.label = Self.redact(url)
        var o = HTTPClientOptions()
        o.connectTimeout = min(5, timeout)
        o.stallTimeout = timeout
        o.totalTimeout = timeout
        o.maxAttempts = 2
        o.retryTime = timeout
        o.maxResponseBytes = 32 << 20
        client = CurlClient(options: o)
    }

    public static func redact(_ url: String) -> String {
        guard let c = URLComponents(string: url), let scheme = c.scheme, let host = c.host else { return "(unparseable URL)" }
        return "\(scheme)://\(host)\(c.port.map { ":\($0)" } ?? "")"
    }

    /// Posts a request body; returns the `result`, or throws the node's error.
    public func post(_ body: [UInt8], method: String, id: Int) throws(RPCError) -> Any {
        let result: Result<HTTPResponse, TransportError> = body.withUnsafeBytes { b in
            do throws(TransportError) {
                return .success(try client.perform(HTTPRequest(method: "POST", url: url, headers: [("Content-Type", "application/json")], body: .bytes(b))))
            } catch { return .failure(error) }
        }
        let resp: HTTPResponse
        switch result {
        case .success(let r): resp = r
        case .failure(let error): throw RPCError(.transport, "\(label): \(method): \(error.message)")
        }
        guard resp.status == 200 else {
            throw RPCError(.transport, "\(label): \(method): HTTP \(resp.status) \(String(decoding: resp.body.prefix(200), as: UTF8.self))")
        }
        guard let obj = try? JSONSerialization.jsonObject(with: Data(resp.body), options: [.fragmentsAllowed]) as? [String: Any] else {
            throw RPCError(.malformed, "\(label): \(method): the answer is not a JSON-RPC object")
        }
        guard (obj["id"] as? NSNumber)?.intValue == id else { throw RPCError(.malformed, "\(label): \(method): the answer has the wrong id") }
        if let err = obj["error"] as? [String: Any] {
            let code = (err["code"] as? NSNumber)?.intValue ?? 0
            let message = String(describing: err["message"] ?? "").prefix(300)
            let data = (err["data"] as? String).flatMap(Quantity.bytes)
            if code == 3 || message.hasPrefix("execution reverted") {
                let reason = data.flatMap(ABI.revertReason)
                throw RPCError(.reverted, "\(label): \(method) reverted: \(reason ?? String(message))", code: code, data: data ?? [], reason: reason)
            }
            throw RPCError(.node, "\(label): \(method): \(message) (error \(code))", code: code)
        }
        guard let result = obj["result"] else { throw RPCError(.malformed, "\(label): \(method): the answer has no result") }
        return result
    }
}

/// Several endpoints of one chain; every read goes to all of them.
public final class RPCQuorum: Sendable {
    public let endpoints: [RPCEndpoint]
    /// How many must answer (default: all). Answers must always agree.
    public let quorum: Int
    let logger: Logger
    let ids = Atomic<Int>(0)

    public init(urls: [String], quorum: Int? = nil, timeout: Double, logger: Logger = Logger(label: "cce4.evm")) {
        endpoints = urls.map { RPCEndpoint(url: $0, timeout: timeout) }
        self.quorum = min(max(1, quorum ?? urls.count), urls.count)
        self.logger = logger
    }

    /// One endpoint's outcome.
    public enum Outcome<T: Equatable>: Equatable {
        case value(T)
        case reverted(data: [UInt8], reason: String?)
        case failed(RPCError)
    }

    /// Sends `method` to every endpoint at once; each answer is parsed by `parse` (nil = malformed).
    public func each<T: Equatable>(_ method: String, _ params: [Any], _ parse: (Any) -> T?) -> [Outcome<T>] {
        let id = ids.add(1, ordering: .relaxed).newValue
        let body: [UInt8]
        do {
            body = Array(try JSONSerialization.data(withJSONObject: ["jsonrpc": "2.0", "id": id, "method": method, "params": params] as [String: Any]))
        } catch { return endpoints.map { _ in .failed(RPCError(.malformed, "\(method): parameters are not JSON")) } }
        let box = AnswerBox(endpoints.count)
        let lock = Mutex(())
        let eps = endpoints
        if eps.count == 1 {
            do throws(RPCError) { box.answers[0] = .success(try eps[0].post(body, method: method, id: id)) } catch { box.answers[0] = .failure(error) }
        } else {
            DispatchQueue.concurrentPerform(iterations: eps.count) { i in
                let r: Result<Any, RPCError>
                do throws(RPCError) { r = .success(try eps[i].post(body, method: method, id: id)) } catch { r = .failure(error) }
                nonisolated(unsafe) let r2 = r
                lock.withLock { _ in box.answers[i] = r2 }
            }
        }
        return zip(eps, box.answers).map { ep, a -> Outcome<T> in
            switch a! {
            case .success(let v):
                guard let t = parse(v) else { return .failed(RPCError(.malformed, "\(ep.label): \(method): unexpected answer")) }
                return .value(t)
            case .failure(let e) where e.kind == .reverted: return .reverted(data: e.data ?? [], reason: e.reason)
            case .failure(let e): return .failed(e)
            }
        }
    }

    /// Sends `method` to every endpoint; at least `quorum` must answer, and every answer must be
    /// the same. A revert that every answering endpoint agrees on is thrown as `.reverted`.
    public func agree<T: Equatable>(_ method: String, _ params: [Any], _ parse: (Any) -> T?) throws(RPCError) -> T {
        let outcomes = each(method, params, parse)
        var answers: [(String, Outcome<T>)] = []
        var failures: [RPCError] = []
        for (ep, o) in zip(endpoints, outcomes) {
            if case .failed(let e) = o {
                failures.append(e)
                logger.warning("RPC endpoint failed", metadata: ["endpoint": "\(ep.label)", "method": "\(method)", "error": "\(e.message)"])
            } else { answers.append((ep.label, o)) }
        }
        if let first = answers.first, let other = answers.first(where: { $0.1 != first.1 }) {
            let e = RPCError(.disagreement, "RPC endpoints disagree on \(method): \(first.0) and \(other.0) answer differently; nothing from either is used")
            logger.error("RPC endpoints disagree", metadata: ["method": "\(method)", "a": "\(first.0)", "b": "\(other.0)"])
            throw e
        }
        guard answers.count >= quorum, let first = answers.first else {
            if endpoints.count == 1, let f = failures.first { throw f }
            throw RPCError(.noQuorum, "only \(answers.count) of \(endpoints.count) RPC endpoints answered \(method) (the quorum is \(quorum)): "
                           + failures.map(\.message).joined(separator: "; "))
        }
        switch first.1 {
        case .value(let v): return v
        case .reverted(let data, let reason):
            throw RPCError(.reverted, "\(method) reverted: \(reason ?? "no reason given")", code: 3, data: data, reason: reason)
        case .failed(let e): throw e
        }
    }
}

/// Each endpoint's raw answer, filled in from the concurrent requests (under a lock).
private final class AnswerBox: @unchecked Sendable {
    var answers: [Result<Any, RPCError>?]
    init(_ n: Int) { answers = Array(repeating: nil, count: n) }
}

/// JSON-RPC quantities and data, parsed strictly.
public enum Quantity {
    /// "0x…" hex quantity (no leading zeros beyond "0x0") that fits in 64 bits.
    public static func uint64(_ any: Any) -> UInt64? {
        guard let s = any as? String, s.hasPrefix("0x"), s.count > 2, s.count <= 18 else { return nil }
        let digits = s.dropFirst(2)
        guard digits == "0" || !digits.hasPrefix("0") else { return nil }
        return UInt64(digits, radix: 16)
    }
    public static func hex(_ v: UInt64) -> String { "0x" + String(v, radix: 16) }
    /// "0x…" data (even length).
    public static func bytes(_ any: Any) -> [UInt8]? {
        guard let s = any as? String, s.hasPrefix("0x") else { return nil }
        return Hex.decode(String(s.dropFirst(2)))
    }
    public static func data(_ b: [UInt8]) -> String { "0x" + Hex.encode(b) }
}
