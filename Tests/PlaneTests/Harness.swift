// A real plane on 127.0.0.1 (port 0), in-process, over a fresh file:// store and ledger, and a
// small blocking HTTP client (URLSession) for the tests.
import Envelope
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Ledger
import Logging
import PrivacyPlane
import Synchronization
import TestSupport
import Wallet

struct HTTPReply: Sendable {
    let status: Int
    let headers: [String: String]
    let body: Data
    var json: [String: Any] { (try? JSONSerialization.jsonObject(with: body) as? [String: Any]) ?? [:] }
    var text: String { String(decoding: body, as: UTF8.self) }
    func header(_ name: String) -> String? { headers.first { $0.key.lowercased() == name.lowercased() }?.value }
}

final class Box<T>: @unchecked Sendable { var value: T; init(_ v: T) { value = v } }

/// Blocking HTTP over URLSession (test client only; the product's clients use CurlHTTP).
func http(_ method: String, _ url: String, json: Any? = nil, body: Data? = nil, token: String? = nil,
          headers: [String: String] = [:]) throws -> HTTPReply {
    var req = URLRequest(url: URL(string: url)!)
    req.httpMethod = method
    req.timeoutInterval = 60
    if let json { req.httpBody = try JSONSerialization.data(withJSONObject: json); req.setValue("application/json", forHTTPHeaderField: "Content-Type") }
    if let body { req.httpBody = body }
    if let token { req.setValue("Bearer " + token, forHTTPHeaderField: "Authorization") }
    for (k, v) in headers { req.setValue(v, forHTTPHeaderField: k) }
    let done = DispatchSemaphore(value: 0)
    let out = Box<Result<HTTPReply, any Error>?>(nil)
    URLSession.shared.dataTask(with: req) { data, resp, err in
        if let err { out.value = .failure(err) } else if let r = resp as? HTTPURLResponse {
            var h = [String: String]()
            for (k, v) in r.allHeaderFields { h["\(k)"] = "\(v)" }
            out.value = .success(HTTPReply(status: r.statusCode, headers: h, body: data ?? Data()))
        }
        done.signal()
    }.resume()
    done.wait()
    return try out.value!.get()
}

/// A deployment: one store, one ledger, one KEK file; planes started on it share them.
final class Deployment: @unchecked Sendable {
    let dir = TempDir("cce4-plane")
    var store: String { "file://" + dir.sub("store") }
    /// The ledger planes use: the embedded file here, unless `ledgerLocation` names another
    /// (e.g. `evm+http://…` contracts on the devnet).
    var ledger: String { ledgerLocation ?? dir.sub("ledger") }
    var ledgerLocation: String?
    var kek: String { dir.sub("kek") }
    let kekBytes: SecureBytes

    /// `kek`: the KEK to use (the same KEK gives the same plane identity), default a random one.
    init(kek: SecureBytes? = nil) throws {
        try FileManager.default.createDirectory(atPath: dir.sub("store"), withIntermediateDirectories: true)
        try EmbeddedLedger.create(path: dir.sub("ledger"))
        kekBytes = try kek ?? SecureBytes.random(count: 32)
        var b = InsecureKeyFile.encode(kekBytes)
        defer { secureWipe(&b) }
        _ = FileManager.default.createFile(atPath: dir.sub("kek"), contents: Data(b), attributes: [.posixPermissions: 0o600])
    }

    func config() -> PlaneConfig {
        var c = PlaneConfig()
        c.port = 0; c.store = store; c.ledger = ledger
        c.sealing = .devKeyFile; c.devKEKFile = kek; c.allowInsecureDevKEK = true
        c.maxUploadBytes = 8 << 20
        return c
    }
}

/// A plane for a test: the `cce4 plane serve` subprocess (a real deployment shape; and the
/// test process's cooperative threads, which tests block on, are not the server's), stopped
/// with SIGTERM when released.
final class RunningPlane: @unchecked Sendable {
    let proc = Process()
    let port: Int
    let operatorAddress: Address
    let errFile: String
    var base: String { "http://127.0.0.1:\(port)" }

    convenience init(_ d: Deployment, publicAuthority: String? = nil, workDir: String? = nil, extra: [String] = []) throws {
        var args = ["--store", d.store, "--ledger", d.ledger, "--insecure-dev-kek", d.kek, "--max-upload-bytes", String(8 << 20)]
        if let publicAuthority { args += ["--public-authority", publicAuthority] }
        try self.init(args: args + extra, workDir: workDir ?? d.dir.sub("work"))
    }

