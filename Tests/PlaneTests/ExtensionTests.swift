// Routes added by other components (the key-release service) through `extraRoutes`: served in
// process behind the same middleware, and listed among the routes the OpenAPI test checks.
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Hummingbird
import Logging
@testable import PrivacyPlane
import Testing
import TestSupport

@Suite struct ExtensionTests {
    struct Echo: Codable { let n: Int }

    @Test func extraRoutesAreServedBehindTheMiddleware() async throws {
        let d = try Deployment()
        var logger = Logger(label: "cce4.plane.test"); logger.logLevel = .critical
        let server = try PlaneServer(config: d.config(), logger: logger) { on, service in
            on(.post, "/v1/test/echo") { req, _ in
                let b = try await PlaneHTTP.body(req, Echo.self)
                guard b.n >= 0 else { throw PlaneError.unprocessable("n must not be negative") }
                return PlaneHTTP.json(Echo(n: b.n + 1))
            }
        }
        #expect(server.routes.contains(RouteSpec(method: "POST", path: "/v1/test/echo")))
        let task = Task { try await server.run() }
        defer { task.cancel() }
        var port: Int?
        for _ in 0..<300 where port == nil { try await Task.sleep(for: .milliseconds(10)); port = server.boundPort }
        let base = "http://127.0.0.1:\(try #require(port))"
        func post(_ body: String) async throws -> (Int, [String: Any], HTTPURLResponse) {
            var req = URLRequest(url: URL(string: base + "/v1/test/echo")!)
            req.httpMethod = "POST"; req.httpBody = Data(body.utf8); req.setValue("application/json", forHTTPHeaderField: "Content-Type")
            let (data, resp) = try await URLSession.shared.data(for: req)
            let h = resp as! HTTPURLResponse
            return (h.statusCode, (try? JSONSerialization.jsonObject(with: data) as? [String: Any]) ?? [:], h)
        }
        let (s1, j1, _) = try await post(#"{"n": 41}"#)
        #expect(s1 == 200 && j1["n"] as? Int == 42)
        let (s2, j2, h2) = try await post(#"{"n": -1}"#)
        #expect(s2 == 422 && j2["type"] as? String == "https://cce4long.dev/problems/unprocessable")
        #expect(h2.value(forHTTPHeaderField: "Cce4-Sealing") == "dev-insecure")
        let (s3, _, _) = try await post("nope")
        #expect(s3 == 400)
    }
}
