// CurlClient against a real loopback HTTP/1.1 server (Tests/interop/http_echo.py): streamed
// chunked uploads, the response size cap, retries on 503, an upload source that fails, and
// connection reuse.
import CurlHTTP
import Foundation
import Testing
import TestSupport

@Suite struct CurlClientTests {
    struct Server { let base = EchoServer.base }
    let server = Server()

    @Test func streamedChunkedUploadRoundTrips() throws {
        let client = CurlClient()
        var rng = SeededGenerator(seed: 7)
        let payload = rng.bytes(5 << 20 + 123)
        var offset = 0
        let read: (UnsafeMutableRawBufferPointer) throws -> Int = { buf in
            let n = min(buf.count, payload.count - offset, 70_001)  // odd-sized pieces
            payload.withUnsafeBytes { buf.copyMemory(from: UnsafeRawBufferPointer(rebasing: $0[offset..<offset + n])) }
            offset += n
            return n
        }
        let r = try client.perform(HTTPRequest(method: "POST", url: server.base + "/echo", body: .stream(length: nil, read: read)))
        #expect(r.status == 200)
        #expect(r.headers["x-was-chunked"] == "true")
        #expect(bytesEqual(r.body, payload))

        offset = 0
        let put = try client.perform(HTTPRequest(method: "PUT", url: server.base + "/echo", body: .stream(length: Int64(payload.count), read: read)))
        #expect(put.headers["x-was-chunked"] == "false")
        #expect(bytesEqual(put.body, payload))

        let small = Array("hello".utf8)
        let r2 = try small.withUnsafeBytes { try client.perform(HTTPRequest(method: "POST", url: server.base + "/echo", body: .bytes($0))) }
        #expect(r2.body == small)
        // Three requests, one kept-alive connection.
        #expect(client.stats.withLock { $0.connections } == 1)
    }

    @Test func responseLargerThanTheCapFails() throws {
        var o = HTTPClientOptions(); o.maxResponseBytes = 1000
        let client = CurlClient(options: o)
        #expect(try client.perform(HTTPRequest(method: "GET", url: server.base + "/bytes?n=1000")).body.count == 1000)
        do {
            _ = try client.perform(HTTPRequest(method: "GET", url: server.base + "/bytes?n=1001"))
            Issue.record("a 1001-byte body passed a 1000-byte cap")
        } catch {
            #expect(error.message.contains("1000-byte limit"))
        }
    }

    @Test func retriesServiceUnavailableThenSucceeds() throws {
        var o = HTTPClientOptions(); o.maxAttempts = 4
        let client = CurlClient(options: o)
        let id = UInt32.random(in: 0...UInt32.max)
        let r = try client.perform(HTTPRequest(method: "GET", url: server.base + "/flaky?id=\(id)&fail=2"))
        #expect(r.status == 200)
        #expect(String(decoding: r.body, as: UTF8.self) == "attempt 3")
        #expect(client.stats.withLock { $0.retries } == 2)
        // Out of attempts: the last 503 is returned, not hidden.
        o.maxAttempts = 2
        let r2 = try CurlClient(options: o).perform(HTTPRequest(method: "GET", url: server.base + "/flaky?id=\(id)x&fail=5"))
        #expect(r2.status == 503)
    }

    @Test func failingUploadSourceAbortsWithItsReasonAndIsNotRetried() throws {
        struct Broken: Error, CustomStringConvertible { var description: String { "disk went away" } }
        let client = CurlClient()
        var calls = 0
        do {
            _ = try client.perform(HTTPRequest(method: "POST", url: server.base + "/echo", body: .stream(length: nil) { buf in
                calls += 1
                if calls > 2 { throw Broken() }
                buf[0] = 0x41
                return 1
            }))
            Issue.record("a failing body source did not fail the request")
        } catch {
            #expect(error.message.contains("disk went away"), "\(error)")
        }
        #expect(client.stats.withLock { $0.requests } == 1)
    }

    @Test func deadServerIsATransportErrorAfterBoundedRetries() throws {
        var o = HTTPClientOptions(); o.maxAttempts = 3; o.connectTimeout = 1
        let client = CurlClient(options: o)
        let start = Date()
        do {
            _ = try client.perform(HTTPRequest(method: "GET", url: "http://127.0.0.1:9/"))
            Issue.record("a request to a closed port succeeded")
        } catch {
            #expect(error.isRetryable)
            #expect(error.message.contains("gave up after 3 attempts"), "\(error)")
        }
        #expect(Date().timeIntervalSince(start) < 10)
    }
}
