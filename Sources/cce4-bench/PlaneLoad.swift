// `cce4-bench plane-load`: N concurrent clients against a running Privacy Plane, each looping
// sign-in (GET nonce, sign EIP-4361, POST login) followed by status queries (the rental status
// of its address), for a fixed time. Reports throughput and latency percentiles per request
// kind, and every error. Results for this machine: docs/performance.md §Privacy Plane.
import ArgumentParser
import CurlHTTP
import Envelope
import Foundation
import Ledger
import Synchronization
import Wallet

struct PlaneLoad: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "plane-load",
        abstract: "Load a running Privacy Plane with concurrent sign-in + status clients.",
        discussion: """
            First signs in an owner, approves the plane as its operator and creates --dataset \
            (unless it exists). Then --clients threads, each with its own wallet and kept-alive \
            connection, loop for --seconds: sign in (nonce, EIP-4361 signature, login), then \
            --queries rental-status queries with the token. Prints one JSON object.
            """)
    @Option(help: "The plane's base URL.") var url: String
    @Option(help: "Concurrent clients.") var clients = 200
    @Option(help: "Duration in seconds.") var seconds = 30.0
    @Option(help: "Status queries per sign-in.") var queries = 4
    @Option(help: "The dataset whose rental status clients query.") var dataset = "load"

    func run() throws {
        var opts = HTTPClientOptions()
        opts.maxAttempts = 1
        opts.maxIdleConnections = clients + 8
        opts.connectTimeout = 10
        opts.totalTimeout = 60
        let http = CurlClient(options: opts)
        try setUp(http)

        enum Kind: Int, CaseIterable { case nonce, login, status }
        final class Stats: @unchecked Sendable {
            var lat = [[Double]](repeating: [], count: 3)
            var errors = [String: Int]()
            var signIns = 0
        }
        let all = (0..<clients).map { _ in Stats() }
        let deadline = Date().addingTimeInterval(seconds)
        let start = Date()
        let group = DispatchGroup()
        for c in 0..<clients {
            group.enter()
            let t = Thread {
                defer { group.leave() }
                let st = all[c]
                guard let key = try? PrivateKey.generate() else { st.errors["keygen", default: 0] += 1; return }
                func timed(_ k: Kind, _ req: HTTPRequest) -> HTTPResponse? {
                    let t0 = DispatchTime.now().uptimeNanoseconds
                    do {
                        let r = try http.perform(req)
                        st.lat[k.rawValue].append(Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e6)
                        if !(200..<300).contains(r.status) { st.errors["\(k) \(r.status)", default: 0] += 1; return nil }
                        return r
                    } catch { st.errors["\(k) transport: \(error)", default: 0] += 1; return nil }
                }
                while Date() < deadline {
                    guard let n = timed(.nonce, HTTPRequest(method: "GET", url: url + "/v1/auth/nonce")),
                          let o = try? JSONSerialization.jsonObject(with: Data(n.body)) as? [String: Any] else { continue }
                    let now = Int64(Date().timeIntervalSince1970)
                    let m = SIWEMessage(domain: o["domain"] as? String ?? "", address: key.address, statement: o["statement"] as? String,
                                        uri: o["uri"] as? String ?? "", chainID: (o["chainId"] as? NSNumber)?.uint64Value ?? 1,
                                        nonce: o["nonce"] as? String ?? "", issuedAt: SIWETime(unixSeconds: now))
                    guard let sig = try? key.signPersonal(Array(m.text.utf8)),
                          let body = try? JSONSerialization.data(withJSONObject: ["message": m.text, "signature": sig.hex]) else { continue }
                    let bytes = Array(body)
                    let login: HTTPResponse? = bytes.withUnsafeBytes { b in
                        timed(.login, HTTPRequest(method: "POST", url: url + "/v1/auth/login", headers: [("Content-Type", "application/json")], body: .bytes(b)))
                    }
                    guard let l = login, let lo = try? JSONSerialization.jsonObject(with: Data(l.body)) as? [String: Any],
                          let token = lo["token"] as? String else { continue }
                    st.signIns += 1
                    for _ in 0..<queries where Date() < deadline {
                        _ = timed(.status, HTTPRequest(method: "GET", url: url + "/v1/datasets/\(dataset)/rentals/\(key.address.checksummed)",
                                                       headers: [("Authorization", "Bearer " + token)]))
                    }
                }
            }
            t.stackSize = 1 << 20
            t.start()
        }
        group.wait()
        let elapsed = Date().timeIntervalSince(start)
        var out: [String: Any] = ["clients": clients, "seconds": (elapsed * 10).rounded() / 10, "queriesPerSignIn": queries]
        var total = 0
        for k in Kind.allCases {
            var l = all.flatMap { $0.lat[k.rawValue] }
            l.sort()
            total += l.count
            func pct(_ p: Double) -> Double { l.isEmpty ? 0 : (l[min(l.count - 1, Int(Double(l.count) * p))] * 100).rounded() / 100 }
            out["\(k)"] = ["count": l.count, "perSecond": Int(Double(l.count) / elapsed), "p50ms": pct(0.5), "p99ms": pct(0.99), "maxMs": pct(1.0)]
        }
        var errors = [String: Int]()
        for s in all { for (k, v) in s.errors { errors[k, default: 0] += v } }
        out["requests"] = total
        out["requestsPerSecond"] = Int(Double(total) / elapsed)
        out["signInsPerSecond"] = Int(Double(all.reduce(0) { $0 + $1.signIns }) / elapsed)
        var alll = all.flatMap { $0.lat.flatMap { $0 } }
        alll.sort()
        out["p99ms"] = alll.isEmpty ? 0 : (alll[min(alll.count - 1, Int(Double(alll.count) * 0.99))] * 100).rounded() / 100
        out["errors"] = errors
        print(String(decoding: try JSONSerialization.data(withJSONObject: out, options: [.sortedKeys, .prettyPrinted]), as: UTF8.self))
        if !errors.isEmpty { throw ExitCode(1) }
    }

    /// Signs in an owner, approves the plane and creates the dataset (409 = already there).
    func setUp(_ http: CurlClient) throws {
        let owner = try PrivateKey.generate()
        func call(_ method: String, _ path: String, _ json: Any? = nil, token: String? = nil) throws -> (Int, [String: Any]) {
            var headers = [("Content-Type", "application/json")]
            if let token { headers.append(("Authorization", "Bearer " + token)) }
            let body = try json.map { Array(try JSONSerialization.data(withJSONObject: $0)) } ?? []
            let r = try body.withUnsafeBytes { b in
                try http.perform(HTTPRequest(method: method, url: url + path, headers: headers, body: json == nil ? .none : .bytes(b)))
            }
            return (r.status, (try? JSONSerialization.jsonObject(with: Data(r.body)) as? [String: Any]) ?? [:])
        }
        let (_, n) = try call("GET", "/v1/auth/nonce")
        let m = SIWEMessage(domain: n["domain"] as! String, address: owner.address, statement: n["statement"] as? String, uri: n["uri"] as! String,
                            chainID: (n["chainId"] as! NSNumber).uint64Value, nonce: n["nonce"] as! String,
                            issuedAt: SIWETime(unixSeconds: Int64(Date().timeIntervalSince1970)))
        let (ls, l) = try call("POST", "/v1/auth/login", ["message": m.text, "signature": try owner.signPersonal(Array(m.text.utf8)).hex])
        guard ls == 200, let token = l["token"] as? String else { throw ValidationError("owner sign-in failed: \(ls) \(l)") }
        let (_, td) = try call("GET", "/v1/auth/operator-approval", token: token)
        let dom = td["domain"] as! [String: Any], msg = td["message"] as! [String: Any]
        let domain = try EIP712Domain(name: dom["name"] as! String, version: dom["version"] as! String, chainId: (dom["chainId"] as! NSNumber).uint64Value,
                                      verifyingContract: try Address(dom["verifyingContract"] as! String),
                                      salt: Hex.decode(String((dom["salt"] as! String).dropFirst(2))) ?? [])
        let expires = (msg["expires"] as! NSNumber).uint64Value, nonce = (msg["nonce"] as! NSNumber).uint64Value
        let a = try OperatorApproval(signing: owner, operator: try Address(msg["operator"] as! String), expires: expires, nonce: nonce, domain: domain)
        let (as_, _) = try call("POST", "/v1/auth/operator-approval", ["expires": expires, "nonce": nonce, "signature": a.signature.hex], token: token)
        guard as_ == 204 else { throw ValidationError("approval failed: \(as_)") }
        let (cs, c) = try call("POST", "/v1/datasets", ["id": dataset], token: token)
        guard cs == 201 || cs == 409 else { throw ValidationError("creating \(dataset) failed: \(cs) \(c)") }
    }
}