    init(args: [String], workDir: String) throws {
        try FileManager.default.createDirectory(atPath: workDir, withIntermediateDirectories: true)
        errFile = workDir + "/../plane-\(UUID().uuidString).log"
        _ = FileManager.default.createFile(atPath: errFile, contents: nil)
        proc.executableURL = URL(fileURLWithPath: Repo.binary("cce4"))
        proc.arguments = ["plane", "serve", "--port", "0"] + args
        proc.currentDirectoryURL = URL(fileURLWithPath: workDir)
        let out = Pipe()
        closeOnExec(out)
        proc.standardOutput = out
        proc.standardError = FileHandle(forWritingAtPath: errFile)
        try proc.run()
        var line = Data()
        while !line.contains(0x0a) {
            let b = out.fileHandleForReading.availableData
            if b.isEmpty { break }
            line += b
        }
        let text = String(decoding: line, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        let words = text.split(separator: " ")
        guard text.hasPrefix("listening on http://127.0.0.1:"), words.count == 5, let p = Int(words[2].split(separator: ":").last ?? ""),
              let op = try? Address(String(words[4]), requireChecksum: true) else {
            if proc.isRunning { proc.terminate() }
            proc.waitUntilExit()
            throw TestFailure("plane did not start: \(text) \((try? String(contentsOfFile: errFile, encoding: .utf8)) ?? "")")
        }
        port = p
        operatorAddress = op
    }

    /// Stops the plane (SIGTERM) and returns its log.
    @discardableResult
    func stop() -> (status: Int32, log: String) {
        if proc.isRunning { proc.terminate() }
        proc.waitUntilExit()
        return (proc.terminationStatus, (try? String(contentsOfFile: errFile, encoding: .utf8)) ?? "")
    }

    deinit { if proc.isRunning { proc.terminate(); proc.waitUntilExit() } }

    /// Signs in with `key` (SIWE over /v1/auth/nonce) and returns the bearer token.
    func signIn(_ key: PrivateKey) throws -> String {
        let (text, sig) = try signedMessage(key)
        let r = try http("POST", base + "/v1/auth/login", json: ["message": text, "signature": sig])
        guard r.status == 200, let t = r.json["token"] as? String else { throw TestFailure("login: \(r.status) \(r.text)") }
        return t
    }

    /// Signs in and approves the plane as the key's ledger operator (Swift EIP-712 signing).
    func signInApproved(_ key: PrivateKey) throws -> String {
        let t = try signIn(key)
        try approve(key, token: t)
        return t
    }

    func approve(_ key: PrivateKey, token: String) throws {
        let td = try http("GET", base + "/v1/auth/operator-approval", token: token)
        guard td.status == 200 else { throw TestFailure("approval request: \(td.status) \(td.text)") }
        let dom = td.json["domain"] as! [String: Any], msg = td.json["message"] as! [String: Any]
        let domain = try EIP712Domain(name: dom["name"] as! String, version: dom["version"] as! String, chainId: (dom["chainId"] as! NSNumber).uint64Value,
                                      verifyingContract: try Address(dom["verifyingContract"] as! String),
                                      salt: Hex.decode(String((dom["salt"] as! String).dropFirst(2)))!)
        let expires = (msg["expires"] as! NSNumber).uint64Value, nonce = (msg["nonce"] as! NSNumber).uint64Value
        let a = try OperatorApproval(signing: key, operator: try Address(msg["operator"] as! String), expires: expires, nonce: nonce, domain: domain)
        let r = try http("POST", base + "/v1/auth/operator-approval", json: ["expires": expires, "nonce": nonce, "signature": a.signature.hex], token: token)
        guard r.status == 204 else { throw TestFailure("approval: \(r.status) \(r.text)") }
    }

    /// A SIWE message for this plane, signed by `key`; `edit` may alter fields before signing.
    func signedMessage(_ key: PrivateKey, edit: (inout SIWEMessage) -> Void = { _ in }) throws -> (String, String) {
        let n = try http("GET", base + "/v1/auth/nonce").json
        let now = Int64(Date().timeIntervalSince1970)
        var m = SIWEMessage(domain: n["domain"] as! String, address: key.address, statement: n["statement"] as? String, uri: n["uri"] as! String,
                            chainID: (n["chainId"] as! NSNumber).uint64Value, nonce: n["nonce"] as! String, issuedAt: SIWETime(unixSeconds: now),
                            expirationTime: SIWETime(unixSeconds: now + 300))
        edit(&m)
        return (m.text, try key.signPersonal(Array(m.text.utf8)).hex)
    }
}

struct TestFailure: Error, CustomStringConvertible { let description: String; init(_ d: String) { description = d } }
